"""The right pane of the Jobs page: the selected run's header and controls, its records
(filtered by status, paginated) and the journey of the record opened."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrun.api.console.html import Safe, badge, duration, join, notice, tag, value
from cxrun.base.enums import JobStatus, RecordStatus

if TYPE_CHECKING:
    from cxrun.api.console.jobs import View
    from cxrun.base.models import Job, JourneyEntry, Record
    from cxrun.ops import Context
    from cxrun.ops.watch import JobDetail

RECORDS_PER_PAGE = 25


@dataclass(frozen=True)
class Selected:
    """The selected run in detail, a page of its records, and the journey opened (if any)."""

    detail: JobDetail
    records: list[Record]
    journey: list[JourneyEntry] | None


def read(ctx: Context, shown: View, job: int) -> Selected:
    """What the pane shows of `job` (NotFound, a 404 page, for an unknown job or record)."""
    from cxrun.ops import views, watch

    detail = watch.job_detail(ctx, job)
    found = views.records(ctx, job, shown.rstatus, shown.rpage, RECORDS_PER_PAGE)
    journey = views.journey(ctx, job, shown.record) if shown.record else None
    return Selected(detail, found, journey)


def pane(shown: View, selected: Selected | None) -> Safe:
    """The pane, or what is true when there is no run to show."""
    if selected is None:
        body = tag("p", "no run selected: there are no jobs to show", class_="empty")
    else:
        body = join(
            [_header(selected.detail), _records(shown, selected), _journey(shown, selected)]
        )
    return tag("section", body, id="records", class_="pane", data_pane="records")


def _header(detail: JobDetail) -> Safe:
    from cxrun.api.console.jobs import progress

    job = detail.job
    title = tag("h2", join([f"Job {job.job} · {job.spinner} v{job.version} ", badge(job.status)]))
    eta = f" · about {duration(detail.eta_s)} left" if detail.eta_s is not None else ""
    lines = [title, progress(job), tag("div", (job.reason or "") + eta, class_="reason")]
    lines += [_alerts(detail.alerts)] if detail.alerts else []
    return tag("div", join([*lines, controls(job)]), class_="job-head")


def _alerts(alerts: list[dict[str, Any]]) -> Safe:
    """The alerts sent of the job's statuses; one that failed says why."""
    items = []
    for alert in alerts:
        what = f"{alert['status']} #{alert['n']} → {alert['channel']}: {alert['state']}"
        failed = alert["state"] == "failed"
        text = f"{what} ({alert['error']})" if failed else what
        items.append(tag("li", text, class_="alert failed" if failed else "alert"))
    return tag("ul", join(items), class_="alerts")


def controls(job: Job) -> Safe:
    """Links to the confirm step of each control the job's status allows."""
    allowed = [
        ("cancel", "Cancel", not job.status.finished),
        ("pause", "Pause", job.status in (JobStatus.QUEUED, JobStatus.RUNNING, JobStatus.WAITING)),
        ("resume", "Resume", job.status == JobStatus.PAUSED),
        ("retry", "Retry failed", job.status.finished and job.failed > 0),
    ]
    links = [
        tag("a", label, href=f"/jobs/{job.job}/{action}", class_=f"button {action}")
        for action, label, shown in allowed
        if shown
    ]
    return tag("div", join(links), class_="controls")


def _records(shown: View, selected: Selected) -> Safe:
    job, counts = selected.detail.job, selected.detail.records
    tabs = [_tab(shown, None, f"all {job.total}")]
    tabs += [_tab(shown, s.value, f"{s.value} {counts.get(s.value, 0)}") for s in RecordStatus]
    matching = job.total if shown.rstatus is None else counts.get(shown.rstatus, 0)
    rows = [_record(shown, record) for record in selected.records]
    table = (
        _table(("key", "status", "tags", "outputs", "error"), rows) if rows else _none(shown, job)
    )
    pages = max(1, -(-matching // RECORDS_PER_PAGE))
    return join(
        [
            tag("nav", join(tabs), class_="tabs", aria_label="record status"),
            table,
            _pager(shown, pages),
        ]
    )


def _pager(shown: View, pages: int) -> Safe:
    from cxrun.api.console.jobs import pager

    return pager(shown.rpage, pages, lambda n: shown.href(rpage=n), "records")


def _tab(shown: View, status: str | None, label: str) -> Safe:
    current = "tab current" if shown.rstatus == status else "tab"
    return tag("a", label, href=shown.href(rstatus=status, rpage=1, record=None), class_=current)


def _none(shown: View, job: Job) -> Safe:
    if shown.rstatus:
        return tag("p", f"no {shown.rstatus} records in job {job.job}", class_="empty")
    return tag("p", f"no records in job {job.job} yet", class_="empty")


def _table(heads: tuple[str, ...], rows: list[Safe]) -> Safe:
    head = tag("thead", tag("tr", join(tag("th", h) for h in heads)))
    return tag("div", tag("table", join([head, tag("tbody", join(rows))])), class_="scroll")


def _record(shown: View, record: Record) -> Safe:
    opened = "open" if shown.record == record.record else None
    key = tag("a", record.record, href=shown.href(record=record.record) + "#journey", class_="key")
    cells = [
        key,
        badge(record.status),
        ", ".join(record.tags) or "—",
        value(record.outputs),
        tag("pre", record.error, class_="error") if record.error else "—",
    ]
    return tag("tr", join(tag("td", cell) for cell in cells), class_=opened)


def _journey(shown: View, selected: Selected) -> Safe:
    if selected.journey is None:
        return Safe("")
    job = selected.detail.job.job
    close = tag("a", "close", href=shown.href(record=None), class_="close")
    head = tag("h3", join([f"Journey of record {shown.record} in job {job} ", close]))
    rows = [_entry(entry) for entry in selected.journey]
    heads = ("step", "status", "attempt", "message", "output", "error", "tokens", "duration")
    body = _table(heads, rows) if rows else notice("no step has run for this record yet")
    return tag("section", join([head, body]), id="journey")


def _entry(entry: JourneyEntry) -> Safe:
    step = (
        join([tag("span", f"{entry.parent} › ", class_="parent"), entry.step])
        if entry.parent
        else entry.step
    )
    tokens = _tokens(entry.usage)
    ms = "—" if entry.duration_ms is None else f"{entry.duration_ms:.1f} ms"
    cells = [
        step,
        badge(entry.status),
        entry.attempt,
        tag("pre", entry.message, class_="value") if entry.message else "—",
        value(entry.output),
        tag("pre", entry.error, class_="error") if entry.error else "—",
        tokens,
        ms,
    ]
    return tag("tr", join(tag("td", c) for c in cells), class_="child" if entry.parent else None)


def _tokens(usage: dict[str, int] | None) -> str:
    if not usage:
        return "—"
    return " · ".join(f"{name.replace('_tokens', '')} {count}" for name, count in usage.items())
