"""Waiting steps: waits, approvals, eligible windows and child spinners, with the clock fixed by
CXRUN_NOW (time moves forward without sleeping)."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest
from conftest import CONTACTS, write_project

from cxrun.spec import windows

CONFIG = """name: test
providers:
  demo: {kind: echo}
channels:
  outbox: {kind: outbox}
"""

FLOW = """table: contacts
key: id
steps:
  - id: hello
    log: "hi {{ first_name }}"
  - id: check
    approval: {prompt: "Send to {{ email }}?"}
    when: "lifetime_value > 1000"
  - id: pause
    wait: 1h
  - id: follow
    call: followup
  - id: after
    log: "after {{ follow.note }}"
"""

FOLLOWUP = """table: contacts
key: id
child: true
steps:
  - id: mark
    set: {note: "'noted ' || first_name"}
  - id: draft
    ai: {provider: demo, model: echo-1, prompt: "Hello {{ first_name }}", output: draft}
  - id: send
    send: {channel: outbox, to: "{{ email }}", text: "{{ draft }}"}
"""


def _project(tmp_path: Path, spinners: dict[str, str]) -> Path:
    root = write_project(tmp_path / "proj", spinners, {"contacts": CONTACTS})
    (root / "cxrun.yaml").write_text(CONFIG)
    return root


@pytest.fixture
def at(cli, monkeypatch):  # type: ignore[no-untyped-def]
    """at("2026-11-22T10:00:00Z", root, "run-now", ...): the CLI at a fixed time."""

    def invoke(moment: str, root: Path, *args: str):  # type: ignore[no-untyped-def]
        monkeypatch.setenv("CXRUN_NOW", moment)
        return cli(root, *args)

    return invoke


def _json(result) -> object:  # type: ignore[no-untyped-def]
    assert result.stdout, result
    return json.loads(result.stdout)


def _records(at, root: Path, moment: str) -> dict[str, dict]:  # type: ignore[no-untyped-def,type-arg]
    return {r["record"]: r for r in _json(at(moment, root, "records", "1", "--json"))}  # type: ignore[union-attr]


T0 = "2026-11-23T10:00:00Z"  # a Monday


def test_waits_approvals_and_a_child_end_to_end(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    root = _project(tmp_path, {"flow": FLOW, "followup": FOLLOWUP})
    assert at(T0, root, "publish").code == 0
    started = at(T0, root, "run-now", "flow", "--json")
    assert started.code == 6, started  # waiting: not finished
    job = _json(started)
    assert job["status"] == "waiting"  # type: ignore[index]
    assert job["waiting"] == 5  # type: ignore[index]
    assert "3 awaiting approval" in job["reason"]  # type: ignore[index]
    assert "until 2026-11-23T11:00:00Z" in job["reason"]  # type: ignore[index]

    pending = _json(at(T0, root, "approvals", "--json"))
    assert [(p["record"], p["prompt"]) for p in pending] == [  # type: ignore[index,union-attr]
        ("1", "Send to ada@example.org?"),
        ("3", "Send to ?"),
        ("5", "Send to barbara@example.org?"),
    ]
    # Approve one, reject one, and answer the first one again: a no-op that says so.
    assert at(T0, root, "approve", "1", "1").code == 0
    again = at(T0, root, "approve", "1", "1")
    assert again.code == 0 and "answered already: approved by an operator" in again.stdout
    assert at(T0, root, "reject", "1", "--where", "id = 3").code == 0
    records = _records(at, root, T0)
    assert records["3"]["status"] == "skipped"
    assert records["3"]["error"] == "rejected by an operator"
    assert records["1"]["status"] == "waiting"  # approved, now at the 1h wait
    assert at(T0, root, "reject", "1", "3").stdout.count("answered already") == 1

    # Half an hour on, a runtime continues nothing: the deadline holds.
    half = at("2026-11-23T10:30:00Z", root, "runtime", "--once")
    assert half.code == 0
    assert _records(at, root, T0)["2"]["status"] == "waiting"
    # After the hour, the runtime continues the due records: through the child to the end.
    assert at("2026-11-23T11:00:01Z", root, "runtime", "--once").code == 0
    records = _records(at, root, T0)
    assert {k: r["status"] for k, r in records.items()} == {
        "1": "completed",
        "2": "completed",
        "3": "skipped",
        "4": "completed",
        "5": "waiting",  # still awaiting approval
    }
    assert records["1"]["outputs"] == {
        "follow": {"note": "noted Ada", "draft": "[echo-1] Hello Ada"}
    }
    journey = _json(at(T0, root, "journey", "1", "1", "--json"))
    steps = [(e["step"], e["status"], e["parent"]) for e in journey]  # type: ignore[index,union-attr]
    assert steps == [
        ("hello", "completed", None),
        ("check", "completed", None),
        ("pause", "completed", None),
        ("follow", "completed", None),
        ("follow.mark", "completed", "follow"),
        ("follow.draft", "completed", "follow"),
        ("follow.send", "completed", "follow"),
        ("after", "completed", None),
    ]
    pause = journey[2]  # type: ignore[index]
    assert pause["started_at"] == "2026-11-23T10:00:00Z"  # type: ignore[index]
    assert pause["duration_ms"] == pytest.approx(3_601_000)  # type: ignore[index]
    job = _json(at(T0, root, "job", "1", "--json"))
    assert job["status"] == "waiting" and job["waiting"] == 1  # type: ignore[index]

    assert at(T0, root, "approve", "1", "--all").code == 0
    job = _json(at(T0, root, "job", "1", "--json"))
    # Approved now, record 5 waits its hour; then the job completes with one skipped.
    assert job["status"] == "waiting"  # type: ignore[index]
    at("2026-11-23T12:00:00Z", root, "runtime", "--once")
    job = _json(at(T0, root, "job", "1", "--json"))
    assert (job["status"], job["completed"], job["skipped"]) == ("completed", 4, 1)  # type: ignore[index]
    outbox = _json(at(T0, root, "outbox", "--json"))
    assert len(outbox) == 4  # type: ignore[arg-type]  # one message each, none twice


def test_an_approval_timeout_answers_for_the_operator(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spinner = """table: contacts
key: id
steps:
  - id: first
    approval: {prompt: "go?", timeout: 2h, on_timeout: approve}
  - id: second
    approval: {prompt: "really?", timeout: 1h}
