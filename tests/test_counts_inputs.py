"""Inputs you can trust: CSV empty cells (a quoted "" is an empty string, nothing is NULL) and
email addresses in event payloads, checked for real. Real state files, the real CLI."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from conftest import write_project

# ---- CSV: a quoted empty cell is an empty string, an unquoted one is NULL ------------------

CONTACTS = (
    "id,name,email,score,signup\n"
    '1,"",ada@example.org,5,2026-01-02\n'
    '2,,"",,""\n'
    '3,"Grace",grace@example.org,"",2026-03-04\n'
)

TYPES = """table: contacts
key: id
fields:
  email: {required: true}
steps:
  - id: types
    set:
      kinds: "typeof(id) || ' ' || typeof(name) || ' ' || typeof(score) || ' ' || typeof(signup)"
"""


@pytest.mark.parametrize("delimiter", [",", ";", "\t"])
def test_a_quoted_empty_cell_loads_as_an_empty_string(tmp_path, cli, delimiter):
    text = 'a,b\n1,""\n2,\n'.replace(",", delimiter)
    root = write_project(tmp_path / "p", {}, {"contacts": text})

    shown = cli(root, "tables", "show", "contacts", "--json")

    assert shown.code == 0, shown
    assert json.loads(shown.stdout) == [{"a": 1, "b": ""}, {"a": 2, "b": None}]


def test_empty_cells_in_text_number_and_date_columns(tmp_path, cli):
    root = write_project(tmp_path / "p", {"types": TYPES}, {"contacts": CONTACTS})

    shown = cli(root, "tables", "show", "contacts", "--json")

    assert shown.code == 0, shown
    assert json.loads(shown.stdout) == [
        {"id": 1, "name": "", "email": "ada@example.org", "score": 5, "signup": "2026-01-02"},
        {"id": 2, "name": None, "email": "", "score": None, "signup": None},
        {
            "id": 3,
            "name": "Grace",
            "email": "grace@example.org",
            "score": None,
            "signup": "2026-03-04",
        },
    ]
    # A number or date column keeps its type: a "" there is NULL, not a reason to make it text.
    assert cli(root, "publish").code == 0
    ran = cli(root, "run-now", "types", "--json")
    assert ran.code == 3, ran  # row 2's email is "": a required field that is empty fails
    records = {r["record"]: r for r in json.loads(cli(root, "records", "1", "--json").stdout)}
    assert records["1"]["outputs"] == {"kinds": "BIGINT VARCHAR BIGINT DATE"}
    assert records["2"]["status"] == "failed"
    assert "required field 'email' is empty" in records["2"]["error"]
    assert records["3"]["status"] == "completed"


def test_a_required_field_fails_both_when_empty_and_when_null(tmp_path, cli):
    spinner = TYPES.replace("email: {required: true}", "name: {required: true}")
    root = write_project(tmp_path / "p", {"types": spinner}, {"contacts": CONTACTS})
    assert cli(root, "publish").code == 0

    ran = cli(root, "run-now", "types", "--json")

    assert ran.code == 3, ran
    records = {r["record"]: r for r in json.loads(cli(root, "records", "1", "--json").stdout)}
    assert [records[k]["metadata"]["name"] for k in "12"] == ["", None]
    assert [records[k]["status"] for k in "123"] == ["failed", "failed", "completed"]
    assert all("required field 'name' is empty" in records[k]["error"] for k in "12")


# ---- email addresses in event payloads -----------------------------------------------------

LISTENER = """table: contacts
key: id
triggers:
  - event: contact.created
    schema:
      type: object
      properties:
        email: {type: string, format: email}
        other: {type: string, format: idn-email}
    select: "false"
steps:
  - id: hello
    log: "Hello"
"""


@pytest.fixture
def listening(tmp_path: Path, cli) -> Path:
    root = write_project(tmp_path / "p", {"greet": LISTENER})
    assert cli(root, "publish").code == 0
    return root


def trigger(cli, root: Path, payload: dict[str, Any]):
    text = json.dumps(payload)
    return cli(root, "trigger", "contact.created", "--payload", "-", "--json", input=text)


VALID = [
    "joe@example.com",
    "joe.bloggs+newsletter@example.com",
    "jörg@bücher.example",
    "用户@例子.广告",
]


@pytest.mark.parametrize("address", VALID)
def test_valid_addresses_fit_format_email_and_an_invalid_one_beside_them_does_not(
    listening, cli, address
):
    result = trigger(cli, listening, {"email": address, "other": "joe bloggs@example.com"})

    assert result.code == 2, result
    (job,) = json.loads(result.stdout)["jobs"]
    assert [e["pointer"] for e in job["errors"]] == ["/other"]  # not /email
    fine = trigger(cli, listening, {"email": address, "other": address})
    assert fine.code == 0, fine
    (job,) = json.loads(fine.stdout)["jobs"]
    assert job["status"] == "completed" and "errors" not in job


@pytest.mark.parametrize("address", ["@example.com", "joe.bloggs@", "joe bloggs@example.com"])
def test_invalid_addresses_give_an_invalid_payload_job(listening, cli, address):
    result = trigger(cli, listening, {"email": address, "other": address})

    assert result.code == 2, result
    (job,) = json.loads(result.stdout)["jobs"]
    assert job["status"] == "invalid_payload"
    assert job["errors"] == [
        {"pointer": "/email", "message": f"{address!r} is not a 'email'"},
        {"pointer": "/other", "message": f"{address!r} is not a 'idn-email'"},
    ]
