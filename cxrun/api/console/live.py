"""Live Ops: summary cards (jobs by status, stalled jobs, the runtime, paused jobs, failures
per step in the last hour) and the chart, refreshed every 5 seconds from `/fragments/live`."""

from __future__ import annotations

from collections.abc import Iterable
from typing import TYPE_CHECKING, Any

from cxrun.api.console import chart
from cxrun.api.console.html import Safe, badge, duration, join, link, page, tag, when
from cxrun.api.console.session import csrf_of
from cxrun.api.console.web import HEADERS, html

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.console.session import Session
    from cxrun.base.models import Job
    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey
    from cxrun.ops.watch import Live

POLL_MS = 5000


async def live_page(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /live."""
    cards = tag(
        "div",
        await cards_html(session),
        id="live",
        data_poll="/fragments/live",
        data_every=str(POLL_MS),
    )
    heading = tag(
        "div",
        join([tag("h1", "Live Ops"), tag("span", "", id="refreshed", class_="hint")]),
        class_="toolbar",
    )
    return html(page("Live Ops", join([heading, cards]), key.name, csrf_of(session, request)))


async def fragment(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /fragments/live: the cards alone, in their element for the page's script."""
    return html(tag("div", await cards_html(session), id="live"))


async def chart_svg(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /live/chart.svg: the chart as an SVG document."""
    from starlette.responses import Response

    from cxrun.ops import console

    found = await session.api.call(lambda ctx: console.throughput(ctx))
    text = '<?xml version="1.0" encoding="utf-8"?>\n' + chart.svg(found)
    return Response(text, headers=HEADERS, media_type="image/svg+xml")


async def cards_html(session: Session) -> Safe:
    """The cards and the chart, read in one worker-thread call."""
    summary, paused, throughput = await session.api.call(_read)
    cards = [
        _card("Jobs by status", _by_status(summary)),
        _card("Runtime", _runtime(summary), "up" if summary.runtime_up else "down"),
        _card("Stalled jobs", _stalled(summary)),
        _card("Paused jobs", _paused(paused)),
        _card("Failures per step, last hour", _failures(summary), wide=True),
        _card("Records finished per minute, running jobs", chart.svg(throughput), wide=True),
    ]
    warnings = [tag("p", line, class_="notice warn") for line in summary.warnings]
    return join([*warnings, tag("div", join(cards), class_="cards")])


def _read(ctx: Context) -> tuple[Live, list[Job], Any]:
    from cxrun.base.filters import JobFilter
    from cxrun.ops import console, views, watch

    paused = views.jobs(ctx, JobFilter(status="paused"), 1, 20)
    return watch.live(ctx), paused, console.throughput(ctx)


def _card(title: str, body: object, state: str | None = None, wide: bool = False) -> Safe:
    kind = "card" + (" wide" if wide else "") + (f" runtime-{state}" if state else "")
    return tag("section", join([tag("h2", title), body]), class_=kind)


def _by_status(summary: Live) -> Safe:
    rows = [
        tag("li", join([tag("a", badge(status), href=link("/", {"status": status})), f" {count}"]))
        for status, count in summary.jobs.items()
        if count
    ]
    return (
        tag("ul", join(rows), class_="counts-list")
        if rows
        else tag("p", "no jobs yet", class_="empty")
    )


def _runtime(summary: Live) -> Safe:
    state = tag("p", "up" if summary.runtime_up else "down", class_="big", id="runtime-state")
    beat = tag("p", f"last heartbeat {when(summary.last_heartbeat_at)}")
    who = [
        tag("p", f"pid {r.pid} on {r.host} since {when(r.started_at)}", class_="hint")
        for r in summary.runtimes
    ]
    fix = (
        []
        if summary.runtime_up
        else [tag("p", "start `cxrun runtime` to run queued jobs", class_="hint")]
    )
    return join([state, beat, *who, *fix])


def _stalled(summary: Live) -> Safe:
    if not summary.stalled:
        return tag(
            "p",
            f"no running job has been idle for {summary.stall_minutes:g} minutes",
            class_="empty",
        )
    return _jobs_list(
        (s.job, s.spinner, f" idle {duration(s.idle_s(summary.now))}") for s in summary.stalled
    )


def _paused(paused: list[Job]) -> Safe:
    if not paused:
        return tag("p", "no paused jobs", class_="empty")
    return _jobs_list((j.job, j.spinner, f": {j.reason or 'no reason given'}") for j in paused)


def _jobs_list(items: Iterable[tuple[int, str, str]]) -> Safe:
    """A list of jobs, each a link to it on the Jobs page followed by `text`."""
    rows = [
        tag("li", join([tag("a", f"job {job} ({spinner})", href=f"/?job={job}"), text]))
        for job, spinner, text in items
    ]
    return tag("ul", join(rows))


def _failures(summary: Live) -> Safe:
    if not summary.failures:
        return tag("p", "no step failed in the last hour", class_="empty")
    head = tag(
        "tr",
        join(
            tag("th", h) for h in ("spinner", "step", "failures", "records", "last", "last error")
        ),
    )
    rows = [
        tag(
            "tr",
            join(
                tag("td", c)
                for c in (
                    f.spinner,
                    f.step,
                    f.failures,
                    f.records,
                    when(f.last_failed_at),
                    tag("pre", f.last_error or "—", class_="error"),
                )
            ),
        )
        for f in summary.failures
    ]
    return tag(
        "div", tag("table", join([tag("thead", head), tag("tbody", join(rows))])), class_="scroll"
    )


TABLE = (
    ("GET", "/live", "read", live_page),
    ("GET", "/fragments/live", "read", fragment),
    ("GET", "/live/chart.svg", "read", chart_svg),
)
