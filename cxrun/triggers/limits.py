"""Plan limits: the jobs and records a project may start in a UTC calendar month."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import PlanLimitReached
from cxrun.store import triggers as trigger_store

if TYPE_CHECKING:
    import duckdb

    from cxrun.store.context import Context


@dataclass(frozen=True)
class Usage:
    """This month's jobs and records against the limits of cxrun.yaml (None: no limit)."""

    month: str
    jobs: int
    records: int
    jobs_limit: int | None
    records_limit: int | None
    resets_on: date

    def to_json(self) -> dict[str, Any]:
        return {
            "month": self.month,
            "jobs": {"used": self.jobs, "limit": self.jobs_limit},
            "records": {"used": self.records, "limit": self.records_limit},
            "resets_on": self.resets_on.isoformat(),
        }


def month_of(now: datetime) -> tuple[datetime, datetime]:
    """The UTC calendar month around `now`: its first moment and the next month's."""
    start = now.astimezone(UTC).replace(day=1, hour=0, minute=0, second=0, microsecond=0)
    following = start.replace(year=start.year + start.month // 12, month=start.month % 12 + 1)
    return start, following


def current(con: duckdb.DuckDBPyConnection, limits: Mapping[str, int], now: datetime) -> Usage:
    start, following = month_of(now)
    jobs, records = trigger_store.month_usage(con, start, following)
    return Usage(
        start.strftime("%Y-%m"),
        jobs,
        records,
        limits.get("jobs_per_month"),
        limits.get("records_per_month"),
        following.date(),
    )


def usage(ctx: Context, now: datetime | None = None) -> Usage:
    """`cxrun usage`: this month's jobs and records against the plan limits."""
    with ctx.state.read() as con:
        return current(con, ctx.project.limits, now or utcnow())


def check(
    con: duckdb.DuckDBPyConnection,
    limits: Mapping[str, int],
    now: datetime,
    records: Callable[[], int],
) -> None:
    """Refuse a new job (PlanLimitReached) when it would go over a limit. `records` counts the
    rows it would take; it is only called when there is a records limit. Call it in the write
    transaction that creates the job, before the job is written."""
    if not limits:
        return
    used = current(con, limits, now)
    if used.jobs_limit is not None and used.jobs + 1 > used.jobs_limit:
        raise _refusal("jobs_per_month", used.jobs_limit, used.jobs, 1, used.resets_on)
    if used.records_limit is not None:
        needs = records()
        if used.records + needs > used.records_limit:
            raise _refusal(
                "records_per_month", used.records_limit, used.records, needs, used.resets_on
            )


def _refusal(name: str, limit: int, used: int, needs: int, resets: date) -> PlanLimitReached:
    return PlanLimitReached(
        f"plan limit reached: {name} is {limit}; {used} used this month and this job needs {needs}",
        f"the count resets on {resets.isoformat()}; raise limits in cxrun.yaml",
        {
            "limit": name,
            "allowed": limit,
            "used": used,
            "needs": needs,
            "resets_on": resets.isoformat(),
        },
    )
