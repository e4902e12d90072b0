"""AI providers against real HTTP servers on 127.0.0.1: request shape, answers, error mapping."""

from __future__ import annotations

import asyncio
import email.utils
import json
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from servers import Anthropic as AnthropicReply
from servers import FakeServer, Reply, echoing, malformed
from servers import OpenAI as OpenAIReply

from cxrun.base.secrets import Secrets
from cxrun.io import providers
from cxrun.io.base import AIAnswer, AIRequest, CallError, Pause, Usage
from cxrun.io.providers import PROVIDERS, Anthropic, Echo, OpenAI

pytest_plugins = ["servers"]

KEY = "sk-test-4f1c9a0d2b7e"
resolve = Secrets(Path("/nonexistent"), environ={"AI_KEY": KEY}).resolve
ASK = AIRequest(model="gpt-test", prompt="Write a haiku", system="Be brief", temperature=0.2)


def complete(provider: Any, request: AIRequest = ASK) -> AIAnswer:
    async def call() -> AIAnswer:
        async with httpx.AsyncClient() as http:
            answer: AIAnswer = await provider.complete(http, request)
            return answer

    return asyncio.run(call())


def failure(provider: Any, request: AIRequest = ASK) -> CallError:
    with pytest.raises(CallError) as caught:
        complete(provider, request)
    return caught.value


def openai(server: FakeServer, **options: Any) -> OpenAI:
    return OpenAI("gpt", {"kind": "openai", "base_url": f"{server.url}/v1/", **options}, resolve)


def anthropic(server: FakeServer, **options: Any) -> Anthropic:
    settings = {"kind": "anthropic", "base_url": server.url, "api_key": "secret:AI_KEY", **options}
    return Anthropic("claude", settings, resolve)


def http_date(seconds: int) -> str:
    return email.utils.format_datetime(datetime.now(UTC) + timedelta(seconds=seconds), usegmt=True)


SCHEMA = {
    "type": "object",
    "required": ["summary", "score"],
    "properties": {
        "summary": {"type": "string", "minLength": 8},
        "score": {"type": "integer", "minimum": 0, "maximum": 5},
        "ratio": {"type": "number", "exclusiveMaximum": 1},
        "urgent": {"type": "boolean"},
        "channel": {"enum": ["email", "sms"]},
        "contact": {"type": ["string", "null"], "format": "email"},
        "tags": {"type": "array", "items": {"type": "string"}, "minItems": 1},
        "owner": {"$ref": "#/$defs/person"},
    },
    "$defs": {"person": {"type": "object", "properties": {"name": {"type": "string"}}}},
}


# echo


def test_echo_answers_model_and_prompt_and_counts_words() -> None:
    answer = complete(Echo("demo", {"kind": "echo"}, resolve))
    assert answer.text == "[gpt-test] Write a haiku"
    assert answer.usage == Usage(prompt_tokens=5, completion_tokens=4)


def test_echo_never_touches_the_network() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise AssertionError(f"echo made a request to {request.url}")

    async def call() -> AIAnswer:
        async with httpx.AsyncClient(transport=httpx.MockTransport(refuse)) as http:
            return await Echo("demo", {}, resolve).complete(http, ASK)

    assert asyncio.run(call()).text.startswith("[gpt-test]")


def test_echo_json_fits_the_schema_and_is_deterministic() -> None:
    request = AIRequest(model="m", prompt="Rate this lead", json_schema=SCHEMA)
    first = complete(Echo("demo", {}, resolve), request)
    document = json.loads(first.text)
    jsonschema.Draft202012Validator(SCHEMA).validate(document)
    assert document["summary"] == "echoecho"
    assert document["score"] == min(5, len("Rate this lead") % 10)
    assert document["urgent"] is True and document["channel"] == "email"
    assert document["tags"] == ["echo"] and document["owner"] == {"name": "echo"}
    assert complete(Echo("other", {}, resolve), request) == first
    assert first.usage == Usage(3, len(first.text.split()))


def test_echo_json_ends_on_a_recursive_schema() -> None:
    tree = {
        "type": "object",
        "properties": {"children": {"type": "array", "items": {"$ref": "#"}}},
    }
    request = AIRequest(model="m", prompt="tree", json_schema=tree)
    jsonschema.validate(json.loads(complete(Echo("demo", {}, resolve), request).text), tree)


# openai


def test_openai_request_shape_answer_and_usage(http_server: FakeServer) -> None:
    http_server.queue(OpenAIReply.answer("Autumn moonlight", 11, 3))
    provider = openai(http_server, api_key="secret:AI_KEY")
    answer = complete(provider, AIRequest(**{**ASK.__dict__, "max_tokens": 50}))
    assert answer == AIAnswer("Autumn moonlight", Usage(11, 3))
    request = http_server.last
    assert (request.method, request.path) == ("POST", "/v1/chat/completions")
    assert request.headers["authorization"] == f"Bearer {KEY}"
    assert request.headers["content-type"] == "application/json"
    assert request.json() == {
        "model": "gpt-test",
        "messages": [
            {"role": "system", "content": "Be brief"},
            {"role": "user", "content": "Write a haiku"},
        ],
        "temperature": 0.2,
        "max_tokens": 50,
    }


