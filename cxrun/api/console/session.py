"""Who is signed in: the API key in an HttpOnly, SameSite=Strict cookie, checked by the API's
own `authorize` (scopes, revocation, the bad-key throttle); CSRF tokens (an HMAC of the key
with a secret this server process drew at start) on every form that changes state."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import TYPE_CHECKING
from urllib.parse import parse_qsl

from cxrun.api.auth import authorize
from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.api.app import Api
    from cxrun.ops.keys import ApiKey

COOKIE = "cxrun_key"
SIGN_IN_COOKIE = "cxrun_sign_in"  # a random value the sign-in form's CSRF token is bound to
MAX_FORM = 64 * 1024


class Session:
    """The console's side of the API: the per-process CSRF secret and the key checks."""

    def __init__(self, api: Api) -> None:
        self.api = api
        self._secret = secrets.token_bytes(32)

    def token(self, value: str) -> str:
        """The CSRF token bound to `value` (a key, or the sign-in form's random value)."""
        return hmac.new(self._secret, value.encode(), hashlib.sha256).hexdigest()

    def check_token(self, value: str | None, sent: str | None) -> None:
        """403 unless `sent` is the token of `value`."""
        if not value or not sent or not hmac.compare_digest(self.token(value), sent):
            raise ApiError(
                403,
                "this form's security token is missing or wrong; nothing was changed",
                "reload the page and try again",
            )

    async def key(self, request: Request, scope: str) -> ApiKey:
        """The signed-in key, with `scope` (the API's 401, 403 and 429 otherwise)."""
        return await self.check(request, request.cookies.get(COOKIE), scope)

    async def check(self, request: Request, presented: str | None, scope: str) -> ApiKey:
        """`presented` as the key of the request, through the API's `authorize`."""
        header = f"Bearer {presented}" if presented else None
        client = request.client.host if request.client else "?"
        api = self.api
        found: ApiKey = await api.call(
            lambda ctx: authorize(ctx, header, client, scope, api.throttle)
        )
        return found

    async def form(self, request: Request, key: ApiKey | None = None) -> dict[str, str]:
        """The posted form's fields, its CSRF token checked against the signed-in key."""
        fields = await read_form(request)
        if key is not None:
            self.check_token(request.cookies.get(COOKIE), fields.get("csrf"))
        return fields


async def read_form(request: Request) -> dict[str, str]:
    """An `application/x-www-form-urlencoded` body of at most 64 KiB, as a dict."""
    data = bytearray()
    async for chunk in request.stream():
        data += chunk
        if len(data) > MAX_FORM:
            raise ApiError(413, "the form is larger than 64 KiB")
    return dict(parse_qsl(data.decode("utf-8", "replace"), keep_blank_values=True))


def keep_key(response: Response, key: str) -> None:
    """The key into the cookie: HttpOnly (no script reads it), SameSite=Strict, Path=/."""
    response.set_cookie(COOKIE, key, httponly=True, samesite="strict", path="/")


def forget_key(response: Response) -> None:
    """The cookie cleared (signed out, or its key no longer valid)."""
    response.delete_cookie(COOKIE, path="/", httponly=True, samesite="strict")


def csrf_of(session: Session, request: Request) -> str:
    """The CSRF token of the signed-in key, for the forms of a page."""
    return session.token(request.cookies.get(COOKIE, ""))
