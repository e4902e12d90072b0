"""A corpus of bad input: every case exits 2, names the problem on stderr, shows no traceback,
and leaves the state that existed before it readable and unchanged."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest
from conftest import WELCOME, CliResult, write_project
from typer.testing import CliRunner

from cxrun.cli import app

SPINNER = "spinners/welcome.yaml"
TABLE = "tables/contacts.csv"

# A minimal spinner with one step of each kind, so that each case can break one thing.
HEAD = "table: contacts\nkey: id\nfields:\n  email: {required: true}\n"
STEPS = """steps:
  - id: hello
    log: "Welcome {{ first_name }}"
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
  - id: score
    set:
      score: "lifetime_value / 100"
"""


def spinner(text: str) -> Callable[[Path], None]:
    """Replace the (published) welcome spinner's file with `text`."""

    def apply(root: Path) -> None:
        (root / SPINNER).write_text(text)

    return apply


def steps_with(old: str, new: str) -> Callable[[Path], None]:
    """The welcome spinner with one piece of its text replaced."""
    assert old in HEAD + STEPS
    return spinner((HEAD + STEPS).replace(old, new))


def table(edit: Callable[[str], str | None], name: str = "contacts.csv") -> Callable[[Path], None]:
    """Rewrite the contacts table: `edit` gets the CSV text, returns the new text (None: delete)."""

    def apply(root: Path) -> None:
        path = root / TABLE
        text = edit(path.read_text())
        path.unlink()
        if text is not None:
            (root / "tables" / name).write_text(text)

    return apply


def table_path(make: Callable[[Path], None], name: str = "contacts.csv") -> Callable[[Path], None]:
    """Remove the contacts table's file and make something else at tables/NAME instead."""

    def apply(root: Path) -> None:
        (root / TABLE).unlink()
        make(root / "tables" / name)

    return apply


def big_field(extra: str = "") -> Callable[[Path], None]:
    """tables/notes.csv: a valid CSV whose second field is 3 MB (DuckDB reads lines of at most
    2 MiB unless told otherwise), then `extra` lines."""

    def apply(root: Path) -> None:
        text = f'id,note\n1,"{"x" * 3_000_000}"\n2,short\n{extra}'
        (root / "tables" / "notes.csv").write_text(text)

    return apply


def config(text: str) -> Callable[[Path], None]:
    def apply(root: Path) -> None:
        (root / "cxrun.yaml").write_text(text)

    return apply


def unpublished_other(root: Path) -> None:
    (root / "spinners" / "other.yaml").write_text(WELCOME.replace("name: welcome\n", ""))


def nothing(root: Path) -> None:
    pass