def test_openai_without_key_or_options_sends_the_minimum(http_server: FakeServer) -> None:
    http_server.handler = OpenAIReply.handler
    answer = complete(openai(http_server), AIRequest(model="local", prompt="hi there"))
    assert answer == AIAnswer("You said: hi there", Usage(2, 4))
    assert "authorization" not in http_server.last.headers
    assert http_server.last.json() == {
        "model": "local",
        "messages": [{"role": "user", "content": "hi there"}],
    }


def test_openai_json_schema_mode(http_server: FakeServer) -> None:
    http_server.queue(OpenAIReply.answer('{"summary": "ok"}'))
    request = AIRequest(model="gpt-test", prompt="p", json_schema=SCHEMA)
    assert complete(openai(http_server), request).text == '{"summary": "ok"}'
    assert http_server.last.json()["response_format"] == {
        "type": "json_schema",
        "json_schema": {"name": "output", "schema": SCHEMA, "strict": False},
    }


@pytest.mark.parametrize(
    ("reply", "retryable", "pause", "retry_after"),
    [
        (OpenAIReply.rate_limited("7"), True, Pause.RATE_LIMITED, 7.0),
        (OpenAIReply.rate_limited(None), True, Pause.RATE_LIMITED, None),
        (OpenAIReply.insufficient_quota(429), False, Pause.CREDITS, None),
        (OpenAIReply.insufficient_quota(403), False, Pause.CREDITS, None),
        (OpenAIReply.unauthorized(), False, Pause.CREDENTIALS, None),
        (OpenAIReply.server_error(500), True, None, None),
        (OpenAIReply.server_error(503), True, None, None),
        (OpenAIReply.error(400, "Unknown model", "invalid_request_error"), False, None, None),
    ],
)
def test_openai_error_mapping(
    http_server: FakeServer,
    reply: Reply,
    retryable: bool,
    pause: Pause | None,
    retry_after: float | None,
) -> None:
    http_server.queue(reply)
    error = failure(openai(http_server, api_key="secret:AI_KEY"))
    assert (error.status, error.retryable, error.pause) == (reply.status, retryable, pause)
    assert error.retry_after == retry_after
    assert str(error).startswith(f"gpt (openai): HTTP {reply.status}: ")
    assert reply.body["error"]["message"] in str(error)  # the API's own words


def test_openai_retry_after_as_an_http_date(http_server: FakeServer) -> None:
    http_server.queue(OpenAIReply.rate_limited(http_date(30)))
    error = failure(openai(http_server))
    assert error.pause == Pause.RATE_LIMITED
    assert error.retry_after is not None and 27 <= error.retry_after <= 31


def test_openai_malformed_answers_are_not_retried(http_server: FakeServer) -> None:
    http_server.queue(malformed(), Reply(200, {"choices": []}), Reply(200, "plain words"))
    not_json, no_choice, plain = (failure(openai(http_server)) for _ in range(3))
    assert "the answer is not JSON" in str(not_json) and not not_json.retryable
    assert "no choices.0.message" in str(no_choice) and not no_choice.retryable
    assert "plain words" in str(plain)


def test_openai_refusal_is_a_clear_failure(http_server: FakeServer) -> None:
    message = {"role": "assistant", "content": None, "refusal": "I can't help with that."}
    http_server.queue(Reply(200, {"choices": [{"message": message}]}))
    error = failure(openai(http_server))
    assert "no text (it refused: I can't help with that.)" in str(error)


def test_openai_unset_secret_pauses_for_credentials(http_server: FakeServer) -> None:
    error = failure(openai(http_server, api_key="secret:MISSING_KEY"))
    assert error.pause == Pause.CREDENTIALS and "MISSING_KEY is not set" in str(error)
    assert http_server.requests == []


def test_openai_key_with_a_newline_is_refused_before_sending(http_server: FakeServer) -> None:
    broken = Secrets(Path("/nonexistent"), environ={"AI_KEY": "sk-a\nsk-b-0123"}).resolve
    provider = OpenAI("gpt", {"base_url": http_server.url, "api_key": "secret:AI_KEY"}, broken)
    error = failure(provider)
    assert error.pause == Pause.CREDENTIALS and "sk-b-0123" not in str(error)
    assert http_server.requests == []


@pytest.mark.parametrize("status", [400, 401, 429, 500])
def test_openai_errors_never_show_the_key(http_server: FakeServer, status: int) -> None:
    http_server.handler = echoing(status)  # the error body quotes the Authorization header
    error = failure(openai(http_server, api_key="secret:AI_KEY"))
    assert http_server.last.headers["authorization"] == f"Bearer {KEY}"
    assert KEY not in str(error) and KEY not in error.message
    assert "Bearer ***" in str(error)


