"""One I/O call: its target, and asking an AI provider, sending a message or an HTTP request."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, overload

import httpx

from cxrun.io.base import AIRequest, CallError, Message, check_header_values, error_for_status
from cxrun.spec.model import AIStep, HttpStep, IOStep, SendStep

Sleep = Callable[[float], Awaitable[None]]

if TYPE_CHECKING:
    from cxrun.io.limits import SharedLimit


@dataclass(frozen=True)
class Call:
    row: int
    key: str
    pos: int
    step: IOStep
    inputs: tuple[Any, ...]  # the rendered templates, in step.templates() order


class Calls(Sequence[Call]):
    """The calls of one I/O step over a batch's rows, each made into a Call only when it is
    taken: the rows come from the state on a job's own thread, and tens of thousands of Calls
    built there at once would hold the interpreter from the event loop making the calls."""

    def __init__(self, step: IOStep, pos: int, rows: Sequence[tuple[Any, ...]]) -> None:
        self.step, self.pos, self._rows = step, pos, rows

    def __len__(self) -> int:
        return len(self._rows)

    @overload
    def __getitem__(self, index: int) -> Call: ...

    @overload
    def __getitem__(self, index: slice) -> list[Call]: ...

    def __getitem__(self, index: int | slice) -> Call | list[Call]:
        if isinstance(index, slice):
            return [self._call(row) for row in self._rows[index]]
        return self._call(self._rows[index])

    def __iter__(self) -> Iterator[Call]:
        return map(self._call, self._rows)

    def _call(self, row: tuple[Any, ...]) -> Call:
        return Call(int(row[0]), str(row[1]), self.pos, self.step, tuple(row[2:]))


@dataclass
class Target:
    """A configured provider or channel, ready to call; `limit`: its rate and concurrency,
    shared with every job of this process that calls it (io/limits.py)."""

    name: str
    plugin: Any  # a Provider or a Channel
    limit: SharedLimit | None = None
    timeout: float | None = None
    prices: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass
class Outcome:
    """What one call produced: the raw value for the output column, and every attempt."""

    value: str | None = None
    message: str | None = None
    output: Any = None
    prompt_tokens: int = 0
    completion_tokens: int = 0


def idempotency_key(job: int, record: str, step: str) -> str:
    digest = hashlib.sha256(f"{job}\x1f{record}\x1f{step}".encode()).hexdigest()
    return f"cxrun-{job}-{digest[:32]}"


def cost(target: Target | None, step: IOStep, prompt: int, completion: int) -> float:
    if not isinstance(step, AIStep) or target is None or step.model not in target.prices:
        return 0.0
    price = target.prices[step.model]  # per million tokens
    return (
        prompt * float(price.get("prompt", 0)) + completion * float(price.get("completion", 0))
    ) / 1e6


async def ask(
    http: httpx.AsyncClient, target: Target, step: AIStep, inputs: tuple[Any, ...]
) -> Outcome:
    prompt = str(inputs[0])
    system = str(inputs[1]) if step.system is not None else None
    request = AIRequest(step.model, prompt, system, step.temperature, step.max_tokens, step.schema)
    answer = await target.plugin.complete(http, request)
    usage = answer.usage
    outcome = Outcome(
        value=answer.text,
        message=answer.text,  # scrubbed, then cut, when it is kept
        output=answer.text,
        prompt_tokens=usage.prompt_tokens if usage else 0,
        completion_tokens=usage.completion_tokens if usage else 0,
    )
    if step.schema is not None:
        try:
            parsed = _checked_json(answer.text, step.schema)
        except CallError as error:
            error.usage = usage  # an answer that does not fit was paid for all the same
            raise
        outcome.value = json.dumps(parsed)
        outcome.output = parsed
    return outcome


def paid(error: CallError) -> Outcome:
    """What a failed attempt still counts: the tokens of an answer that came back unusable."""
    usage = error.usage
    if usage is None:
        return Outcome()
    return Outcome(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens)


def _checked_json(text: str, schema: Mapping[str, Any]) -> Any:
    import jsonschema

    cleaned = text.strip()
    if cleaned.startswith("```"):  # a fenced answer: keep what is inside the fence
        cleaned = cleaned.strip("`").split("\n", 1)[-1].rsplit("```", 1)[0]
    try:
        parsed = json.loads(cleaned)
    except json.JSONDecodeError as exc:
        raise CallError(f"the answer is not JSON ({exc.msg}): {text}") from None
    problem = jsonschema.exceptions.best_match(
        jsonschema.Draft202012Validator(schema).iter_errors(parsed)
    )
    if problem is not None:
        where = "/".join(str(p) for p in problem.absolute_path)
        raise CallError(
            f"the answer does not fit the schema: {where + ': ' if where else ''}{problem.message}"
        )
    return parsed


async def send(
    http: httpx.AsyncClient, target: Target, step: SendStep, call: Call, job: int
) -> Outcome:
    to, text = str(call.inputs[0]), str(call.inputs[1])
    subject = str(call.inputs[2]) if step.subject is not None else None
    message = Message(
        to, text, subject, idempotency_key(job, call.key, step.id), job, call.key, step.id
    )
    receipt = await target.plugin.send(http, message)
    detail = {"id": receipt.id, **dict(receipt.detail)}
    return Outcome(
        value=json.dumps(detail), message=f"sent to {to} via {step.channel}", output=detail
    )


async def request(http: httpx.AsyncClient, step: HttpStep, inputs: tuple[Any, ...]) -> Outcome:
    values = iter(inputs)
    url = str(next(values))
    headers = {name: str(next(values)) for name, _ in step.headers}
    check_header_values(headers, f"{step.method} {url}")
    body = None
    if step.body_json is not None:
        body = json.loads(step.body_json)
        for path, _ in step.body:
            body = _put(body, path, next(values))
    response = await http.request(step.method, url, headers=headers, json=body)
    if response.status_code >= 300:
        raise error_for_status(response, f"{step.method} {url}")
    try:
        output = response.json()
    except ValueError:
        output = response.text
    return Outcome(
        value=json.dumps(output),
        message=f"{step.method} {url}: HTTP {response.status_code}",
        output=output,
    )


def _put(document: Any, path: str, value: Any) -> Any:
    """Set the string leaf at `path` (`/a/0/b`) of a JSON document to `value`."""
    if not path:
        return value
    parts = path.split("/")[1:]
    node = document
    for part in parts[:-1]:
        node = node[int(part)] if isinstance(node, list) else node[part]
    last = parts[-1]
    if isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return document
