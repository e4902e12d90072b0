"""Commands for what starts jobs by itself: schedules, events, the plan's usage."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from cxrun.cli.app import (
    JsonOpt,
    ProjectOpt,
    context,
)
from cxrun.cli.runs import Interrupt, stop_on_signals, warn_edited


def schedule_tick(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Fire the schedules that are due, then run runnable jobs (cron calls this every minute)."""
    from cxrun.ops import automation, publishing
    from cxrun.render import jobs, out

    stop = stop_on_signals()
    ctx = context(project)

    def fired_now(fired: list[automation.Fire]) -> None:
        if not json_:
            jobs.fires(fired)
        for line in publishing.edited_notes(ctx, automation.fired_jobs(ctx, fired)):
            out.note(line)

    fired, ran = automation.tick(ctx, fired_now, out.note, stop=stop)
    if json_:
        out.print_json({"fired": [f.to_json() for f in fired], "ran": ran})
    raise typer.Exit(automation.exit_code(fired))


def schedule_list(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Each schedule: spinner, cron, time zone, catch-up, last fire, next fire (UTC)."""
    from cxrun.ops import automation
    from cxrun.render import out

    listing = [s.to_json() for s in automation.listing(context(project))]
    if json_:
        return out.print_json(listing)
    columns = ["spinner", "cron", "timezone", "catchup", "last_fire", "last_job", "next_fire"]
    out.dict_table(listing, columns, "no schedules: add `triggers: [{schedule: CRON}]`")


def trigger_event(
    event: Annotated[str, typer.Argument(help="Event name.")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="A JSON object: a file, or - for stdin.")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event's id: the same id again starts nothing.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only queue the jobs, for `cxrun runtime`.")
    ] = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Start a job for each published spinner listening to EVENT (payload checked first)."""
    from cxrun.ops import automation, publishing
    from cxrun.render import jobs, out

    body = automation.read_payload(payload, sys.stdin.buffer)
    view = jobs.JobProgress(enabled=not json_)
    ctx = context(project)
    with Interrupt() as interrupt:
        try:
            result = automation.trigger(
                ctx,
                event,
                body,
                event_id=event_id,
                detach=detach,
                on_start=warn_edited(ctx, view.start),
                on_progress=view.update,
                stop=interrupt.stop,
            )
        finally:
            view.stop()
    if json_:
        out.print_json(result.to_json())
        if result.errors:
            out.error(["the payload does not fit a spinner's schema: see the jobs' errors"])
    else:
        jobs.received(result)
    if detach:  # no job started here: the warning is said once they are queued
        for line in publishing.edited_notes(ctx, result.jobs):
            out.note(line)
    else:
        interrupt.handed_back(project, result.jobs)
    raise typer.Exit(result.exit_code)


def usage(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """This month's jobs and records against the plan limits of cxrun.yaml."""
    from cxrun.ops import automation
    from cxrun.render import checks, out

    found = automation.usage(context(project)).to_json()
    if json_:
        return out.print_json(found)
    checks.usage(found)
