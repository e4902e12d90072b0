"""A runner's hold on its job: changes made only while the runner owns it, and its lease."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING

from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.runtime import signals
from cxrun.runtime.spool import Spool
from cxrun.store import State
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Hold:
    """A runner's changes to its job in the state, each made only while it still owns the job:
    settled, released, a request carried out, handed back to the queue; and its lease renewed."""

    state: State
    clock: Callable[[], datetime]
    owner: Owner | None
    lease: float
    stop: Callable[[], bool]

    def settle(self, job_id: int, change: Callable[[duckdb.DuckDBPyConnection, Job], Job]) -> Job:
        """Change the job in one write transaction, if this runner still owns it."""
        with self.state.write() as con:
            job = job_store.get(con, job_id)
            if self.owner is not None and not claim_store.holds(con, job_id, self.owner):
                return job  # another owner took it: nothing here is ours to change
            return change(con, job)

    def release(self, job_id: int, status: JobStatus, reason: str | None) -> Job:
        """The job leaves this owner: paused (for `cxrun resume`), or ended."""
        if status == JobStatus.PAUSED:
            why = reason or "paused"
            return self.settle(
                job_id, lambda con, _: job_store.pause_now(con, job_id, why, self.clock())
            )
        now = self.clock()
        return self.settle(
            job_id, lambda con, job: job_store.finish(con, job_id, status, reason, now)
        )

    def obey_now(self, job: int, action: str) -> Job:
        return self.settle(job, lambda con, _: self.obey(con, job, action))

    def obey(self, con: duckdb.DuckDBPyConnection, job: int, action: str) -> Job:
        """Carry out a request: the finished batches stay; calls finished since are spooled
        (kept for a resume, dropped by a cancel)."""
        signals.clear(self.state.dir, job)
        if action == "cancel":
            Spool(self.state.dir, job).close(remove=True)
            return job_store.cancel_now(con, job, self.clock())
        if action == "pause":
            return job_store.pause_now(con, job, "paused by an operator", self.clock())
        return self._requeue(con, job)

    def _requeue(self, con: duckdb.DuckDBPyConnection, job: int) -> Job:
        assert self.owner is not None
        claim_store.requeue(con, job, self.owner)
        return job_store.get(con, job)

    def check_stop(self, job: Job) -> None:
        """Between batches: a runtime that stops gives the job back to the queue."""
        if self.owner is not None and self.stop():
            raise Stopped(self.settle(job.job, lambda con, _: self._requeue(con, job.job)))

    def renew(self, job: int) -> bool:
        assert self.owner is not None
        with self.state.write() as con:
            return claim_store.renew(con, job, self.owner, self.lease_end())

    def lease_end(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease)

    def set_status(self, job: int, status: JobStatus, reason: str | None) -> Job:
        """A status the owner keeps the job under (rate limited, running again)."""
        return self.settle(
            job, lambda con, _: job_store.set_status(con, job, status, reason, self.clock())
        )

    def rate_limited(self, job: int, until: datetime) -> None:
        self.set_status(
            job, JobStatus.PAUSED, f"rate limited until {until.isoformat(timespec='seconds')}"
        )


class Stopped(Exception):
    """The runtime is stopping: the job went back to the queue between two batches."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job} handed back")
        self.job = job


class LostJob(Exception):
    """The job's lease ran out and another runtime took it."""
