"""Read-only monitoring queries: one job's counts and step timings, and the Live Ops summary."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun.base import owners
from cxrun.base.clock import from_db, to_db
from cxrun.base.models import iso
from cxrun.base.sql import quote_ident
from cxrun.store import claims as claim_store
from cxrun.store import steps
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

RUNTIME_FRESH = timedelta(minutes=2)  # a runtime is up while its heartbeat is younger than this


@dataclass(frozen=True)
class StepStats:
    """One step of one job: how its records came out (their latest attempt) and its timing."""

    pos: int
    step: str
    completed: int = 0
    failed: int = 0
    skipped: int = 0
    waiting: int = 0
    attempts: int = 0
    median_ms: float | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "position": self.pos,
            "completed": self.completed,
            "failed": self.failed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "attempts": self.attempts,
            "median_ms": None if self.median_ms is None else round(self.median_ms, 3),
        }


@dataclass(frozen=True)
class Progress:
    """What a job has written so far: records, and when the first began and the last ended."""

    records: int
    first_started_at: datetime | None
    last_ended_at: datetime | None


@dataclass(frozen=True)
class Lease:
    """Who runs a job, and until when that claim holds without a heartbeat."""

    owner: str | None
    pid: int | None
    host: str | None
    lease_until: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "owner": self.owner,
            "owner_pid": self.pid,
            "owner_host": self.host,
            "lease_until": iso(self.lease_until),
        }


@dataclass(frozen=True)
class Stalled:
    """A running job that has written nothing for a while."""

    job: int
    spinner: str
    last_progress_at: datetime | None
    lease: Lease

    def idle_s(self, now: datetime) -> float | None:
        if self.last_progress_at is None:
            return None
        return round((now - self.last_progress_at).total_seconds(), 3)

    def to_json(self, now: datetime) -> dict[str, Any]:
        return {
            "job": self.job,
            "spinner": self.spinner,
            "last_progress_at": iso(self.last_progress_at),
            "idle_s": self.idle_s(now),
            **self.lease.to_json(),
        }


@dataclass(frozen=True)
class StepFailures:
    """Failed attempts of one step of one spinner within a time window."""

    spinner: str
    step: str
    failures: int
    records: int
    last_failed_at: datetime | None
    last_error: str | None

    def to_json(self) -> dict[str, Any]:
        return {
            "spinner": self.spinner,
            "step": self.step,
            "failures": self.failures,
            "records": self.records,
            "last_failed_at": iso(self.last_failed_at),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class Runtime:
    """A `cxrun runtime` process as its heartbeats describe it."""

    id: str
    pid: int
    host: str
    started_at: datetime | None
    heartbeat_at: datetime | None

    def to_json(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "pid": self.pid,
            "host": self.host,
            "started_at": iso(self.started_at),
            "heartbeat_at": iso(self.heartbeat_at),
        }


# ---- one job ------------------------------------------------------------------------------


def step_stats(con: duckdb.DuckDBPyConnection, job: int) -> list[StepStats]:
    """Per step position: records by the status of their latest attempt, attempts made, and the
    median duration of the attempts that ran (completed or failed); read from store/steps.py's
    tables, not from the journey."""
    return [
        StepStats(int(pos), str(step), int(ok), int(bad), int(skip), int(wait), int(tries), ms)
        for pos, step, ok, bad, skip, wait, tries, ms in steps.stats(con, job)
    ]


def progress(con: duckdb.DuckDBPyConnection, job: int) -> Progress:
    row = con.execute(
        "SELECT count(*), min(started_at), max(ended_at) FROM cx_records WHERE job = ?", [job]
    ).fetchone()
    if not row:
        return Progress(0, None, None)
    return Progress(int(row[0]), from_db(row[1]), from_db(row[2]))


def lease(con: duckdb.DuckDBPyConnection, job: int) -> Lease:
    row = con.execute(
        "SELECT owner, owner_pid, owner_host, lease_until FROM cx_jobs WHERE job = ?", [job]
    ).fetchone()
    if not row:
        return Lease(None, None, None, None)
    return Lease(row[0], row[1], row[2], from_db(row[3]))


# ---- Live Ops -----------------------------------------------------------------------------


def jobs_by_status(con: duckdb.DuckDBPyConnection) -> dict[str, int]:
    rows = con.execute("SELECT status, count(*) FROM cx_jobs GROUP BY status").fetchall()
    return {str(status): int(count) for status, count in rows}


# When each of some jobs last wrote a record: only their records are read (the others' row
# groups are skipped), so Live Ops costs as much in a state of a thousand finished jobs as in one.
_LAST_RECORD = (
    "SELECT job, max(ended_at) AS last FROM cx_records "
    "WHERE job IN (SELECT job FROM cx_jobs WHERE {jobs}) GROUP BY job"
)


_RUNNING = "status = 'running'"


def stalled(con: duckdb.DuckDBPyConnection, before: datetime) -> list[Stalled]:
    """Running jobs whose last progress (the last record written, else their start) is older
    than `before`."""
    rows = con.execute(
        "SELECT j.job, j.spinner, coalesce(r.last, j.started_at, j.created_at) AS progress, "
        "j.owner, j.owner_pid, j.owner_host, j.lease_until FROM cx_jobs AS j "
        f"LEFT JOIN ({_LAST_RECORD.format(jobs=_RUNNING)}) AS r "
        "USING (job) WHERE j.status = 'running' AND progress < ? ORDER BY j.job",
        [to_db(before)],
    ).fetchall()
    return [
        Stalled(int(job), spinner, from_db(last), Lease(owner, pid, host, from_db(until)))
        for job, spinner, last, owner, pid, host, until in rows
    ]


def step_failures(con: duckdb.DuckDBPyConnection, since: datetime) -> list[StepFailures]:
    """Failed attempts per spinner and step that ended at or after `since`, most first."""
    rows = con.execute(
        "SELECT j.spinner, e.step, count(*), count(DISTINCT (e.job, e.seq)), max(e.ended_at), "
        "arg_max(e.error, e.ended_at) FROM cx_journey AS e JOIN cx_jobs AS j USING (job) "
        "WHERE e.status = 'failed' AND e.ended_at >= ? "
        "GROUP BY j.spinner, e.step ORDER BY count(*) DESC, j.spinner, e.step",
        [to_db(since)],
    ).fetchall()
    return [
        StepFailures(spinner, step, int(n), int(records), from_db(last), error)
        for spinner, step, n, records, last, error in rows
    ]


def runtimes_up(
    con: duckdb.DuckDBPyConnection, now: datetime, alive: Callable[[int], bool] = owners.alive
) -> list[Runtime]:
    """Runtimes not stopped whose last heartbeat is within RUNTIME_FRESH of `now` (and, on this
    host, whose process is alive: a runtime killed with -9 is down at once)."""
    rows = con.execute(
        "SELECT id, pid, host, started_at, heartbeat_at FROM cx_runtimes "
        "WHERE stopped_at IS NULL AND heartbeat_at >= ? ORDER BY heartbeat_at DESC",
        [to_db(now - RUNTIME_FRESH)],
    ).fetchall()
    here = owners.this_host()
    return [_runtime(row) for row in rows if row[2] != here or alive(int(row[1]))]


def orphans(
    con: duckdb.DuckDBPyConnection, now: datetime, alive: Callable[[int], bool] = owners.alive
) -> list[Stalled]:
    """Jobs held by an owner that is gone (a dead process here, a lease run out elsewhere):
    the next runtime takes them over."""
    rows = con.execute(
        "SELECT j.job, j.spinner, coalesce(r.last, j.started_at, j.created_at), "
        "j.owner, j.owner_pid, j.owner_host, j.lease_until FROM cx_jobs AS j "
        f"LEFT JOIN ({_LAST_RECORD.format(jobs='owner IS NOT NULL')}) AS r "
        "USING (job) WHERE j.owner IS NOT NULL ORDER BY j.job"
    ).fetchall()
    gone = set(claim_store.claimable(con, now, owners.this_host(), alive))
    return [
        Stalled(int(job), spinner, from_db(last), Lease(owner, pid, host, from_db(until)))
        for job, spinner, last, owner, pid, host, until in rows
        if int(job) in gone
    ]


def last_heartbeat(con: duckdb.DuckDBPyConnection) -> datetime | None:
    """When any runtime last said it was alive (or stopped), if one ever ran."""
    row = con.execute("SELECT max(heartbeat_at) FROM cx_runtimes").fetchone()
    return from_db(row[0]) if row else None


def _runtime(row: tuple[Any, ...]) -> Runtime:
    return Runtime(str(row[0]), int(row[1]), str(row[2]), from_db(row[3]), from_db(row[4]))


# ---- doctor -------------------------------------------------------------------------------


def queued_jobs(con: duckdb.DuckDBPyConnection, spinner: str | None = None) -> int:
    row = con.execute(
        "SELECT count(*) FROM cx_jobs WHERE status = 'queued' AND (? IS NULL OR spinner = ?)",
        [spinner, spinner],
    ).fetchone()
    return int(row[0]) if row else 0


def empty_values(
    con: duckdb.DuckDBPyConnection, table: TableInfo, columns: list[str]
) -> dict[str, int]:
    """How many rows of the table have each of these (existing) columns empty, as the runtime's
    required-field check sees them (NULL or blank)."""
    if not columns:
        return {}
    counts = ", ".join(
        f"count(*) FILTER (WHERE {quote_ident(c)} IS NULL OR "
        f"trim(CAST({quote_ident(c)} AS VARCHAR)) = '')"
        for c in columns
    )
    row = con.execute(f"SELECT {counts} FROM {table.sql}").fetchone()
    return dict(zip(columns, (int(n) for n in row or ()), strict=False))
