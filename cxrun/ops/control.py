"""Controlling a job: cancel and pause, done here when nobody runs it, or asked of its owner."""

from __future__ import annotations

import time

from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus
from cxrun.base.errors import Conflict
from cxrun.base.models import Job
from cxrun.ops import alerts
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store.context import Context

CONTROL_WAIT = 15.0  # seconds cancel and pause wait for a job's owner to answer


def cancel(ctx: Context, job_id: int, wait: float = CONTROL_WAIT) -> Job:
    """Cancel a queued, paused or running job (its owner stops within a second)."""
    return _control(ctx, job_id, "cancel", wait)


def pause(ctx: Context, job_id: int, wait: float = CONTROL_WAIT) -> Job:
    """Pause a queued or running job; `cxrun resume` continues its unfinished records."""
    return _control(ctx, job_id, "pause", wait)


def _control(ctx: Context, job_id: int, action: str, wait: float) -> Job:
    """Done here when nobody runs the job; otherwise asked of its live owner, which acts
    between two calls (the state and a file beside it say what was asked)."""
    done = ask(ctx, job_id, action)
    if done is not None:
        return done
    return answered(ctx, [job_id], wait)[job_id]


def ask(ctx: Context, job_id: int, action: str) -> Job | None:
    """Cancel or pause the job here when nobody runs it (the job as it is now), or ask its live
    owner to (None: `answered` says when it has)."""
    from cxrun.runtime import signals

    now = utcnow()
    with ctx.state.write() as con:
        found = job_store.get(con, job_id)
        live = claim_store.holder(con, job_id, now)
        if found.status.finished or (
            live is None and action == "pause" and found.status == JobStatus.PAUSED
        ):
            raise Conflict(f"job {job_id} is {found.status} already", "there is nothing to do")
        if live is None:  # nobody runs it: done here
            if action == "cancel":
                done = job_store.cancel_now(con, job_id, now)
            else:
                done = job_store.pause_now(con, job_id, "paused by an operator", now)
        else:
            claim_store.request(con, job_id, action)
    if live is None:
        if done.notify:
            alerts.deliver(ctx)
        return done
    signals.ask(ctx.project.state_dir, job_id, action)  # what the owner watches while it calls
    return None


def answered(ctx: Context, job_ids: list[int], wait: float) -> dict[int, Job]:
    """The jobs whose owners were asked, once each has carried the request out (or the job
    ended, or its owner died), or as they are after `wait` seconds."""
    deadline = time.monotonic() + wait
    left, found = set(job_ids), {}
    while True:  # the owners notice within a second
        with ctx.state.read() as con:
            for job_id in sorted(left):
                found[job_id] = job_store.get(con, job_id)
                if claim_store.control_of(con, job_id) is None or (
                    claim_store.holder(con, job_id, utcnow()) is None  # its owner died meanwhile
                ):
                    left.discard(job_id)
        if not left or time.monotonic() >= deadline:
            return found
        time.sleep(0.1)
