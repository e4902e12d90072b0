"""The HTTP/1.1 transport under httpx (cxrun/io/wire.py), against real sockets on 127.0.0.1.

A scripted server reads each request whole and answers with the exact bytes a test gives, so
the framings a real server may use (length, chunks, the close, none for HEAD), interim answers,
dropped connections and garbage can all be tried.
"""

from __future__ import annotations

import asyncio
import contextlib
import gzip
import shutil
import socket
import ssl
import subprocess
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import httpx
import pytest

from cxrun.io.http import Client
from cxrun.io.wire import LeanTransport


class Close(bytes):
    """Bytes to send, then close the connection."""


# What the server does with one connection: given the requests read so far on it (each the
# raw head and body), the bytes to send back (Close: and then close), or None to close at once.
Script = Callable[[list[bytes]], bytes | None]


class ScriptedServer:
    """A TCP server in a thread; every connection is served by `script` until it says close."""

    def __init__(self, script: Script, tls: ssl.SSLContext | None = None) -> None:
        self.script = script
        self.tls = tls
        self.connections = 0
        self.requests: list[bytes] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://127.0.0.1:{self.port}"

    def _serve(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._connection, args=(sock,), daemon=True).start()

    def _connection(self, sock: socket.socket) -> None:
        if self.tls is not None:
            try:
                sock = self.tls.wrap_socket(sock, server_side=True)
            except (ssl.SSLError, OSError):
                sock.close()
                return
        with sock, contextlib.suppress(OSError):  # a client may reset: that is its right
            self._exchanges(sock)

    def _exchanges(self, sock: socket.socket) -> None:
        seen: list[bytes] = []
        buffer = b""
        while True:
            request, buffer = _read_request(sock, buffer)
            if request is None:
                return
            seen.append(request)
            self.requests.append(request)
            answer = self.script(seen)
            if answer is None:
                return
            sock.sendall(answer)
            if isinstance(answer, Close):
                return

    def close(self) -> None:
        self._listener.close()


