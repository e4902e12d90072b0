"""Schedules: cron in a time zone (DST), catch-up, exactly one job per due time, $timestamp."""

from __future__ import annotations

import json
import subprocess
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
from conftest import EXECUTABLE, set_now, write_project

from cxrun import ops
from cxrun.base import cron
from cxrun.base.enums import Trigger
from cxrun.base.filters import JobFilter
from cxrun.ops import publishing, runs, runtime, views
from cxrun.triggers import schedules

PARIS = "Europe/Paris"

SPINNER = """table: contacts
key: id
triggers:
{triggers}
steps:
  - id: hello
    log: "Hello {{{{ first_name }}}}"
"""


def at(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def z(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%MZ")


def scheduled(tmp_path: Path, *triggers: str, name: str = "daily") -> Path:
    body = "\n".join(f"  - {t}" for t in triggers)
    return write_project(tmp_path / "p", {name: SPINNER.format(triggers=body)})


def publish(root: Path, when: str, monkeypatch: pytest.MonkeyPatch) -> ops.Context:
    """Publish every spinner of the project with the clock at `when` (UTC)."""
    set_now(monkeypatch, when)
    ctx = ops.open_context(str(root))
    publishing.publish(ctx, None)
    set_now(monkeypatch, None)
    return ctx


def fired_jobs(ctx: ops.Context) -> list[dict[str, object]]:
    """Every scheduled job, oldest first, with the due time it keeps."""
    jobs = sorted(views.jobs(ctx, JobFilter(), 1, 500), key=lambda j: j.job)
    with ctx.state.read() as con:
        params = dict(con.execute("SELECT job, params FROM cx_jobs").fetchall())
    return [
        {"job": j.job, "total": j.total, "due_at": json.loads(params[j.job]).get("due_at")}
        for j in jobs
        if j.trigger == Trigger.SCHEDULE
    ]


# ---- cron in a time zone ------------------------------------------------------------------


def test_spring_forward_in_paris_fires_a_skipped_time_once_an_hour_later():
    # 2026-03-29: clocks go from 02:00 CET to 03:00 CEST; 02:30 does not exist that day.
    daily = cron.due_between(
        "30 2 * * *", PARIS, at("2026-03-27T00:00"), at("2026-03-31T00:00"), 99
    )
    assert [z(m) for m in daily] == [
        "2026-03-27T01:30Z",  # 02:30 CET
        "2026-03-28T01:30Z",
        "2026-03-29T01:30Z",  # 03:30 CEST: the skipped 02:30, shifted by the gap
        "2026-03-30T00:30Z",  # 02:30 CEST
    ]
    hourly = cron.due_between(
        "0 * * * *", PARIS, at("2026-03-28T22:30"), at("2026-03-29T03:30"), 99
    )
    assert [z(m) for m in hourly] == [  # every real hour once, none twice
        "2026-03-28T23:00Z",
        "2026-03-29T00:00Z",
        "2026-03-29T01:00Z",
        "2026-03-29T02:00Z",
        "2026-03-29T03:00Z",
    ]


def test_fall_back_in_paris_fires_a_repeated_time_once_but_keeps_hourly_rhythm():
    # 2026-10-25: clocks go from 03:00 CEST back to 02:00 CET; 02:30 happens twice.
    daily = cron.due_between(
        "30 2 * * *", PARIS, at("2026-10-23T12:00"), at("2026-10-27T00:00"), 99
    )
    assert [z(m) for m in daily] == [
        "2026-10-24T00:30Z",
        "2026-10-25T00:30Z",  # the first 02:30 (CEST) only
        "2026-10-26T01:30Z",  # 02:30 CET
    ]
    hourly = cron.due_between(
        "0 * * * *", PARIS, at("2026-10-24T23:30"), at("2026-10-25T03:30"), 99
    )
    assert [z(m) for m in hourly] == [
        "2026-10-25T00:00Z",  # 02:00 CEST
        "2026-10-25T01:00Z",  # 02:00 CET, the repeated hour
        "2026-10-25T02:00Z",
        "2026-10-25T03:00Z",
    ]
    assert cron.latest("30 2 * * *", PARIS, at("2026-10-25T00:30"), at("2026-10-25T02:00")) is None
    assert cron.next_after("30 2 * * *", PARIS, at("2026-10-25T00:30")) == at("2026-10-26T01:30")


def test_a_fall_back_day_gives_one_job_for_a_daily_schedule(tmp_path, monkeypatch):
    root = scheduled(tmp_path, f'{{schedule: "30 2 * * *", timezone: {PARIS}, catchup: all}}')
    ctx = publish(root, "2026-10-24T12:00:00Z", monkeypatch)
    schedules.fire_due(ctx, at("2026-10-25T03:00"))
    schedules.fire_due(ctx, at("2026-10-25T03:00"))
    assert [j["due_at"] for j in fired_jobs(ctx)] == ["2026-10-25T00:30:00Z"]


# ---- publish ------------------------------------------------------------------------------


def test_publish_lists_every_bad_trigger(tmp_path, cli):
    root = scheduled(
        tmp_path,
        '{schedule: "61 * * * *"}',
        '{schedule: "0 9 * * *", timezone: Mars/Olympus}',
        '{schedule: "* * * * * *"}',
        "{event: contact.created, schema: {type: objekt}}",
        '{event: other, select: "id = $nope"}',
        '{schedule: "0 9 * * *", select: "id = ?"}',
        '{schedule: "0 8 * * *", select: "frist_name = $timestamp"}',
    )
    result = cli(root, "publish")
    assert result.code == 2, result
    lines = result.stderr.splitlines()
    expected = [
        "spinners/daily.yaml: triggers[0].schedule: '61 * * * *' is not a valid cron expression",
        "spinners/daily.yaml: triggers[1].timezone: unknown time zone 'Mars/Olympus'",
        "spinners/daily.yaml: triggers[2].schedule: '* * * * * *' is not a cron expression: "
        "use five fields",
        "spinners/daily.yaml: triggers[3].schema: not a valid JSON Schema",
        "spinners/daily.yaml: triggers[4].select: unknown parameter $nope "
        "(allowed here: $last_timestamp, $timestamp)",
        "spinners/daily.yaml: triggers[5].select: a positional parameter (? or $1)",
        'spinners/daily.yaml: triggers[6].select: column "frist_name" not found',
    ]
    for start in expected:
        assert any(start in line for line in lines), (start, result.stderr)
    assert "Traceback" not in result.stderr
    assert cli(root, "spinners", "--json").stdout.count('"version": null') == 1


def test_a_trigger_is_a_schedule_or_an_event(tmp_path, cli):
    root = scheduled(
        tmp_path,
        '{schedule: "0 9 * * *", event: both}',
        "{event: x, catchup: all}",
        "{schedule: '0 9 * * *', schema: {type: object}}",
        "{}",
    )
    result = cli(root, "validate")
    assert result.code == 2
    for line in [
        "triggers[0]: a trigger has either schedule or event, not both",
        "triggers[1]: timezone and catchup belong to schedules, not to an event trigger",
        "triggers[2]: schema belongs to event triggers, not to a schedule",
        "triggers[3]: a trigger needs schedule (a cron expression) or event (a name)",
    ]:
        assert f"spinners/daily.yaml: {line}" in result.stderr, result.stderr


def test_parameters_are_checked_as_null_so_arithmetic_needs_a_cast(tmp_path, cli):
    bare = "signup_date > $timestamp - INTERVAL 3 DAY"
    root = scheduled(tmp_path, f'{{schedule: "0 9 * * *", select: "{bare}"}}')
    result = cli(root, "validate")
    assert result.code == 2
    assert "triggers[0].select: Could not choose a best candidate function" in result.stderr
    assert "parameters are checked as NULL" in result.stderr
    assert "Candidate functions" not in result.stderr
    cast = bare.replace("$timestamp", "CAST($timestamp AS TIMESTAMP)")
    root = scheduled(tmp_path / "again", f'{{schedule: "0 9 * * *", select: "{cast}"}}')
    assert cli(root, "validate").code == 0


def test_a_child_spinner_cannot_have_triggers(tmp_path, cli):
    root = scheduled(tmp_path, '{schedule: "0 9 * * *"}')
    path = root / "spinners" / "daily.yaml"
    path.write_text("child: true\n" + path.read_text())
    result = cli(root, "validate")
    assert result.code == 2
    assert "spinners/daily.yaml: triggers: a child spinner" in result.stderr


# ---- firing -------------------------------------------------------------------------------


def test_a_schedule_counts_from_the_version_that_introduced_it(tmp_path, monkeypatch):
    root = scheduled(tmp_path, '{schedule: "0 9 * * *"}')
    ctx = publish(root, "2026-11-22T10:05:00Z", monkeypatch)
    assert schedules.fire_due(ctx, at("2026-11-22T10:06")) == []  # not today's 09:00
    spinner = root / "spinners" / "daily.yaml"
    spinner.write_text(spinner.read_text().replace("Hello", "Hi"))  # same schedule, version 2
    publish(root, "2026-11-23T08:00:00Z", monkeypatch)
    fired = schedules.fire_due(ctx, at("2026-11-23T09:00:30"))
    assert [(f.outcome, z(f.due_at)) for f in fired] == [("started", "2026-11-23T09:00Z")]
    spinner.write_text(spinner.read_text().replace("0 9 * * *", "0 10 * * *"))  # a new schedule
    publish(root, "2026-11-23T10:30:00Z", monkeypatch)
    assert schedules.fire_due(ctx, at("2026-11-23T10:31")) == []
    assert [f.job for f in schedules.fire_due(ctx, at("2026-11-24T10:00"))] == [2]


@pytest.mark.parametrize(
    ("catchup", "expected"),
    [
        ("all", ["T13", "T14", "T15", "T16", "T17"]),
        ("one", ["T17"]),
        ("skip", []),
    ],
)
def test_catch_up_after_downtime(tmp_path, monkeypatch, catchup, expected):
    root = scheduled(tmp_path, f'{{schedule: "0 * * * *", catchup: {catchup}}}')
    ctx = publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    schedules.fire_due(ctx, at("2026-11-22T17:10"))  # nothing ran from 12:30 to 17:10
    dues = [j["due_at"] for j in fired_jobs(ctx)]
    assert dues == [f"2026-11-22{hour}:00:00Z" for hour in expected]
    schedules.fire_due(ctx, at("2026-11-22T18:01"))  # back to normal: the next hour fires
    assert [j["due_at"] for j in fired_jobs(ctx)][len(expected) :] == ["2026-11-22T18:00:00Z"]


# A tick that starts 100 jobs takes about 1.3 s here; the bound leaves room for a loaded machine.
# Before, 30 missed days took 35 s a tick and 10 years never returned; the walk count is the
# exact check.
TICK_SECONDS = 5.0


def _walk_at_most(monkeypatch: pytest.MonkeyPatch, most: int) -> list[int]:
    """Count the cron times walked from now on, failing once they pass `most`: the work of a
    tick, which must follow the jobs it starts, not the time it missed."""
    walked = [0]
    real = cron._walls

    def walls(expr, start, backward):
        for wall in real(expr, start, backward):
            walked[0] += 1
            if walked[0] > most:
                raise AssertionError(f"walked more than {most} cron times in one tick")
            yield wall

    monkeypatch.setattr(cron, "_walls", walls)
    return walked


def _minutes(start: str, count: int) -> list[str]:
    first = datetime.fromisoformat(start.replace("Z", "+00:00"))
    return [z(first + timedelta(minutes=i)) for i in range(count)]


@pytest.mark.parametrize(
    "now",
    [
        pytest.param("2026-01-31T00:00:00Z", id="30-days"),
        pytest.param("2036-01-01T00:00:00Z", id="10-years"),
    ],
)
def test_catch_up_all_after_long_downtime_fires_100_a_tick_and_each_tick_is_quick(
    tmp_path, monkeypatch, now
):
    root = scheduled(tmp_path, "{schedule: '* * * * *', catchup: all}")
    ctx = publish(root, "2026-01-01T00:00:00Z", monkeypatch)
    set_now(monkeypatch, now)  # nothing ran for 30 days, or for 10 years
    for first in ("2026-01-01T00:01Z", "2026-01-01T01:41Z"):  # the next tick goes on
        walked = _walk_at_most(monkeypatch, 2_000)
        started = time.perf_counter()
        fired = schedules.fire_due(ctx)
        took = time.perf_counter() - started
        assert [f.outcome for f in fired] == ["started"] * schedules.CATCHUP_BATCH
        assert [z(f.due_at) for f in fired] == _minutes(first, schedules.CATCHUP_BATCH)
        assert took < TICK_SECONDS, f"a tick took {took:.1f}s, walking {walked[0]} cron times"
    assert len(fired_jobs(ctx)) == 2 * schedules.CATCHUP_BATCH


def test_catch_up_one_after_ten_years_fires_the_latest_quickly(tmp_path, monkeypatch):
    root = scheduled(tmp_path, "{schedule: '* * * * *', catchup: one}")
    ctx = publish(root, "2026-01-01T00:00:00Z", monkeypatch)
    set_now(monkeypatch, "2036-01-01T00:00:30Z")
    walked = _walk_at_most(monkeypatch, 2_000)
    started = time.perf_counter()
    fired = schedules.fire_due(ctx)
    assert [(f.outcome, z(f.due_at)) for f in fired] == [("started", "2036-01-01T00:00Z")]
    assert schedules.fire_due(ctx) == []  # that due time is done; the next is a minute away
    assert time.perf_counter() - started < TICK_SECONDS, walked


def test_skip_fires_a_due_time_at_most_two_minutes_old(tmp_path, monkeypatch):
    root = scheduled(tmp_path, "{schedule: '0 * * * *', catchup: skip}")
    ctx = publish(root, "2026-11-22T12:30:00Z", monkeypatch)
    assert schedules.fire_due(ctx, at("2026-11-22T13:02:01")) == []
    assert len(schedules.fire_due(ctx, at("2026-11-22T14:01:59"))) == 1


def test_the_same_tick_twice_starts_one_job_per_due_time(tmp_path, monkeypatch):
    root = scheduled(tmp_path, "{schedule: '*/15 * * * *', catchup: all}")
    ctx = publish(root, "2026-11-22T12:00:00Z", monkeypatch)
    first = schedules.fire_due(ctx, at("2026-11-22T13:00"))
    again = schedules.fire_due(ctx, at("2026-11-22T13:00"))
    assert [f.outcome for f in first] == ["started"] * 4 and again == []
    assert len(fired_jobs(ctx)) == 4


def test_two_ticks_at_once_in_two_processes_start_one_job_per_due_time(tmp_path, monkeypatch, run):
    root = scheduled(tmp_path, "{schedule: '*/10 * * * *', catchup: all}")
    ctx = publish(root, "2026-11-22T12:00:00Z", monkeypatch)
    env = {"CXRUN_NOW": "2026-11-22T13:00:30Z", "CXRUN_LOCK_TIMEOUT": "60"}
    ticks = [
        subprocess.Popen(
            [str(EXECUTABLE), "schedule", "tick", "--json"],
            cwd=root,
            env={**_environ(), **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    outputs = [tick.communicate(timeout=120) for tick in ticks]
    assert [tick.returncode for tick in ticks] == [0, 0], outputs
    fired = [f for out, _ in outputs for f in json.loads(out)["fired"]]
    assert sorted(f["due_at"] for f in fired) == [f"2026-11-22T{t}:00Z" for t in _TEN_MINUTES]
    jobs = fired_jobs(ctx)
    assert sorted(j["due_at"] for j in jobs) == [f"2026-11-22T{t}:00Z" for t in _TEN_MINUTES]
    listing = json.loads(run(root, "jobs", "--json").stdout)
    assert {j["status"] for j in listing} == {"completed"}  # the ticks ran what they fired
    shown = json.loads(run(root, "schedule", "list", "--json", env=env).stdout)
    assert shown[0]["last_fire"] == "2026-11-22T13:00:00Z"
    assert shown[0]["next_fire"] == "2026-11-22T13:10:00Z"


_TEN_MINUTES = ["12:10", "12:20", "12:30", "12:40", "12:50", "13:00"]


def _environ() -> dict[str, str]:
    import os

    return {k: v for k, v in os.environ.items() if k not in ("CXRUN_PROJECT", "CXRUN_NOW")}


def test_the_runtime_fires_due_schedules_through_its_hook(tmp_path, monkeypatch):
    root = scheduled(tmp_path, "{schedule: '0 9 * * *'}")
    ctx = publish(root, "2026-11-21T12:00:00Z", monkeypatch)
    set_now(monkeypatch, "2026-11-22T09:00:05Z")
    notes: list[str] = []
    assert runtime.runtime(ctx, once=True, max_jobs=1, on_event=notes.append) == 1
    assert any("due 2026-11-22T09:00:00Z: job 1 queued" in n for n in notes), notes
    assert views.job(ctx, 1).status == "completed"


# ---- parameters ---------------------------------------------------------------------------


def test_timestamp_and_last_timestamp_are_the_due_times(tmp_path, monkeypatch):
    select = (
        "signup_date < $timestamp AND ($last_timestamp IS NULL OR signup_date >= $last_timestamp)"
    )
    root = scheduled(tmp_path, f"{{schedule: '0 0 1 * *', catchup: all, select: \"{select}\"}}")
    ctx = publish(root, "2025-12-31T12:00:00Z", monkeypatch)
    schedules.fire_due(ctx, at("2026-03-01T00:00:30"))
    jobs = fired_jobs(ctx)
    assert [j["due_at"] for j in jobs] == [
        "2026-01-01T00:00:00Z",
        "2026-02-01T00:00:00Z",
        "2026-03-01T00:00:00Z",
    ]
    assert [j["total"] for j in jobs] == [1, 1, 1]  # 2025-11-20; 2026-01-10; 2026-02-01
    runtime.runtime(ctx, once=True, max_jobs=1, schedules=False)
    keys = [[r.record for r in views.records(ctx, j["job"], None, 1)] for j in jobs]
    assert keys == [["4"], ["1"], ["2"]]


def test_a_manual_run_binds_now_and_the_last_job_time(tmp_path, monkeypatch):
    spinner = SPINNER.format(triggers="  - {event: ping}").replace(
        "key: id\n",
        "key: id\nselect: \"$last_timestamp IS NULL AND $timestamp > DATE '2026-01-01'\"\n",
    )
    root = write_project(tmp_path / "p", {"once": spinner})
    ctx = publish(root, "2026-11-22T10:00:00Z", monkeypatch)
    assert runs.run_now(ctx, "once").total == 5
    assert runs.run_now(ctx, "once").total == 0  # there is a last job now
    assert runs.dry_run(ctx, "once", None, None).selected == 0
