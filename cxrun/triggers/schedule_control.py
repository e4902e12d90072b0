"""Pausing, resuming and removing schedules: which schedules an operator names (a spinner, and
one of its triggers or all its schedules), their new state, and a removal lifted by a publish.

A paused or removed schedule fires nothing; `resume` lets the next tick fire the due times
missed meanwhile by the schedule's catch-up rule. A removed schedule stays off until a publish
makes a new version of the spinner that has it: it then counts from that publish."""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import Conflict, CxrunError, NotFound
from cxrun.spec.build import build
from cxrun.store import spinners as spinner_store
from cxrun.store import triggers as trigger_store
from cxrun.triggers.schedules import ACTIVE, PAUSED, REMOVED, Listed, Schedule, listing

if TYPE_CHECKING:
    import duckdb

    from cxrun.store.context import Context

ACTIONS = {"pause": PAUSED, "resume": ACTIVE, "remove": REMOVED}  # the state each one sets
_COUNTED = "by their place in the spinner's triggers: list, from 1"
_BACK = "a removed schedule comes back when `cxrun publish` publishes a new version that has it"


def control(
    ctx: Context, name: str, action: str, number: int | None = None, now: datetime | None = None
) -> list[Listed]:
    """Pause, resume or remove the spinner's schedule at `number` in its `triggers:` list
    (counting from 1), or all its schedules; the schedules named, as they are now. A pause or
    a removal keeps its first moment when repeated; pause and resume leave a removed schedule
    removed (Conflict when only removed ones are named)."""
    now = now or utcnow()
    if action not in ACTIONS:
        raise NotFound(f"no schedule action {action!r}", "use pause, resume or remove")
    if number is not None and number < 1:
        raise CxrunError(f"trigger {number}: triggers are counted from 1", _COUNTED)
    wanted = ACTIONS[action]
    chosen = _chosen(ctx, listing(ctx, now), name, number)
    if wanted != REMOVED and all(s.status == REMOVED for s in chosen):
        which = f"schedule {number} of" if number else "every schedule of"
        which += f" spinner '{name}' is"
        raise Conflict(f"{which} removed: nothing to {action}", _BACK)
    with ctx.state.write() as con:  # each state read again where it is written
        for listed in chosen:
            key = _key(listed.schedule)
            state = trigger_store.schedule_state(con, key)
            current = state.state if state else ACTIVE
            if current != wanted and (current != REMOVED or wanted == REMOVED):
                trigger_store.set_schedule_state(con, key, wanted, now)
    numbers = {s.schedule.number for s in chosen}
    return [
        s for s in listing(ctx, now) if s.schedule.spinner == name and s.schedule.number in numbers
    ]


def _key(schedule: Schedule) -> tuple[str, str, str]:
    return (schedule.spinner, *schedule.key)


def _chosen(ctx: Context, found: list[Listed], name: str, number: int | None) -> list[Listed]:
    """The schedules an operator named, or NotFound saying which exist."""
    mine = [s for s in found if s.schedule.spinner == name]
    if not mine:
        raise _no_schedules(ctx, found, name)
    if number is None:
        return mine
    picked = [s for s in mine if s.schedule.number == number]
    if not picked:
        raise NotFound(
            f"spinner '{name}' has no schedule at trigger {number}",
            f"its schedules, {_COUNTED}: {_numbers(mine)}",
        )
    return picked


def _numbers(mine: list[Listed]) -> str:
    return ", ".join(
        f"{s.schedule.number} ({s.schedule.trigger.cron}, {s.schedule.trigger.timezone})"
        for s in mine
    )


def _no_schedules(ctx: Context, found: list[Listed], name: str) -> NotFound:
    with ctx.state.read() as con:
        published = spinner_store.latest(con, name)
    names = sorted({s.schedule.spinner for s in found})
    hint = f"spinners with schedules: {', '.join(names)}" if names else "no spinner has schedules"
    if published is None:
        return NotFound(f"no published spinner '{name}'", hint)
    return NotFound(f"spinner '{name}' has no schedules (version {published.version})", hint)


def published(
    con: duckdb.DuckDBPyConnection, name: str, spec: dict[str, Any], at: datetime
) -> None:
    """A new version of `name` was published `at`: its schedules that were removed are active
    again, counting from `at` (no catch-up for the time they were removed)."""
    keys = [(t.cron.strip(), t.timezone) for t in build(spec, name).schedules]
    trigger_store.lift_removed(con, name, keys, at)
