"""Errors as HTTP answers: `{"error", "hint"}` with the status a client expects."""

from __future__ import annotations

from typing import Any

from cxrun.base.errors import Conflict, CxrunError, NotFound, PlanLimitReached, StateBusy

_STATUS: tuple[tuple[type[CxrunError], int], ...] = (
    (NotFound, 404),
    (Conflict, 409),
    (PlanLimitReached, 429),
    (StateBusy, 503),
)


class ApiError(Exception):
    """An answer other than success: its status, message, hint and any more fields or headers."""

    def __init__(
        self,
        status: int,
        error: str,
        hint: str | None = None,
        more: dict[str, Any] | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(error)
        self.status = status
        self.body = {"error": error, "hint": hint, **(more or {})}
        self.headers = headers or {}


def from_cxrun(exc: CxrunError) -> ApiError:
    """The API's answer to an error the CLI would print: 400 unless its kind says otherwise."""
    status = next((code for kind, code in _STATUS if isinstance(exc, kind)), 400)
    message = "; ".join(exc.lines()[:-1]) if exc.hint else "; ".join(exc.lines())
    more = {"usage": exc.usage} if isinstance(exc, PlanLimitReached) else None
    return ApiError(status, message, exc.hint, more)