def test_openai_malformed_answer_never_shows_the_key(http_server: FakeServer) -> None:
    http_server.handler = lambda request: malformed(f"<html>{request.headers['authorization']}")
    error = failure(openai(http_server, api_key="secret:AI_KEY"))
    assert KEY not in str(error) and "not JSON: <html>Bearer ***" in str(error)


# anthropic


def test_anthropic_request_shape_answer_and_usage(http_server: FakeServer) -> None:
    http_server.queue(AnthropicReply.answer(["Leaves fall, ", "quietly."], 12, 4))
    answer = complete(anthropic(http_server))
    assert answer == AIAnswer("Leaves fall, quietly.", Usage(12, 4))
    request = http_server.last
    assert (request.method, request.path) == ("POST", "/v1/messages")
    assert request.headers["x-api-key"] == KEY
    assert request.headers["anthropic-version"] == "2023-06-01"
    assert "authorization" not in request.headers
    assert request.json() == {
        "model": "gpt-test",
        "max_tokens": 1024,
        "system": "Be brief",
        "messages": [{"role": "user", "content": "Write a haiku"}],
        "temperature": 0.2,
    }


def test_anthropic_max_tokens_from_options_then_request(http_server: FakeServer) -> None:
    http_server.handler = AnthropicReply.handler
    provider = anthropic(http_server, max_tokens=300)
    complete(provider, AIRequest(model="m", prompt="a"))
    assert http_server.last.json()["max_tokens"] == 300
    assert "system" not in http_server.last.json()
    complete(provider, AIRequest(model="m", prompt="a", max_tokens=20))
    assert http_server.last.json()["max_tokens"] == 20


def test_anthropic_json_schema_mode_asks_in_the_system_prompt(http_server: FakeServer) -> None:
    http_server.queue(AnthropicReply.answer('```json\n{"summary": "ok"}\n```'))
    request = AIRequest(model="m", prompt="p", system="You triage leads.", json_schema=SCHEMA)
    assert complete(anthropic(http_server), request).text == '{"summary": "ok"}'
    system = http_server.last.json()["system"]
    assert system.startswith("You triage leads.\n\nAnswer only with a JSON document")
    assert json.dumps(SCHEMA) in system


@pytest.mark.parametrize(
    ("reply", "retryable", "pause"),
    [
        (AnthropicReply.overloaded(), True, None),
        (AnthropicReply.unauthorized(), False, Pause.CREDENTIALS),
        (AnthropicReply.credit_balance(), False, Pause.CREDITS),
        (AnthropicReply.error(500, "api_error", "Internal server error"), True, None),
        (AnthropicReply.error(400, "invalid_request_error", "max_tokens: too big"), False, None),
    ],
)
def test_anthropic_error_mapping(
    http_server: FakeServer, reply: Reply, retryable: bool, pause: Pause | None
) -> None:
    http_server.queue(reply)
    error = failure(anthropic(http_server))
    assert (error.status, error.retryable, error.pause) == (reply.status, retryable, pause)
    assert reply.body["error"]["message"] in str(error)


def test_anthropic_rate_limit_with_retry_after(http_server: FakeServer) -> None:
    headers = {"retry-after": "12"}
    http_server.queue(AnthropicReply.error(429, "rate_limit_error", "Too many requests", headers))
    error = failure(anthropic(http_server))
    assert (error.retryable, error.pause, error.retry_after) == (True, Pause.RATE_LIMITED, 12.0)


def test_anthropic_errors_never_show_the_key(http_server: FakeServer) -> None:
    http_server.handler = echoing(401)
    error = failure(anthropic(http_server))
    assert KEY not in str(error) and error.pause == Pause.CREDENTIALS


# registry and options


def test_registry_and_options_schemas() -> None:
    assert dict(PROVIDERS) == {"echo": Echo, "openai": OpenAI, "anthropic": Anthropic}
    configs: dict[str, dict[str, Any]] = {
        "echo": {"kind": "echo", "rate": "20/s", "timeout": "30s", "prices": {}},
        "openai": {"kind": "openai", "base_url": "https://api.openai.com/v1", "api_key": "k"},
        "anthropic": {"kind": "anthropic", "api_key": "secret:K", "max_tokens": 2000},
    }
    for kind, config in configs.items():
        schema = PROVIDERS[kind].OPTIONS  # type: ignore[attr-defined]
        jsonschema.validate(config, schema)
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate({**config, "api_kye": "typo"}, schema)


def test_openai_itself_gets_max_completion_tokens_other_servers_max_tokens() -> None:
    ask = AIRequest(model="m", prompt="hi", max_tokens=64)
    official = OpenAI("o", {"api_key": "secret:AI_KEY"}, resolve)  # the default base_url
    local = OpenAI("l", {"base_url": "http://127.0.0.1:8080/v1"}, resolve)
    assert providers._openai_body(ask, official.limit_field)["max_completion_tokens"] == 64
    assert "max_tokens" not in providers._openai_body(ask, official.limit_field)
    assert providers._openai_body(ask, local.limit_field)["max_tokens"] == 64
