"""The runtime: batches, set-based steps, per-row failures isolated, journeys written in bulk."""

from __future__ import annotations

import contextlib
from datetime import UTC, datetime

from conftest import write_project

from cxrun import ops
from cxrun.base.enums import JobStatus
from cxrun.ops import publishing, runs, views
from cxrun.runtime.runner import Runner
from cxrun.store import jobs as job_store
from cxrun.triggers import prepare

CODES = "id,code,name\n" + "".join(
    f"{i},{'abc' if i in (7, 31) else i * 10},n{i}\n" for i in range(1, 41)
)
PARSE = """table: codes
key: id
steps:
  - id: hello
    log: "row {{ name }}"
  - id: parse
    set:
      number: "CAST(code AS INTEGER)"
  - id: big
    tag: big
    when: "number > 200"
"""
FIXED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


def context(tmp_path, spinners, tables):
    root = write_project(tmp_path / "p", spinners=spinners, tables=tables)
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    return ctx


def start(ctx, name):
    """Create the job as run-now does, but return it unrun."""
    created = []

    class Stop(Exception):
        pass

    def grab(job):
        created.append(job)
        raise Stop

    with contextlib.suppress(Stop):
        runs.run_now(ctx, name, on_start=grab)
    return created[0]


def test_small_batches_cover_every_row_once(tmp_path):
    ctx = context(tmp_path, {"parse": PARSE}, {"codes": CODES})
    job = start(ctx, "parse")
    _, spinner = prepare.published_spinner(ctx, "parse")
    seen = []
    done = Runner(
        ctx.state, spinner, clock=lambda: FIXED, batch_rows=16, on_progress=seen.append
    ).run(job.job)
    assert [j.processed for j in seen] == [16, 32, 40]
    assert (done.total, done.completed, done.failed) == (40, 38, 2)
    assert done.status == JobStatus.PARTIAL and done.reason == "2 of 40 records failed"
    assert done.started_at is not None and done.ended_at == FIXED
    with ctx.state.read() as con:
        keys = [
            r[0]
            for r in con.execute(
                "SELECT key FROM cx_records WHERE job = ? ORDER BY seq", [job.job]
            ).fetchall()
        ]
        entries = con.execute("SELECT count(*) FROM cx_journey WHERE job = ?", [job.job]).fetchone()
    assert keys == [str(i) for i in range(1, 41)]
    assert entries == (38 * 3 + 2 * 2,)


def test_a_row_that_raises_fails_alone_at_its_step(tmp_path):
    ctx = context(tmp_path, {"parse": PARSE}, {"codes": CODES})
    job = start(ctx, "parse")
    _, spinner = prepare.published_spinner(ctx, "parse")
    Runner(ctx.state, spinner, clock=lambda: FIXED).run(job.job)
    failed = views.records(ctx, job.job, "failed", 1)
    assert [r.record for r in failed] == ["7", "31"]
    assert all(r.failed_step == "parse" and "abc" in (r.error or "") for r in failed)
    journey = views.journey(ctx, job.job, "7")
    assert [(e.step, e.status) for e in journey] == [("hello", "completed"), ("parse", "failed")]
    assert journey[0].message == "row n7"
    assert journey[1].started_at == FIXED
    fine = views.journey(ctx, job.job, "30")
    assert [(e.step, e.status) for e in fine] == [
        ("hello", "completed"),
        ("parse", "completed"),
        ("big", "completed"),
    ]
    assert fine[1].output == {"number": 300}
    assert views.records(ctx, job.job, None, 1)[0].tags == []  # row 1: 10 is not > 200


def test_a_job_where_every_row_fails_is_failed_and_an_empty_job_completes(tmp_path):
    spinners = {
        "strict": "table: t\nkey: id\nfields: {email: {required: true}}\n"
        "steps:\n  - id: a\n    log: x\n"
    }
    ctx = context(tmp_path, spinners, {"t": "id,email\n1,\n2,\n"})
    job = runs.run_now(ctx, "strict")
    assert job.status == JobStatus.FAILED and job.reason == "all 2 records failed"
    assert views.records(ctx, job.job, None, 1)[0].error == "required field 'email' is empty"
    empty = runs.run_now(ctx, "strict", where="id > 100")
    assert empty.status == JobStatus.COMPLETED and empty.total == 0


def test_a_filtered_job_runs_exactly_its_selection(tmp_path):
    ctx = context(tmp_path, {"parse": PARSE}, {"codes": CODES})
    job = runs.run_now(ctx, "parse", where="id % 3 = 0 AND id <> 6", limit=5)
    assert job.total == 5
    with ctx.state.read() as con:
        keys = [
            r[0]
            for r in con.execute(
                "SELECT key FROM cx_records WHERE job = ? ORDER BY seq", [job.job]
            ).fetchall()
        ]
        selection = job_store.table_of(con, job.job)
    assert keys == ["3", "9", "12", "15", "18"]
    assert selection[2] is True


def test_pending_records_are_the_rows_no_batch_reached(tmp_path):
    ctx = context(tmp_path, {"parse": PARSE}, {"codes": CODES})
    job = start(ctx, "parse")
    pending = views.records(ctx, job.job, "pending", 1, limit=3)
    assert [(r.record, r.status, r.metadata["name"]) for r in pending] == [
        ("1", "pending", "n1"),
        ("2", "pending", "n2"),
        ("3", "pending", "n3"),
    ]
