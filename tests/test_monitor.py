"""Monitoring: one job in detail, the Live Ops summary, and the pre-run checklist (doctor)."""

from __future__ import annotations

import contextlib
import os
from datetime import UTC, datetime, timedelta

import pytest
from conftest import write_project
from test_runtime import CODES, PARSE  # the same 40-row table, two rows of which fail

from cxrun import ops
from cxrun.base.enums import JobStatus
from cxrun.base.errors import NotFound
from cxrun.ops import doctor, runs, watch
from cxrun.runtime.runner import Runner
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import steps as steps_store
from cxrun.store.claims import Owner
from cxrun.triggers import prepare

AI = """table: contacts
key: id
steps:
  - id: draft
    ai: {provider: openai, model: gpt-test, prompt: "Hello {{ first_name }}", output: draft}
"""
OPENAI = """name: test
providers:
  openai: {kind: openai, base_url: "https://api.openai.com/v1", api_key: "secret:OPENAI_API_KEY"}
"""
FIXED = datetime(2026, 3, 1, 12, 0, tzinfo=UTC)


class Stop(Exception):
    pass


def parse_project(tmp_path, cli):
    root = write_project(tmp_path / "p", spinners={"parse": PARSE}, tables={"codes": CODES})
    assert cli(root, "publish").code == 0
    return root, ops.open_context(str(root))


def running_job(ctx, batches: int = 1) -> int:
    """A job as run-now creates it (running, owned by this process), with `batches` batches of
    16 rows written at FIXED, then left running as if its process were still at work."""
    created = []

    def grab(job):
        created.append(job)
        raise Stop

    with contextlib.suppress(Stop):
        runs.run_now(ctx, "parse", on_start=grab)
    _, spinner = prepare.published_spinner(ctx, "parse")
    written = []

    def stop_after(job):
        written.append(job)
        if len(written) == batches:
            raise Stop

    with contextlib.suppress(Stop):
        Runner(ctx.state, spinner, clock=lambda: FIXED, batch_rows=16, on_progress=stop_after).run(
            created[0].job
        )
    return int(created[0].job)


def beat(ctx, at: datetime, stopped: bool = False, pid: int = 4242) -> None:
    with ctx.state.write() as con:
        claim_store.runtime_beat(con, Owner("runtime:host:4242:abcd", pid, "host"), at, stopped)


def by_name(checks, spinner=None):
    return {c.check: c for c in checks if c.spinner == spinner or c.spinner is None}


# ---- job detail ---------------------------------------------------------------------------


def test_job_detail_counts_records_and_steps_of_a_finished_job(tmp_path, cli):
    root, ctx = parse_project(tmp_path, cli)
    assert cli(root, "run-now", "parse").code == 3  # partial: rows 7 and 31 fail
    with ctx.state.write() as con:  # known durations, so that the medians can be checked
        con.execute("UPDATE cx_journey SET duration_ms = seq * 10 WHERE step = 'hello'")
        con.execute("UPDATE cx_journey SET duration_ms = 7 WHERE step = 'parse'")
        con.execute(
            "UPDATE cx_journey SET duration_ms = CASE status WHEN 'skipped' THEN 1000 ELSE 5 END "
            "WHERE step = 'big'"
        )
        steps_store.rebuild(con, 1)  # the step counts are kept as the journey is written
    detail = watch.job_detail(ctx, 1)
    data = detail.to_json()
    assert data["status"] == "partial" and data["reason"] == "2 of 40 records failed"
    assert data["records"] == {
        "pending": 0,
        "running": 0,
        "waiting": 0,
        "completed": 38,
        "failed": 2,
        "skipped": 0,
        "cancelled": 0,
    }
    steps = {s["step"]: s for s in data["steps"]}
    assert [s["step"] for s in data["steps"]] == ["hello", "parse", "big"]
    assert steps["hello"] == {
        "step": "hello",
        "position": 0,
        "completed": 40,
        "failed": 0,
        "skipped": 0,
        "waiting": 0,
        "attempts": 40,
        "median_ms": 195.0,  # seq 0..39 → 0..390 ms
    }
    assert (steps["parse"]["completed"], steps["parse"]["failed"]) == (38, 2)
    assert steps["parse"]["median_ms"] == 7.0
    # ids 21..40 have number > 200, but 31 failed before: 19 tagged, 19 skipped
    assert (steps["big"]["completed"], steps["big"]["skipped"]) == (19, 19)
    assert steps["big"]["median_ms"] == 5.0  # skipped entries did not run: not timed
    assert data["eta_s"] is None and data["rate_per_s"] is None
    assert data["owner"] is None and data["lease_until"] is None  # a finished job has none


