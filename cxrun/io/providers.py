"""AI providers: the offline `echo`, OpenAI-compatible chat completions, Anthropic messages."""

from __future__ import annotations

import json
import math
import re
import time
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar

import httpx

from cxrun.io.base import (
    AIAnswer,
    AIRequest,
    CallError,
    Pause,
    Resolve,
    Usage,
    answer_json,
    json_bytes,
    options_schema,
    post_json,
    rate_limited,
    resolve_option,
)

_URL = {"type": "string", "pattern": "^https?://"}
_TEXT = {"type": "string", "minLength": 1}


class Echo:
    """Offline and deterministic: `[model] prompt`, or a JSON document that fits the schema."""

    OPTIONS: ClassVar[dict[str, Any]] = options_schema({})

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.name = name

    async def complete(self, http: httpx.AsyncClient, request: AIRequest) -> AIAnswer:
        if request.json_schema is None:
            text = f"[{request.model}] {request.prompt}"
        else:
            sampler = _Sampler(request.json_schema, len(request.prompt) % 10)
            text = json.dumps(sampler.sample(request.json_schema))
        asked = f"{request.system or ''} {request.prompt}"
        return AIAnswer(text, Usage(len(asked.split()), len(text.split())))


_FORMATS = {
    "email": "echo@example.org",
    "date": "2026-01-01",
    "date-time": "2026-01-01T00:00:00Z",
    "time": "00:00:00Z",
    "uri": "https://example.org/echo",
    "uuid": "00000000-0000-4000-8000-000000000000",
}
_TYPES = ("object", "array", "string", "integer", "number", "boolean", "null")
_DEEP = 12  # past this depth a recursive schema gets no optional properties and empty arrays


class _Sampler:
    """A value that fits a schema: first choices, "echo" strings, one number for all numbers."""

    def __init__(self, root: Mapping[str, Any], number: int) -> None:
        self.root = root
        self.number = number

    def sample(self, schema: Any, depth: int = 0) -> Any:
        if not isinstance(schema, Mapping):
            return "echo"  # `true`, or a reference we do not follow
        if isinstance(schema.get("$ref"), str):
            return self.sample(self.pointer(schema["$ref"]), depth)
        if "const" in schema:
            return schema["const"]
        if schema.get("enum"):
            return schema["enum"][0]
        for key in ("anyOf", "oneOf"):
            if schema.get(key):
                return self.sample(schema[key][0], depth)
        if schema.get("allOf"):
            merged = {k: v for part in schema["allOf"] for k, v in part.items()}
            rest = {k: v for k, v in schema.items() if k != "allOf"}
            return self.sample(merged | rest, depth)
        return getattr(self, "_" + _type(schema))(schema, depth + 1)

    def pointer(self, ref: str) -> Any:
        """A local `$ref` such as "#/$defs/item"; anything else counts as `true`."""
        if not ref.startswith("#"):
            return True
        node: Any = self.root
        for part in filter(None, ref[1:].split("/")):
            if not isinstance(node, Mapping):
                return True
            node = node.get(part.replace("~1", "/").replace("~0", "~"), True)
        return node

    def _object(self, schema: Mapping[str, Any], depth: int) -> dict[str, Any]:
        required = list(schema.get("required", ()))
        properties = schema.get("properties") or {}
        names = list(properties) if depth < _DEEP else [n for n in properties if n in required]
        value = {name: self.sample(properties[name], depth) for name in names}
        return value | {name: "echo" for name in required if name not in value}

    def _array(self, schema: Mapping[str, Any], depth: int) -> list[Any]:
        count = max(1 if depth < _DEEP else 0, schema.get("minItems", 0))
        count = min(count, schema.get("maxItems", count))
        return [self.sample(schema.get("items", True), depth)] * count

    def _string(self, schema: Mapping[str, Any], depth: int) -> str:
        text = _FORMATS.get(schema.get("format", ""), "echo")
        shortest = schema.get("minLength", 0)
        if len(text) < shortest:
            text = (text * shortest)[:shortest]
        return text[: schema.get("maxLength", len(text))]

    def _integer(self, schema: Mapping[str, Any], depth: int) -> int:
        value = self.number
        if "minimum" in schema:
            value = max(value, math.ceil(schema["minimum"]))
        if "exclusiveMinimum" in schema:
            value = max(value, math.floor(schema["exclusiveMinimum"]) + 1)
        if "maximum" in schema:
            value = min(value, math.floor(schema["maximum"]))
        if "exclusiveMaximum" in schema:
            value = min(value, math.ceil(schema["exclusiveMaximum"]) - 1)
        return value

    def _number(self, schema: Mapping[str, Any], depth: int) -> float:
        return float(self._integer(schema, depth))

    def _boolean(self, schema: Mapping[str, Any], depth: int) -> bool:
        return True

    def _null(self, schema: Mapping[str, Any], depth: int) -> None:
        return None


