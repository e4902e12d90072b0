"""A lean HTTP/1.1 transport under httpx: keep-alive connections on asyncio, parsed by httptools.

httpx's own connection pool, and aiohttp's client under httpx, spend more CPU on each request
than the request itself at a thousand calls a second (see README: Dependencies). This transport
does the least HTTP/1.1 needs: it writes the request httpx built, parses the answer with
httptools (llhttp, the parser of Node.js) and hands httpx the status, headers and body; httpx
still decodes content encodings, and everything above the transport is httpx's.

A request sent on a kept connection that the server had closed meanwhile (the connection ends
before any byte of an answer) is sent once more on a new connection, as browsers do; sends carry
an Idempotency-Key for the rare server that acted on it and closed without answering.

What it does not do is left to httpx's own transport: requests with an `sni_hostname`
extension and schemes other than http and https. With a proxy in the environment cxrun uses
httpx's own transport altogether (cxrun/io/plugins.py).
"""

from __future__ import annotations

import asyncio
import ssl
from typing import Any, NamedTuple

import httptools
import httpx

Origin = tuple[str, str, int]
_CHUNKED = b"chunked"
_BREAKS = frozenset(b"\r\n\0")


class Answer(NamedTuple):
    status: int
    reason: bytes
    headers: list[tuple[bytes, bytes]]
    body: bytes
    keep_alive: bool


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one exchange at a time."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.transport: asyncio.Transport | None = None
        self.lost = False
        self.parser = httptools.HttpResponseParser(self)
        self._waiter: asyncio.Future[Answer] | None = None
        self._begin(False)

    def _begin(self, head: bool) -> None:
        self.head = head
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.body: list[bytes] = []
        self.received = False  # any byte of the answer

    @property
    def _waiting(self) -> bool:
        return self._waiter is not None and not self._waiter.done()

    # ---- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self.transport = transport

    def data_received(self, data: bytes) -> None:
        if not self._waiting:  # nothing was asked: the connection is not to be trusted
            self.close()
            return
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserUpgrade:
            self._fail(httpx.RemoteProtocolError("the server switched protocols"))
        except httptools.HttpParserError as exc:
            self._fail(httpx.RemoteProtocolError(f"malformed HTTP answer: {exc}"))

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        if not self._waiting:
            return
        if self.status and not self._framed():  # the body ran until the close: it is whole
            self._done(keep_alive=False)
        elif not self.received:
            self._fail(httpx.RemoteProtocolError("Server disconnected without sending a response."))
        else:
            self._fail(httpx.ReadError(f"the connection closed mid-answer: {exc or 'EOF'}"))

    def _framed(self) -> bool:
        """Whether the answer's end is known from its status and headers (not the close):
        asked only when the connection closes mid-answer."""
        return (
            self.status in (204, 304)
            or self.status < 200
            or any(
                name.lower() == b"content-length"
                or (name.lower() == b"transfer-encoding" and _CHUNKED in value.lower())
                for name, value in self.headers
            )
        )

    # ---- httptools callbacks

    def on_message_begin(self) -> None:
        if not self._waiting:  # a second answer to one request
            self.close()
        self._begin(self.head)  # fresh fields: an answer handed over keeps its own
        self.received = True

    def on_status(self, reason: bytes) -> None:
        self.reason += reason

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if self.head and self.status >= 200:  # no body follows, whatever the headers say
            self._done(keep_alive=False)

    def on_body(self, body: bytes) -> None:
        self.body.append(body)

    def on_message_complete(self) -> None:
        if 100 <= self.status < 200:  # an interim answer (100 Continue): the real one follows
            return
        self._done(keep_alive=self.parser.should_keep_alive())

    # ---- exchanges

    def _done(self, keep_alive: bool) -> None:
        if self._waiting:
            assert self._waiter is not None
            answer = Answer(self.status, self.reason, self.headers, b"".join(self.body), keep_alive)
            self._waiter.set_result(answer)

    def _fail(self, error: Exception) -> None:
        if self._waiting:
            assert self._waiter is not None
            self._waiter.set_exception(error)
        self.close()

    async def exchange(self, data: list[bytes], head: bool, read: float | None) -> Answer:
        """Send a request; its answer, once whole (or an httpx error)."""
        assert self.transport is not None
        self._begin(head)
        waiter: asyncio.Future[Answer] = self.loop.create_future()
        self._waiter = waiter
        self.transport.writelines(data)
        if read is None:
            return await waiter
        try:
            async with asyncio.timeout(read):
                return await waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no whole answer within {read:g}s") from None

    def close(self) -> None:
        self.lost = True
        if self.transport is not None:
            self.transport.abort()


