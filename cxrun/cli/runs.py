"""Commands that run jobs: run-now, the runtime, resume, retry, cancel and pause; and how a
signal hands a job back."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from cxrun.base.enums import JobStatus
from cxrun.cli import bulk
from cxrun.cli.app import (
    MAX_ROWS,
    JobStatusOpt,
    JsonOpt,
    PriorityOpt,
    ProjectOpt,
    ReasonOpt,
    SinceOpt,
    SpinnerOpt,
    TriggerOpt,
    YesOpt,
    context,
    job_filter,
)

DetachOpt = Annotated[
    bool, typer.Option("--detach", help="Only queue the job, for `cxrun runtime`.")
]
JobOrFilters = Annotated[
    int | None, typer.Argument(help="Job number (or, instead, filters: every job they match).")
]


def run_now(
    spinner: Annotated[str, typer.Argument(help="Spinner name.")],
    where: Annotated[str | None, typer.Option("--where", help="Extra SQL row filter.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, max=MAX_ROWS, help="At most N rows.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; call nothing.")
    ] = False,
    detach: DetachOpt = False,
    priority: PriorityOpt = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run the published spinner now, here, with progress."""
    from cxrun.ops import runs
    from cxrun.render import jobs, out

    ctx = context(project)
    if dry_run:
        preview = runs.dry_run(ctx, spinner, where, limit)
        return out.print_json(preview.to_json()) if json_ else jobs.dry_run(preview)
    if detach:
        queued = runs.run_now(ctx, spinner, where, limit, detach=True, priority=priority)
        warn_edited(ctx, lambda job: None)(queued)
        if json_:
            return out.print_json(queued.to_json())
        return out.lines(
            [f"job {queued.job} queued ({queued.priority} priority): run `cxrun runtime`"]
        )

    run_job(
        json_,
        lambda view, stop: runs.run_now(
            ctx,
            spinner,
            where,
            limit,
            warn_edited(ctx, view.start),
            view.update,
            stop=stop,
            priority=priority,
        ),
        project,
    )


def warn_edited(ctx: Any, start: Any) -> Any:
    """`start(job)`, after a line on stderr when the job's spinner file was edited since the
    version the job runs."""
    from cxrun.ops import publishing
    from cxrun.render import out

    def started(job: Any) -> None:
        for line in publishing.edited_notes(ctx, [job]):
            out.note(line)
        start(job)

    return started


class Interrupt:
    """Ctrl-C or SIGTERM while a job runs here: the job is handed back (queued, its progress
    kept) between two calls instead of the process dying with it; a second signal ends the
    process at once (a runtime then takes the job over)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __enter__(self) -> Interrupt:
        import signal

        self._before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
        for number in self._before:
            signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        import signal

        self.received = number
        for other, handler in self._before.items():
            signal.signal(other, handler)

    def __exit__(self, *exc: object) -> None:
        import signal

        for number, handler in self._before.items():
            signal.signal(number, handler)

    def stop(self) -> bool:
        return self.received is not None

    def handed_back(self, project: str | None, jobs: list[Any]) -> None:
        """After a signal: say who finishes each job left unfinished, and exit 130 (SIGINT) or
        143 (SIGTERM)."""
        from cxrun.ops import runs
        from cxrun.render import out

        if self.received is None:
            return
        left = [j for j in jobs if not j.status.finished]
        if not left:
            return
        for job in left:
            first, *rest = runs.handed_back(context(project), job)
            out.note("\n".join([f"interrupted: {first}", *(f"  {line}" for line in rest)]))
        raise typer.Exit(128 + self.received)


def run_job(json_: bool, start: Any, project: str | None) -> None:
    """Run a job with progress, print it, and exit with its status's code."""
    from cxrun.render import jobs, out

    view = jobs.JobProgress(enabled=not json_)
    with Interrupt() as interrupt:
        try:
            job = start(view, interrupt.stop)
        finally:
            view.stop()
    if json_:
        out.print_json(job.to_json())
    else:
        jobs.job_summary(job)
    interrupt.handed_back(project, [job])
    if job.status == JobStatus.PAUSED:
        out.error(
            [
                f"job {job.job} is paused: {job.reason}",
                f"fix the cause, then continue it with `cxrun resume {job.job}`",
            ]
        )
    if job.status == JobStatus.WAITING:
        out.note(
            f"job {job.job} is waiting: `cxrun runtime` (or cron: `cxrun runtime --once`) "
            "continues it when due; `cxrun approvals` lists what needs a person"
        )
    raise typer.Exit(job.status.exit_code)


