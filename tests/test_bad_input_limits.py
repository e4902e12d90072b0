"""Bad input at the edges of what can be held: deadlines past the year 9999, YAML that expands
without end, numbers out of range. Each is refused with exit 2 and a message on stderr, at once,
with no traceback, and the state that existed before is unchanged."""

from __future__ import annotations

import fcntl
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import pytest
import test_bad_input as corpus
from conftest import set_now, write_project
from test_bad_input import (
    HEAD,
    RESTORE_CONFIG,
    SPINNER,
    STEPS,
    Baseline,
    _copy,
    _state,
    config,
    nothing,
    spinner,
)

HUGE = "99999999999999999999"  # past a 64-bit integer
FAR = "9999-12-31T23:00:00Z"
RANGE = "(1970-01-01 to 9000-01-01)"
LONGEST = "longer than 36500d (100 years)"

baseline = corpus.baseline  # the same project: published (version 1) and run once (job 1)


def laughs() -> str:
    """A "billion laughs" as one YAML flow sequence: 9 levels of 9 aliases, 9^9 values."""
    levels = ["&a0 [" + ", ".join(["lol"] * 9) + "]"]
    levels += [f"&a{n} [" + ", ".join([f"*a{n - 1}"] * 9) + "]" for n in range(1, 9)]
    return "[" + ", ".join(levels) + "]"


def with_step(text: str) -> Callable[[Path], None]:
    """The welcome spinner with one more step at the end (steps[3])."""
    return spinner(HEAD + STEPS + text)


def with_config_and_step(config_text: str, step: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        config(config_text)(root)
        with_step(step)(root)

    return apply


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Path], None]
    args: tuple[str, ...]
    says: tuple[str, ...]  # substrings that stderr must contain
    env: dict[str, str] = field(default_factory=dict)
    repair: Callable[[Path], None] | None = None


TIMESTAMP_12026 = "TIMESTAMP '2026-01-01' + INTERVAL 10000 YEAR"

