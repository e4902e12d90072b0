"""What runs on a Dask worker: cxrun's own executor over the rendered calls a runtime sends.

A worker process keeps one event loop on a thread of its own, and one executor per job a
runtime runs there: every task of that job (a runtime keeps two batches' calls in flight)
shares the executor's slots, HTTP connections and the provider limits of this worker's share.
Each finished call is handed to a flusher thread that puts it, with whatever else finished
meanwhile, on the runtime's distributed Queue: a worker that dies loses only its calls in
flight. Secrets are read here, by name, from this worker's environment or from the
`.cxrun/secrets.json` of its folder (CXRUN_PROJECT, or the current folder)."""

from __future__ import annotations

import asyncio
import os
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrun.io.calls import Call, Target
from cxrun.io.executor import Executor, JobHalted, JobPaused, JobTimedOut

WATCH_EVERY = 0.25  # seconds between two looks at the job's stop event and provider holds
FLUSHERS = 4  # puts of finished calls on their way at once


@dataclass(frozen=True)
class Task:
    """One batch's calls for one worker, and what it needs to make them (no secret values:
    `targets` are cxrun.yaml's options, `secret:NAME` references left as they are)."""

    executor: str  # the runtime's executor (one per job run): names its shared objects
    job: int
    queue: str  # where finished calls go
    calls: list[Call]
    targets: dict[str, tuple[str, dict[str, Any]]]  # name -> (section, options)
    concurrency: int  # this worker's share of the job's concurrency
    shares: int  # how many workers split each provider's rate
    record_timeout: float | None = None
    time_left: float | None = None


def work(task: Task) -> dict[str, Any]:
    """The Dask task: make `task.calls` on this worker's executor for the job; what ended it."""
    from distributed import get_client, get_worker

    host = _Host.get(get_client(), get_worker().address)
    return host.submit(task)


def forget(executor: str) -> None:
    """Drop a runtime's executor on this worker (its job run is over); run by `client.run`."""
    host = _Host.existing
    if host is not None:
        host.forget(executor)


class _Host:
    """This worker process's loop thread, executors and flusher."""

    existing: _Host | None = None
    _lock = threading.Lock()

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address = client, address
        self.loop = asyncio.new_event_loop()
        self.jobs: dict[str, _JobCalls] = {}
        self.flusher = _Flusher(client)
        threading.Thread(target=self.loop.run_forever, name="cxrun-calls", daemon=True).start()

    @classmethod
    def get(cls, client: Any, address: str) -> _Host:
        with cls._lock:
            if cls.existing is None:
                cls.existing = cls(client, address)
            return cls.existing

    def submit(self, task: Task) -> dict[str, Any]:
        return asyncio.run_coroutine_threadsafe(self._run(task), self.loop).result()

    def forget(self, executor: str) -> None:
        found = self.jobs.pop(executor, None)
        if found is not None:
            asyncio.run_coroutine_threadsafe(found.close(), self.loop).result(30)

    async def _run(self, task: Task) -> dict[str, Any]:
        calls = self.jobs.get(task.executor)
        if calls is None:
            try:
                calls = await _JobCalls.start(task, self.client, self.address)
            except _NoSecret as missing:
                return {"failed": str(missing)}
            self.jobs[task.executor] = calls
        return await calls.run(task, self.flusher)


class _NoSecret(Exception):
    """A provider's secret is not set on this worker."""


@dataclass
class _JobCalls:
    """One job's executor on this worker, and the watch on its stop event."""

    executor: Executor
    http: Any
    watcher: asyncio.Task[None]
    client: Any

    @classmethod
    async def start(cls, task: Task, client: Any, address: str) -> _JobCalls:
        from cxrun.io.plugins import http_client

        targets, redact = _targets(task, address)
        http = http_client(task.concurrency)
        names = _names(task.executor)

        async def rate_limited(until: Any) -> None:
            await asyncio.to_thread(_say, client, names["held"], until.timestamp())

        executor = Executor(
            job=task.job,
            targets=targets,
            http=http,
            concurrency=task.concurrency,
            redact=redact,
            on_rate_limit=rate_limited,
            record_timeout=task.record_timeout,
            time_left=task.time_left,
        )
        watcher = asyncio.get_running_loop().create_task(_watch(client, names, executor, targets))
        return cls(executor, http, watcher, client)

    async def run(self, task: Task, flusher: _Flusher) -> dict[str, Any]:
        loop = asyncio.get_running_loop()

        def keep(result: dict[str, Any]) -> asyncio.Future[None]:
            # The call's slot is free once the runtime's queue has the result: a worker that
            # dies loses no more than its slots' worth of calls.
            return flusher.put(task.queue, result, loop)

        outcome: dict[str, Any] = {"calls": len(task.calls)}
        stop, _ = await asyncio.to_thread(_look, self.client, _names(task.executor))
        if stop:  # asked before this task came: it makes no call
            self.executor.halt()
        try:
            await self.executor.run(task.calls, keep)
        except JobPaused as paused:
            outcome["paused"] = paused.reason
            await asyncio.to_thread(_stop_everywhere, self.client, task.executor)
        except JobHalted:
            outcome["halted"] = True
        except JobTimedOut:
            outcome["timed_out"] = True
        await asyncio.to_thread(flusher.drain)
        return outcome

    async def close(self) -> None:
        self.watcher.cancel()
        await self.executor.close()
        await self.http.aclose()


