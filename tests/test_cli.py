"""The command line as scripts use it: exit codes, --json shapes, listings, project discovery."""

from __future__ import annotations

import json
import shutil
import subprocess
from datetime import UTC, datetime
from pathlib import Path

import jsonschema
import pytest
import yaml
from conftest import CONTACTS, EXECUTABLE, WELCOME, write_project
from typer.testing import CliRunner

import cxrun
from cxrun.cli import app

JOB_FIELDS = {
    "job",
    "spinner",
    "version",
    "trigger",
    "status",
    "reason",
    "total",
    "completed",
    "failed",
    "skipped",
    "waiting",
    "started_at",
    "ended_at",
    "duration_s",
}
RECORD_FIELDS = {
    "job",
    "record",
    "status",
    "metadata",
    "tags",
    "outputs",
    "error",
    "attempts",
    "duration_s",
}
ENTRY_FIELDS = {
    "step",
    "attempt",
    "status",
    "message",
    "output",
    "error",
    "started_at",
    "ended_at",
    "duration_ms",
}
HEADER = CONTACTS.splitlines()[0].split(",")


def ok(result, *codes: int) -> object:
    """The JSON on stdout of a command that exited with one of `codes` (default 0)."""
    assert result.code in (codes or (0,)), result
    assert "Traceback" not in result.stdout + result.stderr
    return json.loads(result.stdout)


def moment(text: str) -> datetime:
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    assert parsed.utcoffset() is not None and parsed.utcoffset().total_seconds() == 0, text
    return parsed


@pytest.fixture
def published(project: Path, cli) -> Path:
    assert cli(project, "publish").code == 0
    return project


@pytest.fixture(scope="module")
def _ran_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = write_project(tmp_path_factory.mktemp("ran") / "p")
    runner = CliRunner(env={"CXRUN_PROJECT": None})
    for args, code in ((["publish"], 0), (["run-now", "welcome", "--json"], 3)):
        result = runner.invoke(app, [*args, "--project", str(root)])
        assert result.exit_code == code, result.stderr
    return root


@pytest.fixture
def ran(_ran_once: Path, tmp_path: Path) -> Path:
    """The default project after one run: job 1, partial (contact 3 has no email).

    A fresh copy of a project run once per module: no command holds the state open in between."""
    root = tmp_path / "ran"
    shutil.copytree(_ran_once, root)
    return root


# ---- version, schema, init --------------------------------------------------------------------


def test_version(tmp_path: Path, cli) -> None:
    result = cli(tmp_path, "--version")
    assert result.code == 0, result
    assert result.stdout.strip() == f"cxrun {cxrun.__version__}"


def test_a_command_started_with_its_output_closed_drops_it_and_keeps_its_exit_code(
    project: Path, cli
) -> None:
    """cron or a script may start cxrun with `>&-`: the output goes nowhere, no traceback, the
    exit code says what happened (the exit path flushes both streams before it leaves)."""
    assert cli(project, "publish").code == 0
    command = f'"{EXECUTABLE}"'
    listed = subprocess.run(
        ["sh", "-c", f"{command} jobs --json >&-"], cwd=project, capture_output=True, text=True
    )
    assert listed.returncode == 0, listed
    assert listed.stderr == ""
    missing = subprocess.run(
        ["sh", "-c", f"{command} journey 99 nobody 2>&-"], cwd=project, capture_output=True
    )
    assert missing.returncode == 2, missing
    assert missing.stdout == b""


def test_schema_is_a_json_schema_for_spinners(tmp_path: Path, cli) -> None:
    schema = ok(cli(tmp_path, "schema"))
    jsonschema.Draft202012Validator.check_schema(schema)
    assert schema["type"] == "object"
    assert "steps" in schema["properties"] and "steps" in schema["required"]
    validator = jsonschema.Draft202012Validator(schema)
    assert list(validator.iter_errors(yaml.safe_load(WELCOME))) == []
    broken = yaml.safe_load(WELCOME) | {"steps": [{"id": "x", "sms": "hi"}]}
    assert list(validator.iter_errors(broken)) != []


