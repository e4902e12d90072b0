"""The plugin interface: what a provider or channel is given, returns, and raises."""

from __future__ import annotations

import email.utils
import json
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import TYPE_CHECKING, Any, Protocol

from cxrun.base import fastjson
from cxrun.base.errors import CxrunError
from cxrun.base.secrets import Redactor

if TYPE_CHECKING:
    import httpx

# Resolves a config value: "secret:NAME" → the secret's value (CxrunError when it is not set);
# any other value is returned as it is.
Resolve = Callable[[Any], Any]


class Pause(StrEnum):
    """Why a call stops the whole job rather than failing one record."""

    RATE_LIMITED = "rate limited"
    CREDENTIALS = "credentials"
    CREDITS = "credits"


class CallError(Exception):
    """A call that did not succeed.

    `retryable`: a later attempt may succeed (timeouts, connection errors, 5xx, 429).
    `pause`: the job should pause (429 rate limit, 401/403 credentials, 402/quota credits).
    `retry_after`: seconds the remote asked us to wait, when it said so.
    `usage`: the tokens of an AI answer that came back but could not be used (they are paid).
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        pause: Pause | None = None,
        retry_after: float | None = None,
        usage: Usage | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.status = status
        self.retryable = retryable
        self.pause = pause
        self.retry_after = retry_after
        self.usage = usage


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0


@dataclass(frozen=True)
class AIRequest:
    model: str
    prompt: str
    system: str | None = None
    temperature: float | None = None
    max_tokens: int | None = None
    json_schema: Mapping[str, Any] | None = None  # ask for JSON that fits this schema


@dataclass(frozen=True)
class AIAnswer:
    text: str
    usage: Usage | None = None


class Provider(Protocol):
    """An AI provider: one instance per configured name, shared by all calls of a run."""

    async def complete(self, http: httpx.AsyncClient, request: AIRequest) -> AIAnswer: ...


@dataclass(frozen=True)
class Message:
    to: str
    text: str
    subject: str | None
    idempotency_key: str  # the same for the same job, record and step; different otherwise
    job: int
    record: str
    step: str
    alert: Mapping[str, Any] | None = None  # an alert's document (a webhook posts it whole)


@dataclass(frozen=True)
class Receipt:
    id: str | None = None
    detail: Mapping[str, Any] = field(default_factory=dict)


class Channel(Protocol):
    """A channel: one instance per configured name, shared by all sends of a run."""

    async def send(self, http: httpx.AsyncClient, message: Message) -> Receipt: ...


def retry_after_seconds(value: str | None, now: datetime | None = None) -> float | None:
    """A Retry-After header (seconds, or an HTTP date) as seconds from now."""
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        moment = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=UTC)
    return max(0.0, (moment - (now or datetime.now(UTC))) / timedelta(seconds=1))


def error_for_status(
    response: httpx.Response, what: str, body_text: str | None = None
) -> CallError:
    """The CallError for a non-2xx answer, classified the same way for every HTTP plugin.

    The message quotes the whole body: the executor scrubs it whole, then cuts it."""
    status = response.status_code
    text = body_text if body_text is not None else response.text
    message = f"{what}: HTTP {status}" + (f": {text}" if text else "")
    if status == 429:
        quota = "insufficient_quota" in text
        if quota:
            return CallError(message, status=status, pause=Pause.CREDITS)
        return rate_limited(message, response)
    if status in (401, 403):
        return CallError(message, status=status, pause=Pause.CREDENTIALS)
    if status == 402:
        return CallError(message, status=status, pause=Pause.CREDITS)
    if status >= 500:
        return CallError(
            message,
            status=status,
            retryable=True,
            retry_after=retry_after_seconds(response.headers.get("retry-after")),
        )
    return CallError(message, status=status)


def rate_limited(message: str, response: httpx.Response) -> CallError:
    """A 429-like answer: retry later, and pause the job until the remote's Retry-After."""
    return CallError(
        message,
        status=response.status_code,
        retryable=True,
        pause=Pause.RATE_LIMITED,
        retry_after=retry_after_seconds(response.headers.get("retry-after")),
    )


# What the plugins share: their options schema, resolving secrets, and "POST JSON, map errors".

