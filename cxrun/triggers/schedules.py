"""Schedules: each due time of a published spinner's cron trigger starts one job, exactly once.

A schedule is a spinner's (cron, timezone) pair: changing either makes a new schedule. It counts
from the moment the spinner version that introduced it was published, and from its last fire on.
Which due times fire is decided again inside the write transaction that records them, so two
ticks at the same moment (two processes, or the same tick run twice) start one job per due time.
A schedule an operator paused or removed fires nothing (see `schedule_control`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun.base import cron
from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus, Trigger
from cxrun.base.errors import CxrunError, PlanLimitReached
from cxrun.base.models import iso
from cxrun.spec.build import build
from cxrun.spec.model import ScheduleTrigger
from cxrun.store import spinners as spinner_store
from cxrun.store import triggers as trigger_store
from cxrun.triggers.starts import Prepared, Start, create_job, selecting

if TYPE_CHECKING:
    import duckdb

    from cxrun.store.context import Context

TICK_EVERY = 5.0  # seconds between two looks at the schedules in a long-lived runtime
SKIP_WINDOW = timedelta(minutes=2)  # catchup: skip still fires a due time this recent
CATCHUP_BATCH = 100  # due times one tick fires for catchup: all (the next tick goes on)
ACTIVE, PAUSED, REMOVED = "active", "paused", "removed"  # what an operator made of a schedule


@dataclass(frozen=True)
class Schedule:
    """A schedule of the latest published version of a spinner, and since when it counts;
    `number` is its place in the spinner's `triggers:` list, counting from 1."""

    spinner: str
    version: int
    trigger: ScheduleTrigger
    since: datetime
    number: int = 1

    @property
    def key(self) -> tuple[str, str]:
        return self.trigger.cron.strip(), self.trigger.timezone


@dataclass(frozen=True)
class Fire:
    """What a tick did with a due time: `started` a job, `refused` it (a plan limit), or
    `failed` to start it (the spinner cannot run now; tried again at the next tick)."""

    spinner: str
    cron: str
    timezone: str
    due_at: datetime
    job: int | None
    outcome: str
    message: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "spinner": self.spinner,
            "cron": self.cron,
            "timezone": self.timezone,
            "due_at": iso(self.due_at),
            "job": self.job,
            "outcome": self.outcome,
            "message": self.message,
        }

    def describe(self) -> str:
        where = f"{self.spinner} ({self.cron}, {self.timezone}) due {iso(self.due_at)}"
        if self.outcome == "started":
            return f"{where}: job {self.job} queued"
        return f"{where}: {self.outcome}: {self.message}"


def schedules(ctx: Context) -> list[Schedule]:
    """The schedules of every published, non-child spinner (latest versions)."""
    found = []
    with ctx.state.read() as con:
        for name, version in sorted(spinner_store.all_latest(con).items()):
            spinner = build(version.spec, name)
            if spinner.child or not spinner.schedules:
                continue
            history = spinner_store.history(con, name)
            for number, trigger in spinner.numbered_schedules:
                since = _introduced(history, name, (trigger.cron.strip(), trigger.timezone))
                found.append(Schedule(name, version.version, trigger, since, number))
    return found


def _introduced(history: list[spinner_store.Version], name: str, key: tuple[str, str]) -> datetime:
    """When the run of versions (newest first) that has this schedule began: its publish time."""
    since = history[0].published_at
    for version in history[1:]:
        keys = {(t.cron.strip(), t.timezone) for t in build(version.spec, name).schedules}
        if key not in keys:
            break
        since = version.published_at
    return since


def due(con: duckdb.DuckDBPyConnection, schedule: Schedule, now: datetime) -> list[datetime]:
    """The due times to fire now, oldest first, by the schedule's catch-up rule: none while it
    is paused or removed; after a resume, the times missed meanwhile by that rule."""
    expr, zone = schedule.key
    state = trigger_store.schedule_state(con, (schedule.spinner, expr, zone))
    if state is not None and state.state != ACTIVE:
        return []
    last = trigger_store.last_fire(con, schedule.spinner, expr, zone)
    later = (last[0] if last else None, state.floor if state else None)
    start = max([schedule.since, *(moment for moment in later if moment is not None)])
    if schedule.trigger.catchup == "all":
        return cron.due_between(expr, zone, start, now, CATCHUP_BATCH)
    latest = cron.latest(expr, zone, start, now)
    if latest is None or (schedule.trigger.catchup == "skip" and latest < now - SKIP_WINDOW):
        return []
    return [latest]


def fire_due(ctx: Context, now: datetime | None = None) -> list[Fire]:
    """Start a queued job for every due time of every schedule (see `due`)."""
    now = now or utcnow()
    found = schedules(ctx)
    with ctx.state.read() as con:
        pending = [(s, due(con, s, now)) for s in found]
    fires: list[Fire] = []
    for schedule, times in pending:
        if times:
            fires += _fire(ctx, schedule, times[0], now)
    return fires


