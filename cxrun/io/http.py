"""The HTTP client of a run: httpx's AsyncClient over aiohttp, with less work per call.

A few things cost a call more than aiohttp itself at thousands of calls a second; none changes
what is sent or received:

- building the request: for an absolute, already parsed URL with a body and headers only (what
  every provider and channel sends), `Client.build_request` merges the client's headers into
  the request's itself, instead of merging URLs, query parameters and cookies that are empty;
- an answer with no content encoding is handed to httpx as content read already, not as a
  stream httpx reads and decodes again;
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
    """httpx's AsyncClient with the cookie jar above and a short way to build the requests
    cxrun sends; everything else is httpx's."""

    def __init__(self, **options: Any) -> None:
        super().__init__(**options)
        self._jar = _Cookies(options.get("cookies"))
        self._plain = not str(self.base_url) and not self.params
        self._defaults = {k.lower(): v for k, v in self.headers.items()}  # not changed later
        self._request_timeout = self.timeout.as_dict()

    def build_request(  # type: ignore[override]
        self,
        method: str,
        url: httpx.URL | str,
        *,
        content: Any = None,
        headers: Any = None,
        extensions: Any = None,
        **rest: Any,
    ) -> httpx.Request:
        short = (
            self._plain
            and isinstance(url, httpx.URL)
            and url.is_absolute_url
            and isinstance(headers, dict)
            and extensions is None
            and not self._jar
            and all(value is None for key, value in rest.items() if key != "timeout")
            and rest.get("timeout", httpx.USE_CLIENT_DEFAULT) is httpx.USE_CLIENT_DEFAULT
        )
        if not short:
            return super().build_request(
                method, url, content=content, headers=headers, extensions=extensions, **rest
            )
        merged = dict(self._defaults)
        merged.update((k.lower(), v) for k, v in headers.items())
        return httpx.Request(
            method,
            url,
            content=content,
            headers=list(merged.items()),
            extensions={"timeout": self._request_timeout},
        )

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
            if answer.headers.get("content-encoding", "identity") == "identity":
                # Nothing to decode: the body as the answer's content, read already.
                return httpx.Response(
                    answer.status,
                    headers=answer.raw_headers,
                    content=body,
                    request=request,
                    extensions=extensions,
                )
            return httpx.Response(
                answer.status,
                headers=answer.raw_headers,
                stream=httpx.ByteStream(body),
                request=request,
                extensions=extensions,
            )

    return _Transport(verify=verify, limits=limits)  # type: ignore[no-any-return]
