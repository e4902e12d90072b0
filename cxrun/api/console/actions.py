"""What changes a job from the console: cancel, pause, resume and retry behind a confirm
step, and the approvals page's approve and reject. The same operations as the API's
controls (resume, retry and answers detached: the runtime does the work)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrun.api import params
from cxrun.api.console.html import Safe, hidden, join, page, tag
from cxrun.api.console.session import csrf_of
from cxrun.api.console.web import html
from cxrun.api.controls import CONTROL_WAIT
from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.console.session import Session
    from cxrun.base.models import Job
    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey

_ACTIONS = {  # what the confirm step asks, and what the action does
    "cancel": "Cancel job {job}? Its unfinished records are cancelled; this cannot be undone.",
    "pause": "Pause job {job}? Its owner stops between two calls; Resume continues it.",
    "resume": "Resume job {job}? The runtime continues its unfinished records.",
    "retry": "Retry the failed records of job {job}? The runtime re-runs their failed steps.",
}


def _action(request: Request) -> str:
    action = str(request.path_params["action"])
    if action not in _ACTIONS:
        raise ApiError(
            404, f"no such control: {action!r}", "the controls are cancel, pause, resume, retry"
        )
    return action


async def confirm(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /jobs/{job}/{action}: the confirm step, a form that posts the action."""
    from cxrun.api.console.jobs import progress
    from cxrun.ops import views

    action, job_id = _action(request), params.job_id(request)
    job = await session.api.call(lambda ctx: views.job(ctx, job_id))
    fields = join(
        [
            hidden("csrf", csrf_of(session, request)),
            tag(
                "button",
                f"Yes, {action} job {job_id}",
                type="submit",
                class_=f"button {action}",
                id="confirm",
            ),
            tag("a", "No, go back", href=f"/?job={job_id}", class_="button plain"),
        ]
    )
    body = join(
        [
            tag("h1", f"{action.capitalize()} job {job_id}"),
            _summary(job),
            progress(job),
            tag("p", _ACTIONS[action].format(job=job_id), class_="question"),
            tag("form", fields, method="post", action=f"/jobs/{job_id}/{action}", class_="confirm"),
        ]
    )
    return html(
        page(
            f"{action} job {job_id}",
            tag("section", body, class_="narrow"),
            key.name,
            csrf_of(session, request),
        )
    )


def _summary(job: Job) -> Safe:
    from cxrun.api.console.html import badge

    return tag("p", join([f"{job.spinner} v{job.version} · {job.trigger} · ", badge(job.status)]))


async def act(session: Session, request: Request, key: ApiKey) -> Response:
    """POST /jobs/{job}/{action}: the CSRF token checked, then the action; the job's new status."""
    action, job_id = _action(request), params.job_id(request)
    await session.form(request, key)
    job = await session.api.call(lambda ctx: _do(ctx, action, job_id))
    queued = "The runtime picks it up: Refresh the job to follow it."
    more = queued if action in ("resume", "retry") else None
    return _done(session, request, key, f"{action}: done", job, more)


def _do(ctx: Context, action: str, job_id: int) -> Job:
    from cxrun.ops import control, runs

    if action == "cancel":
        return control.cancel(ctx, job_id, CONTROL_WAIT)
    if action == "pause":
        return control.pause(ctx, job_id, CONTROL_WAIT)
    if action == "resume":
        return runs.resume(ctx, job_id, detach=True)
    return runs.retry(ctx, job_id, None, where=None, detach=True)


_TAKEN_ON = "The runtime takes the answered record on: Refresh the job to follow it."


def _done(
    session: Session, request: Request, key: ApiKey, what: str, job: Job, more: str | None = None
) -> Response:
    from cxrun.api.console.html import badge
    from cxrun.api.console.jobs import progress

    body = join(
        [
            tag("h1", f"Job {job.job}: {what}"),
            tag(
                "p",
                join(["Its status is now ", badge(job.status), f" {job.reason or ''}"]),
                id="new-status",
            ),
            progress(job),
            tag("p", more, class_="hint") if more else "",
            tag("p", tag("a", f"Back to job {job.job}", href=f"/?job={job.job}")),
        ]
    )
    return html(
        page(what, tag("section", body, class_="narrow"), key.name, csrf_of(session, request))
    )


async def approvals_page(session: Session, request: Request, key: ApiKey) -> Response:
    """GET /approvals: the records awaiting an answer, with their prompts."""
    from cxrun.ops import answers

    pending = await session.api.call(lambda ctx: answers.approvals(ctx, None))
    token = csrf_of(session, request)
    rows = [_approval(item, token) for item in pending]
    listing = (
        tag("ol", join(rows), class_="approvals")
        if rows
        else tag("p", "no record awaits approval", class_="empty")
    )
    return html(page("Approvals", join([tag("h1", "Approvals"), listing]), key.name, token))


def _approval(item: dict[str, Any], token: str) -> Safe:
    where = f"job {item['job']} ({item['spinner']}) · record {item['record']} · step {item['step']}"
    buttons = join(
        [
            hidden("csrf", token),
            hidden("job", item["job"]),
            hidden("record", item["record"]),
            tag(
                "button",
                "Approve",
                type="submit",
                name="decision",
                value="approve",
                class_="button approve",
            ),
            tag(
                "button",
                "Reject",
                type="submit",
                name="decision",
                value="reject",
                class_="button reject",
            ),
        ]
    )
    timeout = f" · times out {_when(item['timeout_at'])}" if item.get("timeout_at") else ""
    return tag(
        "li",
        join(
            [
                tag(
                    "div",
                    tag("a", where, href=f"/?job={item['job']}&record={item['record']}"),
                    class_="where",
                ),
                tag("pre", item.get("prompt") or "—", class_="prompt"),
                tag("div", f"waiting since {_when(item['since'])}{timeout}", class_="hint"),
                tag("form", buttons, method="post", action="/approvals/answer"),
            ]
        ),
        class_="approval",
    )


async def answer(session: Session, request: Request, key: ApiKey) -> Response:
    """POST /approvals/answer: approve or reject one record; the job's new status."""
    from cxrun.ops import answers

    fields = await session.form(request, key)
    decision, record = fields.get("decision", ""), fields.get("record", "")
    if decision not in ("approve", "reject") or not record or not fields.get("job", "").isdigit():
        raise ApiError(400, "say job, record and decision (approve or reject)")
    job_id = int(fields["job"])
    done = await session.api.call(
        lambda ctx: answers.answer(ctx, job_id, decision, record, False, None, detach=True)
    )
    what = (
        f"record {record} {decision}d"
        if done.answered
        else f"record {record}: {_already(done.already)}"
    )
    return _done(session, request, key, what, done.job, _TAKEN_ON if done.answered else None)


def _when(moment: str | None) -> str:
    from datetime import datetime

    from cxrun.api.console.html import when

    return when(datetime.fromisoformat(moment.replace("Z", "+00:00")) if moment else None)


def _already(already: list[tuple[str, str]]) -> str:
    return already[0][1] if already else "nothing to answer"


TABLE = (
    ("GET", "/jobs/{job}/{action}", "read", confirm),
    ("POST", "/jobs/{job}/{action}", "control", act),
    ("GET", "/approvals", "read", approvals_page),
    ("POST", "/approvals/answer", "control", answer),
)
