"""Channels against real servers on 127.0.0.1: webhook, WhatsApp, SMTP, and the local outbox."""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import socket
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from servers import FakeServer, Reply, SmtpServer, echoing
from servers import Webhook as WebhookReply
from servers import WhatsApp as WhatsAppReply

from cxrun.base.secrets import Secrets
from cxrun.io.base import CallError, Message, Pause, Receipt
from cxrun.io.channels import CHANNELS, Outbox, Smtp, Webhook, WhatsApp

pytest_plugins = ["servers"]

TOKEN = "EAAG-token-7d1e0f3a9b"
HOOK_SECRET = "whsec-5c2b8e1f0a"
PASSWORD = "pw-0d9c8b7a6f"
resolve = Secrets(
    Path("/nonexistent"),
    environ={"WA_TOKEN": TOKEN, "HOOK_SECRET": HOOK_SECRET, "SMTP_PASSWORD": PASSWORD},
).resolve
MESSAGE = Message(
    to="ada@example.org",
    text="Welcome Ada!\nSee you soon.",
    subject="Welcome",
    idempotency_key="cx-7-1-send",
    job=7,
    record="1",
    step="send",
)


def send(channel: Any, message: Message = MESSAGE) -> Receipt:
    async def call() -> Receipt:
        async with httpx.AsyncClient() as http:
            receipt: Receipt = await channel.send(http, message)
            return receipt

    return asyncio.run(call())


def failure(channel: Any, message: Message = MESSAGE) -> CallError:
    with pytest.raises(CallError) as caught:
        send(channel, message)
    return caught.value


def webhook(server: FakeServer, **options: Any) -> Webhook:
    return Webhook("hooks", {"kind": "webhook", "url": f"{server.url}/hook", **options}, resolve)


def whatsapp(server: FakeServer) -> WhatsApp:
    options = {"phone_number_id": 123, "token": "secret:WA_TOKEN", "base_url": server.url + "/"}
    return WhatsApp("wa", {"kind": "whatsapp", **options}, resolve)


def smtp(server: SmtpServer, **options: Any) -> Smtp:
    settings = {"host": server.host, "port": server.port, "from": "Team <team@example.org>"}
    return Smtp("mail", {"kind": "smtp", **settings, **options}, resolve)


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


# webhook


def test_webhook_posts_the_message_with_its_idempotency_key(http_server: FakeServer) -> None:
    http_server.handler = WebhookReply.handler
    receipt = send(webhook(http_server, headers={"X-Team": "growth"}))
    request = http_server.last
    assert (request.method, request.path) == ("POST", "/hook")
    assert request.headers["idempotency-key"] == "cx-7-1-send"
    assert request.headers["x-team"] == "growth"
    assert request.headers["content-type"] == "application/json"
    assert "x-cxrun-signature" not in request.headers
    assert request.json() == {
        "job": 7,
        "record": "1",
        "step": "send",
        "to": "ada@example.org",
        "text": "Welcome Ada!\nSee you soon.",
        "subject": "Welcome",
    }
    assert receipt == Receipt(id="hook-cx-7-1-send", detail={"status": 200})


def test_webhook_signature_is_an_hmac_of_the_exact_body(http_server: FakeServer) -> None:
    send(webhook(http_server, secret="secret:HOOK_SECRET"))
    request = http_server.last
    digest = hmac.new(HOOK_SECRET.encode(), request.body, hashlib.sha256).hexdigest()
    assert request.headers["x-cxrun-signature"] == f"sha256={digest}"
    assert WebhookReply.verify(request, HOOK_SECRET)
    assert not WebhookReply.verify(request, "another-secret")


def test_webhook_accepts_any_answer_body(http_server: FakeServer) -> None:
    http_server.queue(Reply(202, "queued"), Reply(204))
    assert send(webhook(http_server)) == Receipt(id=None, detail={"status": 202})
    assert send(webhook(http_server)).id is None


@pytest.mark.parametrize(
    ("reply", "retryable", "pause", "retry_after"),
    [
        (Reply(500, "boom"), True, None, None),
        (Reply(429, "slow down", {"retry-after": "3"}), True, Pause.RATE_LIMITED, 3.0),
        (Reply(401, "who are you"), False, Pause.CREDENTIALS, None),
        (Reply(404, "no such hook"), False, None, None),
    ],
)
def test_webhook_error_mapping(
    http_server: FakeServer,
    reply: Reply,
    retryable: bool,
    pause: Pause | None,
    retry_after: float | None,
) -> None:
    http_server.queue(reply)
    error = failure(webhook(http_server))
    assert (error.status, error.retryable, error.pause) == (reply.status, retryable, pause)
    assert error.retry_after == retry_after
    assert str(error) == f"hooks (webhook): HTTP {reply.status}: {reply.body}"