def test_init_scaffolds_a_project_that_validates_publishes_and_runs(tmp_path: Path, cli) -> None:
    result = cli(tmp_path, "init", "new")
    assert result.code == 0, result
    root = tmp_path / "new"
    for relative in ("cxrun.yaml", "spinners/welcome.yaml", "tables/contacts.csv"):
        assert (root / relative).is_file(), relative
    assert ok(cli(root, "validate", "--json")) == {"valid": ["welcome"], "problems": []}
    published = ok(cli(root, "publish", "--json"))
    assert published == [{"spinner": "welcome", "version": 1, "changed": True}]
    done = cli(root, "run-now", "welcome", "--json")
    job = ok(done, 0, 3)
    assert done.code == {"completed": 0, "partial": 3}[job["status"]]
    assert job["total"] > 0 and job["completed"] + job["failed"] == job["total"]


def test_init_refuses_an_existing_project(project: Path, cli) -> None:
    result = cli(project, "init", ".")
    assert result.code == 2, result
    assert "exists already" in result.stderr
    assert (project / "cxrun.yaml").read_text() == "name: test\n"


# ---- publish and versions ---------------------------------------------------------------------


def _spinner(cli, root: Path, name: str = "welcome") -> dict:
    listing = ok(cli(root, "spinners", "--json"))
    return next(s for s in listing if s["spinner"] == name)


def test_publish_makes_a_version_only_when_the_file_changed(project: Path, cli) -> None:
    assert _spinner(cli, project)["version"] is None
    assert ok(cli(project, "publish", "--json")) == [
        {"spinner": "welcome", "version": 1, "changed": True}
    ]
    assert ok(cli(project, "publish", "--json")) == [
        {"spinner": "welcome", "version": 1, "changed": False}
    ]
    assert _spinner(cli, project)["edited"] is False

    path = project / "spinners" / "welcome.yaml"
    path.write_text(path.read_text().replace("Welcome {{", "Hello {{"))
    listed = _spinner(cli, project)
    assert (listed["version"], listed["edited"]) == (1, True)

    assert ok(cli(project, "publish", "welcome", "--json")) == [
        {"spinner": "welcome", "version": 2, "changed": True}
    ]
    listed = _spinner(cli, project)
    assert (listed["version"], listed["edited"]) == (2, False)

    job = ok(cli(project, "run-now", "welcome", "--json"), 3)
    assert job["version"] == 2
    entries = ok(cli(project, "journey", str(job["job"]), "1", "--json"))
    assert entries[0]["message"] == "Hello Ada"
    listed = _spinner(cli, project)
    assert (listed["last_job"], listed["last_status"]) == (job["job"], "partial")


def test_runs_use_the_published_version_not_the_edited_file(published: Path, cli) -> None:
    path = published / "spinners" / "welcome.yaml"
    path.write_text(path.read_text().replace("Welcome {{", "Bye {{"))
    job = ok(cli(published, "run-now", "welcome", "--json"), 3)
    assert job["version"] == 1
    assert ok(cli(published, "journey", "1", "1", "--json"))[0]["message"] == "Welcome Ada"


# ---- run-now: JSON, exit codes, row selection -------------------------------------------------


def test_run_now_json_prints_one_job_object_and_nothing_else(published: Path, cli) -> None:
    result = cli(published, "run-now", "welcome", "--json")
    assert result.code == 3, result
    assert len(result.stdout.strip().splitlines()) == 1
    job = json.loads(result.stdout)
    assert isinstance(job, dict)
    assert set(job) >= JOB_FIELDS, JOB_FIELDS - set(job)
    assert isinstance(job["job"], int) and isinstance(job["version"], int)
    assert (job["spinner"], job["version"], job["trigger"]) == ("welcome", 1, "manual")
    assert job["status"] == "partial" and job["reason"]
    assert (job["total"], job["completed"], job["failed"], job["skipped"], job["waiting"]) == (
        5,
        4,
        1,
        0,
        0,
    )
    started, ended = moment(job["started_at"]), moment(job["ended_at"])
    assert started <= ended <= datetime.now(UTC)
    assert isinstance(job["duration_s"], int | float) and job["duration_s"] >= 0
    assert abs(job["duration_s"] - (ended - started).total_seconds()) < 0.01
    assert ok(cli(published, "jobs", "--json")) == [job]