CASES = [
    # ---- durations and deadlines that cannot be represented ---------------------------------
    pytest.param(
        Case(
            with_step("  - id: later\n    wait: 9999999d\n"),
            ("publish",),
            (SPINNER, "steps[3].wait: '9999999d' is " + LONGEST),
        ),
        id="wait-9999999d-publish",
    ),
    pytest.param(
        Case(
            with_step("  - id: later\n    wait: 9999999d\n"),
            ("validate",),
            (SPINNER, "steps[3].wait", LONGEST),
        ),
        id="wait-9999999d-validate",
    ),
    pytest.param(
        Case(
            with_step(f'  - id: later\n    wait: {{until: "{TIMESTAMP_12026}"}}\n'),
            ("publish",),
            (SPINNER, "steps[3].wait.until: 12026-01-01 00:00:00 is more than 36500d (100 years)"),
        ),
        id="wait-until-year-12026-publish",
    ),
    pytest.param(
        Case(
            with_step("  - id: later\n    wait: {until: \"TIMESTAMP '12000-01-01'\"}\n"),
            ("validate",),
            (SPINNER, "steps[3].wait.until: 12000-01-01", "100 years"),
        ),
        id="wait-until-constant-year-12000-validate",
    ),
    pytest.param(
        Case(
            with_step(
                "  - id: later\n    wait: {until: \"DATE '2026-01-01' + INTERVAL 300000 YEAR\"}\n"
            ),
            ("publish",),
            (SPINNER, "steps[3].wait.until: cannot be computed", "timestamp range"),
        ),
        id="wait-until-past-duckdb-range",
    ),
    pytest.param(
        Case(
            with_step("  - id: ask\n    approval: {prompt: 'ok?', timeout: 9999999d}\n"),
            ("publish",),
            (SPINNER, "steps[3].approval.timeout: '9999999d' is " + LONGEST),
        ),
        id="approval-timeout-9999999d",
    ),
    pytest.param(
        Case(
            spinner(HEAD + "limits: {job_timeout: 99999999999999d}\n" + STEPS),
            ("publish",),
            (SPINNER, "limits.job_timeout", LONGEST),
        ),
        id="job-timeout-too-long",
    ),
    pytest.param(
        Case(
            with_config_and_step(
                "name: test\nproviders:\n  demo: {kind: echo, timeout: 9999999999d}\n",
                "  - id: draft\n    ai: {provider: demo, model: m, prompt: hi, output: draft}\n",
            ),
            ("validate",),
            ("cxrun.yaml: providers.demo.timeout", LONGEST),
            repair=RESTORE_CONFIG,
        ),
        id="provider-timeout-too-long",
    ),
    # ---- YAML that would expand without end, or is too big ----------------------------------
    pytest.param(
        Case(
            spinner(HEAD + f"description: {laughs()}\n" + STEPS),
            ("publish",),
            (SPINNER, "YAML aliases (*name) repeat", "more than the 10000 allowed"),
        ),
        id="alias-bomb-description",
    ),
    pytest.param(
        Case(
            with_step(
                "  - id: call\n    http: {url: 'https://example.org', "
                f"json: {{payload: {laughs()}}}}}\n"
            ),
            ("publish",),
            (SPINNER, "YAML aliases (*name) repeat"),
        ),
        id="alias-bomb-http-json",
    ),
    pytest.param(
        Case(
            with_step(
                "  - id: draft\n    ai: {provider: demo, model: m, prompt: hi, output: draft, "
                f"schema: {{type: object, x-laughs: {laughs()}}}}}\n"
            ),
            ("validate",),
            (SPINNER, "YAML aliases (*name) repeat"),
        ),
        id="alias-bomb-ai-schema",
    ),
    pytest.param(
        Case(
            config(f"name: test\nlimits: {laughs()}\n"),
            ("validate",),
            ("cxrun.yaml: YAML aliases (*name) repeat",),
            repair=RESTORE_CONFIG,
        ),
        id="alias-bomb-config",
    ),
    pytest.param(
        Case(
            spinner(HEAD + "description: &loop [lol, *loop]\n" + STEPS),
            ("publish",),
            (SPINNER, "line 5", "sits inside the value it names"),
        ),
        id="alias-inside-itself",
    ),
    pytest.param(
        Case(
            spinner(HEAD + STEPS + "# padding\n" * 120_000),
            ("publish",),
            (SPINNER, "larger than 1 MiB"),
            repair=spinner(HEAD + STEPS),  # `cxrun spinners` reads every file, too
        ),
        id="spinner-file-over-1-mib",
    ),
    pytest.param(
        Case(
            config("name: test\n" + "# padding\n" * 120_000),
            ("validate",),
            ("cxrun.yaml: the file is larger than 1 MiB",),
            repair=RESTORE_CONFIG,
        ),
        id="config-file-over-1-mib",
    ),
    # ---- numbers out of range on the command line -------------------------------------------
    pytest.param(
        Case(nothing, ("jobs", "--page", HUGE), ("--page", "1<=x<=1000000000")),
        id="jobs-page-huge",
    ),
    pytest.param(
        Case(nothing, ("jobs", "--limit", HUGE), ("--limit", "1<=x<=1000000")),
        id="jobs-limit-huge",
    ),
    pytest.param(
        Case(nothing, ("records", "1", "--page", HUGE), ("--page", "1<=x<=1000000000")),
        id="records-page-huge",
    ),
    pytest.param(
        Case(nothing, ("records", "1", "--limit", HUGE), ("--limit", "1<=x<=1000000")),
        id="records-limit-huge",
    ),
    pytest.param(
        Case(nothing, ("tables", "show", "contacts", "--limit", HUGE), ("--limit", "1<=x<=")),
        id="tables-show-limit-huge",
    ),
    pytest.param(
        Case(nothing, ("outbox", "--page", HUGE), ("--page", "1<=x<=1000000000")),
        id="outbox-page-huge",
    ),
    pytest.param(
        Case(nothing, ("run-now", "welcome", "--limit", HUGE), ("--limit", "0<=x<=")),
        id="run-now-limit-huge",
    ),
    pytest.param(
        Case(nothing, ("jobs", "--watch", "--interval", "1e308"), ("--interval", "0.1<=x<=3600")),
        id="watch-interval-1e308",
    ),
    pytest.param(
        Case(
            nothing,
            ("jobs", "--watch", "--interval", "nan"),
            ("--interval", "nan is not a number between 0.1 and 3600"),
        ),
        id="watch-interval-nan",
    ),
    pytest.param(
        Case(nothing, ("jobs", "--watch", "--interval", "inf"), ("--interval", "0.1<=x<=3600")),
        id="watch-interval-inf",
    ),
    pytest.param(
        Case(nothing, ("live", "--stall", "nan"), ("--stall", "nan is not a number between")),
        id="live-stall-nan",
    ),
    pytest.param(
        Case(nothing, ("live", "--stall", "1e308"), ("--stall", "0<=x<=525600")),
        id="live-stall-1e308",
    ),
    # ---- the clock and the lock, from the environment ---------------------------------------
    pytest.param(
        Case(nothing, ("run-now", "welcome"), ("CXRUN_NOW='" + FAR, RANGE), {"CXRUN_NOW": FAR}),
        id="now-far-run-now",
    ),
    pytest.param(
        Case(nothing, ("schedule", "tick"), ("CXRUN_NOW", RANGE), {"CXRUN_NOW": FAR}),
        id="now-far-schedule-tick",
    ),
    pytest.param(
        Case(nothing, ("schedule", "list"), ("CXRUN_NOW", RANGE), {"CXRUN_NOW": FAR}),
        id="now-far-schedule-list",
    ),
    pytest.param(
        Case(
            nothing,
            ("schedule", "list"),
            ("CXRUN_NOW", RANGE),
            {"CXRUN_NOW": "9999-12-31T23:59:59-05:00"},  # its UTC is past the year 9999
        ),
        id="now-past-9999-in-utc",
    ),
    pytest.param(
        Case(
            nothing, ("schedule", "tick"), ("CXRUN_NOW", RANGE), {"CXRUN_NOW": "0001-01-01T00:00Z"}
        ),
        id="now-year-1",
    ),
    pytest.param(
        Case(
            nothing,
            ("jobs", "--json"),
            ("CXRUN_LOCK_TIMEOUT must be a number of seconds from 0 to 86400, not 'nan'",),
            {"CXRUN_LOCK_TIMEOUT": "nan"},
        ),
        id="lock-timeout-nan",
    ),
    pytest.param(
        Case(
            nothing,
            ("jobs", "--json"),
            ("CXRUN_LOCK_TIMEOUT", "not 'inf'"),
            {"CXRUN_LOCK_TIMEOUT": "inf"},
        ),
        id="lock-timeout-inf",
    ),
    pytest.param(
        Case(
            nothing,
            ("jobs", "--json"),
            ("CXRUN_LOCK_TIMEOUT", "not '-1'"),
            {"CXRUN_LOCK_TIMEOUT": "-1"},
        ),
        id="lock-timeout-negative",
    ),
]


