"""Reading results: jobs, one job, its records and a record's journey, the outbox."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import CxrunError, NotFound, NotWrittenYet
from cxrun.base.filters import JobFilter
from cxrun.base.models import Job, JobsPage, JourneyEntry, Record
from cxrun.store import jobs as job_store
from cxrun.store import monitor as monitor_store
from cxrun.store import records as record_store
from cxrun.store import spinners as spinner_store
from cxrun.store import tables as table_store
from cxrun.store.context import Context
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb


PAGE_SIZE = 50


def jobs(ctx: Context, filters: JobFilter, page: int, limit: int = PAGE_SIZE) -> list[Job]:
    with ctx.state.read() as con:
        return job_store.listing(con, filters, limit, (page - 1) * limit)


def jobs_page(ctx: Context, filters: JobFilter, page: int, limit: int = PAGE_SIZE) -> JobsPage:
    """A page of jobs, newest first, with the count of all that match and the runtime's state."""
    with ctx.state.read() as con:
        return page_of(con, filters, page, limit)


def page_of(con: duckdb.DuckDBPyConnection, filters: JobFilter, page: int, limit: int) -> JobsPage:
    """`jobs_page` on an open state connection."""
    now = utcnow()
    found = job_store.listing(con, filters, limit, (page - 1) * limit)
    matching = job_store.count(con, filters)
    up = monitor_store.runtimes_up(con, now)
    runtime = f"{up[0].id} (pid {up[0].pid})" if up else None
    return JobsPage(found, filters, page, limit, matching, now, runtime)


def job(ctx: Context, job_id: int) -> Job:
    with ctx.state.read() as con:
        return job_store.get(con, job_id)


def records(
    ctx: Context, job_id: int, status: str | None, page: int, limit: int = PAGE_SIZE
) -> list[Record]:
    offset = (page - 1) * limit
    with ctx.state.read() as con:
        found = job_store.get(con, job_id)
        name, number, _ = job_store.table_of(con, job_id)
        table = table_store.version(con, name, number)
        assert table is not None
        if status == "pending":
            spec = spinner_store.latest(con, found.spinner)
            key = spec.spec["key"] if spec else ""
            return record_store.pending_records(con, found, table, key, limit, offset)
        return record_store.records(con, job_id, table, status, limit, offset)


def outbox(
    ctx: Context, job_id: int | None, page: int, limit: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    with ctx.state.read() as con:
        return record_store.outbox(con, job_id, limit, (page - 1) * limit)


def journey(ctx: Context, job_id: int, record: str) -> list[JourneyEntry]:
    """A record's journey; a record of the job's rows that no batch has written yet is
    NotWrittenYet (while the job is not finished), any other key NotFound."""
    with ctx.state.read() as con:
        found = job_store.get(con, job_id)
        seq = record_store.record_seq(con, job_id, record)
        if seq is None:
            _not_written(con, found, record)
            raise NotFound(
                f"job {job_id} has no record '{record}'",
                f"list its records with `cxrun records {job_id}`",
            )
        return record_store.journey(con, job_id, seq)


def _not_written(con: duckdb.DuckDBPyConnection, job: Job, record: str) -> None:
    """NotWrittenYet when `record` is a row the unfinished job has not reached yet."""
    if job.status.finished:
        return
    name, number, _ = job_store.table_of(con, job.job)
    table = table_store.version(con, name, number)
    spec = spinner_store.version(con, job.spinner, job.version)
    if table is None or spec is None:
        return
    if record_store.unreached(con, job, table, spec.spec["key"], record):
        raise NotWrittenYet(
            f"record {record} of job {job.job} is not written yet: the job is {job.status}",
            f"its journey is there once its batch is written: `cxrun job {job.job}` shows progress",
        )


def job_table(ctx: Context, job_id: int, where: str | None = None) -> TableInfo:
    """The table version a job runs over, with `where` (a --where of retry or an answer) checked
    against it."""
    with ctx.state.read() as con:
        name, number, _ = job_store.table_of(con, job_id)
        table = table_store.version(con, name, number)
    assert table is not None
    if where is not None:
        from cxrun.spec import checks  # not imported by the read commands, which never need it

        problem = checks.where_problem(table, where)
        if problem:
            raise CxrunError(f"--where: {problem}", "fix the SQL condition and try again")
    return table
