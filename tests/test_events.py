"""Events: `cxrun trigger`, payload checks (size, depth, JSON, schema and formats), binding."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import write_project

LISTENER = """table: contacts
key: id
triggers:
  - event: contact.created
    schema:
      type: object
      required: [id]
      properties:
        id: {type: string}
        email: {type: string, format: email}
        when: {type: string, format: date-time}
    select: "CAST(id AS VARCHAR) = $id"
steps:
  - id: hello
    log: "Hello {{ first_name }}"
"""

EVERYONE = """table: contacts
key: id
triggers:
  - event: contact.created
steps:
  - id: count
    tag: seen
"""

DEAF = """table: contacts
key: id
triggers:
  - schedule: "0 9 * * *"
steps:
  - id: hello
    log: "Hello"
"""


@pytest.fixture
def listening(tmp_path: Path, cli) -> Path:
    root = write_project(tmp_path / "p", {"greet": LISTENER, "everyone": EVERYONE, "deaf": DEAF})
    assert cli(root, "publish").code == 0
    return root


def jobs(cli, root: Path) -> list[dict]:
    result = cli(root, "jobs", "--json")
    assert result.code == 0, result
    return sorted(json.loads(result.stdout), key=lambda j: j["job"])


def trigger(cli, root: Path, payload: object, *args: str):
    text = payload if isinstance(payload, str) else json.dumps(payload)
    return cli(root, "trigger", "contact.created", "--payload", "-", "--json", *args, input=text)


def test_an_event_starts_a_job_for_each_listening_spinner(listening, cli):
    result = trigger(cli, listening, {"id": "2", "email": "alan@example.org"})
    assert result.code == 0, result
    started = json.loads(result.stdout)
    assert started["event"] == "contact.created" and started["received_already"] is False
    by_spinner = {j["spinner"]: j for j in started["jobs"]}
    assert set(by_spinner) == {"greet", "everyone"}  # deaf only has a schedule
    assert by_spinner["greet"]["total"] == 1 and by_spinner["everyone"]["total"] == 5
    assert {j["trigger"] for j in started["jobs"]} == {"event"}
    assert {j["status"] for j in started["jobs"]} == {"completed"}
    records = json.loads(
        cli(listening, "records", str(by_spinner["greet"]["job"]), "--json").stdout
    )
    assert [r["record"] for r in records] == ["2"]


def test_a_payload_value_is_bound_never_spliced_into_sql(listening, cli):
    result = trigger(cli, listening, {"id": "1 OR 1=1"})
    assert result.code == 0, result
    greet = next(j for j in json.loads(result.stdout)["jobs"] if j["spinner"] == "greet")
    assert greet["total"] == 0  # no contact has that id; it did not select everyone
    quote = trigger(cli, listening, {"id": "1' OR '1'='1"})
    greet = next(j for j in json.loads(quote.stdout)["jobs"] if j["spinner"] == "greet")
    assert greet["total"] == 0


def test_formats_are_checked_and_an_invalid_payload_gives_a_job_that_runs_nothing(listening, cli):
    payload = {"id": "3", "email": "not-an-email", "when": "yesterday"}
    result = trigger(cli, listening, payload)
    assert result.code == 2, result
    greet = next(j for j in json.loads(result.stdout)["jobs"] if j["spinner"] == "greet")
    assert greet["status"] == "invalid_payload" and greet["total"] == 0
    assert [e["pointer"] for e in greet["errors"]] == ["/email", "/when"]
    assert "is not a 'email'" in greet["errors"][0]["message"]
    assert "is not a 'date-time'" in greet["errors"][1]["message"]
    assert "does not fit" in result.stderr
    detail = json.loads(cli(listening, "job", str(greet["job"]), "--json").stdout)
    assert detail["status"] == "invalid_payload" and detail["errors"] == greet["errors"]
    assert detail["records"]["completed"] == 0
    shown = cli(listening, "job", str(greet["job"]))
    assert "/email: 'not-an-email' is not a 'email'" in shown.stdout
    everyone = next(j for j in json.loads(result.stdout)["jobs"] if j["spinner"] == "everyone")
    assert everyone["status"] == "completed" and "errors" not in everyone  # no schema there
    fine = trigger(
        cli, listening, {"id": "3", "email": "g@example.org", "when": "2026-11-22T09:00:00Z"}
    )
    assert fine.code == 0, fine


def test_a_missing_required_field_points_at_the_whole_payload(listening, cli):
    result = trigger(cli, listening, {})
    assert result.code == 2
    greet = next(j for j in json.loads(result.stdout)["jobs"] if j["spinner"] == "greet")
    assert greet["errors"] == [{"pointer": "", "message": "'id' is a required property"}]


def nested(levels: int) -> str:
    return '{"a": ' * (levels - 1) + "{}" + "}" * (levels - 1)


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (
            '{"id": "1",}',
            "is not valid JSON: Expecting property name enclosed in double quotes at line 1, "
            "column 12",
        ),
        ('{"id": "1"}\n[', "is not valid JSON: Extra data at line 2, column 1"),
        ("[1, 2]", "must be a JSON object, not an array"),
        ('{"id": NaN}', "is not valid JSON"),
        (nested(33), "is nested deeper than 32 levels"),
        ("[" * 100_000 + "]" * 100_000, "is nested deeper than 32 levels"),
        ('{"id": "' + "x" * (1024 * 1024) + '"}', "is larger than 1 MiB"),
        ('{"id": ' + "9" * 5000 + "}", "a number has too many digits"),
    ],
    ids=["syntax", "extra", "array", "nan", "33-levels", "very-deep", "oversized", "long-number"],
)
def test_a_payload_that_cannot_be_read_is_refused_and_starts_nothing(
    listening, cli, payload, message
):
    result = trigger(cli, listening, payload)
    assert result.code == 2, result
    assert message in result.stderr, result.stderr
    assert len(result.stderr.strip().splitlines()) <= 2
    assert "Traceback" not in result.stderr and result.stdout == ""
    assert jobs(cli, listening) == []


def test_a_payload_32_levels_deep_is_accepted(listening, cli):
    payload = json.loads(nested(32))
    payload["id"] = "1"
    assert trigger(cli, listening, payload).code == 0


def test_a_payload_file_and_no_payload(listening, cli, tmp_path):
    path = tmp_path / "event.json"
    path.write_text('{"id": "5"}')
    result = cli(listening, "trigger", "contact.created", "--payload", str(path), "--json")
    assert result.code == 0, result
    none = cli(listening, "trigger", "contact.created", "--json")  # {}: the required id is missing
    assert none.code == 2
    missing = cli(listening, "trigger", "contact.created", "--payload", str(tmp_path / "nope.json"))
    assert missing.code == 2 and "cannot read the payload" in missing.stderr


def test_the_same_event_id_twice_starts_nothing_the_second_time(listening, cli):
    first = trigger(cli, listening, {"id": "1"}, "--id", "evt-1")
    assert first.code == 0, first
    numbers = [j["job"] for j in json.loads(first.stdout)["jobs"]]
    again = cli(
        listening,
        "trigger",
        "contact.created",
        "--payload",
        "-",
        "--id",
        "evt-1",
        input='{"id": "2"}',
    )
    assert again.code == 0, again
    listed = ", ".join(map(str, numbers))
    assert again.stdout.strip() == (
        f"event contact.created with id evt-1 was received already (job {listed})"
    )
    assert [j["job"] for j in jobs(cli, listening)] == numbers
    other = trigger(cli, listening, {"id": "1"}, "--id", "evt-2")
    assert other.code == 0 and len(jobs(cli, listening)) == 4


def test_an_event_nobody_listens_to_is_an_error(listening, cli):
    result = cli(listening, "trigger", "contact.deleted")
    assert result.code == 2
    assert "no published spinner listens to event 'contact.deleted'" in result.stderr
    assert "events listened to: contact.created" in result.stderr


def test_detach_only_queues_the_jobs(listening, cli):
    result = trigger(cli, listening, {"id": "4"}, "--detach")
    assert result.code == 0, result
    assert {j["status"] for j in json.loads(result.stdout)["jobs"]} == {"queued"}
    assert cli(listening, "runtime", "--once").code == 0
    assert {j["status"] for j in jobs(cli, listening)} == {"completed"}


def test_publish_names_the_parameters_an_event_select_may_use(tmp_path, cli):
    root = write_project(tmp_path / "p", {"greet": LISTENER.replace("$id", "$ident")})
    result = cli(root, "publish")
    assert result.code == 2
    assert (
        "spinners/greet.yaml: triggers[0].select: unknown parameter $ident "
        "(allowed here: $email, $id, $last_timestamp, $timestamp, $when)"
    ) in result.stderr


def test_trigger_end_to_end_with_the_executable(listening, run):
    payload = '{"id": "2", "email": "alan@example.org"}'
    first = run(
        listening, "trigger", "contact.created", "--payload", "-", "--id", "a1", input=payload
    )
    assert first.code == 0, first
    assert "completed" in first.stdout
    again = run(
        listening, "trigger", "contact.created", "--payload", "-", "--id", "a1", input=payload
    )
    assert again.code == 0, again
    assert "was received already" in again.stdout
    bad = run(listening, "trigger", "contact.created", "--payload", "-", input='{"id": 2}')
    assert bad.code == 2, bad
    assert "/id: 2 is not of type 'string'" in bad.stderr


def test_expressions_accept_exactly_the_named_parameters_allowed():
    import duckdb

    from cxrun.base.sql import expression_problem

    con = duckdb.connect(":memory:")
    allowed = ["id", "timestamp"]
    assert expression_problem(con, "n = $id AND d < $timestamp", allowed) is None
    assert "positional" in (expression_problem(con, "n = ?", allowed) or "")
    assert "positional" in (expression_problem(con, "n = $1", allowed) or "")
    unknown = expression_problem(con, "n = $email", allowed) or ""
    assert unknown == "unknown parameter $email (allowed here: $id, $timestamp)"
    assert "not allowed" in (expression_problem(con, "n = $id") or "")
    con.close()


def test_a_value_the_select_cannot_use_is_refused_whole(tmp_path, cli):
    typed = LISTENER.replace("CAST(id AS VARCHAR) = $id", "id = $id")
    root = write_project(tmp_path / "p", {"greet": typed, "everyone": EVERYONE})
    assert cli(root, "publish").code == 0
    result = trigger(cli, root, {"id": "abc"}, "--id", "x1")
    assert result.code == 2, result
    assert "event 'contact.created': the rows cannot be selected: Could not convert string" in (
        result.stderr
    )
    assert jobs(cli, root) == []  # not even the other listener's job: one transaction
    assert trigger(cli, root, {"id": "3"}, "--id", "x1").code == 0  # the id was not used up
