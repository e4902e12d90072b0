"""A batch's writes: its scratch tables, call results, records, journey entries, counts."""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base import fastjson
from cxrun.base.clock import to_db
from cxrun.base.models import Job
from cxrun.store import steps
from cxrun.store.jobs import get
from cxrun.store.scratch import FAILURES, RESTARTS, io_table, render_column
from cxrun.store.tables import ROW

if TYPE_CHECKING:
    import duckdb


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
    found = con.execute(
        f"SELECT {ROW}, _cx_key{columns} FROM {table} WHERE _cx_w{pos} ORDER BY {ROW}"
    )
    rows: list[tuple[Any, ...]] = []
    # A chunk at a time: an event loop making calls meanwhile gets the interpreter in between.
    while chunk := found.fetchmany(2048):
        rows += chunk
    return rows


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
    spooled: Sequence[bytes] = (),
) -> None:
    """The finished calls of the I/O step at `pos`, as a temp table the next stage joins:
    `results`, and those in JSON already (`spooled`: each one's line as spooled).

    They travel as one JSON document that DuckDB parses, much faster than Python lists.
    """
    con.execute(
        f"CREATE OR REPLACE TEMP TABLE {io_table(pos)} (row BIGINT, ok BOOLEAN, value VARCHAR, "
        "message VARCHAR, error VARCHAR, attempts VARCHAR, prompt_tokens BIGINT, "
        "completion_tokens BIGINT, cost DOUBLE)"
    )
    if not results and not spooled:
        return
    # Joined once, as bytes: DuckDB decodes them (no Python str of megabytes made first).
    document = b",".join([*spooled, *map(fastjson.dumps, results)])
    con.execute(
        f"INSERT INTO {io_table(pos)} SELECT r.row, r.ok, r.value, r.message, r.error, "
        "CAST(r.attempts AS VARCHAR), r.prompt_tokens, r.completion_tokens, r.cost "
        f"FROM (SELECT unnest(from_json('[' || decode(?) || ']', '[{_IO_SHAPE}]')) AS r)",
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
    step_ms = per_row_ms / max(1, len(plan.journey))
    if plan.retry:  # the step counts change by the retried records' entries, after minus before
        rows, seqs = f"SELECT {ROW} FROM {result}", steps.span(con, result, ROW)
        steps.before(con, job, rows, seqs)
        _write_journey(con, plan, times, step_ms)
        steps.replaced(con, job, rows, seqs)
    else:
        _write_journey(con, plan, times, step_ms)
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
        steps.written(con, entries, {**times, "ms": step_ms}, plan.io_positions)
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
