"""A job's records and what they left: journeys, outbox rows, retries, approvals."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import from_db, to_db
from cxrun.base.models import Job, JourneyEntry, Record, iso
from cxrun.base.sql import embed, quote_ident
from cxrun.store.jobs import batch_source, table_of
from cxrun.store.tables import ROW, TableInfo

if TYPE_CHECKING:
    import duckdb


def failed_records(
    con: duckdb.DuckDBPyConnection,
    job: int,
    key: str | None,
    table: TableInfo,
    where: str | None = None,
) -> list[tuple[int, str | None, int]]:
    """(row, failed step id, attempts) of a job's failed records: one of them (`key`), or
    those whose row meets `where` (a checked SQL condition), or all."""
    rows = f" AND seq IN (SELECT {ROW} FROM {table.sql} WHERE {embed(where, con)})" if where else ""
    return [
        (int(seq), step, int(attempts))
        for seq, step, attempts in con.execute(
            "SELECT seq, failed_step, attempts FROM cx_records WHERE job = ? AND status = 'failed' "
            f"AND (? IS NULL OR key = ?){rows} ORDER BY seq",
            [job, key, key],
        ).fetchall()
    ]


def due_records(con: duckdb.DuckDBPyConnection, job: int, now: datetime) -> list[tuple[Any, ...]]:
    """(row, parked step, what holds it, its answer, attempts) of a job's parked records that
    may go on: answered, or their time has come."""
    return con.execute(
        "SELECT seq, park_pos, park_kind, decision, attempts FROM cx_records WHERE job = ? "
        "AND status = 'waiting' AND (decision IS NOT NULL OR wake_at <= ?) ORDER BY seq",
        [job, to_db(now)],
    ).fetchall()


_PAGED = "job = $job AND ($status IS NULL OR status = $status) AND seq"


def records(
    con: duckdb.DuckDBPyConnection,
    job: int,
    table: TableInfo,
    status: str | None,
    limit: int,
    offset: int,
) -> list[Record]:
    # Seqs are distinct and not negative, so the record at place `offset` has seq >= offset: the
    # page is read from there (the row groups before it are never scanned, nor sorted), skipping
    # those records from there on that come before the page.
    values = {"job": job, "status": status, "offset": offset}
    before = con.execute(f"SELECT count(*) FROM cx_records WHERE {_PAGED} < $offset", values)
    counted = before.fetchone()
    skip = offset - (int(counted[0]) if counted else 0)
    rows = con.execute(
        "SELECT seq, key, status, tags, outputs, error, failed_step, attempts, duration_ms "
        f"FROM cx_records WHERE {_PAGED} >= $offset ORDER BY seq LIMIT $limit OFFSET $skip",
        {**values, "limit": limit, "skip": skip},
    ).fetchall()
    metadata = _metadata(con, table, [r[0] for r in rows])
    return [
        Record(
            job,
            key,
            status,
            metadata.get(seq, {}),
            list(tags or []),
            json.loads(outputs or "{}"),
            error,
            failed_step,
            attempts,
            duration,
        )
        for seq, key, status, tags, outputs, error, failed_step, attempts, duration in rows
    ]


def pending_records(
    con: duckdb.DuckDBPyConnection, job: Job, table: TableInfo, key: str, limit: int, offset: int
) -> list[Record]:
    """Rows of the job's snapshot that no batch has reached yet."""
    _, _, filtered = table_of(con, job.job)
    first = job.processed + offset
    last = min(first + limit, job.total) - 1
    if last < first:
        return []
    source = batch_source(job.job, table, filtered, first, last)
    rows = con.execute(
        f"SELECT {ROW}, CAST({quote_ident(key)} AS VARCHAR) FROM {source} ORDER BY {ROW}"
    ).fetchall()
    metadata = _metadata(con, table, [r[0] for r in rows])
    return [
        Record(job.job, k, "pending", metadata.get(s, {}), [], {}, None, None, 0, None)
        for s, k in rows
    ]


def _metadata(
    con: duckdb.DuckDBPyConnection, table: TableInfo, seqs: list[int]
) -> dict[int, dict[str, Any]]:
    if not seqs:
        return {}
    rows = con.execute(
        f"SELECT {ROW}, to_json(t) FROM (SELECT * FROM {table.sql} WHERE {ROW} IN "
        f"(SELECT unnest(?))) AS t",
        [seqs],
    ).fetchall()
    result = {}
    for seq, text in rows:
        values = json.loads(text)
        values.pop(ROW, None)
        result[int(seq)] = values
    return result


def unreached(
    con: duckdb.DuckDBPyConnection, job: Job, table: TableInfo, key: str, record: str
) -> bool:
    """Whether `record` is the key of a row of the job's snapshot that no batch has written yet."""
    if job.processed >= job.total:
        return False
    _, _, filtered = table_of(con, job.job)
    source = batch_source(job.job, table, filtered, job.processed, job.total - 1)
    found = con.execute(
        f"SELECT 1 FROM {source} WHERE CAST({quote_ident(key)} AS VARCHAR) = ? LIMIT 1", [record]
    ).fetchone()
    return found is not None


def record_seq(con: duckdb.DuckDBPyConnection, job: int, key: str) -> int | None:
    row = con.execute("SELECT seq FROM cx_records WHERE job = ? AND key = ?", [job, key]).fetchone()
    return int(row[0]) if row else None