def _type(schema: Mapping[str, Any]) -> str:
    """The schema's type (the first non-null one of a list), else guessed from its keywords."""
    kind = schema.get("type")
    if isinstance(kind, list):
        kind = next((k for k in kind if k != "null"), "null")
    if kind in _TYPES:
        return str(kind)
    return "object" if "properties" in schema else "array" if "items" in schema else "string"


KEY_TTL = 1.0  # seconds an API key is used before it is looked up again


class _HttpProvider:
    """What the HTTP providers share: a base URL, an optional API key, POST and decode."""

    KIND: ClassVar[str]
    BASE_URL: ClassVar[str]

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        self.what = f"{name} ({self.KIND})"
        self.base_url = str(options.get("base_url") or self.BASE_URL).rstrip("/")
        self.api_key = options.get("api_key")
        self.resolve = resolve
        self._urls: dict[str, httpx.URL] = {}
        self._key: tuple[str | None, float] | None = None

    def key(self) -> str | None:
        """The API key, resolved again at most every KEY_TTL seconds (a secret set or changed
        since the run began is picked up)."""
        if self.api_key is None:
            return None
        now = time.monotonic()
        if self._key is None or now - self._key[1] > KEY_TTL:
            key = str(resolve_option(self.resolve, self.api_key, self.what)).strip() or None
            self._key = (key, now)
        return self._key[0]

    async def post(
        self, http: httpx.AsyncClient, path: str, body: Any, headers: Mapping[str, str]
    ) -> Any:
        """POST `body` to base_url + path; the answer's JSON, or a CallError."""
        key = self.key()
        secrets = [key] if key else []
        sent = {**headers, **self.auth(key)} if key else dict(headers)
        url = self._urls.get(path)
        if url is None:  # parsed once: httpx would parse a string again for every request
            url = self._urls[path] = httpx.URL(self.base_url + path)
        response = await post_json(
            http,
            url,
            json_bytes(body),
            what=self.what,
            headers=sent,
            secrets=secrets,
            classify=self.classify,
        )
        return answer_json(response, self.what, secrets)

    def auth(self, key: str) -> dict[str, str]:
        raise NotImplementedError

    def classify(
        self, error: CallError, response: httpx.Response, body: Mapping[str, Any]
    ) -> CallError:
        return error

    def dig(self, data: Any, *path: str | int) -> Any:
        """data[path[0]][path[1]]…, or a CallError naming what the answer lacks."""
        value = data
        for step in path:
            try:
                value = value[step]
            except (KeyError, IndexError, TypeError):
                where = ".".join(map(str, path))
                raise CallError(f"{self.what}: unexpected answer: no {where}") from None
        return value


MAX_TOKENS = 10**9  # more than any model takes or gives in one call; a count past it is wrong


def _tokens(what: str, usage: Any, prompt: str, completion: str) -> Usage | None:
    """The answer's `usage` (None when it has none, a missing count is 0). A count that is not
    a whole number from 0 to MAX_TOKENS makes the answer malformed: a CallError that is not
    retried, like an answer without its text, and nothing added to the job's totals."""
    if usage is None:
        return None
    if not isinstance(usage, Mapping):
        raise CallError(f"{what}: unexpected answer: usage is not an object")
    return Usage(_count(what, usage, prompt), _count(what, usage, completion))


def _count(what: str, usage: Mapping[str, Any], name: str) -> int:
    value = usage.get(name)
    if value is None:
        return 0
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= MAX_TOKENS:
        raise CallError(
            f"{what}: unexpected answer: usage.{name} is {_shown(value)}, not a token count"
        )
    return value


_KINDS: dict[type, str] = {str: "a string", list: "an array", dict: "an object"}


def _shown(value: Any) -> str:
    """A bad count as an error shows it: its JSON, or when that is long its kind and length
    (never a cut piece of it, which the scrubber could not recognise)."""
    text = json.dumps(value)
    if len(text) <= 40:
        return text
    return f"{_KINDS.get(type(value), 'a value')} of {len(text)} characters"


