"""What runs on a Dask worker: cxrun's own executor over the rendered calls a runtime sends.

A worker process keeps one event loop on a thread of its own, and one executor per job a
runtime runs there: every task of that job (a runtime keeps two batches' calls in flight)
shares the executor's slots, HTTP connections and the provider limits of this worker's share.
Finished calls go straight back to the runtime over a connection of the job's own (see
cxrun/io/cluster.py), in chunks: whatever finished while the chunk before was on its way goes
in the next. A call's slot is free once the runtime has answered its chunk, so a worker that
dies loses only its calls in flight. Secrets are read here, by name, from this worker's
environment or from the `.cxrun/secrets.json` of its folder (CXRUN_PROJECT, or the current
folder)."""

from __future__ import annotations

import asyncio
import os
import pickle
import ssl
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cxrun.io.calls import Call, Target
from cxrun.io.executor import Executor, JobHalted, JobPaused, JobTimedOut

WATCH_EVERY = 0.25  # seconds between two looks at the job's stop event and provider holds
ACK = b"\x01"  # the runtime's answer to a chunk: every call in it is kept
MAX_FRAME = 1 << 28  # bytes: a larger frame is refused
CONNECT_WITHIN = 10.0  # seconds to reach the runtime


def frame_length(header: bytes) -> int:
    """The length a frame's 4-byte header announces (ValueError past MAX_FRAME)."""
    size = int.from_bytes(header, "big")
    if size > MAX_FRAME:
        raise ValueError(f"a frame of {size} bytes")
    return size


def frame(payload: bytes) -> bytes:
    return len(payload).to_bytes(4, "big") + payload


@dataclass(frozen=True)
class Task:
    """One batch's calls for one worker, and what it needs to make them (no secret values:
    `targets` are cxrun.yaml's options, `secret:NAME` references left as they are)."""

    executor: str  # the runtime's executor (one per job run): names its shared objects
    job: int
    batch: str  # the runtime's name for the batch these calls are of
    key: str  # the Dask task's key: names how it ended, in the message that says so
    reply_to: tuple[str, int]  # where the runtime takes the results
    token: str  # what a connection there says first
    calls: list[Call]
    targets: dict[str, tuple[str, dict[str, Any]]]  # name -> (section, options)
    concurrency: int  # this worker's share of the job's concurrency
    shares: int  # how many workers split each provider's rate
    record_timeout: float | None = None
    time_left: float | None = None


def work(task: Task) -> None:
    """The Dask task: make `task.calls` on this worker's executor for the job. How it ended
    goes to the runtime with the results, never as the task's result: a result is kept on
    the worker, and a runtime that asked for it after the worker died would make Dask run the
    task again. A worker that cannot make them (a secret it lacks) raises CannotRun, which
    Dask hands the runtime through the scheduler."""
    from distributed import get_client, get_worker

    host = _Host.get(get_client(), get_worker().address)
    host.submit(task)


def forget(executor: str) -> None:
    """Drop a runtime's executor on this worker (its job run is over); run by `client.run`."""
    host = _Host.existing
    if host is not None:
        host.forget(executor)


class _Host:
    """This worker process's loop thread and executors."""

    existing: _Host | None = None
    _lock = threading.Lock()

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address = client, address
        self.loop = asyncio.new_event_loop()
        # one executor per job run, started once: a run's two batches' tasks may come at once
        self.jobs: dict[str, asyncio.Task[_JobCalls]] = {}
        threading.Thread(target=self.loop.run_forever, name="cxrun-calls", daemon=True).start()

    @classmethod
    def get(cls, client: Any, address: str) -> _Host:
        with cls._lock:
            if cls.existing is None:
                cls.existing = cls(client, address)
            return cls.existing

    def submit(self, task: Task) -> None:
        asyncio.run_coroutine_threadsafe(self._run(task), self.loop).result()

    def forget(self, executor: str) -> None:
        found = self.jobs.pop(executor, None)
        if found is not None:
            asyncio.run_coroutine_threadsafe(_close(found), self.loop).result(30)

    async def _run(self, task: Task) -> None:
        starting = self.jobs.get(task.executor)
        if starting is None:
            start = _JobCalls.start(task, self.client, self.address)
            starting = self.jobs[task.executor] = asyncio.ensure_future(start)
        try:
            calls = await asyncio.shield(starting)
        except _CannotRun as cannot:
            raise CannotRun(str(cannot)) from None
        await calls.run(task)


async def _close(starting: asyncio.Task[_JobCalls]) -> None:
    try:
        calls = await starting
    except _CannotRun:
        return
    await calls.close()


