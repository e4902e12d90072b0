"""The garbage collector spaced out while an executor makes calls: raised on its first call,
put back when the last executor of the process closes, whatever jobs run side by side."""

from __future__ import annotations

import asyncio
import gc
import threading
from collections.abc import Iterator

import pytest
from servers import FakeServer

from cxrun.io import pacing
from cxrun.io.calls import Call
from cxrun.io.executor import Executor
from cxrun.io.plugins import http_client
from cxrun.spec.model import HttpStep, Retry

pytest_plugins = ["servers"]


@pytest.fixture(autouse=True)
def thresholds() -> Iterator[tuple[int, int, int]]:
    before = gc.get_threshold()
    gc.set_threshold(700, 10, 10)
    yield (700, 10, 10)
    gc.set_threshold(*before)


def test_the_young_generation_waits_longer_while_any_executor_runs(thresholds):
    pacing.start()
    pacing.start()  # a second job of the same process
    assert gc.get_threshold() == (pacing.GEN0, 10, 10)
    pacing.stop()
    assert gc.get_threshold() == (pacing.GEN0, 10, 10)  # the other one still runs
    pacing.stop()
    assert gc.get_threshold() == thresholds
    pacing.stop()  # one stop too many changes nothing
    assert gc.get_threshold() == thresholds


def test_jobs_on_threads_of_their_own_leave_the_thresholds_as_they_found_them(thresholds):
    inside: list[tuple[int, int, int]] = []
    ready = threading.Barrier(4)

    def job() -> None:
        pacing.start()
        ready.wait()  # all four are running at once
        inside.append(gc.get_threshold())
        ready.wait()
        pacing.stop()

    threads = [threading.Thread(target=job) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert inside == [(pacing.GEN0, 10, 10)] * 4
    assert gc.get_threshold() == thresholds


def test_an_executor_spaces_collections_while_it_makes_calls(http_server: FakeServer, thresholds):
    step = HttpStep("ping", None, retry=Retry(), timeout=5.0, url=None)
    calls = [Call(row, f"k{row}", 0, step, (f"{http_server.url}/ping/{row}",)) for row in range(6)]
    seen: list[tuple[int, int, int]] = []

    async def run() -> list[dict[str, object]]:
        done: list[dict[str, object]] = []

        def keep(result: dict[str, object]) -> None:
            seen.append(gc.get_threshold())
            done.append(result)

        async with http_client(2) as http:
            executor = Executor(job=1, targets={}, http=http, concurrency=2)
            try:
                await executor.run(calls, keep)
            finally:
                await executor.close()
            return done

    results = asyncio.run(run())
    assert sorted(r["row"] for r in results) == list(range(6))
    assert all(r["ok"] for r in results)
    assert seen == [(pacing.GEN0, 10, 10)] * 6  # while its calls were made
    assert gc.get_threshold() == thresholds  # and put back once it closed
    assert len(http_server.requests) == 6