def runtime(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when nothing is runnable (for cron).")
    ] = False,
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, help="Jobs at a time.")] = 1,
    cluster: Annotated[
        str | None,
        typer.Option(
            "--cluster",
            metavar="tcp://HOST:8786",
            help="Hand the I/O calls to this Dask scheduler's workers (cxrun[dask]).",
        ),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Run queued jobs, take over orphaned ones; stops cleanly on Ctrl-C or SIGTERM."""
    from cxrun.ops import runtime as loop
    from cxrun.render import out

    ctx = context(project)
    loop.runtime(ctx, once, max_jobs, stop_on_signals(), out.note, cluster=cluster)


def stop_on_signals() -> Any:
    """An event set by Ctrl-C or SIGTERM: a runtime's jobs go back to the queue, then it stops."""
    import signal
    import threading

    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    return stop


def resume(
    job: JobOrFilters = None,
    detach: DetachOpt = False,
    status: JobStatusOpt = None,
    spinner: SpinnerOpt = None,
    trigger: TriggerOpt = None,
    since: SinceOpt = None,
    reason: ReasonOpt = None,
    yes: YesOpt = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Continue a paused job here: unfinished records only, no call made twice. With filters
    instead of JOB: every paused job they match, queued for the runtime."""
    from cxrun.ops import runs
    from cxrun.render import out

    filters = job_filter(status, spinner, trigger, since, reason)
    one = bulk.one_job("resume", job, filters)
    if one is None:
        return bulk.run("resume", filters, yes, project, json_)
    if detach:
        queued = runs.resume(context(project), one, detach=True)
        if json_:
            return out.print_json(queued.to_json())
        return out.lines([f"job {queued.job} queued: `cxrun runtime` continues it"])
    run_job(
        json_, lambda view, stop: runs.resume(context(project), one, view.update, stop), project
    )


def retry(
    job: JobOrFilters = None,
    record: Annotated[str | None, typer.Option("--record", help="Only this record.")] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="Only failed records whose row meets this SQL.")
    ] = None,
    status: JobStatusOpt = None,
    spinner: SpinnerOpt = None,
    trigger: TriggerOpt = None,
    since: SinceOpt = None,
    reason: ReasonOpt = None,
    yes: YesOpt = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a job's failed records again from their failed step, reusing earlier outputs. With
    filters instead of JOB: those of every finished job they match, queued for the runtime."""
    from cxrun.ops import publishing, runs
    from cxrun.render import out

    filters = job_filter(status, spinner, trigger, since, reason)
    one = bulk.one_job("retry", job, filters, **{"--record": record, "--where": where})
    if one is None:
        return bulk.run("retry", filters, yes, project, json_)
    ctx = context(project)
    changed = publishing.table_note(ctx, one)
    if changed:
        out.note(changed)
    run_job(
        json_, lambda view, stop: runs.retry(ctx, one, record, view.update, where, stop), project
    )


def cancel(
    job: JobOrFilters = None,
    status: JobStatusOpt = None,
    spinner: SpinnerOpt = None,
    trigger: TriggerOpt = None,
    since: SinceOpt = None,
    reason: ReasonOpt = None,
    yes: YesOpt = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Cancel a queued, running, waiting or paused job (wherever it runs). With filters instead
    of JOB: every unfinished job they match."""
    from cxrun.ops import control

    filters = job_filter(status, spinner, trigger, since, reason)
    one = bulk.one_job("cancel", job, filters)
    if one is None:
        return bulk.run("cancel", filters, yes, project, json_)
    _answer(control.cancel(context(project), one), json_)


def pause(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Pause a queued or running job; `cxrun resume JOB` continues it."""
    from cxrun.ops import control

    _answer(control.pause(context(project), job), json_)


def _answer(job: Any, json_: bool) -> None:
    from cxrun.render import jobs, out

    if json_:
        out.print_json(job.to_json())
    else:
        jobs.job_summary(job)
