"""A runtime's I/O calls made by the workers of a Dask cluster (`cxrun[dask]`).

The runtime stays the only writer of the state and the spool: it sends each batch's rendered
calls (never the table, never a secret's value), one task a worker, pinned to it with no
retries (Dask's own re-runs would make a call twice), and keeps each finished call the moment
it comes back through the batch's distributed Queue. A worker that is lost costs its calls
in flight: the calls it had not sent back are given to the workers left, with the same
Idempotency-Keys. A stop (cancel, pause, a runtime stopping) or a pause found by any worker
sets the executor's stop event, which every worker watches."""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

from cxrun.base.errors import CxrunError
from cxrun.io.calls import Call
from cxrun.io.cluster_worker import Task, forget, work
from cxrun.io.executor import JobFailed, JobHalted, JobPaused, JobTimedOut, Keep

INSTALL = "pip install 'cxrun[dask]'"
NO_WORKER_WAIT = 60.0  # seconds a batch waits for a worker when the cluster has none
LOOK_EVERY = 0.1  # seconds between two looks at the batch's queue, tasks and workers

Targets = dict[str, tuple[str, dict[str, Any]]]


def connect(address: str) -> Cluster:
    """A client of the Dask scheduler at `address`; a clear error without Dask or without it."""
    try:
        import distributed
    except ImportError:
        raise CxrunError(
            "--cluster needs Dask's distributed, which is not installed",
            f"install it with `{INSTALL}` (on the runtime and on every worker)",
        ) from None
    try:
        client = distributed.Client(address, timeout=10, set_as_default=False)
    except (OSError, TimeoutError, ValueError) as exc:
        raise CxrunError(
            f"cannot reach the Dask scheduler at {address}: {exc}",
            "start one with `dask scheduler`, and workers with `dask worker ADDRESS`",
        ) from None
    return Cluster(client, address)


class Cluster:
    """The runtime's client of the cluster (one for all its jobs)."""

    def __init__(self, client: Any, address: str) -> None:
        self.client, self.address = client, address

    def workers(self) -> list[str]:
        """The workers the scheduler has now, asked of it each time: not the client's
        `scheduler_info()`, whose cache the client's own periodic refresh replaces with one
        that lists no worker, so that a look at the wrong moment would take every worker for
        lost and give their calls, still being made, to others."""
        identity = self.client.sync(self.client.scheduler.identity, n_workers=-1)
        return sorted(identity["workers"])

    def executor(
        self,
        job: int,
        targets: Targets,
        concurrency: int,
        on_rate_limit: Callable[[datetime], Awaitable[object]],
        on_resume: Callable[[], Awaitable[object]],
        record_timeout: float | None = None,
        time_left: float | None = None,
    ) -> ClusterExecutor:
        limits = (concurrency, record_timeout, time_left)
        return ClusterExecutor(self, job, targets, limits, on_rate_limit, on_resume)

    def close(self) -> None:
        self.client.close()


