"""The Jobs page: runs on the left (filtered, 15 a page), the selected run's records on the
right, a record's journey under them; `/fragments/jobs` gives both panes for Refresh."""

from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import TYPE_CHECKING, Any

from cxrun.api import params
from cxrun.api.console import records
from cxrun.api.console.html import Safe, badge, duration, join, link, page, tag, when
from cxrun.api.console.session import csrf_of
from cxrun.api.console.web import html
from cxrun.base.enums import JobStatus, Priority, RecordStatus, Trigger

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.console.session import Session
    from cxrun.base.bulk import Plan
    from cxrun.base.models import Job, JobsPage
    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey

RUNS_PER_PAGE = 15


@dataclass(frozen=True)
class View:
    """What the Jobs page shows, as its query string says."""

    status: str | None = None
    spinner: str | None = None
    trigger: str | None = None
    page: int = 1
    job: int | None = None
    rstatus: str | None = None
    rpage: int = 1
    record: str | None = None

    def href(self, path: str = "/", **changes: Any) -> str:
        """This view's address with `changes`."""
        default = asdict(View())
        wanted = asdict(replace(self, **changes))
        return link(path, {k: v for k, v in wanted.items() if v != default[k]})


def view(request: Request) -> View:
    """The query string read with the API's checks (a bad value is a 400 page)."""
    query = request.query_params
    job = params.number(request, "job", 0, 1, 10**18) or None
    return View(
        params.choice(request, "status", JobStatus),
        query.get("spinner") or None,
        params.choice(request, "trigger", Trigger),
        params.number(request, "page", 1, 1, params.MAX_PAGE),
        job,
        params.choice(request, "rstatus", RecordStatus),
        params.number(request, "rpage", 1, 1, params.MAX_PAGE),
        query.get("record") or None,
    )


