"""Real servers on 127.0.0.1 for provider and channel tests: programmable HTTP, and an SMTP sink.

Use them as context managers, or as pytest fixtures by declaring in a test module
`pytest_plugins = ["servers"]` and then asking for `http_server` or `smtp_server`:

    def test_answer(http_server: FakeServer) -> None:
        http_server.queue(OpenAI.answer("Hi"))          # answers in order, then...
        http_server.handler = OpenAI.handler            # ...the handler answers the rest
        ...  # point the plugin at http_server.url
        assert http_server.last.json()["model"] == "gpt-test"

The protocol classes (OpenAI, Anthropic, WhatsApp, Webhook) build replies in each API's shape,
both successes and the errors the plugins must map.

PYTEST_DONT_REWRITE: test modules import this before pytest loads it as a plugin (no asserts here).
"""

from __future__ import annotations

import asyncio
import email
import email.policy
import hashlib
import hmac
import json
import threading
import traceback
from collections import deque
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, cast

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP as SMTPServer
from aiosmtpd.smtp import AuthResult, Envelope, LoginPassword, Session


@dataclass(frozen=True)
class Request:
    """One request as the server received it (header names lower-cased)."""

    method: str
    path: str
    headers: Mapping[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass(frozen=True)
class Reply:
    """What to answer: a dict or list is sent as JSON, a str or bytes as it is."""

    status: int = 200
    body: Any = None
    headers: Mapping[str, str] = field(default_factory=dict)

    def encoded(self) -> tuple[bytes, str]:
        if isinstance(self.body, bytes):
            return self.body, "application/octet-stream"
        if isinstance(self.body, str):
            return self.body.encode(), "text/plain; charset=utf-8"
        if self.body is None:
            return b"", "text/plain"
        return json.dumps(self.body).encode(), "application/json"


Handler = Callable[[Request], Reply]


class FakeServer:
    """An HTTP server in a background thread that records requests and answers as told.

    Each request gets the next queued reply, else `handler(request)`, else `200 {}`.
    A handler that raises answers 500 with the traceback, so the test sees what broke.
    """

    def __init__(self, handler: Handler | None = None) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        self._replies: deque[Reply] = deque()
        self._lock = threading.Lock()
        self._http = _Listening(("127.0.0.1", 0), _RequestHandler)
        self._http.daemon_threads = True
        self._http.fake = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.01,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._http.server_address[1]}"

    @property
    def last(self) -> Request:
        return self.requests[-1]

    def queue(self, *replies: Reply) -> None:
        with self._lock:
            self._replies.extend(replies)

    def answer(self, request: Request) -> Reply:
        with self._lock:
            self.requests.append(request)
            reply = self._replies.popleft() if self._replies else None
        if reply is not None:
            return reply
        if self.handler is None:
            return Reply(200, {})
        try:
            return self.handler(request)
        except Exception:
            return Reply(500, traceback.format_exc())

    def __enter__(self) -> FakeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)


class _Listening(ThreadingHTTPServer):
    """A backlog for a job's worth of connections at once: with socketserver's 5, a burst of
    connects overflows it and the dropped ones come back a second later (TCP's first
    retransmission), which shows as calls that start late."""

    request_queue_size = 1024


class _RequestHandler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def _serve(self) -> None:
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        headers = {name.lower(): value for name, value in self.headers.items()}
        request = Request(self.command, self.path, headers, body)
        reply = cast(FakeServer, self.server.fake).answer(request)  # type: ignore[attr-defined]
        data, content_type = reply.encoded()
        self.send_response(reply.status)
        sent = {"content-type": content_type, **{k.lower(): v for k, v in reply.headers.items()}}
        for name, value in sent.items():
            self.send_header(name, value)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    do_GET = do_POST = do_PUT = do_PATCH = do_DELETE = _serve

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output quiet


def malformed(text: str = '{"choices": [', status: int = 200) -> Reply:
    """A reply that claims to be JSON and is not."""
    return Reply(status, text, {"content-type": "application/json"})


def echoing(status: int = 401) -> Handler:
    """A handler whose error message quotes every request header and the body, secrets too."""

    def handler(request: Request) -> Reply:
        quoted = " ".join(f"{name}={value}" for name, value in request.headers.items())
        message = f"rejected {quoted} {request.body.decode(errors='replace')}"
        return Reply(status, {"error": {"message": message, "type": "echo", "code": 0}})

    return handler