def _names(executor: str) -> dict[str, str]:
    """The distributed objects of a runtime's executor: its stop event, its hold variable."""
    return {"stop": f"cxrun-stop-{executor}", "held": f"cxrun-held-{executor}"}


def _targets(task: Task, address: str) -> tuple[dict[str, Target], Callable[[str], str]]:
    """The providers and channels, with this worker's secrets and its share of each rate."""
    from cxrun.base.errors import CxrunError
    from cxrun.base.secrets import Secrets
    from cxrun.io.plugins import target

    secrets = Secrets(Path(os.environ.get("CXRUN_PROJECT", ".")) / ".cxrun")
    built = {}
    for name, (section, options) in task.targets.items():
        shared = _share(options, task.shares)
        try:
            built[name] = target(("cluster", section, name), section, name, shared, secrets)
        except CxrunError as exc:
            raise _NoSecret(f"worker {address}: {exc.message}") from None
    return built, secrets.redactor().redact


def _share(options: Mapping[str, Any], shares: int) -> dict[str, Any]:
    """A provider's options with this worker's share of its rate (and concurrency)."""
    from cxrun.base.durations import per_second

    found = dict(options)
    if "rate" in found:
        found["rate"] = per_second(found["rate"]) / max(1, shares)
    if "concurrency" in found:
        found["concurrency"] = max(1, int(found["concurrency"]) // max(1, shares))
    return found


async def _watch(
    client: Any, names: dict[str, str], executor: Executor, targets: Mapping[str, Target]
) -> None:
    """Every WATCH_EVERY seconds: a stop asked (cancel, pause, a runtime stopping, a pause on
    another worker) halts this executor; a 429 another worker got holds these providers too."""
    while True:  # a first look at once: a stop may have come before this executor
        stop, held = await asyncio.to_thread(_look, client, names)
        if stop:
            executor.halt()
        if held is not None:
            until = time.monotonic() + (held - time.time())
            for found in targets.values():
                if found.limit is not None:
                    found.limit.hold(until)
        await asyncio.sleep(WATCH_EVERY)


def _look(client: Any, names: dict[str, str]) -> tuple[bool, float | None]:
    from distributed import Event, Variable

    stop = Event(names["stop"], client=client).is_set()
    try:
        held = Variable(names["held"], client=client).get(timeout=0)
    except TimeoutError:
        held = None
    return stop, float(held) if held is not None and held > time.time() else None


def _say(client: Any, name: str, until: float) -> None:
    from distributed import Variable

    Variable(name, client=client).set(until)


def _stop_everywhere(client: Any, executor: str) -> None:
    """A pause found here stops the job's calls on every worker (they watch the event)."""
    from distributed import Event

    Event(_names(executor)["stop"], client=client).set()


class _Flusher:
    """Puts finished calls on their queues from threads of their own (FLUSHERS of them, so
    that a result waits for at most one put on its way, not for the one before it too), each
    put carrying every call that finished meanwhile; the calls of one put share one future,
    done once it is on its queue."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self._queues: dict[str, Any] = {}  # made once each: making one asks the scheduler
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._done: _Done | None = None  # the future of the calls pending now
        self._busy = 0
        self._cond = threading.Condition()
        for number in range(FLUSHERS):
            threading.Thread(target=self._loop, name=f"cxrun-flush-{number}", daemon=True).start()

    def put(
        self, queue: str, result: dict[str, Any], loop: asyncio.AbstractEventLoop
    ) -> asyncio.Future[None]:
        """Hand a result over (from `loop`, the host's); done once it is on its queue."""
        with self._cond:
            if self._done is None:
                self._done = (loop, loop.create_future())
            self._pending.append((queue, result))
            self._cond.notify()
            return self._done[1]

    def drain(self) -> None:
        """Wait until every call handed over so far is on its queue."""
        with self._cond:
            while self._pending or self._busy:
                self._cond.wait()

    def _loop(self) -> None:
        while True:
            with self._cond:
                while not self._pending:
                    self._cond.wait()
                taken, done = self._pending, self._done
                self._pending, self._done = [], None
                self._busy += 1
            try:
                self._put(taken)
                if done is not None:
                    done[0].call_soon_threadsafe(_set, done[1])
            finally:
                with self._cond:
                    self._busy -= 1
                    self._cond.notify_all()

    def _put(self, taken: list[tuple[str, dict[str, Any]]]) -> None:
        from distributed import Queue

        by_queue: dict[str, list[dict[str, Any]]] = {}
        for queue, result in taken:
            by_queue.setdefault(queue, []).append(result)
        for name, results in by_queue.items():
            with self._cond:
                if name not in self._queues:
                    self._queues[name] = Queue(name, client=self.client)
                queue = self._queues[name]
            queue.put(results)


_Done = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


def _set(done: asyncio.Future[None]) -> None:
    if not done.done():
        done.set_result(None)