def test_the_step_counts_a_pure_job_writes_are_the_journeys_own(tmp_path, cli):
    root, ctx = parse_project(tmp_path, cli)
    assert cli(root, "run-now", "parse").code == 3

    written = [s.to_json() for s in watch.job_detail(ctx, 1).steps]
    with ctx.state.write() as con:
        steps_store.rebuild(con, 1)  # the same counts, from the whole journey
    rebuilt = [s.to_json() for s in watch.job_detail(ctx, 1).steps]

    assert written == rebuilt
    assert [(s["step"], s["completed"], s["failed"]) for s in written][:2] == [
        ("hello", 40, 0),
        ("parse", 38, 2),
    ]


def test_job_detail_of_a_running_job_has_an_eta(tmp_path, cli):
    _, ctx = parse_project(tmp_path, cli)
    job = running_job(ctx)
    detail = watch.job_detail(ctx, job, now=FIXED + timedelta(seconds=32))
    data = detail.to_json()
    assert data["status"] == "running" and data["processed"] == 16
    assert (data["records"]["completed"], data["records"]["failed"]) == (15, 1)  # row 7
    assert data["records"]["pending"] == 24
    assert data["rate_per_s"] == 0.5  # 16 records in the 32 s since the first began
    assert data["eta_s"] == 48.0  # 24 rows left at 0.5 per second
    assert data["owner_pid"] == os.getpid() and data["lease_until"] is not None
    assert [s["step"] for s in data["steps"]] == ["hello", "parse", "big"]
    later = watch.job_detail(ctx, job, now=FIXED + timedelta(seconds=64))
    assert later.eta_s == pytest.approx(96.0)  # slower: more time left


def test_job_detail_of_a_paused_job_has_its_reason_and_no_eta(tmp_path, cli):
    _, ctx = parse_project(tmp_path, cli)
    job = running_job(ctx)
    with ctx.state.write() as con:
        job_store.set_status(con, job, JobStatus.PAUSED, "rate limited until 2026-03-01T12:05:00")
    data = watch.job_detail(ctx, job, now=FIXED + timedelta(seconds=32)).to_json()
    assert data["status"] == "paused" and data["reason"].startswith("rate limited")
    assert data["eta_s"] is None and data["records"]["pending"] == 24


def test_job_detail_of_a_queued_job_lists_every_step_with_zeros(tmp_path, cli):
    root, ctx = parse_project(tmp_path, cli)
    assert cli(root, "run-now", "parse", "--detach").code == 0
    data = watch.job_detail(ctx, 1).to_json()
    assert data["records"]["pending"] == 40 and data["eta_s"] is None
    assert [(s["step"], s["completed"], s["median_ms"]) for s in data["steps"]] == [
        ("hello", 0, None),
        ("parse", 0, None),
        ("big", 0, None),
    ]
    with pytest.raises(NotFound, match="no job 9"):
        watch.job_detail(ctx, 9)


# ---- live ---------------------------------------------------------------------------------


def test_live_finds_stalled_jobs_with_a_fixed_clock(tmp_path, cli):
    root, ctx = parse_project(tmp_path, cli)
    job = running_job(ctx)  # its last record ended at FIXED
    assert cli(root, "run-now", "parse").code == 3  # a finished job is never stalled
    calm = watch.live(ctx, stall_minutes=5, now=FIXED + timedelta(minutes=4))
    assert calm.stalled == []
    assert calm.jobs["running"] == 1 and calm.jobs["partial"] == 1 and calm.jobs["queued"] == 0
    late = watch.live(ctx, stall_minutes=5, now=FIXED + timedelta(minutes=6)).to_json()
    assert [(s["job"], s["spinner"], s["idle_s"]) for s in late["stalled"]] == [
        (job, "parse", 360.0)
    ]
    assert late["stalled"][0]["last_progress_at"] == "2026-03-01T12:00:00Z"
    assert late["stalled"][0]["owner_pid"] == os.getpid()
    assert late["stall_minutes"] == 5


