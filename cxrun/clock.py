"""Time: the state stores naive UTC timestamps; everything else uses aware UTC datetimes.

`CXRUN_NOW` (an ISO 8601 time) fixes the clock for every command: tests move time forward
without sleeping, and an operator can see what a schedule tick would do at a given moment. The
command line reads it once per command (`fix`); the clock is read thousands of times a second.
"""

from __future__ import annotations

import os
from datetime import UTC, datetime

_fixed: datetime | None = None


def fix(moment: datetime | None) -> None:
    """Fix the clock at `moment` (None: the real clock again)."""
    global _fixed
    _fixed = moment


def fix_from_environment() -> None:
    """`CXRUN_NOW`, when set, fixes the clock (ValueError when it is not a time)."""
    text = os.environ.get("CXRUN_NOW")
    fix(parse_moment(text) if text else None)


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
