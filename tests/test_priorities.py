"""Job priorities: a spinner's `priority`, a run's own (`--priority`, the API's body field), the
order a real `cxrun runtime` claims queued jobs in (high, normal, low, each by age), and aging:
a low job waiting long enough starts before a stream of newer high ones. Bad values refused."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import duckdb
import pytest
from conftest import WELCOME, set_now, write_project

from cxrun import ops
from cxrun.base import owners
from cxrun.base.errors import CxrunError
from cxrun.ops import publishing, runs, views
from cxrun.runtime import worker
from cxrun.store import State
from cxrun.store.schema import LATEST, MIGRATIONS

T0 = datetime(2026, 11, 23, 9, 0, tzinfo=UTC)
CLAIMED = re.compile(r"job (\d+): claimed \(\w+ v\d+, (\w+)\)")


def at(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%SZ")


def prioritised(tmp_path: Path, priority: str | None = None, aging: str | None = None) -> Path:
    """The welcome spinner (with `priority` in its file), and runtime.aging in cxrun.yaml."""
    spinner = WELCOME.replace("table: contacts\n", f"table: contacts\npriority: {priority}\n")
    config = "name: test\n" + (f"runtime: {{aging: {aging}}}\n" if aging else "")
    return write_project(
        tmp_path / "p", {"welcome": spinner if priority else WELCOME}, config=config
    )


def claim_order(stderr: str) -> list[tuple[int, str]]:
    """The jobs a runtime claimed, in order, with the priority it said."""
    return [(int(job), priority) for job, priority in CLAIMED.findall(stderr)]


# ---- the order a runtime claims in -----------------------------------------------------------


def test_a_runtime_claims_high_then_normal_then_low(tmp_path, run):
    root = prioritised(tmp_path, priority="low")
    assert run(root, "publish").code == 0
    queued = [
        run(root, "run-now", "welcome", "--detach", *options, "--json")
        for options in ((), ("--priority", "normal"), ("--priority", "high"))
    ]
    assert [json.loads(q.stdout)["priority"] for q in queued] == ["low", "normal", "high"]

    narrow = run(root, "jobs", env={"COLUMNS": "80"})
    lines = narrow.stdout.splitlines()
    assert "prio" in lines[0].split() and all(len(line) <= 80 for line in lines), narrow.stdout
    rows = {line.split()[0]: line.split() for line in lines[2:]}
    assert "low" in rows["1"] and "high" in rows["3"] and "normal" not in rows["2"], lines

    ran = run(root, "runtime", "--once", "--max-jobs", "1")

    assert ran.code == 0, ran.stderr
    assert claim_order(ran.stderr) == [(3, "high"), (2, "normal"), (1, "low")], ran.stderr
    listed = {j["job"]: j for j in json.loads(run(root, "jobs", "--json").stdout)}
    assert {j["status"] for j in listed.values()} == {"partial"}  # Grace has no email
    started = sorted(listed, key=lambda job: listed[job]["started_at"])
    assert started == [3, 2, 1]
    assert "· low priority" in run(root, "job", "1").stdout


def test_an_old_low_job_goes_before_newer_high_ones_once_its_aging_bound_passes(tmp_path, run):
    """With runtime.aging 10m a low job ranks with high ones after 20 minutes, and being older
    goes first; 15 minutes are not enough."""
    root = prioritised(tmp_path, aging="10m")
    assert run(root, "publish").code == 0

    def queue(*at_minutes: tuple[int, str]) -> None:
        for minutes, priority in at_minutes:
            env = {"CXRUN_NOW": at(T0 + timedelta(minutes=minutes))}
            queued = run(root, "run-now", "welcome", "--detach", "--priority", priority, env=env)
            assert queued.code == 0, queued.stderr

    def runtime(minutes: int) -> list[int]:
        ran = run(root, "runtime", "--once", env={"CXRUN_NOW": at(T0 + timedelta(minutes=minutes))})
        assert ran.code == 0, ran.stderr
        return [job for job, _ in claim_order(ran.stderr)]

    queue((0, "low"), (15, "high"), (15, "high"))
    assert runtime(15) == [2, 3, 1]
    queue((0, "low"), (25, "high"), (25, "high"))
    assert runtime(25) == [4, 5, 6]


def test_a_stream_of_high_jobs_holds_a_low_one_back_two_aging_periods_at_most(
    tmp_path, monkeypatch
):
    """Every minute a new high job is queued and the runtime claims one job: the normal job
    queued at the start is claimed once it has waited one aging period (5m here), the low one
    once it has waited two, each before that minute's high job."""
    root = prioritised(tmp_path, aging="5m")
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    set_now(monkeypatch, at(T0))
    low = runs.run_now(ctx, "welcome", detach=True, priority="low").job
    normal = runs.run_now(ctx, "welcome", detach=True).job
    owner = owners.new_owner("runtime")  # this process: its claims hold while it lives
    claimed: dict[int, int] = {}
    for minute in range(1, 16):
        set_now(monkeypatch, at(T0 + timedelta(minutes=minute)))
        runs.run_now(ctx, "welcome", detach=True, priority="high")
        taken = worker.claim_next(ctx.state, owner, set(), owners.LEASE, ctx.project.aging)
        assert taken is not None
        claimed[taken.job] = minute
    assert (claimed[normal], claimed[low]) == (5, 10), claimed
    assert len(claimed) == 15 and views.job(ctx, low).priority == "low"


