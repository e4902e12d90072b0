"""Channels: a signed webhook, WhatsApp Cloud API text messages, SMTP email, the local outbox."""

from __future__ import annotations

import asyncio
import email.utils
import hashlib
import hmac
import smtplib
import ssl
from collections.abc import Mapping
from email.message import EmailMessage
from typing import Any, ClassVar

import httpx

from cxrun.base.durations import seconds
from cxrun.base.secrets import reference_name
from cxrun.io.base import (
    CallError,
    Message,
    Pause,
    Receipt,
    Resolve,
    answer_json,
    json_bytes,
    options_schema,
    post_json,
    rate_limited,
    resolve_option,
    scrubbed,
)

_URL = {"type": "string", "pattern": "^(https?://|secret:)"}
_TEXT = {"type": "string", "minLength": 1}


class Webhook:
    """POST the message as JSON, with an Idempotency-Key and an optional HMAC-SHA256 signature."""

    OPTIONS: ClassVar[dict[str, Any]] = options_schema(
        {
            "url": _URL,
            "secret": _TEXT,
            "headers": {"type": "object", "additionalProperties": {"type": "string"}},
        },
        required=["url"],
    )

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.what = f"{name} (webhook)"
        self.url = options["url"]
        self.secret = options.get("secret")
        self.headers: Mapping[str, Any] = options.get("headers") or {}
        self.resolve = resolve

    async def send(self, http: httpx.AsyncClient, message: Message) -> Receipt:
        body = json_bytes(_payload(message))
        headers, secrets = self._headers()
        headers["idempotency-key"] = message.idempotency_key
        if self.secret is not None:
            key = str(self._resolve(self.secret))
            secrets.append(key)
            digest = hmac.new(key.encode(), body, hashlib.sha256).hexdigest()
            headers["x-cxrun-signature"] = f"sha256={digest}"
        url = str(self._resolve(self.url))
        if reference_name(self.url):
            secrets.append(url)
        response = await post_json(
            http, url, body, what=self.what, headers=headers, secrets=secrets
        )
        return Receipt(id=_answer_id(response), detail={"status": response.status_code})

    def _headers(self) -> tuple[dict[str, str], list[str]]:
        """The configured headers, resolved, and the values among them that are secrets."""
        headers: dict[str, str] = {}
        secrets: list[str] = []
        for name, raw in self.headers.items():
            headers[name.lower()] = value = str(self._resolve(raw))
            if reference_name(raw):
                secrets.append(value)
        return headers, secrets

    def _resolve(self, value: Any) -> Any:
        return resolve_option(self.resolve, value, self.what)


def _payload(message: Message) -> dict[str, Any]:
    if message.alert is not None:
        return {**message.alert, "subject": message.subject, "text": message.text}
    return {
        "job": message.job,
        "record": message.record,
        "step": message.step,
        "to": message.to,
        "text": message.text,
        "subject": message.subject,
    }


def _answer_id(response: httpx.Response) -> str | None:
    """The `id` of a JSON answer, if the receiver sent one (any answer body is accepted)."""
    try:
        data = response.json()
    except ValueError:
        return None
    found = data.get("id") if isinstance(data, dict) else None
    return None if found is None else str(found)


class WhatsApp:
    """WhatsApp Cloud API (Graph) text messages."""

    BASE_URL = "https://graph.facebook.com/v21.0"
    CREDENTIAL_CODES = frozenset({190})  # access token invalid or expired
    RATE_CODES = frozenset({4, 80007, 130429})  # app, account and throughput limits
    OPTIONS: ClassVar[dict[str, Any]] = options_schema(
        {
            "phone_number_id": {"type": ["string", "integer"]},
            "token": _TEXT,
            "base_url": {"type": "string", "pattern": "^https?://"},
        },
        required=["phone_number_id", "token"],
    )

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.what = f"{name} (whatsapp)"
        base_url = str(options.get("base_url") or self.BASE_URL).rstrip("/")
        self.url = f"{base_url}/{options['phone_number_id']}/messages"
        self.token = options["token"]
        self.resolve = resolve

    async def send(self, http: httpx.AsyncClient, message: Message) -> Receipt:
        token = str(resolve_option(self.resolve, self.token, self.what)).strip()
        headers = {
            "authorization": f"Bearer {token}",
            "idempotency-key": message.idempotency_key,
        }
        response = await post_json(
            http,
            self.url,
            json_bytes(_whatsapp_body(message)),
            what=self.what,
            headers=headers,
            secrets=[token],
            classify=self.classify,
        )
        data = answer_json(response, self.what, [token])
        try:
            sent, contacts = data["messages"][0]["id"], data.get("contacts") or [{}]
        except (KeyError, IndexError, TypeError):
            raise CallError(f"{self.what}: unexpected answer: no messages[0].id") from None
        return Receipt(id=str(sent), detail={"wa_id": contacts[0].get("wa_id")})

    def classify(
        self, error: CallError, response: httpx.Response, body: Mapping[str, Any]
    ) -> CallError:
        """Graph errors: by error code first, then as error_for_status said (5xx retryable)."""
        code = body.get("code")
        if response.status_code == 401 or code in self.CREDENTIAL_CODES:
            return CallError(error.message, status=error.status, pause=Pause.CREDENTIALS)
        if response.status_code == 429 or code in self.RATE_CODES:
            return rate_limited(error.message, response)
        return error


