"""Answering approval steps: approve or reject parked records, and list the pending ones."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from cxrun.base import owners
from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus
from cxrun.base.errors import CxrunError, NotFound
from cxrun.base.models import Job
from cxrun.base.owners import lease_until
from cxrun.ops.runs import alerted
from cxrun.ops.views import job, job_table
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import records as record_store
from cxrun.store.context import Context
from cxrun.triggers.prepare import (
    job_spinner,
    plugins_for,
)

_WAITING = frozenset({JobStatus.WAITING})


@dataclass(frozen=True)
class Answered:
    """What `approve` / `reject` did: the records answered now, those answered before (with
    how), and the job after the answered records went on."""

    job: Job
    decision: str
    answered: list[str]
    already: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.job,
            "decision": self.decision,
            "answered": self.answered,
            "already": [{"record": key, "answer": how} for key, how in self.already],
            "status": self.job.to_json(),
        }


def answer(
    ctx: Context,
    job_id: int,
    decision: str,
    record: str | None = None,
    every: bool = False,
    where: str | None = None,
    on_progress: Callable[[Job], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
    detach: bool = False,
) -> Answered:
    """Approve or reject parked approval steps, then let the answered records go on here
    (unless the job is running elsewhere: its owner picks the answers up; or, `detach`, a
    runtime takes the waiting job up with its answers)."""
    from cxrun.runtime.runner import Runner

    if not (record or every or where):
        raise CxrunError("say which records: a RECORD key, --all, or --where SQL")
    found = job(ctx, job_id)
    table = job_table(ctx, job_id, where)
    with ctx.state.read() as con:
        targets = record_store.approval_targets(con, job_id, table, record, where)
        before = {
            seq: record_store.last_answer(con, job_id, seq)
            for seq, _, status, kind, answered in targets
            if not (status == "waiting" and kind == "approval" and answered is None)
        }
    if record and not targets:
        raise NotFound(
            f"job {job_id} has no record '{record}'",
            f"list the pending approvals with `cxrun approvals --job {job_id}`",
        )
    pending = [(seq, key) for seq, key, *_ in targets if seq not in before]
    already = []
    for seq, key, status, _, answered in targets:
        if seq in before:
            how = before[seq] or _pending_answer(status, answered)
            already.append((key, how or f"not awaiting approval (the record is {status})"))
    spinner = job_spinner(ctx, found)
    built = plugins_for(ctx, found.spinner, spinner) if pending else None
    now = utcnow()
    owner = owners.new_owner("answer")
    with ctx.state.write() as con:
        record_store.answer(con, job_id, [seq for seq, _ in pending], decision, now)
        # A waiting job goes on here; one that someone runs picks the answers up at the end of
        # its pass, and a queued or paused one when it is run.
        claimed = (
            pending
            and not detach
            and claim_store.claim(con, job_id, owner, now, lease_until(now), _WAITING)
        )
        if pending and not claimed:
            job_store.reword_waiting(con, job_id)  # "N answered, to go on" until it does
        current = job_store.get(con, job_id)
    if claimed:
        runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
        current = alerted(ctx, runner.run(job_id))
    return Answered(current, decision, [key for _, key in pending], already)


def _pending_answer(status: str, answer: str | None) -> str | None:
    if status == "waiting" and answer is not None:
        return f"{answer}d, not gone on yet"
    return None


def approvals(ctx: Context, job_id: int | None) -> list[dict[str, Any]]:
    with ctx.state.read() as con:
        if job_id is not None:
            job_store.get(con, job_id)
        return record_store.pending_approvals(con, job_id)