@pytest.mark.timeout(60)  # a YAML bomb that got through would take minutes, then fail
@pytest.mark.parametrize("case", CASES)
def test_bad_input_at_the_limits(
    case: Case, baseline: Baseline, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = _copy(baseline, tmp_path)
    case.breaks(root)
    for name, value in case.env.items():
        monkeypatch.setenv(name, value)

    began = time.monotonic()
    result = cli(root, *case.args)
    took = time.monotonic() - began

    assert result.code == 2, result
    for text in case.says:
        assert text in result.stderr, result
    assert result.stderr.startswith("error: "), result
    assert len(result.stderr.splitlines()) <= 2, result
    assert result.stdout.strip() == "", result
    assert "Traceback" not in result.stdout + result.stderr
    assert took < 5, f"took {took:.1f}s"  # refused at once, not after expanding or waiting

    for name in case.env:
        monkeypatch.delenv(name)
    set_now(monkeypatch, None)
    if case.repair:
        case.repair(root)
    assert _state(cli, root) == baseline.state


def test_yaml_bombs_are_refused_in_well_under_a_second(tmp_path: Path) -> None:
    from cxrun.base.errors import CxrunError
    from cxrun.base.yamlfile import parse_yaml, read_text

    began = time.monotonic()
    with pytest.raises(CxrunError, match=r"f\.yaml: YAML aliases"):
        parse_yaml(f"description: {laughs()}\n", "f.yaml")
    big = tmp_path / "big.yaml"
    big.write_text("# padding\n" * 2_000_000)  # 20 MB: not read beyond the first 1 MiB
    with pytest.raises(CxrunError, match=r"big\.yaml: the file is larger than 1 MiB"):
        read_text(big, "big.yaml")
    assert time.monotonic() - began < 1


def test_aliases_within_the_budget_still_work() -> None:
    from cxrun.base.yamlfile import parse_yaml

    text = "base: &b {x: 1, y: [2, 3]}\nc:\n  <<: *b\n  z: 4\nd: [*b, *b]\n"
    assert parse_yaml(text, "f.yaml") == {
        "base": {"x": 1, "y": [2, 3]},
        "c": {"x": 1, "y": [2, 3], "z": 4},
        "d": [{"x": 1, "y": [2, 3]}, {"x": 1, "y": [2, 3]}],
    }


def test_the_longest_durations_are_taken() -> None:
    from cxrun.base.durations import seconds

    assert seconds("36500d") == 36500 * 86400
    assert seconds("1" + "0" * 400 + "d", strict=False) == 36500 * 86400  # published before
    for bad in ("36501d", "1" + "0" * 400 + "d", float("nan"), -1):
        with pytest.raises(ValueError):
            seconds(bad)


SCHEDULED = """table: contacts
key: id
triggers:
  - schedule: "0 9 * * *"
steps:
  - id: hello
    log: "Hello {{ first_name }}"
"""


def test_a_far_future_clock_is_refused_before_any_schedule_is_walked(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With a schedule published, a tick or a listing at 9999-12-31 would walk the cron past
    the year 9999, and a run would store a job created then."""
    root = write_project(tmp_path / "p", spinners={"daily": SCHEDULED})
    set_now(monkeypatch, "2026-11-22T08:00:00Z")
    assert cli(root, "publish").code == 0
    listed = cli(root, "schedule", "list", "--json")
    assert listed.code == 0, listed

    monkeypatch.setenv("CXRUN_NOW", FAR)
    for args in (("schedule", "tick"), ("schedule", "list"), ("run-now", "daily")):
        result = cli(root, *args)
        assert result.code == 2, result
        assert "CXRUN_NOW='9999-12-31T23:00:00Z'" in result.stderr and RANGE in result.stderr
        assert "Traceback" not in result.stdout + result.stderr

    set_now(monkeypatch, "2026-11-22T08:00:00Z")
    assert json.loads(cli(root, "jobs", "--json").stdout) == []
    assert cli(root, "schedule", "list", "--json").stdout == listed.stdout


def test_a_lock_timeout_of_nan_does_not_wait_for_ever(
    baseline: Baseline, tmp_path: Path, run
) -> None:
    """The state held by another process: NaN seconds would never run out."""
    root = _copy(baseline, tmp_path)
    with (root / ".cxrun" / "state.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)
        for value in ("nan", "inf"):
            result = run(root, "jobs", "--json", env={"CXRUN_LOCK_TIMEOUT": value}, timeout=30)
            assert result.code == 2, result
            said = f"CXRUN_LOCK_TIMEOUT must be a number of seconds from 0 to 86400, not '{value}'"
            assert said in result.stderr, result
            assert "Traceback" not in result.stdout + result.stderr
        busy = run(root, "jobs", "--json", env={"CXRUN_LOCK_TIMEOUT": "0.2"}, timeout=30)
        assert busy.code == 5, busy


@pytest.mark.timeout(120)
def test_a_wait_until_a_row_past_the_year_9999_fails_its_record_at_run_time(
    tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An `until` over a column is only known per row, at run time: a row whose deadline is the
    year 12000 fails at the wait step (it would never come), the others go on, and nothing
    loops on the job afterwards."""
    far = 'table: due\nkey: id\nsteps:\n  - id: later\n    wait: {until: "CAST(due AS DATE)"}\n'
    far += "  - id: done\n    log: done\n"
    root = write_project(
        tmp_path / "p",
        spinners={"far": far},
        tables={"due": "id,due\n1,12000-01-01\n2,2026-01-01\n"},
    )
    set_now(monkeypatch, "2026-11-23T09:00:00Z")
    assert cli(root, "publish").code == 0  # the deadline depends on the row

    result = cli(root, "run-now", "far", "--json")
    assert result.code == 3, result
    assert "Traceback" not in result.stdout + result.stderr
    records = {r["record"]: r for r in json.loads(cli(root, "records", "1", "--json").stdout)}
    assert records["1"]["status"] == "failed" and records["1"]["failed_step"] == "later"
    assert "12000-01-01" in records["1"]["error"] and "9999" in records["1"]["error"]
    assert records["2"]["status"] == "completed"

    set_now(monkeypatch, "2126-11-23T09:00:00Z")
    began = time.monotonic()
    assert cli(root, "runtime", "--once").code == 0
    assert time.monotonic() - began < 30
    jobs = json.loads(cli(root, "jobs", "--json").stdout)
    assert [(j["job"], j["status"]) for j in jobs] == [(1, "partial")]
