"""Token counts you can trust: counts that are not whole numbers are refused as malformed
answers, and answers that were paid for count even when they fail. Real HTTP servers on
127.0.0.1, real state files, the real CLI."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
import yaml
from conftest import write_project
from servers import Anthropic as AnthropicReply
from servers import FakeServer, Reply, Request
from servers import OpenAI as OpenAIReply

from cxrun import ops
from cxrun.io import plugins
from cxrun.io.base import AIAnswer, AIRequest, CallError, Usage
from cxrun.io.providers import Anthropic, OpenAI
from cxrun.ops import publishing, runs
from cxrun.runtime.runner import Runner
from cxrun.triggers import prepare

pytest_plugins = ["servers"]

MODEL = "gpt-test"
PRICES = {MODEL: {"prompt": 2.0, "completion": 10.0}}  # USD per million tokens


@pytest.fixture(autouse=True)
def llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", "sk-test-counts")


def complete(provider: OpenAI | Anthropic) -> AIAnswer:
    async def call() -> AIAnswer:
        async with httpx.AsyncClient() as http:
            return await provider.complete(http, AIRequest(model=MODEL, prompt="Hi"))

    return asyncio.run(call())


def failure(provider: OpenAI | Anthropic) -> CallError:
    with pytest.raises(CallError) as caught:
        complete(provider)
    return caught.value


def openai(server: FakeServer) -> OpenAI:
    return OpenAI("gpt", {"kind": "openai", "base_url": f"{server.url}/v1"}, lambda v: v)


def anthropic(server: FakeServer) -> Anthropic:
    return Anthropic("claude", {"kind": "anthropic", "base_url": server.url}, lambda v: v)


# ---- a token count that is not one is a bad answer ----------------------------------------

bad_counts = pytest.mark.parametrize(
    "count",
    [-71505869, 1.5, "12", True, 10**12],
    ids=["negative", "fraction", "text", "bool", "huge"],
)


def openai_reply(prompt: Any, completion: Any = 2) -> Reply:
    reply = OpenAIReply.answer("Hello!")
    return Reply(
        200, {**reply.body, "usage": {"prompt_tokens": prompt, "completion_tokens": completion}}
    )


def anthropic_reply(prompt: Any, completion: Any = 2) -> Reply:
    reply = AnthropicReply.answer("Hello!")
    return Reply(
        200, {**reply.body, "usage": {"input_tokens": prompt, "output_tokens": completion}}
    )


@bad_counts
def test_openai_answer_with_a_bad_token_count_is_a_malformed_answer(
    http_server: FakeServer, count: Any
) -> None:
    http_server.queue(openai_reply(count), openai_reply(3, count))
    first, second = failure(openai(http_server)), failure(openai(http_server))
    shown = json.dumps(count)
    assert f"unexpected answer: usage.prompt_tokens is {shown}" in str(first)
    assert f"unexpected answer: usage.completion_tokens is {shown}" in str(second)
    assert not first.retryable and not second.retryable and first.pause is None


@bad_counts
def test_anthropic_answer_with_a_bad_token_count_is_a_malformed_answer(
    http_server: FakeServer, count: Any
) -> None:
    http_server.queue(anthropic_reply(count), anthropic_reply(3, count))
    first, second = failure(anthropic(http_server)), failure(anthropic(http_server))
    shown = json.dumps(count)
    assert f"unexpected answer: usage.input_tokens is {shown}" in str(first)
    assert f"unexpected answer: usage.output_tokens is {shown}" in str(second)
    assert not first.retryable and not second.retryable


def test_usage_that_is_not_an_object_is_malformed_and_missing_counts_are_zero(
    http_server: FakeServer,
) -> None:
    body = OpenAIReply.answer("Hi").body
    http_server.queue(
        Reply(200, {**body, "usage": [1, 2]}),
        Reply(200, {**body, "usage": {"prompt_tokens": 0}}),
        Reply(200, {**body, "usage": None}),
    )
    assert "usage is not an object" in str(failure(openai(http_server)))
    assert complete(openai(http_server)).usage == Usage(0, 0)
    assert complete(openai(http_server)).usage is None


def test_a_refusal_keeps_the_tokens_it_was_charged(http_server: FakeServer) -> None:
    message = {"role": "assistant", "content": None, "refusal": "No."}
    usage = {"prompt_tokens": 14, "completion_tokens": 1}
    http_server.queue(Reply(200, {"choices": [{"message": message}], "usage": usage}))
    error = failure(openai(http_server))
    assert "it refused: No." in str(error) and error.usage == Usage(14, 1)


# ---- runs against a model server -------------------------------------------------------------


def provider(kind: str, server: FakeServer) -> dict[str, Any]:
    url = f"{server.url}/v1" if kind == "openai" else server.url
    return {"kind": kind, "base_url": url, "api_key": "secret:LLM_KEY", "prices": PRICES}


def ai_project(
    tmp_path: Path, server: FakeServer, kind: str = "openai", rows: int = 3, **ai: Any
) -> Path:
    """One spinner `s`: an ai step `rate` over rows 1..rows, prompts ending with the row id."""
    retry = ai.pop("retry", None)
    step: dict[str, Any] = {
        "id": "rate",
        "ai": {
            "provider": "llm",
            "model": MODEL,
            "prompt": "Rate {{ id }}",
            "output": "rate",
            **ai,
        },
    }
    if retry:
        step["retry"] = retry
    spinner = {"table": "people", "key": "id", "steps": [step]}
    people = "id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, rows + 1))
    root = write_project(
        tmp_path / "proj",
        spinners={"s": yaml.safe_dump(spinner, sort_keys=False)},
        tables={"people": people},
    )
    config = {"name": "t", "providers": {"llm": provider(kind, server)}}
    (root / "cxrun.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def answering(kind: str, answers: Callable[[str], tuple[str, Any, Any]]) -> Callable:
    """A handler that answers each record (the prompt's last word) as `answers(key)` says:
    (text, prompt tokens, completion tokens), in the provider's shape."""

    def handler(request: Request) -> Reply:
        body = request.json()
        key = body["messages"][-1]["content"].split()[-1]
        text, prompt, completion = answers(key)
        if kind == "openai":
            reply = OpenAIReply.answer(text)
            usage = {"prompt_tokens": prompt, "completion_tokens": completion}
        else:
            reply = AnthropicReply.answer(text)
            usage = {"input_tokens": prompt, "output_tokens": completion}
        return Reply(200, {**reply.body, "usage": usage})

    return handler


def job_json(cli, root: Path) -> dict[str, Any]:
    listed = cli(root, "jobs", "--json")
    assert listed.code == 0, listed
    (job,) = json.loads(listed.stdout)
    return dict(job)


def journey(cli, root: Path, record: str, job: int = 1) -> list[dict[str, Any]]:
    shown = cli(root, "journey", str(job), record, "--json")
    assert shown.code == 0, shown
    return list(json.loads(shown.stdout))


def cost(prompt: int, completion: int) -> float:
    return (prompt * 2.0 + completion * 10.0) / 1e6


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_a_bad_token_count_fails_the_record_and_adds_nothing(tmp_path, http_server, cli, kind):
    counts = {"1": (5, 2), "2": (-71505869, 2), "3": (4, "12")}
    http_server.handler = answering(kind, lambda key: ("fine", *counts[key]))
    root = ai_project(tmp_path, http_server, kind, retry={"attempts": 3, "backoff": "1s"})
    assert cli(root, "publish").code == 0

    ran = cli(root, "run-now", "s", "--json")

    assert ran.code == 3, ran  # partial: records 2 and 3 failed
    assert len(http_server.requests) == 3  # a malformed answer is not asked again
    job = job_json(cli, root)
    assert (job["completed"], job["failed"]) == (1, 2)
    assert (job["prompt_tokens"], job["completion_tokens"]) == (5, 2)
    assert job["cost"] == pytest.approx(cost(5, 2))
    (entry,) = journey(cli, root, "2")
    assert entry["status"] == "failed"
    assert "unexpected answer: usage." in entry["error"] and "-71505869" in entry["error"]
    assert entry["usage"] == {"prompt_tokens": 0, "completion_tokens": 0}
    (entry,) = journey(cli, root, "3")
    assert 'is "12", not a token count' in entry["error"]


# ---- paid answers that fail still count ---------------------------------------------------

SCORE = {"type": "object", "required": ["score"], "properties": {"score": {"type": "integer"}}}
ANSWERS = {
    "1": ('{"score": 4}', 11, 5),
    "2": ('{"score": "high"}', 12, 6),  # does not fit the schema
    "3": ("Sure! Four.", 13, 7),  # not JSON at all
}


@pytest.mark.parametrize("kind", ["openai", "anthropic"])
def test_tokens_of_an_answer_that_fails_the_schema_are_counted(tmp_path, http_server, cli, kind):
    http_server.handler = answering(kind, ANSWERS.__getitem__)
    root = ai_project(tmp_path, http_server, kind, schema=SCORE)
    assert cli(root, "publish").code == 0

    ran = cli(root, "run-now", "s", "--json")

    assert ran.code == 3, ran
    job = job_json(cli, root)
    assert (job["completed"], job["failed"]) == (1, 2)
    assert (job["prompt_tokens"], job["completion_tokens"]) == (11 + 12 + 13, 5 + 6 + 7)
    assert job["cost"] == pytest.approx(cost(36, 18))
    (misfit,) = journey(cli, root, "2")
    assert misfit["status"] == "failed" and "does not fit the schema" in misfit["error"]
    assert misfit["usage"] == {"prompt_tokens": 12, "completion_tokens": 6}
    (prose,) = journey(cli, root, "3")
    assert "the answer is not JSON" in prose["error"]
    assert prose["usage"] == {"prompt_tokens": 13, "completion_tokens": 7}


def run_without_sleeping(root: Path) -> tuple[int, list[float]]:
    """Publish and run spinner `s` as run-now does, its backoff sleeps recorded, not slept."""
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    sleeps: list[float] = []

    async def sleep(seconds: float) -> None:
        sleeps.append(seconds)
        await asyncio.sleep(0)

    _, spinner = prepare.published_spinner(ctx, "s")
    built = plugins.build(ctx.project, spinner, ctx.secrets)
    started: list[int] = []

    class Stop(Exception):
        pass

    def grab(job: Any) -> None:
        started.append(job.job)
        raise Stop

    with pytest.raises(Stop):
        runs.run_now(ctx, "s", on_start=grab)
    options = {"sleep": sleep, "rand": lambda: 0.5}
    Runner(ctx.state, spinner, built, executor_options=options).run(started[0])
    return started[0], sleeps


def test_a_call_retried_after_a_5xx_and_a_429_counts_each_attempt(tmp_path, http_server, cli):
    http_server.queue(OpenAIReply.server_error(), OpenAIReply.rate_limited("3"))
    http_server.handler = answering("openai", lambda key: ('{"score": "x"}', 20, 9))
    root = ai_project(tmp_path, http_server, rows=1, schema=SCORE, retry={"attempts": 3})

    number, sleeps = run_without_sleeping(root)

    # one backoff, then the Retry-After (the provider's hold, counted from when it was asked)
    assert len(sleeps) == 2 and sleeps[1] == pytest.approx(3.0, abs=0.5)
    entries = journey(cli, root, "1", number)
    assert [(e["attempt"], e["status"]) for e in entries] == [
        (1, "failed"),
        (2, "failed"),
        (3, "failed"),
    ]
    assert [e["usage"]["prompt_tokens"] for e in entries] == [0, 0, 20]
    job = job_json(cli, root)
    assert (job["prompt_tokens"], job["completion_tokens"]) == (20, 9)
    assert job["cost"] == pytest.approx(cost(20, 9))


def test_a_retried_job_adds_the_new_tokens_to_those_paid_before(tmp_path, http_server, cli):
    answers = {"1": ('{"score": 1}', 10, 3), "2": ('{"score": "?"}', 30, 4)}
    http_server.handler = answering("openai", lambda key: answers[key])
    root = ai_project(tmp_path, http_server, rows=2, schema=SCORE)
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", "s", "--json").code == 3
    answers["2"] = ('{"score": 2}', 50, 5)

    again = cli(root, "retry", "1", "--json")

    assert again.code == 0, again
    job = job_json(cli, root)
    assert (job["completed"], job["failed"]) == (2, 0)
    assert (job["prompt_tokens"], job["completion_tokens"]) == (10 + 30 + 50, 3 + 4 + 5)
    entries = journey(cli, root, "2")
    assert [(e["attempt"], e["status"], e["usage"]) for e in entries] == [
        (1, "failed", {"prompt_tokens": 30, "completion_tokens": 4}),
        (2, "completed", {"prompt_tokens": 50, "completion_tokens": 5}),
    ]
