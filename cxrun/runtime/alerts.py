"""Alerts: each status a job took matched against the notify rules (cxrun.yaml's, then the
job's spinner's), and what matched sent through its channel, once per status taken.

A status is logged in the transaction that sets it (store/history.py). Whoever delivers next
(the command that changed it, or a runtime's next turn) matches the new ones, then claims the
alerts nobody sends (pending, or left by a sender that died) and sends them outside the lock:
a sender that dies mid-way leaves its alerts to the next one, which sends them again with the
same Idempotency-Key (job, status and the nth time the job took it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun.base import notify
from cxrun.base.clock import utcnow
from cxrun.base.models import Job, iso
from cxrun.base.owners import new_owner
from cxrun.store import alerts as alert_store
from cxrun.store import history
from cxrun.store import jobs as job_store
from cxrun.store import spinners as spinner_store
from cxrun.store.alerts import Alert

if TYPE_CHECKING:
    import duckdb

    from cxrun.io.alerts import Sent
    from cxrun.io.base import Message
    from cxrun.io.plugins import Plugins
    from cxrun.store.context import Context

SENDING = timedelta(minutes=5)  # an alert's sender elsewhere is gone after this without word


@dataclass(frozen=True)
class Delivered:
    """One alert sent (error None) or given up on; `outbox`: kept in the local outbox."""

    alert: Alert
    attempts: int
    error: str | None
    outbox: bool = False


def deliver(ctx: Context, now: datetime | None = None) -> list[Delivered]:
    """Match the statuses logged since the last delivery, then send every alert nobody sends."""
    now = now or utcnow()
    with ctx.state.read() as con:
        if not (history.fresh(con) or alert_store.waiting(con)):
            return []
    owner = new_owner("alerts")
    with ctx.state.write() as con:
        _match(con, ctx, now)
        claimed = alert_store.claim(con, owner, now, now + SENDING)
    if not claimed:
        return []
    done = _send(ctx, claimed)
    with ctx.state.write() as con:
        for item in done:
            alert, ended = item.alert, utcnow()
            alert_store.settle(con, alert.id, owner, item.attempts, item.error, ended)
            if item.outbox and item.error is None:
                sent = message(alert)
                alert_store.to_outbox(con, alert, sent.subject or "", sent.text, ended)
    return done


def _match(con: duckdb.DuckDBPyConnection, ctx: Context, now: datetime) -> None:
    """Alerts for the statuses logged since the last match, by the rules that name them."""
    fresh = history.fresh(con)
    spinner_rules: dict[tuple[str, int], list[notify.Rule]] = {}
    alerts: list[Alert] = []
    for job_id, status, n, reason in fresh:
        job = job_store.get(con, job_id)
        key = (job.spinner, job.version)
        if key not in spinner_rules:
            version = spinner_store.version(con, *key)
            spinner_rules[key] = notify.rules(version.spec.get("notify") if version else None)
        rules = [r for r in ctx.project.alert_rules + spinner_rules[key] if status in r.on]
        if rules:
            document = _document(con, ctx, job, (status, n, reason), now)
            alerts += [_alert(job_id, status, n, rule, document) for rule in rules]
    alert_store.add(con, alerts, now)
    history.considered(con, [(job, status, n) for job, status, n, _ in fresh])


def _document(
    con: duckdb.DuckDBPyConnection,
    ctx: Context,
    job: Job,
    taken: tuple[str, int, str | None],
    now: datetime,
) -> dict[str, Any]:
    """What an alert says: the job, the status it took (the nth time) and why, its counts, its
    most frequent errors, and where to see it in the console (`serve.public_url`)."""
    status, n, reason = taken
    if reason is None and str(job.status) == status:
        reason = job.reason  # said after the status was set (an invalid payload's errors)
    link = ctx.project.public_url
    return {
        "type": "cxrun.alert",
        "job": job.job,
        "spinner": job.spinner,
        "version": job.version,
        "status": status,
        "occurrence": n,
        "reason": reason,
        "counts": {
            key: getattr(job, key)
            for key in ("total", "completed", "failed", "skipped", "waiting", "cancelled")
        },
        "errors": alert_store.top_errors(con, job.job),
        "link": f"{link}/?job={job.job}" if link else None,
        "at": iso(now),
    }


def _alert(job: int, status: str, n: int, rule: notify.Rule, document: dict[str, Any]) -> Alert:
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


def _send(ctx: Context, claimed: list[Alert]) -> list[Delivered]:
    """Send the claimed alerts at once, each through its channel (a channel that cannot be
    set up, its secret missing say, fails its alerts with why)."""
    from cxrun.base.errors import CxrunError
    from cxrun.io.plugins import build_named

    plugins: dict[str, Plugins] = {}
    done: list[Delivered] = []
    for name in sorted({alert.channel for alert in claimed}):
        try:
            plugins[name] = build_named(ctx.project, set(), {name}, ctx.secrets)
        except (CxrunError, KeyError, ValueError) as exc:
            why = "; ".join(exc.lines()) if isinstance(exc, CxrunError) else f"no channel {exc}"
            done += [
                Delivered(a, 0, f"channel {name} could not be set up: {why}", False)
                for a in claimed
                if a.channel == name
            ]
    ready = [alert for alert in claimed if alert.channel in plugins]
    return done + (asyncio.run(_send_all(plugins, ready)) if ready else [])


async def _send_all(plugins: dict[str, Plugins], claimed: list[Alert]) -> list[Delivered]:
    from cxrun.io.plugins import http_client

    async with http_client(max(1, len(claimed))) as http:
        sent = await asyncio.gather(*(_send_one(http, plugins[a.channel], a) for a in claimed))
    return [
        Delivered(alert, s.attempts, s.error, alert.channel in plugins[alert.channel].outbox)
        for alert, s in zip(claimed, sent, strict=True)
    ]


async def _send_one(http: Any, plugins: Plugins, alert: Alert) -> Sent:
    from cxrun.io.alerts import send_alert

    target = plugins.targets[alert.channel]
    return await send_alert(http, target, message(alert), alert.retry, plugins.redact)


def message(alert: Alert) -> Message:
    """The alert as a channel's message: a subject, a text, and the document itself."""
    from cxrun.io.base import Message

    document = alert.document
    subject = (
        f"cxrun: job {alert.job} ({document['spinner']} v{document['version']}) {alert.status}"
    )
    return Message(
        alert.recipient or "",
        summary(document),
        subject,
        alert.idempotency_key,
        alert.job,
        "",
        f"alert:{alert.status}",
        document,
    )


def summary(document: dict[str, Any]) -> str:
    """An alert as text (for email, WhatsApp and the outbox)."""
    counts = document["counts"]
    lines = [
        f"Job {document['job']} ({document['spinner']} v{document['version']}) is "
        f"{document['status']}" + (f": {document['reason']}" if document["reason"] else "."),
        ", ".join(f"{value} {key}" for key, value in counts.items()),
    ]
    lines += [f"{e['count']} x {e['step'] or '?'}: {e['error']}" for e in document["errors"]]
    if document["link"]:
        lines.append(document["link"])
    return "\n".join(lines)
