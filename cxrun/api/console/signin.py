"""Signing in with an API key (kept in the HttpOnly cookie, never shown again) and out."""

from __future__ import annotations

import secrets
from typing import TYPE_CHECKING

from cxrun.api.console.html import Safe, hidden, join, notice, page, tag
from cxrun.api.console.session import SIGN_IN_COOKIE, Session, forget_key, keep_key, read_form
from cxrun.api.console.web import HEADERS, endpoint, html
from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from cxrun.ops.keys import ApiKey

_WHY = {
    "invalid": "That key is not valid (unknown, wrong or revoked): sign in with a live one.",
    "signed-out": "Sign in with an API key to see the console.",
    "bye": "Signed out.",
}


def routes(session: Session) -> list[BaseRoute]:
    """GET and POST /sign-in, POST /sign-out."""
    from starlette.routing import Route

    async def show(request: Request) -> Response:
        """GET /sign-in: the form, with why the operator is here."""
        return form_page(session, _WHY.get(request.query_params.get("why", "")))

    async def post(request: Request) -> Response:
        """POST /sign-in: the key checked, kept in the cookie."""
        return await sign_in(session, request)

    return [
        Route("/sign-in", show, methods=["GET"]),
        Route("/sign-in", post, methods=["POST"]),
        Route("/sign-out", endpoint(session, sign_out, "read"), methods=["POST"]),
    ]


def form_page(session: Session, message: str | None, status: int = 200) -> Response:
    """The sign-in form, its CSRF token bound to a fresh random value in a cookie."""
    nonce = secrets.token_urlsafe(32)
    fields = join(
        [
            hidden("csrf", session.token(nonce)),
            tag("label", "API key", for_="key"),
            Safe(
                '<input id="key" name="key" type="password" autocomplete="off" '
                'placeholder="cxr_…" required autofocus>'
            ),
            tag("button", "Sign in", type="submit"),
        ]
    )
    body = join(
        [
            tag("h1", "Sign in"),
            notice(message, "warn") if message else "",
            tag("form", fields, method="post", action="/sign-in", class_="sign-in"),
            tag("p", _HOW, class_="hint"),
        ]
    )
    response = html(page("Sign in", tag("section", body, class_="narrow")), status)
    response.set_cookie(SIGN_IN_COOKIE, nonce, httponly=True, samesite="strict", path="/sign-in")
    return response


_HOW = (
    "Make a key with `cxrun keys create NAME --scope read` to look, add `--scope control` to "
    "cancel, pause, resume, retry and answer approvals."
)


async def sign_in(session: Session, request: Request) -> Response:
    """A key that reads goes into the cookie; a bad one back to the form with why."""
    from starlette.responses import RedirectResponse

    try:
        fields = await read_form(request)
        session.check_token(request.cookies.get(SIGN_IN_COOKIE), fields.get("csrf"))
        presented = fields.get("key", "").strip()
        await session.check(request, presented, "read")
    except ApiError as exc:
        if exc.status == 401:
            return form_page(session, _WHY["invalid"], 401)
        return form_page(session, str(exc.body["error"]), exc.status)
    response = RedirectResponse("/", 303, headers=HEADERS)
    keep_key(response, presented)
    response.delete_cookie(SIGN_IN_COOKIE, path="/sign-in")
    return response


async def sign_out(session: Session, request: Request, key: ApiKey) -> Response:
    """The cookie cleared (the form's CSRF token checked first)."""
    from starlette.responses import RedirectResponse

    await session.form(request, key)  # an ApiError (a bad token) becomes a page
    response = RedirectResponse("/sign-in?why=bye", 303, headers=HEADERS)
    forget_key(response)
    return response
