"""Running jobs: run now (here or queued), the long-lived runtime, resume and retry, a dry run;
and what to tell an operator whose command handed its job back."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cxrun.base import owners
from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus, Priority
from cxrun.base.errors import Conflict, CxrunError
from cxrun.base.models import Job
from cxrun.base.owners import Owner, lease_until
from cxrun.ops.views import job, job_table
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import records as record_store
from cxrun.store.context import Context
from cxrun.triggers import starts
from cxrun.triggers.prepare import (
    in_session,
    job_spinner,
    plugins_for,
    prepare,
    run_here,
)
from cxrun.triggers.starts import Prepared, Start

if TYPE_CHECKING:
    import duckdb

    from cxrun.runtime.dryrun import DryRun


DRY_RUN_ROWS = 10


def run_now(
    ctx: Context,
    name: str,
    where: str | None = None,
    limit: int | None = None,
    on_start: Callable[[Job], None] | None = None,
    on_progress: Callable[[Job], None] | None = None,
    detach: bool = False,
    start: Start | None = None,
    stop: Callable[[], bool] = lambda: False,
    priority: str | None = None,
) -> Job:
    """Create a job over the published spinner's selected rows and run it to its end here
    (or, detached, leave it queued for a runtime). When `stop` turns true the job is handed
    back to the queue between two batches. `priority` (high, normal, low) overrides the
    spinner's for this job."""
    start = with_priority(start, priority)  # a bad value is refused before anything is read
    if not detach and (ctx.project.providers or ctx.project.channels):
        from cxrun.io import plugins  # only then: it brings in httpx

        plugins.prewarm()  # most likely needed: on its thread while the state is read

    owner = owners.new_owner("run-now")

    def create(con: duckdb.DuckDBPyConnection) -> tuple[Prepared, Job]:
        # The checks and the new job in one state session (each session opens the state file).
        prepared = prepare(ctx, name, where, limit, start, here=not detach, con=con)
        now = utcnow()
        with starts.selecting(f"spinner '{name}'"):
            job = starts.create_job(con, ctx, prepared, JobStatus.QUEUED, now)
        if not detach:  # claimed in the transaction that creates it: nobody else can run it
            job = _claimed(claim_store.claim(con, job.job, owner, now, lease_until(now), _QUEUED))
        return prepared, job

    if detach:
        return in_session(ctx, create)[1]
    with ctx.state.warm():  # the job's checks, its creation and its run: the file opened once
        prepared, job = in_session(ctx, create)
        return alerted(ctx, run_here(ctx, job, prepared, owner, on_start, on_progress, stop))


def alerted(ctx: Context, job: Job) -> Job:
    """`job` as a run here left it, once the alerts of what it went through are sent."""
    from cxrun.ops import alerts

    if job.notify:
        alerts.deliver(ctx)
    return job


_QUEUED = frozenset({JobStatus.QUEUED})


def with_priority(start: Start | None, priority: str | None) -> Start | None:
    """How a job starts, with the priority a run asks for (CxrunError for a bad one)."""
    from dataclasses import replace

    chosen = Priority.parse(priority)
    return start if chosen is None else replace(start or Start(), priority=chosen)


_RESUMABLE = frozenset({JobStatus.PAUSED, JobStatus.QUEUED, JobStatus.RUNNING})


_FINISHED = frozenset(s for s in JobStatus if s.finished)


def _claimed(job: Job | None) -> Job:
    assert job is not None, "a job created in this transaction is free"
    return job


def handed_back(ctx: Context, job: Job) -> list[str]:
    """What to tell an operator whose command stopped (Ctrl-C, SIGTERM) before its job ended:
    `job` as this command left it, and who finishes it (a runtime may have taken it already)."""
    from cxrun.runtime.spool import Spool
    from cxrun.store import monitor as monitor_store

    now = utcnow()
    with ctx.state.read() as con:
        live = claim_store.holder(con, job.job, now)
        up = monitor_store.runtimes_up(con, now)
    where = f"{job.status} with {job.processed} of {job.total} records written"
    kept = Spool(ctx.project.state_dir, job.job).count()
    if kept:
        where += f", {kept} finished calls kept"
    if job.status != JobStatus.QUEUED:
        return [f"job {job.job} stopped here: {where}"]
    watch = "watch it with `cxrun jobs --watch`"
    if live is not None:
        return [f"job {job.job} handed back: {where}", f"{_who(live)} runs it now; {watch}"]
    if up:
        return [
            f"job {job.job} handed back: {where}",
            f"the runtime (pid {up[0].pid}) finishes it; {watch}",
        ]
    return [
        f"job {job.job} handed back: {where}; no runtime is up",
        f"continue it here with `cxrun resume {job.job}`, or start `cxrun runtime`",
    ]