def journey(con: duckdb.DuckDBPyConnection, job: int, seq: int) -> list[JourneyEntry]:
    rows = con.execute(
        "SELECT step, attempt, status, message, output, error, started_at, ended_at, duration_ms, "
        "usage, parent FROM cx_journey WHERE job = ? AND seq = ? ORDER BY pos, attempt",
        [job, seq],
    ).fetchall()
    return [
        JourneyEntry(
            step,
            attempt,
            status,
            message,
            json.loads(output) if output else None,
            error,
            from_db(started),
            from_db(ended),
            duration,
            json.loads(usage) if usage else None,
            parent,
        )
        for (
            step,
            attempt,
            status,
            message,
            output,
            error,
            started,
            ended,
            duration,
            usage,
            parent,
        ) in rows
    ]


def outbox(
    con: duckdb.DuckDBPyConnection, job: int | None, limit: int, offset: int
) -> list[dict[str, Any]]:
    cursor = con.execute(
        "SELECT job, record, step, channel, recipient, subject, text, idempotency_key, created_at "
        "FROM cx_outbox WHERE ? IS NULL OR job = ? ORDER BY created_at DESC, job DESC, record "
        "LIMIT ? OFFSET ?",
        [job, job, limit, offset],
    )
    names = [d[0] for d in cursor.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["created_at"] = iso(from_db(row["created_at"]))
    return rows


def mark_retry(con: duckdb.DuckDBPyConnection, job: int, rows: list[int]) -> None:
    """Failed records to run again from their failed step, kept in the state so that whoever
    owns the job (this command, or the runtime that takes it over) carries the retry out."""
    con.execute(
        "UPDATE cx_records SET restart = true WHERE job = ? AND status = 'failed' "
        "AND seq IN (SELECT unnest(?))",
        [job, rows],
    )


def retry_records(con: duckdb.DuckDBPyConnection, job: int) -> list[tuple[int, str | None, int]]:
    """(row, failed step id, attempts) of the records marked to run again."""
    return [
        (int(seq), step, int(attempts))
        for seq, step, attempts in con.execute(
            "SELECT seq, failed_step, attempts FROM cx_records WHERE job = ? AND restart "
            "ORDER BY seq",
            [job],
        ).fetchall()
    ]


def pending_approvals(con: duckdb.DuckDBPyConnection, job: int | None) -> list[dict[str, Any]]:
    """Records parked at an approval step with no answer yet, with the rendered prompt."""
    cursor = con.execute(
        "SELECT r.job, j.spinner, r.key AS record, e.step, e.message AS prompt, "
        "e.started_at AS since, r.wake_at AS timeout_at FROM cx_records AS r "
        "JOIN cx_jobs AS j ON j.job = r.job JOIN cx_journey AS e ON e.job = r.job "
        "AND e.seq = r.seq AND e.pos = r.park_pos AND e.status = 'waiting' "
        "WHERE r.status = 'waiting' AND r.park_kind = 'approval' AND r.decision IS NULL "
        "AND (? IS NULL OR r.job = ?) ORDER BY r.job, r.seq",
        [job, job],
    )
    names = [d[0] for d in cursor.description or []]
    rows = [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
    for row in rows:
        row["since"] = iso(from_db(row["since"]))
        row["timeout_at"] = iso(from_db(row["timeout_at"]))
    return rows


def approval_targets(
    con: duckdb.DuckDBPyConnection,
    job: int,
    table: TableInfo,
    key: str | None,
    where: str | None,
) -> list[tuple[int, str, str, str | None, str | None]]:
    """(row, key, status, park kind, answer) of the job's records: the one with `key`, or
    those whose row meets `where` (a checked SQL condition), or all."""
    rows = f" AND seq IN (SELECT {ROW} FROM {table.sql} WHERE {embed(where, con)})" if where else ""
    found = con.execute(
        "SELECT seq, key, status, park_kind, decision FROM cx_records WHERE job = ? "
        f"AND (? IS NULL OR key = ?){rows} ORDER BY seq",
        [job, key, key],
    ).fetchall()
    return [(int(s), str(k), str(st), kind, d) for s, k, st, kind, d in found]


def last_answer(con: duckdb.DuckDBPyConnection, job: int, seq: int) -> str | None:
    """How a record's last approval step was answered (from its journey), if it was."""
    row = con.execute(
        "SELECT message FROM cx_journey WHERE job = ? AND seq = ? AND (message LIKE 'approved%' "
        "OR message LIKE 'rejected%') ORDER BY pos DESC, attempt DESC LIMIT 1",
        [job, seq],
    ).fetchone()
    return str(row[0]) if row else None


def answer(
    con: duckdb.DuckDBPyConnection, job: int, rows: list[int], decision: str, now: datetime
) -> None:
    """Answer parked approvals (the job's owner, or the next runtime, lets them go on)."""
    con.execute(
        "UPDATE cx_records SET decision = ?, decided_at = ? WHERE job = ? AND status = 'waiting' "
        "AND park_kind = 'approval' AND decision IS NULL AND seq IN (SELECT unnest(?))",
        [decision, to_db(now), job, rows],
    )
