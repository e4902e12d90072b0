"""The endpoints, each the twin of a command: parse, call the operation the CLI calls, answer
with its `--json` shape. TABLE lists them with the scope each needs."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

from cxrun.api import controls, params
from cxrun.api.app import reply
from cxrun.api.errors import ApiError
from cxrun.base.enums import RecordStatus

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.app import Api
    from cxrun.ops.keys import ApiKey


async def health(api: Api, request: Request, key: ApiKey | None) -> Response:
    """Whether the state is readable and a runtime is up (no key: for load balancers)."""
    from cxrun.ops import watch

    try:
        live = await api.call(lambda ctx: watch.live(ctx).to_json())
    except ApiError as exc:
        return reply({"status": "unavailable", "state": exc.body["error"], "runtime": None}, 503)
    runtime = "up" if live["runtime"]["up"] else "down"
    return reply({"status": "ok", "state": "readable", "runtime": runtime})


async def openapi(api: Api, request: Request, key: ApiKey | None) -> Response:
    from importlib import resources

    text = resources.files("cxrun.api").joinpath("openapi.json").read_text()
    return reply(json.loads(text))


async def post_event(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun trigger NAME --detach`: the payload is the body, its id the Idempotency-Key
    header or the payload's `id`."""
    from cxrun.ops import automation

    name = request.path_params["name"]
    data = await params.body(request)
    payload = await api.call(lambda ctx: automation.parse_payload(data or b"{}", "the body"))
    event_id = request.headers.get("idempotency-key") or _payload_id(payload)

    def may_start(spinner: str) -> None:  # a trigger key limited to some spinners
        if not key.allows("trigger", spinner):
            raise ApiError(
                403,
                f"key '{key.name}' may not start spinner '{spinner}', which listens to '{name}'",
                f"use a key made with `--spinner {spinner}`, or one without --spinner",
            )

    result = await api.call(
        lambda ctx: automation.start_jobs(  # the server's alerts go out from its courier
            ctx, name, payload, event_id, detach=True, may_start=may_start
        ),
        hold=True,
    )
    if result.errors:
        hint = "the jobs' errors say where (JSON pointers); the job is kept as invalid_payload"
        return reply(
            {"error": "the payload does not fit the schema", "hint": hint, **result.to_json()}, 422
        )
    return reply(result.to_json(), 200 if result.duplicate else 202)


def _payload_id(payload: dict[str, Any]) -> str | None:
    found = payload.get("id")
    return str(found) if isinstance(found, str | int) and not isinstance(found, bool) else None


async def post_run(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun run-now NAME --detach [--where SQL] [--limit N] [--priority P]`."""
    from cxrun.ops import runs

    name = request.path_params["name"]
    body = await params.options(request, {"where": str, "limit": int, "priority": str})
    where, limit, priority = body.get("where"), body.get("limit"), body.get("priority")
    job = await api.call(
        lambda ctx: runs.run_now(ctx, name, where, limit, detach=True, priority=priority),
        hold=True,
    )
    return reply(job.to_json(), 202)


async def get_jobs(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun jobs [--status S] [--spinner NAME] [--trigger T] [--since 7d] [--reason TEXT]
    [--page N] [--limit N]`."""
    from cxrun.ops import views

    filters = params.filters(request.query_params)
    page, limit = params.page(request)
    found = await api.call(lambda ctx: views.jobs(ctx, filters, page, limit))
    return reply([job.to_json() for job in found])


async def get_job(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun job JOB`."""
    from cxrun.ops import watch

    job = params.job_id(request)
    return reply(await api.call(lambda ctx: watch.job_detail(ctx, job).to_json()))


async def get_records(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun records JOB [--status S] [--page N] [--limit N]`."""
    from cxrun.ops import views

    job = params.job_id(request)
    status = params.choice(request, "status", RecordStatus)
    page, limit = params.page(request)
    found = await api.call(lambda ctx: views.records(ctx, job, status, page, limit))
    return reply([record.to_json() for record in found])


async def get_journey(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun journey JOB RECORD`."""
    from cxrun.ops import views

    job, record = params.job_id(request), request.path_params["key"]
    entries = await api.call(lambda ctx: views.journey(ctx, job, record))
    return reply([entry.to_json() for entry in entries])


async def get_live(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun live [--stall MINUTES]`."""
    from cxrun.ops import watch

    stall = params.minutes(request, "stall", 5.0, 525600)
    return reply(await api.call(lambda ctx: watch.live(ctx, stall).to_json()))


async def get_schedules(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun schedule list`."""
    from cxrun.ops import automation

    return reply(await api.call(lambda ctx: [s.to_json() for s in automation.listing(ctx)]))


async def pause_schedules(api: Api, request: Request, key: ApiKey) -> Response:
    """`cxrun schedule pause NAME [--trigger N]`, from the body's `trigger`."""
    return await _schedules(api, request, "pause")


async def resume_schedules(api: Api, request: Request, key: ApiKey) -> Response:
    return await _schedules(api, request, "resume")


async def remove_schedules(api: Api, request: Request, key: ApiKey) -> Response:
    return await _schedules(api, request, "remove")


async def _schedules(api: Api, request: Request, action: str) -> Response:
    from cxrun.ops import automation

    name = request.path_params["name"]
    number = (await params.options(request, {"trigger": int})).get("trigger")
    done = await api.call(lambda ctx: automation.control_schedules(ctx, name, action, number))
    return reply([listed.to_json() for listed in done])


TABLE = (  # method, path under /api/v1, the scope it needs (None: no key), handler
    ("GET", "/health", None, health),
    ("GET", "/openapi.json", None, openapi),
    ("POST", "/events/{name}", "trigger", post_event),
    ("POST", "/spinners/{name}/runs", "control", post_run),
    ("GET", "/jobs", "read", get_jobs),
    ("GET", "/jobs/{job}", "read", get_job),
    ("GET", "/jobs/{job}/records", "read", get_records),
    ("GET", "/jobs/{job}/records/{key}/journey", "read", get_journey),
    ("GET", "/live", "read", get_live),
    ("POST", "/jobs/bulk/retry", "control", controls.bulk_retry),  # before /jobs/{job}/...
    ("POST", "/jobs/bulk/cancel", "control", controls.bulk_cancel),
    ("POST", "/jobs/bulk/resume", "control", controls.bulk_resume),
    ("POST", "/jobs/{job}/cancel", "control", controls.cancel),
    ("POST", "/jobs/{job}/pause", "control", controls.pause),
    ("POST", "/jobs/{job}/resume", "control", controls.resume),
    ("POST", "/jobs/{job}/retry", "control", controls.retry),
    ("POST", "/jobs/{job}/approve", "control", controls.approve),
    ("POST", "/jobs/{job}/reject", "control", controls.reject),
    ("POST", "/jobs/{job}/records/{key}/approve", "control", controls.approve_record),
    ("POST", "/jobs/{job}/records/{key}/reject", "control", controls.reject_record),
    ("GET", "/schedules", "read", get_schedules),
    ("POST", "/schedules/{name}/pause", "control", pause_schedules),
    ("POST", "/schedules/{name}/resume", "control", resume_schedules),
    ("POST", "/schedules/{name}/remove", "control", remove_schedules),
)
