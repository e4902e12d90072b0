"""Alerts of job statuses: matched in the transaction that sets a status (against the rules the
job was created with), then each one claimed by one sender at a time, and its outcome."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base import notify, owners
from cxrun.base.clock import from_db, to_db, utcnow
from cxrun.base.models import Job, iso
from cxrun.base.owners import Alive, Owner, gone

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


def on_status(con: duckdb.DuckDBPyConnection, job: Job, now: datetime | None = None) -> Job:
    """`job` was just given its status: when the status is new to it (not set again) and one of
    its rules names it, the alerts to send, in this same transaction. Returns `job`."""
    if not job.notify:
        return job
    row = con.execute(
        "SELECT alert_rules, alerted_status FROM cx_jobs WHERE job = ?", [job.job]
    ).fetchone()
    status = str(job.status)
    if row is None or row[1] == status:
        return job
    con.execute("UPDATE cx_jobs SET alerted_status = ? WHERE job = ?", [status, job.job])
    rules = [r for r in notify.from_json(json.loads(row[0])) if status in r.on]
    if rules:
        moment = now or utcnow()
        n = _occurrence(con, job.job, status)
        document = _document(con, job, n, moment)
        add(con, [_new(job.job, status, n, rule, document) for rule in rules], moment)
    return job


def _occurrence(con: duckdb.DuckDBPyConnection, job: int, status: str) -> int:
    """The nth time the job takes `status`."""
    row = con.execute(
        "SELECT coalesce(max(n), 0) FROM cx_alerts WHERE job = ? AND status = ?", [job, status]
    ).fetchone()
    return 1 + int(row[0] if row else 0)


def _document(con: duckdb.DuckDBPyConnection, job: Job, n: int, now: datetime) -> dict[str, Any]:
    """What an alert says: the job, the status it took (the nth time) and why, its counts and
    its most frequent errors (the sender adds the console link)."""
    return {
        "type": "cxrun.alert",
        "job": job.job,
        "spinner": job.spinner,
        "version": job.version,
        "status": str(job.status),
        "occurrence": n,
        "reason": job.reason,
        "counts": {
            key: getattr(job, key)
            for key in ("total", "completed", "failed", "skipped", "waiting", "cancelled")
        },
        "errors": top_errors(con, job.job),
        "link": None,
        "at": iso(now),
    }


def _new(job: int, status: str, n: int, rule: notify.Rule, document: dict[str, Any]) -> Alert:
    return Alert(
        job,
        status,
        n,
        rule.channel,
        rule.to,
        f"cxrun-{job}-alert-{status}-{n}",
        document,
        (rule.attempts, rule.backoff, rule.max_backoff),
    )


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
