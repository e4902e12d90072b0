"""Running a job: batches of rows; pure steps as set-based SQL, I/O steps as concurrent calls."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator
from contextlib import AsyncExitStack
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, TypeVar

from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.base.sql import duckdb_message
from cxrun.io.calls import Call
from cxrun.io.executor import Executor, JobHalted, JobPaused, JobTimedOut
from cxrun.runtime import signals
from cxrun.runtime.pipeline import (
    BatchSql,
    Stage,
    compile_stage,
    enclosing_calls,
    failed_step_sql,
    journey_parts,
    outputs_sql,
    park_kind_sql,
    stages,
    tags_sql,
)
from cxrun.runtime.spool import Spool
from cxrun.spec.model import AIStep, ApprovalStep, HttpStep, IOStep, SendStep, Spinner, Step
from cxrun.store import State, transaction
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import journey as journey_store
from cxrun.store import records as record_store
from cxrun.store import tables as table_store
from cxrun.store.journey import BatchWrite, Restart
from cxrun.store.scratch import stage_table
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

    from cxrun.io.plugins import Plugins

# Two DuckDB row groups: both cores insert in parallel, and whole row groups are never rewritten.
BATCH_ROWS = 2 * 122_880
IO_BATCH_SECONDS = 8.0
_ROW_BY_ROW = 16
_PASSES = 100  # passes of one run at most: parked records that are due go on in the next one
Results = dict[int, list[dict[str, Any]]]
T = TypeVar("T")


def _row_errors() -> tuple[type[Exception], ...]:
    import duckdb

    return (duckdb.DataError, duckdb.InvalidInputException)


@dataclass
class Batch:
    """One batch of a job being run: its rows, and the I/O results gathered so far."""

    job: Job
    table: TableInfo
    filtered: bool
    first: int
    last: int
    sql: BatchSql
    rows: list[int] | None = None  # restarted rows, instead of the range first..last
    results: Results = field(default_factory=dict)
    encoded: dict[tuple[int, int], str] = field(default_factory=dict)  # results as spooled
    failures: dict[int, tuple[int, str]] = field(default_factory=dict)
    sql_seconds: float = 0.0

    @property
    def source(self) -> str:
        if self.rows is not None:
            return job_store.rows_source(self.table, self.rows)
        return job_store.batch_source(
            self.job.job, self.table, self.filtered, self.first, self.last
        )

    @property
    def spool_name(self) -> str:
        return f"r{self.rows[0]}" if self.rows else f"b{self.first}"

    @property
    def size(self) -> int:
        return len(self.rows) if self.rows is not None else self.last - self.first + 1


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
    lease: float = 30.0
    stop: Callable[[], bool] = lambda: False
    _requested: str | None = None
    _rate: float | None = None
    _rows_done: int = 0
    _db_lock: asyncio.Lock | None = None
    _woken: bool = False
    _again: bool = False

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
                batches = self._batches(job, table, filtered)
                if executor is None:
                    job = await self._pure(job, batches)
                else:
                    job = await self._pipelined(job, batches, executor, spool, done)
        except Stopped as stopped:
            return stopped.job  # as this runner left it (queued), whoever takes it next
        except LostJob:
            with self.state.read() as con:
                return job_store.get(con, job_id)
        except JobHalted:
            return await self._db(self._obey_now, job_id, self._requested or "stop")
        except JobPaused as paused:
            return await self._db(self._release, job_id, JobStatus.PAUSED, paused.reason)
        except JobTimedOut:
            limit = self.spinner.limits.job_timeout
            reason = f"job_timeout of {limit:g}s reached"
            return await self._db(self._release, job_id, JobStatus.TIMED_OUT, reason)
        except _duckdb_error() as exc:  # run-level: not one row's fault
            return await self._db(self._release, job_id, JobStatus.FAILED, duckdb_message(exc))
        finally:
            spool.close()
        if job.status == JobStatus.RUNNING:
            job = await self._db(self._settle, job_id, self._finish)
        if job.status.finished:
            spool.close(remove=True)
        return job

    def _settle(self, job_id: int, change: Callable[[duckdb.DuckDBPyConnection, Job], Job]) -> Job:
        """Change the job in one write transaction, if this runner still owns it."""
        with self.state.write() as con:
            job = job_store.get(con, job_id)
            if self.owner is not None and not claim_store.holds(con, job_id, self.owner):
                return job  # another owner took it: nothing here is ours to change
            return change(con, job)

    def _release(self, job_id: int, status: JobStatus, reason: str | None) -> Job:
        """The job leaves this owner: paused (for `cxrun resume`), or ended."""
        if status == JobStatus.PAUSED:
            why = reason or "paused"
            return self._settle(job_id, lambda con, _: job_store.pause_now(con, job_id, why))
        now = self.clock()
        return self._settle(
            job_id, lambda con, job: job_store.finish(con, job_id, status, reason, now)
        )

    def _restarts(self, job: int, due_too: bool) -> None:
        """The records to run again from a step: those a retry marked (from their failed step,
        one more attempt), and (`due_too`) parked ones whose answer came or whose time has
        come. None of them, with rows not reached yet: the pass takes those."""
        with self.state.read() as con:
            marked = record_store.retry_records(con, job)
            if not marked and not due_too:
                return
            due = record_store.due_records(con, job, self.clock()) if due_too else []
            rows = [row for row, _, _ in marked] + [int(r[0]) for r in due]
            earlier = journey_store.last_outputs(con, job, rows)
        ids = {step.id: pos for pos, step in enumerate(self.spinner.steps)}
        restarts: dict[int, Restart] = {}
        for row, step_id, attempts in marked:
            pos = ids.get(step_id or "", -1)
            restarts[row] = Restart(pos, attempts, calls=tuple(enclosing_calls(self.spinner, pos)))
        for row, pos, _kind, decision, attempts in due:
            step = self.spinner.steps[pos]
            if decision is None:  # the time has come: a wait is over, an approval timed out
                decision = f"{step.on_timeout}-timeout" if isinstance(step, ApprovalStep) else "due"
            calls = tuple(enclosing_calls(self.spinner, pos))
            restarts[int(row)] = Restart(pos, int(attempts), 0, decision, calls)
        self.retry = restarts
        self.reuse = reusable(self.spinner, restarts, earlier)
        self._woken = bool(restarts)  # a job's time limit counts afresh when records go on

    async def _pure(self, job: Job, batches: Iterator[Batch]) -> Job:
        """Pure steps only: one batch after another, each one session of set-based SQL."""
        for batch in batches:
            self._check_stop(job)
            started = self.clock()
            with self.state.session() as con:
                action = claim_store.control_of(con, job.job)
                if action is not None:  # an operator asked: cancel or pause, between batches
                    if self.owner is not None and not claim_store.holds(con, job.job, self.owner):
                        raise LostJob
                    return self._obey(con, job.job, action)
                job = self._write(con, batch, self._compute(con, batch, 0), started)
            self._progress(job)
            if job.status.finished:
                break
        return job

    async def _pipelined(
        self,
        job: Job,
        batches: Iterator[Batch],
        executor: Executor,
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
                self._check_stop(job)
                previous = running[-1] if running else None
                running.append(
                    asyncio.create_task(self._io_batch(batch, executor, spool, done, previous))
                )
                sizes.append(batch)
                if len(running) == 2:
                    job = await running.pop(0)
                    self._measure(sizes.pop(0), started)
                    self._progress(job)
            while running:
                job = await running.pop(0)
                self._progress(job)
        finally:
            for task in [*running, heartbeat, watcher]:
                task.cancel()
            await asyncio.gather(*running, heartbeat, watcher, return_exceptions=True)
        return job

    async def _watch(self, job: int, executor: Executor) -> None:
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

    def _obey_now(self, job: int, action: str) -> Job:
        return self._settle(job, lambda con, _: self._obey(con, job, action))

    def _obey(self, con: duckdb.DuckDBPyConnection, job: int, action: str) -> Job:
        """Carry out a request: the finished batches stay; calls finished since are spooled
        (kept for a resume, dropped by a cancel)."""
        signals.clear(self.state.dir, job)
        if action == "cancel":
            Spool(self.state.dir, job).close(remove=True)
            return job_store.cancel_now(con, job, self.clock())
        if action == "pause":
            return job_store.pause_now(con, job, "paused by an operator")
        return self._requeue(con, job)

    def _requeue(self, con: duckdb.DuckDBPyConnection, job: int) -> Job:
        assert self.owner is not None
        claim_store.requeue(con, job, self.owner)
        return job_store.get(con, job)

    def _check_stop(self, job: Job) -> None:
        """Between batches: a runtime that stops gives the job back to the queue."""
        if self.owner is not None and self.stop():
            raise Stopped(self._settle(job.job, lambda con, _: self._requeue(con, job.job)))

    async def _heartbeat(self, job: int) -> None:
        """Keep the lease while calls are in flight (batches can take a while)."""
        while self.owner is not None:
            await asyncio.sleep(self.lease / 3)
            if not await self._db(self._renew, job):
                return

    def _renew(self, job: int) -> bool:
        assert self.owner is not None
        with self.state.write() as con:
            return claim_store.renew(con, job, self.owner, self._lease_end())

    def _lease_end(self) -> datetime:
        return self.clock() + timedelta(seconds=self.lease)

    async def _io_batch(
        self,
        batch: Batch,
        executor: Executor,
        spool: Spool,
        done: dict[tuple[int, int], dict[str, Any]],
        previous: asyncio.Task[Job] | None,
    ) -> Job:
        started = self.clock()
        name = batch.spool_name

        def keep(entry: dict[str, Any]) -> None:
            key = (entry["row"], entry["pos"])
            batch.encoded[key] = spool.append(name, entry)
            done[key] = entry

        for stage in stages(self.spinner):
            if stage.io is None:
                if previous is not None:
                    await previous  # batches are written in order
                job = await self._db(self._write_batch, batch, stage.index, started)
                spool.drop(name)
                return job
            calls = await self._db(self._stage_calls, batch, stage.index, stage.io)
            # Calls finished before a pause or a crash are in the spool: never made twice.
            reused = [done[(c.row, c.pos)] for c in calls if (c.row, c.pos) in done]
            fresh = [c for c in calls if (c.row, c.pos) not in done]
            made = await executor.run(fresh, keep) if fresh else []
            batch.results[stage.io] = reused + made
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

    def _stage_calls(self, batch: Batch, through: int, pos: int) -> list[Call]:
        with self.state.session() as con:
            return self._calls(con, self._compute(con, batch, through), pos)

    def _write_batch(self, batch: Batch, through: int, started: datetime) -> Job:
        with self.state.session() as con:
            return self._write(con, batch, self._compute(con, batch, through), started)

    def _progress(self, job: Job) -> None:
        if self.on_progress:
            self.on_progress(job)

    def _batches(self, job: Job, table: TableInfo, filtered: bool) -> Iterator[Batch]:
        """The job's remaining rows in batches (or a retry's rows)."""
        if self.retry is not None:
            rows = sorted(self.retry)
            start = 0
            while start < len(rows):
                size = self._size(len(rows) - start)
                part = rows[start : start + size]
                yield Batch(job, table, filtered, 0, 0, self._batch_sql(True), rows=part)
                start += size
            return
        first = job.processed
        while first < job.total:
            last = min(first + self._size(job.total - first), job.total) - 1
            yield Batch(job, table, filtered, first, last, self._batch_sql(False))
            first = last + 1

    def _batch_sql(self, restarts: bool) -> BatchSql:
        """The batch's time (waits count from it) and whether the eligible window is open."""
        from cxrun.spec import windows

        now = self.clock()
        eligible = self.spinner.eligible
        opens = None
        if eligible is not None and not windows.inside(eligible, now):
            opens = windows.next_open(eligible, now)
        return BatchSql(now, restarts=restarts, window_opens=opens)

    def _size(self, left: int) -> int:
        """Rows in the next batch, of the `left` still to do. Pure steps: two DuckDB row groups.
        I/O steps: about IO_BATCH_SECONDS of calls at the rate seen so far (fewer, larger
        batches cost less state work), within 8 to 128 calls per concurrency slot, 32 per slot
        before any rate is known. The last rows come as a small batch of their own (8 calls per
        slot): the larger one before is written while its calls are made, so the job ends soon
        after its last call."""
        if self.batch_rows or not self.spinner.has_io:
            return self.batch_rows or BATCH_ROWS
        slots = self.spinner.limits.concurrency
        if self._rate is None:
            size = max(256, 32 * slots)
        else:
            size = int(min(128 * slots, max(8 * slots, 256, self._rate * IO_BATCH_SECONDS)))
        last = max(8 * slots, 256)
        if size >= left > last:
            size = max(left - last, -(-left // 2))
        return size

    def _measure(self, batch: Batch, started: float) -> None:
        """Track the rows per second I/O batches go at (for the size of the next ones)."""
        self._rows_done += batch.size
        elapsed = time.monotonic() - started
        if elapsed > 0:
            self._rate = self._rows_done / elapsed

    async def _executor(self, stack: AsyncExitStack, job: Job) -> Executor | None:
        if not self.spinner.has_io:
            return None
        assert self.plugins is not None, "a spinner with I/O steps needs its plugins"
        limits = self.spinner.limits
        http = await stack.enter_async_context(self.plugins.client(limits.concurrency))
        # A job's time limit counts its running time: parked records going on start afresh.
        began = self.clock() if self._woken else (job.started_at or self.clock())
        elapsed = (self.clock() - began).total_seconds()
        executor = Executor(
            job=job.job,
            targets=self.plugins.targets,
            http=http,
            concurrency=limits.concurrency,
            redact=self.plugins.redact,
            on_rate_limit=lambda until: self._db(self._rate_limited, job.job, until),
            on_resume=lambda: self._db(self._set, job.job, JobStatus.RUNNING, None),
            record_timeout=limits.record_timeout,
            time_left=None if limits.job_timeout is None else limits.job_timeout - elapsed,
            **self.executor_options,
        )
        stack.push_async_callback(executor.close)
        return executor

    def _rate_limited(self, job: int, until: datetime) -> None:
        self._set(
            job, JobStatus.PAUSED, f"rate limited until {until.isoformat(timespec='seconds')}"
        )

    def _set(self, job: int, status: JobStatus, reason: str | None) -> Job:
        """A status the owner keeps the job under (rate limited, running again)."""
        return self._settle(job, lambda con, _: job_store.set_status(con, job, status, reason))

    def _compute(self, con: duckdb.DuckDBPyConnection, batch: Batch, through: int) -> str:
        """Compute stages 0..through into temp tables (the earlier ones again: they are pure)."""
        tick = time.perf_counter()
        all_stages = stages(self.spinner)
        if batch.failures:
            journey_store.set_failures(con, batch.failures)
        if batch.rows is not None:
            assert self.retry is not None
            journey_store.set_restarts(con, {row: self.retry[row] for row in batch.rows})
        for stage in all_stages[: through + 1]:
            if stage.index:
                pos = all_stages[stage.index - 1].io
                assert pos is not None
                journey_store.load_results(con, pos, batch.results.get(pos, []), batch.encoded)
            source = batch.source if stage.index == 0 else stage_table(stage.index - 1)
            self._materialize(con, batch, stage, source)
        batch.sql_seconds += time.perf_counter() - tick
        return stage_table(through)

    def _materialize(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, stage: Stage, source: str
    ) -> None:
        # Autocommit, into a temp table: a statement that raises for some row fails alone, and
        # the rows to blame are then found by further statements.
        target = stage_table(stage.index)
        try:
            sql = compile_stage(self.spinner, stage, source, batch.sql, bool(batch.failures))
            journey_store.materialize(con, target, sql)
        except _row_errors():
            batch.failures.update(self._failures(con, batch, stage, source))
            journey_store.set_failures(con, batch.failures)
            sql = compile_stage(self.spinner, stage, source, batch.sql, True)
            journey_store.materialize(con, target, sql)

    def _calls(self, con: duckdb.DuckDBPyConnection, result: str, pos: int) -> list[Call]:
        step = self.spinner.steps[pos]
        assert isinstance(step, IOStep)
        count = len(step.templates())
        return [
            Call(row=int(r[0]), key=str(r[1]), pos=pos, step=step, inputs=tuple(r[2:]))
            for r in journey_store.call_inputs(con, result, pos, count)
        ]

    def _write(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, result: str, started: datetime
    ) -> Job:
        per_row_ms = batch.sql_seconds * 1000 / max(batch.size, 1)
        with transaction(con):
            if self.owner is not None and not claim_store.renew(
                con, batch.job.job, self.owner, self._lease_end()
            ):
                raise LostJob  # another runtime took the job: this batch is not ours to write
            job = journey_store.write_batch(
                con,
                batch.job.job,
                self._plan(result),
                result,
                None if batch.rows is not None else batch.last + 1,
                (started, self.clock()),
                per_row_ms,
            )
            if batch.rows is None and job.processed >= job.total:
                job = self._finish(con, job)
        return job

    def _plan(self, result: str) -> BatchWrite:
        outbox = self.plugins.outbox if self.plugins else set()
        return BatchWrite(
            tags=tags_sql(self.spinner),
            outputs=outputs_sql(self.spinner),
            failed_step=failed_step_sql(self.spinner),
            journey=journey_parts(self.spinner, result),
            io_positions=[p for p, s in enumerate(self.spinner.steps) if s.is_io],
            park_kind=park_kind_sql(self.spinner),
            outbox=[
                (p, s.id, s.channel)
                for p, s in enumerate(self.spinner.steps)
                if isinstance(s, SendStep) and s.channel in outbox
            ],
            retry=self.retry is not None,
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
                return self._obey(con, job.job, action)
            return job_store.park(con, job.job, job_store.waiting_reason(con, job.job))
        status, reason = final_status(job)
        return job_store.finish(con, job.job, status, reason, self.clock())

    def _failures(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, stage: Stage, source: str
    ) -> dict[int, tuple[int, str]]:
        """Rows whose steps raise in SQL, found by halving: {row: (step position, error)}."""
        found: dict[int, tuple[int, str]] = {}
        bounds = journey_store.row_range(con, source)
        ranges = [bounds] if bounds else []
        while ranges:
            a, b = ranges.pop()
            part = f"(SELECT * FROM {source} WHERE _cx_row BETWEEN {a} AND {b})"
            if b - a < _ROW_BY_ROW:
                for row in journey_store.rows_of(con, part):
                    self._row_failure(con, batch, stage, source, row, found)
                continue
            try:
                sql = compile_stage(self.spinner, stage, part, batch.sql, bool(batch.failures))
                journey_store.materialize(con, "_cx_probe", sql)
            except _row_errors():
                middle = (a + b) // 2
                ranges += [(middle + 1, b), (a, middle)]
        return found

    def _row_failure(
        self,
        con: duckdb.DuckDBPyConnection,
        batch: Batch,
        stage: Stage,
        source: str,
        row: int,
        found: dict[int, tuple[int, str]],
    ) -> None:
        one = f"(SELECT * FROM {source} WHERE _cx_row = {row})"
        positions = list(stage.positions) + ([stage.io] if stage.io is not None else [])
        for pos in positions:
            sql = compile_stage(
                self.spinner, stage, one, batch.sql, bool(batch.failures), upto=pos + 1
            )
            try:
                journey_store.materialize(con, "_cx_probe", sql)
            except _row_errors() as exc:
                found[row] = (pos, duckdb_message(exc))
                return


class Stopped(Exception):
    """The runtime is stopping: the job went back to the queue between two batches."""

    def __init__(self, job: Job) -> None:
        super().__init__(f"job {job.job} handed back")
        self.job = job


class LostJob(Exception):
    """The job's lease ran out and another runtime took it."""


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


def reusable(
    spinner: Spinner, starts: dict[int, Restart], earlier: list[tuple[int, int, Any]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """The I/O results of the steps before each restarted row's step, from the journey."""
    return {
        (row, pos): reused(spinner.steps[pos], row, pos, output)
        for row, pos, output in earlier
        if row in starts and spinner.steps[pos].is_io and pos < starts[row].pos
    }


def reused(step: Step, row: int, pos: int, output: Any) -> dict[str, Any]:
    """An earlier I/O step's result, from its journey entry, as if the call had just been made."""
    import json

    text = output if isinstance(output, str) and not isinstance(step, HttpStep) else None
    if isinstance(step, AIStep) and step.schema is not None:
        text = None
    return {
        "row": row,
        "pos": pos,
        "ok": True,
        "message": None,
        "error": None,
        "attempts": [],
        "value": text if text is not None else json.dumps(output),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
    }
