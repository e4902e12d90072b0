"""A job's batches: cutting its rows into batches, and each batch's stages, calls and write."""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.models import Job
from cxrun.base.sql import duckdb_message
from cxrun.runtime.hold import Hold, LostJob
from cxrun.runtime.outcomes import (
    failed_step_sql,
    journey_parts,
    outputs_sql,
    park_kind_sql,
    tags_sql,
)
from cxrun.runtime.pipeline import BatchSql, Stage, compile_stage, stages
from cxrun.spec.model import IOStep, SendStep, Spinner
from cxrun.store import State, transaction
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import journey as journey_store
from cxrun.store.journey import BatchWrite, Restart
from cxrun.store.scratch import stage_table
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

    from cxrun.io.calls import Calls
    from cxrun.io.plugins import Plugins

# Four DuckDB row groups of pure steps: both cores insert in parallel, and whole row groups are
# written once. Fewer rows a statement cost more a row: on a state that holds earlier jobs, a job
# of 1M rows took 2.7 s in batches of one then two row groups, 2.4 s in batches of two and 2.15 s
# in batches of four (eight: 2.35 s, and 30 MB more).
ROW_GROUP = 122_880
BATCH_ROWS = 4 * ROW_GROUP
# A job's first batch of I/O calls is small, so that its progress shows early: two calls per
# concurrency slot.
FIRST_IO_CALLS = 2
IO_BATCH_SECONDS = 8.0
_ROW_BY_ROW = 16
Results = dict[int, list[dict[str, Any]]]


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
    results: Results = field(default_factory=dict)  # by step position: results made before
    spooled: dict[int, list[bytes]] = field(default_factory=dict)  # and those made now, as spooled
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
class Batching:
    """Cuts a job's rows into batches; the rate I/O batches go at is kept from one to the next."""

    spinner: Spinner
    clock: Callable[[], datetime] = utcnow
    batch_rows: int | None = None
    _rate: float | None = None
    _rows_done: int = 0
    _cut: int = 0  # batches cut so far

    def batches(
        self, job: Job, table: TableInfo, filtered: bool, retry: dict[int, Restart] | None
    ) -> Iterator[Batch]:
        """The job's remaining rows in batches (or a retry's rows)."""
        if retry is not None:
            rows = sorted(retry)
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
        """Rows in the next batch, of the `left` still to do. Pure steps: BATCH_ROWS (each batch
        costs its statements: a last one of a fifth of that or less is not cut). I/O steps:
        about IO_BATCH_SECONDS of calls at the rate seen so far (fewer, larger batches cost less
        state work), within 8 to 128 calls per concurrency slot, 32 per slot before any rate is
        known. The first batch of I/O calls is small (FIRST_IO_CALLS per slot), so progress shows
        soon after a job starts. The last rows come as a small batch of their own (8 calls per
        slot): the larger one before is written while its calls are made, so the job ends soon
        after its last call."""
        self._cut += 1
        if self.batch_rows:
            return self.batch_rows
        if not self.spinner.has_io:  # a last fifth of a batch or less goes with the one before
            return left if left <= BATCH_ROWS + BATCH_ROWS // 5 else BATCH_ROWS
        slots = self.spinner.limits.concurrency
        if self._cut == 1:
            return FIRST_IO_CALLS * slots
        if self._rate is None:
            size = max(256, 32 * slots)
        else:
            size = int(min(128 * slots, max(8 * slots, 256, self._rate * IO_BATCH_SECONDS)))
        last = max(8 * slots, 256)
        if size >= left > last:
            size = max(left - last, -(-left // 2))
        return size

    def measure(self, batch: Batch, started: float) -> None:
        """Track the rows per second I/O batches go at (for the size of the next ones)."""
        self._rows_done += batch.size
        elapsed = time.monotonic() - started
        if elapsed > 0:
            self._rate = self._rows_done / elapsed


@dataclass(frozen=True)
class BatchWork:
    """A pass's batches in the state: each one's stages computed in a session (the rows that
    raise found by halving), the inputs of its calls, and the batch written while the runner
    holds the job; `finish` settles the job once its last batch is written."""

    state: State
    spinner: Spinner
    plugins: Plugins | None
    retry: dict[int, Restart] | None
    hold: Hold
    finish: Callable[[duckdb.DuckDBPyConnection, Job], Job]

    def stage_calls(self, batch: Batch, through: int, pos: int) -> Calls:
        with self.state.session() as con:
            return self._calls(con, self.compute(con, batch, through), pos)

    def write_batch(self, batch: Batch, through: int, started: datetime) -> Job:
        with self.state.session() as con:
            return self.write(con, batch, self.compute(con, batch, through), started)

    def checkpoint(self) -> None:
        """Move what the batches wrote from the write-ahead log into the state file, while the
        next batch's calls are in flight, so that the last batch's write and the close after
        it find little to move (at the end of a job, with no call left to make). Skipped when
        DuckDB cannot do it now."""
        import duckdb

        with self.state.session() as con, contextlib.suppress(duckdb.Error):
            con.execute("CHECKPOINT")

    def compute(self, con: duckdb.DuckDBPyConnection, batch: Batch, through: int) -> str:
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
                journey_store.load_results(
                    con, pos, batch.results.get(pos, []), batch.spooled.get(pos, [])
                )
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

    def _calls(self, con: duckdb.DuckDBPyConnection, result: str, pos: int) -> Calls:
        from cxrun.io.calls import Calls  # only jobs with I/O steps need it (and httpx)

        step = self.spinner.steps[pos]
        assert isinstance(step, IOStep)
        count = len(step.templates())
        return Calls(step, pos, journey_store.call_inputs(con, result, pos, count))

    def write(
        self, con: duckdb.DuckDBPyConnection, batch: Batch, result: str, started: datetime
    ) -> Job:
        per_row_ms = batch.sql_seconds * 1000 / max(batch.size, 1)
        with transaction(con):
            if self.hold.owner is not None and not claim_store.renew(
                con, batch.job.job, self.hold.owner, self.hold.lease_end()
            ):
                raise LostJob  # another runtime took the job: this batch is not ours to write
            job = journey_store.write_batch(
                con,
                batch.job.job,
                self._plan(result),
                result,
                None if batch.rows is not None else batch.last + 1,
                (started, self.hold.clock()),
                per_row_ms,
            )
            if batch.rows is None and job.processed >= job.total:
                job = self.finish(con, job)
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
