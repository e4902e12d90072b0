"""The jobs table: every column on a wide console, the ones that matter cut to fit a narrow one;
the live redraw's header and footer; what an empty listing says."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.enums import Priority
from cxrun.base.filters import JobFilter
from cxrun.base.models import Job, JobsPage
from cxrun.render import style

if TYPE_CHECKING:
    from rich.console import RenderableType

_ALL = (
    "job",
    "spinner",
    "ver",
    "trigger",
    "priority",
    "progress",
    "ok",
    "failed",
    "skipped",
    "status",
    "started",
    "ended",
    "duration",
    "tokens",
    "reason",
)
_NARROW = (
    "job",
    "spinner",
    "trigger",
    "prio",
    "progress",
    "failed",
    "status",
    "started",
    "took",
    "reason",
)
_SPINNER_ROOM = 18  # the spinner column's most room in the narrow columns
_REASON_ROOM = 24  # the reason's least room before the narrow columns are used instead


def when(moment: datetime | None, short: bool = False) -> str:
    """A moment in UTC: date and time, or (short) month, day, hours and minutes."""
    if moment is None:
        return ""
    return moment.astimezone(UTC).strftime("%m-%d %H:%M" if short else "%Y-%m-%d %H:%M:%S")


def seconds(value: float | None) -> str:
    """A duration as an operator reads it: 4.2s, 38s, 12m05s, 3h07m."""
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
    minutes, secs = divmod(int(value), 60)
    return f"{minutes}m{secs:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def bar(done: int, total: int, width: int = 8) -> str:
    """Rows worked on out of the total; a job with no rows has an empty bar, not a full one."""
    filled = 0 if total <= 0 else min(width, round(width * done / total))
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def tokens(job: Job) -> str:
    """The AI tokens a job used, and their cost where known."""
    total = job.prompt_tokens + job.completion_tokens
    if not total:
        return ""
    cost = f" ${job.cost:.4f}" if job.cost else ""
    return f"{total:,}{cost}"


def _cells(job: Job, wide: bool) -> dict[str, str]:
    """The job's cells as plain text (the status is coloured when the row is added)."""
    done = job.processed - job.cancelled  # rows worked on, not cancelled
    return {
        "job": str(job.job),
        "spinner": job.spinner if wide else f"{job.spinner} v{job.version}",
        "ver": str(job.version),
        "trigger": job.trigger,
        "priority": str(job.priority),
        "prio": "" if job.priority == Priority.NORMAL else str(job.priority),  # the exceptions
        "progress": bar(done, job.total, 8 if wide else 4),
        "ok": str(job.completed),
        "failed": str(job.failed),
        "skipped": str(job.skipped),
        "status": str(job.status),
        "started": when(job.started_at, short=not wide),
        "ended": when(job.ended_at, short=not wide),
        "duration": seconds(job.duration_s()),
        "took": seconds(job.duration_s()),
        "tokens": tokens(job),
        "reason": job.reason or "",
    }


def _widths(columns: Sequence[str], rows: list[dict[str, str]]) -> dict[str, int]:
    return {c: max([len(c), *(len(row[c]) for row in rows)]) for c in columns}


def _layout(rows_of: Callable[[bool], list[dict[str, str]]], width: int) -> tuple[Any, ...]:
    """Every column when they fit with room for the reason, else the narrow ones (the reason
    takes what is left and is cut short; `prio` only when a job is not of normal priority)."""
    for wide, every in ((True, _ALL), (False, _NARROW)):
        rows = rows_of(wide)
        columns = tuple(c for c in every if c != "prio" or any(row["prio"] for row in rows))
        widths = _widths(columns, rows)
        if not wide:  # a long spinner name is cut rather than squeezing out the reason
            widths["spinner"] = min(widths["spinner"], _SPINNER_ROOM)
        fixed = sum(widths[c] for c in columns if c != "reason") + len(columns) - 1
        if not wide or width - fixed >= min(_REASON_ROOM, widths["reason"]):
            widths["reason"] = max(len("reason"), min(widths["reason"], width - fixed))
            return columns, rows, widths
    raise AssertionError("unreachable")


def table(jobs: Sequence[Job], width: int) -> RenderableType:
    """The jobs as a table that fits `width` columns: cells are cut short, never wrapped."""
    columns, rows, widths = _layout(lambda wide: [_cells(j, wide) for j in jobs], width)
    shown = style.narrow_table(*columns)
    for column in shown.columns:
        column.width = widths[str(column.header)]
    for row in rows:
        shown.add_row(
            *(style.status(row[c]) if c == "status" else style.escape(row[c]) for c in columns)
        )
    return shown


def empty(filters: JobFilter, page: int = 1, matching: int = 0) -> str:
    """What a listing with no jobs says: which filter matched nothing, or past which page."""
    if matching:
        return f"no jobs on page {page}: {matching} job(s) match, on earlier pages"
    return "no jobs yet" if filters.empty else f"no {filters.describe()}"


def frame(page: JobsPage, width: int) -> RenderableType:
    """One redraw of `jobs --watch`: when it was read and whether a runtime is up, the table,
    and which page of how many jobs it shows."""
    from rich.console import Group

    runtime = f"runtime up: {page.runtime}" if page.runtime else "runtime down"
    header = f"jobs at {when(page.read_at)} UTC · {runtime} · Ctrl-C to leave"
    first = (page.page - 1) * page.limit + 1 if page.jobs else 0
    shown = f"{first}-{first + len(page.jobs) - 1}" if page.jobs else "none"
    footer = f"page {page.page} of {page.pages} · {page.matching} job(s) · showing {shown}"
    body = table(page.jobs, width) if page.jobs else empty_of(page)
    return Group(header, body, footer)


def empty_of(page: JobsPage) -> str:
    """The empty message for a JobsPage."""
    return empty(page.filters, page.page, page.matching)


def watch(
    fetch: Callable[[], JobsPage],
    interval: float,
    busy: type[Exception],
    stop: Callable[[], bool],
) -> None:
    """Redraw the jobs page in place every `interval` seconds until `stop()` (Ctrl-C). A state
    that is busy for a moment keeps the last frame rather than failing."""
    import contextlib
    import time

    from rich.live import Live

    console = style.console()
    with Live(frame(fetch(), console.width), console=console, auto_refresh=False) as live:
        while True:
            due = time.monotonic() + interval
            while not stop() and time.monotonic() < due:  # wakes within 0.1 s of a signal
                time.sleep(min(0.1, interval))
            with contextlib.suppress(busy):  # after Ctrl-C too: the last frame is up to date
                live.update(frame(fetch(), console.width), refresh=True)
            if stop():
                return