class _CannotRun(Exception):
    """A provider's secret is not set on this worker, or the runtime cannot be reached."""


class CannotRun(Exception):
    """What a task raises when its worker cannot make the calls (the job fails saying why)."""


@dataclass
class _JobCalls:
    """One job's executor on this worker, and the watch on its stop event."""

    executor: Executor
    http: Any
    watcher: asyncio.Task[None]
    client: Any
    sender: _Sender

    @classmethod
    async def start(cls, task: Task, client: Any, address: str) -> _JobCalls:
        from cxrun.io.plugins import http_client

        targets, redact = _targets(task, address)
        sender = await _Sender.connect(task, client, address)
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
        return cls(executor, http, watcher, client, sender)

    async def run(self, task: Task) -> None:
        """Make the task's calls; then say how it ended, once every result is kept."""

        def keep(result: dict[str, Any]) -> asyncio.Future[None]:
            # The call's slot is free once the runtime has kept the result: a worker that
            # dies loses no more than its slots' worth of calls.
            return self.sender.put(task.batch, result)

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
        await self.sender.put(task.batch, {"ended": task.key, **outcome})
        await self.sender.drain()

    async def close(self) -> None:
        self.watcher.cancel()
        await self.executor.close()
        await self.http.aclose()
        await self.sender.close()


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
            raise _CannotRun(f"worker {address}: {exc.message}") from None
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


class _Sender:
    """A job run's connection to its runtime: finished calls go in chunks, one on its way at a
    time, the next one carrying whatever finished meanwhile; each call's future is done once
    the runtime has answered its chunk."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self._pending: list[tuple[str, dict[str, Any]]] = []
        self._done: asyncio.Future[None] | None = None  # the future of the calls pending now
        self._wake = asyncio.Event()
        self._idle = asyncio.Event()
        self._idle.set()
        self._broken: BaseException | None = None
        self._loop = asyncio.get_running_loop().create_task(self._send())

    @classmethod
    async def connect(cls, task: Task, client: Any, address: str) -> _Sender:
        host, port = task.reply_to
        context = _tls() if address.startswith("tls://") else None
        try:
            async with asyncio.timeout(CONNECT_WITHIN):
                reader, writer = await asyncio.open_connection(host, port, ssl=context)
        except (OSError, TimeoutError) as exc:
            raise _CannotRun(
                f"worker {address} cannot reach the runtime at {host}:{port} to send results "
                f"({exc or type(exc).__name__}): let workers connect to the runtime's machine"
            ) from None
        writer.write(frame(f"{task.token} {address}".encode()))
        return cls(reader, writer)

    def put(self, batch: str, result: dict[str, Any]) -> asyncio.Future[None]:
        """Hand a finished call over; the future is done once the runtime has kept it."""
        loop = asyncio.get_running_loop()
        if self._broken is not None:
            failed: asyncio.Future[None] = loop.create_future()
            failed.set_exception(self._broken)
            return failed
        if self._done is None:
            self._done = loop.create_future()
        self._pending.append((batch, result))
        self._idle.clear()
        self._wake.set()
        return self._done

    async def drain(self) -> None:
        """Wait until every call handed over so far is kept by the runtime (or the connection
        is lost)."""
        await self._idle.wait()

    async def close(self) -> None:
        self._loop.cancel()
        self.writer.close()

    async def _send(self) -> None:
        while True:
            await self._wake.wait()
            self._wake.clear()
            taken, done = self._pending, self._done
            self._pending, self._done = [], None
            if done is None:
                continue
            try:
                self.writer.write(frame(pickle.dumps(taken, protocol=pickle.HIGHEST_PROTOCOL)))
                await self.writer.drain()
                if await self.reader.readexactly(len(ACK)) != ACK:
                    raise ConnectionError("the runtime answered a chunk wrongly")
            except (OSError, EOFError, asyncio.IncompleteReadError, ConnectionError) as exc:
                self._broken = ConnectionError(f"the runtime's connection was lost: {exc}")
                for failed in (done, self._done):  # those handed over meanwhile too
                    if failed is not None:
                        failed.set_exception(self._broken)
                self._pending, self._done = [], None
                self._idle.set()
                return
            done.set_result(None)
            if not self._pending:
                self._idle.set()


def _tls() -> ssl.SSLContext | None:
    """The TLS context a worker of a tls:// cluster connects with (its own Dask settings)."""
    from distributed import get_worker

    context: ssl.SSLContext | None = get_worker().security.get_connection_args("worker")[
        "ssl_context"
    ]
    return context
