"""Commands that read: jobs, one job, Live Ops, doctor, records, journeys, the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Annotated

import typer

from cxrun.cli.app import (
    JobStatusOpt,
    JsonOpt,
    LimitOpt,
    PageOpt,
    ProjectOpt,
    ReasonOpt,
    RecordStatusOpt,
    SinceOpt,
    SpinnerOpt,
    TriggerOpt,
    context,
    finite,
    job_filter,
)

if TYPE_CHECKING:
    from cxrun.base.filters import JobFilter


def jobs(
    status: JobStatusOpt = None,
    spinner: SpinnerOpt = None,
    trigger: TriggerOpt = None,
    since: SinceOpt = None,
    reason: ReasonOpt = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw in place until Ctrl-C.")] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.1, max=3600, callback=finite, help="Seconds between redraws."
        ),
    ] = 1.0,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Jobs, newest first: progress, counts, status, timing."""
    from cxrun.base.errors import StateBusy
    from cxrun.cli.runs import Interrupt
    from cxrun.ops import views
    from cxrun.render import joblist, jobs, out

    ctx = context(project)

    def chosen() -> JobFilter:
        return job_filter(status, spinner, trigger, since, reason)

    if watch:  # --since counts back from each redraw's now
        # Ctrl-C only sets a flag: a query in flight finishes instead of being interrupted.
        with Interrupt() as interrupt:
            fetch = lambda: views.jobs_page(ctx, chosen(), page, limit)  # noqa: E731
            joblist.watch(fetch, interval, StateBusy, interrupt.stop)
        return
    found = views.jobs_page(ctx, chosen(), page, limit)
    if json_:
        return out.print_json([j.to_json() for j in found.jobs])
    jobs.jobs_table(found)


def job_command(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One job in detail: records by status, each step's results and timing, ETA, reason."""
    from cxrun.ops import watch
    from cxrun.render import jobs, out

    detail = watch.job_detail(context(project), job).to_json()
    if json_:
        return out.print_json(detail)
    jobs.job_detail(detail)


def live(
    stall: Annotated[
        float,
        typer.Option(
            "--stall",
            min=0,
            max=525600,
            callback=finite,
            help="Minutes without progress = stalled (at most a year).",
        ),
    ] = 5.0,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Live Ops: jobs by status, stalled jobs, runtime up or down, failures per step."""
    from cxrun.ops import watch
    from cxrun.render import checks, out

    summary = watch.live(context(project), stall).to_json()
    if json_:
        return out.print_json(summary)
    checks.live(summary)


def doctor(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The pre-run checklist; exits 0 only when every check passes (1 otherwise)."""
    from cxrun.ops import doctor
    from cxrun.render import checks, out

    report = doctor.doctor(context(project), spinner)
    if json_:
        out.print_json(report.to_json())
    else:
        checks.doctor(report.to_json())
    raise typer.Exit(0 if report.ok else 1)


def records(
    job: Annotated[int, typer.Argument(help="Job number.")],
    status: RecordStatusOpt = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """A job's records: metadata (the row) and outcomes."""
    from cxrun.ops import views
    from cxrun.render import jobs, out

    found = views.records(context(project), job, status, page, limit)
    if json_:
        return out.print_json([r.to_json() for r in found])
    jobs.records_table(found, job, status, page)


def journey(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str, typer.Argument(help="The record's key.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One record's steps: status, message, output, error, duration."""
    from cxrun.ops import views
    from cxrun.render import jobs, out

    entries = views.journey(context(project), job, record)
    if json_:
        return out.print_json([e.to_json() for e in entries])
    jobs.journey_table(entries)


def outbox(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's messages.")] = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Messages kept by the local outbox channel, newest first."""
    from cxrun.ops import views
    from cxrun.render import out

    messages = views.outbox(context(project), job, page, limit)
    if json_:
        return out.print_json(messages)
    out.dict_table(
        messages,
        ["job", "record", "step", "recipient", "subject", "text"],
        "no messages in the outbox",
    )
