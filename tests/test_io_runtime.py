"""I/O steps end to end: ai, send and http steps run by the runtime against real servers on
127.0.0.1, with real state files. Where the runtime would wait (backoff, Retry-After, a rate),
the Runner is driven with a fake clock and sleep, and the test asserts on the recorded sleeps."""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import write_project
from servers import FakeServer, OpenAI, Reply, Request, SmtpServer, echoing
from servers import Webhook as WebhookReply

from cxrun import ops
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.io import plugins
from cxrun.ops import publishing, runs, views
from cxrun.runtime.batches import Batching
from cxrun.runtime.runner import Runner
from cxrun.store import State
from cxrun.store import jobs as job_store
from cxrun.triggers import prepare

pytest_plugins = ["servers"]

KEY = "sk-test-7Hq2Zp9Lw4Xv8Rt3"
MODEL = "gpt-test"
SPINNER = "s"


# ---- projects and spinners -----------------------------------------------------------------


def people(count: int) -> str:
    return "id,name,email\n" + "".join(f"{i},p{i},p{i}@example.org\n" for i in range(1, count + 1))


def llm(server: FakeServer | str, **extra: Any) -> dict[str, Any]:
    """The `llm` provider of cxrun.yaml: OpenAI-compatible, at the server, keyed by a secret."""
    url = server if isinstance(server, str) else server.url
    options = {"kind": "openai", "base_url": f"{url}/v1", "api_key": "secret:LLM_KEY"}
    return {"llm": {**options, **extra}}


def hook(server: FakeServer) -> dict[str, Any]:
    return {"hook": {"kind": "webhook", "url": f"{server.url}/hook"}}


def ask(
    step_id: str = "draft", prompt: str = "Write to record {{ id }}", **extra: Any
) -> dict[str, Any]:
    """An ai step whose prompt ends with the record's key (the Model server counts by it)."""
    schema = extra.pop("schema", None)
    spec = {"provider": "llm", "model": MODEL, "prompt": prompt, "output": step_id}
    return {"id": step_id, "ai": {**spec, **({"schema": schema} if schema else {})}, **extra}


def send(
    channel: str, step_id: str = "send", text: str = "Hello {{ name }}", **extra: Any
) -> dict[str, Any]:
    subject = extra.pop("subject", None)
    spec = {"channel": channel, "to": "{{ email }}", "text": text}
    return {"id": step_id, "send": {**spec, **({"subject": subject} if subject else {})}, **extra}


