"""Who owns a job: claims, leases, releases, control requests and runtime heartbeats."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TYPE_CHECKING

from cxrun.base import owners
from cxrun.base.clock import from_db, to_db
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.store.history import log_status
from cxrun.store.jobs import NO_OWNER, get

if TYPE_CHECKING:
    import duckdb

Alive = Callable[[int], bool]
CLAIMABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED})
_OWNED = "owner, owner_pid, owner_host, lease_until"


def gone(
    pid: int | None,
    host: str | None,
    lease: datetime | None,
    now: datetime,
    here: str,
    alive: Alive,
) -> bool:
    """Whether an owner is gone: a dead process on this host, or elsewhere a lease run out (a live
    process here keeps its job whatever its lease says)."""
    if host == here and pid is not None:
        return not alive(pid)
    return lease is None or lease < to_db(now)


def claimable(
    con: duckdb.DuckDBPyConnection, now: datetime, host: str, alive: Alive = owners.alive
) -> list[int]:
    """Jobs a runtime may take, oldest first: queued ones, and running (or rate-limited) ones whose
    owner is gone."""
    rows = con.execute(
        f"SELECT job, status, {_OWNED} FROM cx_jobs WHERE status = 'queued' "
        "OR (status IN ('running', 'paused') AND owner IS NOT NULL) ORDER BY job"
    ).fetchall()
    return [
        int(job)
        for job, status, owner, pid, owner_host, lease in rows
        if owner is None or gone(pid, owner_host, lease, now, host, alive)
    ]


def due_jobs(con: duckdb.DuckDBPyConnection, now: datetime) -> list[int]:
    """Waiting jobs with parked records that may go on, oldest first."""
    rows = con.execute(
        "SELECT DISTINCT r.job FROM cx_records AS r JOIN cx_jobs AS j ON j.job = r.job "
        "WHERE j.status = 'waiting' AND r.status = 'waiting' "
        "AND (r.decision IS NOT NULL OR r.wake_at <= ?) ORDER BY r.job",
        [to_db(now)],
    ).fetchall()
    return [int(r[0]) for r in rows]


def claim(
    con: duckdb.DuckDBPyConnection,
    job: int,
    owner: Owner,
    now: datetime,
    lease_until: datetime,
    statuses: frozenset[JobStatus] = CLAIMABLE,
    alive: Alive = owners.alive,
) -> Job | None:
    """The one way a job becomes runnable by someone: when its status is one of `statuses` and no
    live owner holds it, it is running, owned by `owner`, its lease running to `lease_until`.
    None when it is not free (another live owner, or another status). Runs in the caller's write
    transaction, which may have made the job runnable just before (created, reopened, answered)."""
    row = con.execute(f"SELECT status, {_OWNED} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if row is None:
        return None
    status, holder, pid, host, lease = row
    if status not in statuses:
        return None
    held = holder is not None and holder != owner.id
    if held and not gone(pid, host, lease, now, owner.host, alive):
        return None
    con.execute(
        "UPDATE cx_jobs SET status = 'running', reason = NULL, paused_at = NULL, owner = ?, "
        "owner_pid = ?, owner_host = ?, lease_until = ?, started_at = coalesce(started_at, ?), "
        "ended_at = NULL "
        "WHERE job = ?",
        [owner.id, owner.pid, owner.host, to_db(lease_until), to_db(now), job],
    )
    return log_status(con, get(con, job), now)


def queue(
    con: duckdb.DuckDBPyConnection,
    job: int,
    now: datetime,
    statuses: frozenset[JobStatus],
    alive: Alive = owners.alive,
) -> Job | None:
    """Hand a job to the runtimes: queued, without an owner, when its status is one of
    `statuses` and no live owner holds it; None when it is not free. In the caller's write
    transaction, like `claim`."""
    row = con.execute(f"SELECT status, {_OWNED} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if row is None or row[0] not in statuses:
        return None
    if row[1] is not None and not gone(row[2], row[3], row[4], now, owners.this_host(), alive):
        return None
    con.execute(
        f"UPDATE cx_jobs SET status = 'queued', reason = NULL, ended_at = NULL, {NO_OWNER} "
        "WHERE job = ?",
        [job],
    )
    return log_status(con, get(con, job), now)


def holder(
    con: duckdb.DuckDBPyConnection, job: int, now: datetime, alive: Alive = owners.alive
) -> Owner | None:
    """The job's live owner, if it has one."""
    row = con.execute(f"SELECT {_OWNED} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if row is None or row[0] is None:
        return None
    if gone(row[1], row[2], row[3], now, owners.this_host(), alive):
        return None
    return Owner(str(row[0]), int(row[1] or 0), str(row[2]))


def holds(con: duckdb.DuckDBPyConnection, job: int, owner: Owner) -> bool:
    """Whether `owner` still owns the job (it may write to it and release it)."""
    row = con.execute("SELECT owner FROM cx_jobs WHERE job = ?", [job]).fetchone()
    return bool(row and row[0] == owner.id)


def renew(con: duckdb.DuckDBPyConnection, job: int, owner: Owner, lease_until: datetime) -> bool:
    """Extend the lease; False when another owner has taken the job meanwhile."""
    row = con.execute(
        "UPDATE cx_jobs SET lease_until = ? WHERE job = ? AND owner = ?",
        [to_db(lease_until), job, owner.id],
    ).fetchone()
    return bool(row and row[0])


def requeue(con: duckdb.DuckDBPyConnection, job: int, owner: Owner) -> None:
    """Give a job back to the queue, its finished work kept (an owner that stops on purpose)."""
    con.execute(
        f"UPDATE cx_jobs SET status = 'queued', reason = NULL, {NO_OWNER} "
        "WHERE job = ? AND owner = ? AND status IN ('running', 'paused')",
        [job, owner.id],
    )
    log_status(con, get(con, job))


def runtime_beat(
    con: duckdb.DuckDBPyConnection, owner: Owner, now: datetime, stopped: bool
) -> None:
    """A runtime says it is alive (or that it stopped)."""
    row = con.execute("SELECT count(*) FROM cx_runtimes WHERE id = ?", [owner.id]).fetchone()
    if not row or not row[0]:
        con.execute(
            "INSERT INTO cx_runtimes VALUES (?, ?, ?, ?, ?, NULL)",
            [owner.id, owner.pid, owner.host, to_db(now), to_db(now)],
        )
    con.execute(
        "UPDATE cx_runtimes SET heartbeat_at = ?, stopped_at = ? WHERE id = ?",
        [to_db(now), to_db(now) if stopped else None, owner.id],
    )


def owner_of(
    con: duckdb.DuckDBPyConnection, job: int
) -> tuple[str | None, int | None, str | None, datetime | None]:
    row = con.execute(f"SELECT {_OWNED} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    assert row is not None
    return row[0], row[1], row[2], from_db(row[3])


def request(con: duckdb.DuckDBPyConnection, job: int, action: str | None) -> None:
    """Ask a job's owner to cancel or pause it (it notices within a second)."""
    con.execute("UPDATE cx_jobs SET control = ? WHERE job = ?", [action, job])


def control_of(con: duckdb.DuckDBPyConnection, job: int) -> str | None:
    row = con.execute("SELECT control FROM cx_jobs WHERE job = ?", [job]).fetchone()
    return str(row[0]) if row and row[0] else None
