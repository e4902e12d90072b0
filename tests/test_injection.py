"""Injection attempts at every place a user expression meets other SQL: `--where` on run-now,
retry, approve and reject, and `select`, trigger `select`, `when`, `set` and `{{ }}` in a spinner
file. Each attempt fails with exit 2 (a one- or two-line message, no traceback, nothing started
or changed) or takes at most the rows the spinner's own condition allows."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import duckdb
import pytest
import yaml
from conftest import CliResult, write_project
from typer.testing import CliRunner

from cxrun.base import sql
from cxrun.cli import app

PEOPLE = """id,first_name,email,city,opted_in,score
1,Ada,ada@example.org,London,true,90
2,Alan,alan@example.org,Paris,true,80
3,Grace,,London,true,70
4,Edsger,edsger@example.org,Austin,false,95
5,Barbara,barbara@example.org,Boston,true,40
6,Donald,,Boston,false,30
7,Frances,frances@example.org,Paris,false,60
8,John,,Rome,true,20
9,Ken,ken@example.org,Berlin,true,55
10,Dennis,dennis@example.org,Oslo,true,65
11,Margaret,,Oslo,false,85
12,Tim,tim@example.org,Lima,true,10
"""
SELECT = "opted_in AND city <> 'Paris'"
ALLOWED = {"1", "3", "5", "8", "9", "10", "12"}  # the rows SELECT takes
FAILED = {"3", "8"}  # taken, but without the required email
PENDING = {"1", "3", "9", "10"}  # taken, with score > 50: parked at the approval
HOT = {"1", "2", "3", "4", "7", "9", "10", "11"}  # score > 50

CAMPAIGN = f"""name: campaign
table: people
key: id
fields:
  email: {{required: true}}
select: "{SELECT}"
steps:
  - id: hello
    log: "Hello {{{{ first_name }}}}"
"""
REVIEW = f"""name: review
table: people
key: id
select: "{SELECT}"
steps:
  - id: check
    approval: {{prompt: "Write to {{{{ email }}}}?"}}
    when: "score > 50"
  - id: done
    log: "done"