def test_live_counts_failures_per_step_in_the_last_hour(tmp_path, cli):
    _, ctx = parse_project(tmp_path, cli)
    running_job(ctx, batches=2)  # rows 1..32: 7 and 31 fail at parse, at FIXED
    within = watch.live(ctx, now=FIXED + timedelta(minutes=59)).to_json()
    assert [(f["spinner"], f["step"], f["failures"], f["records"]) for f in within["failures"]] == [
        ("parse", "parse", 2, 2)
    ]
    assert "abc" in within["failures"][0]["last_error"]
    assert within["failures_since"] == "2026-03-01T11:59:00Z"
    after = watch.live(ctx, now=FIXED + timedelta(minutes=61))
    assert after.failures == []


def test_live_says_whether_a_runtime_is_up(tmp_path, cli):
    _, ctx = parse_project(tmp_path, cli)
    never = watch.live(ctx, now=FIXED).to_json()["runtime"]
    assert never == {"up": False, "runtimes": [], "last_heartbeat_at": None}
    beat(ctx, FIXED)
    up = watch.live(ctx, now=FIXED + timedelta(minutes=1)).to_json()["runtime"]
    assert up["up"] is True
    assert [(r["id"], r["pid"], r["heartbeat_at"]) for r in up["runtimes"]] == [
        ("runtime:host:4242:abcd", 4242, "2026-03-01T12:00:00Z")
    ]
    silent = watch.live(ctx, now=FIXED + timedelta(minutes=3)).to_json()["runtime"]
    assert silent["up"] is False and silent["last_heartbeat_at"] == "2026-03-01T12:00:00Z"
    beat(ctx, FIXED + timedelta(seconds=10), stopped=True)
    stopped = watch.live(ctx, now=FIXED + timedelta(seconds=20))
    assert stopped.runtime_up is False


# ---- doctor -------------------------------------------------------------------------------


def test_doctor_is_all_ok_on_a_healthy_project(tmp_path, cli):
    root = write_project(tmp_path / "p")
    assert cli(root, "publish").code == 0
    found = doctor.doctor(ops.open_context(str(root)))
    assert found.ok, found.failed
    assert [(c.spinner, c.check) for c in found.checks] == [
        (None, "config"),
        ("welcome", "spinner"),
        ("welcome", "table"),
        ("welcome", "fields"),
        ("welcome", "published"),
        ("welcome", "providers"),
        (None, "runtime"),
    ]
    checks = by_name(found.checks, "welcome")
    assert checks["table"].detail == "tables/contacts.csv: 5 row(s), 7 column(s)"
    assert "1 of 5 row(s) have no email" in checks["fields"].detail  # Grace: data, not setup
    assert checks["published"].detail.startswith("version 1, published ")
    assert all(c.fix is None for c in found.checks)
    data = found.to_json()
    assert data["ok"] is True
    assert set(data["checks"][0]) == {"spinner", "check", "ok", "detail", "fix"}


def test_doctor_names_a_missing_table_and_its_fix(tmp_path):
    spinner = "table: people\nkey: id\nsteps:\n  - id: a\n    log: x\n"
    root = write_project(tmp_path / "p", spinners={"s": spinner})
    found = doctor.doctor(ops.open_context(str(root)), "s")
    table = by_name(found.checks, "s")["table"]
    assert not table.ok and "unknown table 'people'" in table.detail
    assert table.fix == "add tables/people.csv (or .parquet), or fix `table:` in spinners/s.yaml"
    assert "fields" not in by_name(found.checks, "s")  # nothing to check fields against


def test_doctor_names_an_empty_table_and_missing_columns(tmp_path):
    spinner = "table: t\nkey: id\nfields: {phone: {}}\nsteps:\n  - id: a\n    log: x\n"
    root = write_project(tmp_path / "p", spinners={"s": spinner}, tables={"t": "id,email\n"})
    checks = by_name(doctor.doctor(ops.open_context(str(root))).checks, "s")
    assert not checks["table"].ok and checks["table"].detail == "tables/t.csv has no rows"
    assert "cxrun tables show t" in (checks["table"].fix or "")
    assert not checks["fields"].ok and 'column "phone" is not in table t' in checks["fields"].detail
    assert "add the missing columns to tables/t.csv" in (checks["fields"].fix or "")


