"""Commands that answer approval steps: approve, reject, and the pending approvals."""

from __future__ import annotations

from typing import Annotated

import typer

from cxrun.cli.app import (
    JsonOpt,
    ProjectOpt,
    context,
)
from cxrun.cli.runs import Interrupt

AllOpt = Annotated[bool, typer.Option("--all", help="Every pending approval of the job.")]


WhereApprovalOpt = Annotated[
    str | None, typer.Option("--where", help="Pending approvals whose row meets this SQL.")
]


def approve(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str | None, typer.Argument(help="The record's key.")] = None,
    every: AllOpt = False,
    where: WhereApprovalOpt = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Approve records parked at an approval step; they go on with the next step."""
    _answer_approvals(job, "approve", record, every, where, project, json_)


def reject(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str | None, typer.Argument(help="The record's key.")] = None,
    every: AllOpt = False,
    where: WhereApprovalOpt = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Reject records parked at an approval step; they end skipped."""
    _answer_approvals(job, "reject", record, every, where, project, json_)


def _answer_approvals(
    job: int,
    decision: str,
    record: str | None,
    every: bool,
    where: str | None,
    project: str | None,
    json_: bool,
) -> None:
    from cxrun.ops import answers
    from cxrun.render import jobs, out

    view = jobs.JobProgress(enabled=not json_)
    with Interrupt() as interrupt:
        try:
            done = answers.answer(
                context(project), job, decision, record, every, where, view.update, interrupt.stop
            )
        finally:
            view.stop()
    if json_:
        out.print_json(done.to_json())
        return interrupt.handed_back(project, [done.job])
    verb = "approved" if decision == "approve" else "rejected"
    lines = [f"{verb} {len(done.answered)} record(s) of job {job}"] if done.answered else []
    lines += _already_answered(done.already)
    if not done.answered and not done.already:
        lines.append(f"no pending approvals in job {job} matched")
    out.lines(lines)
    jobs.job_summary(done.job)
    interrupt.handed_back(project, [done.job])


def _already_answered(already: list[tuple[str, str]], shown: int = 3) -> list[str]:
    """A line per record answered before, or per answer when there are many."""
    if len(already) <= shown:
        return [f"record {key} was answered already: {how}" for key, how in already]
    keys_by_how: dict[str, list[str]] = {}
    for key, how in already:
        keys_by_how.setdefault(how, []).append(key)
    return [
        f"{len(keys)} {'records were' if len(keys) > 1 else 'record was'} answered already: {how} "
        f"({', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''})"
        for how, keys in keys_by_how.items()
    ]


def approvals(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's approvals.")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Records waiting for a person to approve or reject them, with the prompt."""
    from cxrun.ops import answers
    from cxrun.render import out

    pending = answers.approvals(context(project), job)
    if json_:
        return out.print_json(pending)
    out.dict_table(
        pending,
        ["job", "spinner", "record", "step", "prompt", "since", "timeout_at"],
        "no approvals pending",
    )