def make_project(
    tmp_path: Path,
    steps: list[dict[str, Any]],
    *,
    rows: int = 3,
    providers: dict[str, Any] | None = None,
    channels: dict[str, Any] | None = None,
    limits: dict[str, Any] | None = None,
) -> Path:
    """A project with one spinner `s` over a `people` table of `rows` rows."""
    spinner: dict[str, Any] = {"table": "people", "key": "id", "steps": steps}
    if limits:
        spinner["limits"] = limits
    root = write_project(
        tmp_path / "proj",
        spinners={SPINNER: yaml.safe_dump(spinner, sort_keys=False)},
        tables={"people": people(rows)},
    )
    config = {"name": "t", "providers": providers or {}, "channels": channels or {}}
    (root / "cxrun.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    return root


def published(root: Path) -> ops.Context:
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    return ctx


@pytest.fixture(autouse=True)
def llm_key(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LLM_KEY", KEY)


# ---- driving the runtime with fake time ----------------------------------------------------


@dataclass
class FakeTime:
    """The executor's monotonic clock and sleep: sleeping records the wish and moves the clock."""

    now: float = 0.0
    sleeps: list[float] = field(default_factory=list)
    during: Callable[[float], None] | None = None  # called inside each sleep

    def clock(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        if self.during is not None:
            self.during(seconds)
        self.now += seconds
        await asyncio.sleep(0)

    def options(self) -> dict[str, Any]:
        return {"sleep": self.sleep, "clock": self.clock, "rand": lambda: 0.5}


def create_job(ctx: ops.Context) -> Job:
    """The job run-now creates (same selection, same checks), left unrun."""
    created: list[Job] = []

    class Stop(Exception):
        pass

    def grab(job: Job) -> None:
        created.append(job)
        raise Stop

    with contextlib.suppress(Stop):
        runs.run_now(ctx, SPINNER, on_start=grab)
    return created[0]


def run_faked(ctx: ops.Context, fake: FakeTime, job: Job | None = None) -> Job:
    """Run a new job (or `job`) as run-now does, with the executor's time faked."""
    job = job or create_job(ctx)
    _, spinner = prepare.published_spinner(ctx, SPINNER)
    built = plugins.build(ctx.project, spinner, ctx.secrets)
    return Runner(ctx.state, spinner, built, executor_options=fake.options()).run(job.job)


def read_job(state_dir: Path, job: int) -> Job:
    """The job as another reader sees it, through its own State."""
    with State(state_dir).read() as con:
        return job_store.get(con, job)


def steps_of(ctx: ops.Context, job: int, record: str) -> list[tuple[str, int, str]]:
    return [(e.step, e.attempt, e.status) for e in views.journey(ctx, job, record)]


# ---- servers ---------------------------------------------------------------------------------


def record_of(request: Request) -> str:
    """The record a Model request is about: the last word of its prompt."""
    return str(request.json()["messages"][-1]["content"].split()[-1])


class Model:
    """An OpenAI-compatible model that answers per record, counts calls and calls in flight."""

    def __init__(
        self, answer: Callable[[str], str] = lambda key: f"Hello record {key}", delay: float = 0.0
    ) -> None:
        self.answer = answer
        self.delay = delay
        self.deny: set[str] = set()  # records answered 401
        self.calls: Counter[str] = Counter()
        self.in_flight = self.peak = 0
        self.release = threading.Event()  # ends every delay at once
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        key = record_of(request)
        with self._lock:
            self.calls[key] += 1
            self.in_flight += 1
            self.peak = max(self.peak, self.in_flight)
        try:
            if self.delay:
                self.release.wait(self.delay)
            if key in self.deny:
                return OpenAI.unauthorized()
            text = self.answer(key)
            return OpenAI.answer(text, prompt_tokens=10 + int(key), completion_tokens=len(text))
        finally:
            with self._lock:
                self.in_flight -= 1


@pytest.fixture
def model(http_server: FakeServer) -> Model:
    model = Model()
    http_server.handler = model
    return model


def closed_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def hook_payloads(server: FakeServer) -> list[tuple[dict[str, Any], str]]:
    """Each webhook request's JSON body and its Idempotency-Key, in arrival order."""
    return [(r.json(), r.headers.get("idempotency-key", "")) for r in server.requests]


# ---- 1. ai step ------------------------------------------------------------------------------


def test_ai_answer_feeds_later_steps_and_counts_tokens_and_cost(tmp_path, http_server, cli):
    model = Model(lambda key: "Hi" if key == "1" else f"Hello there, record {key}")
    http_server.handler = model
    prices = {MODEL: {"prompt": 2.0, "completion": 10.0}}
    steps = [
        ask(),
        {"id": "long", "tag": "long", "when": "length(draft) > 10"},
        {"id": "shout", "log": "Draft: {{ draft }}"},
    ]
    root = make_project(tmp_path, steps, providers=llm(http_server, prices=prices))
    ctx = published(root)

    job = runs.run_now(ctx, SPINNER)

    assert job.status == JobStatus.COMPLETED
    assert http_server.last.headers["authorization"] == f"Bearer {KEY}"
    assert http_server.last.json()["model"] == MODEL
    records = {r.record: r for r in views.records(ctx, job.job, None, 1)}
    assert records["2"].outputs == {"draft": "Hello there, record 2"}
    assert (records["1"].tags, records["2"].tags) == ([], ["long"])
    assert steps_of(ctx, job.job, "1")[1] == ("long", 1, "skipped")
    draft, long, shout = views.journey(ctx, job.job, "2")
    assert (draft.step, draft.attempt, draft.status) == ("draft", 1, "completed")
    assert draft.message == draft.output == "Hello there, record 2"
    assert draft.error is None and draft.duration_ms is not None and draft.duration_ms > 0
    assert draft.started_at is not None and draft.ended_at is not None
    assert draft.started_at <= draft.ended_at
    assert (long.status, shout.message) == ("completed", "Draft: Hello there, record 2")
    # The journey keeps the tokens the provider reported for each AI attempt, and only there.
    assert draft.usage == {"prompt_tokens": 12, "completion_tokens": len("Hello there, record 2")}
    assert long.usage is None and shout.usage is None

    listed = cli(root, "jobs", "--json")
    assert listed.code == 0, listed
    (shown,) = json.loads(listed.stdout)
    prompt = sum(10 + int(key) for key in ("1", "2", "3"))
    completion = len("Hi") + 2 * len("Hello there, record 2")
    assert (shown["prompt_tokens"], shown["completion_tokens"]) == (prompt, completion)
    assert shown["cost"] == pytest.approx((prompt * 2.0 + completion * 10.0) / 1e6)


# ---- 2. ai step with a schema ----------------------------------------------------------------

VERDICT = {
    "type": "object",
    "required": ["score", "reason"],
    "properties": {"score": {"type": "integer"}, "reason": {"type": "string"}},
}
VERDICTS = {
    "1": '{"score": 5, "reason": "keen"}',
    "2": '{"score": 2, "reason": "lukewarm"}',
    "3": '{"score": "high", "reason": "eager"}',
    "4": '```json\n{"score": 4, "reason": "fenced"}\n```',
}


def test_ai_schema_answer_is_a_struct_and_a_misfit_fails_only_its_record(tmp_path, http_server):
    http_server.handler = Model(VERDICTS.__getitem__)
    steps = [
        ask("verdict", schema=VERDICT),
        {"id": "hot", "tag": "hot", "when": "verdict.score > 3"},
        {"id": "why", "log": "because {{ verdict.reason }}"},
    ]
    ctx = published(make_project(tmp_path, steps, rows=4, providers=llm(http_server)))

    job = runs.run_now(ctx, SPINNER)

    assert (job.status, job.completed, job.failed) == (JobStatus.PARTIAL, 3, 1)
    assert http_server.last.json()["response_format"]["json_schema"]["schema"] == VERDICT
    records = {r.record: r for r in views.records(ctx, job.job, None, 1)}
    assert records["1"].outputs == {"verdict": {"score": 5, "reason": "keen"}}
    assert [records[k].tags for k in "124"] == [["hot"], [], ["hot"]]
    assert views.journey(ctx, job.job, "2")[-1].message == "because lukewarm"
    misfit = records["3"]
    assert (misfit.status, misfit.failed_step) == ("failed", "verdict")
    assert "does not fit the schema" in (misfit.error or "")
    assert "'high' is not of type 'integer'" in (misfit.error or "")
    assert steps_of(ctx, job.job, "3") == [("verdict", 1, "failed")]


# ---- 3. retries ------------------------------------------------------------------------------


def test_server_errors_are_retried_with_exponential_backoff(tmp_path, http_server, model):
    http_server.queue(OpenAI.server_error(), OpenAI.server_error())
    steps = [ask(retry={"attempts": 3, "backoff": "1s"})]
    ctx = published(make_project(tmp_path, steps, rows=1, providers=llm(http_server)))
    fake = FakeTime()

    job = run_faked(ctx, fake)

    assert job.status == JobStatus.COMPLETED
    assert fake.sleeps == [1.0, 2.0]  # backoff * 2^(try-1); rand 0.5 makes the jitter x1
    assert len(http_server.requests) == 3
    journey = views.journey(ctx, job.job, "1")
    assert [(e.attempt, e.status) for e in journey] == [
        (1, "failed"),
        (2, "failed"),
        (3, "completed"),
    ]
    assert all("HTTP 500" in (e.error or "") for e in journey[:2])
    assert journey[2].output == "Hello record 1"


@pytest.mark.parametrize(
    ("retry", "sleeps"),
    [
        ({"attempts": 2, "backoff": "1s"}, [1.0]),
        ({"attempts": 4, "backoff": "1s"}, [1.0, 2.0, 4.0]),
        ({"attempts": 4, "backoff": "1s", "max_backoff": "3s"}, [1.0, 2.0, 3.0]),
    ],
)
def test_retries_end_with_the_last_attempt(tmp_path, http_server, retry, sleeps):
    http_server.handler = lambda request: OpenAI.server_error(503)
    ctx = published(make_project(tmp_path, [ask(retry=retry)], rows=1, providers=llm(http_server)))
    fake = FakeTime()

    job = run_faked(ctx, fake)

    assert (job.status, job.failed) == (JobStatus.FAILED, 1)
    assert fake.sleeps == sleeps
    tries = retry["attempts"]
    assert len(http_server.requests) == tries
    assert steps_of(ctx, job.job, "1") == [("draft", n, "failed") for n in range(1, tries + 1)]
    (record,) = views.records(ctx, job.job, None, 1)
    assert "HTTP 503" in (record.error or "")


def test_a_client_error_is_not_retried(tmp_path, http_server):
    http_server.handler = lambda request: OpenAI.error(400, "bad max_tokens", "invalid_request")
    steps = [ask(retry={"attempts": 3, "backoff": "1s"})]
    ctx = published(make_project(tmp_path, steps, rows=1, providers=llm(http_server)))
    fake = FakeTime()

    job = run_faked(ctx, fake)

    assert job.status == JobStatus.FAILED
    assert fake.sleeps == []
    assert len(http_server.requests) == 1
    (entry,) = views.journey(ctx, job.job, "1")
    assert entry.attempt == 1 and "HTTP 400" in (entry.error or "")
    assert "bad max_tokens" in (entry.error or "")


@pytest.mark.parametrize("transport", ["httpx", "default"])
def test_a_refused_connection_is_retried_then_fails_the_record(tmp_path, monkeypatch, transport):
    monkeypatch.setenv(plugins.TRANSPORT_ENV, transport)
    steps = [ask(retry={"attempts": 3, "backoff": "500ms"})]
    providers = llm(f"http://127.0.0.1:{closed_port()}")
    ctx = published(make_project(tmp_path, steps, rows=1, providers=providers))
    fake = FakeTime()

    job = run_faked(ctx, fake)

    assert job.status == JobStatus.FAILED
    assert fake.sleeps == [0.5, 1.0]
    journey = views.journey(ctx, job.job, "1")
    assert [(e.attempt, e.status) for e in journey] == [(1, "failed"), (2, "failed"), (3, "failed")]
    (record,) = views.records(ctx, job.job, None, 1)
    assert "connection error" in (record.error or "")


# ---- 4. rate limited -------------------------------------------------------------------------


def test_a_429_waits_retry_after_with_the_job_paused_then_completes(tmp_path, http_server, model):
    http_server.queue(OpenAI.rate_limited(retry_after="7"))
    ctx = published(make_project(tmp_path, [ask()], rows=1, providers=llm(http_server)))
    job = create_job(ctx)
    seen: list[Job] = []
    fake = FakeTime(during=lambda seconds: seen.append(read_job(ctx.project.state_dir, job.job)))

    before = datetime.now(UTC)
    done = run_faked(ctx, fake, job)
    after = datetime.now(UTC)

    assert fake.sleeps == [7.0]
    (waiting,) = seen
    assert waiting.status == JobStatus.PAUSED
    assert waiting.reason is not None and waiting.reason.startswith("rate limited until ")
    until = datetime.fromisoformat(waiting.reason.removeprefix("rate limited until "))
    assert before + timedelta(seconds=6) <= until <= after + timedelta(seconds=8)
    # One attempt allowed (the default): waiting out a rate limit did not use it up.
    assert (done.status, done.reason, done.completed) == (JobStatus.COMPLETED, None, 1)
    assert steps_of(ctx, job.job, "1") == [("draft", 1, "failed"), ("draft", 2, "completed")]
    assert "HTTP 429" in (views.journey(ctx, job.job, "1")[0].error or "")


# ---- 5. bad credentials pause; resume -------------------------------------------------------


def test_bad_credentials_pause_and_resume_makes_no_call_twice(tmp_path, http_server, model, run):
    model.deny = {"3"}
    root = make_project(
        tmp_path, [ask()], rows=5, providers=llm(http_server), limits={"concurrency": 1}
    )
    assert run(root, "publish").code == 0

    paused = run(root, "run-now", SPINNER)

    assert paused.code == 6, paused
    assert "cxrun resume 1" in paused.stderr
    shown = json.loads(run(root, "jobs", "--json").stdout)[0]
    assert shown["status"] == "paused" and "credentials" in shown["reason"]
    assert model.calls == Counter({"1": 1, "2": 1, "3": 1})  # nothing new after the 401

    model.deny = set()
    resumed = run(root, "resume", "1", "--json")

    assert resumed.code == 0, resumed
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert model.calls == Counter({"1": 1, "2": 1, "3": 2, "4": 1, "5": 1})


# ---- 6. concurrency and rate -----------------------------------------------------------------


def test_concurrency_limits_the_calls_in_flight(tmp_path, http_server):
    model = Model(delay=0.1)
    http_server.handler = model
    root = make_project(
        tmp_path, [ask()], rows=20, providers=llm(http_server), limits={"concurrency": 4}
    )

    job = runs.run_now(published(root), SPINNER)

    assert (job.status, job.completed) == (JobStatus.COMPLETED, 20)
    assert sum(model.calls.values()) == 20
    assert 2 <= model.peak <= 4


def test_a_provider_rate_spaces_the_calls(tmp_path, http_server, model):
    providers = llm(http_server, rate="5/s")
    ctx = published(make_project(tmp_path, [ask()], rows=10, providers=providers))
    fake = FakeTime()

    job = run_faked(ctx, fake)

    assert (job.status, len(http_server.requests)) == (JobStatus.COMPLETED, 10)
    assert len(fake.sleeps) == 9
    assert sum(fake.sleeps) == pytest.approx(9 * 0.2)


# ---- 7. timeouts -----------------------------------------------------------------------------


def test_a_step_timeout_fails_the_record(tmp_path, http_server):
    model = Model(delay=5.0)
    http_server.handler = model
    steps = [ask(timeout="100ms")]
    ctx = published(make_project(tmp_path, steps, rows=1, providers=llm(http_server)))
    try:
        tick = time.monotonic()
        job = runs.run_now(ctx, SPINNER)
        took = time.monotonic() - tick
    finally:
        model.release.set()

    assert job.status == JobStatus.FAILED
    assert took < 2.0
    (record,) = views.records(ctx, job.job, None, 1)
    assert "timed out" in (record.error or "")
    assert steps_of(ctx, job.job, "1") == [("draft", 1, "failed")]


def test_a_job_timeout_stops_the_job_as_timed_out(tmp_path, http_server, cli):
    model = Model(delay=0.1)
    http_server.handler = model
    limits = {"concurrency": 2, "job_timeout": "300ms"}
    root = make_project(tmp_path, [ask()], rows=40, providers=llm(http_server), limits=limits)
    assert cli(root, "publish").code == 0

    result = cli(root, "run-now", SPINNER, "--json")

    assert result.code == 1, result
    shown = json.loads(result.stdout)
    assert shown["status"] == "timed_out"
    assert "job_timeout" in shown["reason"]
    assert sum(model.calls.values()) < 40  # nothing new started after the deadline


def test_a_job_timeout_counts_on_the_executors_clock(tmp_path, http_server, model):
    http_server.queue(OpenAI.rate_limited(retry_after="7"))
    limits = {"concurrency": 1, "job_timeout": "5s"}
    ctx = published(
        make_project(tmp_path, [ask()], rows=2, providers=llm(http_server), limits=limits)
    )

    job = run_faked(ctx, FakeTime())  # record 1 waits 7 s (fake) for the rate limit

    assert job.status == JobStatus.TIMED_OUT
    assert model.calls == Counter({"1": 1})  # record 2 was not started past the deadline


# ---- 8. channels -----------------------------------------------------------------------------


def test_webhook_idempotency_keys_follow_job_record_and_step(tmp_path, http_server):
    http_server.handler = WebhookReply.handler
    http_server.queue(Reply(500, "try again"))
    retry = {"attempts": 2, "backoff": "1s"}
    steps = [send("hook", "first", retry=retry), send("hook", "second", retry=retry)]
    ctx = published(make_project(tmp_path, steps, rows=2, channels=hook(http_server)))

    job = run_faked(ctx, FakeTime())

    assert job.status == JobStatus.COMPLETED
    sent = hook_payloads(http_server)
    assert len(sent) == 5 and all(key for _, key in sent)
    keys: dict[tuple[str, str], set[str]] = {}
    for body, key in sent:
        keys.setdefault((body["record"], body["step"]), set()).add(key)
    assert set(keys) == {("1", "first"), ("2", "first"), ("1", "second"), ("2", "second")}
    assert all(len(found) == 1 for found in keys.values())  # the retried send kept its key
    first_job = {key for found in keys.values() for key in found}
    assert len(first_job) == 4

    run_faked(ctx, FakeTime())

    second_job = {key for _, key in hook_payloads(http_server)[5:]}
    assert len(second_job) == 4 and not second_job & first_job


def test_outbox_messages_are_listed_by_the_cli(tmp_path, cli):
    steps = [send("box", subject="Hi {{ name }}", text="Hello {{ name }}, welcome")]
    root = make_project(tmp_path, steps, rows=2, channels={"box": {"kind": "outbox"}})
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", SPINNER).code == 0

    listed = cli(root, "outbox", "--json")

    assert listed.code == 0, listed
    messages = sorted(json.loads(listed.stdout), key=lambda m: m["record"])
    assert [(m["job"], m["record"], m["step"]) for m in messages] == [
        (1, "1", "send"),
        (1, "2", "send"),
    ]
    assert [(m["recipient"], m["subject"], m["text"]) for m in messages] == [
        ("p1@example.org", "Hi p1", "Hello p1, welcome"),
        ("p2@example.org", "Hi p2", "Hello p2, welcome"),
    ]


def test_smtp_channel_delivers_subject_and_body(tmp_path, smtp_server: SmtpServer):
    mail = {"kind": "smtp", "host": smtp_server.host, "port": smtp_server.port}
    channels = {"mail": {**mail, "from": "team@example.org"}}
    steps = [send("mail", subject="Welcome {{ name }}", text="Dear {{ name }},\nsee you soon.")]
    ctx = published(make_project(tmp_path, steps, rows=2, channels=channels))

    job = runs.run_now(ctx, SPINNER)

    assert job.status == JobStatus.COMPLETED
    delivered = sorted(smtp_server.messages, key=lambda m: m.rcpt_tos)
    assert [m.rcpt_tos for m in delivered] == [["p1@example.org"], ["p2@example.org"]]
    assert [m.subject for m in delivered] == ["Welcome p1", "Welcome p2"]
    assert delivered[0].text.strip() == "Dear p1,\nsee you soon."
    assert delivered[0].mail_from == "team@example.org"


# ---- 9. http step ----------------------------------------------------------------------------


def test_http_step_sends_its_templates_and_its_json_feeds_later_steps(tmp_path, http_server):
    def enrich(request: Request) -> Reply:
        body = request.json()
        return Reply(200, {"name": f"Dr {body['who']}", "rank": int(request.path.split("/")[-1])})

    http_server.handler = enrich
    body = {"who": "{{ name }}", "contact": {"emails": ["{{ email }}"]}, "fixed": 7}
    steps = [
        {"id": "enrich", "http": {"url": f"{http_server.url}/people/{{{{ id }}}}", "json": body}},
        {"id": "greet", "log": "Hello {{ enrich->>'name' }}"},
        {"id": "senior", "tag": "senior", "when": "CAST(enrich->>'rank' AS INTEGER) >= 2"},
    ]
    steps[0]["http"]["output"] = "enrich"
    ctx = published(make_project(tmp_path, steps, rows=2))

    job = runs.run_now(ctx, SPINNER)

    assert job.status == JobStatus.COMPLETED
    requests = sorted(http_server.requests, key=lambda r: r.path)
    assert [(r.method, r.path) for r in requests] == [("POST", "/people/1"), ("POST", "/people/2")]
    assert requests[1].json() == {
        "who": "p2",
        "contact": {"emails": ["p2@example.org"]},
        "fixed": 7,
    }
    assert views.journey(ctx, job.job, "2")[1].message == "Hello Dr p2"
    records = {r.record: r for r in views.records(ctx, job.job, None, 1)}
    assert records["2"].outputs == {"enrich": {"name": "Dr p2", "rank": 2}}
    assert (records["1"].tags, records["2"].tags) == ([], ["senior"])


def test_an_http_header_rendered_with_a_newline_fails_its_record_and_sends_nothing(
    tmp_path, http_server
):
    # A value from a row must not end the header and start another (request smuggling).
    evil = "{{ name || chr(13) || chr(10) || 'X-Injected: yes' }}"
    steps = [{"id": "call", "http": {"url": f"{http_server.url}/x", "headers": {"x-who": evil}}}]
    ctx = published(make_project(tmp_path, steps, rows=2))

    job = runs.run_now(ctx, SPINNER)

    assert (job.status, job.failed) == (JobStatus.FAILED, 2)
    assert http_server.requests == []
    (entry,) = views.journey(ctx, job.job, "1")
    assert entry.status == "failed"
    assert "the x-who header holds a newline or non-ASCII character" in (entry.error or "")
    assert entry.attempt == 1  # not retried: it would fail the same way


def test_an_http_url_that_cannot_be_sent_fails_its_record_not_the_job(tmp_path, http_server):
    # A row whose value makes the URL invalid (a CR) or names a scheme HTTP does not speak: the
    # call is refused the same way each time, so its record fails at once; the others go on.
    url = (
        "{{ CASE WHEN name = 'p1' THEN 'ftp://files.example/x' WHEN name = 'p2' THEN "
        f"'{http_server.url}/x' || chr(13) ELSE '{http_server.url}/ok' END }}}}"
    )
    steps = [{"id": "call", "http": {"url": url}, "retry": {"attempts": 3, "backoff": "10ms"}}]
    ctx = published(make_project(tmp_path, steps, rows=3))

    job = runs.run_now(ctx, SPINNER)

    assert (job.status, job.completed, job.failed) == (JobStatus.PARTIAL, 1, 2)
    assert [r.path for r in http_server.requests] == ["/ok"]
    for key in ("1", "2"):
        (entry,) = views.journey(ctx, job.job, key)
        assert entry.status == "failed" and entry.attempt == 1  # not retried
        assert "the request cannot be sent" in (entry.error or "")


# ---- 10. retry a finished job ----------------------------------------------------------------


def test_retry_resends_failed_records_without_asking_the_model_again(tmp_path, cli):
    rejected = {"2", "3"}

    def receive(request: Request) -> Reply:
        if request.json()["record"] in rejected:
            return Reply(400, {"error": "mailbox full"})
        return WebhookReply.handler(request)

    model = Model()
    with FakeServer(model) as ai_server, FakeServer(receive) as hook_server:
        steps = [ask(), send("hook", text="{{ draft }}")]
        providers, channels = llm(ai_server), hook(hook_server)
        root = make_project(tmp_path, steps, rows=3, providers=providers, channels=channels)
        assert cli(root, "publish").code == 0

        first = cli(root, "run-now", SPINNER, "--json")
        assert first.code == 3, first
        assert json.loads(first.stdout)["status"] == "partial"
        assert model.calls == Counter({"1": 1, "2": 1, "3": 1})

        rejected.clear()
        again = cli(root, "retry", "1", "--json")

        assert again.code == 0, again
        shown = json.loads(again.stdout)
        assert (shown["status"], shown["completed"], shown["failed"]) == ("completed", 3, 0)
        assert model.calls == Counter({"1": 1, "2": 1, "3": 1})  # drafts reused, not asked again
        sent = [(b, key) for b, key in hook_payloads(hook_server) if b["record"] == "2"]
        assert [b["text"] for b, _ in sent] == ["Hello record 2", "Hello record 2"]
        assert sent[0][1] == sent[1][1]

    journey = json.loads(cli(root, "journey", "1", "2", "--json").stdout)
    assert [(e["step"], e["attempt"], e["status"]) for e in journey] == [
        ("draft", 1, "completed"),
        ("send", 1, "failed"),
        ("send", 2, "completed"),
    ]
    assert "mailbox full" in journey[1]["error"]
    records = {r["record"]: r for r in json.loads(cli(root, "records", "1", "--json").stdout)}
    assert [records[k]["status"] for k in "123"] == ["completed"] * 3
    assert (records["1"]["attempts"], records["2"]["attempts"]) == (1, 2)


# ---- 11. secrets never leak ------------------------------------------------------------------


def state_text(state_dir: Path) -> str:
    """Every value of every table of the state file (read once no cxrun process has it open)."""
    with duckdb.connect(str(state_dir / "state.duckdb"), read_only=True) as con:
        tables = [t for (t,) in con.execute("SELECT table_name FROM duckdb_tables()").fetchall()]
        return "\n".join(repr(con.execute(f'SELECT * FROM "{t}"').fetchall()) for t in tables)


def test_secret_values_never_leak_into_output_or_state(tmp_path, http_server, run, monkeypatch):
    monkeypatch.delenv("LLM_KEY")
    http_server.handler = echoing(400)  # failed records: the key in their errors
    root = make_project(tmp_path, [ask()], rows=2, providers=llm(http_server))
    seen = {
        "set": run(root, "secrets", "set", "LLM_KEY", input=KEY),
        "publish": run(root, "publish"),
        "failed --json": run(root, "run-now", SPINNER, "--json"),
        "failed": run(root, "run-now", SPINNER),
    }
    # Paused jobs: one call finishes first with an answer that quotes the key (kept in the
    # spool until the job resumes), then the key comes back in the 401 that pauses the job.
    http_server.handler = echoing(401)
    http_server.queue(OpenAI.answer(f"your key is {KEY}"))
    seen["paused --json"] = run(root, "run-now", SPINNER, "--json")
    http_server.queue(OpenAI.answer(f"your key is {KEY}"))
    seen["paused"] = run(root, "run-now", SPINNER)
    for command in (["jobs"], ["records", "1"], ["journey", "1", "1"], ["secrets", "list"]):
        seen[" ".join(command)] = run(root, *command)
        seen[" ".join([*command, "--json"])] = run(root, *command, "--json")

    codes = [seen[name].code for name in ("set", "publish", "failed", "paused")]
    assert codes == [0, 0, 1, 6], seen
    assert all(r.headers["authorization"] == f"Bearer {KEY}" for r in http_server.requests)
    records = json.loads(seen["records 1 --json"].stdout)
    assert all("Bearer ***" in r["error"] for r in records)  # the echo came back, redacted
    assert "Bearer ***" in json.loads(seen["journey 1 1 --json"].stdout)[0]["error"]
    paused = json.loads(seen["paused --json"].stdout)
    assert paused["status"] == "paused" and "Bearer ***" in paused["reason"]
    for name, output in seen.items():
        assert KEY not in output.stdout + output.stderr, name
    state_dir = root / ".cxrun"
    files = [p for p in state_dir.rglob("*") if p.is_file() and p.name != "secrets.json"]
    spooled = [p for p in files if "spool" in p.parts and p.stat().st_size]
    assert spooled, "the paused jobs keep their finished calls in the spool"
    assert "your key is ***" in "".join(p.read_text() for p in spooled)
    for path in files:
        assert KEY.encode() not in path.read_bytes(), path
    text = state_text(state_dir)
    assert "Bearer ***" in text and KEY not in text


# ---- 12. publish checks providers and secrets ------------------------------------------------


def test_publish_names_a_missing_secret(tmp_path, http_server, cli, monkeypatch):
    monkeypatch.delenv("LLM_KEY")
    root = make_project(tmp_path, [ask()], providers=llm(http_server))

    result = cli(root, "publish")

    assert result.code == 2, result
    assert "secret LLM_KEY is not set" in result.stderr
    assert "cxrun secrets set LLM_KEY" in result.stderr


def test_publish_names_the_providers_there_are(tmp_path, http_server, cli):
    step = ask()
    step["ai"]["provider"] = "gpt"
    providers = {**llm(http_server), "demo": {"kind": "echo"}}
    root = make_project(tmp_path, [step], providers=providers)

    result = cli(root, "publish")

    assert result.code == 2, result
    assert "unknown provider 'gpt'" in result.stderr
    assert "(providers in cxrun.yaml: demo, llm)" in result.stderr


def test_io_batches_follow_the_rate_and_the_last_rows_come_on_their_own(tmp_path, http_server):
    steps = [ask()]
    root = make_project(tmp_path, steps, providers=llm(http_server), limits={"concurrency": 64})
    ctx = published(root)
    _, spinner = prepare.published_spinner(ctx, SPINNER)
    batching = Batching(spinner)

    def batch(left: int) -> int:
        return min(batching._size(left), left)

    assert batch(10_000) == 128  # the first batch: 2 calls a slot, so progress shows early
    assert batch(10_000) == 2048  # 32 calls a slot before any rate is known
    assert batch(512) == 512  # 8 calls a slot or fewer left: one batch
    batching._rate = 1_000.0  # rows a second: about 8 s of calls
    assert batch(20_000) == 8_000
    assert batch(5_904) == 5_904 - 512  # the last 512 rows come on their own
    assert batch(600) == 300  # ...halved when less than twice that is left
    batching._rate = 100_000.0
    assert batch(100_000) == 128 * 64  # at most 128 calls a slot