class OpenAI(_HttpProvider):
    """OpenAI-compatible chat completions (OpenAI, and local servers that speak the same API)."""

    KIND = "openai"
    BASE_URL = "https://api.openai.com/v1"
    OPTIONS: ClassVar[dict[str, Any]] = options_schema({"base_url": _URL, "api_key": _TEXT})

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        super().__init__(name, options, resolve)
        self.limit_field = _limit_field(self.base_url)

    async def complete(self, http: httpx.AsyncClient, request: AIRequest) -> AIAnswer:
        body = _openai_body(request, self.limit_field)
        data = await self.post(http, "/chat/completions", body, {})
        message = self.dig(data, "choices", 0, "message")
        content = self.dig(message, "content")
        usage = _tokens(self.what, data.get("usage"), "prompt_tokens", "completion_tokens")
        if not isinstance(content, str):
            refusal = message.get("refusal") if isinstance(message, Mapping) else None
            said = f"{self.what}: the model gave no text" + _said(refusal)
            raise CallError(said, usage=usage)  # a refusal is paid for too
        return AIAnswer(content, usage)

    def auth(self, key: str) -> dict[str, str]:
        return {"authorization": f"Bearer {key}"}

    def classify(
        self, error: CallError, response: httpx.Response, body: Mapping[str, Any]
    ) -> CallError:
        if "insufficient_quota" in (body.get("code"), body.get("type")):
            return CallError(error.message, status=error.status, pause=Pause.CREDITS)
        if response.status_code == 429:
            return rate_limited(error.message, response)
        return error


def _limit_field(base_url: str) -> str:
    """OpenAI itself takes `max_completion_tokens` (its reasoning models refuse `max_tokens`);
    the servers that speak its API elsewhere take `max_tokens`."""
    host = httpx.URL(base_url).host
    return "max_completion_tokens" if host == "api.openai.com" else "max_tokens"


def _openai_body(request: AIRequest, limit_field: str = "max_tokens") -> dict[str, Any]:
    messages = [{"role": "user", "content": request.prompt}]
    if request.system:
        messages.insert(0, {"role": "system", "content": request.system})
    body: dict[str, Any] = {"model": request.model, "messages": messages}
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body[limit_field] = request.max_tokens
    if request.json_schema is not None:
        schema = {"name": "output", "schema": dict(request.json_schema), "strict": False}
        body["response_format"] = {"type": "json_schema", "json_schema": schema}
    return body


def _said(refusal: Any) -> str:
    return f" (it refused: {refusal})" if isinstance(refusal, str) and refusal else ""


class Anthropic(_HttpProvider):
    """Anthropic's Messages API."""

    KIND = "anthropic"
    BASE_URL = "https://api.anthropic.com"
    VERSION = "2023-06-01"
    OPTIONS: ClassVar[dict[str, Any]] = options_schema(
        {"base_url": _URL, "api_key": _TEXT, "max_tokens": {"type": "integer", "minimum": 1}}
    )

    def __init__(self, name: str, options: Mapping[str, Any], resolve: Resolve) -> None:
        super().__init__(name, options, resolve)
        self.max_tokens = int(options.get("max_tokens") or 1024)

    async def complete(self, http: httpx.AsyncClient, request: AIRequest) -> AIAnswer:
        body = _anthropic_body(request, request.max_tokens or self.max_tokens)
        data = await self.post(http, "/v1/messages", body, {"anthropic-version": self.VERSION})
        blocks = self.dig(data, "content")
        if not isinstance(blocks, list):
            raise CallError(f"{self.what}: unexpected answer: content is not a list")
        text = "".join(_texts(blocks))
        if request.json_schema is not None:
            text = _unfenced(text)
        usage = _tokens(self.what, data.get("usage"), "input_tokens", "output_tokens")
        return AIAnswer(text, usage)

    def auth(self, key: str) -> dict[str, str]:
        return {"x-api-key": key}

    def classify(
        self, error: CallError, response: httpx.Response, body: Mapping[str, Any]
    ) -> CallError:
        # 529 "overloaded" is a 5xx: error_for_status already makes it retryable.
        if "credit balance" in str(body.get("message", "")).lower():
            return CallError(error.message, status=error.status, pause=Pause.CREDITS)
        return error


def _anthropic_body(request: AIRequest, max_tokens: int) -> dict[str, Any]:
    body: dict[str, Any] = {
        "model": request.model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": request.prompt}],
    }
    system = [request.system] if request.system else []
    if request.json_schema is not None:
        system.append(
            "Answer only with a JSON document that matches this JSON Schema,"
            " with no other text before or after it:\n" + json.dumps(request.json_schema)
        )
    if system:
        body["system"] = "\n\n".join(system)
    if request.temperature is not None:
        body["temperature"] = request.temperature
    return body


def _texts(blocks: Sequence[Any]) -> list[str]:
    return [
        str(block.get("text", ""))
        for block in blocks
        if isinstance(block, Mapping) and block.get("type") == "text"
    ]


_FENCE = re.compile(r"^\s*```[a-zA-Z]*\s*\n(.*?)\n?```\s*$", re.DOTALL)


def _unfenced(text: str) -> str:
    """JSON the model wrapped in a Markdown code fence anyway, without the fence."""
    match = _FENCE.match(text)
    return match.group(1) if match else text


PROVIDERS: dict[str, type] = {"echo": Echo, "openai": OpenAI, "anthropic": Anthropic}
