"""Time: the state stores naive UTC timestamps; everything else uses aware UTC datetimes.

`CXRUN_NOW` (an ISO 8601 time) fixes the clock for every command: tests move time forward
without sleeping, and an operator can see what a schedule tick would do at a given moment. The
command line reads it once per command (`fix`); the clock is read thousands of times a second.
It must lie between EARLIEST and LATEST: every deadline cxrun counts from now (a wait or an
approval's timeout, at most 100 years; a schedule's next fire; the next month of the plan
limits) then stays a time Python can hold, which ends with the year 9999.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

from cxrun.base.errors import CxrunError

EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)

_fixed: datetime | None = None


def fix(moment: datetime | None) -> None:
    """Fix the clock at `moment` (None: the real clock again)."""
    global _fixed
    _fixed = moment


def fix_from_environment() -> None:
    """`CXRUN_NOW`, when set, fixes the clock (ValueError when it is not a time, CxrunError
    when it is outside EARLIEST to LATEST)."""
    text = os.environ.get("CXRUN_NOW")
    if not text:
        fix(None)
        return
    try:
        moment: datetime | None = parse_moment(text)
    except OverflowError:  # a time whose UTC is past the year 9999, or before the year 1
        moment = None
    if moment is None or not EARLIEST <= moment <= LATEST:
        raise CxrunError(
            f"CXRUN_NOW={text!r} is outside the times cxrun can pretend it is "
            f"({EARLIEST:%Y-%m-%d} to {LATEST:%Y-%m-%d})",
            "use a time in that range (deadlines up to 100 years ahead must stay before the "
            "year 9999), or unset CXRUN_NOW",
        )
    fix(moment)


def utcnow() -> datetime:
    return _fixed if _fixed is not None else datetime.now(UTC)


def parse_moment(text: str) -> datetime:
    """An ISO 8601 time (`Z` or an offset; naive means UTC) as an aware UTC datetime."""
    moment = datetime.fromisoformat(text.strip().replace("Z", "+00:00"))
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return moment.astimezone(UTC)


def to_db(moment: datetime) -> datetime:
    return moment.astimezone(UTC).replace(tzinfo=None)


def from_db(moment: datetime | None) -> datetime | None:
    return moment.replace(tzinfo=UTC) if moment is not None else None
