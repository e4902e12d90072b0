"""Sending alerts: those the status changes left (store/alerts.py matched them against each
job's rules in the transaction that set the status), claimed by one sender and sent outside
the lock. A sender that dies mid-way leaves its alerts to the next one, which sends them
again with the same Idempotency-Key (job, status and the nth time the job took it)."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun.base import notify
from cxrun.base.clock import utcnow
from cxrun.base.owners import new_owner
from cxrun.store import alerts as alert_store
from cxrun.store.alerts import Alert

if TYPE_CHECKING:
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
    """Send every alert nobody sends (pending, or left by a sender that died)."""
    now = now or utcnow()
    with ctx.state.read() as con:
        if not alert_store.waiting(con):
            return []
    owner = new_owner("alerts")
    with ctx.state.write() as con:
        claimed = alert_store.claim(con, owner, now, now + SENDING)
    if not claimed:
        return []
    link = ctx.project.public_url
    claimed = [_linked(alert, link) for alert in claimed]
    done = _send(ctx, claimed)
    with ctx.state.write() as con:
        for item in done:
            alert, ended = item.alert, utcnow()
            alert_store.settle(con, alert.id, owner, item.attempts, item.error, ended)
            if item.outbox and item.error is None:
                sent = message(alert)
                alert_store.to_outbox(con, alert, sent.subject or "", sent.text, ended)
    return done


def _linked(alert: Alert, public_url: str | None) -> Alert:
    """The alert with the console's link to its job, when `serve.public_url` is configured."""
    from dataclasses import replace

    link = f"{public_url}/?job={alert.job}" if public_url else None
    return replace(alert, document={**alert.document, "link": link})


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
    what = f"job {alert.job} ({document['spinner']} v{document['version']})"
    return Message(
        alert.recipient or "",
        notify.summary(document),
        f"cxrun: {what} {alert.status}",
        alert.idempotency_key,
        alert.job,
        "",
        f"alert:{alert.status}",
        document,
    )
