"""The long-lived runtime: claims queued and orphaned jobs, runs them, beats its heartbeat."""

from __future__ import annotations

import os
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass
from datetime import timedelta

from cxrun.base import project
from cxrun.base.clock import utcnow
from cxrun.base.durations import seconds
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.base.owners import LEASE, Owner, alive, new_owner
from cxrun.store import State
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store

POLL = 1.0  # seconds between looks at the queue when there is nothing to run
AGING = seconds(project.AGING)
__all__ = ["LEASE", "POLL", "Pace", "alive", "claim_next", "new_owner", "serve"]


@dataclass(frozen=True)
class Pace:
    """The runtime's timing: how long its claim on a job holds without a heartbeat, how
    often it looks at an empty queue, and how many seconds of waiting lift a queued job one
    priority level (cxrun.yaml's runtime.aging)."""

    lease: float = LEASE
    poll: float = POLL
    aging: float = AGING


def claim_next(
    state: State, owner: Owner, busy: set[int], lease: float, aging: float = AGING
) -> Job | None:
    """Take the first runnable job not already running here, in one write transaction:
    queued, orphaned, or waiting with parked records whose time or answer has come; by
    priority, then by age, each `aging` seconds of waiting lifting a job one level."""
    now = utcnow()
    with state.write() as con:
        for job in claim_store.runnable(con, now, owner.host, aging, alive):
            if job not in busy:
                statuses = claim_store.CLAIMABLE | {JobStatus.WAITING}
                until = now + timedelta(seconds=lease)
                taken = claim_store.claim(con, job, owner, now, until, statuses, alive)
                if taken is not None:
                    return taken
    return None


def serve(
    state_dir: os.PathLike[str] | str,
    run_job: Callable[[int, Owner, Callable[[], bool]], Job],
    once: bool,
    max_jobs: int = 1,
    stop: threading.Event | None = None,
    on_event: Callable[[str], None] = lambda text: None,
    pace: Pace = Pace(),
    tick: Callable[[], None] | None = None,
) -> int:
    """Run jobs until stopped (or, with `once`, until nothing is runnable); jobs run.

    `tick` is called once a turn, before claiming (it fires due schedules)."""
    from pathlib import Path

    stop = stop or threading.Event()
    owner = new_owner("runtime")
    state = State(Path(state_dir))
    on_event(f"runtime {owner.id} started")
    with ThreadPoolExecutor(max_workers=max_jobs) as pool:
        try:
            ran = _loop(state, owner, pool, run_job, once, max_jobs, stop, on_event, pace, tick)
        except BaseException:
            stop.set()  # the jobs running here hand themselves back between two calls
            raise
    _beat(state, owner, stopped=True)
    on_event(f"runtime {owner.id} stopped after {ran} job(s)")
    return ran


def _loop(
    state: State,
    owner: Owner,
    pool: ThreadPoolExecutor,
    run_job: Callable[[int, Owner, Callable[[], bool]], Job],
    once: bool,
    max_jobs: int,
    stop: threading.Event,
    on_event: Callable[[str], None],
    pace: Pace,
    tick: Callable[[], None] | None,
) -> int:
    """Turns until stopped; a state busy for longer than the lock timeout skips a turn's beat
    or claims (the next turn tries again) instead of ending the runtime."""
    from cxrun.base.errors import StateBusy

    active: dict[int, Future[Job]] = {}
    ran = 0
    while True:
        try:
            _beat(state, owner, stopped=False)
            ran += _reap(active, on_event, state, owner)
            if tick is not None and not stop.is_set():
                tick()
            while not stop.is_set() and len(active) < max_jobs:
                job = claim_next(state, owner, set(active), pace.lease, pace.aging)
                if job is None:
                    break
                on_event(f"job {job.job}: claimed ({job.spinner} v{job.version}, {job.priority})")
                active[job.job] = pool.submit(run_job, job.job, owner, stop.is_set)
        except StateBusy as busy:
            on_event(f"state busy, trying again next turn: {busy.message}")
        if not active and (once or stop.is_set()):
            return ran
        if active:
            wait(list(active.values()), timeout=pace.poll, return_when=FIRST_COMPLETED)
        else:
            stop.wait(pace.poll)


def _give_up(state: State, owner: Owner, job: int, error: BaseException) -> str:
    """A job whose run raised: a busy state gives it back to the queue; anything else fails it
    with the error as its reason, so that no runtime loops on a job it cannot advance."""
    from cxrun.base.errors import StateBusy

    what = f"{type(error).__name__}: {error}"
    try:
        with state.write() as con:
            if not claim_store.holds(con, job, owner):
                return f"stopped by an error ({what}); another owner has it now"
            if isinstance(error, StateBusy):
                claim_store.requeue(con, job, owner)
                return f"queued again: {error}"
            job_store.finish(con, job, JobStatus.FAILED, f"stopped by an error: {what}", utcnow())
    except StateBusy:
        return f"stopped by an error ({what}); the state is busy, the next turn takes it over"
    return f"failed: stopped by an error: {what}"


def _beat(state: State, owner: Owner, stopped: bool) -> None:
    with state.write() as con:
        claim_store.runtime_beat(con, owner, utcnow(), stopped)


def _reap(
    active: dict[int, Future[Job]], on_event: Callable[[str], None], state: State, owner: Owner
) -> int:
    done = [job for job, future in active.items() if future.done()]
    for job in done:
        future = active.pop(job)
        error = future.exception()
        if error is not None:
            on_event(f"job {job}: {_give_up(state, owner, job, error)}")
        else:
            result = future.result()
            reason = f" ({result.reason})" if result.reason else ""
            on_event(f"job {job}: {result.status}{reason}")
    return len(done)
