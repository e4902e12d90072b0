"""The example project in the repository: every spinner validates, publishes and runs."""

from __future__ import annotations

import json


def test_example_spinners_validate_publish_and_run(example_project, cli):
    assert cli(example_project, "validate").code == 0
    published = cli(example_project, "publish", "--json")
    assert published.code == 0, published
    names = {p["spinner"] for p in json.loads(published.stdout)}
    assert names == {"welcome", "lead-triage", "ai-welcome", "vip-followup", "thank-you"}
    for name in ("ai-welcome", "lead-triage", "welcome"):
        result = cli(example_project, "run-now", name, "--json")
        job = json.loads(result.stdout)
        assert job["status"] in ("completed", "partial")
        assert result.code == (0 if job["status"] == "completed" else 3)
        assert job["completed"] + job["failed"] == job["total"] > 0


def test_example_followup_waits_for_approval_then_runs_its_child(example_project, cli, monkeypatch):
    monkeypatch.setenv("CXRUN_NOW", "2026-11-23T10:00:00Z")  # a Monday, inside the window
    assert cli(example_project, "publish").code == 0
    assert cli(example_project, "run-now", "thank-you").code == 2  # a child: never by hand
    started = cli(example_project, "run-now", "vip-followup", "--json")
    job = json.loads(started.stdout)
    assert started.code == 6 and job["status"] == "waiting" and job["waiting"] == job["total"]
    assert cli(example_project, "approve", str(job["job"]), "--all").code == 0
    monkeypatch.setenv("CXRUN_NOW", "2026-11-25T10:00:00Z")
    assert cli(example_project, "runtime", "--once").code == 0
    done = json.loads(cli(example_project, "job", str(job["job"]), "--json").stdout)
    assert (done["status"], done["completed"]) == ("completed", job["total"])
    sent = json.loads(cli(example_project, "outbox", "--json", "--limit", "500").stdout)
    assert len(sent) == job["total"]


def test_example_schedule_and_event(example_project, cli, monkeypatch):
    monkeypatch.setenv("CXRUN_NOW", "2026-11-23T07:00:00Z")  # Monday 08:00 in Paris
    assert cli(example_project, "publish").code == 0
    monkeypatch.setenv("CXRUN_NOW", "2026-11-23T08:00:30Z")  # 09:00:30 in Paris: due
    ticked = cli(example_project, "schedule", "tick", "--json")
    assert ticked.code == 0, ticked
    jobs = json.loads(cli(example_project, "jobs", "--json").stdout)
    assert [(j["spinner"], j["trigger"], j["status"]) for j in jobs] == [
        ("welcome", "schedule", "partial")
    ]
    assert cli(example_project, "schedule", "tick").code == 0  # the same minute: nothing new
    event = '{"id": 1006, "email": "olivia.girard1006@example.org"}'
    started = cli(
        example_project, "trigger", "contact.created", "--payload", "-", "--json", input=event
    )
    assert started.code == 0, started
    assert len(json.loads(cli(example_project, "jobs", "--json").stdout)) == 2
    bad = cli(example_project, "trigger", "contact.created", "--payload", "-", input='{"id": "x"}')
    assert bad.code == 2