def test_exit_code_0_when_every_row_is_fine(published: Path, cli) -> None:
    result = cli(published, "run-now", "welcome", "--where", "email IS NOT NULL", "--json")
    job = ok(result, 0)
    assert (job["status"], job["total"], job["completed"], job["failed"]) == ("completed", 4, 4, 0)
    assert job["reason"] is None


def test_exit_code_3_when_some_rows_fail_the_required_field(published: Path, cli) -> None:
    job = ok(cli(published, "run-now", "welcome", "--json"), 3)
    assert (job["status"], job["completed"], job["failed"]) == ("partial", 4, 1)


def test_exit_code_1_when_every_row_fails(tmp_path: Path, cli) -> None:
    no_emails = "\n".join(
        ",".join("" if i == 3 else v for i, v in enumerate(line.split(",")))
        for line in CONTACTS.splitlines()[1:]
    )
    root = write_project(
        tmp_path / "p", tables={"contacts": CONTACTS.splitlines()[0] + "\n" + no_emails + "\n"}
    )
    assert cli(root, "publish").code == 0
    job = ok(cli(root, "run-now", "welcome", "--json"), 1)
    assert (job["status"], job["total"], job["completed"], job["failed"]) == ("failed", 5, 0, 5)
    assert job["reason"]


def test_human_output_of_run_now(published: Path, cli) -> None:
    result = cli(published, "run-now", "welcome")
    assert result.code == 3, result
    assert "partial" in result.stdout and "4 completed" in result.stdout
    assert "1 failed" in result.stdout


def test_where_and_limit_select_rows(published: Path, cli) -> None:
    job = ok(cli(published, "run-now", "welcome", "--where", "city = 'London'", "--json"))
    assert (job["total"], job["completed"]) == (1, 1)
    assert [r["record"] for r in ok(cli(published, "records", str(job["job"]), "--json"))] == ["1"]

    job = ok(cli(published, "run-now", "welcome", "--limit", "2", "--json"))
    assert job["total"] == 2
    records = ok(cli(published, "records", str(job["job"]), "--json"))
    assert [r["record"] for r in records] == ["1", "2"]

    job = ok(
        cli(
            published,
            "run-now",
            "welcome",
            "--where",
            "lifetime_value > 1000",
            "--limit",
            "2",
            "--json",
        ),
        3,
    )
    assert (job["total"], job["failed"]) == (2, 1)
    records = ok(cli(published, "records", str(job["job"]), "--json"))
    assert sorted(r["record"] for r in records) == ["1", "3"]

    job = ok(cli(published, "run-now", "welcome", "--where", "city = 'Nowhere'", "--json"))
    assert (job["status"], job["total"]) == ("completed", 0)


def test_spinner_select_filters_rows(project: Path, cli) -> None:
    text = WELCOME.replace("steps:", "select: \"signup_date >= DATE '2026-01-01'\"\nsteps:")
    (project / "spinners" / "welcome.yaml").write_text(text)
    assert cli(project, "publish").code == 0
    job = ok(cli(project, "run-now", "welcome", "--json"), 3)
    assert job["total"] == 4  # Dijkstra signed up in 2025
    records = ok(cli(project, "records", str(job["job"]), "--json"))
    assert sorted(r["record"] for r in records) == ["1", "2", "3", "5"]
    job = ok(cli(project, "run-now", "welcome", "--where", "lifetime_value < 1000", "--json"))
    assert job["total"] == 1  # both conditions: only Alan
    records = ok(cli(project, "records", str(job["job"]), "--json"))
    assert [r["record"] for r in records] == ["2"]


