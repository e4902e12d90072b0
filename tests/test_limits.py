"""Plan limits: jobs and records a month, refused with exit 4 before anything starts; `usage`."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import WELCOME, set_now, write_project

NOV = {"CXRUN_NOW": "2026-11-22T10:00:00Z"}

EVENTFUL = WELCOME.replace(
    "steps:", "triggers:\n  - event: ping\n  - schedule: '0 * * * *'\nsteps:"
)
STRICT = """table: contacts
key: id
triggers:
  - event: ping
    schema: {type: object, required: [id], properties: {id: {type: integer}}}
steps:
  - id: hello
    log: "Hello"
"""


def limited(tmp_path: Path, limits: str, spinners: dict[str, str] | None = None) -> Path:
    root = write_project(tmp_path / "p", spinners or {"welcome": EVENTFUL})
    (root / "cxrun.yaml").write_text(f"name: test\nlimits: {limits}\n")
    return root


def state_of(run, root: Path, env: dict[str, str] = NOV) -> tuple[list[dict], dict]:
    jobs = run(root, "jobs", "--json", env=env)
    usage = run(root, "usage", "--json", env=env)
    assert jobs.code == 0 and usage.code == 0, (jobs, usage)
    return json.loads(jobs.stdout), json.loads(usage.stdout)


def test_a_run_over_the_records_limit_is_refused_and_changes_nothing(tmp_path, run):
    root = limited(tmp_path, "{records_per_month: 7}")
    assert run(root, "publish", env=NOV).code == 0
    assert run(root, "run-now", "welcome", env=NOV).code == 3  # 5 records, one without email
    before = state_of(run, root)
    refused = run(root, "run-now", "welcome", env=NOV)
    assert refused.code == 4, refused
    assert refused.stderr.splitlines() == [
        "error: plan limit reached: records_per_month is 7; 5 used this month and this job needs 5",
        "  the count resets on 2026-12-01; raise limits in cxrun.yaml",
    ]
    assert run(root, "run-now", "welcome", "--detach", env=NOV).code == 4
    assert state_of(run, root) == before
    assert run(root, "run-now", "welcome", "--limit", "2", env=NOV).code == 0  # 5 + 2 <= 7
    retried = run(root, "retry", "1", env=NOV)  # retries are not new starts
    assert retried.code == 3, retried


def test_the_jobs_limit_refuses_an_event_whole_and_the_count_resets_next_month(
    tmp_path, cli, monkeypatch
):
    set_now(monkeypatch, NOV["CXRUN_NOW"])
    root = limited(tmp_path, "{jobs_per_month: 1}")
    assert cli(root, "publish").code == 0
    assert cli(root, "trigger", "ping", "--id", "e1").code == 3
    refused = cli(root, "trigger", "ping", "--id", "e2")
    assert refused.code == 4, refused
    assert "plan limit reached: jobs_per_month is 1; 1 used this month" in refused.stderr
    assert len(json.loads(cli(root, "jobs", "--json").stdout)) == 1
    assert json.loads(cli(root, "usage", "--json").stdout) == {
        "month": "2026-11",
        "jobs": {"used": 1, "limit": 1},
        "records": {"used": 5, "limit": None},
        "resets_on": "2026-12-01",
    }
    set_now(monkeypatch, "2026-12-01T00:00:00Z")
    again = cli(root, "trigger", "ping", "--id", "e2")  # a refused event was not recorded
    assert again.code == 3, again
    assert len(json.loads(cli(root, "jobs", "--json").stdout)) == 2
    usage = json.loads(cli(root, "usage", "--json").stdout)
    assert usage["jobs"]["used"] == 1 and usage["month"] == "2026-12"


def test_a_refused_schedule_fire_is_reported_and_not_retried(tmp_path, cli, monkeypatch):
    root = limited(tmp_path, "{jobs_per_month: 1}")

    def at(when: str, *args: str):
        set_now(monkeypatch, when)
        return cli(root, *args)

    assert at("2026-11-22T07:30:00Z", "publish").code == 0
    assert at("2026-11-22T08:00:10Z", "schedule", "tick").code == 0
    tick = at("2026-11-22T09:00:10Z", "schedule", "tick", "--json")
    assert tick.code == 4, tick
    fired = json.loads(tick.stdout)["fired"]
    assert [(f["due_at"], f["outcome"], f["job"]) for f in fired] == [
        ("2026-11-22T09:00:00Z", "refused", None)
    ]
    assert "plan limit reached: jobs_per_month is 1" in fired[0]["message"]
    again = at("2026-11-22T09:00:40Z", "schedule", "tick")
    assert again.code == 0 and "no schedule is due" in again.stdout
    listed = json.loads(at("2026-11-22T09:01:00Z", "schedule", "list", "--json").stdout)
    assert listed[0]["last_outcome"] == "refused" and listed[0]["last_job"] is None
    assert len(json.loads(cli(root, "jobs", "--json").stdout)) == 1


def test_invalid_payloads_do_not_count(tmp_path, cli, monkeypatch):
    set_now(monkeypatch, NOV["CXRUN_NOW"])
    root = limited(tmp_path, "{jobs_per_month: 1, records_per_month: 100}", {"strict": STRICT})
    assert cli(root, "publish").code == 0
    bad = cli(root, "trigger", "ping", "--payload", "-", input='{"id": "x"}')
    assert bad.code == 2, bad
    usage = json.loads(cli(root, "usage", "--json").stdout)
    assert usage["jobs"]["used"] == 0
    good = cli(root, "trigger", "ping", "--payload", "-", input='{"id": 1}')
    assert good.code == 0, good
    assert json.loads(cli(root, "usage", "--json").stdout)["jobs"] == {"used": 1, "limit": 1}


@pytest.mark.parametrize(
    ("when", "month", "resets"),
    [
        ("2026-11-30T23:59:59Z", "2026-11", "2026-12-01"),
        ("2026-12-31T23:00:00Z", "2026-12", "2027-01-01"),
    ],
)
def test_usage_counts_the_utc_calendar_month(tmp_path, cli, monkeypatch, when, month, resets):
    set_now(monkeypatch, when)
    root = limited(tmp_path, "{records_per_month: 10}")
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", "welcome").code == 3
    usage = json.loads(cli(root, "usage", "--json").stdout)
    assert usage == {
        "month": month,
        "jobs": {"used": 1, "limit": None},
        "records": {"used": 5, "limit": 10},
        "resets_on": resets,
    }
    text = cli(root, "usage")
    assert text.code == 0 and f"the counts reset on {resets}" in text.stdout


def test_no_limits_means_no_refusals(tmp_path, cli):
    root = write_project(tmp_path / "p")
    assert cli(root, "publish").code == 0
    for _ in range(3):
        assert cli(root, "run-now", "welcome", "--detach").code == 0
    usage = json.loads(cli(root, "usage", "--json").stdout)
    assert usage["jobs"] == {"used": 3, "limit": None}