async def jobs_page(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /: the whole page."""
    refresh = join(
        [
            tag("button", "Refresh", type="button", id="refresh", data_panes="/fragments/jobs"),
            tag("span", "", id="refreshed", class_="hint"),
        ]
    )
    bar = tag("div", join([tag("h1", "Jobs"), refresh]), class_="toolbar")
    body = join([bar, await panes(session, view(request))])
    return html(page("Jobs", body, key.name, csrf_of(session, request)))


async def fragment(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /fragments/jobs: the two panes alone, for Refresh to swap in."""
    return html(await panes(session, view(request)))


async def panes(session: Session, shown: View) -> Safe:
    """Both panes, read in one worker-thread call."""
    runs, spinners, plans, selected = await session.api.call(lambda ctx: _read(ctx, shown))
    chosen = replace(shown, job=selected.detail.job.job) if selected else shown
    left = tag(
        "section",
        runs_pane(chosen, runs, spinners, plans),
        id="runs",
        class_="pane",
        data_pane="runs",
    )
    right = records.pane(chosen, selected)
    return tag("div", join([left, right]), class_="panes")


def _read(ctx: Context, shown: View) -> tuple[JobsPage, list[str], dict[str, Plan], Any]:
    from cxrun.base.filters import JobFilter
    from cxrun.ops import console

    filters = JobFilter(shown.status, shown.spinner, shown.trigger)
    runs, spinners, plans = console.runs(ctx, filters, shown.page, RUNS_PER_PAGE)
    job = shown.job or (runs.jobs[0].job if runs.jobs else None)
    return runs, spinners, plans, (records.read(ctx, shown, job) if job is not None else None)


def runs_pane(shown: View, runs: JobsPage, spinners: list[str], plans: dict[str, Plan]) -> Safe:
    """The filters (with a button for each bulk action that applies to the jobs they show),
    the runs of this page (the selected one marked) and the pager."""
    from cxrun.api.console.bulk import buttons

    listed = [_run(shown, job) for job in runs.jobs]
    if not listed:
        filtered = shown.status or shown.spinner or shown.trigger
        listed = [
            tag("p", "no jobs match these filters" if filtered else "no jobs yet", class_="empty")
        ]
    return join(
        [
            _filters(shown, spinners),
            buttons(plans),
            tag("ol", join(listed), class_="runs"),
            _pager(shown, runs),
        ]
    )


def _filters(shown: View, spinners: list[str]) -> Safe:
    boxes = [
        _select("status", shown.status, [s.value for s in JobStatus]),
        _select("spinner", shown.spinner, spinners),
        _select("trigger", shown.trigger, [t.value for t in Trigger]),
        tag("button", "Filter", type="submit"),
    ]
    return tag("form", join(boxes), method="get", action="/", class_="filters")


def _select(name: str, chosen: str | None, choices: list[str]) -> Safe:
    options = [tag("option", f"any {name}", value="")]
    options += [tag("option", c, value=c, selected=c == chosen) for c in choices]
    return tag(
        "label", join([tag("span", name, class_="sr"), tag("select", join(options), name=name)])
    )


def _run(shown: View, job: Job) -> Safe:
    head = join([tag("b", f"#{job.job} {job.spinner}"), f" v{job.version} · {job.trigger}"])
    lines = [
        tag("div", join([head, " ", badge(job.status), _priority(job)]), class_="run-head"),
        progress(job),
        tag("div", _reason(job), class_="reason") if job.reason else "",
        tag("div", _timing(job), class_="timing"),
    ]
    selected = "run selected" if shown.job == job.job else "run"
    target = shown.href(job=job.job, rstatus=None, rpage=1, record=None)
    return tag("li", tag("a", join(lines), href=target), class_=selected)


def _priority(job: Job) -> Safe:
    """A label for a job whose priority is not normal (the exceptions stand out)."""
    if job.priority == Priority.NORMAL:
        return Safe("")
    return tag("span", f"{job.priority} priority", class_=f"priority p-{job.priority}")


def _reason(job: Job) -> str:
    return f"{job.status}: {job.reason}" if job.status in _EXPLAINED else str(job.reason)


_EXPLAINED = (JobStatus.PAUSED, JobStatus.WAITING)


def _timing(job: Job) -> str:
    took = duration(job.duration_s())
    return f"started {when(job.started_at)} · ended {when(job.ended_at)} · took {took}"


def progress(job: Job) -> Safe:
    """A bar of completed, failed, skipped and waiting records out of the total, with the
    counts."""
    total = max(job.total, 1)
    x, bars = 0.0, []
    for kind, count in (
        ("completed", job.completed),
        ("failed", job.failed),
        ("skipped", job.skipped),
        ("waiting", job.waiting),
    ):
        width = 100 * count / total
        bars.append(f'<rect class="bar-{kind}" x="{x:.3f}" y="0" width="{width:.3f}" height="6"/>')
        x += width
    svg = Safe(
        '<svg class="bar" viewBox="0 0 100 6" preserveAspectRatio="none" role="img" '
        f'aria-label="{job.processed} of {job.total} processed">'
        '<rect class="bar-track" x="0" y="0" width="100" height="6"/>' + "".join(bars) + "</svg>"
    )
    counts = (
        f"{job.processed}/{job.total} processed · {job.completed} completed · "
        f"{job.failed} failed · {job.skipped} skipped"
        + (f" · {job.waiting} waiting" if job.waiting else "")
    )
    return tag("div", join([svg, tag("span", counts, class_="counts")]), class_="progress")


def _pager(shown: View, runs: JobsPage) -> Safe:
    return pager(runs.page, runs.pages, lambda n: shown.href(page=n), "runs")


def pager(number: int, pages: int, href: Any, what: str) -> Safe:
    """Previous, `page N of M`, next: links where there is a page to go to."""
    before = (
        tag("a", "‹ previous", href=href(number - 1))
        if number > 1
        else tag("span", "‹ previous", class_="off")
    )
    after = (
        tag("a", "next ›", href=href(number + 1))
        if number < pages
        else tag("span", "next ›", class_="off")
    )
    middle = tag("span", f"page {number} of {pages}")
    return tag("nav", join([before, middle, after]), class_="pager", aria_label=f"{what} pages")


TABLE = (
    ("GET", "/", "read", jobs_page),
    ("GET", "/fragments/jobs", "read", fragment),
)
