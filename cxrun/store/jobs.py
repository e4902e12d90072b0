"""Jobs and their row selections: creating, reading, parking, pausing, cancelling, ending."""

from __future__ import annotations

import json
from dataclasses import fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import from_db, to_db, utcnow
from cxrun.base.enums import JobStatus, Priority
from cxrun.base.filters import JobFilter
from cxrun.base.models import Job, iso
from cxrun.base.sql import embed, quote_ident
from cxrun.store.tables import ROW, TableInfo

if TYPE_CHECKING:
    import duckdb

_JOB_COLUMNS = (
    "job, spinner, version, trigger, status, reason, table_name, total, cursor, completed, "
    "failed, skipped, waiting, cancelled, prompt_tokens, completion_tokens, cost, "
    "created_at, started_at, ended_at, paused_at, priority, alert_rules IS NOT NULL"
)


def _job(row: tuple[Any, ...]) -> Job:
    """A Job from a row of _JOB_COLUMNS (whose order is Job's field order)."""
    values = dict(zip((f.name for f in fields(Job)), row, strict=True))
    try:
        values["status"] = JobStatus(values["status"])
        values["priority"] = Priority(values["priority"])
    except ValueError:
        from cxrun.base.errors import StateDamaged

        what = "priority" if isinstance(values["status"], JobStatus) else "status"
        raise StateDamaged(f"job {values['job']} has the unknown {what} {values[what]!r}") from None
    for moment in ("created_at", "started_at", "ended_at", "paused_at"):
        values[moment] = from_db(values[moment])
    return Job(**values)


def create(
    con: duckdb.DuckDBPyConnection,
    spinner: str,
    version: int,
    trigger: str,
    table: TableInfo,
    conditions: list[str],
    limit: int | None,
    params: dict[str, Any],
    status: JobStatus,
    now: datetime,
    bindings: dict[str, Any] | None = None,
    priority: Priority = Priority.NORMAL,
    alert_rules: list[dict[str, Any]] | None = None,
) -> Job:
    """A new job over the rows of `table` that meet every condition (its snapshot of rows);
    `bindings` are the values of the parameters ($name) the conditions use; `alert_rules`: the
    rules its statuses are matched against (kept with it, as its spinner version is)."""
    row = con.execute("SELECT nextval('cx_job_ids')").fetchone()
    job = int(row[0]) if row else 0
    if conditions:
        where = " AND ".join(embed(c, con) for c in conditions)
        con.execute(
            f"INSERT INTO cx_selections SELECT $_cx_job, row_number() OVER (ORDER BY {ROW}) - 1, "
            f"{ROW} FROM (SELECT {ROW} FROM {table.sql} WHERE {where} ORDER BY {ROW} "
            "LIMIT $_cx_limit)",
            {**(bindings or {}), "_cx_job": job, "_cx_limit": limit},
        )
        counted = con.execute("SELECT count(*) FROM cx_selections WHERE job = ?", [job]).fetchone()
        total = int(counted[0]) if counted else 0
    else:
        total = table.rows if limit is None else min(limit, table.rows)
    con.execute(
        "INSERT INTO cx_jobs (job, spinner, version, trigger, status, reason, table_name, "
        "table_version, filtered, total, cursor, completed, failed, skipped, waiting, cancelled, "
        "params, created_at, started_at, ended_at, priority, alert_rules) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, ?, ?, ?, NULL, ?, ?)",
        [
            job,
            spinner,
            version,
            trigger,
            str(status),
            table.name,
            table.version,
            bool(conditions),
            total,
            json.dumps(params),
            to_db(now),
            to_db(now) if status == JobStatus.RUNNING else None,
            str(priority),
            json.dumps(alert_rules) if alert_rules else None,
        ],
    )
    return _on_status(con, get(con, job), now)


