"""Eligible windows: the weekdays and hours (in a time zone) when sends and AI calls may happen."""

from __future__ import annotations

import re
from datetime import UTC, datetime, time, timedelta
from typing import Any

from cxrun.spec.model import Eligible

DAYS = ("mon", "tue", "wed", "thu", "fri", "sat", "sun")
_HOURS = re.compile(r"^\s*(\d{1,2}):(\d{2})\s*-\s*(\d{1,2}):(\d{2})\s*$")


def parse(spec: dict[str, Any]) -> Eligible:
    """`{days: mon-fri, hours: "09:00-18:00", timezone: Europe/Paris}`; ValueError says what is
    wrong, as `key: message`."""
    from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

    zone = spec.get("timezone") or "UTC"
    try:
        ZoneInfo(zone)
    except (ZoneInfoNotFoundError, ValueError):
        raise ValueError(f"timezone: unknown time zone '{zone}' (use an IANA name)") from None
    days = _days(spec.get("days") or "mon-sun")
    match = _HOURS.match(spec["hours"])
    if not match:
        raise ValueError(f"hours: '{spec['hours']}' is not HH:MM-HH:MM")
    h1, m1, h2, m2 = (int(g) for g in match.groups())
    if h1 > 24 or h2 > 24 or m1 > 59 or m2 > 59 or h1 * 60 + m1 > 1440 or h2 * 60 + m2 > 1440:
        raise ValueError(f"hours: '{spec['hours']}' is not a time range within a day")
    start, end = h1 * 60 + m1, h2 * 60 + m2
    if start == end:
        raise ValueError(f"hours: '{spec['hours']}' is empty (start and end are the same)")
    text = f"{spec.get('days') or 'mon-sun'} {spec['hours'].strip()} {zone}"
    return Eligible(days=days, start=start, end=end, timezone=zone, text=text)


def _days(text: str) -> tuple[int, ...]:
    found: list[int] = []
    for part in text.lower().split(","):
        ends = [p.strip() for p in part.split("-")]
        for name in ends:
            if name not in DAYS:
                raise ValueError(f"days: '{name}' is not a day (use {', '.join(DAYS)})")
        first, last = DAYS.index(ends[0]), DAYS.index(ends[-1])
        day = first
        while True:  # a range may wrap around the week (fri-mon)
            if day not in found:
                found.append(day)
            if day == last:
                break
            day = (day + 1) % 7
    return tuple(sorted(found))


def inside(window: Eligible, now: datetime) -> bool:
    """Whether `now` (aware) is inside the window. A window over midnight (22:00-06:00) belongs
    to the day it starts on."""
    local = _local(window, now)
    minute = local.hour * 60 + local.minute
    if window.start < window.end:
        return local.weekday() in window.days and window.start <= minute < window.end
    yesterday = (local.weekday() - 1) % 7
    return (local.weekday() in window.days and minute >= window.start) or (
        yesterday in window.days and minute < window.end
    )


def next_open(window: Eligible, now: datetime) -> datetime:
    """The first moment at or after `now` inside the window (UTC)."""
    if inside(window, now):
        return now
    local = _local(window, now)
    for ahead in range(0, 8):
        day = local.date() + timedelta(days=ahead)
        if day.weekday() not in window.days:
            continue
        hour, minute = divmod(window.start, 60)
        opening = datetime.combine(day, time(hour % 24, minute), tzinfo=local.tzinfo)
        if hour == 24:
            opening += timedelta(days=1)
        # A local time that does not exist (a DST gap) moves on to the first one that does.
        opening = opening.astimezone(UTC).astimezone(local.tzinfo)
        if opening > now:
            return opening.astimezone(UTC)
    raise AssertionError("a window with at least one day opens within a week")


def _local(window: Eligible, now: datetime) -> datetime:
    from zoneinfo import ZoneInfo

    return now.astimezone(ZoneInfo(window.timezone))
