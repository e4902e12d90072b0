"""The Schedules page: every schedule of the published spinners with its state, last and next
fire, and Pause or Resume buttons (CSRF-protected forms) that call the same operation as
`cxrun schedule pause|resume`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from urllib.parse import quote

from cxrun.api.console.html import Safe, hidden, join, notice, page, tag
from cxrun.api.console.session import csrf_of
from cxrun.api.console.web import html
from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.console.session import Session
    from cxrun.ops.keys import ApiKey

_COLUMNS = ("spinner", "trigger", "cron", "timezone", "catchup", "state", "last fire", "next fire")
_DONE = {"pause": "paused", "resume": "resumed"}


async def schedules_page(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /schedules."""
    return await _page(session, request, key, None)


async def act(session: Session, request: Request, key: ApiKey) -> Response:
    """POST /schedules/{name}/{action}: the CSRF token checked, then the pause or resume of
    the form's trigger; the page again, saying what changed."""
    from cxrun.ops import automation

    action, name = str(request.path_params["action"]), str(request.path_params["name"])
    if action not in _DONE:
        raise ApiError(404, f"no such control: {action!r}", "schedules pause and resume here")
    fields = await session.form(request, key)
    raw = fields.get("trigger", "")
    if not raw.isascii() or not raw.isdigit() or not 1 <= int(raw) <= 10**6:
        raise ApiError(400, "say which trigger of the spinner (a number from 1)")
    number = int(raw)
    await session.api.call(lambda ctx: automation.control_schedules(ctx, name, action, number))
    said = f"Schedule {number} of {name} {_DONE[action]}."
    if action == "resume":
        said += " Due times missed while it was paused follow its catchup rule at the next tick."
    return await _page(session, request, key, said)


async def _page(session: Session, request: Request, key: ApiKey, said: str | None) -> Response:
    from cxrun.ops import automation

    found = await session.api.call(lambda ctx: [s.to_json() for s in automation.listing(ctx)])
    token = csrf_of(session, request)
    head = tag("tr", join(tag("th", column) for column in (*_COLUMNS, "")))
    rows = [_row(item, token) for item in found]
    listing = (
        tag("table", join([tag("thead", head), tag("tbody", join(rows))]), class_="schedules")
        if rows
        else tag(
            "p", "no schedules: add `triggers: [{schedule: CRON}]` to a spinner", class_="empty"
        )
    )
    body = join([tag("h1", "Schedules"), notice(said) if said else "", listing])
    return html(page("Schedules", body, key.name, token))


def _row(item: dict[str, Any], token: str) -> Safe:
    since = f" since {_short(item['state_since'])}" if item["state_since"] else ""
    cells = [
        item["spinner"],
        item["trigger"],
        tag("code", item["cron"]),
        item["timezone"],
        item["catchup"],
        tag("span", item["state"] + since, class_=f"state-{item['state']}"),
        _short(item["last_fire"]),
        _short(item["next_fire"]),
        _button(item, token),
    ]
    return tag("tr", join(tag("td", cell) for cell in cells))


def _button(item: dict[str, Any], token: str) -> Safe:
    """Pause for an active schedule, Resume for a paused one; a removed one has neither."""
    if item["state"] == "removed":
        return tag("span", "publish again to restore", class_="hint")
    action = "resume" if item["state"] == "paused" else "pause"
    fields = join(
        [
            hidden("csrf", token),
            hidden("trigger", item["trigger"]),
            tag("button", action.capitalize(), type="submit", class_=f"button {action}"),
        ]
    )
    target = f"/schedules/{quote(item['spinner'], safe='')}/{action}"
    return tag("form", fields, method="post", action=target, class_="inline")


def _short(moment: str | None) -> str:
    """`2026-11-22T09:00:00Z` as `2026-11-22 09:00:00 UTC`, or an em dash."""
    return f"{moment[:10]} {moment[11:19]} UTC" if moment else "—"


TABLE = (
    ("GET", "/schedules", "read", schedules_page),
    ("POST", "/schedules/{name}/{action}", "control", act),
)
