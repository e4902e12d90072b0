"""Cron schedules in a time zone: which UTC moments are due, with daylight saving time handled.

Cron fields are matched against the wall clock of the schedule's zone (croniter walks wall
times; zoneinfo turns each into a UTC moment). Two wall-clock oddities, as classic cron has them:

- a wall time that does not exist (the hour skipped when clocks go forward) fires once, shifted
  by the gap: `30 2 * * *` in Europe/Paris fires at 03:30 CEST on the spring-forward day;
- a wall time that happens twice (the hour repeated when clocks go back) fires the first time
  only, unless the schedule runs every hour (`0 * * * *`, `*/15 * * * *`): those fire in the
  repeated hour too, so that they keep their rhythm.

Moments are deduplicated, so a shifted time that meets a real one fires once.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

# Wall times are walked this far beyond the UTC window: more than any daylight saving shift.
MARGIN = timedelta(hours=3)
_ALIASES = ("@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly")


def cron_problem(expr: str) -> str | None:
    """Why `expr` is not a usable five-field cron expression, or None."""
    from croniter import croniter

    text = expr.strip()
    if not text.startswith("@") and len(text.split()) != 5:
        return (
            f"'{expr}' is not a cron expression: use five fields "
            "(minute hour day-of-month month day-of-week), e.g. '0 9 * * 1-5'"
        )
    if text.startswith("@") and text not in _ALIASES:
        return f"'{expr}' is not a cron alias (one of: {', '.join(_ALIASES)})"
    if not croniter.is_valid(text):
        try:
            croniter(text)
        except Exception as exc:  # croniter says why in its message
            return f"'{expr}' is not a valid cron expression: {exc}"
        return f"'{expr}' is not a valid cron expression"
    try:
        croniter(text, datetime(2000, 1, 1)).get_next(datetime)
    except Exception:
        return f"'{expr}' never matches a date"
    return None


def zone_problem(name: str) -> str | None:
    """Why `name` is not an IANA time zone name, or None."""
    try:
        zone(name)
    except (ZoneInfoNotFoundError, ValueError):
        return f"unknown time zone '{name}' (use an IANA name such as Europe/Paris or UTC)"
    return None


@cache
def zone(name: str) -> ZoneInfo:
    return ZoneInfo(name)


@cache
def _every_hour(expr: str) -> bool:
    from croniter import croniter

    hours = croniter(expr.strip()).expanded[1]
    return "*" in hours or len(set(hours)) == 24


def _moments(wall: datetime, tz: ZoneInfo, every_hour: bool) -> list[datetime]:
    """The UTC moments of one wall time (none, one or two; see the module docstring)."""
    first = wall.replace(tzinfo=tz, fold=0).astimezone(UTC)
    second = wall.replace(tzinfo=tz, fold=1).astimezone(UTC)
    if first == second:
        return [first]
    if first.astimezone(tz).replace(tzinfo=None) != wall:  # skipped: fold=0 shifts it later
        return [first]
    return [first, second] if every_hour else [first]


def _walls(expr: str, start: datetime, backward: bool) -> Iterator[datetime]:
    """Wall times matching `expr`, strictly after (or before) the naive wall time `start`."""
    from croniter import croniter

    walker = croniter(expr.strip(), start)
    step = walker.get_prev if backward else walker.get_next
    while True:
        yield step(datetime)


def _wall(moment: datetime, tz: ZoneInfo) -> datetime:
    return moment.astimezone(tz).replace(tzinfo=None)


def due_between(
    expr: str, tz_name: str, after: datetime, until: datetime, limit: int
) -> list[datetime]:
    """The first `limit` due moments in (after, until], oldest first (aware UTC).

    The walk costs in proportion to `limit`, not to the span: it keeps only the `limit` earliest
    moments, and stops once it has them and the wall time is more than MARGIN past the last one
    (a later wall time cannot give an earlier moment).
    """
    if limit < 1:
        return []
    tz, hourly = zone(tz_name), _every_hour(expr)
    found: list[datetime] = []  # sorted, at most `limit`
    end = _wall(until, tz) + MARGIN
    for wall in _walls(expr, _wall(after, tz) - MARGIN, backward=False):
        if wall > end or (len(found) >= limit and wall > _wall(found[-1], tz) + MARGIN):
            break
        for moment in _moments(wall, tz, hourly):
            if after < moment <= until:
                _keep(found, moment, limit)
    return found


def _keep(found: list[datetime], moment: datetime, limit: int) -> None:
    """Put `moment` into the sorted list `found` once, keeping only its `limit` earliest."""
    at = bisect.bisect_left(found, moment)
    if at < len(found) and found[at] == moment:
        return
    found.insert(at, moment)
    del found[limit:]


def latest(expr: str, tz_name: str, after: datetime, until: datetime) -> datetime | None:
    """The last due moment in (after, until], or None."""
    tz, hourly = zone(tz_name), _every_hour(expr)
    best: datetime | None = None
    floor = _wall(after, tz) - MARGIN
    for wall in _walls(expr, _wall(until, tz) + MARGIN, backward=True):
        if wall < floor or (best is not None and wall < _wall(best, tz) - MARGIN):
            break
        for moment in _moments(wall, tz, hourly):
            if after < moment <= until and (best is None or moment > best):
                best = moment
    return best


def next_after(expr: str, tz_name: str, after: datetime) -> datetime | None:
    """The first due moment strictly after `after`."""
    tz, hourly = zone(tz_name), _every_hour(expr)
    best: datetime | None = None
    for wall in _walls(expr, _wall(after, tz) - MARGIN, backward=False):
        if best is not None and wall > _wall(best, tz) + MARGIN:
            break
        for moment in _moments(wall, tz, hourly):
            if moment > after and (best is None or moment < best):
                best = moment
    return best
