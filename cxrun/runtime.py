"""Running a job: batches of rows, each computed by one set-based statement and written in bulk."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime
from typing import TYPE_CHECKING

from cxrun.clock import utcnow
from cxrun.enums import JobStatus
from cxrun.models import Job
from cxrun.pipeline import compile_spinner
from cxrun.spec.model import Spinner
from cxrun.sql import duckdb_message
from cxrun.store import State, transaction
from cxrun.store import jobs as job_store
from cxrun.store import tables as table_store
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

# Two DuckDB row groups: both cores insert in parallel, and whole row groups are never rewritten.
BATCH_ROWS = 2 * 122_880
_ROW_BY_ROW = 16


def _row_errors() -> tuple[type[Exception], ...]:
    import duckdb

    return (duckdb.DataError, duckdb.InvalidInputException)


@dataclass
class Runner:
    """Runs one job to its end. The clock is a parameter so that tests control time."""

    state: State
    spinner: Spinner
    clock: Callable[[], datetime] = utcnow
    batch_rows: int = BATCH_ROWS
    on_progress: Callable[[Job], None] | None = None

    def run(self, job_id: int) -> Job:
        with self.state.read() as con:
            job = job_store.get(con, job_id)
            name, number, filtered = job_store.table_of(con, job_id)
            table = table_store.version(con, name, number)
        assert table is not None, f"job {job_id} lost its table version"
        try:
            while job.processed < job.total:
                first = job.processed
                last = min(first + self.batch_rows, job.total) - 1
                with self.state.session() as con:
                    job = self._batch(con, job, table, filtered, first, last)
                if self.on_progress:
                    self.on_progress(job)
        except _duckdb_error() as exc:  # run-level: not one row's fault
            with self.state.write() as con:
                return job_store.finish(
                    con, job_id, JobStatus.FAILED, duckdb_message(exc), self.clock()
                )
        if job.status.finished:
            return job
        with self.state.write() as con:
            return self._finish(con, job)

    def _batch(
        self,
        con: duckdb.DuckDBPyConnection,
        job: Job,
        table: TableInfo,
        filtered: bool,
        first: int,
        last: int,
    ) -> Job:
        def source(a: int, b: int) -> str:
            return job_store.batch_source(job.job, table, filtered, a, b)

        # Computed in autocommit mode, into a temp table: a statement that raises for some row
        # fails alone, and the rows to blame are then found by further statements.
        started, tick = self.clock(), time.perf_counter()
        compiled = compile_spinner(self.spinner, source(first, last))
        try:
            count = job_store.compute(con, compiled)
        except _row_errors():
            job_store.set_failures(con, self._failures(con, source, first, last))
            compiled = compile_spinner(self.spinner, source(first, last), with_failures=True)
            count = job_store.compute(con, compiled)
        per_row_ms = (time.perf_counter() - tick) * 1000 / max(count, 1)
        with transaction(con):
            job = job_store.write_batch(
                con, job.job, compiled, last + 1, (started, self.clock()), per_row_ms
            )
            if job.processed >= job.total:
                job = self._finish(con, job)
        return job

    def _finish(self, con: duckdb.DuckDBPyConnection, job: Job) -> Job:
        status, reason = final_status(job)
        return job_store.finish(con, job.job, status, reason, self.clock())

    def _failures(
        self,
        con: duckdb.DuckDBPyConnection,
        source: Callable[[int, int], str],
        first: int,
        last: int,
    ) -> dict[int, tuple[int, str]]:
        """Rows whose steps raise in SQL, found by halving the batch: {row: (position, error)}."""
        found: dict[int, tuple[int, str]] = {}
        ranges = [(first, last)]
        while ranges:
            a, b = ranges.pop()
            if b - a < _ROW_BY_ROW:
                for seq in range(a, b + 1):
                    self._row_failure(con, source(seq, seq), found)
                continue
            try:
                job_store.probe(con, compile_spinner(self.spinner, source(a, b)))
            except _row_errors():
                middle = (a + b) // 2
                ranges += [(middle + 1, b), (a, middle)]
        return found

    def _row_failure(
        self, con: duckdb.DuckDBPyConnection, source: str, found: dict[int, tuple[int, str]]
    ) -> None:
        for pos in range(len(self.spinner.steps)):
            prefix = replace(self.spinner, steps=self.spinner.steps[: pos + 1])
            try:
                job_store.probe(con, compile_spinner(prefix, source))
            except _row_errors() as exc:
                for row in job_store.rows_of(con, source):
                    found[row] = (pos, duckdb_message(exc))
                return


def _duckdb_error() -> type[Exception]:
    import duckdb

    return duckdb.Error


def final_status(job: Job) -> tuple[JobStatus, str | None]:
    if job.failed and not job.completed:
        return JobStatus.FAILED, f"all {job.failed} records failed"
    if job.failed:
        return JobStatus.PARTIAL, f"{job.failed} of {job.total} records failed"
    return JobStatus.COMPLETED, None