"""
    root = _project(tmp_path, {"gate": spinner})
    assert at(T0, root, "publish").code == 0
    assert at(T0, root, "run-now", "gate").code == 6
    at("2026-11-23T12:00:00Z", root, "runtime", "--once")  # the first times out: approved
    at("2026-11-23T13:00:00Z", root, "runtime", "--once")  # the second: rejected
    journey = _json(at(T0, root, "journey", "1", "2", "--json"))
    assert [(e["step"], e["status"], e["message"]) for e in journey] == [  # type: ignore[index,union-attr]
        ("first", "completed", "approved: no answer before the approval timed out"),
        ("second", "skipped", "rejected: no answer before the approval timed out"),
    ]
    job = _json(at(T0, root, "job", "1", "--json"))
    assert (job["status"], job["skipped"]) == ("completed", 5)  # type: ignore[index]


def test_wait_until_an_expression_and_cancel_while_waiting(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spinner = """table: contacts
key: id
steps:
  - id: later
    wait: {until: "signup_date + INTERVAL 1 YEAR"}
  - id: done
    log: "done"
"""
    root = _project(tmp_path, {"anniv": spinner})
    at(T0, root, "publish")
    job = _json(at("2026-11-23T10:00:00Z", root, "run-now", "anniv", "--json"))
    # Signed up 2025-11-20: a year has passed; the others wait for their anniversary.
    assert (job["completed"], job["waiting"]) == (1, 4)  # type: ignore[index]
    assert "until 2027-01-10T00:00:00Z" in job["reason"]  # type: ignore[index]
    cancelled = _json(at(T0, root, "cancel", "1", "--json"))
    assert (cancelled["status"], cancelled["cancelled"], cancelled["waiting"]) == (  # type: ignore[index]
        "cancelled",
        4,
        0,
    )
    assert {r["status"] for r in _records(at, root, T0).values()} == {"completed", "cancelled"}


def test_eligible_window_holds_sends_until_it_opens(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spinner = """table: contacts
key: id
eligible: {days: mon-fri, hours: "09:00-18:00", timezone: Europe/Paris}
steps:
  - id: hello
    log: "hi"
  - id: send
    send: {channel: outbox, to: "{{ first_name }}", text: "hello"}
