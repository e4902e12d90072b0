"""Jobs, their row selections, records and journey entries: creating, advancing, reading."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass, fields
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base import owners
from cxrun.base.clock import from_db, to_db
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job, JourneyEntry, Record, iso
from cxrun.base.owners import Owner
from cxrun.base.sql import embed, quote_ident
from cxrun.store.scratch import FAILURES, RESTARTS, io_table, render_column
from cxrun.store.tables import ROW, TableInfo

if TYPE_CHECKING:
    import duckdb

_JOB_COLUMNS = (
    "job, spinner, version, trigger, status, reason, table_name, total, cursor, completed, "
    "failed, skipped, waiting, cancelled, prompt_tokens, completion_tokens, cost, "
    "created_at, started_at, ended_at"
)


def _job(row: tuple[Any, ...]) -> Job:
    """A Job from a row of _JOB_COLUMNS (whose order is Job's field order)."""
    values = dict(zip((f.name for f in fields(Job)), row, strict=True))
    try:
        values["status"] = JobStatus(values["status"])
    except ValueError:
        from cxrun.base.errors import StateDamaged

        raise StateDamaged(
            f"job {values['job']} has the unknown status {values['status']!r}"
        ) from None
    for moment in ("created_at", "started_at", "ended_at"):
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
) -> Job:
    """A new job over the rows of `table` that meet every condition (its snapshot of rows);
    `bindings` are the values of the parameters ($name) the conditions use."""
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
        "params, created_at, started_at, ended_at) "
        "VALUES (?, ?, ?, ?, ?, NULL, ?, ?, ?, ?, 0, 0, 0, 0, 0, 0, ?, ?, ?, NULL)",
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
        ],
    )
    return get(con, job)