class ClusterExecutor:
    """The local Executor's interface (`run`, `halt`, `close`), its calls made by the workers."""

    def __init__(
        self,
        cluster: Cluster,
        job: int,
        targets: Targets,
        limits: tuple[int, float | None, float | None],
        on_rate_limit: Callable[[datetime], Awaitable[object]],
        on_resume: Callable[[], Awaitable[object]],
    ) -> None:
        self.cluster, self.job, self.targets = cluster, job, targets
        self.concurrency, self.record_timeout, time_left = limits
        self.deadline = None if time_left is None else time.monotonic() + time_left
        self.on_rate_limit, self.on_resume = on_rate_limit, on_resume
        self.id = f"{job}-{uuid.uuid4().hex[:12]}"
        self._halted = self._stopped = False
        self._held: float | None = None
        self._runs = 0

    def halt(self) -> None:
        """Start no new call, here or on any worker (they look within a quarter of a second)."""
        self._halted = True

    async def run(self, calls: Sequence[Call], keep: Keep) -> list[dict[str, Any]]:
        """Make the calls on the workers; each result handed to `keep` as it comes back.
        Raises as the local executor does (JobPaused, JobHalted, JobTimedOut), and JobFailed
        when a worker cannot make them (a secret it does not have) or no worker is left."""
        if not calls:
            return []
        if self._halted:  # as the local executor: no call starts once halted
            await self.tick()
            raise JobHalted()
        self._runs += 1
        batch = _Batch(self, f"cxrun-results-{self.id}-{self._runs}", keep, calls)
        await batch.start()
        return await batch.finish()

    async def close(self) -> None:
        """Forget this executor on the workers and drop its distributed objects."""
        await asyncio.to_thread(self._close)

    def _close(self) -> None:
        from distributed import Event, Variable

        client = self.cluster.client
        try:
            client.run(forget, self.id)
            Event(f"cxrun-stop-{self.id}", client=client).clear()
            Variable(f"cxrun-held-{self.id}", client=client).delete()
        except (OSError, TimeoutError):
            pass  # the cluster went away: its workers forget with it

    async def tick(self) -> None:
        """Between two looks at a batch: carry a halt to the workers, and say when a 429
        another worker got holds the job (and when it is over)."""
        if self._halted and not self._stopped:
            self._stopped = True
            await asyncio.to_thread(self._stop)
        held = await asyncio.to_thread(self._held_until)
        if held is not None and held > time.time() and held != self._held:
            self._held = held
            await self.on_rate_limit(datetime.fromtimestamp(held, UTC))
        elif self._held is not None and time.time() >= self._held:
            self._held = None
            await self.on_resume()

    def _stop(self) -> None:
        from distributed import Event

        Event(f"cxrun-stop-{self.id}", client=self.cluster.client).set()

    def _held_until(self) -> float | None:
        from distributed import Variable

        try:
            found = Variable(f"cxrun-held-{self.id}", client=self.cluster.client).get(timeout=0)
        except TimeoutError:
            return None
        return float(found) if found is not None else None

    def task(self, queue: str, calls: list[Call], shares: int) -> Task:
        left = None if self.deadline is None else max(0.0, self.deadline - time.monotonic())
        return Task(
            executor=self.id,
            job=self.job,
            queue=queue,
            calls=calls,
            targets=self.targets,
            concurrency=max(1, self.concurrency // shares),
            shares=shares,
            record_timeout=self.record_timeout,
            time_left=left,
        )


class _Batch:
    """One `run`: its calls spread over the workers, the results coming back, lost workers'
    calls given to the others, and how the workers' tasks ended."""

    def __init__(self, owner: ClusterExecutor, queue: str, keep: Keep, calls: Sequence[Call]):
        self.owner, self.queue, self.keep = owner, queue, keep
        self.client = owner.cluster.client
        self.left = {(call.row, call.pos): call for call in calls}
        self.results: list[dict[str, Any]] = []
        self.tasks: dict[Any, tuple[str, list[Call]]] = {}  # future -> (worker, its calls)
        self.ended: list[dict[str, Any]] = []
        self._queue: Any = None

    async def start(self) -> None:
        await self._spread(list(self.left.values()))

    async def finish(self) -> list[dict[str, Any]]:
        while self.tasks:
            await asyncio.sleep(LOOK_EVERY)
            await self._take()
            await self.owner.tick()
            lost = await asyncio.to_thread(self._settle)
            if lost:
                await self._take()  # what a lost worker sent before it went
                again = [c for c in lost if (c.row, c.pos) in self.left]
                if again and not self._stopping():
                    await self._spread(again)
        await self._take()
        return self._outcome()

    def _stopping(self) -> bool:
        return self.owner._halted or any("paused" in e or "failed" in e for e in self.ended)

    async def _spread(self, calls: list[Call]) -> None:
        workers = await self._workers()
        parts = [calls[i :: len(workers)] for i in range(len(workers))]
        submitted = await asyncio.to_thread(self._submit, workers, parts)
        self.tasks.update(submitted)

    async def _workers(self) -> list[str]:
        deadline = time.monotonic() + NO_WORKER_WAIT
        while True:
            found = await asyncio.to_thread(self.owner.cluster.workers)
            if found:
                return found
            if time.monotonic() > deadline:
                raise JobFailed(f"the Dask cluster at {self.owner.cluster.address} has no worker")
            await asyncio.sleep(1.0)

    def _submit(self, workers: list[str], parts: list[list[Call]]) -> dict[Any, Any]:
        submitted = {}
        for worker, part in zip(workers, parts, strict=True):
            if part:
                task = self.owner.task(self.queue, part, len(workers))
                future = self.client.submit(
                    work,
                    task,
                    workers=[worker],
                    allow_other_workers=False,
                    retries=0,
                    pure=False,
                    key=f"cxrun-{self.owner.id}-{uuid.uuid4().hex[:8]}",
                )
                submitted[future] = (worker, part)
        return submitted

    async def _take(self) -> None:
        for result in await asyncio.to_thread(self._drain):
            key = (result["row"], result["pos"])
            if self.left.pop(key, None) is not None:  # a lost worker's late answer: kept once
                kept = self.keep(result)
                if kept is not None:
                    await kept
                self.results.append(result)

    def _drain(self) -> list[dict[str, Any]]:
        from distributed import Queue

        if self._queue is None:  # made once: making one asks the scheduler
            self._queue = Queue(self.queue, client=self.client)
        found: list[dict[str, Any]] = []
        for batch in self._queue.get(batch=True):
            found += batch
        return found

    def _settle(self) -> list[Call]:
        """Tasks that ended (how), and the calls of those whose worker was lost."""
        alive = set(self.owner.cluster.workers())
        lost: list[Call] = []
        for future, (worker, calls) in list(self.tasks.items()):
            if future.status == "finished":
                self.ended.append(future.result())
            elif future.status in ("error", "cancelled", "lost") or worker not in alive:
                future.cancel()
                lost += calls
            else:
                continue
            del self.tasks[future]
        return lost

    def _outcome(self) -> list[dict[str, Any]]:
        for ended in self.ended:
            if "failed" in ended:
                raise JobFailed(str(ended["failed"]))
        for ended in self.ended:
            if "paused" in ended:
                raise JobPaused(str(ended["paused"]))
        if self.owner._halted or any("halted" in e for e in self.ended):
            raise JobHalted()
        if any("timed_out" in e for e in self.ended):
            raise JobTimedOut()
        return self.results