"""
    root = _project(tmp_path, {"office": spinner})
    at(T0, root, "publish")
    saturday = "2026-11-28T12:00:00Z"
    job = _json(at(saturday, root, "run-now", "office", "--json"))
    assert (job["status"], job["waiting"]) == ("waiting", 5)  # type: ignore[index]
    assert "until 2026-11-30T08:00:00Z" in job["reason"]  # type: ignore[index]  # Monday 09:00 Paris
    journey = _json(at(saturday, root, "journey", "1", "1", "--json"))
    assert journey[-1]["status"] == "waiting"  # type: ignore[index]
    assert "outside the eligible window" in journey[-1]["message"]  # type: ignore[index]
    at("2026-11-30T07:59:00Z", root, "runtime", "--once")
    assert _json(at(saturday, root, "job", "1", "--json"))["status"] == "waiting"  # type: ignore[index]
    at("2026-11-30T08:00:30Z", root, "runtime", "--once")
    job = _json(at(saturday, root, "job", "1", "--json"))
    assert (job["status"], job["completed"]) == ("completed", 5)  # type: ignore[index]
    assert len(_json(at(saturday, root, "outbox", "--json"))) == 5  # type: ignore[arg-type]


def test_a_child_failure_surfaces_in_the_parent_and_retries_there(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    child = """table: contacts
key: id
child: true
steps:
  - id: parse
    set: {n: "CAST(email AS INTEGER)"}
"""
    parent = """table: contacts
key: id
steps:
  - id: enrich
    call: numbers
"""
    root = _project(tmp_path, {"parent": parent, "numbers": child})
    assert at(T0, root, "publish").code == 0
    result = at(T0, root, "run-now", "parent", "--json")
    job = _json(result)
    assert job["status"] == "partial"  # type: ignore[index]  # four addresses are not numbers
    journey = _json(at(T0, root, "journey", "1", "1", "--json"))
    call, parse = journey  # type: ignore[misc]
    assert call["step"] == "enrich" and call["status"] == "failed"
    assert call["error"].startswith("child spinner numbers failed at step enrich.parse: ")
    assert (parse["step"], parse["status"], parse["parent"]) == ("enrich.parse", "failed", "enrich")
    record = _records(at, root, T0)["1"]
    assert record["failed_step"] == "enrich.parse"
    # A child cannot be run by hand.
    refused = at(T0, root, "run-now", "numbers")
    assert refused.code == 2 and "child spinner" in refused.stderr


def test_calls_are_checked_at_publish(at, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    parent = """table: contacts
key: id
steps:
  - id: a
    call: nowhere
  - id: b
    call: plain
"""
    plain = """table: contacts
key: id
steps:
  - id: x
    log: "x"
"""
    root = _project(tmp_path, {"parent": parent, "plain": plain})
    result = at(T0, root, "validate", "parent")
    assert result.code == 2
    assert "steps[0].call: unknown spinner 'nowhere'" in result.stderr
    assert "steps[1].call: spinner 'plain' is not a child spinner" in result.stderr


def test_a_runtime_restart_keeps_the_deadline(run, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    spinner = """table: contacts
key: id
steps:
  - id: pause
    wait: 2d
  - id: done
    log: "done"
