"""Bulk actions under `cxrun serve`: the API's plan (nothing changes) and act, held to the OpenAPI
document; the jobs filters of GET /jobs; the console's bulk buttons and confirm page, with its
CSRF token, its scope, and only the jobs the operator saw acted on."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx
from apiserver import answer, command, follow, make_keys, poll, serving
from conftest import CONTACTS, WELCOME, write_project
from consoleweb import page, signed_in, token
from test_api_openapi import FLAKY, GATE, conforms

BULK = {"retry": "/jobs/bulk/retry", "cancel": "/jobs/bulk/cancel", "resume": "/jobs/bulk/resume"}


def bulk(client: httpx.Client, action: str, code: int, **body: Any) -> Any:
    """POST /jobs/bulk/ACTION with `body`, answering `code` with a body that fits the
    document."""
    response = client.post(BULK[action], json=body)
    assert response.status_code == code, response.text
    return conforms(response, "POST", BULK[action])


def job_status(root: Path) -> dict[int, str]:
    listed = command(root, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    return {job["job"]: job["status"] for job in json.loads(listed.stdout)}


def test_the_api_answers_the_plan_then_acts(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", {"flaky": FLAKY, "gate": GATE}, {"contacts": CONTACTS})
    (root / "cxrun.yaml").write_text("name: api\nproviders:\n  demo: {kind: echo}\n")
    assert command(root, "publish").returncode == 0
    for name in ("flaky", "flaky", "gate", "gate"):  # jobs 1, 2 partial; 3, 4 waiting
        assert command(root, "run-now", name).returncode in (3, 6)
    keys = make_keys(root, {"ops": ("read", "control"), "viewer": ("read",)})
    with serving(root) as served:
        ops, viewer = served.client(keys["ops"]), served.client(keys["viewer"])
        plan = bulk(ops, "retry", 200, spinner="flaky", status="partial")
        assert (plan["confirmed"], plan["records"], plan["results"]) == (False, 2, [])
        assert [job["job"] for job in plan["jobs"]] == [1, 2] and plan["runtime"] == "up"
        assert job_status(root) == {1: "partial", 2: "partial", 3: "waiting", 4: "waiting"}

        done = bulk(ops, "retry", 200, spinner="flaky", status="partial", jobs=[1], confirm=True)
        assert done["confirmed"] is True and done["refused"] == []
        assert [(r["job"], r["ok"], r["status"]) for r in done["results"]] == [(1, True, "queued")]
        assert poll(lambda: follow(ops, 1), lambda job: job["status"] == "partial")
        for job, attempts in ((1, [1, 2]), (2, [1])):  # job 2 was not among the jobs confirmed
            journey = answer(ops.get(f"/jobs/{job}/records/4/journey"), 200)
            assert [e["attempt"] for e in journey if e["step"] == "boom"] == attempts

        cancelled = bulk(ops, "cancel", 200, status="waiting", since="1h", confirm=True)
        assert [(r["job"], r["status"]) for r in cancelled["results"]] == [
            (3, "cancelled"),
            (4, "cancelled"),
        ]
        none = bulk(ops, "resume", 200, status="paused", reason="credentials", confirm=True)
        assert (none["matched"], none["jobs"], none["results"]) == (0, [], [])

        for body, error in (
            ({}, "a bulk action needs at least one filter"),
            ({"since": "soon"}, "since='soon' is neither a duration nor an ISO date or time"),
            ({"status": "done"}, "status='done' is not one of"),
            ({"status": "partial", "jobs": [1, "2"]}, "field 'jobs' must be a list of job"),
            ({"status": "partial", "everything": True}, "unknown field 'everything'"),
        ):
            assert error in bulk(ops, "retry", 400, **body)["error"]
        assert viewer.post(BULK["cancel"], json={"status": "queued"}).status_code == 403

        by_trigger = answer(ops.get("/jobs", params={"trigger": "manual", "since": "1h"}), 200)
        assert [job["job"] for job in by_trigger] == [4, 3, 2, 1]
        assert answer(ops.get("/jobs", params={"trigger": "event"}), 200) == []
        assert answer(ops.get("/jobs", params={"reason": "OPERATOR"}), 200)[0]["job"] == 4
        assert "since" in answer(ops.get("/jobs", params={"since": "x"}), 400)["error"]
        assert "trigger" in answer(ops.get("/jobs", params={"trigger": "x"}), 400)["error"]


def test_the_console_confirms_the_counts_and_acts_on_those_jobs(tmp_path: Path) -> None:
    other = WELCOME.replace("name: welcome", "name: other")
    root = write_project(tmp_path / "p", {"welcome": WELCOME, "other": other})
    assert command(root, "publish").returncode == 0
    for name in ("welcome", "welcome", "other"):  # jobs 1 to 3, queued (no runtime)
        assert command(root, "run-now", name, "--detach").returncode == 0
    keys = make_keys(root, {"operator": ("read", "control"), "viewer": ("read",)})
    with serving(root, "--no-runtime") as served:
        operator, viewer = signed_in(served, keys["operator"]), signed_in(served, keys["viewer"])
        assert "these" not in page(operator, "/")  # no filter, no bulk button
        jobs = page(operator, "/?status=queued&spinner=welcome", secret=keys["operator"])
        assert 'href="/bulk/cancel?status=queued&amp;spinner=welcome"' in jobs
        assert "Cancel these 2 jobs" in jobs and "Retry failed" not in jobs

        confirm = page(operator, "/bulk/cancel?status=queued&spinner=welcome")
        assert "cancel: 2 jobs (1, 2), 10 unfinished records" in confirm
        assert 'name="jobs" value="1,2"' in confirm and "Yes, cancel 2 jobs" in confirm
        form = {"csrf": token(confirm), "jobs": "1,2", "status": "queued", "spinner": "welcome"}
        assert command(root, "run-now", "welcome", "--detach").returncode == 0  # job 4, unseen

        for client, sent in (
            (operator, {**form, "csrf": "0" * 64}),  # a wrong token
            (viewer, {**form, "csrf": token(page(viewer, "/"))}),  # no control scope
        ):
            refused = client.post("/bulk/cancel", data=sent)
            assert refused.status_code == 403, refused.text
        assert job_status(root) == {1: "queued", 2: "queued", 3: "queued", 4: "queued"}

        done = operator.post("/bulk/cancel", data=form)
        assert done.status_code == 200, done.text
        assert "Cancel: 2 of 2 jobs done" in done.text and "s-cancelled" in done.text
        assert job_status(root) == {1: "cancelled", 2: "cancelled", 3: "queued", 4: "queued"}

        assert command(root, "pause", "3").returncode == 0
        paused = page(operator, "/?status=paused")
        assert "Resume this 1 job" in paused and "Cancel this 1 job" in paused
        nothing = page(operator, "/bulk/resume?status=queued")
        assert "no queued jobs to resume: 1 match, but resume takes only a job that is" in nothing
        assert "needs at least one filter" in page(operator, "/bulk/cancel", 400)
        page(operator, "/bulk/everything?status=queued", 404)