def test_webhook_errors_never_show_secrets(http_server: FakeServer) -> None:
    http_server.handler = echoing(400)
    channel = webhook(
        http_server, secret="secret:HOOK_SECRET", headers={"X-Token": "secret:WA_TOKEN"}
    )
    error = failure(channel)
    assert http_server.last.headers["x-token"] == TOKEN
    assert TOKEN not in str(error) and "x-token=***" in str(error)


def test_webhook_url_may_be_a_secret(http_server: FakeServer) -> None:
    hidden = f"{http_server.url}/hook/t0ps3cr3tpath"
    secret_url = Secrets(Path("/nonexistent"), environ={"HOOK_URL": hidden}).resolve
    http_server.queue(Reply(410, f"gone: {hidden}"))
    with pytest.raises(CallError) as caught:
        send(Webhook("hooks", {"url": "secret:HOOK_URL"}, secret_url))
    assert http_server.last.path == "/hook/t0ps3cr3tpath"
    assert "t0ps3cr3tpath" not in str(caught.value)


def test_webhook_unset_secret_pauses_for_credentials(http_server: FakeServer) -> None:
    error = failure(webhook(http_server, secret="secret:NOT_SET"))
    assert error.pause == Pause.CREDENTIALS and "NOT_SET is not set" in str(error)
    assert http_server.requests == []


# whatsapp


def test_whatsapp_sends_a_text_message(http_server: FakeServer) -> None:
    http_server.handler = WhatsAppReply.handler
    receipt = send(whatsapp(http_server), Message(**{**MESSAGE.__dict__, "to": "15550001111"}))
    request = http_server.last
    assert (request.method, request.path) == ("POST", "/123/messages")
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert request.headers["idempotency-key"] == "cx-7-1-send"
    assert request.json() == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "15550001111",
        "type": "text",
        "text": {"preview_url": False, "body": "Welcome Ada!\nSee you soon."},
    }
    assert receipt == Receipt(id="wamid.cx-7-1-send", detail={"wa_id": "15550001111"})


def test_whatsapp_default_base_url() -> None:
    channel = WhatsApp("wa", {"phone_number_id": "998877", "token": "t"}, resolve)
    assert channel.url == "https://graph.facebook.com/v21.0/998877/messages"


@pytest.mark.parametrize(
    ("reply", "retryable", "pause"),
    [
        (WhatsAppReply.invalid_token(), False, Pause.CREDENTIALS),
        (WhatsAppReply.error(400, 190, "Malformed access token"), False, Pause.CREDENTIALS),
        (WhatsAppReply.rate_limited(429), True, Pause.RATE_LIMITED),
        (WhatsAppReply.rate_limited(400), True, Pause.RATE_LIMITED),
        (
            WhatsAppReply.error(400, 4, "(#4) Application request limit reached"),
            True,
            Pause.RATE_LIMITED,
        ),
        (WhatsAppReply.error(400, 80007, "(#80007) Rate limit issues"), True, Pause.RATE_LIMITED),
        (WhatsAppReply.error(500, 1, "An unknown error occurred"), True, None),
        (WhatsAppReply.error(400, 131030, "(#131030) Recipient not in allowed list"), False, None),
    ],
)
def test_whatsapp_error_mapping(
    http_server: FakeServer, reply: Reply, retryable: bool, pause: Pause | None
) -> None:
    http_server.queue(reply)
    error = failure(whatsapp(http_server))
    assert (error.status, error.retryable, error.pause) == (reply.status, retryable, pause)
    code = reply.body["error"]["code"]
    assert f"{reply.body['error']['message']} ({code})" in str(error)


def test_whatsapp_throughput_limit_keeps_retry_after(http_server: FakeServer) -> None:
    http_server.queue(WhatsAppReply.rate_limited(400, retry_after="60"))
    assert failure(whatsapp(http_server)).retry_after == 60.0


def test_whatsapp_unexpected_answer(http_server: FakeServer) -> None:
    http_server.queue(Reply(200, {"messages": []}))
    error = failure(whatsapp(http_server))
    assert "no messages[0].id" in str(error) and not error.retryable


def test_whatsapp_errors_never_show_the_token(http_server: FakeServer) -> None:
    http_server.handler = echoing(401)
    error = failure(whatsapp(http_server))
    assert TOKEN not in str(error) and "Bearer ***" in str(error)


# smtp