"""
    root = _project(tmp_path, {"slow": spinner})
    env = {"CXRUN_NOW": T0}
    assert run(root, "publish", env=env).code == 0
    assert run(root, "run-now", "slow", "--detach", env=env).code == 0
    assert run(root, "runtime", "--once", env=env).code == 0  # runs it: everyone parks
    for moment in ("2026-11-24T10:00:00Z", "2026-11-25T09:59:59Z"):  # restarts, not due yet
        assert run(root, "runtime", "--once", env={"CXRUN_NOW": moment}).code == 0
        job = json.loads(run(root, "job", "1", "--json", env=env).stdout)
        assert (job["status"], job["waiting"]) == ("waiting", 5)
        assert "until 2026-11-25T10:00:00Z" in job["reason"]
    assert run(root, "runtime", "--once", env={"CXRUN_NOW": "2026-11-25T10:00:00Z"}).code == 0
    job = json.loads(run(root, "job", "1", "--json", env=env).stdout)
    assert (job["status"], job["completed"]) == ("completed", 5)


def test_windows_in_a_time_zone_across_dst() -> None:
    window = windows.parse({"days": "mon-fri", "hours": "09:00-18:00", "timezone": "Europe/Paris"})
    friday_evening = datetime(2026, 3, 27, 17, 30, tzinfo=UTC)  # 18:30 in Paris (UTC+1)
    assert not windows.inside(window, friday_evening)
    # Monday after the spring change: 09:00 in Paris is 07:00 UTC (UTC+2).
    assert windows.next_open(window, friday_evening) == datetime(2026, 3, 30, 7, 0, tzinfo=UTC)
    assert windows.inside(window, datetime(2026, 3, 30, 7, 0, tzinfo=UTC))
    night = windows.parse({"days": "fri", "hours": "22:00-06:00"})
    assert windows.inside(night, datetime(2026, 11, 28, 5, 0, tzinfo=UTC))  # Saturday 05:00
    assert not windows.inside(night, datetime(2026, 11, 28, 22, 30, tzinfo=UTC))
    with pytest.raises(ValueError, match="timezone"):
        windows.parse({"hours": "09:00-18:00", "timezone": "Mars/Base"})
    with pytest.raises(ValueError, match="days"):
        windows.parse({"hours": "09:00-18:00", "days": "mon-fry"})


def test_many_records_answered_before_are_told_in_one_line_per_answer() -> None:
    from cxrun.cli.answers import _already_answered

    few = [("1", "approved by an operator")]
    assert _already_answered(few) == ["record 1 was answered already: approved by an operator"]
    many = [(str(n), "approved by an operator") for n in range(1, 41)] + [("41", "timed out")]
    assert _already_answered(many) == [
        "40 records were answered already: approved by an operator (1, 2, 3, ...)",
        "1 record was answered already: timed out (41)",
    ]


def test_a_deadline_past_the_year_9999_fails_its_record_instead_of_waiting(
    at, tmp_path: Path
) -> None:  # type: ignore[no-untyped-def]
    spinner = """table: contacts
key: id
steps:
  - id: later
    wait: {until: "signup_date + INTERVAL (id * 3000) YEAR"}
  - id: done
    log: "done"
"""
    root = _project(tmp_path, {"far": spinner})
    at(T0, root, "publish")
    result = at(T0, root, "run-now", "far", "--json")
    assert result.code == 6, result  # ids 1 and 2 wait (years 5000s and 8000s); 3-5 cannot
    job = _json(result)
    assert (job["waiting"], job["failed"]) == (2, 3)  # type: ignore[index]
    records = _records(at, root, T0)
    assert (
        records["3"]["error"].startswith("wait until 11")
        and "past the year 9999" in records["3"]["error"]
    )
    assert at(T0, root, "jobs", "--json").code == 0  # every stored deadline reads back


def test_a_job_whose_run_raises_fails_with_its_reason_and_is_not_claimed_again(
    tmp_path: Path,
) -> None:
    from cxrun import ops
    from cxrun.base import owners
    from cxrun.ops import publishing, runs, views
    from cxrun.runtime import worker

    root = _project(tmp_path, {"far": "table: contacts\nkey: id\nsteps:\n  - id: a\n    log: a\n"})
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    runs.run_now(ctx, "far", detach=True)
    owner = owners.new_owner("runtime")
    taken = worker.claim_next(ctx.state, owner, set(), owners.LEASE)
    assert taken is not None and taken.job == 1
    said = worker._give_up(ctx.state, owner, 1, RuntimeError("boom"))
    assert said == "failed: stopped by an error: RuntimeError: boom"
    job = views.job(ctx, 1)
    assert (job.status, job.reason) == ("failed", "stopped by an error: RuntimeError: boom")
    assert worker.claim_next(ctx.state, owner, set(), owners.LEASE) is None
