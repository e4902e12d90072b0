"""The ASGI app: the route table (each route with the scope it needs), one way to call an
operation in a worker thread with this thread's own state handle, and errors as JSON."""

from __future__ import annotations

import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from cxrun.api.auth import Throttle, authorize
from cxrun.api.errors import ApiError, from_cxrun
from cxrun.base.errors import CxrunError

if TYPE_CHECKING:
    from starlette.applications import Starlette
    from starlette.requests import Request
    from starlette.responses import Response

    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey

PREFIX = "/api/v1"
Handler = Callable[["Api", "Request", "ApiKey"], Awaitable["Response"]]


class Api:
    """What every route shares: the project, a state handle per thread, the bad-key throttle."""

    def __init__(self, project_dir: str | None) -> None:
        from cxrun.ops import open_context

        # A project that cannot be opened stops `serve` before it listens.
        self.root = open_context(project_dir).project.root
        self.throttle = Throttle()
        self._local = threading.local()

    def context(self) -> Context:
        """This thread's open project (each worker thread keeps its own state handle)."""
        found: Context | None = getattr(self._local, "ctx", None)
        if found is None:
            from cxrun.ops import open_context

            found = self._local.ctx = open_context(str(self.root))
        return found

    async def call(self, work: Callable[[Context], Any], hold: bool = False) -> Any:
        """`work(ctx)` in a worker thread; a CxrunError becomes the API's error answer. With
        `hold`, all of `work` runs under the state's exclusive lock on one connection (short
        work that reads and writes several times: it opens the state file once)."""
        from starlette.concurrency import run_in_threadpool

        return await run_in_threadpool(self._run, work, hold)

    def _run(self, work: Callable[[Context], Any], hold: bool) -> Any:
        try:
            ctx = self.context()
            if not hold:
                return work(ctx)
            with ctx.state.held():
                return work(ctx)
        except CxrunError as exc:
            raise from_cxrun(exc) from None

    async def key(self, request: Request, scope: str) -> ApiKey:
        header = request.headers.get("authorization")
        client = request.client.host if request.client else "?"
        key: ApiKey = await self.call(
            lambda ctx: authorize(ctx, header, client, scope, self.throttle)
        )
        return key


def reply(data: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
    """A JSON answer, written as `--json` writes it (NaN and infinities as null)."""
    from starlette.responses import Response

    from cxrun.render.out import json_text

    return Response(json_text(data), status, headers, media_type="application/json")


def build(project_dir: str | None) -> Starlette:
    """The app for one project."""
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.middleware import Middleware
    from starlette.routing import Route

    from cxrun.api import routes
    from cxrun.api.console import web

    api = Api(project_dir)
    table: list[Any] = [
        Route(PREFIX + path, _endpoint(api, handler, scope), methods=[method])
        for method, path, scope, handler in routes.TABLE
    ]
    table += web.routes(api)  # the console, at / (its pages are outside /api/v1)
    handlers: dict[Any, Any] = {ApiError: _api_error, HTTPException: _http_error, Exception: _bug}
    app = Starlette(routes=table, exception_handlers=handlers, middleware=[Middleware(_Slashes)])
    app.router.redirect_slashes = False
    return app


class _Slashes:
    """`/jobs/` is `/jobs`: a trailing slash is dropped, instead of Starlette's redirect (a
    307 with an empty body, which a script posting an event would not follow)."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        path = scope.get("path", "")
        if scope["type"] == "http" and len(path) > 1 and path.endswith("/"):
            scope = {**scope, "path": path.rstrip("/") or "/"}
        await self.app(scope, receive, send)


def _endpoint(api: Api, handler: Handler, scope: str | None) -> Callable[[Request], Any]:
    """The route's handler behind the one scope check (none for `health`)."""

    async def endpoint(request: Request) -> Response:
        key = await api.key(request, scope) if scope else None
        return await handler(api, request, key)  # type: ignore[arg-type]

    return endpoint


async def _api_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, ApiError)
    return reply(exc.body, exc.status, exc.headers)


async def _http_error(request: Request, exc: Exception) -> Response:
    """Starlette's own refusals (no such route, a method it does not take) as JSON; as a page
    outside the API."""
    status = int(getattr(exc, "status_code", 404))
    if not _in_api(request):
        from cxrun.api.console.web import error_page

        return error_page(status, f"no such page: {request.url.path}", "see the Jobs page")
    if status == 405:
        return reply({"error": f"{request.method} is not allowed here", "hint": _ROUTES}, 405)
    return reply({"error": f"no such endpoint: {request.url.path}", "hint": _ROUTES}, status)


async def _bug(request: Request, exc: Exception) -> Response:
    """A bug: 500 with a short message (the traceback goes to the server's stderr)."""
    import traceback

    traceback.print_exception(exc)
    error = f"internal error: {type(exc).__name__}"
    if not _in_api(request):
        from cxrun.api.console.web import error_page

        return error_page(500, error, "report it with the server's output")
    return reply({"error": error, "hint": "report it with the server's output"}, 500)


def _in_api(request: Request) -> bool:
    """Whether a path is the API's (answered in JSON) rather than the console's (pages)."""
    path = request.url.path
    return path == "/api" or path.startswith("/api/")


_ROUTES = f"see {PREFIX}/openapi.json for the endpoints"
