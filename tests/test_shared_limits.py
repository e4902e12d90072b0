"""A provider's limits shared by every job of one process: unit tests of the limit itself (jobs
on threads with event loops of their own), then two jobs in one real `cxrun runtime` against
a local server that times every call."""

from __future__ import annotations

import asyncio
import json
import signal
import threading
import time
from pathlib import Path
from typing import Any

import yaml
from conftest import write_project
from servers import FakeServer, OpenAI, Reply, Request
from test_durable import cxrun, start, wait_until
from test_io_runtime import KEY, ask, record_of

from cxrun.io.limits import SharedLimit, shared_limit
from cxrun.ops import open_context

pytest_plugins = ["servers"]


class Clock:
    """A fake monotonic clock whose sleep only moves it forward."""

    def __init__(self) -> None:
        self.now = 100.0
        self.slept: list[float] = []

    def __call__(self) -> float:
        return self.now

    async def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def test_the_rate_spaces_starts_whoever_asks():
    limit, clock = SharedLimit(rate=4.0), Clock()

    async def starts() -> list[float]:
        seen = []
        for _ in range(5):
            await limit.slot(clock, clock.sleep)
            seen.append(clock.now)
        return seen

    assert asyncio.run(starts()) == [100.0, 100.25, 100.5, 100.75, 101.0]


def test_a_hold_after_a_429_makes_every_caller_wait_it_out():
    limit, clock = SharedLimit(), Clock()
    limit.hold(clock.now + 3.0)

    asyncio.run(limit.slot(clock, clock.sleep))

    assert clock.now == 103.0
    asyncio.run(limit.slot(clock, clock.sleep))  # the hold is over
    assert clock.now == 103.0


def test_concurrency_holds_across_threads_with_loops_of_their_own():
    limit = SharedLimit(concurrency=3)
    lock, in_flight, most = threading.Lock(), [0], [0]

    async def call() -> None:
        await limit.enter()
        try:
            with lock:
                in_flight[0] += 1
                most[0] = max(most[0], in_flight[0])
            await asyncio.sleep(0.01)
            with lock:
                in_flight[0] -= 1
        finally:
            limit.leave()

    async def job() -> None:
        await asyncio.gather(*(call() for _ in range(20)))

    threads = [threading.Thread(target=asyncio.run, args=(job(),)) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert most[0] == 3
    assert limit.in_flight == 0


def test_a_waiter_cancelled_passes_its_slot_on():
    limit = SharedLimit(concurrency=1)

    async def scene() -> None:
        await limit.enter()  # the one slot, held
        waiting = asyncio.ensure_future(limit.enter())
        after = asyncio.ensure_future(limit.enter())
        await asyncio.sleep(0)
        waiting.cancel()
        limit.leave()  # goes to `waiting`, cancelled: passed on to `after`
        await asyncio.wait_for(after, 5)
        assert limit.in_flight == 1
        limit.leave()

    asyncio.run(scene())
    assert limit.in_flight == 0


def test_jobs_of_one_project_share_a_providers_limit_and_a_changed_rate_is_a_new_one():
    first = shared_limit(("p", "providers", "llm"), {"rate": "10/s"})
    assert shared_limit(("p", "providers", "llm"), {"rate": "10/s", "kind": "x"}) is first
    assert shared_limit(("p", "providers", "llm"), {"rate": "20/s"}) is not first
    assert shared_limit(("q", "providers", "llm"), {"rate": "10/s"}) is not first


# ---- two jobs in one runtime ---------------------------------------------------------------


class Timed:
    """An OpenAI-compatible model that notes when each call came and how many were in flight;
    `refuse_once`: the first call of that record is answered 429 with Retry-After."""

    def __init__(self, delay: float = 0.05, refuse_once: str | None = None) -> None:
        self.delay, self.refuse_once = delay, refuse_once
        self.lock = threading.Lock()
        self.times: list[float] = []
        self.refused_at: float | None = None
        self.in_flight = self.most = 0

    def __call__(self, request: Request) -> Reply:
        record = record_of(request)
        with self.lock:
            self.times.append(time.monotonic())
            if record == self.refuse_once and self.refused_at is None:
                self.refused_at = time.monotonic()
                return Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "2"})
            self.in_flight += 1
            self.most = max(self.most, self.in_flight)
        time.sleep(self.delay)
        with self.lock:
            self.in_flight -= 1
        return OpenAI.answer(f"Hello record {record}")

    def busiest_second(self) -> int:
        with self.lock:
            times = sorted(self.times)
        return max((sum(1 for t in times if s <= t < s + 1.0) for s in times), default=0)


