"""The console's routes: each page behind the signed-in key's scope, refusals and errors as
readable pages (a bad or missing key back to sign-in), and the static files."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cxrun.api.console.html import Safe, page, tag
from cxrun.api.console.session import COOKIE, Session, forget_key
from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from starlette.requests import Request
    from starlette.responses import Response
    from starlette.routing import BaseRoute

    from cxrun.api.app import Api
    from cxrun.ops.keys import ApiKey

Handler = Callable[[Session, "Request", "ApiKey"], Awaitable["Response"]]
HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "Cache-Control": "no-store",
}
_TITLES = {400: "Bad request", 403: "Not allowed", 404: "Not found", 409: "Not possible now"}


def html(body: Safe, status: int = 200) -> Response:
    """An HTML answer with the console's security headers."""
    from starlette.responses import HTMLResponse

    return HTMLResponse(str(body), status, headers=HEADERS)


def error_page(status: int, error: str, hint: str | None = None) -> Response:
    """A refusal or an error as a page: what is wrong, what to do, a way back."""
    title = _TITLES.get(status, "Something went wrong" if status >= 500 else "Refused")
    body = [tag("h1", title), tag("p", error, class_="error-text")]
    body += [tag("p", hint, class_="hint")] if hint else []
    body.append(tag("p", tag("a", "Back to Jobs", href="/")))
    return html(page(title, Safe("".join(body))), status)


def endpoint(session: Session, handler: Handler, scope: str) -> Callable[[Request], Any]:
    """`handler` behind the signed-in key's `scope`; an ApiError becomes a page."""

    async def run(request: Request) -> Response:
        """The page, or the refusal as a page."""
        try:
            key = await session.key(request, scope)
            return await handler(session, request, key)
        except ApiError as exc:
            return refusal(request, exc)

    return run


def refusal(request: Request, exc: ApiError) -> Response:
    """401 (no key, or not a live one): back to sign-in, the cookie cleared; a fragment
    fetched by the page's script gets a 401 it shows. Anything else: an error page."""
    from starlette.responses import RedirectResponse

    if exc.status != 401:
        return error_page(exc.status, str(exc.body["error"]), exc.body.get("hint"))
    why = "invalid" if request.cookies.get(COOKIE) else "signed-out"
    if request.url.path.startswith("/fragments/"):
        response = html(Safe(tag("p", "Signed out: sign in again.", class_="notice")), 401)
    else:
        response = RedirectResponse(f"/sign-in?why={why}", 303, headers=HEADERS)
    forget_key(response)
    return response


def routes(api: Api) -> list[BaseRoute]:
    """Every console route, mounted by `cxrun.api.app.build` beside `/api/v1`."""
    from importlib import resources

    from starlette.routing import Mount, Route
    from starlette.staticfiles import StaticFiles

    from cxrun.api.console import actions, bulk, jobs, live, schedules, signin

    session = Session(api)
    static = StaticFiles(directory=str(resources.files("cxrun.api.console") / "static"))
    table: list[BaseRoute] = [
        Route(path, endpoint(session, handler, scope), methods=[method])
        for method, path, scope, handler in (
            *jobs.TABLE,
            *live.TABLE,
            *actions.TABLE,
            *schedules.TABLE,
            *bulk.TABLE,
        )
    ]
    table += signin.routes(session)
    return [*table, Mount("/static", app=static, name="static")]