class LeanTransport(httpx.AsyncBaseTransport):
    """Keep-alive HTTP/1.1 connections per origin, at most `limits.max_connections` requests
    at once and `limits.max_keepalive_connections` idle connections kept."""

    def __init__(self, verify: ssl.SSLContext, limits: httpx.Limits) -> None:
        self._ssl = verify
        self._most = limits.max_connections or 1 << 30  # None: no limit
        self._keep = (
            limits.max_keepalive_connections
            if limits.max_keepalive_connections is not None
            else self._most
        )
        self._idle: dict[Origin, list[_Connection]] = {}
        self._idle_count = 0
        self._slots: asyncio.Semaphore | None = None
        self._other: httpx.AsyncBaseTransport | None = None
        self._limits = limits

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme not in ("http", "https") or "sni_hostname" in request.extensions:
            return await self._fallback(request)
        data = await _request_bytes(request)
        answer = await self.exchange(
            origin_of(url), data, request.method == "HEAD", request.extensions.get("timeout")
        )
        return response_of(request, answer)

    async def exchange(
        self, origin: Origin, data: list[bytes], head: bool, timeout: dict[str, Any] | None
    ) -> Answer:
        """Send a request already on the wire's terms (`data`: its request line, headers and
        body) to `origin` on a kept or new connection; its answer."""
        timeout = timeout or {}
        if self._slots is None:
            self._slots = asyncio.Semaphore(self._most)
        await self._acquire(timeout.get("pool"))
        try:
            return await self._send(origin, data, head, timeout)
        finally:
            self._slots.release()

    async def _acquire(self, pool: float | None) -> None:
        assert self._slots is not None
        if pool is None or not self._slots.locked():
            await self._slots.acquire()
            return
        try:
            async with asyncio.timeout(pool):
                await self._slots.acquire()
        except TimeoutError:
            raise httpx.PoolTimeout(f"no connection free within {pool:g}s") from None

    async def _send(
        self, origin: Origin, data: list[bytes], head: bool, timeout: dict[str, Any]
    ) -> Answer:
        while True:
            connection = self._idle_connection(origin)
            fresh = connection is None
            if connection is None:
                connection = await self._connect(origin, timeout.get("connect"))
            try:
                answer = await connection.exchange(data, head, timeout.get("read"))
            except httpx.RemoteProtocolError:
                connection.close()
                if not fresh and not connection.received:
                    continue  # the server had closed this idle connection: once more, anew
                raise
            except BaseException:  # cancelled or failed mid-exchange: the connection is spent
                connection.close()
                raise
            break
        if answer.keep_alive and not connection.lost:
            self._put_back(origin, connection)
        else:
            connection.close()
        return answer

    def _idle_connection(self, origin: Origin) -> _Connection | None:
        idle = self._idle.get(origin)
        while idle:
            connection = idle.pop()
            self._idle_count -= 1
            if not connection.lost:
                return connection
        return None

    def _put_back(self, origin: Origin, connection: _Connection) -> None:
        self._idle.setdefault(origin, []).append(connection)
        self._idle_count += 1
        if self._idle_count > self._keep:  # drop the longest idle one
            for idle in self._idle.values():
                if idle:
                    idle.pop(0).close()
                    self._idle_count -= 1
                    break

    async def _connect(self, origin: Origin, limit: float | None) -> _Connection:
        scheme, host, port = origin
        loop = asyncio.get_running_loop()
        secure = scheme == "https"
        try:
            async with asyncio.timeout(limit):
                _, protocol = await loop.create_connection(
                    lambda: _Connection(loop),
                    host,
                    port,
                    ssl=self._ssl if secure else None,
                    server_hostname=host if secure else None,
                )
        except TimeoutError:
            raise httpx.ConnectTimeout(
                f"no connection to {host}:{port} within {limit:g}s"
            ) from None
        except (OSError, ssl.SSLError) as exc:
            raise httpx.ConnectError(f"cannot connect to {host}:{port}: {exc}") from exc
        return protocol

    async def _fallback(self, request: httpx.Request) -> httpx.Response:
        if self._other is None:
            self._other = httpx.AsyncHTTPTransport(verify=self._ssl, limits=self._limits)
        return await self._other.handle_async_request(request)

    async def aclose(self) -> None:
        for idle in self._idle.values():
            for connection in idle:
                connection.close()
        self._idle.clear()
        self._idle_count = 0
        if self._other is not None:
            await self._other.aclose()


def origin_of(url: httpx.URL) -> Origin:
    return (url.scheme, url.host, url.port or (443 if url.scheme == "https" else 80))


def response_of(
    request: httpx.Request | None, answer: Answer, closed: bool = False
) -> httpx.Response:
    """httpx's Response of an answer (of `request`, when there is one to tell). A body that
    needs no decoding is its content, read already; with `closed` (nobody will stream it or
    time it), the response is closed too: nothing in it is left to release."""
    extensions: dict[str, Any] = {"http_version": b"HTTP/1.1"}
    if answer.reason:
        extensions["reason_phrase"] = answer.reason
    response = httpx.Response(
        answer.status,
        headers=answer.headers,
        stream=httpx.ByteStream(answer.body),
        request=request,
        extensions=extensions,
    )
    encoded = any(
        name.lower() == b"content-encoding" and value.strip().lower() != b"identity"
        for name, value in answer.headers
    )
    if not encoded:
        # Nothing to decode: the body is the content, read already (httpx's own read would
        # pass it through its decoders and chunkers first).
        response._content = answer.body
        response.is_closed = closed
    return response


async def _request_bytes(request: httpx.Request) -> list[bytes]:
    """The request as it goes on the wire: the request line, headers and body."""
    try:
        body = request.content
    except httpx.RequestNotRead:
        body = await request.aread()
    chunked = False
    lines = [b"%s %s HTTP/1.1\r\n" % (request.method.encode("ascii"), request.url.raw_path)]
    for name, value in request.headers.raw:
        if _BREAKS.intersection(name + value):  # would end the header and start another
            raise httpx.LocalProtocolError(f"illegal header {name!r}: a newline or NUL in it")
        if name.lower() == b"transfer-encoding" and _CHUNKED in value.lower():
            chunked = True
        lines.append(b"%s: %s\r\n" % (name, value))
    lines.append(b"\r\n")
    if chunked:  # a stream of unknown length, read whole now: one chunk
        lines.append(b"%x\r\n%s\r\n0\r\n\r\n" % (len(body), body) if body else b"0\r\n\r\n")
    elif body:
        lines.append(body)
    return lines
