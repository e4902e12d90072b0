"""Running a job: batches of rows; pure steps as set-based SQL, I/O steps as concurrent calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, TypeVar

from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.base.sql import duckdb_message
from cxrun.io.stops import JobFailed, JobHalted, JobPaused, JobTimedOut
from cxrun.runtime import signals
from cxrun.runtime.batches import Batch, Batching, BatchWork
from cxrun.runtime.hold import Hold, LostJob, Stopped
from cxrun.runtime.pipeline import stages
from cxrun.runtime.restarts import find_restarts
from cxrun.runtime.spool import Spool
from cxrun.spec.model import Spinner
from cxrun.store import State
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import records as record_store
from cxrun.store import tables as table_store
from cxrun.store.journey import Restart
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

    from cxrun.io.calls import Call
    from cxrun.io.cluster import Cluster
    from cxrun.io.executor import CallMaker
    from cxrun.io.plugins import Plugins

# A pure job's batches leave about 5 MB each in DuckDB's cache while the database stays open
# between them: it is closed after this many all the same (see store/warm.py).
PURE_SESSIONS = 8
_PASSES = 100  # passes of one run at most: parked records that are due go on in the next one
T = TypeVar("T")


@dataclass
class Runner:
    """Runs one job to its end (or a pause). Time and the I/O plugins are parameters."""

    state: State
    spinner: Spinner
    plugins: Plugins | None = None
    clock: Callable[[], datetime] = utcnow
    batch_rows: int | None = None
    on_progress: Callable[[Job], None] | None = None
    executor_options: dict[str, Any] = field(default_factory=dict)
    # Rows run again from a step (a retry, or parked records going on), and the I/O results
    # of the steps before, which are reused rather than called again.
    retry: dict[int, Restart] | None = None
    reuse: dict[tuple[int, int], dict[str, Any]] = field(default_factory=dict)
    # Who runs the job: its lease is renewed with every batch written (and by a heartbeat while
    # calls are in flight); `stop` is asked between batches (a runtime shutting down).
    owner: Owner | None = None
    cluster: Cluster | None = None  # its calls made by a Dask cluster's workers
    lease: float = 30.0
    stop: Callable[[], bool] = lambda: False
    _requested: str | None = None
    _db_lock: asyncio.Lock | None = None
    _woken: bool = False
    _again: bool = False
    _hold: Hold = field(init=False)
    _batching: Batching = field(init=False)

    def __post_init__(self) -> None:
        self._hold = Hold(self.state, self.clock, self.owner, self.lease, self.stop)
        self._batching = Batching(self.spinner, self.clock, self.batch_rows)

    def run(self, job_id: int, known: tuple[Job, TableInfo, bool] | None = None) -> Job:
        """Run the job; `known`: the job just created, its table and whether it is filtered
        (read from the state otherwise)."""
        return asyncio.run(self._run(job_id, known))

    async def _run(self, job_id: int, known: tuple[Job, TableInfo, bool] | None = None) -> Job:
        if known is None:
            known = await self._db(self._load, job_id)
        job, table, filtered = known
        for _ in range(_PASSES):
            if self.retry is None:  # a retry, or (once every row was reached) parked records
                await self._db(self._restarts, job_id, job.processed >= job.total)
            job = await self._pass(job, table, filtered)
            if not self._again:
                break
            self._again, self.retry, self.reuse = False, None, {}
        return job

    def _load(self, job_id: int) -> tuple[Job, TableInfo, bool]:
        """The job, its table and whether it is filtered; a request left for an earlier owner
        (cancel, pause) is handed on to this one."""
        signals.clear(self.state.dir, job_id)
        with self.state.read() as con:
            job = job_store.get(con, job_id)
            name, number, filtered = job_store.table_of(con, job_id)
            found = claim_store.control_of(con, job_id)
            table = table_store.version(con, name, number)
        assert table is not None, f"job {job_id} lost its table version"
        if found is not None:
            signals.ask(self.state.dir, job_id, found)
        return job, table, filtered

    async def _pass(self, job: Job, table: TableInfo, filtered: bool) -> Job:
        """One pass over the job's remaining rows (or its restarted records)."""
        job_id = job.job
        spool = Spool(self.state.dir, job_id)
        done = {**self.reuse, **spool.load()}
        try:
            async with AsyncExitStack() as stack:
                executor = await self._executor(stack, job)
                batches = self._batching.batches(job, table, filtered, self.retry)
                if executor is None:
                    job = await self._pure(job, batches)
                else:  # many small sessions a second: the database kept open between them
                    stack.enter_context(self.state.warm())
                    job = await self._pipelined(job, batches, executor, spool, done)
        except Stopped as stopped:
            return stopped.job  # as this runner left it (queued), whoever takes it next
        except LostJob:
            with self.state.read() as con:
                return job_store.get(con, job_id)
        except JobHalted:
            return await self._db(self._hold.obey_now, job_id, self._requested or "stop")
        except JobPaused as paused:
            return await self._db(self._hold.release, job_id, JobStatus.PAUSED, paused.reason)
        except JobFailed as failed:
            return await self._db(self._hold.release, job_id, JobStatus.FAILED, failed.reason)
        except JobTimedOut:
            limit = self.spinner.limits.job_timeout
            reason = f"job_timeout of {limit:g}s reached"
            return await self._db(self._hold.release, job_id, JobStatus.TIMED_OUT, reason)
        except _duckdb_error() as exc:  # run-level: not one row's fault
            return await self._db(self._hold.release, job_id, JobStatus.FAILED, duckdb_message(exc))
        finally:
            spool.close()
        if job.status == JobStatus.RUNNING:
            job = await self._db(self._hold.settle, job_id, self._finish)
        if job.status.finished:
            spool.close(remove=True)
        return job

    def _restarts(self, job: int, due_too: bool) -> None:
        """Take up the records to run again from a step, if any (see `find_restarts`)."""
        found = find_restarts(self.state, self.spinner, self.clock, job, due_too)
        if found is not None:
            self.retry, self.reuse = found
            self._woken = bool(self.retry)  # a job's time limit counts afresh when records go on

    async def _pure(self, job: Job, batches: Iterator[Batch]) -> Job:
        """Pure steps only: one batch after another, each one session of set-based SQL (the
        database kept open from one batch to the next while no other process waits for it)."""
        with self.state.warm(PURE_SESSIONS):
            return self._pure_batches(job, batches)

    def _pure_batches(self, job: Job, batches: Iterator[Batch]) -> Job:
        work = self._work()
        for batch in batches:
            self._hold.check_stop(job)
            started = self.clock()
            with self.state.session() as con:
                action = claim_store.control_of(con, job.job)
                if action is not None:  # an operator asked: cancel or pause, between batches
                    if self.owner is not None and not claim_store.holds(con, job.job, self.owner):
                        raise LostJob
                    return self._hold.obey(con, job.job, action)
                job = work.write(con, batch, work.compute(con, batch, 0), started)
            self._progress(job)
            if job.status.finished:
                break
        return job

    async def _pipelined(
        self,
        job: Job,
        batches: Iterator[Batch],
        executor: CallMaker,
        spool: Spool,
        done: dict[tuple[int, int], dict[str, Any]],
    ) -> Job:
        """I/O steps: the next batch starts its calls while this one finishes, so the
        concurrency slots stay busy across batches; batches are written in order."""
        running: list[asyncio.Task[Job]] = []
        started = time.monotonic()
        sizes: list[Batch] = []
        heartbeat = asyncio.create_task(self._heartbeat(job.job))
        watcher = asyncio.create_task(self._watch(job.job, executor))
        try:
            for batch in batches:
                self._hold.check_stop(job)
                previous = running[-1] if running else None
                running.append(
                    asyncio.create_task(self._io_batch(batch, executor, spool, done, previous))
                )
                sizes.append(batch)
                if len(running) == 2:
                    job = await running.pop(0)
                    self._batching.measure(sizes.pop(0), started)
                    self._progress(job)
            while running:
                job = await running.pop(0)
                self._progress(job)
        except Exception:
            # One batch stopped (a pause, a halt, a lost lease): the other one's calls in
            # flight were paid for, so they finish and are spooled before the job is left.
            executor.halt()
            await asyncio.gather(*running, return_exceptions=True)
            raise
        finally:
            for task in [*running, heartbeat, watcher]:
                task.cancel()
            await asyncio.gather(*running, heartbeat, watcher, return_exceptions=True)
        return job

    async def _watch(self, job: int, executor: CallMaker) -> None:
        """While calls are in flight: notice a cancel or pause request, or a stopping runtime,
        within half a second, and start no new call."""
        while True:
            await asyncio.sleep(0.5)
            action = signals.asked(self.state.dir, job)  # a file: no state opened every turn
            if action is None and self.owner is not None and self.stop():
                action = "stop"
            if action is not None:
                self._requested = action
                executor.halt()
                return

    async def _heartbeat(self, job: int) -> None:
        """Keep the lease while calls are in flight (batches can take a while)."""
        while self.owner is not None:
            await asyncio.sleep(self.lease / 3)
            if not await self._db(self._hold.renew, job):
                return

    async def _io_batch(
        self,
        batch: Batch,
        executor: CallMaker,
        spool: Spool,
        done: dict[tuple[int, int], dict[str, Any]],
        previous: asyncio.Task[Job] | None,
    ) -> Job:
        started = self.clock()
        name = batch.spool_name
        work = self._work()

        def keep(entry: dict[str, Any]) -> None:
            batch.spooled.setdefault(entry["pos"], []).append(spool.append(name, entry))

        for stage in stages(self.spinner):
            if stage.io is None:
                if previous is not None:
                    await previous  # batches are written in order
                job = await self._db(work.write_batch, batch, stage.index, started)
                gone = spool.drop(name, batch.rows[-1] if batch.rows else batch.last)
                await asyncio.to_thread(Spool.remove, gone)
                if not job.status.finished:
                    await self._db(work.checkpoint)
                for results in batch.results.values():  # written: no longer kept in memory
                    for entry in results:
                        done.pop((entry["row"], entry["pos"]), None)
                return job
            calls: Sequence[Call] = await self._db(work.stage_calls, batch, stage.index, stage.io)
            reused: list[dict[str, Any]] = []
            if done:  # calls finished before a pause or a crash are in the spool: not made twice
                fresh: list[Call] = []
                for call in calls:
                    found = done.get((call.row, call.pos))
                    if found is None:
                        fresh.append(call)
                    else:
                        reused.append(found)
                calls = fresh
            batch.results[stage.io] = reused
            if calls:
                await executor.run(calls, keep)  # each result is in batch.spooled
        raise AssertionError("the last stage has no I/O step")

    async def _db(self, work: Callable[..., T], *args: Any) -> T:
        """State work off the event loop (DuckDB lets go of the GIL), one piece at a time."""
        if self._db_lock is None:
            self._db_lock = asyncio.Lock()
        async with self._db_lock:
            done = asyncio.ensure_future(asyncio.to_thread(work, *args))
            try:
                return await asyncio.shield(done)
            except asyncio.CancelledError:
                # The thread goes on holding the state: let it finish before anyone else
                # takes the state (then give up).
                await asyncio.wait([done])
                raise

    def _progress(self, job: Job) -> None:
        if self.on_progress:
            self.on_progress(job)

    async def _executor(self, stack: AsyncExitStack, job: Job) -> CallMaker | None:
        if not self.spinner.has_io:
            return None
        from cxrun.io.executor import Executor  # not for pure steps: it brings in httpx

        assert self.plugins is not None, "a spinner with I/O steps needs its plugins"
        limits = self.spinner.limits
        # A job's time limit counts its running time: parked records going on start afresh.
        began = self.clock() if self._woken else (job.started_at or self.clock())
        elapsed = (self.clock() - began).total_seconds()
        # While a 429's Retry-After runs the job says so (paused, until when), then runs again.
        paused: dict[str, Any] = {
            "on_rate_limit": lambda until: self._db(self._hold.rate_limited, job.job, until),
            "on_resume": lambda: self._db(self._hold.set_status, job.job, JobStatus.RUNNING, None),
            "record_timeout": limits.record_timeout,
            "time_left": None if limits.job_timeout is None else limits.job_timeout - elapsed,
        }
        if self.cluster is not None:
            made = self.cluster.executor(
                job.job, self.plugins.options, limits.concurrency, **paused
            )
            stack.push_async_callback(made.close)
            return made
        http = await stack.enter_async_context(self.plugins.client(limits.concurrency))
        executor = Executor(
            job=job.job,
            targets=self.plugins.targets,
            http=http,
            concurrency=limits.concurrency,
            redact=self.plugins.redact,
            **paused,
            **self.executor_options,
        )
        stack.push_async_callback(executor.close)
        return executor

    def _work(self) -> BatchWork:
        """This pass's batches in the state (a retry's rows go on from their steps)."""
        return BatchWork(
            self.state, self.spinner, self.plugins, self.retry, self._hold, self._finish
        )

    def _finish(self, con: duckdb.DuckDBPyConnection, job: Job) -> Job:
        if job.processed < job.total:  # a retry of a job that stopped early: its rows go on
            self._again = True
            return job
        if job.waiting:  # the pass is over, some records are parked
            if self.owner is not None and record_store.due_records(con, job.job, self.clock()):
                self._again = True  # answered (or due) meanwhile: they go on in another pass
                return job
            action = claim_store.control_of(con, job.job)
            if action in ("pause", "cancel"):  # asked while the pass ended: done now, not parked
                return self._hold.obey(con, job.job, action)
            return job_store.park(con, job.job, job_store.waiting_reason(con, job.job))
        status, reason = final_status(job)
        return job_store.finish(con, job.job, status, reason, self.clock())


def _duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def final_status(job: Job) -> tuple[JobStatus, str | None]:
    if job.cancelled:  # a cancelled job's failed records retried: it stays cancelled
        return JobStatus.CANCELLED, f"cancelled by an operator; {job.failed} records failed"
    if job.failed and not job.completed:
        return JobStatus.FAILED, f"all {job.failed} records failed"
    if job.failed:
        return JobStatus.PARTIAL, f"{job.failed} of {job.total} records failed"
    return JobStatus.COMPLETED, None