def _read_request(sock: socket.socket, buffer: bytes) -> tuple[bytes | None, bytes]:
    while b"\r\n\r\n" not in buffer:
        data = sock.recv(65536)
        if not data:
            return None, b""
        buffer += data
    head, _, rest = buffer.partition(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            length = int(value)
    while len(rest) < length:
        data = sock.recv(65536)
        if not data:
            return None, b""
        rest += data
    return head + b"\r\n\r\n" + rest[:length], rest[length:]


def reply(body: bytes = b"{}", status: str = "200 OK", headers: str = "") -> bytes:
    head = f"HTTP/1.1 {status}\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
    return head.encode() + body


@pytest.fixture
def serve() -> Iterator[Callable[..., ScriptedServer]]:
    servers: list[ScriptedServer] = []

    def start(script: Script, tls: ssl.SSLContext | None = None) -> ScriptedServer:
        servers.append(ScriptedServer(script, tls))
        return servers[-1]

    yield start
    for server in servers:
        server.close()


def client(limit: int = 8, verify: ssl.SSLContext | None = None) -> Client:
    limits = httpx.Limits(max_connections=limit, max_keepalive_connections=limit)
    verify = verify or httpx.create_ssl_context()
    transport = LeanTransport(verify, limits)
    return Client(transport=transport, verify=verify, limits=limits, timeout=httpx.Timeout(None))


def run(coroutine: object) -> object:
    return asyncio.run(coroutine)  # type: ignore[arg-type]


def test_a_json_post_goes_out_as_httpx_built_it_and_the_answer_comes_back(serve):
    server = serve(
        lambda seen: reply(b'{"ok": true}', headers="Content-Type: application/json\r\n")
    )

    async def go() -> httpx.Response:
        async with client() as http:
            return await http.post(
                httpx.URL(server.url + "/v1/chat?x=1"),
                content=b'{"a": 1}',
                headers={"authorization": "Bearer k", "content-type": "application/json"},
            )

    response = run(go())
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.json() == {"ok": True}
    assert response.headers["content-type"] == "application/json"
    assert response.http_version == "HTTP/1.1" and response.reason_phrase == "OK"
    assert response.is_closed and response.elapsed.total_seconds() >= 0
    (request,) = server.requests
    head, _, body = request.partition(b"\r\n\r\n")
    lines = head.split(b"\r\n")
    assert lines[0] == b"POST /v1/chat?x=1 HTTP/1.1"
    lowered = [line.lower() for line in lines]
    assert f"host: 127.0.0.1:{server.port}".encode() in lowered
    assert b"authorization: Bearer k" in lines and b"content-length: 8" in lowered
    assert body == b'{"a": 1}'


def test_keep_alive_connections_are_reused_up_to_the_limit(serve):
    server = serve(lambda seen: reply(b"%d" % len(seen)))

    async def go() -> list[str]:
        async with client(limit=4) as http:
            answers = []
            for _ in range(3):  # one after another: one connection
                answers.append((await http.get(server.url + "/")).text)
            many = await asyncio.gather(*(http.get(server.url + "/") for _ in range(20)))
            return answers + [r.text for r in many]

    answers = run(go())
    assert answers[:3] == ["1", "2", "3"]
    assert len(answers) == 23
    assert server.connections <= 4


def test_connection_close_and_http_1_0_answers_are_not_reused(serve):
    server = serve(lambda seen: reply(b"x", headers="Connection: close\r\n"))

    async def go() -> None:
        async with client() as http:
            for _ in range(3):
                assert (await http.get(server.url)).text == "x"

    run(go())
    assert server.connections == 3


def test_chunked_gzip_close_delimited_and_head_answers(serve):
    zipped = gzip.compress(b'{"zipped": 1}')
    chunked = (
        b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
        b"5\r\nhello\r\n6\r\n world\r\n0\r\n\r\n"
    )

    def script(seen: list[bytes]) -> bytes | None:
        path = seen[-1].split(b" ")[1]
        if path == b"/chunked":
            return chunked
        if path == b"/gzip":
            return reply(zipped, headers="Content-Encoding: gzip\r\n")
        if path == b"/head":  # a HEAD answer announces a length but sends no body
            return b"HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n"
        if path == b"/empty":
            return b"HTTP/1.1 204 No Content\r\n\r\n"
        return Close(b"HTTP/1.1 200 OK\r\n\r\nuntil the close")

    server = serve(script)

    async def go() -> dict[str, httpx.Response]:
        async with client() as http:
            return {
                "chunked": await http.get(server.url + "/chunked"),
                "gzip": await http.get(server.url + "/gzip"),
                "head": await http.head(server.url + "/head"),
                "empty": await http.delete(server.url + "/empty"),
                "eof": await http.get(server.url + "/eof"),
                "after": await http.get(server.url + "/chunked"),
            }

    answers = run(go())
    assert isinstance(answers, dict)
    assert answers["chunked"].text == "hello world"
    assert answers["gzip"].json() == {"zipped": 1}
    assert answers["head"].status_code == 200 and answers["head"].content == b""
    assert answers["empty"].status_code == 204 and answers["empty"].content == b""
    assert answers["eof"].text == "until the close"
    assert answers["after"].text == "hello world"


def test_an_interim_100_answer_is_skipped(serve):
    server = serve(lambda seen: b"HTTP/1.1 100 Continue\r\n\r\n" + reply(b"final"))

    async def go() -> httpx.Response:
        async with client() as http:
            return await http.post(server.url, content=b"x")

    response = run(go())
    assert isinstance(response, httpx.Response)
    assert response.status_code == 200 and response.text == "final"


def test_an_idle_connection_the_server_closed_is_replaced_once(serve):
    # The server answers one request per connection, keeping it open without saying so, and
    # closes it when the next request comes: the client sends that request again, anew.
    server = serve(lambda seen: reply(b"fresh") if len(seen) == 1 else None)

    async def go() -> list[str]:
        async with client(limit=1) as http:
            return [(await http.post(server.url, content=b"%d" % i)).text for i in range(3)]

    assert run(go()) == ["fresh", "fresh", "fresh"]
    assert server.connections == 3


def test_a_server_that_drops_a_fresh_connection_is_a_remote_protocol_error(serve):
    server = serve(lambda seen: None)

    async def go() -> None:
        async with client() as http:
            await http.get(server.url)

    with pytest.raises(httpx.RemoteProtocolError, match="without sending a response"):
        run(go())


def test_an_answer_cut_short_is_a_read_error(serve):
    server = serve(lambda seen: Close(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this"))

    async def go() -> None:
        async with client() as http:
            await http.get(server.url)

    with pytest.raises(httpx.ReadError):
        run(go())


def test_garbage_is_a_remote_protocol_error(serve):
    server = serve(lambda seen: b"SMTP ready\r\n\r\n")

    async def go() -> None:
        async with client() as http:
            await http.get(server.url)

    with pytest.raises(httpx.RemoteProtocolError, match="malformed"):
        run(go())


def test_a_refused_connection_is_a_connect_error():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]

    async def go() -> None:
        async with client() as http:
            await http.get(f"http://127.0.0.1:{port}/")

    with pytest.raises(httpx.ConnectError) as caught:
        run(go())
    assert caught.value.request.url.port == port


def test_a_slow_answer_is_a_read_timeout_and_its_connection_is_not_reused(serve):
    gate = threading.Event()

    def script(seen: list[bytes]) -> bytes | None:
        if seen[-1].startswith(b"GET /slow"):
            gate.wait(5)
        return reply(b"late" if seen[-1].startswith(b"GET /slow") else b"ok")

    server = serve(script)

    async def go() -> str:
        async with client(limit=1) as http:
            with pytest.raises(httpx.ReadTimeout):
                await http.get(server.url + "/slow", timeout=httpx.Timeout(None, read=0.2))
            gate.set()
            return (await http.get(server.url + "/next")).text

    assert run(go()) == "ok"
    assert server.connections == 2


def test_a_cancelled_request_frees_its_slot_and_its_connection(serve):
    gate = threading.Event()

    def script(seen: list[bytes]) -> bytes | None:
        if seen[-1].startswith(b"GET /hang"):
            gate.wait(5)
        return reply(b"ok")

    server = serve(script)

    async def go() -> str:
        async with client(limit=1) as http:
            task = asyncio.ensure_future(http.get(server.url + "/hang"))
            await asyncio.sleep(0.1)
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            gate.set()
            return (await http.get(server.url + "/after")).text

    assert run(go()) == "ok"
    assert server.connections == 2


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_https_with_the_verify_context(serve, tmp_path: Path):
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    subprocess.run(
        [
            *("openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1"),
            *("-keyout", str(key), "-out", str(cert), "-subj", "/CN=127.0.0.1"),
            *("-addext", "subjectAltName=IP:127.0.0.1"),
        ],
        check=True,
        capture_output=True,
    )
    tls = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    tls.load_cert_chain(cert, key)
    server = serve(lambda seen: reply(b"secure"), tls=tls)

    async def go(verify: ssl.SSLContext) -> str:
        async with client(verify=verify) as http:
            return (await http.get(server.url)).text

    trusting = ssl.create_default_context(cafile=str(cert))
    assert run(go(trusting)) == "secure"
    with pytest.raises(httpx.ConnectError, match="CERTIFICATE_VERIFY_FAILED"):
        run(go(ssl.create_default_context()))


def test_with_a_proxy_in_the_environment_requests_go_through_it(serve, monkeypatch):
    from cxrun.io.plugins import http_client

    proxy = serve(lambda seen: reply(b"via the proxy"))
    for name in ("HTTPS_PROXY", "https_proxy", "ALL_PROXY", "all_proxy", "NO_PROXY", "no_proxy"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HTTP_PROXY", proxy.url)

    async def go() -> str:
        async with http_client(4) as http:
            return (await http.post("http://api.example.invalid/v1/x", content=b"{}")).text

    assert run(go()) == "via the proxy"
    (request,) = proxy.requests
    assert request.startswith(b"POST http://api.example.invalid/v1/x HTTP/1.1\r\n")


def test_an_answer_nobody_asked_for_closes_the_connection_and_spares_the_one_given(serve):
    # Two answers to one request in one write: the first is the answer, the connection is
    # dropped, and the second cannot touch the headers of the first.
    two = reply(b"first", headers="X-Which: first\r\n") + reply(b"second", headers="X-Which: 2\r\n")
    server = serve(lambda seen: two)

    async def go() -> list[httpx.Response]:
        async with client(limit=1) as http:
            return [await http.get(server.url) for _ in range(2)]

    first, again = run(go())
    assert first.text == "first" and first.headers.get_list("x-which") == ["first"]
    assert again.text == "first"
    assert server.connections == 2


def test_post_bytes_writes_what_post_writes_and_answers_alike(serve):
    server = serve(
        lambda seen: reply(b'{"n": %d}' % len(seen), headers="Content-Type: application/json\r\n")
    )
    url = httpx.URL(server.url + "/v1/chat?x=1")
    sent = {"content-type": "application/json", "authorization": "Bearer k", "User-Agent": "me"}

    async def go() -> tuple[httpx.Response, httpx.Response]:
        async with client() as http:
            request = http.build_request("POST", url, content=b'{"a": 1}', headers=sent)
            slow = await http.send(request)  # httpx's own request, on the same transport
            fast = await http.post_bytes(url, b'{"a": 1}', sent)
            await http.post(url, content=b'{"a": 1}', headers=sent)  # handed to post_bytes
            return slow, fast

    slow, fast = run(go())
    assert server.requests[0] == server.requests[1]  # byte for byte
    assert server.requests[2] == server.requests[1]
    assert server.connections == 1  # the same kept connection
    assert (fast.status_code, fast.json(), fast.text) == (200, {"n": 2}, '{"n": 2}')
    assert fast.headers == slow.headers and fast.reason_phrase == slow.reason_phrase
    assert fast.is_success and fast.is_closed


def test_post_bytes_gives_a_failed_answer_its_request_and_keeps_a_cookie(serve):
    answers = iter(
        [
            reply(b"{}", headers="Set-Cookie: session=abc; Path=/\r\n"),
            reply(b'{"error": "slow down"}', "429 Too Many Requests", "Retry-After: 3\r\n"),
            reply(b"{}", "302 Found", "Location: /elsewhere\r\n"),
        ]
    )
    server = serve(lambda seen: next(answers))
    url = httpx.URL(server.url + "/v1/send")

    async def go() -> list[httpx.Response]:
        async with client() as http:
            return [await http.post_bytes(url, b"{}", {"x-n": str(n)}) for n in range(3)]

    first, limited, moved = run(go())
    assert first.status_code == 200
    assert b"cookie: session=abc" in server.requests[1].lower()  # kept, and sent back after
    assert limited.status_code == 429 and limited.headers["retry-after"] == "3"
    assert limited.request.url == url and limited.request.headers["x-n"] == "1"
    with pytest.raises(httpx.HTTPStatusError):
        limited.raise_for_status()
    assert moved.next_request is not None and moved.next_request.url.path == "/elsewhere"


def test_post_bytes_refuses_a_header_with_a_newline_as_post_does(serve):
    server = serve(lambda seen: reply())

    async def go(value: str) -> None:
        async with client() as http:
            await http.post_bytes(httpx.URL(server.url), b"{}", {"x-bad": value})

    for value in ("a\r\nInjected: 1", "caf\u00e9\n"):  # refused as httpx's own transport does
        with pytest.raises((httpx.LocalProtocolError, UnicodeEncodeError)):
            run(go(value))
    assert server.requests == []


def test_post_bytes_to_a_closed_port_is_a_connect_error_that_names_its_request():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    url = httpx.URL(f"http://127.0.0.1:{port}/v1")

    async def go() -> None:
        async with client() as http:
            await http.post_bytes(url, b"{}", {})

    with pytest.raises(httpx.ConnectError) as failed:
        run(go())
    assert failed.value.request.url == url
