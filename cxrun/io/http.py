"""The HTTP client of a run: httpx's AsyncClient over aiohttp, with less work per call.

Two things cost a call more than aiohttp itself at thousands of calls a second, and neither
changes what is sent or received:

- the cookie jar: httpx builds a urllib request and an email message from every answer to look
  for cookies in it. `_Cookies` only does so when the answer sets a cookie.
- streaming the answer through httpx_aiohttp's chunk iterator: `_Transport` reads the body whole
  (as httpx does anyway for every request that is not streamed) and hands it over as one chunk.
"""

from __future__ import annotations

from typing import Any

import httpx


class _Cookies(httpx.Cookies):
    """A cookie jar that only parses an answer that sets a cookie (the same jar otherwise)."""

    def extract_cookies(self, response: httpx.Response) -> None:
        headers = response.headers
        if "set-cookie" in headers or "set-cookie2" in headers:
            super().extract_cookies(response)


class Client(httpx.AsyncClient):
    """httpx's AsyncClient with the cookie jar above; everything else is httpx's."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._jar = _Cookies(options.get("cookies"))

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)


def aiohttp_transport(verify: Any, limits: httpx.Limits) -> httpx.AsyncBaseTransport:
    """httpx_aiohttp's transport, reading each answer whole (ImportError without it)."""
    import aiohttp
    from httpx_aiohttp import AiohttpTransport
    from httpx_aiohttp.transport import map_aiohttp_exceptions

    unbounded = aiohttp.ClientTimeout()

    class _Transport(AiohttpTransport):  # type: ignore[misc]
        async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
            if request.extensions.get("sni_hostname") or self.proxy is not None:
                return await super().handle_async_request(request)  # type: ignore[no-any-return]
            if not isinstance(self.client, aiohttp.ClientSession):
                self.client = self.get_client()
            timeout = request.extensions.get("timeout") or {}
            if any(timeout.get(k) is not None for k in ("connect", "read", "pool")):
                limit = aiohttp.ClientTimeout(
                    sock_connect=timeout.get("connect"),
                    sock_read=timeout.get("read"),
                    connect=timeout.get("pool"),
                )
            else:
                limit = unbounded
            with map_aiohttp_exceptions():
                data: Any
                try:
                    data = request.content or None
                except httpx.RequestNotRead:
                    data = request.stream
                    request.headers.pop("transfer-encoding", None)  # aiohttp sends it
                async with self.client.request(
                    request.method,
                    str(request.url),
                    headers=request.headers.multi_items(),
                    data=data,
                    allow_redirects=False,
                    auto_decompress=False,  # httpx decodes
                    compress=False,
                    timeout=limit,
                ) as answer:
                    body = await answer.read()
            extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
            if answer.reason:
                extensions["reason_phrase"] = answer.reason.encode()
            return httpx.Response(
                answer.status,
                headers=answer.raw_headers,
                stream=httpx.ByteStream(body),
                request=request,
                extensions=extensions,
            )

    return _Transport(verify=verify, limits=limits)  # type: ignore[no-any-return]
