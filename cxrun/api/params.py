"""Reading a request: path and query values with the CLI's bounds, and a JSON body of at most
1 MiB; a bad value is a 400 (413 for a body too large) that names it."""

from __future__ import annotations

import json
import math
import re
from enum import StrEnum
from typing import TYPE_CHECKING, Any, TypeVar

from cxrun.api.errors import ApiError, from_cxrun
from cxrun.base.errors import CxrunError
from cxrun.base.filters import JobFilter, job_filter

if TYPE_CHECKING:
    from collections.abc import Mapping

    from starlette.requests import Request

MAX_BODY = 1024 * 1024
MAX_PAGE = 10**9
MAX_LIMIT = 10**6
MAX_ROWS = 10**12
E = TypeVar("E", bound=StrEnum)
# ASCII digits only: str.isdigit() also takes '²' and '٣', which int() refuses or reads.
_JOB = re.compile(r"[0-9]{1,18}")
_WHOLE = re.compile(r"-?[0-9]{1,20}")


def job_id(request: Request) -> int:
    """The `{job}` of the path: a job number, or 404."""
    raw = request.path_params["job"]
    if not _JOB.fullmatch(raw):
        raise ApiError(404, f"no job {raw!r}", "job numbers are whole numbers: see GET /jobs")
    return int(raw)


def number(request: Request, name: str, default: int, low: int, high: int) -> int:
    """A whole-number query value between `low` and `high`."""
    raw = request.query_params.get(name)
    if raw is None:
        return default
    if not _WHOLE.fullmatch(raw) or not low <= int(raw) <= high:
        raise ApiError(400, f"{name}={raw!r} is not a whole number from {low} to {high}")
    return int(raw)


def minutes(request: Request, name: str, default: float, high: float) -> float:
    raw = request.query_params.get(name)
    if raw is None:
        return default
    try:
        value = float(raw)
    except ValueError:
        value = math.nan
    if not 0 <= value <= high:  # NaN fails this too
        raise ApiError(400, f"{name}={raw!r} is not a number from 0 to {high:g}")
    return value


def choice(request: Request, name: str, kind: type[E]) -> E | None:
    """A query value that must be one of an enum's values (a status)."""
    raw = request.query_params.get(name)
    if raw is None:
        return None
    try:
        return kind(raw)
    except ValueError:
        known = ", ".join(item.value for item in kind)
        raise ApiError(400, f"{name}={raw!r} is not one of {known}") from None


FILTERS = ("status", "spinner", "trigger", "since", "reason")  # as `cxrun jobs` takes them


def filters(values: Mapping[str, Any]) -> JobFilter:
    """The jobs filter of a query or a body (each of FILTERS, or none); a bad value is a 400."""
    try:
        return job_filter(*(values.get(name) for name in FILTERS))
    except CxrunError as exc:
        raise from_cxrun(exc) from None


def page(request: Request) -> tuple[int, int]:
    """`page` and `limit`, as the CLI's --page and --limit."""
    return number(request, "page", 1, 1, MAX_PAGE), number(request, "limit", 50, 1, MAX_LIMIT)


async def body(request: Request) -> bytes:
    """The request's body, refused with 413 past 1 MiB (before it is all read)."""
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > MAX_BODY:
        raise _too_large()
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_BODY:
            raise _too_large()
    return bytes(data)


def _too_large() -> ApiError:
    return ApiError(
        413,
        "the request body is larger than 1 MiB; nothing was started",
        "send the ids and fields the spinners select on, not whole documents",
    )


async def options(request: Request, allowed: dict[str, type]) -> dict[str, Any]:
    """A JSON object body with only `allowed` fields of their types (an empty body is {})."""
    data = await body(request)
    if not data.strip():
        return {}
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise ApiError(400, "the request body is not JSON", "send a JSON object") from None
    if not isinstance(value, dict):
        raise ApiError(400, "the request body must be a JSON object")
    for name, item in value.items():
        if name not in allowed:
            raise ApiError(400, f"unknown field {name!r}", f"fields: {', '.join(allowed)}")
        if item is not None and not _fits(item, allowed[name]):
            raise ApiError(400, f"field {name!r} must be {_NAMES[allowed[name]]} or null")
    return value


_NAMES = {
    str: "a string",
    int: "a whole number",
    bool: "true or false",
    list: "a list of job numbers",
}


def _fits(item: Any, kind: type) -> bool:
    if kind is list:
        return isinstance(item, list) and all(_fits(job, int) for job in item)
    if kind is int and isinstance(item, int) and not isinstance(item, bool):
        return 0 <= item <= MAX_ROWS
    return isinstance(item, kind) and (kind is bool or not isinstance(item, bool))
