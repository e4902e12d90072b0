"""Bulk actions: the jobs a filter matches that retry, cancel or resume applies to (the plan),
then each job through the same operation as the one-job command, in its detached form: a retry
or a resume is queued for a runtime in the transaction that reopens the job (the one claim), a
cancel is done here or asked of the job's live owner. One job refused does not stop the others."""

from __future__ import annotations

from collections.abc import Callable, Collection

from cxrun.base.bulk import ACTIONS, Action, Outcome, Plan, Result, Target
from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus
from cxrun.base.errors import CxrunError
from cxrun.base.filters import JobFilter
from cxrun.base.models import Job
from cxrun.ops import control, runs
from cxrun.store import jobs as job_store
from cxrun.store import monitor as monitor_store
from cxrun.store.context import Context

_TOUCHED: dict[str, Callable[[Job], int]] = {  # the records of a job an action touches; 0: none
    "retry": lambda job: job.failed if job.status.finished else 0,
    "cancel": lambda job: 0 if job.status.finished else job.total - job.processed + job.waiting,
    "resume": lambda job: (
        job.total - job.processed + job.waiting if job.status == JobStatus.PAUSED else 0
    ),
}


def action(name: str) -> Action:
    """A bulk action by name (retry, cancel or resume)."""
    found = ACTIONS.get(name)
    if found is None:
        raise CxrunError(f"no bulk action {name!r}", f"the bulk actions are {', '.join(ACTIONS)}")
    return found


def plan(ctx: Context, name: str, filters: JobFilter, only: Collection[int] | None = None) -> Plan:
    """The jobs `filters` match (and, given `only`, among those) that the action applies to,
    oldest first. No filter at all is refused: a bulk action never means every job by default."""
    return plans(ctx, filters, only, [name])[name]


def plans(
    ctx: Context,
    filters: JobFilter,
    only: Collection[int] | None = None,
    names: Collection[str] = tuple(ACTIONS),
) -> dict[str, Plan]:
    """The plan of each action in `names` over the jobs `filters` match, in one read."""
    wanted = [action(name) for name in names]
    if filters.empty:
        raise CxrunError(
            "a bulk action needs at least one filter",
            "filter by status, spinner, trigger, since or reason; `cxrun jobs` with the same "
            "filters lists the jobs they match",
        )
    with ctx.state.read() as con:
        matched = job_store.listing(con, filters, None)
        up = bool(monitor_store.runtimes_up(con, utcnow()))
    jobs = sorted((j for j in matched if only is None or j.job in only), key=lambda j: j.job)
    return {found.name: _plan(found, filters, jobs, len(matched), up) for found in wanted}


def _plan(found: Action, filters: JobFilter, jobs: list[Job], matched: int, up: bool) -> Plan:
    touched = _TOUCHED[found.name]
    targets = [Target(job, touched(job)) for job in jobs if touched(job) > 0]
    return Plan(found, filters, targets, matched, up)


def act(ctx: Context, planned: Plan, wait: float = control.CONTROL_WAIT) -> Outcome:
    """Carry the plan out, job by job; a job that cannot be acted on (it changed since the
    plan, another live process runs it, its spinner's secrets are missing) is refused alone.
    Cancels asked of live owners are awaited together, `wait` seconds at most."""
    if planned.action.name == "cancel":
        results = _cancel(ctx, planned.jobs, wait)
    else:
        results = _queue_all(ctx, planned.action.name, planned.jobs)
    with ctx.state.read() as con:
        up = bool(monitor_store.runtimes_up(con, utcnow()))
    return Outcome(planned, results, up)


HELD_JOBS = 10  # jobs queued on one opening of the state; other processes go between two


def _queue_all(ctx: Context, name: str, job_ids: list[int]) -> list[Result]:
    """Each job retried or resumed, HELD_JOBS at a time on one opening of the state file (each
    job still in its own transaction): opening it costs more than queuing a job, and holding it
    for all of them would keep a runtime waiting for as long."""
    results = []
    for first in range(0, len(job_ids), HELD_JOBS):
        with ctx.state.held():
            results += [_queue(ctx, name, job) for job in job_ids[first : first + HELD_JOBS]]
    return results


def _queue(ctx: Context, name: str, job_id: int) -> Result:
    """A retry or a resume of one job, queued for a runtime (as the API's)."""
    try:
        if name == "retry":
            done = runs.retry(ctx, job_id, None, detach=True)
        else:
            done = runs.resume(ctx, job_id, detach=True)
    except CxrunError as exc:
        return _refused(job_id, exc)
    return Result(job_id, True, str(done.status))


def _cancel(ctx: Context, job_ids: list[int], wait: float) -> list[Result]:
    """Each job cancelled here, or its owner asked; then the owners' answers awaited at once."""
    results: dict[int, Result] = {}
    asked = []
    for job_id in job_ids:
        try:
            done = control.ask(ctx, job_id, "cancel")
        except CxrunError as exc:
            results[job_id] = _refused(job_id, exc)
            continue
        if done is None:
            asked.append(job_id)
        else:
            results[job_id] = Result(job_id, True, str(done.status))
    for job_id, job in (control.answered(ctx, asked, wait) if asked else {}).items():
        results[job_id] = Result(job_id, True, str(job.status))
    return [results[job_id] for job_id in job_ids]


def _refused(job_id: int, exc: CxrunError) -> Result:
    return Result(job_id, False, None, exc.message, exc.hint)
