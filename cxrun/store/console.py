"""Reads only the operator console needs: the spinners that have jobs (its filter's choices),
and records finished per minute of the running jobs."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from cxrun.base.clock import from_db, to_db

if TYPE_CHECKING:
    import duckdb


def spinner_names(con: duckdb.DuckDBPyConnection) -> list[str]:
    """The spinners that have jobs, by name (for the Jobs page's filter)."""
    rows = con.execute("SELECT DISTINCT spinner FROM cx_jobs ORDER BY spinner").fetchall()
    return [str(name) for (name,) in rows]


def finished_per_minute(
    con: duckdb.DuckDBPyConnection, since: datetime
) -> list[tuple[int, str, datetime, int]]:
    """(job, spinner, minute, records) for each minute since `since` in which records of a
    running job finished, by job and minute."""
    rows = con.execute(
        "SELECT r.job, j.spinner, date_trunc('minute', r.ended_at) AS minute, count(*) "
        "FROM cx_records AS r JOIN cx_jobs AS j ON j.job = r.job "
        "WHERE j.status = 'running' AND r.ended_at >= ? "
        "AND r.status IN ('completed', 'failed', 'skipped', 'cancelled') "
        "GROUP BY r.job, j.spinner, minute ORDER BY r.job, minute",
        [to_db(since)],
    ).fetchall()
    return [(int(job), str(name), _moment(minute), int(n)) for job, name, minute, n in rows]


def _moment(value: datetime) -> datetime:
    found = from_db(value)
    assert found is not None
    return found
