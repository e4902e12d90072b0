"""Alerts of job statuses: each one to send, claimed by one sender at a time, and its outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base import owners
from cxrun.base.clock import from_db, to_db
from cxrun.base.owners import Owner
from cxrun.store.claims import Alive, gone

if TYPE_CHECKING:
    import duckdb

_COLUMNS = "id, job, status, n, channel, recipient, idempotency_key, attempts, document, retry"


@dataclass(frozen=True)
class Alert:
    """One alert to send: the job's status (the nth time it took it), where, and what it says."""

    job: int
    status: str
    n: int
    channel: str
    recipient: str | None
    idempotency_key: str
    document: dict[str, Any]
    retry: tuple[int, float, float]  # attempts, backoff, max_backoff
    id: int = 0
    attempts: int = 0


def add(con: duckdb.DuckDBPyConnection, alerts: list[Alert], now: datetime) -> None:
    """Alerts to send (pending until a sender claims them)."""
    for alert in alerts:
        con.execute(
            "INSERT INTO cx_alerts (job, status, n, channel, recipient, idempotency_key, state, "
            "document, retry, created_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?, ?)",
            [
                alert.job,
                alert.status,
                alert.n,
                alert.channel,
                alert.recipient,
                alert.idempotency_key,
                json.dumps(alert.document),
                json.dumps(alert.retry),
                to_db(now),
            ],
        )


def claim(
    con: duckdb.DuckDBPyConnection,
    owner: Owner,
    now: datetime,
    lease_until: datetime,
    alive: Alive = owners.alive,
) -> list[Alert]:
    """Take the alerts nobody is sending: pending ones, and those whose sender is gone (they
    go out again with the same Idempotency-Key)."""
    rows = con.execute(
        "SELECT id, state, owner_pid, owner_host, lease_until FROM cx_alerts "
        "WHERE state IN ('pending', 'sending') ORDER BY id"
    ).fetchall()
    here = owners.this_host()
    free = [
        int(row[0])
        for row in rows
        if row[1] == "pending" or gone(row[2], row[3], row[4], now, here, alive)
    ]
    if not free:
        return []
    con.execute(
        "UPDATE cx_alerts SET state = 'sending', owner = ?, owner_pid = ?, owner_host = ?, "
        "lease_until = ? WHERE id IN (SELECT unnest(?))",
        [owner.id, owner.pid, owner.host, to_db(lease_until), free],
    )
    found = con.execute(
        f"SELECT {_COLUMNS} FROM cx_alerts WHERE id IN (SELECT unnest(?)) ORDER BY id", [free]
    ).fetchall()
    return [_alert(row) for row in found]


def _alert(row: tuple[Any, ...]) -> Alert:
    id_, job, status, n, channel, recipient, key, attempts, document, retry = row
    tries, backoff, most = json.loads(retry)
    return Alert(
        int(job),
        str(status),
        int(n),
        str(channel),
        recipient,
        str(key),
        json.loads(document),
        (int(tries), float(backoff), float(most)),
        int(id_),
        int(attempts or 0),
    )


def settle(
    con: duckdb.DuckDBPyConnection,
    alert: int,
    owner: Owner,
    attempts: int,
    error: str | None,
    now: datetime,
) -> None:
    """The alert went out (`error` None) or finally failed; its sender lets it go."""
    con.execute(
        "UPDATE cx_alerts SET state = ?, attempts = attempts + ?, error = ?, sent_at = ?, "
        "owner = NULL, owner_pid = NULL, owner_host = NULL, lease_until = NULL "
        "WHERE id = ? AND owner = ?",
        ["failed" if error else "sent", attempts, error, to_db(now), alert, owner.id],
    )


def of_job(con: duckdb.DuckDBPyConnection, job: int) -> list[dict[str, Any]]:
    """The job's alerts, oldest first, as `cxrun job` shows them."""
    rows = con.execute(
        "SELECT status, n, channel, recipient, state, attempts, error, created_at, sent_at "
        "FROM cx_alerts WHERE job = ? ORDER BY id",
        [job],
    ).fetchall()
    names = ("status", "n", "channel", "to", "state", "attempts", "error", "created_at", "sent_at")
    found = [dict(zip(names, row, strict=True)) for row in rows]
    for alert in found:
        alert["created_at"], alert["sent_at"] = (
            from_db(alert["created_at"]),
            from_db(alert["sent_at"]),
        )
    return found


def top_errors(con: duckdb.DuckDBPyConnection, job: int, limit: int = 3) -> list[dict[str, Any]]:
    """The job's most frequent errors among its failed records: step, error, count."""
    rows = con.execute(
        "SELECT failed_step, error, count(*) AS n FROM cx_records "
        "WHERE job = ? AND status = 'failed' GROUP BY ALL ORDER BY n DESC, error LIMIT ?",
        [job, limit],
    ).fetchall()
    return [{"step": step, "error": error, "count": int(n)} for step, error, n in rows]


def waiting(con: duckdb.DuckDBPyConnection) -> bool:
    """Whether any alert is still to send (pending, or being sent by someone)."""
    row = con.execute(
        "SELECT count(*) FROM cx_alerts WHERE state IN ('pending', 'sending')"
    ).fetchone()
    return bool(row and row[0])


def to_outbox(
    con: duckdb.DuckDBPyConnection, alert: Alert, subject: str, text: str, now: datetime
) -> None:
    """An alert sent through an outbox channel, kept like a message (`cxrun outbox`)."""
    con.execute(
        "INSERT INTO cx_outbox VALUES (?, NULL, ?, ?, ?, ?, ?, ?, ?)",
        [
            alert.job,
            f"alert:{alert.status}",
            alert.channel,
            alert.recipient,
            subject,
            text,
            alert.idempotency_key,
            to_db(now),
        ],
    )