# ---- jobs, records, journey -------------------------------------------------------------------


def test_jobs_newest_first_with_filters_and_pages(project: Path, cli) -> None:
    other = WELCOME.replace("name: welcome", "name: other")
    (project / "spinners" / "other.yaml").write_text(other)
    assert cli(project, "publish").code == 0
    assert cli(project, "run-now", "welcome", "--json").code == 3
    assert cli(project, "run-now", "other", "--where", "email IS NOT NULL", "--json").code == 0
    assert cli(project, "run-now", "welcome", "--where", "id = 1", "--json").code == 0

    listing = ok(cli(project, "jobs", "--json"))
    assert [(j["job"], j["spinner"], j["status"]) for j in listing] == [
        (3, "welcome", "completed"),
        (2, "other", "completed"),
        (1, "welcome", "partial"),
    ]
    for job in listing:
        assert set(job) >= JOB_FIELDS
    assert [j["job"] for j in ok(cli(project, "jobs", "--status", "partial", "--json"))] == [1]
    assert [j["job"] for j in ok(cli(project, "jobs", "--status", "completed", "--json"))] == [3, 2]
    assert [j["job"] for j in ok(cli(project, "jobs", "--spinner", "welcome", "--json"))] == [3, 1]
    assert [j["job"] for j in ok(cli(project, "jobs", "--spinner", "other", "--json"))] == [2]
    assert ok(cli(project, "jobs", "--spinner", "welcome", "--status", "failed", "--json")) == []
    pages = [
        [j["job"] for j in ok(cli(project, "jobs", "--limit", "2", "--page", str(n), "--json"))]
        for n in (1, 2, 3)
    ]
    assert pages == [[3, 2], [1], []]


def test_records_shape_and_status_filter(ran: Path, cli) -> None:
    records = ok(cli(ran, "records", "1", "--json"))
    assert [r["record"] for r in records] == ["1", "2", "3", "4", "5"]
    for record in records:
        assert set(record) >= RECORD_FIELDS, RECORD_FIELDS - set(record)
        assert record["job"] == 1 and isinstance(record["record"], str)
        assert set(record["metadata"]) == set(HEADER)
        assert isinstance(record["tags"], list) and isinstance(record["outputs"], dict)
        assert record["attempts"] >= 1
        assert record["duration_s"] is None or record["duration_s"] >= 0
    ada = records[0]
    assert ada["status"] == "completed" and ada["error"] is None
    assert ada["metadata"]["first_name"] == "Ada" and ada["metadata"]["id"] == 1
    assert ada["tags"] == ["vip"]
    assert ada["outputs"] == {"score": pytest.approx(15.005)}
    assert records[1]["tags"] == []  # Alan is no VIP

    failed = ok(cli(ran, "records", "1", "--status", "failed", "--json"))
    assert [r["record"] for r in failed] == ["3"]
    assert failed[0]["status"] == "failed" and "email" in failed[0]["error"]
    completed = ok(cli(ran, "records", "1", "--status", "completed", "--json"))
    assert [r["record"] for r in completed] == ["1", "2", "4", "5"]
    page = ok(cli(ran, "records", "1", "--limit", "2", "--page", "2", "--json"))
    assert [r["record"] for r in page] == ["3", "4"]


