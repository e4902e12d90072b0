"""Which jobs a listing or a bulk action takes: the filter, read from what a person typed."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

from cxrun.base import durations
from cxrun.base.clock import parse_moment, utcnow
from cxrun.base.enums import JobStatus, Trigger
from cxrun.base.errors import CxrunError
from cxrun.base.models import iso


@dataclass(frozen=True)
class JobFilter:
    """Jobs by status, spinner and trigger, created at or after `since`, whose reason contains
    `reason` (in any case); each None for any."""

    status: str | None = None
    spinner: str | None = None
    trigger: str | None = None
    since: datetime | None = None
    reason: str | None = None

    @property
    def empty(self) -> bool:
        """Whether it takes every job."""
        return self == JobFilter()

    def describe(self) -> str:
        """The jobs it takes, in words: `partial jobs of spinner welcome since 2026-11-15...`."""
        words = [f"{self.status} jobs" if self.status else "jobs"]
        words += [f"of spinner {self.spinner}"] if self.spinner else []
        words += [f"with trigger {self.trigger}"] if self.trigger else []
        words += [f"since {iso(self.since)}"] if self.since else []
        words += [f"whose reason has '{self.reason}'"] if self.reason else []
        return " ".join(words)

    def to_json(self) -> dict[str, Any]:
        return {
            "status": self.status,
            "spinner": self.spinner,
            "trigger": self.trigger,
            "since": iso(self.since),
            "reason": self.reason,
        }


def job_filter(
    status: str | None = None,
    spinner: str | None = None,
    trigger: str | None = None,
    since: str | None = None,
    reason: str | None = None,
    now: datetime | None = None,
) -> JobFilter:
    """A JobFilter from typed values (an empty one is no filter): a status and a trigger cxrun
    knows, and `since` as a duration back from now (`7d`, `24h`, `90m`) or an ISO date or time.
    A value that is none of these is a CxrunError."""
    return JobFilter(
        _known("status", status or None, JobStatus),
        spinner or None,
        _known("trigger", trigger or None, Trigger),
        since_moment(since, now or utcnow()) if since else None,
        reason or None,
    )


def _known(name: str, value: str | None, kind: type[StrEnum]) -> str | None:
    if value is None:
        return None
    try:
        return str(kind(value))
    except ValueError:
        known = ", ".join(item.value for item in kind)
        raise CxrunError(f"{name}={value!r} is not one of {known}") from None


def since_moment(text: str, now: datetime) -> datetime:
    """`7d` → seven days before `now`; `2026-11-01` or `2026-11-01T09:00:00Z` → that moment."""
    try:
        return now - timedelta(seconds=durations.seconds(text))
    except ValueError:
        pass
    try:
        return parse_moment(text)
    except (ValueError, OverflowError):
        raise CxrunError(
            f"since={text!r} is neither a duration nor an ISO date or time",
            "write how far back (7d, 24h, 90m) or from when (2026-11-01, 2026-11-01T09:00:00Z)",
        ) from None