# Keys of every provider or channel config that the caller handles rather than the plugin.
COMMON_OPTIONS: Mapping[str, Any] = {
    "kind": {},
    "rate": {},
    "timeout": {},
    "prices": {},
    "concurrency": {"type": "integer", "minimum": 1, "maximum": 100_000},
}

# Adjusts the error_for_status classification using the answer's JSON "error" object (or {}).
Classify = Callable[[CallError, "httpx.Response", Mapping[str, Any]], CallError]


def options_schema(properties: Mapping[str, Any], required: Sequence[str] = ()) -> dict[str, Any]:
    """A plugin's OPTIONS: its own keys plus the common ones; unknown keys are refused."""
    return {
        "type": "object",
        "properties": {**COMMON_OPTIONS, **properties},
        "required": list(required),
        "additionalProperties": False,
    }


def resolve_option(resolve: Resolve, value: Any, what: str) -> Any:
    """Resolve a config value at call time; a secret that is not set pauses for credentials."""
    try:
        return resolve(value)
    except CxrunError as error:
        raise CallError(f"{what}: {error.message}", pause=Pause.CREDENTIALS) from None


def scrubbed(error: CallError, secrets: Iterable[str]) -> CallError:
    """The same error with every secret value (and its encodings) replaced by ***."""
    error.message = Redactor(secrets).redact(error.message)
    error.args = (error.message,)
    return error


def json_bytes(payload: Any) -> bytes:
    """The exact request body sent for a JSON payload (what a signature is computed over)."""
    return fastjson.dumps(payload)


def error_object(text: str) -> Mapping[str, Any]:
    """The `error` object of a JSON error body, as OpenAI, Anthropic and Graph APIs send it."""
    try:
        data = json.loads(text)
    except ValueError:
        return {}
    error = data.get("error") if isinstance(data, dict) else None
    if isinstance(error, str):
        return {"message": error}
    return error if isinstance(error, dict) else {}


def error_text(text: str) -> str:
    """The API's own error message and code from an error body, or the body as it is."""
    error = error_object(text)
    message = error.get("message")
    if not isinstance(message, str):
        return text
    label = error.get("code") or error.get("type")
    return f"{message} ({label})" if label else message


async def post_json(
    http: httpx.AsyncClient,
    url: str | httpx.URL,
    body: bytes,
    *,
    what: str,
    headers: Mapping[str, str],
    secrets: Iterable[str] = (),
    classify: Classify | None = None,
) -> httpx.Response:
    """POST a JSON body; the 2xx answer, or a CallError (classified, secrets scrubbed)."""
    secrets = list(secrets)
    check_header_values(headers, what, configured=True)
    sent = {"content-type": "application/json", "accept": "application/json", **headers}
    response = await http.post(url, content=body, headers=sent)
    if response.is_success:
        return response
    text = Redactor(secrets).redact(response.text)
    error = error_for_status(response, what, error_text(text))
    if classify is not None:
        error = classify(error, response, error_object(text))
    raise scrubbed(error, secrets)


def answer_json(response: httpx.Response, what: str, secrets: Iterable[str] = ()) -> Any:
    """The decoded JSON of a 2xx answer, or a CallError (not retryable) quoting it (scrubbed
    whole; the executor cuts it)."""
    try:
        return fastjson.loads(response.content)
    except ValueError:
        body = response.text or "an empty body"
        error = CallError(f"{what}: the answer is not JSON: {body}", status=response.status_code)
        raise scrubbed(error, secrets) from None


def check_header_values(headers: Mapping[str, str], what: str, *, configured: bool = False) -> None:
    """Refuse a header value HTTP cannot carry (a newline would end the header and start
    another) before httpx quotes it, secret and all, in an error. One from a secret or option
    (`configured`) pauses the job till it is fixed; one rendered from a row fails its call, not
    retried."""
    for name, value in headers.items():
        if not header_safe(value):
            raise CallError(
                f"{what}: the {name} header holds a newline or non-ASCII character"
                + ("; check the secret or option it comes from" if configured else ""),
                pause=Pause.CREDENTIALS if configured else None,
            )


def header_safe(text: str) -> bool:
    """Whether a header's name or value goes on the wire as it is: ASCII, no CR, LF or NUL."""
    return text.isascii() and not any(char in text for char in "\r\n\0")