"""


def attempt(text: str, name: str) -> Any:
    return pytest.param(text, id=name)


PARENTHESES = [
    attempt("true) OR (true", "close-or-open"),
    attempt("true)) OR ((true", "close-twice-or-open-twice"),
    attempt("1=1) OR (1=1", "tautology-close-or-open"),
    attempt("false) OR true OR (false", "or-true-between"),
    attempt("opted_in) OR NOT (opted_in", "or-not-opted-in"),
    attempt("true) OR (true) AND (true", "or-and-chain"),
    attempt("(true", "open-only"),
    attempt("true)", "close-only"),
    attempt(") OR (", "bare-close-or-open"),
    attempt("true) OR (SELECT true", "close-or-select"),
    attempt("true) OR EXISTS (SELECT 1) OR (true", "close-or-exists"),
]
COMMENTS = [
    attempt("1=1 --", "line-comment"),
    attempt("1=1 /*", "open-block-comment"),
    attempt("true --\n) OR (true", "line-comment-then-newline"),
    attempt("true) OR true --", "close-or-true-comment"),
    attempt("true) OR (true /*", "close-or-open-block-comment"),
    attempt("true /*) OR (true*/", "escape-inside-block-comment"),
    attempt("true */ OR /* x", "close-block-comment"),
    attempt("1=1 /* x */ OR true", "block-comment-in-the-middle"),
    attempt("-- x\ntrue", "leading-line-comment"),
    attempt("true) -- ", "close-then-comment"),
]
SEMICOLONS = [
    attempt("1=1; DROP TABLE x", "drop-table"),
    attempt("true; DROP TABLE cx_jobs", "drop-state-table"),
    attempt("true); DELETE FROM cx_selections; SELECT (true", "close-delete-reopen"),
    attempt("true;", "trailing-semicolon"),
    attempt("; SELECT 1", "leading-semicolon"),
    attempt("true) OR (true; --", "close-or-open-semicolon"),
    attempt("true; SELECT 1", "second-select"),
]
UNIONS = [
    attempt("1=1 UNION SELECT 1", "union-select"),
    attempt("true) UNION SELECT (true", "close-union-reopen"),
    attempt("true) UNION ALL SELECT _cx_row FROM cx_selections WHERE (true", "union-all-state"),
    attempt("1=1 UNION SELECT _cx_row FROM cx_selections", "union-state-rows"),
    attempt("id IN (SELECT 1 UNION SELECT 2)", "union-in-subquery"),
    attempt("true) OR id IN (SELECT 4 UNION SELECT 7) OR (true", "close-or-union-reopen"),
]
QUOTES = [
    attempt("first_name = 'x' OR 'a'='a", "quote-tautology-unclosed"),
    attempt("first_name = 'x' OR 'a'='a'", "quote-tautology-closed"),
    attempt("')) OR ((true", "quote-close-twice"),
    attempt("first_name = '') OR (''=''", "empty-quotes-close-or-open"),
    attempt("first_name = 'x'') OR (''='", "doubled-quote-close"),
    attempt('first_name = "x" OR "a"="a"', "double-quotes"),
    attempt("first_name = $$x$$ OR true) OR (true", "dollar-quotes-close"),
    attempt("first_name = E'\\'' OR true) OR (true", "escaped-quote-close"),
    attempt("'\\'') OR (true", "backslash-quote-close"),
    attempt("first_name = 'O''Brien') OR (true", "doubled-quote-then-close"),
    attempt("first_name = 'x' || ''') OR (true --'", "quote-concat-close-comment"),
]
LOOK_ALIKES = [
    attempt("true\uff09 OR \uff08true", "fullwidth-parentheses"),
    attempt("true\uff09OR\uff08true", "fullwidth-parentheses-no-space"),
    attempt("opted_in\u202e) OR (true", "right-to-left-override"),
    attempt("true \u2066) OR (true\u2069", "bidi-isolates"),
    attempt("true\u061c) OR (true", "arabic-letter-mark"),
    attempt("true\u200b) OR (\u200btrue", "zero-width-space"),
    attempt("true\u200d) OR (true", "zero-width-joiner"),
    attempt("true\x00) OR (true", "nul-byte"),
    attempt("true\ufeff) OR (true", "byte-order-mark"),
    attempt("true\x1b) OR (true", "escape-control"),
    attempt("true \uff2f\uff32 true", "fullwidth-or"),
    attempt("true\u2028) OR (true", "line-separator"),
    attempt("true\u00a0OR\u00a0true", "no-break-spaces"),
    attempt("first_name = \u02bcx\u02bc OR true", "modifier-apostrophes"),
    attempt("first_name = \uff07x\uff07 OR true", "fullwidth-apostrophes"),
    attempt("first_name = \u2019x\u2019 OR true", "curly-quotes"),
]
CLAUSES = [
    attempt("true ORDER BY 1", "order-by"),
    attempt("true LIMIT 100", "limit"),
    attempt("true FROM people", "from"),
    attempt("true WHERE true", "where"),
    attempt("true AS x", "alias"),
    attempt("x: true", "prefix-alias"),
    attempt("DISTINCT true", "distinct"),
    attempt("true, true", "two-expressions"),
    attempt("true GROUP BY ALL", "group-by"),
    attempt("true) AS x, (true", "close-alias-reopen"),
    attempt("NOT " * 600 + "true", "nested-too-deeply"),
]
CORPUS = PARENTHESES + COMMENTS + SEMICOLONS + UNIONS + QUOTES + LOOK_ALIKES + CLAUSES
# One to four of each form, for the surfaces that follow the same path as run-now's --where.
SAMPLE = [
    *PARENTHESES[:2],
    PARENTHESES[5],
    *COMMENTS[:3],
    COMMENTS[4],
    SEMICOLONS[0],
    *UNIONS[:2],
    QUOTES[0],
    *QUOTES[2:4],
    LOOK_ALIKES[0],
    LOOK_ALIKES[2],
    LOOK_ALIKES[5],
    LOOK_ALIKES[7],
    CLAUSES[0],
]


def invoke(root: Path, *args: str) -> CliResult:
    result = CliRunner().invoke(app, [*args, "--project", str(root)])
    return CliResult(result.exit_code, result.stdout, result.stderr)


@pytest.fixture(scope="module")
def shared(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    """One project for the `--where` cases: both spinners published, a finished job with two
    failed records (for retry), and the latest review job (all its approvals pending)."""
    root = write_project(
        tmp_path_factory.mktemp("injection") / "p",
        {"campaign": CAMPAIGN, "review": REVIEW},
        {"people": PEOPLE},
    )
    assert invoke(root, "publish").code == 0
    done = invoke(root, "run-now", "campaign", "--json")
    assert done.code == 3, done  # partial: 3 and 8 have no email
    job = json.loads(done.stdout)
    assert job["total"] == len(ALLOWED) and job["failed"] == len(FAILED)
    return {"root": root, "retry": job["job"], "newest": job["job"], "review": None, "left": None}


def refused(result: CliResult) -> bool:
    """Whether the command was refused as bad input: exit 2, one or two lines, no traceback."""
    assert "Traceback" not in result.stdout + result.stderr, result
    if result.code != 2:
        return False
    lines = result.stderr.strip().splitlines()
    assert 1 <= len(lines) <= 2 and lines[0].startswith("error: "), result
    return True


def newest_job(cli, root: Path) -> int:
    listed = json.loads(cli(root, "jobs", "--json").stdout)
    return max((j["job"] for j in listed), default=0)


def records(cli, root: Path, job: int) -> list[dict[str, Any]]:
    result = cli(root, "records", str(job), "--json")
    assert result.code == 0, result
    found: list[dict[str, Any]] = json.loads(result.stdout)
    return found


def pending(cli, root: Path, job: int) -> set[str]:
    result = cli(root, "approvals", "--job", str(job), "--json")
    assert result.code == 0, result
    return {a["record"] for a in json.loads(result.stdout)}


def review_job(shared: dict[str, Any], cli) -> int:
    """A review job whose approvals are all still pending (a new one once some are answered)."""
    if shared["left"] != PENDING:
        started = cli(shared["root"], "run-now", "review", "--json")
        assert started.code == 6, started  # waiting for the approvals
        shared["review"] = shared["newest"] = json.loads(started.stdout)["job"]
        shared["left"] = PENDING
    job: int = shared["review"]
    return job


# ---- --where on run-now, retry, approve and reject -------------------------------------------


@pytest.mark.parametrize("where", CORPUS)
def test_run_now_where_takes_no_row_the_select_leaves_out(shared, cli, where):
    root = shared["root"]
    result = cli(root, "run-now", "campaign", "--where", where, "--json")
    if refused(result):
        assert newest_job(cli, root) == shared["newest"]  # no job was created
        return
    assert result.code in (0, 3), result
    job = json.loads(result.stdout)
    shared["newest"] = job["job"]
    assert job["total"] <= len(ALLOWED)
    assert {r["record"] for r in records(cli, root, job["job"])} <= ALLOWED


@pytest.mark.parametrize("where", SAMPLE)
def test_retry_where_runs_no_record_but_the_failed_ones(shared, cli, where):
    root, job = shared["root"], shared["retry"]
    before = {r["record"]: r["attempts"] for r in records(cli, root, job)}
    result = cli(root, "retry", str(job), "--where", where, "--json")
    after = {r["record"]: r["attempts"] for r in records(cli, root, job)}
    retried = {key for key, attempts in after.items() if attempts != before[key]}
    if refused(result):
        assert retried == set()
        return
    assert result.code in (0, 3), result
    assert retried <= FAILED


@pytest.mark.parametrize("decision", ["approve", "reject"])
@pytest.mark.parametrize("where", SAMPLE)
def test_approve_and_reject_where_answer_no_record_but_the_pending_ones(
    shared, cli, where, decision
):
    root = shared["root"]
    job = review_job(shared, cli)
    result = cli(root, decision, str(job), "--where", where, "--json")
    left = shared["left"] = pending(cli, root, job)
    if refused(result):
        assert left == PENDING
        return
    assert result.code in (0, 6), result
    answered = set(json.loads(result.stdout)["answered"])
    assert answered <= PENDING and left == PENDING - answered


def test_plain_where_conditions_take_the_rows_they_name(shared, cli):
    """The controls: the same commands with a plain condition select what it says."""
    root = shared["root"]
    result = cli(root, "run-now", "campaign", "--where", "score > 50", "--json")
    shared["newest"] = json.loads(result.stdout)["job"]
    assert {r["record"] for r in records(cli, root, shared["newest"])} == {"1", "3", "9", "10"}
    job = shared["retry"]
    before = {r["record"]: r["attempts"] for r in records(cli, root, job)}
    assert cli(root, "retry", str(job), "--where", "true", "--json").code == 3
    after = {r["record"]: r["attempts"] for r in records(cli, root, job)}
    assert {key for key in after if after[key] != before[key]} == FAILED
    review = review_job(shared, cli)
    answered = cli(root, "approve", str(review), "--where", "score > 60", "--json")
    assert set(json.loads(answered.stdout)["answered"]) == {"1", "3", "10"}, answered
    shared["left"] = pending(cli, root, review)
    assert shared["left"] == {"9"}


def test_the_installed_executable_refuses_them_too(tmp_path, run):
    root = write_project(tmp_path / "p", {"campaign": CAMPAIGN}, {"people": PEOPLE})
    assert run(root, "publish").code == 0
    for where in ("true) OR (true", "true --\n) OR (true", "1=1; DROP TABLE x", "true）OR（true"):
        result = run(root, "run-now", "campaign", "--where", where, "--json")
        assert refused(result), result
    assert json.loads(run(root, "jobs", "--json").stdout) == []
    job = run(root, "run-now", "campaign", "--where", "1=1 --", "--json")
    assert job.code == 3 and json.loads(job.stdout)["total"] == len(ALLOWED), job


# ---- the same text in a spinner file ---------------------------------------------------------


def probe(steps: list[dict[str, Any]], **top: Any) -> str:
    spec = {"name": "probe", "table": "people", "key": "id", **top, "steps": steps}
    return yaml.safe_dump(spec, allow_unicode=True, sort_keys=False)


def published(tmp_path: Path, cli, text: str) -> Path | None:
    """The project with the probe spinner published, or None when publish refused it."""
    root = write_project(tmp_path / "p", {"probe": text}, {"people": PEOPLE})
    result = cli(root, "publish")
    if refused(result):
        return None
    assert result.code == 0, result
    return root


def run_probe(cli, root: Path) -> list[dict[str, Any]]:
    result = cli(root, "run-now", "probe", "--json")
    assert result.code == 0, result
    return records(cli, root, json.loads(result.stdout)["job"])


def hot_by_select(text: str) -> str:
    return probe([{"id": "hello", "log": "hi"}], select=f"score > 50 AND {text}")


def hot_by_when(text: str) -> str:
    return probe([{"id": "hot", "tag": "hot", "when": f"score > 50 AND {text}"}])


def hot_by_set(text: str) -> str:
    return probe([{"id": "score", "set": {"hot": f"score > 50 AND {text}"}}])


def hot_by_template(text: str) -> str:
    return probe([{"id": "mark", "tag": f"{{{{ score > 50 AND {text} }}}}"}])


# Each probe marks the rows its expression holds for: taken, tagged hot, hot, tagged true.
PROBES = [
    pytest.param(hot_by_select, lambda r: True, id="select"),
    pytest.param(hot_by_when, lambda r: "hot" in r["tags"], id="when"),
    pytest.param(hot_by_set, lambda r: r["outputs"]["hot"] is True, id="set"),
    pytest.param(hot_by_template, lambda r: "true" in r["tags"], id="template"),
]


@pytest.mark.parametrize(("spinner", "marked"), PROBES)
def test_a_plain_expression_in_a_spinner_file_marks_its_rows(tmp_path, cli, spinner, marked):
    root = published(tmp_path, cli, spinner("true"))
    assert root is not None
    assert {r["record"] for r in run_probe(cli, root) if marked(r)} == HOT


@pytest.mark.parametrize("text", SAMPLE)
@pytest.mark.parametrize(("spinner", "marked"), PROBES)
def test_a_spinner_file_expression_marks_no_row_its_condition_leaves_out(
    tmp_path, cli, spinner, marked, text
):
    root = published(tmp_path, cli, spinner(text))
    if root is not None:
        assert {r["record"] for r in run_probe(cli, root) if marked(r)} <= HOT


def by_event(tmp_path: Path, cli, text: str, person: int) -> int | None:
    """The rows the event's job took for the person, or None when publish refused the select."""
    trigger = {
        "event": "person.updated",
        "schema": {"type": "object", "properties": {"id": {"type": "integer"}}},
        "select": f"id = $id AND {text}",
    }
    root = published(
        tmp_path, cli, probe([{"id": "hi", "log": "hi"}], select=SELECT, triggers=[trigger])
    )
    if root is None:
        return None
    payload = json.dumps({"id": person})
    result = cli(root, "trigger", "person.updated", "--payload", "-", "--json", input=payload)
    assert result.code == 0, result
    (job,) = json.loads(result.stdout)["jobs"]
    total: int = job["total"]
    return total