def test_journey_entries_in_step_order(ran: Path, cli) -> None:
    ada = ok(cli(ran, "journey", "1", "1", "--json"))
    assert [e["step"] for e in ada] == ["hello", "vip", "score"]
    for entry in ada:
        assert set(entry) >= ENTRY_FIELDS, ENTRY_FIELDS - set(entry)
        assert entry["attempt"] == 1 and entry["error"] is None
        assert moment(entry["started_at"]) <= moment(entry["ended_at"])
        assert entry["duration_ms"] >= 0
    assert [e["status"] for e in ada] == ["completed", "completed", "completed"]
    assert ada[0]["message"] == "Welcome Ada"
    assert ada[2]["output"] == {"score": pytest.approx(15.005)}

    alan = ok(cli(ran, "journey", "1", "2", "--json"))
    assert [(e["step"], e["status"]) for e in alan] == [
        ("hello", "completed"),
        ("vip", "skipped"),
        ("score", "completed"),
    ]
    assert alan[0]["message"] == "Welcome Alan"
    assert alan[1]["output"] is None and alan[1]["error"] is None

    grace = ok(cli(ran, "journey", "1", "3", "--json"))
    assert grace and grace[0]["status"] == "failed" and "email" in grace[0]["error"]
    assert all(e["status"] != "completed" for e in grace)


def test_a_skipped_step_says_why(ran: Path, cli) -> None:
    alan = ok(cli(ran, "journey", "1", "2", "--json"))
    assert alan[1]["status"] == "skipped"
    assert alan[1]["message"] and "when" in alan[1]["message"]


def test_every_listing_prints_only_json(ran: Path, cli) -> None:
    for args in (
        ("jobs",),
        ("records", "1"),
        ("journey", "1", "1"),
        ("spinners",),
        ("tables",),
        ("tables", "load"),
        ("tables", "show", "contacts"),
        ("validate",),
        ("publish",),
    ):
        result = cli(ran, *args, "--json")
        assert result.code == 0, (args, result)
        json.loads(result.stdout)
        assert len(result.stdout.strip().splitlines()) == 1, args


# ---- tables -----------------------------------------------------------------------------------


def test_tables_list_load_and_show(project: Path, cli) -> None:
    listing = ok(cli(project, "tables", "--json"))
    assert [(t["name"], t["file"], t["rows"], t["stale"]) for t in listing] == [
        ("contacts", "tables/contacts.csv", None, True)
    ]

    loaded = ok(cli(project, "tables", "load", "--json"))
    assert [(t["name"], t["version"], t["rows"], t["columns"]) for t in loaded] == [
        ("contacts", 1, 5, len(HEADER))
    ]
    listing = ok(cli(project, "tables", "--json"))
    assert [(t["name"], t["rows"], t["columns"], t["version"], t["stale"]) for t in listing] == [
        ("contacts", 5, len(HEADER), 1, False)
    ]
    assert ok(cli(project, "tables", "load", "contacts", "--json"))[0]["version"] == 1

    rows = ok(cli(project, "tables", "show", "contacts", "--limit", "2", "--json"))
    assert len(rows) == 2
    assert list(rows[0]) == HEADER  # the file's columns, in order, nothing internal
    assert [(r["id"], r["first_name"]) for r in rows] == [(1, "Ada"), (2, "Alan")]

    shown = cli(project, "tables", "show", "contacts", "--limit", "1")
    assert shown.code == 0 and "Ada" in shown.stdout and "Alan" not in shown.stdout


def test_a_changed_table_is_reloaded_and_old_jobs_keep_their_snapshot(ran: Path, cli) -> None:
    path = ran / "tables" / "contacts.csv"
    path.write_text(
        path.read_text().replace(",Ada,", ",Augusta,")
        + "6,Katherine,Johnson,kj@example.org,Hampton,900,2026-02-02\n"
    )
    assert ok(cli(ran, "tables", "--json"))[0]["stale"] is True

    job = ok(cli(ran, "run-now", "welcome", "--json"), 3)
    assert (job["job"], job["total"], job["completed"]) == (2, 6, 5)
    new = {r["record"]: r for r in ok(cli(ran, "records", "2", "--json"))}
    assert set(new) == {"1", "2", "3", "4", "5", "6"}
    assert new["1"]["metadata"]["first_name"] == "Augusta"
    assert new["6"]["metadata"]["first_name"] == "Katherine"
    assert ok(cli(ran, "journey", "2", "1", "--json"))[0]["message"] == "Welcome Augusta"

    old = {r["record"]: r for r in ok(cli(ran, "records", "1", "--json"))}
    assert set(old) == {"1", "2", "3", "4", "5"}
    assert old["1"]["metadata"]["first_name"] == "Ada"
    assert ok(cli(ran, "journey", "1", "1", "--json"))[0]["message"] == "Welcome Ada"
    assert ok(cli(ran, "jobs", "--json"))[-1]["total"] == 5
    assert ok(cli(ran, "tables", "--json"))[0]["version"] == 2


