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

- a POST of bytes to a parsed URL (what every provider sends; `post` hands it to `post_bytes`)
  on the lean transport:
  the request is written as the wire takes it, without httpx's Request (its URL checks, its
  headers merged and copied twice: a third of the CPU a call took in the client); the answer
  is httpx's Response, with its request made only when someone may look at it (an answer that
  is not a 2xx, sets a cookie or redirects, and a failed exchange).

The transport under it is cxrun/io/wire.py.
"""

from __future__ import annotations

import logging
import time
from datetime import timedelta
from typing import Any

import httpx

from cxrun.io.base import header_safe
from cxrun.io.wire import LeanTransport, origin_of, response_of

_log = logging.getLogger("httpx")
_HEADS = 64  # POST heads kept: the calls of a few targets (a send's Idempotency-Key changes each)


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
        self._heads: dict[tuple[Any, ...], bytes] = {}  # a POST's head by URL and headers
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

    async def post(self, url: httpx.URL | str, **options: Any) -> httpx.Response:
        content, headers = options.get("content"), options.get("headers")
        if (
            isinstance(url, httpx.URL)
            and isinstance(content, bytes)
            and isinstance(headers, dict)
            and options.keys() == {"content", "headers"}
        ):
            return await self.post_bytes(url, content, headers)
        return await super().post(url, **options)

    async def post_bytes(
        self, url: httpx.URL, content: bytes, headers: dict[str, str]
    ) -> httpx.Response:
        """The POST httpx would send of these bytes and headers, the same on the wire and with
        the same answer, with less work on the way when nothing needs httpx's own (see above)."""
        transport = self._transport_for_url(url)
        lean = transport if isinstance(transport, LeanTransport) else None
        lines = None
        if (
            lean is not None
            and self._plain
            and self._direct
            and not self.is_closed
            and not self._jar
            and url.scheme in ("http", "https")
            and url.host
            and not url.userinfo
            and not _log.isEnabledFor(logging.INFO)
        ):
            lines = self._lines(url, content, headers)
        if lean is None or lines is None:
            return await super().post(url, content=content, headers=headers)
        start = time.perf_counter()
        try:
            answer = await lean.exchange(origin_of(url), lines, False, self._request_timeout)
        except httpx.RequestError as exc:
            exc.request = self.build_request("POST", url, content=content, headers=headers)
            raise
        response = response_of(None, answer, closed=True)
        if not response.is_success or "set-cookie" in response.headers:
            # Someone may look further: the request, the cookie, the redirect, as httpx does.
            request = self.build_request("POST", url, content=content, headers=headers)
            response.request = request
            self._jar.extract_cookies(response)
            if response.has_redirect_location:
                response.next_request = self._build_redirect_request(request, response)
        if not response.is_closed:  # a body to decode still
            try:
                await response.aread()
            finally:
                await response.aclose()
        response.elapsed = timedelta(seconds=time.perf_counter() - start)
        response.default_encoding = self._default_encoding
        return response

    def _lines(self, url: httpx.URL, content: bytes, headers: dict[str, str]) -> list[bytes] | None:
        """The POST's request line, headers and body as they go on the wire (as httpx writes
        them: Host, the client's headers and the request's, Content-Length), or None for a
        header that is not plain ASCII or that httpx would handle itself."""
        key = (url.raw_path, url.netloc, *headers.items())
        head = self._heads.get(key)
        if head is None:
            made = self._head(url, headers)
            if made is None:
                return None
            if len(self._heads) >= _HEADS:  # headers that change with each call (a key)
                self._heads.clear()
            head = self._heads[key] = made
        return [head, b"Content-Length: %d\r\n\r\n" % len(content), content]

    def _head(self, url: httpx.URL, headers: dict[str, str]) -> bytes | None:
        merged = dict(self._defaults)
        merged.update((k.lower(), v) for k, v in headers.items())
        if "host" in merged or "content-length" in merged or "transfer-encoding" in merged:
            return None
        if not all(header_safe(name) and header_safe(value) for name, value in merged.items()):
            return None  # httpx's own path refuses it
        text = "".join(f"{name}: {value}\r\n" for name, value in merged.items())
        return b"POST %s HTTP/1.1\r\nHost: %s\r\n%s" % (
            url.raw_path,
            url.netloc,
            text.encode("ascii"),
        )

    @property
    def cookies(self) -> httpx.Cookies:
        return self._jar

    @cookies.setter
    def cookies(self, cookies: Any) -> None:
        self._jar = _Cookies(cookies)
