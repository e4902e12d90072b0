"""Each job's status history: every status it took, counted (the nth time it was paused)."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrun.base.clock import to_db, utcnow

if TYPE_CHECKING:
    from datetime import datetime

    import duckdb

    from cxrun.base.models import Job

# The status a job was just given, logged when it differs from the last one logged for the job
# (with its count: the nth time the job took it), in the transaction that set it.
_LOG = """
INSERT INTO cx_status_log (job, status, n, reason, taken_at)
SELECT $job, $status, 1 + count(*) FILTER (WHERE status = $status), $reason, $now
FROM cx_status_log WHERE job = $job
HAVING arg_max(status, id) IS DISTINCT FROM $status
"""


def log_status(con: duckdb.DuckDBPyConnection, job: Job, now: datetime | None = None) -> Job:
    """Note the job's status if it changed since the last note (a status set again is not)."""
    values = {"job": job.job, "status": str(job.status), "reason": job.reason}
    con.execute(_LOG, {**values, "now": to_db(now or utcnow())})
    return job


def fresh(con: duckdb.DuckDBPyConnection) -> list[tuple[int, str, int, str | None]]:
    """Statuses logged that no alert rule was matched against yet: (job, status, n, reason)."""
    rows = con.execute(
        "SELECT job, status, n, reason FROM cx_status_log WHERE NOT considered ORDER BY id"
    ).fetchall()
    return [(int(job), str(status), int(n), reason) for job, status, n, reason in rows]


def considered(con: duckdb.DuckDBPyConnection, entries: list[tuple[int, str, int]]) -> None:
    """Mark logged statuses as matched against the alert rules."""
    if entries:
        con.execute(
            "UPDATE cx_status_log AS l SET considered = true FROM (SELECT unnest(?) AS job, "
            "unnest(?) AS status, unnest(?) AS n) AS e "
            "WHERE l.job = e.job AND l.status = e.status AND l.n = e.n",
            [[e[0] for e in entries], [e[1] for e in entries], [e[2] for e in entries]],
        )