def test_a_row_error_in_sql_fails_only_that_record(tmp_path: Path, cli) -> None:
    spinner = """table: codes
key: id
steps:
  - id: hello
    log: "Hi {{ name }}"
  - id: num
    set: {n: "CAST(code AS INTEGER)"}
  - id: after
    tag: done
"""
    root = write_project(
        tmp_path / "p",
        spinners={"conv": spinner},
        tables={"codes": "id,name,code\n1,a,10\n2,b,abc\n3,c,30\n"},
    )
    assert cli(root, "publish").code == 0
    job = ok(cli(root, "run-now", "conv", "--json"), 3)
    assert (job["status"], job["total"], job["completed"], job["failed"]) == ("partial", 3, 2, 1)

    records = {r["record"]: r for r in ok(cli(root, "records", "1", "--json"))}
    assert records["1"]["status"] == records["3"]["status"] == "completed"
    assert (records["1"]["outputs"], records["3"]["outputs"]) == ({"n": 10}, {"n": 30})
    assert records["1"]["tags"] == ["done"]
    bad = records["2"]
    assert bad["status"] == "failed" and bad["tags"] == []
    assert "abc" in bad["error"] and "convert" in bad["error"].lower()

    entries = ok(cli(root, "journey", "1", "2", "--json"))
    assert [(e["step"], e["status"]) for e in entries[:2]] == [
        ("hello", "completed"),
        ("num", "failed"),
    ]
    assert entries[0]["message"] == "Hi b"
    assert "abc" in entries[1]["error"]
    assert all(e["status"] != "completed" for e in entries[2:])
    assert [e["step"] for e in ok(cli(root, "journey", "1", "1", "--json"))] == [
        "hello",
        "num",
        "after",
    ]


# ---- finding the project ----------------------------------------------------------------------


def test_project_found_from_a_subfolder(ran: Path, cli) -> None:
    nested = ran / "tables" / "deeper"
    nested.mkdir()
    assert [j["job"] for j in ok(cli(nested, "jobs", "--json"))] == [1]
    job = ok(cli(ran / "spinners", "run-now", "welcome", "--json"), 3)
    assert job["job"] == 2
    assert not (ran / "spinners" / ".cxrun").exists() and not (nested / ".cxrun").exists()
    assert [j["job"] for j in ok(cli(ran, "jobs", "--json"))] == [2, 1]


def test_project_from_env_and_option(
    ran: Path, tmp_path: Path, cli, monkeypatch: pytest.MonkeyPatch
) -> None:
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    assert cli(elsewhere, "jobs", "--json").code == 2  # no project here or above

    monkeypatch.setenv("CXRUN_PROJECT", str(ran))
    assert [j["job"] for j in ok(cli(elsewhere, "jobs", "--json"))] == [1]
    assert ok(cli(elsewhere, "run-now", "welcome", "--json"), 3)["job"] == 2

    other = write_project(tmp_path / "other")
    assert cli(elsewhere, "publish", "--project", str(other)).code == 0
    assert ok(cli(elsewhere, "jobs", "--project", str(other), "--json")) == []  # option wins
    job = ok(cli(elsewhere, "run-now", "welcome", "--project", str(other), "--json"), 3)
    assert job["job"] == 1
    assert [j["job"] for j in ok(cli(elsewhere, "jobs", "--json"))] == [2, 1]

    monkeypatch.delenv("CXRUN_PROJECT")
    assert [j["job"] for j in ok(cli(elsewhere, "jobs", "--project", str(ran), "--json"))] == [2, 1]
    assert not (elsewhere / ".cxrun").exists()