def get(con: duckdb.DuckDBPyConnection, job: int) -> Job:
    from cxrun.base.errors import NotFound

    row = con.execute(f"SELECT {_JOB_COLUMNS} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if not row:
        raise NotFound(f"no job {job}", "list jobs with `cxrun jobs`")
    return _job(row)


def listing(
    con: duckdb.DuckDBPyConnection,
    status: str | None,
    spinner: str | None,
    limit: int,
    offset: int,
) -> list[Job]:
    rows = con.execute(
        f"SELECT {_JOB_COLUMNS} FROM cx_jobs WHERE (? IS NULL OR status = ?) "
        "AND (? IS NULL OR spinner = ?) ORDER BY job DESC LIMIT ? OFFSET ?",
        [status, status, spinner, spinner, limit, offset],
    ).fetchall()
    return [_job(row) for row in rows]


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


def last_outputs(
    con: duckdb.DuckDBPyConnection, job: int, rows: list[int]
) -> list[tuple[int, int, Any]]:
    """(row, step position, output) of the last completed attempt of every step of these rows."""
    found = con.execute(
        "SELECT seq, pos, arg_max(output, attempt) FROM cx_journey WHERE job = ? AND status = "
        "'completed' AND seq IN (SELECT unnest(?)) GROUP BY seq, pos",
        [job, rows],
    ).fetchall()
    return [(int(seq), int(pos), json.loads(out) if out else None) for seq, pos, out in found]


@dataclass(frozen=True)
class Restart:
    """A record run again from a step: a retry of a failed one (`bump` 1: one more attempt),
    or a parked one continued (`bump` 0) with its answer (approve, reject, approve-timeout,
    reject-timeout, or due). `calls` are the call steps around `pos`, whose entries are
    written again."""

    pos: int
    attempts: int
    bump: int = 1
    decision: str | None = None
    calls: tuple[int, ...] = ()


def set_restarts(con: duckdb.DuckDBPyConnection, starts: dict[int, Restart]) -> None:
    """The rows a batch runs again, as the temp table the batch's SQL joins."""
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {RESTARTS} (row BIGINT, pos INTEGER, attempts INTEGER, "
        "bump INTEGER, decision VARCHAR, calls INTEGER[])"
    )
    if starts:
        rows = list(starts)
        con.execute(
            f"INSERT INTO {RESTARTS} SELECT unnest(?), unnest(?), unnest(?), unnest(?), "
            "unnest(?), unnest(?)",
            [
                rows,
                [starts[r].pos for r in rows],
                [starts[r].attempts for r in rows],
                [starts[r].bump for r in rows],
                [starts[r].decision for r in rows],
                [list(starts[r].calls) for r in rows],
            ],
        )


def due_records(con: duckdb.DuckDBPyConnection, job: int, now: datetime) -> list[tuple[Any, ...]]:
    """(row, parked step, what holds it, its answer, attempts) of a job's parked records that
    may go on: answered, or their time has come."""
    return con.execute(
        "SELECT seq, park_pos, park_kind, decision, attempts FROM cx_records WHERE job = ? "
        "AND status = 'waiting' AND (decision IS NOT NULL OR wake_at <= ?) ORDER BY seq",
        [job, to_db(now)],
    ).fetchall()


def due_jobs(con: duckdb.DuckDBPyConnection, now: datetime) -> list[int]:
    """Waiting jobs with parked records that may go on, oldest first."""
    rows = con.execute(
        "SELECT DISTINCT r.job FROM cx_records AS r JOIN cx_jobs AS j ON j.job = r.job "
        "WHERE j.status = 'waiting' AND r.status = 'waiting' "
        "AND (r.decision IS NOT NULL OR r.wake_at <= ?) ORDER BY r.job",
        [to_db(now)],
    ).fetchall()
    return [int(r[0]) for r in rows]


def waiting_reason(con: duckdb.DuckDBPyConnection, job: int) -> str | None:
    """Why a job waits: how many records, for what, and until when where known."""
    row = con.execute(
        "SELECT count(*) FILTER (WHERE park_kind = 'approval' AND decision IS NULL), "
        "count(*) FILTER (WHERE park_kind <> 'approval' OR decision IS NOT NULL), "
        "min(wake_at) FILTER (WHERE decision IS NULL) "
        "FROM cx_records WHERE job = ? AND status = 'waiting'",
        [job],
    ).fetchone()
    if not row or not (row[0] or row[1]):
        return None
    approvals, timers, first = int(row[0]), int(row[1]), from_db(row[2])
    parts = [f"{timers} record(s) waiting"] if timers else []
    parts += [f"{approvals} awaiting approval"] if approvals else []
    until = f" until {iso(first)}" if first is not None else ""
    return ", ".join(parts) + (f"; the next{until}" if until else "")


def park(con: duckdb.DuckDBPyConnection, job: int, reason: str | None) -> Job:
    """The job's pass is over but records are parked: it waits (no owner meanwhile)."""
    con.execute(
        "UPDATE cx_jobs SET status = 'waiting', reason = ?, owner = NULL, owner_pid = NULL, "
        "owner_host = NULL, lease_until = NULL, control = NULL WHERE job = ?",
        [reason, job],
    )
    return get(con, job)


def materialize(con: duckdb.DuckDBPyConnection, table: str, sql: str) -> None:
    """A batch's intermediate result, as a temp table of this connection."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE {table} AS {sql}")


def row_range(con: duckdb.DuckDBPyConnection, source: str) -> tuple[int, int] | None:
    row = con.execute(f"SELECT min({ROW}), max({ROW}) FROM {source}").fetchone()
    return (int(row[0]), int(row[1])) if row and row[0] is not None else None


def rows_of(con: duckdb.DuckDBPyConnection, source: str) -> list[int]:
    return [int(r[0]) for r in con.execute(f"SELECT {ROW} FROM {source}").fetchall()]


def set_failures(con: duckdb.DuckDBPyConnection, failures: dict[int, tuple[int, str]]) -> None:
    con.execute(f"CREATE OR REPLACE TEMP TABLE {FAILURES} (row BIGINT, pos INTEGER, error VARCHAR)")
    if failures:
        rows, positions, errors = zip(*((r, p, e) for r, (p, e) in failures.items()), strict=True)
        con.execute(
            f"INSERT INTO {FAILURES} SELECT unnest(?), unnest(?), unnest(?)",
            [list(rows), list(positions), list(errors)],
        )


def call_inputs(
    con: duckdb.DuckDBPyConnection, table: str, pos: int, inputs: int
) -> list[tuple[Any, ...]]:
    """(row, key, rendered inputs...) of the rows whose I/O step at `pos` is to run."""
    columns = "".join(f", {render_column(pos, i)}" for i in range(inputs))
    return con.execute(
        f"SELECT {ROW}, _cx_key{columns} FROM {table} WHERE _cx_w{pos} ORDER BY {ROW}"
    ).fetchall()


_IO_SHAPE = json.dumps(
    {
        "row": "BIGINT",
        "ok": "BOOLEAN",
        "value": "VARCHAR",
        "message": "VARCHAR",
        "error": "VARCHAR",
        "attempts": "JSON",
        "prompt_tokens": "BIGINT",
        "completion_tokens": "BIGINT",
        "cost": "DOUBLE",
    }
)


def load_results(
    con: duckdb.DuckDBPyConnection,
    pos: int,
    results: list[dict[str, Any]],
    encoded: Mapping[tuple[int, int], str] | None = None,
) -> None:
    """The finished calls of the I/O step at `pos`, as a temp table the next stage joins.

    They travel as one JSON document that DuckDB parses, much faster than Python lists; a
    result already in JSON (`encoded`, by row and position: as spooled) is not encoded again.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {io_table(pos)} (row BIGINT, ok BOOLEAN, value VARCHAR, "
        "message VARCHAR, error VARCHAR, attempts VARCHAR, prompt_tokens BIGINT, "
        "completion_tokens BIGINT, cost DOUBLE)"
    )
    if not results:
        return
    if encoded:
        parts = (encoded.get((r["row"], r["pos"])) or json.dumps(r) for r in results)
        document = f"[{','.join(parts)}]"
    else:
        document = json.dumps(results)
    con.execute(
        f"INSERT INTO {io_table(pos)} SELECT r.row, r.ok, r.value, r.message, r.error, "
        "CAST(r.attempts AS VARCHAR), r.prompt_tokens, r.completion_tokens, r.cost "
        f"FROM (SELECT unnest(from_json(?, '[{_IO_SHAPE}]')) AS r)",
        [document],
    )


@dataclass(frozen=True)
class BatchWrite:
    """How a spinner's computed batch becomes records, journey entries, counts and outbox rows."""

    tags: str
    outputs: str
    failed_step: str
    journey: list[str]
    io_positions: list[int]
    outbox: list[tuple[int, str, str]]  # (position, step id, channel)
    park_kind: str = "CAST(NULL AS VARCHAR)"
    retry: bool = False  # rows are written again from a step (see set_restarts)


def write_batch(
    con: duckdb.DuckDBPyConnection,
    job: int,
    plan: BatchWrite,
    result: str,
    cursor: int | None,
    window: tuple[datetime, datetime],
    per_row_ms: float,
) -> Job:
    """Write a computed batch: records, journey entries, outbox rows, the job's counts."""
    started, ended = to_db(window[0]), to_db(window[1])
    times = {"job": job, "started": started, "ended": ended}
    io_ms = "".join(
        f' + coalesce(list_sum(list_transform(from_json(_cx_a{p}, \'[{{"duration_ms": '
        f'"DOUBLE"}}]\'), lambda a: a.duration_ms)), 0)'
        for p in plan.io_positions
    )
    attempts = "1"
    if plan.retry:
        con.execute(
            f"DELETE FROM cx_records WHERE job = ? AND seq IN (SELECT row FROM {RESTARTS})", [job]
        )
        attempts = f"(SELECT bump + attempts FROM {RESTARTS} WHERE row = {ROW})"
    parked = "_cx_fp IS NULL AND _cx_pk IS NOT NULL"
    con.execute(
        f"INSERT INTO cx_records SELECT $job, {ROW}, _cx_key, "
        "CASE WHEN _cx_fp IS NOT NULL AND _cx_sk THEN 'skipped' WHEN _cx_fp IS NOT NULL "
        f"THEN 'failed' WHEN _cx_pk IS NOT NULL THEN 'waiting' ELSE 'completed' END, {plan.tags}, "
        f"{plan.outputs}, _cx_fe, {plan.failed_step}, {attempts}, $started, $ended, $ms{io_ms}, "
        f"CASE WHEN {parked} THEN _cx_pk END, CASE WHEN {parked} THEN {plan.park_kind} END, "
        f"CASE WHEN {parked} THEN _cx_pu END, NULL, NULL, NULL FROM {result}",
        {**times, "ms": per_row_ms},
    )
    _write_journey(con, plan, times, per_row_ms / max(1, len(plan.journey)))
    for pos, step, channel in plan.outbox:
        fresh = (
            f" AND {pos} >= (SELECT pos FROM {RESTARTS} WHERE row = io.row)" if plan.retry else ""
        )
        con.execute(
            "INSERT INTO cx_outbox SELECT $job, r._cx_key, $step, $channel, "
            "io.value::JSON->>'to', io.value::JSON->>'subject', io.value::JSON->>'text', "
            f"io.value::JSON->>'id', $ended FROM {io_table(pos)} AS io "
            f"JOIN {result} AS r ON r.{ROW} = io.row WHERE io.ok{fresh}",
            {"job": job, "step": step, "channel": channel, "ended": ended},
        )
    _count(con, job, plan, result, cursor)
    return get(con, job)


def _write_journey(
    con: duckdb.DuckDBPyConnection, plan: BatchWrite, times: dict[str, Any], step_ms: float
) -> None:
    entries = f"({' UNION ALL '.join(plan.journey)})"
    if not plan.retry:
        con.execute(
            "INSERT INTO cx_journey SELECT $job, _cx_row, pos, step, attempt, status, message, "
            f"output, error, started_at, ended_at, duration_ms, usage, parent FROM {entries}",
            {**times, "ms": step_ms},
        )
        return
    # A restart adds entries from each row's step on (and for the call steps around it, whose
    # entries are replaced), numbering attempts after the old ones. A parked row's `waiting`
    # entry is replaced by what happened at the step, which started when the row parked.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cx_old AS SELECT j.seq, j.pos, j.started_at, "
        "j.status = 'waiting' AS parked FROM cx_journey AS j "
        f"JOIN {RESTARTS} AS f ON f.row = j.seq WHERE j.job = $job "
        "AND (j.pos = f.pos AND j.status = 'waiting' OR list_contains(f.calls, j.pos))",
        {"job": times["job"]},
    )
    con.execute(
        "DELETE FROM cx_journey WHERE job = $job AND EXISTS (SELECT 1 FROM _cx_old AS o "
        "WHERE o.seq = cx_journey.seq AND o.pos = cx_journey.pos)",
        {"job": times["job"]},
    )
    con.execute(
        "INSERT INTO cx_journey SELECT $job, j._cx_row, j.pos, j.step, "
        "j.attempt + coalesce(p.tries, 0), j.status, j.message, j.output, j.error, "
        "CASE WHEN o.parked THEN o.started_at ELSE j.started_at END, j.ended_at, "
        "CASE WHEN o.parked THEN epoch_ms(j.ended_at) - epoch_ms(o.started_at) "
        "ELSE j.duration_ms END, j.usage, j.parent "
        f"FROM {entries} AS j JOIN {RESTARTS} AS f "
        "ON f.row = j._cx_row AND (j.pos >= f.pos OR list_contains(f.calls, j.pos)) "
        "LEFT JOIN (SELECT seq, pos, max(attempt) AS tries "
        "FROM cx_journey WHERE job = $job GROUP BY seq, pos) AS p "
        "ON p.seq = j._cx_row AND p.pos = j.pos "
        "LEFT JOIN _cx_old AS o ON o.seq = j._cx_row AND o.pos = j.pos AND o.parked",
        {**times, "ms": step_ms},
    )