def get(con: duckdb.DuckDBPyConnection, job: int) -> Job:
    from cxrun.base.errors import NotFound

    row = con.execute(f"SELECT {_JOB_COLUMNS} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if not row:
        raise NotFound(f"no job {job}", "list jobs with `cxrun jobs`")
    return _job(row)


# Jobs by status, spinner, trigger, creation and reason (a JobFilter), each bound twice: None
# for any. The reason is matched as text that it contains, in any case (no LIKE wildcards).
_FILTER = (
    "($status IS NULL OR status = $status) AND ($spinner IS NULL OR spinner = $spinner) "
    "AND ($trigger IS NULL OR trigger = $trigger) "
    "AND ($since IS NULL OR created_at >= $since) "
    "AND ($reason IS NULL OR strpos(lower(reason), lower($reason)) > 0)"
)


def listing(
    con: duckdb.DuckDBPyConnection,
    filters: JobFilter,
    limit: int | None,
    offset: int = 0,
) -> list[Job]:
    """A page of the jobs that match, newest first (every one of them with no `limit`)."""
    rows = con.execute(
        f"SELECT {_JOB_COLUMNS} FROM cx_jobs WHERE {_FILTER} "
        "ORDER BY job DESC LIMIT $limit OFFSET $offset",
        {**_bound(filters), "limit": limit, "offset": offset},
    ).fetchall()
    return [_job(row) for row in rows]


def count(con: duckdb.DuckDBPyConnection, filters: JobFilter) -> int:
    """How many jobs `listing` pages through."""
    found = con.execute(f"SELECT count(*) FROM cx_jobs WHERE {_FILTER}", _bound(filters)).fetchone()
    return int(found[0]) if found else 0


def _bound(filters: JobFilter) -> dict[str, Any]:
    since = to_db(filters.since) if filters.since is not None else None
    return {
        "status": filters.status,
        "spinner": filters.spinner,
        "trigger": filters.trigger,
        "since": since,
        "reason": filters.reason,
    }


def last_status(con: duckdb.DuckDBPyConnection) -> dict[str, tuple[int, str]]:
    rows = con.execute(
        "SELECT spinner, max_by(job, job), max_by(status, job) FROM cx_jobs GROUP BY spinner"
    ).fetchall()
    return {spinner: (job, status) for spinner, job, status in rows}


def table_of(con: duckdb.DuckDBPyConnection, job: int) -> tuple[str, int, bool]:
    row = con.execute(
        "SELECT table_name, table_version, filtered FROM cx_jobs WHERE job = ?", [job]
    ).fetchone()
    assert row is not None
    return row[0], row[1], row[2]


def batch_source(job: int, table: TableInfo, filtered: bool, first: int, last: int) -> str:
    """The rows of sequence numbers first..last of a job, as a SQL relation."""
    if not filtered:
        return f"(SELECT * FROM {table.sql} WHERE {ROW} BETWEEN {int(first)} AND {int(last)})"
    return (
        f"(SELECT t.* FROM {table.sql} AS t SEMI JOIN (SELECT row FROM cx_selections "
        f"WHERE job = {int(job)} AND seq BETWEEN {int(first)} AND {int(last)}) AS s "
        f"ON t.{ROW} = s.row)"
    )


def rows_source(table: TableInfo, rows: list[int]) -> str:
    """Some rows of a table version (a retry's failed records), as a SQL relation."""
    listed = ", ".join(str(int(r)) for r in rows) or "NULL"
    return f"(SELECT * FROM {table.sql} WHERE {ROW} IN ({listed}))"


def waiting_reason(con: duckdb.DuckDBPyConnection, job: int) -> str | None:
    """Why a job waits: how many records, for what, and until when where known (records
    answered but not gone on yet are named apart: the next owner takes them on)."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE park_kind = 'approval' AND decision IS NULL), "
        "count(*) FILTER (WHERE park_kind <> 'approval'), "
        "count(*) FILTER (WHERE park_kind = 'approval' AND decision IS NOT NULL), "
        "min(wake_at) FILTER (WHERE decision IS NULL) "
        "FROM cx_records WHERE job = ? AND status = 'waiting'",
        [job],
    ).fetchone()
    if not row or not (row[0] or row[1] or row[2]):
        return None
    approvals, timers, answered, first = int(row[0]), int(row[1]), int(row[2]), from_db(row[3])
    parts = [f"{timers} record(s) waiting"] if timers else []
    parts += [f"{approvals} awaiting approval"] if approvals else []
    parts += [f"{answered} answered, to go on"] if answered else []
    until = f" until {iso(first)}" if first is not None else ""
    return ", ".join(parts) + (f"; the next{until}" if until else "")


def reword_waiting(con: duckdb.DuckDBPyConnection, job: int) -> None:
    """A waiting job's reason, said again after some of its records were answered."""
    con.execute(
        "UPDATE cx_jobs SET reason = ? WHERE job = ? AND status = 'waiting'",
        [waiting_reason(con, job), job],
    )


def park(con: duckdb.DuckDBPyConnection, job: int, reason: str | None) -> Job:
    """The job's pass is over but records are parked: it waits (no owner meanwhile)."""
    con.execute(
        "UPDATE cx_jobs SET status = 'waiting', reason = ?, owner = NULL, owner_pid = NULL, "
        "owner_host = NULL, lease_until = NULL, control = NULL WHERE job = ?",
        [reason, job],
    )
    return _on_status(con, get(con, job))


# A job that becomes paused notes when (a paused one keeps its moment; any other status has none).
PAUSED_AT = (
    "paused_at = CASE WHEN $status <> 'paused' THEN NULL "
    "WHEN status = 'paused' THEN paused_at ELSE $now END"
)


def set_status(
    con: duckdb.DuckDBPyConnection,
    job: int,
    status: JobStatus,
    reason: str | None,
    now: datetime | None = None,
) -> Job:
    """The status the owner keeps the job under (rate limited, running again), set `now`."""
    con.execute(
        f"UPDATE cx_jobs SET {PAUSED_AT}, status = $status, reason = $reason WHERE job = $job",
        {"status": str(status), "reason": reason, "job": job, "now": to_db(now or utcnow())},
    )
    return _on_status(con, get(con, job), now)


def finish(
    con: duckdb.DuckDBPyConnection, job: int, status: JobStatus, reason: str | None, now: datetime
) -> Job:
    """The job ends with `status` (a job that never started keeps no start time)."""
    con.execute(
        "UPDATE cx_jobs SET status = ?, reason = ?, ended_at = ?, paused_at = NULL, "
        "owner = NULL, owner_pid = NULL, owner_host = NULL, lease_until = NULL, control = NULL "
        "WHERE job = ?",
        [str(status), reason, to_db(now), job],
    )
    return _on_status(con, get(con, job), now)


NO_OWNER = "owner = NULL, owner_pid = NULL, owner_host = NULL, lease_until = NULL"


def cancel_now(con: duckdb.DuckDBPyConnection, job: int, now: datetime) -> Job:
    """The job ends cancelled: parked records, and the rows no batch reached (written now as
    records), are cancelled; a retry not carried out is dropped."""
    con.execute(
        "UPDATE cx_records SET status = 'cancelled', error = 'cancelled by an operator' "
        "WHERE job = ? AND status = 'waiting'",
        [job],
    )
    con.execute("UPDATE cx_records SET restart = NULL WHERE job = ? AND restart", [job])
    _cancel_unreached(con, get(con, job), now)
    con.execute(
        "UPDATE cx_jobs SET status = 'cancelled', reason = 'cancelled by an operator', "
        "cancelled = cancelled + total - cursor + waiting, cursor = total, waiting = 0, "
        f"control = NULL, {NO_OWNER}, ended_at = ?, paused_at = NULL WHERE job = ?",
        [to_db(now), job],
    )
    return _on_status(con, get(con, job), now)


def _cancel_unreached(con: duckdb.DuckDBPyConnection, job: Job, now: datetime) -> None:
    """Records for the rows of the job's snapshot that no batch reached, as cancelled."""
    if job.processed >= job.total:
        return
    from cxrun.store import tables as table_store

    name, number, filtered = table_of(con, job.job)
    table = table_store.version(con, name, number)
    key = con.execute(
        "SELECT spec->>'key' FROM cx_spinners WHERE spinner = ? AND version = ?",
        [job.spinner, job.version],
    ).fetchone()
    if table is None or key is None:
        return
    source = batch_source(job.job, table, filtered, job.processed, job.total - 1)
    con.execute(
        f"INSERT INTO cx_records (job, seq, key, status, tags, outputs, error, attempts, "
        f"ended_at) SELECT ?, {ROW}, CAST({quote_ident(str(key[0]))} AS VARCHAR), 'cancelled', "
        f"[], '{{}}', 'cancelled by an operator', 0, ? FROM {source}",
        [job.job, to_db(now)],
    )


def pause_now(
    con: duckdb.DuckDBPyConnection, job: int, reason: str, now: datetime | None = None
) -> Job:
    """The job waits for `cxrun resume`, its finished work kept, with no owner; paused `now`."""
    con.execute(
        f"UPDATE cx_jobs SET {PAUSED_AT}, status = $status, reason = $reason, control = NULL, "
        f"{NO_OWNER} WHERE job = $job",
        {"status": "paused", "reason": reason, "job": job, "now": to_db(now or utcnow())},
    )
    return _on_status(con, get(con, job), now)


def _on_status(con: duckdb.DuckDBPyConnection, job: Job, now: datetime | None = None) -> Job:
    from cxrun.store.alerts import on_status

    return on_status(con, job, now)