def _whatsapp_body(message: Message) -> dict[str, Any]:
    return {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": message.to,
        "type": "text",
        "text": {"preview_url": False, "body": message.text},
    }


_AUTH_CODES = frozenset({530, 534, 535})  # authentication required / too weak / refused


class Smtp:
    """Email through an SMTP server, with the standard library's smtplib in a thread."""

    OPTIONS: ClassVar[dict[str, Any]] = options_schema(
        {
            "host": _TEXT,
            "port": {"type": "integer", "minimum": 1, "maximum": 65535},
            "from": _TEXT,
            "starttls": {"type": "boolean"},
            "username": _TEXT,
            "password": _TEXT,
        },
        required=["host", "from"],
    )

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.what = f"{name} (smtp)"
        self.host = str(options["host"])
        self.port = int(options.get("port") or 25)
        self.sender = str(options["from"])
        self.starttls = bool(options.get("starttls", False))
        self.username = options.get("username")
        self.password = options.get("password")
        self.timeout = seconds(options.get("timeout") or 30)
        self.resolve = resolve

    async def send(self, http: httpx.AsyncClient, message: Message) -> Receipt:
        login = self._login()
        try:
            mail = _email(self.sender, message)
        except ValueError as error:  # e.g. a newline in the address or subject
            raise CallError(f"{self.what}: cannot write this email: {error}") from None
        try:
            await asyncio.to_thread(self._deliver, mail, login)
        except OSError as error:  # smtplib.SMTPException is an OSError too
            raise scrubbed(self._error(error), self._hidden(login)) from None
        return Receipt(id=mail["Message-ID"], detail={"to": message.to})

    def _hidden(self, login: tuple[str, str] | None) -> list[str]:
        """The login values scrubbed from an error: the password, and the username when it
        is a secret (a plain one, often short, would mask ordinary words)."""
        if login is None:
            return []
        return [login[1]] + ([login[0]] if reference_name(self.username) else [])

    def _login(self) -> tuple[str, str] | None:
        if self.username is None:
            return None
        username = resolve_option(self.resolve, self.username, self.what)
        password = resolve_option(self.resolve, self.password or "", self.what)
        return str(username), str(password)

    def _deliver(self, mail: EmailMessage, login: tuple[str, str] | None) -> None:
        with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as server:
            if self.starttls:
                server.starttls(context=ssl.create_default_context())
            if login is not None:
                server.login(*login)
            server.send_message(mail)

    def _error(self, error: OSError) -> CallError:
        """SMTP replies by code (535 → credentials, 4xx → retry, 5xx → fail); I/O errors retry."""
        code, reply = _smtp_reply(error)
        if code is None:
            retryable = not isinstance(
                error, smtplib.SMTPNotSupportedError | ssl.SSLCertVerificationError
            )
            where = f"{self.host}:{self.port}"
            return CallError(
                f"{self.what}: {where}: {error or type(error).__name__}", retryable=retryable
            )
        message = f"{self.what}: SMTP {code}: {reply}"
        if code in _AUTH_CODES:
            return CallError(message, status=code, pause=Pause.CREDENTIALS)
        return CallError(message, status=code, retryable=400 <= code < 500)


def _smtp_reply(error: OSError) -> tuple[int | None, str]:
    """The server's reply code and text inside an smtplib error, when it carries one."""
    reply: bytes | str
    if isinstance(error, smtplib.SMTPRecipientsRefused) and error.recipients:
        code, reply = next(iter(error.recipients.values()))
    elif isinstance(error, smtplib.SMTPResponseException) and error.smtp_code > 0:
        code, reply = error.smtp_code, error.smtp_error
    else:
        return None, ""
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    return code, text


def _email(sender: str, message: Message) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = message.to
    mail["Subject"] = message.subject or "(no subject)"
    mail["Date"] = email.utils.formatdate(usegmt=True)
    mail["Message-ID"] = _message_id(sender, message.idempotency_key)
    mail["X-Idempotency-Key"] = message.idempotency_key
    mail.set_content(message.text)
    return mail


def _message_id(sender: str, key: str) -> str:
    """The same Message-ID for every attempt at the same send, so receivers can drop repeats."""
    domain = email.utils.parseaddr(sender)[1].rpartition("@")[2] or "cxrun.invalid"
    return f"<cxrun.{hashlib.sha256(key.encode()).hexdigest()[:32]}@{domain}>"


class Outbox:
    """No delivery: the receipt carries the message, which the runtime keeps in a local table."""

    OPTIONS: ClassVar[dict[str, Any]] = options_schema({})

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.name = name

    async def send(self, http: httpx.AsyncClient, message: Message) -> Receipt:
        detail = {"to": message.to, "subject": message.subject, "text": message.text}
        return Receipt(id=message.idempotency_key, detail=detail)


CHANNELS: dict[str, type] = {
    "webhook": Webhook,
    "whatsapp": WhatsApp,
    "smtp": Smtp,
    "outbox": Outbox,
}
