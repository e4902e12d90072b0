"""The endpoints that change a job: cancel, pause, resume, retry, approve and reject. Resume,
retry and answers hand the job to the server's runtime (or a `cxrun runtime`) instead of
running it inside the request."""

from __future__ import annotations

from typing import TYPE_CHECKING

from cxrun.api import params
from cxrun.api.app import reply

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.app import Api
    from cxrun.base.bulk import Outcome, Plan
    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey

CONTROL_WAIT = 5.0  # seconds a cancel or pause waits for the job's owner to carry it out


async def cancel(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun cancel JOB`."""
    from cxrun.ops import control

    job = params.job_id(request)
    found = await api.call(lambda ctx: control.cancel(ctx, job, CONTROL_WAIT))
    return reply(found.to_json())


async def pause(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun pause JOB`."""
    from cxrun.ops import control

    job = params.job_id(request)
    found = await api.call(lambda ctx: control.pause(ctx, job, CONTROL_WAIT))
    return reply(found.to_json())


async def resume(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun resume JOB`, queued for the runtime."""
    from cxrun.ops import runs

    job = params.job_id(request)
    found = await api.call(lambda ctx: runs.resume(ctx, job, detach=True))
    return reply(found.to_json(), 202)


async def retry(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun retry JOB [--record KEY] [--where SQL]`, queued for the runtime."""
    from cxrun.ops import runs

    job = params.job_id(request)
    body = await params.options(request, {"record": str, "where": str})
    record, where = body.get("record"), body.get("where")
    found = await api.call(lambda ctx: runs.retry(ctx, job, record, where=where, detach=True))
    return reply(found.to_json(), 202)


BULK_OPTIONS = {
    "status": str,
    "spinner": str,
    "trigger": str,
    "since": str,
    "reason": str,
    "jobs": list,
    "confirm": bool,
}


async def bulk_retry(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun retry` with filters: the failed records of every finished job they match."""
    return await _bulk(api, request, "retry")


async def bulk_cancel(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun cancel` with filters: every unfinished job they match."""
    return await _bulk(api, request, "cancel")


async def bulk_resume(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun resume` with filters: every paused job they match, queued for the runtime."""
    return await _bulk(api, request, "resume")


async def _bulk(api: Api, request: Request, action: str) -> Response:
    """The plan, changing nothing; with `"confirm": true`, the plan carried out (`"jobs"`: only
    these of the jobs it takes, the numbers of a plan answered before)."""
    from cxrun.ops import bulk

    body = await params.options(request, BULK_OPTIONS)
    filters, only, confirm = params.filters(body), body.get("jobs"), bool(body.get("confirm"))

    def work(ctx: Context) -> Plan | Outcome:
        planned = bulk.plan(ctx, action, filters, only)
        return bulk.act(ctx, planned, CONTROL_WAIT) if confirm else planned

    done = await api.call(work)
    return reply(done.to_json())


async def approve_record(api: Api, request: Request, key: ApiKey) -> Response:
    return await _answer(api, request, "approve", request.path_params["key"], {})


async def reject_record(api: Api, request: Request, key: ApiKey) -> Response:
    return await _answer(api, request, "reject", request.path_params["key"], {})


async def approve(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun approve JOB --all` or `--where SQL`, from the body's `all` or `where`."""
    body = await params.options(request, {"all": bool, "where": str})
    return await _answer(api, request, "approve", None, body)


async def reject(api: Api, request: Request, key: ApiKey) -> Response:
    body = await params.options(request, {"all": bool, "where": str})
    return await _answer(api, request, "reject", None, body)


async def _answer(
    api: Api, request: Request, decision: str, record: str | None, body: dict[str, object]
) -> Response:
    from cxrun.ops import answers

    job = params.job_id(request)
    every, where = bool(body.get("all")), body.get("where")
    assert where is None or isinstance(where, str)
    done = await api.call(
        lambda ctx: answers.answer(ctx, job, decision, record, every, where, detach=True)
    )
    return reply(done.to_json())
