"""End to end with the installed executable: publish, run a job, read jobs, records and journeys."""

from __future__ import annotations

import json
import subprocess
import sys
from datetime import datetime

import pytest

from cxrun import __version__

ANSI_ESCAPE = "\x1b"
# Variables that make rich colour even when stdout is not a terminal.
FORCING_VARIABLES = ("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "CLICOLOR_FORCE")


def _json(result):
    assert result.code in (0, 3), result
    return json.loads(result.stdout)


def _when(text: str) -> datetime:
    assert text.endswith("Z"), text
    return datetime.fromisoformat(text)


@pytest.fixture
def published(project, run):
    result = run(project, "publish", "--json")
    assert result.code == 0, result
    assert json.loads(result.stdout) == [{"spinner": "welcome", "version": 1, "changed": True}]
    return project


@pytest.fixture
def ran(published, run):
    """The welcome spinner run once: record 3 has no email (a required field), so it fails."""
    result = run(published, "run-now", "welcome", "--json")
    assert result.code == 3, result  # partial
    return published, json.loads(result.stdout)


def test_run_now_prints_the_job_and_exits_3_when_partial(ran):
    _, job = ran
    assert {k: job[k] for k in ("job", "spinner", "version", "trigger", "status")} == {
        "job": 1,
        "spinner": "welcome",
        "version": 1,
        "trigger": "manual",
        "status": "partial",
    }
    assert (job["total"], job["completed"], job["failed"], job["skipped"], job["waiting"]) == (
        5,
        4,
        1,
        0,
        0,
    )
    assert job["reason"] == "1 of 5 records failed"
    assert _when(job["started_at"]) <= _when(job["ended_at"])
    assert job["duration_s"] >= 0


def test_run_now_exits_0_when_every_record_completes(published, run):
    result = run(published, "run-now", "welcome", "--where", "email IS NOT NULL", "--json")
    assert result.code == 0, result
    job = json.loads(result.stdout)
    assert (job["status"], job["total"], job["completed"], job["failed"]) == ("completed", 4, 4, 0)
    assert job["reason"] is None


def test_jobs_lists_the_job_as_run_now_printed_it(ran, run):
    project, job = ran
    listed = run(project, "jobs", "--json")
    assert listed.code == 0, listed
    assert json.loads(listed.stdout) == [job]


def test_records_hold_the_rows_and_their_outcomes(ran, run):
    project, _ = ran
    records = _json(run(project, "records", "1", "--json"))
    by_key = {r["record"]: r for r in records}
    assert list(by_key) == ["1", "2", "3", "4", "5"]

    ada = by_key["1"]
    assert (ada["job"], ada["status"], ada["tags"], ada["outputs"]) == (
        1,
        "completed",
        ["vip"],
        {"score": 15.005},
    )
    assert ada["metadata"] == {
        "id": 1,
        "first_name": "Ada",
        "last_name": "Lovelace",
        "email": "ada@example.org",
        "city": "London",
        "lifetime_value": 1500.5,
        "signup_date": "2026-01-10",
    }
    assert (ada["error"], ada["attempts"]) == (None, 1)
    assert (by_key["2"]["tags"], by_key["2"]["outputs"]) == ([], {"score": 0.8})
    assert (by_key["5"]["tags"], by_key["5"]["outputs"]) == (["vip"], {"score": 12.0})

    grace = by_key["3"]
    assert grace["status"] == "failed"
    assert grace["tags"] == []
    assert "email" in grace["error"]

    failed = _json(run(project, "records", "1", "--status", "failed", "--json"))
    assert [r["record"] for r in failed] == ["3"]


def test_journey_shows_each_step_in_order(ran, run):
    project, _ = ran
    entries = _json(run(project, "journey", "1", "1", "--json"))
    assert [(e["step"], e["status"], e["message"], e["output"]) for e in entries] == [
        ("hello", "completed", "Welcome Ada", None),
        ("vip", "completed", "tagged vip", None),
        ("score", "completed", "set score", {"score": 15.005}),
    ]
    for entry in entries:
        assert (entry["attempt"], entry["error"]) == (1, None)
        assert _when(entry["started_at"]) <= _when(entry["ended_at"])
        assert entry["duration_ms"] >= 0


def test_journey_of_a_failed_record_says_why(ran, run):
    project, _ = ran
    entries = _json(run(project, "journey", "1", "3", "--json"))
    assert [(e["status"], e["step"]) for e in entries][-1:] == [("failed", "(fields)")]
    assert "email" in entries[-1]["error"]


def test_journey_of_a_record_whose_step_was_skipped(ran, run):
    project, _ = ran
    entries = _json(run(project, "journey", "1", "2", "--json"))
    assert [(e["step"], e["status"]) for e in entries] == [
        ("hello", "completed"),
        ("vip", "skipped"),
        ("score", "completed"),
    ]
    assert entries[1]["output"] is None
    assert entries[1]["message"] == "skipped: when is not true"


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("journey", "1", "99", "--json"), "no record '99'"),
        (("journey", "7", "1", "--json"), "no job 7"),
        (("records", "7", "--json"), "no job 7"),
        (("run-now", "nope", "--json"), "nope"),
    ],
)
def test_unknown_names_exit_2_with_a_short_message(ran, run, args, needle):
    project, _ = ran
    result = run(project, *args)
    assert result.code == 2, result
    assert result.stdout == ""
    assert needle in result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2


def test_python_m_cxrun_version(project, run):
    module = subprocess.run(
        [sys.executable, "-m", "cxrun", "--version"],
        cwd=project,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert module.returncode == 0, module
    assert module.stdout == f"cxrun {__version__}\n"
    assert run(project, "--version").stdout == module.stdout


def test_json_run_prints_only_json_and_no_progress(published, run):
    result = run(published, "run-now", "welcome", "--json")
    assert json.loads(result.stdout)["job"] == 1
    assert len(result.stdout.strip().splitlines()) == 1
    assert result.stderr == ""


def test_run_without_json_off_a_terminal_prints_plain_text(published, run, monkeypatch):
    for name in FORCING_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    result = run(published, "run-now", "welcome")
    assert result.code == 3, result
    assert ANSI_ESCAPE not in result.stdout
    assert ANSI_ESCAPE not in result.stderr

    summary = result.stdout.strip().splitlines()
    for part in ("job 1", "welcome v1", "partial", "4 completed", "1 failed", "of 5"):
        assert part in summary[0], summary
    assert "1 of 5 records failed" in result.stdout

    progress = result.stderr.strip().splitlines()
    assert progress[0] == "job 1: welcome v1 started over 5 rows"
    assert progress[-1] == "job 1: 5/5 rows, 1 failed"
    assert all(line.startswith("job 1: ") for line in progress)