def _words(text: str) -> int:
    return len(text.split())


class OpenAI:
    """Replies in the shape of OpenAI chat completions (`POST /chat/completions`)."""

    @staticmethod
    def answer(
        content: str = "Hello!", prompt_tokens: int = 9, completion_tokens: int = 2
    ) -> Reply:
        message = {"role": "assistant", "content": content}
        choice = {"index": 0, "message": message, "finish_reason": "stop"}
        usage = {"prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens}
        return Reply(200, {"id": "chatcmpl-test", "choices": [choice], "usage": usage})

    @staticmethod
    def handler(request: Request) -> Reply:
        """Answers `You said: <last message>`, counting tokens as words."""
        messages = request.json()["messages"]
        content = f"You said: {messages[-1]['content']}"
        asked = sum(_words(message["content"]) for message in messages)
        return OpenAI.answer(content, asked, _words(content))

    @staticmethod
    def error(
        status: int,
        message: str,
        type: str,
        code: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> Reply:
        body = {"error": {"message": message, "type": type, "param": None, "code": code}}
        return Reply(status, body, headers or {})

    @staticmethod
    def rate_limited(retry_after: str | None = "2") -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        message = "Rate limit reached for requests per min (RPM): Limit 3, Used 3, Requested 1."
        return OpenAI.error(429, message, "requests", "rate_limit_exceeded", headers)

    @staticmethod
    def insufficient_quota(status: int = 429) -> Reply:
        message = "You exceeded your current quota, please check your plan and billing details."
        return OpenAI.error(status, message, "insufficient_quota", "insufficient_quota")

    @staticmethod
    def unauthorized() -> Reply:
        message = "Incorrect API key provided. You can find your API key in your account."
        return OpenAI.error(401, message, "invalid_request_error", "invalid_api_key")

    @staticmethod
    def server_error(status: int = 500) -> Reply:
        return OpenAI.error(
            status, "The server had an error processing your request.", "server_error"
        )


class Anthropic:
    """Replies in the shape of Anthropic's Messages API (`POST /v1/messages`)."""

    @staticmethod
    def answer(
        text: str | list[str] = "Hello!", input_tokens: int = 9, output_tokens: int = 2
    ) -> Reply:
        texts = [text] if isinstance(text, str) else text
        return Reply(
            200,
            {
                "id": "msg_test",
                "type": "message",
                "role": "assistant",
                "model": "claude-test",
                "content": [{"type": "text", "text": part} for part in texts],
                "stop_reason": "end_turn",
                "usage": {"input_tokens": input_tokens, "output_tokens": output_tokens},
            },
        )

    @staticmethod
    def handler(request: Request) -> Reply:
        """Answers `You said: <prompt>`, counting tokens as words."""
        body = request.json()
        prompt = body["messages"][-1]["content"]
        text = f"You said: {prompt}"
        return Anthropic.answer(text, _words(f"{body.get('system', '')} {prompt}"), _words(text))

    @staticmethod
    def error(
        status: int, type: str, message: str, headers: Mapping[str, str] | None = None
    ) -> Reply:
        body = {"type": "error", "error": {"type": type, "message": message}}
        return Reply(status, body, headers or {})

    @staticmethod
    def overloaded() -> Reply:
        return Anthropic.error(529, "overloaded_error", "Overloaded")

    @staticmethod
    def unauthorized() -> Reply:
        return Anthropic.error(401, "authentication_error", "invalid x-api-key")

    @staticmethod
    def credit_balance() -> Reply:
        message = (
            "Your credit balance is too low to access the Anthropic API."
            " Please go to Plans & Billing to upgrade or purchase credits."
        )
        return Anthropic.error(400, "invalid_request_error", message)


class WhatsApp:
    """Replies in the shape of the WhatsApp Cloud API (`POST /{phone_number_id}/messages`)."""

    @staticmethod
    def sent(wamid: str = "wamid.TEST", to: str = "15550001111") -> Reply:
        return Reply(
            200,
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": to, "wa_id": to}],
                "messages": [{"id": wamid}],
            },
        )

    @staticmethod
    def handler(request: Request) -> Reply:
        """Accepts every message; its wamid is `wamid.` + the request's Idempotency-Key."""
        to = request.json()["to"]
        return WhatsApp.sent(f"wamid.{request.headers.get('idempotency-key', '')}", to)

    @staticmethod
    def error(
        status: int, code: int, message: str, headers: Mapping[str, str] | None = None
    ) -> Reply:
        error = {"message": message, "type": "OAuthException", "code": code, "fbtrace_id": "Ab"}
        return Reply(status, {"error": error}, headers or {})

    @staticmethod
    def invalid_token() -> Reply:
        message = "Error validating access token: Session has expired."
        return WhatsApp.error(401, 190, message)

    @staticmethod
    def rate_limited(status: int = 429, retry_after: str | None = None) -> Reply:
        headers = {"retry-after": retry_after} if retry_after is not None else {}
        return WhatsApp.error(status, 130429, "(#130429) Rate limit hit", headers)


class Webhook:
    """A webhook receiver: accepts every POST and answers `{"id": "hook-<idempotency key>"}`."""

    @staticmethod
    def handler(request: Request) -> Reply:
        return Reply(200, {"id": f"hook-{request.headers.get('idempotency-key', '')}"})

    @staticmethod
    def signature(body: bytes, secret: str) -> str:
        """The `X-Cxrun-Signature` value a receiver expects for this exact body."""
        return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()

    @staticmethod
    def verify(request: Request, secret: str) -> bool:
        """What a receiver does: recompute the signature and compare in constant time."""
        sent = request.headers.get("x-cxrun-signature", "")
        return hmac.compare_digest(sent, Webhook.signature(request.body, secret))


@dataclass(frozen=True)
class Mail:
    """One message the SMTP server accepted."""

    mail_from: str
    rcpt_tos: list[str]
    message: EmailMessage

    @property
    def subject(self) -> str:
        return str(self.message["Subject"])

    @property
    def text(self) -> str:
        body = self.message.get_body(("plain",))
        return str(body.get_content()) if body is not None else ""


class SmtpServer:
    """An SMTP server (aiosmtpd) on 127.0.0.1 in a thread that keeps every message it accepts.

    `users`: when given, AUTH (PLAIN/LOGIN, no TLS needed) is required with one of these
    username → password pairs. `data_reply`: answer DATA with this (e.g. "451 4.3.0 Try later")
    instead of accepting the message.
    """

    host = "127.0.0.1"

    def __init__(
        self, users: Mapping[str, str] | None = None, data_reply: str | None = None
    ) -> None:
        self.users = dict(users or {})
        self.data_reply = data_reply
        self.messages: list[Mail] = []
        self.logins: list[str] = []
        self._controller = _FreePortController(
            self,
            hostname=self.host,
            port=0,
            authenticator=self._authenticate,
            auth_require_tls=False,
        )

    @property
    def port(self) -> int:
        return self._controller.port

    async def handle_MAIL(
        self,
        server: SMTPServer,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if self.users and not session.authenticated:
            return "530 5.7.0 Authentication required"
        envelope.mail_from = address
        envelope.mail_options.extend(options)
        return "250 OK"

    async def handle_DATA(self, server: SMTPServer, session: Session, envelope: Envelope) -> str:
        if self.data_reply is not None:
            return self.data_reply
        raw = (envelope.original_content or b"").replace(b"\r\n", b"\n")
        message = email.message_from_bytes(raw, policy=email.policy.default)
        sender = str(envelope.mail_from)
        self.messages.append(Mail(sender, list(envelope.rcpt_tos), message))
        return "250 OK"

    def _authenticate(
        self, server: SMTPServer, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        login, password = data.login.decode(), data.password.decode()
        ok = self.users.get(login) == password
        if ok:
            self.logins.append(login)
        return AuthResult(success=ok, handled=False)

    def __enter__(self) -> SmtpServer:
        self._controller.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._controller.stop()


class _FreePortController(Controller):
    """aiosmtpd's Controller, listening on a port the system picks (port=0)."""

    def _trigger_server(self) -> None:
        assert isinstance(self.server, asyncio.Server)  # start() waits until it listens
        self.port = self.server.sockets[0].getsockname()[1]
        super()._trigger_server()  # type: ignore[no-untyped-call]


@pytest.fixture
def http_server() -> Iterator[FakeServer]:
    """A FakeServer with nothing queued and no handler (answers `200 {}`)."""
    with FakeServer() as server:
        yield server


@pytest.fixture
def smtp_server() -> Iterator[SmtpServer]:
    """An SmtpServer without AUTH that accepts every message."""
    with SmtpServer() as server:
        yield server
