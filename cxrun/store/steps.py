"""Each job's step counts and timings, kept as the journey is written, so that reading them costs
the same for a job of ten records as for one of ten million.

`cx_step_counts` holds, per job, step position and status, how many records' latest attempt at
that step ended so (`latest`) and how many attempts ended so (`attempts`). `cx_step_times`
holds, per job and step position, how many timed attempts (completed or failed) took each
duration, kept to three significant figures, so the median read from it is the journey's to
within 0.5%.

Each write adds its change in its own transaction. A first pass over a batch's rows adds the
entries it writes, counted from the query that makes them (`written`). A retry replaces some
entries of its records: its change is the aggregate of those records' entries after the write
minus the one before it (`before`, then `replaced`), each read within the records' seq span so
that only the row groups holding them are scanned.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import duckdb

# A duration to three significant figures (0 and missing durations as they are).
_ROUNDED = (
    "CASE WHEN duration_ms > 0 THEN round(duration_ms, (2 - floor(log10(duration_ms)))::INTEGER) "
    "ELSE duration_ms END"
)
_TIMED = "status IN ('completed', 'failed') AND duration_ms IS NOT NULL"


Span = tuple[int, int]  # the lowest and highest seq of the records a write touches
_OF_ROWS = "job = $job AND seq BETWEEN $lo AND $hi AND seq IN ({rows})"  # the span prunes the scan


def span(con: duckdb.DuckDBPyConnection, table: str, column: str) -> Span:
    """The lowest and highest `column` of `table` (the seqs a batch writes)."""
    found = con.execute(f"SELECT min({column}), max({column}) FROM {table}").fetchone()
    if found is None or found[0] is None:
        return (0, -1)
    return int(found[0]), int(found[1])


def _counts(rows: str) -> str:
    """The counts of the journey entries of job $job's records in `rows` (a query of seqs)."""
    return (
        "SELECT pos, any_value(step) AS step, status, count(*) FILTER (WHERE latest) AS latest, "
        "count(*) AS attempts FROM (SELECT pos, step, status, "
        "attempt = max(attempt) OVER (PARTITION BY seq, pos) AS latest "
        f"FROM cx_journey WHERE {_OF_ROWS.format(rows=rows)}) GROUP BY pos, status"
    )


def _times(source: str) -> str:
    return (
        f"SELECT pos, {_ROUNDED} AS ms, count(*) AS n FROM {source} WHERE {_TIMED} GROUP BY pos, ms"
    )


def _of_rows(rows: str) -> str:
    return f"(SELECT * FROM cx_journey WHERE {_OF_ROWS.format(rows=rows)})"


def _bound(job: int, rows: Span) -> dict[str, int]:
    return {"job": job, "lo": rows[0], "hi": rows[1]}


def written(
    con: duckdb.DuckDBPyConnection, entries: str, values: dict[str, Any], io: list[int]
) -> None:
    """Add the journey entries of the query `entries` (with its `values`, $job among them),
    just written by a first pass over their records: counted from the query itself (whose
    columns the counts do not need are never computed) rather than read back. Only an I/O step
    (at a position in `io`) can have made several attempts at a record, the last its latest."""
    io_at = ", ".join(str(p) for p in io) or "-1"  # no step is at -1 (NOT IN (NULL) is never true)
    latest = (
        f"SELECT pos, step, status, duration_ms, true AS latest FROM {entries} "
        f"WHERE pos NOT IN ({io_at}) UNION ALL SELECT pos, step, status, duration_ms, "
        f"attempt = max(attempt) OVER (PARTITION BY _cx_row, pos) FROM {entries} "
        f"WHERE pos IN ({io_at})"
    )
    # The entries are computed once, into their counts by step, status and duration; the
    # counts and the timings are both read from those.
    con.execute(
        "CREATE OR REPLACE TEMP TABLE _cx_written AS SELECT pos, any_value(step) AS step, status, "
        f"{_ROUNDED} AS ms, count(*) FILTER (WHERE latest) AS latest, count(*) AS attempts "
        f"FROM ({latest}) GROUP BY pos, status, ms",
        {k: v for k, v in values.items() if k != "job"},
    )
    counts = (
        "SELECT pos, any_value(step) AS step, status, sum(latest) AS latest, "
        "sum(attempts) AS attempts FROM _cx_written GROUP BY pos, status"
    )
    times = (
        "SELECT pos, ms, sum(attempts) AS n FROM _cx_written "
        "WHERE status IN ('completed', 'failed') AND ms IS NOT NULL GROUP BY pos, ms"
    )
    _add(con, {"job": values["job"]}, counts, times)