def row_replace(old: str, new: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        assert old in text
        return text.replace(old, new, 1)

    return edit


def insert_row(line: str) -> Callable[[str], str]:
    def edit(text: str) -> str:
        lines = text.splitlines()
        lines.insert(2, line)
        return "\n".join(lines) + "\n"

    return edit


@dataclass(frozen=True)
class Case:
    breaks: Callable[[Path], None]
    args: tuple[str, ...]
    says: tuple[str, ...]  # substrings that stderr must contain
    repair: Callable[[Path], None] | None = None  # undo the damage before checking the state


RESTORE_CONFIG = config("name: test\n")

CASES = [
    # ---- spinner files: YAML, then the JSON Schema ------------------------------------------
    pytest.param(
        Case(
            spinner("table: contacts\nkey: id: x\nsteps:\n  - id: a\n    log: hi\n"),
            ("publish",),
            (SPINNER, "line 2"),
        ),
        id="yaml-syntax-error",
    ),
    pytest.param(
        Case(
            spinner("key: id\nsteps:\n  - id: a\n    log: hi\n"),
            ("publish",),
            (SPINNER, "'table' is required"),
        ),
        id="schema-missing-table",
    ),
    pytest.param(
        Case(
            spinner("table: contacts\nkey: id\nsteps: hello\n"),
            ("publish",),
            (SPINNER, "steps: 'hello' is not of type 'array'"),
        ),
        id="schema-steps-wrong-type",
    ),
    pytest.param(
        Case(
            spinner("table: contacts\nkey: id\nsteps: []\n"),
            ("validate",),
            (SPINNER, "steps", "non-empty"),
        ),
        id="schema-empty-steps",
    ),
    pytest.param(
        Case(
            spinner(HEAD + "colour: red\n" + STEPS), ("publish",), (SPINNER, "unknown key 'colour'")
        ),
        id="schema-unknown-top-key",
    ),
    pytest.param(
        Case(
            steps_with('log: "Welcome {{ first_name }}"', "sms: hi"),
            ("publish",),
            ("steps[0]", "'sms' is not a step type"),
        ),
        id="unknown-step-type",
    ),
    pytest.param(
        Case(
            steps_with("    tag: vip\n", "    tag: vip\n    log: hi\n"),
            ("publish",),
            ("steps[1]", "one type", "log", "tag"),
        ),
        id="two-step-types",
    ),
    pytest.param(
        Case(steps_with("id: score", "id: hello"), ("publish",), ("steps[2].id", "'hello'")),
        id="duplicate-step-ids",
    ),
    # ---- expressions checked against the table's real columns --------------------------------
    pytest.param(
        Case(
            spinner(HEAD + "select: \"cty = 'London'\"\n" + STEPS),
            ("publish",),
            ("select", '"cty"', '"city"'),
        ),
        id="select-unknown-column",
    ),
    pytest.param(
        Case(
            steps_with("lifetime_value > 1000", "lifetime_valu > 1000"),
            ("publish",),
            ("steps[1].when", '"lifetime_valu"', '"lifetime_value"'),
        ),
        id="when-unknown-column",
    ),
    pytest.param(
        Case(
            steps_with("{{ first_name }}", "{{ frist_name }}"),
            ("publish",),
            ("steps[0].log", "frist_name", '"first_name"'),
        ),
        id="log-template-unknown-column",
    ),
    pytest.param(
        Case(
            steps_with("tag: vip", 'tag: "vip-{{ ctiy }}"'),
            ("publish",),
            ("steps[1].tag", "ctiy", '"city"'),
        ),
        id="tag-template-unknown-column",
    ),
    pytest.param(
        Case(
            steps_with("lifetime_value / 100", "lifetime_vlue / 100"),
            ("publish",),
            ("steps[2].set.score", '"lifetime_vlue"', '"lifetime_value"'),
        ),
        id="set-unknown-column",
    ),
    pytest.param(
        Case(
            steps_with("lifetime_value > 1000", "lifetime_value + 1000"),
            ("publish",),
            ("steps[1].when", "must be a condition"),
        ),
        id="when-not-boolean",
    ),
    pytest.param(
        Case(
            steps_with('score: "lifetime_value / 100"', 'email: "lower(email)"'),
            ("publish",),
            ("steps[2].set.email", "'email'", "column"),
        ),
        id="output-shadows-column",
    ),
    # ---- SQL that reaches outside the row: refused at publish ---------------------------------
    pytest.param(
        Case(
            steps_with("{{ first_name }}", "{{ read_text('/etc/passwd') }}"),
            ("publish",),
            ("steps[0].log", "read_text"),
        ),
        id="sql-read-text",
    ),
    pytest.param(
        Case(
            steps_with("lifetime_value / 100", "getenv('HOME')"),
            ("publish",),
            ("steps[2].set.score", "getenv"),
        ),
        id="sql-getenv",
    ),
    pytest.param(
        Case(
            steps_with("lifetime_value > 1000", "true); ATTACH 'stolen.db' AS x; SELECT (true"),
            ("publish",),
            ("steps[1].when", "not a single SQL expression"),
        ),
        id="sql-attach",
    ),
    pytest.param(
        Case(
            spinner(HEAD + 'select: "id IN (SELECT job FROM cx_jobs)"\n' + STEPS),
            ("publish",),
            ("select", "subquery"),
        ),
        id="sql-subquery",
    ),
    pytest.param(
        Case(
            spinner(HEAD + 'select: "true; DROP TABLE cx_jobs"\n' + STEPS),
            ("publish",),
            ("select", "not a single SQL expression"),
        ),
        id="sql-second-statement-drop-table",
    ),
    # ---- table files ---------------------------------------------------------------------------
    pytest.param(
        Case(table(lambda text: None), ("publish",), ("unknown table 'contacts'", TABLE)),
        id="table-file-missing",
    ),
    pytest.param(
        Case(
            table(lambda text: None),
            ("run-now", "welcome"),
            ("spinner 'welcome'", "unknown table 'contacts'"),
        ),
        id="table-file-missing-at-run",
    ),
    pytest.param(
        Case(
            table(lambda text: text, name="contacts.xlsx"),
            ("publish",),
            ("tables/contacts.xlsx", "unsupported file type '.xlsx'"),
        ),
        id="table-unsupported-extension",
    ),
    pytest.param(
        Case(
            table(insert_row("9,Zed,Zee,z@example.org,Paris,10,2026-01-01,surplus")),
            ("publish",),
            (TABLE,),
        ),
        id="table-ragged-csv",
    ),
    pytest.param(
        Case(
            table(insert_row("9,Zed,Zee,z@example.org,Paris,10,2026-01-01,surplus")),
            ("tables", "load", "contacts"),
            (TABLE,),
        ),
        id="table-ragged-csv-load",
    ),
    pytest.param(Case(table(lambda text: ""), ("publish",), (TABLE,)), id="table-empty-file"),
    pytest.param(
        Case(table(lambda text: ""), ("tables", "load", "contacts"), (TABLE,)),
        id="table-empty-file-load",
    ),
    pytest.param(
        Case(
            steps_with("key: id", "key: contact_id"),
            ("publish",),
            ("key", '"contact_id"', "not in table contacts"),
        ),
        id="key-column-missing",
    ),
    pytest.param(
        Case(
            table(row_replace("\n2,Alan", "\n,Alan")),
            ("publish",),
            ("key", '"id"', "empty in 1 row", TABLE),
        ),
        id="key-has-nulls",
    ),
    pytest.param(
        Case(
            table(row_replace("\n2,Alan", "\n1,Alan")),
            ("publish",),
            ("key", '"id"', "duplicate", TABLE),
        ),
        id="key-has-duplicates",
    ),
    pytest.param(
        Case(
            table(row_replace("\n2,Alan", "\n1,Alan")),
            ("run-now", "welcome"),
            ("no longer fits", "duplicate", TABLE),
        ),
        id="key-duplicates-at-run",
    ),
    pytest.param(
        Case(nothing, ("tables", "show", "nosuch"), ("unknown table 'nosuch'",)),
        id="tables-show-unknown",
    ),
    pytest.param(
        Case(
            table_path(Path.mkdir),
            ("publish",),
            (SPINNER, "tables/contacts.csv is a folder, not a table file", "move it out"),
        ),
        id="table-file-is-a-folder",
    ),
    pytest.param(
        Case(
            lambda root: (root / "tables" / "x.csv").mkdir(),
            ("tables", "load", "x"),
            ("tables/x.csv is a folder, not a table file",),
        ),
        id="table-folder-named-like-a-csv-load",
    ),
    pytest.param(
        Case(
            lambda root: (root / "tables" / "x.csv").mkdir(),
            ("tables", "load"),
            ("tables/x.csv is a folder",),
        ),
        id="table-folder-named-like-a-csv-load-all",
    ),
    pytest.param(
        Case(
            lambda root: (root / "tables" / "y.csv").symlink_to("gone.csv"),
            ("tables", "show", "y"),
            ("tables/y.csv is a link to gone.csv, which does not exist", "remove it"),
        ),
        id="table-dangling-symlink",
    ),
    pytest.param(
        Case(
            table_path(lambda path: path.symlink_to("gone.csv")),
            ("run-now", "welcome"),
            ("tables/contacts.csv is a link to gone.csv",),
        ),
        id="table-dangling-symlink-at-run",
    ),
    pytest.param(
        Case(
            big_field("3,one,two\n"),
            ("tables", "load", "notes"),
            ("tables/notes.csv", "cannot load as CSV"),
        ),
        id="table-3mb-field-then-a-ragged-row",
    ),
    # ---- names that do not exist ---------------------------------------------------------------
    pytest.param(
        Case(nothing, ("run-now", "nosuch"), ("unknown spinner 'nosuch'", "welcome")),
        id="run-now-unknown-spinner",
    ),
    pytest.param(
        Case(
            unpublished_other,
            ("run-now", "other"),
            ("'other' is not published", "cxrun publish other"),
        ),
        id="run-now-unpublished-spinner",
    ),
    pytest.param(
        Case(nothing, ("validate", "nosuch"), ("unknown spinner 'nosuch'",)),
        id="validate-unknown-spinner",
    ),
    pytest.param(
        Case(nothing, ("journey", "1", "999"), ("no record '999'", "cxrun records 1")),
        id="journey-unknown-record",
    ),
    pytest.param(Case(nothing, ("journey", "42", "1"), ("no job 42",)), id="journey-unknown-job"),
    pytest.param(
        Case(nothing, ("records", "42", "--json"), ("no job 42",)), id="records-unknown-job"
    ),
    pytest.param(
        Case(nothing, ("jobs", "--status", "bogus", "--json"), ("bogus",)), id="jobs-unknown-status"
    ),
    pytest.param(
        Case(nothing, ("records", "1", "--status", "bogus", "--json"), ("bogus",)),
        id="records-unknown-status",
    ),
    # ---- --where -------------------------------------------------------------------------------
    pytest.param(
        Case(
            nothing,
            ("run-now", "welcome", "--where", "cty = 'London'"),
            ("--where", '"cty"', '"city"'),
        ),
        id="where-unknown-column",
    ),
    pytest.param(
        Case(
            nothing,
            ("run-now", "welcome", "--where", "lifetime_value * 2"),
            ("--where", "must be a condition"),
        ),
        id="where-not-boolean",
    ),
    pytest.param(
        Case(
            nothing,
            ("run-now", "welcome", "--where", "read_text('/etc/passwd') IS NOT NULL"),
            ("--where", "read_text"),
        ),
        id="where-read-text",
    ),
    pytest.param(
        Case(
            nothing,
            ("run-now", "welcome", "--where", "true; DROP TABLE cx_jobs"),
            ("--where", "not a single SQL expression"),
        ),
        id="where-second-statement",
    ),
    # ---- the project itself --------------------------------------------------------------------
    pytest.param(
        Case(nothing, ("jobs", "--project", "{empty}"), ("no cxrun.yaml", "{empty}")),
        id="project-folder-without-config",
    ),
    pytest.param(
        Case(
            config("name: test\nbogus: 1\n"),
            ("validate",),
            ("cxrun.yaml", "bogus"),
            repair=RESTORE_CONFIG,
        ),
        id="config-unknown-key",
    ),
    pytest.param(
        Case(
            spinner(HEAD + "eligible: {hours: '09:00-18:00', timezone: Mars/Base}\n" + STEPS),
            ("publish",),
            (SPINNER, "eligible.timezone: unknown time zone 'Mars/Base'"),
        ),
        id="eligible-unknown-timezone",
    ),
    pytest.param(
        Case(
            spinner(HEAD + STEPS + '  - id: later\n    wait: {until: "email"}\n'),
            ("publish",),
            (SPINNER, "wait.until: must be a timestamp"),
        ),
        id="wait-until-not-a-timestamp",
    ),
    pytest.param(
        Case(nothing, ("approve", "1"), ("say which records",)),
        id="approve-without-records",
    ),
    pytest.param(
        Case(nothing, ("reject", "1", "nobody"), ("job 1 has no record 'nobody'",)),
        id="reject-unknown-record",
    ),
    pytest.param(
        Case(
            config("name: [unclosed\n"),
            ("validate",),
            ("cxrun.yaml", "line"),
            repair=RESTORE_CONFIG,
        ),
        id="config-yaml-syntax-error",
    ),
]


def _json(result) -> object:
    assert result.code == 0, result
    return json.loads(result.stdout)


def _state(cli, root: Path) -> tuple[object, object, object]:
    """What must survive a bad command: the jobs, the first job's records, the published version."""
    jobs = _json(cli(root, "jobs", "--json"))
    records = _json(cli(root, "records", "1", "--json"))
    published = {s["spinner"]: s["version"] for s in _json(cli(root, "spinners", "--json"))}
    return jobs, records, published.get("welcome")


@dataclass(frozen=True)
class Baseline:
    root: Path
    state: tuple[object, object, object]


@pytest.fixture(scope="module")
def baseline(tmp_path_factory: pytest.TempPathFactory) -> Baseline:
    """A project with existing state: the spinner published (version 1) and run once (job 1).

    Built once; every case works on its own copy (no process holds the state open between
    commands, so copying the folder copies a consistent state)."""
    return build_baseline(tmp_path_factory.mktemp("baseline"))


def build_baseline(folder: Path) -> Baseline:
    root = write_project(folder / "p", spinners={"welcome": HEAD + STEPS})
    runner = CliRunner(env={"CXRUN_PROJECT": None})
    published = runner.invoke(app, ["publish", "--project", str(root)])
    assert published.exit_code == 0, published.stderr
    first = runner.invoke(app, ["run-now", "welcome", "--json", "--project", str(root)])
    assert first.exit_code == 3, first.stderr  # one contact has no email

    def read(*args: str) -> object:
        done = runner.invoke(app, [*args, "--json", "--project", str(root)])
        assert done.exit_code == 0, done.stderr
        return json.loads(done.stdout)

    jobs, records = read("jobs"), read("records", "1")
    versions = {s["spinner"]: s["version"] for s in read("spinners")}  # type: ignore[attr-defined]
    state = (jobs, records, versions.get("welcome"))
    assert [j["job"] for j in jobs] == [1] and len(records) == 5 and state[2] == 1, state
    return Baseline(root, state)


def _copy(baseline: Baseline, tmp_path: Path) -> Path:
    root = tmp_path / "p"
    shutil.copytree(baseline.root, root)
    return root


INTERNAL_ERROR = 70  # a bug: no bad input may end in it


def run_case(case: Case, baseline: Baseline, folder: Path, cli) -> tuple[Path, CliResult]:
    """The case's command, run in a copy of the baseline (under `folder`) that it broke."""
    root = _copy(baseline, folder)
    (folder / "empty").mkdir()
    case.breaks(root)
    args = [a.replace("{empty}", str(folder / "empty")) for a in case.args]
    return root, cli(root, *args)


@pytest.mark.parametrize("case", CASES)
def test_bad_input(case: Case, baseline: Baseline, tmp_path: Path, cli) -> None:
    root, result = run_case(case, baseline, tmp_path, cli)

    assert result.code != INTERNAL_ERROR, f"bad input ended in an internal error: {result}"
    assert result.code == 2, result
    for text in case.says:
        assert text.replace("{empty}", str(tmp_path / "empty")) in result.stderr, result
    assert result.stderr.startswith("error: "), result
    assert result.stdout.strip() == "", result
    assert "Traceback" not in result.stdout + result.stderr

    if case.repair:
        case.repair(root)
    assert _state(cli, root) == baseline.state


def test_every_required_kind_of_case_is_present() -> None:
    ids = {param.id for param in CASES}
    assert len(ids) == len(CASES) >= 24


def test_no_case_of_either_corpus_ends_in_an_internal_error(
    baseline: Baseline, tmp_path: Path, cli
) -> None:
    """Every case here and in test_bad_input_state.py, run again in one go: each that exits 70
    (an internal error) is named, so a new exit-70 path fails even if a runner's own checks
    change."""
    import test_bad_input_state as state

    codes: dict[str, int] = {}
    for param in CASES:
        _, result = run_case(param.values[0], baseline, tmp_path / param.id, cli)
        codes[param.id] = result.code
    for param in state.CASES:
        if state.runnable(param.values[0]):
            _, result = state.run_case(param.values[0], baseline, tmp_path / param.id, cli)
            codes[f"state:{param.id}"] = result.code
    assert len(codes) >= len(CASES) + 10
    assert [name for name, code in codes.items() if code == INTERNAL_ERROR] == []
    assert {code for code in codes.values()} == {2}, codes


def test_a_valid_csv_with_a_3mb_field_loads(baseline: Baseline, tmp_path: Path, cli) -> None:
    root = _copy(baseline, tmp_path)
    big_field()(root)
    loaded = cli(root, "tables", "load", "notes")
    assert loaded.code == 0, loaded
    shown = _json(cli(root, "tables", "show", "notes", "--json"))
    assert [(row["id"], len(row["note"])) for row in shown] == [(1, 3_000_000), (2, 5)]


def test_nan_and_infinity_are_printed_as_null_in_json(tmp_path: Path, cli) -> None:
    """JSON has no NaN or Infinity: a Parquet table's such values print as null, in the table's
    rows, in records' metadata and in outputs, and stdout stays JSON that strict parsers read."""
    import duckdb

    spinner = "table: scores\nkey: id\nsteps:\n  - id: calc\n    set:\n      twice: score * 2\n"
    root = write_project(tmp_path / "p", spinners={"calc": spinner}, tables={})
    con = duckdb.connect()
    con.execute(
        "COPY (SELECT * FROM (VALUES (1, 'nan'::DOUBLE), (2, 'inf'::DOUBLE), "
        "(3, '-inf'::DOUBLE), (4, 1.5)) AS t(id, score)) TO ? (FORMAT parquet)",
        [str(root / "tables" / "scores.parquet")],
    )
    con.close()
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", "calc").code == 0

    def strict(*args: str) -> object:
        result = cli(root, *args, "--json")
        assert result.code == 0, result
        return json.loads(result.stdout, parse_constant=lambda word: pytest.fail(word))

    rows = strict("tables", "show", "scores")
    assert [row["score"] for row in rows] == [None, None, None, 1.5]  # type: ignore[index]
    records = strict("records", "1")
    assert [r["metadata"]["score"] for r in records] == [None, None, None, 1.5]  # type: ignore[index]
    assert [r["outputs"]["twice"] for r in records] == [None, None, None, 3.0]  # type: ignore[index]
    journey = strict("journey", "1", "2")
    assert journey[0]["output"] == {"twice": None}  # type: ignore[index]


@pytest.mark.parametrize(
    ("breaks", "args", "says"),
    [
        pytest.param(
            spinner("table: contacts\nkey: id: x\nsteps:\n  - id: a\n    log: hi\n"),
            ("publish",),
            (SPINNER, "line 2"),
            id="yaml-syntax-error",
        ),
        pytest.param(
            steps_with("{{ first_name }}", "{{ frist_name }}"),
            ("publish",),
            ("steps[0].log", '"first_name"'),
            id="log-template-unknown-column",
        ),
        pytest.param(
            nothing,
            ("run-now", "welcome", "--where", "read_text('/etc/passwd') = ''"),
            ("--where", "read_text"),
            id="where-read-text",
        ),
    ],
)
def test_bad_input_in_a_real_process(
    breaks, args, says, baseline: Baseline, tmp_path: Path, run
) -> None:
    """The installed executable: exit 2, a plain message, no traceback in a real subprocess."""
    root = _copy(baseline, tmp_path)
    breaks(root)
    result = run(root, *args)
    assert result.code == 2, result
    for text in says:
        assert text in result.stderr, result
    assert "Traceback" not in result.stdout + result.stderr
    jobs = run(root, "jobs", "--json")
    assert jobs.code == 0 and [j["job"] for j in json.loads(jobs.stdout)] == [1], jobs