def _count(
    con: duckdb.DuckDBPyConnection, job: int, plan: BatchWrite, result: str, cursor: int | None
) -> None:
    usage = (
        " + ".join(
            f"(SELECT coalesce(sum({{0}}), 0) FROM {io_table(p)})" for p in plan.io_positions
        )
        or "0"
    )
    tokens = (
        f"prompt_tokens = prompt_tokens + ({usage.format('prompt_tokens')}), "
        f"completion_tokens = completion_tokens + ({usage.format('completion_tokens')}), "
        f"cost = cost + ({usage.format('cost')})"
    )
    if plan.retry:  # the restarted records were counted before: count them all again
        con.execute(
            f"UPDATE cx_jobs SET {tokens}, completed = c.ok, failed = c.bad, skipped = c.skip, "
            "waiting = c.parked FROM (SELECT "
            "count(*) FILTER (WHERE status = 'completed') AS ok, "
            "count(*) FILTER (WHERE status = 'failed') AS bad, "
            "count(*) FILTER (WHERE status = 'skipped') AS skip, "
            "count(*) FILTER (WHERE status = 'waiting') AS parked "
            "FROM cx_records WHERE job = $job) AS c WHERE job = $job",
            {"job": job},
        )
        return
    con.execute(
        f"UPDATE cx_jobs SET cursor = $cursor, completed = completed + c.ok, "
        f"failed = failed + c.bad, skipped = skipped + c.skip, waiting = waiting + c.parked, "
        f"{tokens} FROM (SELECT "
        "count(*) FILTER (WHERE _cx_fp IS NULL AND _cx_pk IS NULL) AS ok, "
        "count(*) FILTER (WHERE _cx_fp IS NOT NULL AND NOT _cx_sk) AS bad, "
        "count(*) FILTER (WHERE _cx_fp IS NOT NULL AND _cx_sk) AS skip, "
        "count(*) FILTER (WHERE _cx_fp IS NULL AND _cx_pk IS NOT NULL) AS parked "
        f"FROM {result}) AS c WHERE job = $job",
        {"cursor": cursor, "job": job},
    )


