"""What the operator console reads beyond the CLI's views: the Jobs page's runs with the
spinners to filter by, and the chart of records finished per minute of the running jobs."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta

from cxrun.base.clock import utcnow
from cxrun.base.models import JobsPage
from cxrun.ops import views
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
    ctx: Context,
    filters: tuple[str | None, str | None, str | None],
    page: int,
    per_page: int,
) -> tuple[JobsPage, list[str]]:
    """The Jobs page's runs by status, spinner and trigger (None: any), `per_page` a page, and
    the spinners that have jobs (its filter's choices), in one read."""
    status, spinner, trigger = filters
    with ctx.state.read() as con:
        found = views.page_of(con, status, spinner, page, per_page, trigger)
        return found, console_store.spinner_names(con)


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
