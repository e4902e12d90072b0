"""Schedule control: `cxrun schedule pause|resume|remove`, kept in the state file. A paused
schedule fires nothing across ticks (`schedule tick` and a runtime's own), a resume catches up
by the schedule's rule, a removal lasts until a publish makes a new version that has it; the
command's errors; the API's endpoints against `cxrun serve`, and the console's Schedules page."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from apiserver import make_keys, poll, serving
from conftest import set_now, write_project
from consoleweb import page, signed_in, token
from test_api_openapi import conforms
from test_schedules import SPINNER, at, fired_jobs, publish

from cxrun import ops
from cxrun.triggers import schedules

TRIGGERS = (  # trigger 1 is an event: the schedules are triggers 2 and 3
    "  - {event: ping}\n"
    "  - {schedule: '0 * * * *', catchup: CATCHUP}\n"
    "  - {schedule: '30 9 * * *', timezone: Europe/Paris}"
)


def project(tmp_path: Path, catchup: str = "all", name: str = "hourly") -> Path:
    body = SPINNER.format(triggers=TRIGGERS.replace("CATCHUP", catchup))
    return write_project(tmp_path / "p", {name: body, "plain": SPINNER.format(triggers="  []")})


def dues(ctx: ops.Context, since: int = 0) -> list[str]:
    """The due times of the schedule jobs started so far, from the `since`-th on."""
    return [str(j["due_at"])[11:16] for j in fired_jobs(ctx)][since:]


@pytest.fixture
def at_time(cli, monkeypatch):  # type: ignore[no-untyped-def]
    """`at_time(root, WHEN, *args)`: the in-process CLI with the clock fixed at WHEN (UTC)."""

    def invoke(root: Path, when: str, *args: str):  # type: ignore[no-untyped-def]
        set_now(monkeypatch, when)
        try:
            return cli(root, *args)
        finally:
            set_now(monkeypatch, None)

    return invoke


def listed(at_time, root: Path, when: str, *args: str) -> dict[int, dict[str, object]]:  # type: ignore[no-untyped-def]
    """`cxrun schedule ARGS --json` at `when`: the schedules it shows, by trigger number."""
    done = at_time(root, when, "schedule", *args, "--json")
    assert done.code == 0, done
    return {int(s["trigger"]): s for s in json.loads(done.stdout) if s["spinner"] == "hourly"}


# ---- pause and resume ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("catchup", "after_resume"),
    [("all", ["14:00", "15:00", "16:00", "17:00"]), ("one", ["17:00"]), ("skip", [])],
)
def test_a_paused_schedule_fires_nothing_and_resume_catches_up_by_its_rule(
    tmp_path, monkeypatch, at_time, catchup, after_resume
):
    root = project(tmp_path, catchup)
    ctx = publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    schedules.fire_due(ctx, at("2026-11-22T13:00:10"))
    assert dues(ctx) == ["13:00"]

    paused = listed(at_time, root, "2026-11-22T13:20:00Z", "pause", "hourly", "--trigger", "2")
    assert set(paused) == {2} and paused[2]["state"] == "paused"
    assert paused[2]["state_since"] == "2026-11-22T13:20:00Z" and paused[2]["next_fire"] is None
    for tick in ("14:00:10", "15:00:10", "16:00:10", "17:00:10", "17:10:00"):
        assert schedules.fire_due(ctx, at(f"2026-11-22T{tick}")) == []
    again = listed(at_time, root, "2026-11-22T17:15:00Z", "pause", "hourly", "--trigger", "2")
    assert again[2]["state_since"] == "2026-11-22T13:20:00Z"  # a pause keeps its first moment

    resumed = listed(at_time, root, "2026-11-22T17:20:00Z", "resume", "hourly")
    assert {n: s["state"] for n, s in resumed.items()} == {2: "active", 3: "active"}
    assert resumed[2]["next_fire"] == "2026-11-22T18:00:00Z"
    schedules.fire_due(ctx, at("2026-11-22T17:21:00"))
    assert dues(ctx, 1) == after_resume

    # Paused again and resumed a minute after a due time: even `skip` fires it (the window).
    listed(at_time, root, "2026-11-22T17:30:00Z", "pause", "hourly")
    assert schedules.fire_due(ctx, at("2026-11-22T18:00:30")) == []
    listed(at_time, root, "2026-11-22T18:01:00Z", "resume", "hourly", "--trigger", "2")
    assert [f.outcome for f in schedules.fire_due(ctx, at("2026-11-22T18:01:30"))] == ["started"]
    assert dues(ctx, 1 + len(after_resume)) == ["18:00"]


def test_the_tick_and_a_runtime_skip_a_paused_schedule_in_other_processes(
    tmp_path, monkeypatch, run
):
    """The state is in the file: `schedule tick` and `cxrun runtime --once`, each its own
    process, leave a paused schedule alone and fire it once resumed."""
    root = project(tmp_path, "one")
    ctx = publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    tick = {"CXRUN_NOW": "2026-11-22T15:00:20Z"}
    assert (
        run(root, "schedule", "pause", "hourly", env={"CXRUN_NOW": "2026-11-22T12:40:00Z"}).code
        == 0
    )
    for _ in range(3):
        done = run(root, "schedule", "tick", "--json", env=tick)
        assert done.code == 0 and json.loads(done.stdout) == {"fired": [], "ran": 0}, done
    runtime = run(root, "runtime", "--once", env=tick)
    assert runtime.code == 0 and "queued" not in runtime.stderr, runtime.stderr
    shown = json.loads(run(root, "schedule", "list", "--json", env=tick).stdout)
    assert [(s["trigger"], s["state"]) for s in shown if s["spinner"] == "hourly"] == [
        (2, "paused"),
        (3, "paused"),
    ]
    assert run(root, "schedule", "resume", "hourly", env=tick).code == 0
    runtime = run(root, "runtime", "--once", env=tick)
    assert "due 2026-11-22T15:00:00Z: job 1 queued" in runtime.stderr, runtime.stderr
    assert dues(ctx) == ["15:00"]


# ---- remove ------------------------------------------------------------------------------


def test_a_removed_schedule_stays_off_until_a_new_version_counting_from_its_publish(
    tmp_path, monkeypatch, at_time
):
    root = project(tmp_path, "all")
    ctx = publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    schedules.fire_due(ctx, at("2026-11-22T13:00:10"))
    removed = listed(at_time, root, "2026-11-22T13:30:00Z", "remove", "hourly", "--trigger", "2")
    assert removed[2]["state"] == "removed" and removed[2]["state_since"] == "2026-11-22T13:30:00Z"
    refused = at_time(
        root, "2026-11-22T13:31:00Z", "schedule", "resume", "hourly", "--trigger", "2"
    )
    assert refused.code == 2, refused
    assert "schedule 2 of spinner 'hourly' is removed: nothing to resume" in refused.stderr
    assert "publishes a new version that has it" in refused.stderr
    assert at_time(root, "2026-11-22T13:32:00Z", "schedule", "pause", "hourly").code == 0
    shown = listed(at_time, root, "2026-11-22T13:33:00Z", "list")
    assert (shown[2]["state"], shown[3]["state"]) == ("removed", "paused")  # removed stays so

    assert schedules.fire_due(ctx, at("2026-11-22T16:00:10")) == []
    assert at_time(root, "2026-11-22T16:10:00Z", "publish").code == 0  # unchanged: no version
    assert listed(at_time, root, "2026-11-22T16:11:00Z", "list")[2]["state"] == "removed"
    spinner = root / "spinners" / "hourly.yaml"
    spinner.write_text(spinner.read_text().replace("Hello", "Hi"))
    assert at_time(root, "2026-11-22T16:20:00Z", "publish").code == 0  # version 2 has it
    back = listed(at_time, root, "2026-11-22T16:21:00Z", "list")
    assert back[2]["state"] == "active" and back[2]["since"] == "2026-11-22T16:20:00Z"
    assert back[3]["state"] == "paused"  # a pause is not lifted by a publish

    # Paused and resumed after it came back: still no catch-up of the time it was removed.
    listed(at_time, root, "2026-11-22T16:22:00Z", "pause", "hourly", "--trigger", "2")
    listed(at_time, root, "2026-11-22T16:23:00Z", "resume", "hourly", "--trigger", "2")
    assert schedules.fire_due(ctx, at("2026-11-22T16:30:00")) == []
    schedules.fire_due(ctx, at("2026-11-22T17:00:10"))
    assert dues(ctx) == ["13:00", "17:00"]


# ---- what the command says when it cannot -------------------------------------------------


def test_unknown_spinners_and_triggers_exit_2_saying_what_exists(tmp_path, monkeypatch, cli):
    root = project(tmp_path)
    publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    cases = [
        (("pause", "nope"), ["no published spinner 'nope'", "spinners with schedules: hourly"]),
        (("pause", "plain"), ["spinner 'plain' has no schedules (version 1)"]),
        (
            ("resume", "hourly", "--trigger", "1"),
            [
                "spinner 'hourly' has no schedule at trigger 1",
                "2 (0 * * * *, UTC), 3 (30 9 * * *, Europe/Paris)",
            ],
        ),
        (("remove", "hourly", "--trigger", "0"), ["0 is not in the range 1<=x<=1000000"]),
    ]
    for args, said in cases:
        done = cli(root, "schedule", *args)
        assert done.code == 2 and done.stdout == "", done
        assert all(part in done.stderr for part in said), done.stderr
        assert "Traceback" not in done.stderr
    shown = json.loads(cli(root, "schedule", "list", "--json").stdout)
    assert {s["state"] for s in shown} == {"active"}  # nothing changed


# ---- the API and the console -------------------------------------------------------------


EVERY_MINUTE = "  - {schedule: '* * * * *', catchup: one}"


def served_project(tmp_path: Path, run) -> Path:  # type: ignore[no-untyped-def]
    """`minutely` fires every minute (paused before the server starts), `hourly` as above;
    published an hour ago, so each has a due time to fire at once."""
    root = write_project(
        tmp_path / "p",
        {
            "minutely": SPINNER.format(triggers=EVERY_MINUTE),
            "hourly": SPINNER.format(triggers=TRIGGERS.replace("CATCHUP", "one")),
        },
    )
    hour_ago = (datetime.now(UTC) - timedelta(hours=1)).strftime("%Y-%m-%dT%H:%M:%SZ")
    published = run(root, "publish", env={"CXRUN_NOW": hour_ago})
    assert published.code == 0, published.stderr
    for name in ("minutely", "hourly"):
        assert run(root, "schedule", "pause", name).code == 0
    return root


def schedule_jobs(client) -> list[dict[str, object]]:  # type: ignore[no-untyped-def]
    listed = client.get("/jobs", params={"limit": 1000})
    assert listed.status_code == 200, listed.text
    return [j for j in listed.json() if j["trigger"] == "schedule"]


def test_the_api_lists_pauses_resumes_and_removes_schedules(tmp_path, run):
    root = served_project(tmp_path, run)
    keys = make_keys(root, {"ci": ("read", "control"), "viewer": ("read",)})
    with serving(root) as served:
        ci, viewer = served.client(keys["ci"]), served.client(keys["viewer"])

        def call(client, method: str, route: str, status: int, **options):  # type: ignore[no-untyped-def]
            name = options.pop("name", "hourly")
            response = client.request(method, route.format(name=name), **options)
            assert response.status_code == status, response.text
            return conforms(response, method, route)

        first = poll(lambda: ci.get("/live").json()["runtime"]["last_heartbeat_at"], bool)
        poll(lambda: ci.get("/live").json()["runtime"]["last_heartbeat_at"], lambda h: h != first)
        assert schedule_jobs(ci) == []  # the runtime ticked: the paused schedules fired nothing

        listing = call(viewer, "GET", "/schedules", 200)
        assert {(s["spinner"], s["trigger"], s["state"]) for s in listing} == {
            ("minutely", 1, "paused"),
            ("hourly", 2, "paused"),
            ("hourly", 3, "paused"),
        }
        call(viewer, "POST", "/schedules/{name}/resume", 403)
        call(ci, "POST", "/schedules/{name}/resume", 404, name="nope")
        call(ci, "POST", "/schedules/{name}/resume", 404, json={"trigger": 1})
        call(ci, "POST", "/schedules/{name}/resume", 400, json={"trigger": 0})
        call(ci, "POST", "/schedules/{name}/resume", 400, json={"trigger": "2"})
        removed = call(ci, "POST", "/schedules/{name}/remove", 200, json={"trigger": 3})
        assert [(s["trigger"], s["state"]) for s in removed] == [(3, "removed")]
        conflict = call(ci, "POST", "/schedules/{name}/resume", 409, json={"trigger": 3})
        assert "publishes a new version" in conflict["hint"]
        resumed = call(ci, "POST", "/schedules/{name}/resume", 200, name="minutely")
        assert [(s["trigger"], s["state"]) for s in resumed] == [(1, "active")]

        fired = poll(lambda: schedule_jobs(ci), lambda jobs: len(jobs) >= 1, seconds=30)
        assert {j["spinner"] for j in fired} == {"minutely"}  # catchup one: the latest minute
        paused = call(ci, "POST", "/schedules/{name}/pause", 200, name="minutely")
        assert paused[0]["state"] == "paused" and paused[0]["next_fire"] is None


@pytest.fixture
def console(tmp_path: Path, run):  # type: ignore[no-untyped-def]
    root = served_project(tmp_path, run)
    keys = make_keys(root, {"operator": ("read", "control"), "viewer": ("read",)})
    with serving(root, "--no-runtime") as served:
        yield served, keys


def test_the_console_pauses_and_resumes_schedules_with_its_token(console) -> None:  # type: ignore[no-untyped-def]
    served, keys = console
    web = signed_in(served, keys["operator"])
    shown = page(web, "/schedules", secret=keys["operator"])
    assert 'href="/schedules"' in shown and shown.count('class="button resume"') == 3
    assert 'action="/schedules/hourly/resume"' in shown
    form = {"csrf": token(shown), "trigger": "2"}

    refused = web.post("/schedules/hourly/resume", data={"trigger": "2"})
    assert refused.status_code == 403 and "security token" in refused.text
    reader = signed_in(served, keys["viewer"])
    denied = reader.post(
        "/schedules/hourly/resume", data={**form, "csrf": token(page(reader, "/schedules"))}
    )
    assert denied.status_code == 403
    bad = web.post("/schedules/hourly/resume", data={**form, "trigger": "x"})
    assert bad.status_code == 400

    done = web.post("/schedules/hourly/resume", data=form)
    assert done.status_code == 200, done.text
    assert "Schedule 2 of hourly resumed." in done.text
    assert done.text.count('class="button resume"') == 2 and 'class="button pause"' in done.text
    api = served.client(keys["operator"])
    states = {(s["spinner"], s["trigger"]): s["state"] for s in api.get("/schedules").json()}
    assert states == {("minutely", 1): "paused", ("hourly", 2): "active", ("hourly", 3): "paused"}

    paused = web.post("/schedules/hourly/pause", data=form)
    assert paused.status_code == 200 and "Schedule 2 of hourly paused." in paused.text
    states = {(s["spinner"], s["trigger"]): s["state"] for s in api.get("/schedules").json()}
    assert states[("hourly", 2)] == "paused"