def test_smtp_delivers_subject_body_and_addresses(smtp_server: SmtpServer) -> None:
    receipt = send(smtp(smtp_server))
    [mail] = smtp_server.messages
    assert mail.mail_from == "team@example.org" and mail.rcpt_tos == ["ada@example.org"]
    assert mail.message["From"] == "Team <team@example.org>"
    assert mail.message["To"] == "ada@example.org"
    assert mail.subject == "Welcome"
    assert mail.text == "Welcome Ada!\nSee you soon.\n"
    assert mail.message["X-Idempotency-Key"] == "cx-7-1-send"
    assert receipt.id is not None and receipt.id == mail.message["Message-ID"]
    assert receipt.id.startswith("<cxrun.") and receipt.id.endswith("@example.org>")


def test_smtp_message_id_follows_the_idempotency_key(smtp_server: SmtpServer) -> None:
    again = send(smtp(smtp_server))
    other = send(smtp(smtp_server), Message(**{**MESSAGE.__dict__, "idempotency_key": "cx-7-2"}))
    assert send(smtp(smtp_server)).id == again.id != other.id


def test_smtp_without_subject(smtp_server: SmtpServer) -> None:
    send(smtp(smtp_server), Message(**{**MESSAGE.__dict__, "subject": None}))
    assert smtp_server.messages[0].subject == "(no subject)"


def test_smtp_logs_in_with_a_secret_password() -> None:
    with SmtpServer(users={"ada": PASSWORD}) as server:
        send(smtp(server, username="ada", password="secret:SMTP_PASSWORD"))
        assert server.logins == ["ada"] and len(server.messages) == 1


def test_smtp_wrong_password_pauses_for_credentials() -> None:
    with SmtpServer(users={"ada": "another-password"}) as server:
        error = failure(smtp(server, username="ada", password="secret:SMTP_PASSWORD"))
    assert (error.status, error.pause, error.retryable) == (535, Pause.CREDENTIALS, False)
    assert PASSWORD not in str(error) and server.messages == []


def test_smtp_auth_required_but_not_configured() -> None:
    with SmtpServer(users={"ada": PASSWORD}) as server:
        error = failure(smtp(server))
    assert (error.status, error.pause) == (530, Pause.CREDENTIALS)


@pytest.mark.parametrize(
    ("reply", "retryable"),
    [("451 4.3.0 Try again later", True), ("554 5.7.1 Message rejected", False)],
)
def test_smtp_refusals_by_code(reply: str, retryable: bool) -> None:
    with SmtpServer(data_reply=reply) as server:
        error = failure(smtp(server))
    assert error.status == int(reply[:3]) and error.retryable is retryable
    assert error.pause is None and reply[4:] in str(error)


def test_smtp_unreachable_server_is_retryable() -> None:
    error = failure(
        Smtp("mail", {"host": "127.0.0.1", "port": closed_port(), "from": "a@b.c"}, resolve)
    )
    assert error.retryable and error.pause is None and "127.0.0.1" in str(error)


def test_smtp_starttls_against_a_server_without_it_fails(smtp_server: SmtpServer) -> None:
    error = failure(smtp(smtp_server, starttls=True))
    assert not error.retryable and "STARTTLS" in str(error)
    assert smtp_server.messages == []


def test_smtp_header_injection_is_refused(smtp_server: SmtpServer) -> None:
    bad = Message(**{**MESSAGE.__dict__, "subject": "Hi\r\nBcc: everyone@example.org"})
    error = failure(smtp(smtp_server), bad)
    assert "cannot write this email" in str(error) and smtp_server.messages == []


# outbox, registry and options


def test_outbox_keeps_the_message_without_io() -> None:
    receipt = send(Outbox("outbox", {"kind": "outbox"}, resolve))
    assert receipt == Receipt(
        id="cx-7-1-send",
        detail={
            "to": "ada@example.org",
            "subject": "Welcome",
            "text": "Welcome Ada!\nSee you soon.",
        },
    )


def test_registry_and_options_schemas() -> None:
    assert dict(CHANNELS) == {
        "webhook": Webhook,
        "whatsapp": WhatsApp,
        "smtp": Smtp,
        "outbox": Outbox,
    }
    configs: dict[str, dict[str, Any]] = {
        "outbox": {"kind": "outbox"},
        "webhook": {"kind": "webhook", "url": "https://example.org/hook", "rate": "5/s"},
        "smtp": {"kind": "smtp", "host": "localhost", "port": 1025, "from": "team@example.org"},
        "whatsapp": {"kind": "whatsapp", "phone_number_id": "123", "token": "secret:WA"},
    }
    for kind, config in configs.items():
        schema = CHANNELS[kind].OPTIONS  # type: ignore[attr-defined]
        jsonschema.validate(config, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "tokn": "typo"}, schema)
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate({"kind": "webhook"}, Webhook.OPTIONS)
    assert json.dumps(Smtp.OPTIONS)  # plain JSON, for `cxrun schema` and editors
