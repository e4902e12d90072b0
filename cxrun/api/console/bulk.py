"""The Jobs page's bulk buttons (retry, cancel or resume every job its filters show) and their
confirm step: the counts of the plan, then a form that carries the plan's job numbers, so that
only the jobs the operator saw are acted on. The same operations as the API's bulk endpoints."""

from __future__ import annotations

import re
from typing import TYPE_CHECKING

from cxrun.api import params
from cxrun.api.console.html import Safe, badge, hidden, join, link, notice, page, tag
from cxrun.api.console.session import csrf_of
from cxrun.api.console.web import html
from cxrun.api.controls import CONTROL_WAIT
from cxrun.api.errors import ApiError
from cxrun.base.bulk import ACTIONS

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.console.session import Session
    from cxrun.base.bulk import Outcome, Plan, Result, Target
    from cxrun.base.filters import JobFilter
    from cxrun.ops.keys import ApiKey

_LABELS = {
    "retry": "Retry failed in {these}",
    "cancel": "Cancel {these}",
    "resume": "Resume {these}",
}
_NUMBERS = re.compile(r"[0-9]{1,18}(,[0-9]{1,18})*")


def _these(count: int) -> str:
    return "this 1 job" if count == 1 else f"these {count} jobs"


def buttons(plans: dict[str, Plan]) -> Safe:
    """A link to the confirm step of each bulk action that applies to some of the jobs shown."""
    links = [
        tag(
            "a",
            _LABELS[name].format(these=_these(len(plan.jobs))),
            href=link(f"/bulk/{name}", _query(plan.filters)),
            class_=f"button {name}",
        )
        for name, plan in plans.items()
        if plan.targets
    ]
    return tag("div", join(links), class_="controls bulk") if links else Safe("")


def _query(filters: JobFilter) -> dict[str, object]:
    return dict(filters.to_json())


def _action(request: Request) -> str:
    action = str(request.path_params["action"])
    if action not in ACTIONS:
        raise ApiError(404, f"no bulk action {action!r}", "they are retry, cancel and resume")
    return action


async def confirm(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /bulk/{action}?status=...: the jobs and records it would touch, and a form that
    posts the action for exactly those jobs."""
    from cxrun.ops import bulk
    from cxrun.render import bulk as said

    action, filters = _action(request), params.filters(request.query_params)
    plan = await session.api.call(lambda ctx: bulk.plan(ctx, action, filters))
    token = csrf_of(session, request)
    if not plan.targets:
        title = tag("h1", f"{action.capitalize()}: nothing to do")
        body = join([title, tag("p", said.nothing(plan), id="plan"), _back(filters)])
    else:
        body = join(
            [
                tag("h1", _LABELS[action].format(these=_these(len(plan.jobs)))),
                tag("p", said.summary(plan), id="plan"),
                tag("ol", join(_target(target) for target in plan.targets), class_="bulk-jobs"),
                tag("p", said.question(plan), class_="question"),
                _form(action, plan, token),
            ]
        )
    return html(page(f"{action} jobs", tag("section", body, class_="narrow"), key.name, token))


def _target(target: Target) -> Safe:
    job = target.job
    what = f" {job.spinner} v{job.version} · {target.records} records "
    return tag(
        "li", join([tag("a", f"#{job.job}", href=f"/?job={job.job}"), what, badge(job.status)])
    )


def _form(action: str, plan: Plan, token: str) -> Safe:
    filters = plan.filters.to_json()
    fields = [hidden("csrf", token), hidden("jobs", ",".join(map(str, plan.jobs)))]
    fields += [hidden(name, found) for name, found in filters.items() if found is not None]
    fields += [
        tag("button", f"Yes, {action} {len(plan.jobs)} jobs", type="submit", id="confirm"),
        _back(plan.filters, "No, go back"),
    ]
    return tag("form", join(fields), method="post", action=f"/bulk/{action}", class_="confirm")


def _back(filters: JobFilter, label: str = "Back to the jobs") -> Safe:
    return tag("a", label, href=link("/", _query(filters)), class_="button plain")


async def act(session: Session, request: Request, key: ApiKey) -> Response:
    """POST /bulk/{action}: the CSRF token checked, then the action on the jobs of the plan
    that still match; a line per job."""
    from cxrun.ops import bulk

    action = _action(request)
    form = await session.form(request, key)
    filters, jobs = params.filters(form), _jobs(form.get("jobs"))
    done = await session.api.call(
        lambda ctx: bulk.act(ctx, bulk.plan(ctx, action, filters, jobs), CONTROL_WAIT)
    )
    body = join(
        [
            tag("h1", _headline(done)),
            tag("ul", join(_result(result) for result in done.results), id="results"),
            _runtime(done),
            tag("p", _back(filters)),
        ]
    )
    token = csrf_of(session, request)
    return html(page(f"{action}: done", tag("section", body, class_="narrow"), key.name, token))


def _jobs(raw: str | None) -> list[int]:
    if raw is None or not _NUMBERS.fullmatch(raw):
        raise ApiError(400, "the form does not say which jobs", "open the confirm page again")
    return [int(number) for number in raw.split(",")]


def _headline(done: Outcome) -> str:
    went = len(done.results) - len(done.refused)
    line = f"{done.plan.action.name.capitalize()}: {went} of {len(done.results)} jobs done"
    return line + (f"; refused: {', '.join(map(str, done.refused))}" if done.refused else "")


def _result(result: Result) -> Safe:
    job = tag("a", f"job {result.job}", href=f"/?job={result.job}")
    if result.ok:
        return tag("li", join([job, ": ", badge(result.status)]))
    why = join([f": refused: {result.error}", tag("div", result.hint or "", class_="hint")])
    return tag("li", join([job, why]), class_="refused")


def _runtime(done: Outcome) -> Safe:
    from cxrun.render.bulk import NO_RUNTIME

    if not done.queued:
        return Safe("")
    if not done.runtime_up:
        return notice(NO_RUNTIME, "warn")
    return tag("p", "The runtime picks them up: Refresh the jobs to follow them.", class_="hint")


TABLE = (
    ("GET", "/bulk/{action}", "read", confirm),
    ("POST", "/bulk/{action}", "control", act),
)