def before(con: duckdb.DuckDBPyConnection, job: int, rows: str, seqs: Span) -> None:
    """Keep the aggregate of the entries of `rows` (within `seqs`) as they are before a write
    that replaces some of them (a retry); `replaced` subtracts it."""
    for name, sql in (("counts", _counts(rows)), ("times", _times(_of_rows(rows)))):
        con.execute(f"CREATE OR REPLACE TEMP TABLE _cx_{name}_before AS {sql}", _bound(job, seqs))


def replaced(con: duckdb.DuckDBPyConnection, job: int, rows: str, seqs: Span) -> None:
    """Add the entries of `rows` (within `seqs`) as a retry left them, minus those `before`
    kept."""
    counts = (
        f"SELECT pos, any_value(step) AS step, status, sum(latest) AS latest, "
        f"sum(attempts) AS attempts FROM ({_counts(rows)} UNION ALL SELECT pos, step, status, "
        "-latest, -attempts FROM _cx_counts_before) GROUP BY pos, status"
    )
    times = (
        f"SELECT pos, ms, sum(n) AS n FROM ({_times(_of_rows(rows))} UNION ALL "
        "SELECT pos, ms, -n FROM _cx_times_before) GROUP BY pos, ms"
    )
    _add(con, _bound(job, seqs), counts, times)


def _add(con: duckdb.DuckDBPyConnection, values: dict[str, Any], counts: str, times: str) -> None:
    """Add the rows of the `counts` and `times` queries to the kept tables."""
    con.execute(
        f"INSERT INTO cx_step_counts SELECT $job, pos, step, status, latest, attempts "
        f"FROM ({counts}) ON CONFLICT DO UPDATE SET step = excluded.step, "
        "latest = latest + excluded.latest, attempts = attempts + excluded.attempts",
        values,
    )
    con.execute(
        f"INSERT INTO cx_step_times SELECT $job, pos, ms, n FROM ({times}) WHERE ms IS NOT NULL "
        "ON CONFLICT DO UPDATE SET n = n + excluded.n",
        values,
    )


def rebuild(con: duckdb.DuckDBPyConnection, job: int) -> None:
    """Build a job's counts and timings again from its whole journey."""
    con.execute("DELETE FROM cx_step_counts WHERE job = $job", {"job": job})
    con.execute("DELETE FROM cx_step_times WHERE job = $job", {"job": job})
    every = "SELECT seq FROM cx_journey WHERE job = $job"
    _add(con, _bound(job, (0, 2**62)), _counts(every), _times(_of_rows(every)))


# Built from the whole journey by the migration that adds the tables.
BACKFILL = f"""
    INSERT INTO cx_step_counts SELECT job, pos, any_value(step), status,
        count(*) FILTER (WHERE latest), count(*)
        FROM (SELECT job, pos, step, status,
              attempt = max(attempt) OVER (PARTITION BY job, seq, pos) AS latest FROM cx_journey)
        GROUP BY job, pos, status;
    INSERT INTO cx_step_times SELECT job, pos, {_ROUNDED} AS ms, count(*) FROM cx_journey
        WHERE {_TIMED} GROUP BY job, pos, ms;
"""


def stats(
    con: duckdb.DuckDBPyConnection, job: int
) -> list[tuple[int, str, int, int, int, int, int, float | None]]:
    """Per step position: (pos, step, completed, failed, skipped, waiting, attempts, median ms)
    of the records' latest attempts, all attempts, and the timed ones."""
    return con.execute(
        "WITH c AS (SELECT pos, any_value(step) AS step, "
        "sum(latest) FILTER (WHERE status = 'completed') AS completed, "
        "sum(latest) FILTER (WHERE status = 'failed') AS failed, "
        "sum(latest) FILTER (WHERE status = 'skipped') AS skipped, "
        "sum(latest) FILTER (WHERE status = 'waiting') AS waiting, "
        "sum(attempts) AS attempts FROM cx_step_counts WHERE job = $job GROUP BY pos), "
        "t AS (SELECT pos, ms, n, sum(n) OVER (PARTITION BY pos ORDER BY ms) AS upto, "
        "sum(n) OVER (PARTITION BY pos) AS total FROM cx_step_times WHERE job = $job AND n > 0), "
        # the median: the value at the middle place, or the mean of the two middle ones
        "m AS (SELECT pos, avg(ms) AS median_ms FROM t WHERE "
        "(upto - n <= (total - 1) // 2 AND upto > (total - 1) // 2) OR "
        "(upto - n <= total // 2 AND upto > total // 2) GROUP BY pos) "
        "SELECT pos, step, coalesce(completed, 0), coalesce(failed, 0), coalesce(skipped, 0), "
        "coalesce(waiting, 0), attempts, median_ms FROM c LEFT JOIN m USING (pos) "
        "WHERE attempts > 0 ORDER BY pos",
        {"job": job},
    ).fetchall()