def test_a_plain_trigger_select_takes_its_row(tmp_path, cli):
    assert by_event(tmp_path, cli, "true", 1) == 1


@pytest.mark.parametrize("text", SAMPLE)
def test_a_trigger_select_takes_no_row_the_spinner_select_leaves_out(tmp_path, cli, text):
    assert by_event(tmp_path, cli, text, 4) in (None, 0)  # person 4 is not opted in


# ---- what runs is what was written ----------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "first_name || ' it''s ' || '\"quoted\"'",
        "list_transform([1, 2, 3], lambda x: x * score)",
        "list_reduce([1, 2, 3], lambda acc, x: acc + x)",
        "CAST(score AS VARCHAR) || '%'",
        "score::DOUBLE / 3",
        "{'score': score, 'name': first_name}.score",
        "review.score > 3",
        "profile->>'company'",
        "profile->'tags'->>0",
        "CASE WHEN score > 50 THEN 'gold' ELSE 'standard' END",
        "signup_date >= CAST($timestamp AS DATE) - INTERVAL 30 DAY",
        "first_name LIKE 'A!%' ESCAPE '!'",
        "[x * 2 FOR x IN [1, 2, 3] IF x > 1]",
        "'-- not a comment /* nor this */'",
        "coalesce(city, 'nowhere') = 'nowhere' -- a comment",
    ],
)
def test_what_runs_computes_what_was_written(expr):
    con = duckdb.connect(":memory:")
    con.execute(
        "CREATE TABLE r AS SELECT 'Ada' AS first_name, NULL::VARCHAR AS city, 90 AS score, "
        "DATE '2026-11-20' AS signup_date, {'score': 4} AS review, "
        """'{"company": "Acme", "tags": ["a", "b"]}'::JSON AS profile"""
    )
    params = {"timestamp": "2026-12-01 00:00:00"} if "$" in expr else None
    embedded = sql.embed(expr)
    written = con.execute(f"SELECT {expr}\nFROM r", params).fetchall()
    assert con.execute(f"SELECT {embedded} FROM r", params).fetchall() == written
    assert sql.embed(embedded) == embedded  # written back, it parses to the same node


def test_an_expression_that_is_not_one_node_is_never_embedded():
    for text in ("true) OR (true", "1=1; DROP TABLE x", "true ORDER BY 1", "a\x00b"):
        with pytest.raises(sql.ExpressionError):
            sql.embed(text)