# ---- what is kept and shown ------------------------------------------------------------------


def test_priority_is_in_every_jobs_json_and_a_retry_keeps_it(tmp_path, cli):
    root = prioritised(tmp_path, priority="high")
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", "welcome").code == 3  # partial: Grace has no email
    assert cli(root, "run-now", "welcome", "--priority", "low", "--detach").code == 0
    assert cli(root, "retry", "1").code == 3
    listed = json.loads(cli(root, "jobs", "--json").stdout)
    assert {j["job"]: j["priority"] for j in listed} == {1: "high", 2: "low"}
    assert json.loads(cli(root, "job", "2", "--json").stdout)["priority"] == "low"


def test_an_event_may_set_the_priority_of_the_jobs_it_starts(tmp_path, cli):
    listener = WELCOME.replace("table: contacts\n", "table: contacts\ntriggers: [{event: ping}]\n")
    other = listener.replace("name: welcome\n", "priority: low\n")
    root = write_project(tmp_path / "p", {"welcome": listener, "other": other})
    assert cli(root, "publish").code == 0
    sent = cli(root, "trigger", "ping", "--detach", "--priority", "high", "--json")
    assert sent.code == 0, sent
    assert [j["priority"] for j in json.loads(sent.stdout)["jobs"]] == ["high", "high"]
    plain = json.loads(cli(root, "trigger", "ping", "--detach", "--json").stdout)
    assert [(j["spinner"], j["priority"]) for j in plain["jobs"]] == [
        ("other", "low"),
        ("welcome", "normal"),
    ]


def test_jobs_from_before_priorities_are_normal(tmp_path):
    state_dir = tmp_path / ".cxrun"
    state_dir.mkdir()
    con = duckdb.connect(str(state_dir / "state.duckdb"))
    for sql in MIGRATIONS[:11]:
        con.execute(sql)
    con.execute("INSERT INTO cx_meta VALUES ('schema_version', '11')")
    con.execute(
        "INSERT INTO cx_jobs (job, spinner, version, trigger, status, table_name, total, "
        "cursor, completed, failed, skipped, waiting, cancelled, created_at) "
        "VALUES (1, 's', 1, 'manual', 'queued', 't', 0, 0, 0, 0, 0, 0, 0, now())"
    )
    con.close()
    from cxrun.store import jobs as job_store

    with State(state_dir).read() as con:
        assert job_store.get(con, 1).priority == "normal"
        version = con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'").fetchone()
    assert version == (str(LATEST),)


# ---- bad values ----------------------------------------------------------------------------


def test_bad_priorities_and_aging_are_refused(tmp_path, cli):
    root = prioritised(tmp_path)
    assert cli(root, "publish").code == 0
    bad = cli(root, "run-now", "welcome", "--detach", "--priority", "urgent")
    assert bad.code == 2 and "'urgent' is not one of 'high', 'normal', 'low'" in bad.stderr
    event = cli(root, "trigger", "ping", "--detach", "--priority", "asap")
    assert event.code == 2 and "'asap' is not one of" in event.stderr
    with pytest.raises(CxrunError, match="priority: 'soon' is not a priority") as raised:
        runs.run_now(ops.open_context(str(root)), "welcome", detach=True, priority="soon")
    assert raised.value.exit_code == 2 and raised.value.hint == "use high, normal or low"
    assert json.loads(cli(root, "jobs", "--json").stdout) == []  # nothing was queued

    spinner = root / "spinners" / "welcome.yaml"
    spinner.write_text(WELCOME.replace("key: id\n", "key: id\npriority: urgent\n"))
    refused = cli(root, "publish")
    assert refused.code == 2 and "spinners/welcome.yaml: priority: 'urgent'" in refused.stderr

    for aging, said in (("soon", "does not match"), ("0s", "shorter than 1s"), ("99999d", "100")):
        (root / "cxrun.yaml").write_text(f"name: test\nruntime: {{aging: {aging}}}\n")
        config = cli(root, "runtime", "--once")
        assert config.code == 2 and "cxrun.yaml: runtime.aging" in config.stderr, config
        assert said in config.stderr, config.stderr
