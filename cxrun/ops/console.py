"""What the operator console reads beyond the CLI's views: the Jobs page's runs with the
spinners to filter by, and the chart of records finished per minute of the running jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cxrun.base.bulk import Plan
from cxrun.base.clock import utcnow
from cxrun.base.filters import JobFilter
from cxrun.base.models import JobsPage
from cxrun.ops import bulk, views
from cxrun.store import console as console_store
from cxrun.store.context import Context

CHART_MINUTES = 30


@dataclass(frozen=True)
class Throughput:
    """Records finished per minute of each running job, over the last `minutes` up to `now`."""

    now: datetime
    minutes: int
    series: dict[str, list[int]] = field(default_factory=dict)  # "job N (spinner)": per minute

    @property
    def start(self) -> datetime:
        """The first minute of the chart."""
        return self.now.replace(second=0, microsecond=0) - timedelta(minutes=self.minutes - 1)


def runs(
    ctx: Context, filters: JobFilter, page: int, per_page: int
) -> tuple[JobsPage, list[str], dict[str, Plan]]:
    """The Jobs page's runs by filter, `per_page` a page, the spinners that have jobs (its
    filter's choices) and, when a filter is set, the plan of each bulk action over its jobs."""
    with ctx.state.read() as con:
        found = views.page_of(con, filters, page, per_page)
        spinners = console_store.spinner_names(con)
    return found, spinners, ({} if filters.empty else bulk.plans(ctx, filters))


def throughput(
    ctx: Context, minutes: int = CHART_MINUTES, now: datetime | None = None
) -> Throughput:
    """Each running job's records finished per minute, a zero for a minute with none."""
    chart = Throughput(now or utcnow(), minutes)
    with ctx.state.read() as con:
        rows = console_store.finished_per_minute(con, chart.start)
    for job, spinner, minute, count in rows:
        slot = int((minute - chart.start).total_seconds() // 60)
        line = chart.series.setdefault(f"job {job} ({spinner})", [0] * minutes)
        if 0 <= slot < minutes:
            line[slot] += count
    return chart
