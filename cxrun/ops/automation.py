"""What starts jobs by itself: schedules (list, tick, pause, resume, remove), events (trigger)
and the plan's usage."""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import datetime
from typing import Any

from cxrun.base.models import Job
from cxrun.ops.runtime import runtime
from cxrun.store import jobs as job_store
from cxrun.store.context import Context
from cxrun.triggers.events import Received, listeners, parse_payload, read_payload
from cxrun.triggers.events import trigger as start_jobs
from cxrun.triggers.limits import Usage, usage
from cxrun.triggers.schedule_control import control as control_schedules
from cxrun.triggers.schedules import Fire, Listed, exit_code, fire_due, listing

__all__ = [
    "Fire",
    "Listed",
    "Received",
    "Usage",
    "control_schedules",
    "exit_code",
    "fired_jobs",
    "listeners",
    "listing",
    "parse_payload",
    "read_payload",
    "start_jobs",
    "tick",
    "trigger",
    "usage",
]


def fired_jobs(ctx: Context, fired: list[Fire]) -> list[Job]:
    """The jobs that fires started."""
    with ctx.state.read() as con:
        return [
            job_store.get(con, f.job) for f in fired if f.job is not None and f.outcome == "started"
        ]


def tick(
    ctx: Context,
    on_fired: Callable[[list[Fire]], None] = lambda fired: None,
    on_event: Callable[[str], None] = lambda text: None,
    now: datetime | None = None,
    stop: threading.Event | None = None,
) -> tuple[list[Fire], int]:
    """`cxrun schedule tick`: fire what is due, then run runnable work as `runtime --once` does
    (until `stop` is set: its jobs go back to the queue). Returns the fires and how many jobs
    ran."""
    fired = fire_due(ctx, now)
    on_fired(fired)
    return fired, runtime(ctx, True, 1, stop, on_event, schedules=False)


def trigger(ctx: Context, event: str, payload: dict[str, Any], **options: Any) -> Received:
    """`cxrun trigger`: the event's jobs started (and run here unless detached, see
    `triggers.events.trigger`), then the alerts of what they went through sent."""
    from cxrun.ops import alerts

    received = start_jobs(ctx, event, payload, **options)
    if any(job.notify for job in received.jobs):
        alerts.deliver(ctx)
    return received
