"""The terminal views say what is true: warnings about edited spinners and changed tables, the
jobs table (trigger, reason, 80 columns, no start for a job never started, a paused job's
duration), the live redraw's header and footer, empty filters, early progress, records not
written yet, validate --json, --project on either side, doctor as publish checks, the README."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path

import yaml
from conftest import REPO, WELCOME, set_now, write_project
from servers import FakeServer, OpenAI, echoing

pytest_plugins = ["servers"]

EDITED = "spinner welcome was edited since v1; this job runs v1 (cxrun publish to update)"


def ok(result, code: int = 0):  # type: ignore[no-untyped-def]
    assert result.code == code, result
    return result


def published(root: Path, cli) -> Path:  # type: ignore[no-untyped-def]
    ok(cli(root, "publish"))
    return root


def edit(root: Path, name: str = "welcome") -> None:
    path = root / "spinners" / f"{name}.yaml"
    path.write_text(path.read_text() + "# edited after publishing\n")


# ---- 1. edited since published; a table changed since the job started --------------------- -----


def test_run_now_warns_once_when_the_spinner_was_edited_since_its_version(project, cli):
    published(project, cli)
    quiet = ok(cli(project, "run-now", "welcome"), 3)  # one contact has no email: partial
    assert "edited" not in quiet.stderr
    edit(project)

    ran = ok(cli(project, "run-now", "welcome", "--json"), 3)

    assert ran.stderr.count(EDITED) == 1, ran.stderr
    assert json.loads(ran.stdout)["version"] == 1
    queued = ok(cli(project, "run-now", "welcome", "--detach"))
    assert EDITED in queued.stderr


EVENTED = WELCOME.replace("steps:", "triggers:\n  - event: contact.created\nsteps:")


def test_trigger_warns_when_a_listening_spinner_was_edited(tmp_path, cli):
    root = published(write_project(tmp_path / "p", spinners={"welcome": EVENTED}), cli)
    edit(root)

    done = ok(cli(root, "trigger", "contact.created"), 3)

    assert EDITED in done.stderr


SCHEDULED = WELCOME.replace("steps:", "triggers:\n  - schedule: '* * * * *'\nsteps:")


def test_schedule_tick_warns_when_the_scheduled_spinner_was_edited(tmp_path, cli, monkeypatch):
    set_now(monkeypatch, "2026-11-23T09:00:30Z")
    root = published(write_project(tmp_path / "p", spinners={"welcome": SCHEDULED}), cli)
    edit(root)
    set_now(monkeypatch, "2026-11-23T09:01:10Z")

    tick = cli(root, "schedule", "tick")

    assert "job 1" in tick.stdout, tick
    assert EDITED in tick.stderr


def test_retry_says_the_table_changed_and_the_job_keeps_its_rows(project, cli):
    published(project, cli)
    ok(cli(project, "run-now", "welcome"), 3)
    unchanged = ok(cli(project, "retry", "1"), 3)
    assert "changed since" not in unchanged.stderr
    table = project / "tables" / "contacts.csv"
    table.write_text(
        table.read_text() + "6,Ken,Thompson,ken@example.org,Murray Hill,900,2026-06-01\n"
    )

    again = ok(cli(project, "retry", "1", "--json"), 3)

    assert "tables/contacts.csv changed since job 1 started; the job keeps its rows" in again.stderr
    assert json.loads(again.stdout)["total"] == 5


# ---- 2. the jobs table -------------------------------------------------------------------- -----


def jobs_of_every_kind(root: Path, run) -> None:  # type: ignore[no-untyped-def]
    """Job 1 ran (partial), 2 is paused before it started, 3 is queued over no rows, 4 was
    cancelled before it started."""
    assert run(root, "publish").code == 0
    assert run(root, "run-now", "welcome").code == 3
    assert run(root, "run-now", "welcome", "--detach").code == 0
    assert run(root, "pause", "2").code == 0
    assert run(root, "run-now", "welcome", "--detach", "--where", "false").code == 0
    assert run(root, "run-now", "welcome", "--detach").code == 0
    assert run(root, "cancel", "4").code == 0


def test_jobs_fit_80_columns_with_trigger_and_reason(project, run):
    jobs_of_every_kind(project, run)

    shown = run(project, "jobs", env={"COLUMNS": "80"})

    assert shown.code == 0, shown
    lines = shown.stdout.rstrip("\n").splitlines()
    assert all(len(line) <= 80 for line in lines), shown.stdout
    assert len(lines) == 2 + 4, shown.stdout  # header, rule, one line a job: nothing wrapped
    header = lines[0].split()
    assert "trigger" in header and "reason" in header, header
    rows = {line.split()[0]: line for line in lines[2:]}
    assert "manual" in rows["1"] and "paused by" in rows["2"], shown.stdout
    assert "█" not in rows["3"] and "0/0" in rows["3"], rows["3"]  # no full bar for 0/0
    moment = re.compile(r"\d\d-\d\d \d\d:\d\d")
    assert moment.search(rows["1"]) and not moment.search(rows["4"]), shown.stdout
    listed = {j["job"]: j for j in json.loads(run(project, "jobs", "--json").stdout)}
    assert listed[4]["started_at"] is None and listed[4]["duration_s"] is None


def test_jobs_on_a_wide_console_show_every_column(project, run):
    jobs_of_every_kind(project, run)

    shown = run(project, "jobs", env={"COLUMNS": "200"})

    header = shown.stdout.splitlines()[0].split()
    assert header[:4] == ["job", "spinner", "ver", "trigger"] and "reason" in header, header
    assert all(len(line) <= 200 for line in shown.stdout.splitlines())


def test_a_paused_jobs_duration_ends_at_the_pause(tmp_path, http_server: FakeServer, run):
    http_server.handler = echoing(401)
    config = {
        "name": "t",
        "providers": {
            "llm": {
                "kind": "openai",
                "base_url": f"{http_server.url}/v1",
                "api_key": "secret:LLM_KEY",
            }
        },
    }
    spinner = {
        "name": "welcome",
        "table": "contacts",
        "key": "id",
        "steps": [
            {
                "id": "draft",
                "ai": {"provider": "llm", "model": "m", "prompt": "Hi {{ id }}", "output": "d"},
            }
        ],
    }
    root = write_project(
        tmp_path / "p", spinners={"welcome": yaml.safe_dump(spinner)}, config=yaml.safe_dump(config)
    )
    env = {"LLM_KEY": "sk-test-7Hq2Zp9Lw4Xv8Rt3", "CXRUN_NOW": "2026-11-23T09:00:00Z"}
    assert run(root, "publish", env=env).code == 0
    paused = run(root, "run-now", "welcome", env=env)
    assert paused.code == 6, paused

    later = run(root, "jobs", "--json", env={**env, "CXRUN_NOW": "2026-11-23T10:00:00Z"})

    job = json.loads(later.stdout)[0]
    assert job["status"] == "paused" and job["started_at"] == "2026-11-23T09:00:00Z", job
    assert job["duration_s"] == 0, job  # not an hour: the job has not run since its pause


# ---- 3. jobs --watch ------------------------------------------------------------------------ ---


def test_watch_has_a_header_and_a_page_footer(project, cli, monkeypatch):
    published(project, cli)
    for _ in range(3):
        ok(cli(project, "run-now", "welcome", "--detach"))
    from cxrun.cli import runs

    monkeypatch.setattr(runs.Interrupt, "stop", lambda self: True)  # Ctrl-C after one redraw

    shown = ok(cli(project, "jobs", "--watch", "--limit", "1", "--interval", "0.1"))

    assert re.search(r"jobs at \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC · runtime down", shown.stdout)
    assert "page 1 of 3 · 3 job(s)" in shown.stdout, shown.stdout


# ---- 4. filters that match nothing ----------------------------------------------------------- --


def test_a_filter_that_matches_nothing_says_which(project, cli):
    published(project, cli)
    assert ok(cli(project, "jobs")).stdout.strip() == "no jobs yet"
    ok(cli(project, "run-now", "welcome"), 3)

    assert ok(cli(project, "jobs", "--status", "running")).stdout.strip() == "no running jobs"
    assert ok(cli(project, "jobs", "--spinner", "x")).stdout.strip() == "no jobs of spinner x"
    both = ok(cli(project, "jobs", "--spinner", "x", "--status", "failed")).stdout.strip()
    assert both == "no failed jobs of spinner x"
    assert "page 2" in ok(cli(project, "jobs", "--page", "2")).stdout
    records = ok(cli(project, "records", "1", "--status", "cancelled")).stdout.strip()
    assert records == "no cancelled records in job 1"


# ---- 5. early progress ----------------------------------------------------------------------- --


def test_the_progress_bar_shows_failed_records_and_an_eta(project, run):
    assert run(project, "publish").code == 0

    done = run(project, "run-now", "welcome", env={"FORCE_COLOR": "1", "COLUMNS": "120"})

    assert done.code == 3, done
    plain = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", done.stderr)
    assert re.search(r"\d+ failed", plain) and "ETA" in plain, plain


def test_the_first_batch_of_calls_is_small_so_progress_moves_early(tmp_path, http_server, run):
    def slow(request):  # type: ignore[no-untyped-def]
        time.sleep(0.05)
        return OpenAI.handler(request)

    http_server.handler = slow
    config = {
        "name": "t",
        "providers": {"llm": {"kind": "openai", "base_url": f"{http_server.url}/v1"}},
    }
    spinner = {
        "name": "drafts",
        "table": "many",
        "key": "id",
        "limits": {"concurrency": 4},
        "steps": [
            {
                "id": "draft",
                "ai": {"provider": "llm", "model": "m", "prompt": "Hi {{ id }}", "output": "d"},
            }
        ],
    }
    many = "id\n" + "".join(f"{i}\n" for i in range(1, 121))
    root = write_project(
        tmp_path / "p",
        spinners={"drafts": yaml.safe_dump(spinner)},
        tables={"many": many},
        config=yaml.safe_dump(config),
    )
    assert run(root, "publish").code == 0

    done = run(root, "run-now", "drafts")

    assert done.code == 0, done
    progress = [line for line in done.stderr.splitlines() if line.startswith("job 1: ")]
    assert progress[1] == "job 1: 8/120 rows, 0 failed", progress  # 2 calls a slot, 4 slots
    assert progress[-1] == "job 1: 120/120 rows, 0 failed", progress


# ---- 6. a record still in flight ---------------------------------------------------------------


def test_journey_of_a_record_the_job_has_not_written_yet(project, cli):
    published(project, cli)
    ok(cli(project, "run-now", "welcome", "--detach"))

    waiting = cli(project, "journey", "1", "3")

    assert waiting.code == 6, waiting
    assert "record 3 of job 1 is not written yet: the job is queued" in waiting.stderr
    unknown = cli(project, "journey", "1", "99")
    assert unknown.code == 2 and "job 1 has no record '99'" in unknown.stderr, unknown


# ---- 7. validate --json -------------------------------------------------------------------------


def test_validate_json_prints_the_problems(tmp_path, cli):
    broken = WELCOME.replace("{{ first_name }}", "{{ frist_name }}")
    root = write_project(
        tmp_path / "p",
        spinners={"welcome": broken, "fine": WELCOME.replace("name: welcome", "name: fine")},
    )

    done = cli(root, "validate", "--json")

    assert done.code == 2, done
    shown = json.loads(done.stdout)
    assert shown["valid"] == ["fine"], shown
    assert len(shown["problems"]) == 1 and "frist_name" in shown["problems"][0], shown
    assert "frist_name" in done.stderr


# ---- 8. --project before or after the command --------------------------------------------------


def test_project_option_before_or_after_the_command(project, tmp_path, cli):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    published(project, cli)

    before = ok(cli(elsewhere, "--project", str(project), "spinners", "--json"))
    after = ok(cli(elsewhere, "spinners", "--json", "--project", str(project)))

    assert json.loads(before.stdout) == json.loads(after.stdout)
    assert json.loads(before.stdout)[0]["spinner"] == "welcome"
    assert cli(elsewhere, "spinners").code == 2  # and without it, no project is found here


# ---- 9. doctor checks a spinner as publish does -------------------------------------------------


def test_doctor_passes_on_the_example_project(example_project, cli):
    ok(cli(example_project, "validate"))
    ok(cli(example_project, "publish"))

    report = cli(example_project, "doctor", "--json")

    failed = [c for c in json.loads(report.stdout)["checks"] if not c["ok"]]
    assert report.code == 0 and not failed, failed


# ---- 10. the README -----------------------------------------------------------------------------


def readme() -> str:
    return (REPO / "README.md").read_text()


def test_readmes_first_spinner_validates_in_a_project_from_init(tmp_path, cli):
    ok(cli(tmp_path, "init", "p"))
    root = tmp_path / "p"
    first = readme().split("## A spinner", 1)[1].split("```yaml\n", 1)[1].split("```", 1)[0]
    (root / "spinners" / "welcome.yaml").write_text(first)

    assert ok(cli(root, "validate")).stdout.strip() == "welcome: ok"


def test_readme_lists_every_command_and_the_real_spool_path(tmp_path):
    from typer.main import get_command

    from cxrun.cli import app
    from cxrun.runtime.spool import Spool

    table = readme().split("## Commands", 1)[1].split("\n\n", 2)[1]
    for name in get_command(app).commands:  # type: ignore[attr-defined]
        assert f"`cxrun {name}" in table, name
    folder = Spool(tmp_path / ".cxrun", 7).folder.relative_to(tmp_path)
    assert f"`{str(folder).replace('7', 'N')}/`" in readme()
    assert "spool/job-N.jsonl" not in readme()