def dry_run(ctx: Context, name: str, where: str | None, limit: int | None) -> DryRun:
    """What run-now would send, for the first rows; no call is made and no job is created."""
    from cxrun.runtime import dryrun

    prepared = prepare(ctx, name, where)
    with starts.selecting(f"spinner '{name}'"):
        with ctx.state.read() as con:
            bindings = starts.bindings(con, prepared, utcnow())
        return dryrun.dry_run(
            ctx.state,
            prepared.spinner,
            prepared.table,
            prepared.conditions,
            limit or DRY_RUN_ROWS,
            bindings,
        )


def resume(
    ctx: Context,
    job_id: int,
    on_progress: Callable[[Job], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    detach: bool = False,
) -> Job:
    """Continue a paused or queued job here, or one whose owner died, with its unfinished
    records (finished calls are not made again); `detach`: queue it for a runtime instead.
    A job a live process runs is left to it."""
    from cxrun.runtime.runner import Runner

    found = job(ctx, job_id)
    if found.status not in _RESUMABLE:
        raise Conflict(f"job {job_id} is {found.status}, not paused", _not_resumable(found))
    spinner = job_spinner(ctx, found)
    # checked (detached: as the runtime will, its workers' secrets on a cluster), built here
    built = plugins_for(ctx, found.spinner, spinner, None if detach else True)
    owner = owners.new_owner("resume")
    now = utcnow()
    with ctx.state.write() as con:
        taken = _take(con, job_id, owner, now, _RESUMABLE, detach)
    if detach:
        return taken
    runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
    return alerted(ctx, runner.run(job_id))


def _take(
    con: duckdb.DuckDBPyConnection,
    job_id: int,
    owner: Owner,
    now: datetime,
    statuses: frozenset[JobStatus],
    detach: bool,
) -> Job:
    """The job claimed by `owner` (or, `detach`, queued for a runtime), or why it is not free."""
    if detach:
        taken = claim_store.queue(con, job_id, now, statuses)
    else:
        taken = claim_store.claim(con, job_id, owner, now, lease_until(now), statuses)
    if taken is None:
        raise _taken(con, job_id, now)
    return taken


def _not_resumable(found: Job) -> str:
    if found.status.finished:
        return f"only a paused job resumes; `cxrun retry {found.job}` runs its failed records again"
    return "`cxrun runtime` continues it when its records are due; `cxrun approvals` lists answers"


def _taken(con: duckdb.DuckDBPyConnection, job_id: int, now: datetime) -> Conflict:
    """Why a job cannot be run here: it is not free (another live process runs it)."""
    found = job_store.get(con, job_id)
    live = claim_store.holder(con, job_id, now)
    if live is None:
        return Conflict(f"job {job_id} is {found.status}", "there is nothing to run")
    why = f" ({found.reason})" if found.reason else ""
    return Conflict(
        f"job {job_id} is {found.status}{why}: {_who(live)} runs it",
        f"it goes on there; watch it with `cxrun jobs --watch`, or `cxrun pause {job_id}` it",
    )


def _who(owner: Owner) -> str:
    kind = owner.id.split(":", 1)[0]
    where = "" if owner.host == owners.this_host() else f" on {owner.host}"
    return f"{kind} (pid {owner.pid}{where})"


def retry(
    ctx: Context,
    job_id: int,
    record: str | None = None,
    on_progress: Callable[[Job], None] | None = None,
    where: str | None = None,
    stop: Callable[[], bool] = lambda: False,
    detach: bool = False,
) -> Job:
    """Run a finished job's failed records again from their failed step, reusing what succeeded
    (`detach`: queued for a runtime). The records are marked in the transaction that claims the
    job, so that the runtime that takes it over (should this process die) carries it out."""
    from cxrun.runtime.runner import Runner

    found = job(ctx, job_id)
    if not found.status.finished:
        raise Conflict(f"job {job_id} is {found.status}", "retry a job once it has finished")
    spinner = job_spinner(ctx, found)
    table = job_table(ctx, job_id, where)
    # checked (detached: as the runtime will, its workers' secrets on a cluster), built here
    built = plugins_for(ctx, found.spinner, spinner, None if detach else True)
    owner = owners.new_owner("retry")
    now = utcnow()
    with ctx.state.write() as con:
        failed = record_store.failed_records(con, job_id, record, table, where)
        if not failed:
            which = f"record '{record}'" if record else "records"
            raise CxrunError(f"job {job_id} has no failed {which} to retry")
        taken = _take(con, job_id, owner, now, _FINISHED, detach)
        record_store.mark_retry(con, job_id, [row for row, _, _ in failed])
    if detach:
        return taken
    runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
    return alerted(ctx, runner.run(job_id))
