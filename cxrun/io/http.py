"""The HTTP client of a run: httpx's AsyncClient, with less work per call.

A few things cost a call more than the call itself at a thousand calls a second; none changes
what is sent or received:

- building the request: for an absolute, already parsed URL with a body and headers only (what
  every provider and channel sends), `Client.build_request` merges the client's headers into
  the request's itself, instead of merging URLs, query parameters and cookies that are empty;
- sending it: a client with no auth, no event hooks and no redirects to follow hands a request
  straight to its transport (`Client.send`), without httpx's auth and redirect flows, which
  would only pass it through;
- the cookie jar: httpx builds a urllib request and an email message from every answer to look
  for cookies in it. `_Cookies` only does so when the answer sets a cookie.

The transport under it is cxrun/io/wire.py.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import httpx

_log = logging.getLogger("httpx")


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

    async def send(  # type: ignore[override]
        self,
        request: httpx.Request,
        *,
        stream: bool = False,
        auth: Any = httpx.USE_CLIENT_DEFAULT,
        follow_redirects: Any = httpx.USE_CLIENT_DEFAULT,
    ) -> httpx.Response:
        short = (
            not stream
            and auth is httpx.USE_CLIENT_DEFAULT
            and follow_redirects is httpx.USE_CLIENT_DEFAULT
            and self._direct
            and not self.is_closed
            and not request.url.userinfo
        )
        if not short:
            return await super().send(
                request, stream=stream, auth=auth, follow_redirects=follow_redirects
            )
        return await self._send_direct(request)

    @property
    def _direct(self) -> bool:
        """No auth, hooks or redirects to follow: a request goes straight to its transport."""
        hooks = self.event_hooks
        return (
            self.auth is None
            and not self.follow_redirects
            and not hooks["request"]
            and not hooks["response"]
        )

    async def _send_direct(self, request: httpx.Request) -> httpx.Response:
        """What httpx's `send` does for such a request, without its auth and redirect flows."""
        transport = self._transport_for_url(request.url)
        start = time.perf_counter()
        try:
            response = await transport.handle_async_request(request)
        except httpx.RequestError as exc:
            exc.request = request
            raise
        response.request = request
        try:
            await response.aread()
        finally:
            await response.aclose()
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        self._jar.extract_cookies(response)
        response.default_encoding = self._default_encoding
        if response.has_redirect_location:
            response.next_request = self._build_redirect_request(request, response)
        if _log.isEnabledFor(logging.INFO):
            _log.info(
                'HTTP Request: %s %s "%s %d %s"',
                request.method,
                request.url,
                response.http_version,
                response.status_code,
                response.reason_phrase,
            )
        return response

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)