def two_jobs(tmp_path: Path, server: FakeServer, provider: dict[str, Any], rows: int) -> Path:
    """Two spinners over one table, each asking the same provider at concurrency 8."""
    llm = {"kind": "openai", "base_url": f"{server.url}/v1", "api_key": "secret:LLM_KEY"}
    spinner = {"table": "people", "key": "id", "limits": {"concurrency": 8}, "steps": [ask()]}
    people = "id,name\n" + "".join(f"{i},p{i}\n" for i in range(1, rows + 1))
    config = {"name": "shared", "providers": {"llm": {**llm, **provider}}}
    root = write_project(
        tmp_path / "proj",
        {"a": yaml.safe_dump(spinner), "b": yaml.safe_dump(spinner)},
        {"people": people},
        yaml.safe_dump(config),
    )
    open_context(str(root)).secrets.set("LLM_KEY", KEY)
    assert cxrun(root, "publish").returncode == 0
    return root


def run_both(root: Path) -> str:
    """Jobs 1 and 2 queued, then run side by side by one runtime; its stderr."""
    for name in ("a", "b"):
        assert cxrun(root, "run-now", name, "--detach").returncode == 0
    runtime = start(root, "runtime", "--max-jobs", "2", "--once")
    _, err = runtime.communicate(timeout=120)
    assert runtime.returncode == 0, err
    assert err.count("claimed") == 2, err
    return err


def test_two_jobs_in_one_runtime_keep_to_the_providers_rate_together(tmp_path, http_server):
    model = Timed(delay=0.01)
    http_server.handler = model
    root = two_jobs(tmp_path, http_server, {"rate": "10/s"}, rows=25)

    run_both(root)

    assert len(model.times) == 50
    assert model.busiest_second() <= 11  # not 20: one bucket for both jobs


def test_two_jobs_in_one_runtime_keep_to_the_providers_concurrency(tmp_path, http_server):
    model = Timed(delay=0.05)
    http_server.handler = model
    root = two_jobs(tmp_path, http_server, {"concurrency": 3}, rows=30)

    run_both(root)

    assert len(model.times) == 60 and model.most == 3  # each job alone may have 8


def test_a_429_on_one_job_holds_the_other_job_back_too(tmp_path, http_server):
    model = Timed(delay=0.05, refuse_once="10")
    http_server.handler = model
    root = two_jobs(tmp_path, http_server, {"concurrency": 2}, rows=30)
    for name in ("a", "b"):
        assert cxrun(root, "run-now", name, "--detach").returncode == 0
    runtime = start(root, "runtime", "--max-jobs", "2")
    try:
        assert wait_until(lambda: model.refused_at is not None, 60)
        assert wait_until(lambda: len(model.times) == 61, 60)
    finally:
        runtime.send_signal(signal.SIGTERM)
        _, err = runtime.communicate(timeout=60)
    assert runtime.returncode == 0, err
    refused = model.refused_at
    assert refused is not None
    during = [t for t in model.times if refused + 0.3 < t < refused + 1.7]
    assert during == []  # neither job called while the Retry-After ran


def test_a_cancel_while_a_job_waits_out_a_429_acts_at_once(tmp_path, http_server):
    http_server.handler = lambda request: Reply(
        429, {"error": {"message": "slow down"}}, {"retry-after": "60"}
    )
    root = two_jobs(tmp_path, http_server, {}, rows=5)
    assert cxrun(root, "run-now", "a", "--detach").returncode == 0
    runtime = start(root, "runtime")
    try:
        assert wait_until(lambda: "rate limited" in _reason(root), 60)
        asked = time.monotonic()
        cancelled = cxrun(root, "cancel", "1", "--json")
        took = time.monotonic() - asked
    finally:
        runtime.send_signal(signal.SIGTERM)
        _, err = runtime.communicate(timeout=60)
    assert cancelled.returncode == 0, cancelled.stderr
    assert '"status": "cancelled"' in cancelled.stdout
    assert took < 30, took  # not the 60 s Retry-After
    assert runtime.returncode == 0, err


def _reason(root: Path) -> str:
    listed = cxrun(root, "jobs", "--json")
    return str(json.loads(listed.stdout)[0]["reason"] or "") if listed.returncode == 0 else ""