def _fire(ctx: Context, schedule: Schedule, first: datetime, now: datetime) -> list[Fire]:
    from cxrun.triggers.prepare import prepare

    trigger = schedule.trigger
    try:
        start = Start(Trigger.SCHEDULE, trigger.select)
        prepared = prepare(ctx, schedule.spinner, start=start)
        with selecting(f"spinner '{schedule.spinner}'"), ctx.state.write() as con:
            return [_start(con, ctx, prepared, schedule, d, now) for d in due(con, schedule, now)]
    except CxrunError as exc:
        message = "; ".join(exc.lines())
        return [Fire(schedule.spinner, *schedule.key, first, None, "failed", message)]


def _start(
    con: duckdb.DuckDBPyConnection,
    ctx: Context,
    prepared: Prepared,
    schedule: Schedule,
    due_at: datetime,
    now: datetime,
) -> Fire:
    """One due time, in the tick's write transaction: a queued job, or a refusal; recorded."""
    expr, zone = schedule.key
    before = trigger_store.last_fire(con, schedule.spinner, expr, zone, started=True)
    params = {"schedule": expr, "timezone": zone, "due_at": iso(due_at)}
    start = replace(prepared.start, times=(due_at, before[0] if before else None), params=params)
    try:
        job = create_job(
            con, ctx, replace(prepared, start=start, params=params), JobStatus.QUEUED, now
        )
        fire = Fire(schedule.spinner, expr, zone, due_at, job.job, "started")
    except PlanLimitReached as exc:  # raised before the job was written: nothing to undo
        fire = Fire(schedule.spinner, expr, zone, due_at, None, "refused", "; ".join(exc.lines()))
    trigger_store.record_fire(
        con, schedule.spinner, schedule.key, due_at, (fire.job, fire.outcome, fire.message), now
    )
    return fire


@dataclass(frozen=True)
class Listed:
    """`cxrun schedule list`: a schedule, its last fire, its next due time (None while paused
    or removed), and what an operator made of it."""

    schedule: Schedule
    last: tuple[datetime, int | None, str] | None
    next_fire: datetime | None
    state: trigger_store.ScheduleState | None = None

    @property
    def status(self) -> str:
        """active, paused or removed."""
        return self.state.state if self.state else ACTIVE

    @property
    def counts_from(self) -> datetime:
        """The moment its due times count from: its introduction, or a later publish that
        lifted its removal."""
        floor = self.state.floor if self.state else None
        return max(self.schedule.since, floor) if floor else self.schedule.since

    def to_json(self) -> dict[str, Any]:
        trigger, state = self.schedule.trigger, self.state
        return {
            "spinner": self.schedule.spinner,
            "version": self.schedule.version,
            "trigger": self.schedule.number,
            "cron": trigger.cron,
            "timezone": trigger.timezone,
            "catchup": trigger.catchup,
            "select": trigger.select,
            "state": self.status,
            "state_since": iso(state.since) if state and self.status != ACTIVE else None,
            "since": iso(self.counts_from),
            "last_fire": iso(self.last[0]) if self.last else None,
            "last_job": self.last[1] if self.last else None,
            "last_outcome": self.last[2] if self.last else None,
            "next_fire": iso(self.next_fire),
        }


def listing(ctx: Context, now: datetime | None = None) -> list[Listed]:
    """Every schedule with its last fire, next due time and state."""
    now = now or utcnow()
    found = schedules(ctx)
    with ctx.state.read() as con:
        lasts = [trigger_store.last_fire(con, s.spinner, *s.key) for s in found]
        states = trigger_store.schedule_states(con)
    return [
        _listed(s, last, states.get((s.spinner, *s.key)), now)
        for s, last in zip(found, lasts, strict=True)
    ]


def _listed(
    schedule: Schedule,
    last: tuple[datetime, int | None, str] | None,
    state: trigger_store.ScheduleState | None,
    now: datetime,
) -> Listed:
    listed = Listed(schedule, last, None, state)
    if listed.status != ACTIVE:
        return listed
    later = max(now, listed.counts_from, *(last[:1] if last else ()))
    return replace(listed, next_fire=cron.next_after(*schedule.key, later))


def runtime_hook(ctx: Context, on_event: Callable[[str], None]) -> Callable[[], None]:
    """The runtime's per-turn hook: fire due schedules, at most every TICK_EVERY seconds."""
    import time

    last = [-TICK_EVERY]

    def hook() -> None:
        if time.monotonic() - last[0] < TICK_EVERY:
            return
        last[0] = time.monotonic()
        try:
            for fire in fire_due(ctx):
                on_event(fire.describe())
        except CxrunError as exc:
            on_event(f"schedules: {exc.message}")

    return hook


def exit_code(fired: list[Fire]) -> int:
    """4 when a plan limit refused a due time, 2 when a spinner could not start, else 0."""
    outcomes = {f.outcome for f in fired}
    return 4 if "refused" in outcomes else 2 if "failed" in outcomes else 0