def test_doctor_names_an_unpublished_spinner(tmp_path):
    root = write_project(tmp_path / "p")
    found = doctor.doctor(ops.open_context(str(root)))
    published = by_name(found.checks, "welcome")["published"]
    assert not published.ok and not found.ok
    assert published.detail == "spinner 'welcome' is not published"
    assert published.fix == "run `cxrun publish welcome`"
    assert [c.check for c in found.failed] == ["published"]


def test_doctor_names_a_spinner_edited_since_it_was_published(tmp_path, cli):
    root = write_project(tmp_path / "p")
    assert cli(root, "publish").code == 0
    path = root / "spinners" / "welcome.yaml"
    path.write_text(path.read_text().replace("Welcome", "Hello"))
    published = by_name(doctor.doctor(ops.open_context(str(root))).checks, "welcome")["published"]
    assert not published.ok
    assert "spinners/welcome.yaml was edited since version 1 was published" in published.detail
    assert published.fix == "run `cxrun publish welcome` (runs use version 1 until then)"
    assert cli(root, "publish").code == 0
    again = by_name(doctor.doctor(ops.open_context(str(root))).checks, "welcome")
    assert again["published"].ok and again["published"].detail.startswith("version 2")


def test_doctor_names_a_missing_secret_and_how_to_set_it(tmp_path, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    root = write_project(tmp_path / "p", spinners={"ai": AI})
    (root / "cxrun.yaml").write_text(OPENAI)
    ctx = ops.open_context(str(root))
    providers = by_name(doctor.doctor(ctx, "ai").checks, "ai")["providers"]
    assert not providers.ok and "secret OPENAI_API_KEY is not set" in providers.detail
    assert providers.fix == "run `cxrun secrets set OPENAI_API_KEY`"
    ctx.secrets.set("OPENAI_API_KEY", "sk-test-not-shown")
    fixed = by_name(doctor.doctor(ctx, "ai").checks, "ai")["providers"]
    assert fixed.ok and fixed.detail == "openai: configured, secrets set"
    assert "sk-test-not-shown" not in str(doctor.doctor(ctx, "ai").to_json())


def test_doctor_names_an_unknown_provider_with_a_config_fix(tmp_path):
    root = write_project(tmp_path / "p", spinners={"ai": AI})
    providers = by_name(doctor.doctor(ops.open_context(str(root))).checks, "ai")["providers"]
    assert not providers.ok and "unknown provider 'openai'" in providers.detail
    assert providers.fix == "fix the providers and channels in cxrun.yaml"


def test_doctor_names_queued_jobs_with_no_runtime(tmp_path, cli):
    root = write_project(tmp_path / "p")
    assert cli(root, "publish").code == 0
    ctx = ops.open_context(str(root))
    assert by_name(doctor.doctor(ctx, now=FIXED).checks)["runtime"].ok  # nothing queued
    assert cli(root, "run-now", "welcome", "--detach").code == 0
    runtime = by_name(doctor.doctor(ctx, now=FIXED).checks)["runtime"]
    assert not runtime.ok and runtime.detail.startswith("1 job(s) queued, no runtime is up")
    assert runtime.fix == watch.RUNTIME_FIX and "`cxrun runtime`" in runtime.fix
    beat(ctx, FIXED)
    up = by_name(doctor.doctor(ctx, now=FIXED + timedelta(seconds=30)).checks)["runtime"]
    assert up.ok and "pid 4242" in up.detail


def test_doctor_reports_a_broken_spinner_instead_of_raising(tmp_path):
    broken = "table: contacts\nkey: id\nsteps:\n  - id: a\n    sms: hi\n"
    root = write_project(tmp_path / "p", spinners={"welcome": broken, "bad": "key: [\n"})
    ctx = ops.open_context(str(root))
    found = doctor.doctor(ctx)
    welcome = by_name(found.checks, "welcome")
    assert not welcome["spinner"].ok and "'sms' is not a step type" in welcome["spinner"].detail
    assert welcome["spinner"].fix == "fix spinners/welcome.yaml, then run `cxrun validate welcome`"
    assert set(welcome) == {"config", "spinner", "published", "runtime"}
    assert not by_name(found.checks, "bad")["spinner"].ok
    with pytest.raises(NotFound, match="unknown spinner 'nope'"):
        doctor.doctor(ctx, "nope")