def set_status(
    con: duckdb.DuckDBPyConnection, job: int, status: JobStatus, reason: str | None
) -> Job:
    con.execute(
        "UPDATE cx_jobs SET status = ?, reason = ? WHERE job = ?", [str(status), reason, job]
    )
    return get(con, job)


def finish(
    con: duckdb.DuckDBPyConnection, job: int, status: JobStatus, reason: str | None, now: datetime
) -> Job:
    con.execute(
        "UPDATE cx_jobs SET status = ?, reason = ?, ended_at = ?, "
        "started_at = coalesce(started_at, ?), owner = NULL, owner_pid = NULL, "
        "owner_host = NULL, lease_until = NULL, control = NULL WHERE job = ?",
        [str(status), reason, to_db(now), to_db(now), job],
    )
    return get(con, job)


def records(
    con: duckdb.DuckDBPyConnection,
    job: int,
    table: TableInfo,
    status: str | None,
    limit: int,
    offset: int,
) -> list[Record]:
    rows = con.execute(
        "SELECT seq, key, status, tags, outputs, error, failed_step, attempts, duration_ms "
        "FROM cx_records WHERE job = ? AND (? IS NULL OR status = ?) ORDER BY seq LIMIT ? OFFSET ?",
        [job, status, status, limit, offset],
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


Alive = Callable[[int], bool]
CLAIMABLE = frozenset({JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.PAUSED})
_OWNED = "owner, owner_pid, owner_host, lease_until"
_NO_OWNER = "owner = NULL, owner_pid = NULL, owner_host = NULL, lease_until = NULL"


def _gone(
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
        if owner is None or _gone(pid, owner_host, lease, now, host, alive)
    ]


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
    if held and not _gone(pid, host, lease, now, owner.host, alive):
        return None
    con.execute(
        "UPDATE cx_jobs SET status = 'running', reason = NULL, owner = ?, owner_pid = ?, "
        "owner_host = ?, lease_until = ?, started_at = coalesce(started_at, ?), ended_at = NULL "
        "WHERE job = ?",
        [owner.id, owner.pid, owner.host, to_db(lease_until), to_db(now), job],
    )
    return get(con, job)


def holder(
    con: duckdb.DuckDBPyConnection, job: int, now: datetime, alive: Alive = owners.alive
) -> Owner | None:
    """The job's live owner, if it has one."""
    row = con.execute(f"SELECT {_OWNED} FROM cx_jobs WHERE job = ?", [job]).fetchone()
    if row is None or row[0] is None:
        return None
    if _gone(row[1], row[2], row[3], now, owners.this_host(), alive):
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
        f"UPDATE cx_jobs SET status = 'queued', reason = NULL, {_NO_OWNER} "
        "WHERE job = ? AND owner = ? AND status IN ('running', 'paused')",
        [job, owner.id],
    )


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
        f"control = NULL, {_NO_OWNER}, ended_at = ?, started_at = coalesce(started_at, ?) "
        "WHERE job = ?",
        [to_db(now), to_db(now), job],
    )
    return get(con, job)


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


def pause_now(con: duckdb.DuckDBPyConnection, job: int, reason: str) -> Job:
    """The job waits for `cxrun resume`, its finished work kept, with no owner."""
    con.execute(
        f"UPDATE cx_jobs SET status = 'paused', reason = ?, control = NULL, {_NO_OWNER} "
        "WHERE job = ?",
        [reason, job],
    )
    return get(con, job)


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
