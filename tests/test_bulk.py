"""The filters of `cxrun jobs` and the bulk forms of cancel, retry and resume on the command
line: JOB or filters, the plan, the confirmation (a terminal asks, elsewhere --yes is needed),
each job's outcome. Processes beside a live runtime are in test_bulk_live.py."""

from __future__ import annotations

import json
import os
import pty
import subprocess
from pathlib import Path
from typing import Any

import pytest
from conftest import EXECUTABLE, WELCOME, set_now, write_project
from test_events import LISTENER
from test_io_runtime import closed_port

T0 = "2026-11-20T09:00:00Z"


def ok(result: Any, code: int = 0) -> Any:
    assert result.code == code, result
    return result


def listed(cli, root: Path, *args: str) -> list[int]:
    """The job numbers `cxrun jobs ARGS --json` lists, newest first."""
    return [job["job"] for job in json.loads(ok(cli(root, "jobs", *args, "--json")).stdout)]


def statuses(cli, root: Path) -> dict[int, str]:
    return {job["job"]: job["status"] for job in json.loads(ok(cli(root, "jobs", "--json")).stdout)}


@pytest.fixture
def dated(tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Job 1 (manual, partial) at T0, job 2 (event) two hours later, job 3 (manual, queued,
    then paused) three days later; the clock then stands an hour after job 3."""
    root = write_project(tmp_path / "p", {"welcome": WELCOME, "greet": LISTENER})
    ok(cli(root, "publish"))
    set_now(monkeypatch, T0)
    ok(cli(root, "run-now", "welcome"), 3)  # Grace has no email: partial
    set_now(monkeypatch, "2026-11-20T11:00:00Z")
    ok(cli(root, "trigger", "contact.created", "--payload", "-", input='{"id": "1"}'))
    set_now(monkeypatch, "2026-11-23T09:00:00Z")
    ok(cli(root, "run-now", "welcome", "--detach"))
    ok(cli(root, "pause", "3"))
    set_now(monkeypatch, "2026-11-23T10:00:00Z")
    return root


def test_jobs_filters_by_trigger_since_and_reason(dated: Path, cli) -> None:
    root = dated
    assert listed(cli, root) == [3, 2, 1]
    assert listed(cli, root, "--since", "2h") == [3]
    assert listed(cli, root, "--since", "3d") == [3, 2]  # 2026-11-20T10:00: job 2 at 11:00
    assert listed(cli, root, "--since", "4d") == [3, 2, 1]
    assert listed(cli, root, "--since", "4320m") == [3, 2]  # 72 hours
    assert listed(cli, root, "--since", "73h") == [3, 2, 1]  # job 1 was created at T0 exactly
    assert listed(cli, root, "--since", "2026-11-20T11:00:00Z") == [3, 2]  # at or after
    assert listed(cli, root, "--since", "2026-11-21") == [3]
    assert listed(cli, root, "--trigger", "event") == [2]
    assert listed(cli, root, "--trigger", "manual", "--since", "1d") == [3]
    assert listed(cli, root, "--reason", "OPERATOR") == [3]  # any case
    assert listed(cli, root, "--reason", "%") == []  # text, not a LIKE pattern
    assert listed(cli, root, "--spinner", "welcome", "--status", "partial") == [1]
    nothing = ok(cli(root, "jobs", "--trigger", "schedule", "--since", "2026-11-21"))
    assert nothing.stdout.strip() == "no jobs with trigger schedule since 2026-11-21T00:00:00Z"


@pytest.mark.parametrize(
    ("args", "error"),
    [
        (("--since", "soon"), "since='soon' is neither a duration nor an ISO date or time"),
        (("--since", "36501d"), "since='36501d' is neither"),
        (("--since", "-2h"), "since='-2h' is neither"),
        (("--trigger", "cron"), "'cron' is not one of"),
    ],
)
def test_a_bad_filter_is_exit_2(dated: Path, cli, args: tuple[str, ...], error: str) -> None:
    refused = ok(cli(dated, "jobs", *args), 2)
    assert error in refused.stderr and "Traceback" not in refused.stderr


def test_job_and_filters_go_one_or_the_other(dated: Path, cli) -> None:
    both = ok(cli(dated, "cancel", "3", "--status", "paused"), 2)
    assert "cancel: give JOB or filters, not both" in both.stderr
    for command in ("cancel", "retry", "resume"):
        neither = ok(cli(dated, command), 2)
        assert f"{command}: name a job, or filter the jobs to act on" in neither.stderr
    single = ok(cli(dated, "retry", "--status", "partial", "--record", "3", "--yes"), 2)
    assert "--record goes with one JOB, not with filters" in single.stderr
    assert statuses(cli, dated) == {1: "partial", 2: "completed", 3: "paused"}


def test_bulk_cancel_of_queued_jobs(tmp_path: Path, cli) -> None:
    root = write_project(
        tmp_path / "p",
        {"welcome": WELCOME, "other": WELCOME.replace("name: welcome", "name: other")},
    )
    ok(cli(root, "publish"))
    ok(cli(root, "run-now", "welcome"), 3)
    for name in ("welcome", "other", "welcome"):  # jobs 2, 3 and 4, queued
        ok(cli(root, "run-now", name, "--detach"))

    asked = ok(cli(root, "cancel", "--status", "queued", "--spinner", "welcome"), 2)
    assert asked.stdout.strip() == "cancel: 2 jobs (2, 4), 10 unfinished records"
    assert "add --yes to act on 2 jobs: nothing was changed" in asked.stderr
    planned = ok(cli(root, "cancel", "--status", "queued", "--spinner", "welcome", "--json"), 2)
    plan = json.loads(planned.stdout)
    assert (plan["confirmed"], plan["results"], plan["records"]) == (False, [], 10)
    assert [(j["job"], j["status"], j["records"]) for j in plan["jobs"]] == [
        (2, "queued", 5),
        (4, "queued", 5),
    ]
    assert statuses(cli, root) == {1: "partial", 2: "queued", 3: "queued", 4: "queued"}

    done = ok(cli(root, "cancel", "--status", "queued", "--spinner", "welcome", "--yes", "--json"))
    outcome = json.loads(done.stdout)
    assert outcome["confirmed"] is True and outcome["refused"] == []
    assert [(r["job"], r["ok"], r["status"]) for r in outcome["results"]] == [
        (2, True, "cancelled"),
        (4, True, "cancelled"),
    ]
    assert statuses(cli, root) == {1: "partial", 2: "cancelled", 3: "queued", 4: "cancelled"}
    records = json.loads(ok(cli(root, "records", "4", "--status", "cancelled", "--json")).stdout)
    assert len(records) == 5

    again = ok(cli(root, "cancel", "--status", "queued", "--spinner", "welcome", "--yes"))
    assert again.stdout.strip() == "no queued jobs of spinner welcome"
    left_out = ok(cli(root, "cancel", "--spinner", "welcome", "--yes"))
    assert left_out.stdout.strip() == (
        "no jobs of spinner welcome to cancel: 3 match, but cancel takes only a job that "
        "is unfinished"
    )


BOOM = """table: contacts
key: id
steps:
  - id: boom
    set: {x: "error('boom ' || first_name)"}
"""

NEEDY = """table: contacts
key: id
steps:
  - id: send
    send: {channel: hook, to: "{{ first_name }}", text: "hi"}
"""


def test_bulk_retry_goes_on_past_a_refused_job(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A job whose spinner needs a secret that is gone is refused alone (exit 2); the others
    are queued, and with no runtime up the output says how to run them."""
    config = (
        "name: t\nchannels:\n  hook: {kind: webhook, "
        f"url: 'http://127.0.0.1:{closed_port()}/hook', secret: 'secret:HOOK_SECRET'}}\n"
    )
    root = write_project(tmp_path / "p", {"boom": BOOM, "needy": NEEDY}, config=config)
    monkeypatch.setenv("HOOK_SECRET", "s3cret-for-hooks")
    ok(cli(root, "publish"))
    ok(cli(root, "run-now", "boom"), 1)  # every record fails: failed
    ok(cli(root, "run-now", "needy"), 1)  # nothing listens on the port
    ok(cli(root, "run-now", "boom"), 1)
    ok(cli(root, "run-now", "boom", "--detach"))  # job 4: not finished, left out
    monkeypatch.delenv("HOOK_SECRET")

    done = ok(cli(root, "retry", "--status", "failed", "--since", "1h", "--yes"), 2)
    lines = done.stdout.splitlines()
    assert lines[0] == "retry: 3 jobs (1, 2, 3), 15 failed records", lines
    assert lines[1] == "job 1: queued" and lines[-2] == "job 3: queued", lines
    assert lines[2].startswith("job 2: refused: spinner 'needy': ") and "HOOK_SECRET" in lines[2]
    assert lines[-1] == "retry: 2 of 3 jobs queued; refused: 2"
    assert "no runtime is up: start `cxrun runtime` (or `cxrun runtime --once`)" in done.stderr
    assert statuses(cli, root) == {1: "queued", 2: "failed", 3: "queued", 4: "queued"}

    left_out = ok(cli(root, "retry", "--spinner", "boom", "--yes"))
    assert left_out.stdout.strip() == (
        "no jobs of spinner boom to retry: 3 match, but retry takes only a job that has "
        "failed records and has finished"
    )
    drained = ok(cli(root, "runtime", "--once"))
    assert "job 1: claimed" in drained.stderr and "job 3: claimed" in drained.stderr
    assert statuses(cli, root) == {1: "failed", 2: "failed", 3: "failed", 4: "failed"}
    journey = json.loads(ok(cli(root, "journey", "1", "1", "--json")).stdout)
    assert [(e["step"], e["attempt"]) for e in journey] == [("boom", 1), ("boom", 2)]


def pty_run(root: Path, answer: bytes, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed cxrun with a terminal on stdin that has `answer` typed into it already."""
    controller, terminal = pty.openpty()
    try:
        os.write(controller, answer)
        env = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
        return subprocess.run(
            [str(EXECUTABLE), *args],
            cwd=root,
            stdin=terminal,
            capture_output=True,
            text=True,
            timeout=120,
            env=env,
        )
    finally:
        os.close(terminal)
        os.close(controller)


def test_a_terminal_is_asked_and_no_changes_nothing(tmp_path: Path, cli) -> None:
    root = write_project(tmp_path / "p")
    ok(cli(root, "publish"))
    ok(cli(root, "run-now", "welcome", "--detach"))
    ok(cli(root, "run-now", "welcome", "--detach"))

    declined = pty_run(root, b"n\n", "cancel", "--status", "queued")
    assert declined.returncode == 2, declined.stderr
    assert "Cancel these 2 jobs? Unfinished records are cancelled" in declined.stderr
    assert "[y/N]" in declined.stderr and "not confirmed: nothing was changed" in declined.stderr
    assert declined.stdout.startswith("cancel: 2 jobs (1, 2), 10 unfinished records")
    assert statuses(cli, root) == {1: "queued", 2: "queued"}

    agreed = pty_run(root, b"y\n", "cancel", "--status", "queued", "--json")
    assert agreed.returncode == 0, agreed.stderr
    assert "[y/N]" in agreed.stderr
    outcome = json.loads(agreed.stdout)  # the prompt went to stderr: stdout is only JSON
    assert [r["status"] for r in outcome["results"]] == ["cancelled", "cancelled"]
    assert statuses(cli, root) == {1: "cancelled", 2: "cancelled"}
