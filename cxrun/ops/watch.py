"""Watching the work: one job in detail, and the Live Ops summary."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cxrun.base import owners
from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus, RecordStatus
from cxrun.base.models import Job, iso
from cxrun.store import alerts as alert_store
from cxrun.store import jobs as job_store
from cxrun.store import monitor as monitor_store
from cxrun.store import spinners as spinner_store
from cxrun.store import triggers as trigger_store
from cxrun.store.context import Context
from cxrun.store.monitor import Lease, Progress, Runtime, Stalled, StepFailures, StepStats

FAILURE_WINDOW = timedelta(hours=1)
RUNTIME_FIX = "start `cxrun runtime` (or run `cxrun runtime --once` from cron)"


@dataclass(frozen=True)
class JobDetail:
    """One job: its counts, records by status, each step's results and timing, ETA, owner."""

    job: Job
    records: dict[str, int]
    steps: list[StepStats]
    lease: Lease
    rate_per_s: float | None
    eta_s: float | None
    now: datetime
    errors: list[dict[str, str]] | None = None  # why an event's payload did not fit
    alerts: list[dict[str, Any]] = field(default_factory=list)  # sent of its statuses

    def to_json(self) -> dict[str, Any]:
        return {
            **self.job.to_json(),
            "duration_s": self.job.duration_s(self.now),
            "records": self.records,
            "steps": [step.to_json() for step in self.steps],
            "rate_per_s": None if self.rate_per_s is None else round(self.rate_per_s, 3),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            **self.lease.to_json(),
            **({"errors": self.errors} if self.errors is not None else {}),
            "alerts": [
                {k: iso(v) if isinstance(v, datetime) else v for k, v in alert.items()}
                for alert in self.alerts
            ],
        }


def job_detail(ctx: Context, job_id: int, now: datetime | None = None) -> JobDetail:
    """A job in detail; NotFound for an unknown job. The ETA is only known while it runs."""
    now = now or utcnow()
    with ctx.state.read() as con:
        job = job_store.get(con, job_id)
        stats = monitor_store.step_stats(con, job_id)
        version = spinner_store.version(con, job.spinner, job.version)
        running = job.status == JobStatus.RUNNING  # only a running job has an ETA
        done = monitor_store.progress(con, job_id) if running else Progress(0, None, None)
        lease = monitor_store.lease(con, job_id)
        errors = trigger_store.payload_errors(con, job_id)
        alerts = alert_store.of_job(con, job_id)
    rate, eta = _eta(job, done, now)
    ids = [str(step["id"]) for step in version.spec["steps"]] if version else []
    counted = _record_counts(job)
    steps = _all_steps(ids, stats)
    return JobDetail(job, counted, steps, lease, rate, eta, now, errors, alerts)


def _record_counts(job: Job) -> dict[str, int]:
    """Records by status, every status listed, from the job's counts (which its records match):
    the rows no batch reached yet are pending."""
    result = {str(status): 0 for status in RecordStatus}
    for status in ("completed", "failed", "skipped", "waiting", "cancelled"):
        result[status] = getattr(job, status)
    result["pending"] = max(0, job.total - sum(result.values()))
    return result


def _all_steps(ids: list[str], stats: list[StepStats]) -> list[StepStats]:
    """Every step of the spinner version in order (zeros where no record reached it yet), with
    the required-fields check first when records failed it."""
    by_pos = {s.pos: s for s in stats}
    listed = [by_pos.get(pos, StepStats(pos, step)) for pos, step in enumerate(ids)]
    extra = [s for s in stats if s.pos < 0 or s.pos >= len(ids)]
    return sorted(extra + listed, key=lambda s: s.pos)


def _eta(job: Job, done: Progress, now: datetime) -> tuple[float | None, float | None]:
    """Records per second since the first record began, and the seconds left at that rate;
    (None, None) unless the job is running and has written records."""
    if job.status != JobStatus.RUNNING or not done.records or done.first_started_at is None:
        return None, None
    elapsed = (now - done.first_started_at).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = done.records / elapsed
    left = job.total - job.processed
    return rate, (left / rate if left > 0 else None)


@dataclass(frozen=True)
class Live:
    """The Live Ops summary: jobs by status, stalled jobs, recent failures, the runtime."""

    now: datetime
    stall_minutes: float
    jobs: dict[str, int]
    stalled: list[Stalled]
    failures: list[StepFailures]
    runtimes: list[Runtime]
    last_heartbeat_at: datetime | None
    orphaned: list[Stalled]  # jobs whose owner is gone
    queued: int

    @property
    def runtime_up(self) -> bool:
        return bool(self.runtimes)

    @property
    def warnings(self) -> list[str]:
        """What needs an operator: jobs whose owner is gone, queued jobs with no runtime."""
        found = [orphan_line(o) for o in self.orphaned]
        if self.queued and not self.runtime_up:
            found.append(f"{self.queued} job(s) queued and no runtime is up: {RUNTIME_FIX}")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now),
            "jobs": self.jobs,
            "stall_minutes": self.stall_minutes,
            "stalled": [s.to_json(self.now) for s in self.stalled],
            "orphaned": [o.to_json(self.now) for o in self.orphaned],
            "warnings": self.warnings,
            "failures_since": iso(self.now - FAILURE_WINDOW),
            "failures": [f.to_json() for f in self.failures],
            "runtime": {
                "up": self.runtime_up,
                "runtimes": [r.to_json() for r in self.runtimes],
                "last_heartbeat_at": iso(self.last_heartbeat_at),
            },
        }


def live(ctx: Context, stall_minutes: float = 5, now: datetime | None = None) -> Live:
    """Running jobs with no progress for `stall_minutes` are stalled; failures are counted over
    the last hour; a runtime is up while it beats (every few seconds) and has not stopped."""
    now = now or utcnow()
    with ctx.state.read() as con:
        counts = monitor_store.jobs_by_status(con)
        stalled = monitor_store.stalled(con, now - timedelta(minutes=stall_minutes))
        failures = monitor_store.step_failures(con, now - FAILURE_WINDOW)
        runtimes = monitor_store.runtimes_up(con, now)
        last = monitor_store.last_heartbeat(con)
        orphaned = monitor_store.orphans(con, now)
    jobs = {str(status): counts.get(str(status), 0) for status in JobStatus}
    queued = jobs[str(JobStatus.QUEUED)]
    return Live(now, stall_minutes, jobs, stalled, failures, runtimes, last, orphaned, queued)


def orphan_line(orphan: Stalled) -> str:
    lease = orphan.lease
    where = f"pid {lease.pid}" + ("" if lease.host == owners.this_host() else f" on {lease.host}")
    return (
        f"job {orphan.job} ({orphan.spinner}): its owner ({where}) is gone; "
        f"`cxrun runtime` takes it over, or `cxrun resume {orphan.job}` continues it here"
    )
