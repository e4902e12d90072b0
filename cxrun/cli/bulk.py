"""The bulk forms of retry, cancel and resume: JOB or filters (never both, never neither), the
plan, a confirmation (asked on a terminal, `--yes` elsewhere), then each job's outcome."""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import typer

from cxrun.base.errors import CxrunError
from cxrun.cli.app import context

if TYPE_CHECKING:
    from cxrun.base.bulk import Plan
    from cxrun.base.filters import JobFilter

FILTERS = "--status, --spinner, --trigger, --since, --reason"


def one_job(command: str, job: int | None, filters: JobFilter, **single: object) -> int | None:
    """The job to act on alone, or None for every job the filters match. JOB with filters, or
    neither, is refused; so are options of the one-job form (`single`) given with filters."""
    if job is not None and not filters.empty:
        raise CxrunError(
            f"{command}: give JOB or filters, not both",
            f"`cxrun {command} JOB` acts on one job; filters ({FILTERS}) on every job they match",
        )
    if job is None and filters.empty:
        raise CxrunError(
            f"{command}: name a job, or filter the jobs to act on",
            f"`cxrun {command} JOB`, or at least one filter: {FILTERS} (`cxrun {command} --help`)",
        )
    given = [name for name, value in single.items() if value is not None]
    if job is None and given:
        raise CxrunError(
            f"{command}: {' and '.join(given)} {'go' if len(given) > 1 else 'goes'} with one JOB, "
            "not with filters",
            f"`cxrun {command} JOB {given[0]} ...`",
        )
    return job


def run(action: str, filters: JobFilter, yes: bool, project: str | None, json_: bool) -> None:
    """Plan, confirm, act; exit 0 when every job went through (or none matched), 2 when some
    were refused."""
    from cxrun.ops import bulk
    from cxrun.render import bulk as shown
    from cxrun.render import out

    ctx = context(project)
    planned = bulk.plan(ctx, action, filters)
    if not planned.targets:
        out.print_json(planned.to_json()) if json_ else shown.say(shown.nothing(planned))
        raise typer.Exit(0)
    if json_:
        out.note(shown.summary(planned))
    else:
        shown.plan(planned)
    _confirm(planned, yes, json_)
    done = bulk.act(ctx, planned)
    if json_:
        out.print_json(done.to_json())
        if done.queued and not done.runtime_up:
            out.note(shown.NO_RUNTIME)
    else:
        shown.outcome(done)
    raise typer.Exit(2 if done.refused else 0)


def _confirm(planned: Plan, yes: bool, json_: bool) -> None:
    """Go on with `--yes`, or when a person at the terminal says yes; nothing changes otherwise."""
    from cxrun.render import bulk as shown
    from cxrun.render import out

    if yes:
        return
    count = len(planned.jobs)
    if not sys.stdin.isatty():
        if json_:
            out.print_json(planned.to_json())
        raise CxrunError(
            f"add --yes to act on {count} job{'s' if count != 1 else ''}: nothing was changed",
            "without a terminal to ask on, a bulk action needs --yes",
        )
    if not out.ask(shown.question(planned)):
        raise CxrunError("not confirmed: nothing was changed")
