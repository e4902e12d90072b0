"""Each job's step counts and timings, kept as the journey is written, so that reading them costs
the same for a job of ten records as for one of ten million.

`cx_step_counts` holds, per job, step position and status, how many records' latest attempt at
that step ended so (`latest`) and how many attempts ended so (`attempts`). `cx_step_times`
holds, per job and step position, how many timed attempts (completed or failed) took each
duration, kept to three significant figures, so the median read from it is the journey's to
within 0.5%.

A write touches the entries of a known set of records (a batch's rows). Its change to both
tables is the aggregate of those records' entries after the write minus the one before it, added
in the write's transaction.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import duckdb

# A duration to three significant figures (0 and missing durations as they are).
_ROUNDED = (
    "CASE WHEN duration_ms > 0 THEN round(duration_ms, (2 - floor(log10(duration_ms)))::INTEGER) "
    "ELSE duration_ms END"
)
_TIMED = "status IN ('completed', 'failed') AND duration_ms IS NOT NULL"


def _counts(rows: str) -> str:
    """The counts of the journey entries of job $job's records in `rows` (a query of seqs)."""
    return (
        "SELECT pos, any_value(step) AS step, status, count(*) FILTER (WHERE latest) AS latest, "
        "count(*) AS attempts FROM (SELECT pos, step, status, attempt = max(attempt) OVER "
        "(PARTITION BY seq, pos) AS latest FROM cx_journey "
        f"WHERE job = $job AND seq IN ({rows})) GROUP BY pos, status"
    )


def _times(rows: str) -> str:
    return (
        f"SELECT pos, {_ROUNDED} AS ms, count(*) AS n FROM cx_journey "
        f"WHERE job = $job AND seq IN ({rows}) AND {_TIMED} GROUP BY pos, ms"
    )


def before(con: duckdb.DuckDBPyConnection, job: int, rows: str) -> None:
    """Keep the aggregate of the entries of `rows` as they are before a write that replaces
    some of them (a retry); `after` subtracts it."""
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cx_counts_before AS {_counts(rows)}", {"job": job})
    con.execute(f"CREATE OR REPLACE TEMP TABLE _cx_times_before AS {_times(rows)}", {"job": job})


def after(con: duckdb.DuckDBPyConnection, job: int, rows: str, replaced: bool) -> None:
    """Add the entries of `rows` just written (minus those kept by `before` if `replaced`)."""
    counts, times = _counts(rows), _times(rows)
    if replaced:
        counts = (
            f"SELECT pos, any_value(step) AS step, status, sum(latest) AS latest, "
            f"sum(attempts) AS attempts FROM ({counts} UNION ALL SELECT pos, step, status, "
            "-latest, -attempts FROM _cx_counts_before) GROUP BY pos, status"
        )
        times = (
            f"SELECT pos, ms, sum(n) AS n FROM ({times} UNION ALL SELECT pos, ms, -n "
            "FROM _cx_times_before) GROUP BY pos, ms"
        )
    con.execute(
        f"INSERT INTO cx_step_counts SELECT $job, pos, step, status, latest, attempts "
        f"FROM ({counts}) ON CONFLICT DO UPDATE SET step = excluded.step, "
        "latest = latest + excluded.latest, attempts = attempts + excluded.attempts",
        {"job": job},
    )
    con.execute(
        f"INSERT INTO cx_step_times SELECT $job, pos, ms, n FROM ({times}) WHERE ms IS NOT NULL "
        "ON CONFLICT DO UPDATE SET n = n + excluded.n",
        {"job": job},
    )


def rebuild(con: duckdb.DuckDBPyConnection, job: int) -> None:
    """Build a job's counts and timings again from its whole journey."""
    con.execute("DELETE FROM cx_step_counts WHERE job = $job", {"job": job})
    con.execute("DELETE FROM cx_step_times WHERE job = $job", {"job": job})
    after(con, job, "SELECT seq FROM cx_journey WHERE job = $job", replaced=False)


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
