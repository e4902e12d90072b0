"""Spinner specs: schema problems with paths, the model, and checks against the real table."""

from __future__ import annotations

import pytest

from cxrun.base.clock import utcnow
from cxrun.spec import checks, loader
from cxrun.spec.build import build
from cxrun.spec.model import LogStep, SetStep, TagStep
from cxrun.store.tables import TableInfo

TABLE = TableInfo(
    name="contacts",
    version=1,
    physical="t_contacts_v1",
    file="contacts.csv",
    format="csv",
    size=0,
    mtime_ns=0,
    digest="",
    rows=0,
    loaded_at=utcnow(),
    columns=(
        ("id", "BIGINT"),
        ("first_name", "VARCHAR"),
        ("lifetime_value", "DOUBLE"),
        ("signup_date", "DATE"),
    ),
)


def spinner(steps, **extra):
    raw = {"table": "contacts", "key": "id", "steps": steps, **extra}
    assert loader.schema_problems(raw, "s") == []
    return build(raw, "s")


def test_the_model_is_built_from_a_valid_mapping():
    built = spinner(
        [
            {"id": "a", "log": "Hi {{ first_name }}"},
            {"id": "b", "tag": "vip", "when": "true"},
            {"id": "c", "set": {"x": 1, "y": "first_name", "z": True}},
        ],
        fields={"first_name": {"required": True}, "lifetime_value": None},
    )
    assert built.required_fields == ("first_name",)
    first, second, third = built.steps
    assert isinstance(first, LogStep) and first.message.expressions == ("first_name",)
    assert isinstance(second, TagStep) and second.when == "true"
    assert isinstance(third, SetStep) and third.values == (
        ("x", "1"),
        ("y", "first_name"),
        ("z", "true"),
    )
    assert third.outputs == ("x", "y", "z")


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ({"key": "id", "steps": [{"id": "a", "log": "x"}]}, "'table' is required"),
        ({"table": "t", "key": "id", "steps": []}, "steps: [] should be non-empty"),
        (
            {"table": "t", "key": "id", "steps": [{"id": "a", "sms": "x"}]},
            "steps[0]: 'sms' is not a step type (one of: log, tag, set, ai, send, http, wait, "
            "approval, call)",
        ),
        (
            {"table": "t", "key": "id", "steps": [{"id": "a", "log": "x", "tag": "y"}]},
            "steps[0]: a step has one type, found log and tag",
        ),
        (
            {"table": "t", "key": "id", "steps": [{"id": "a", "log": "x", "retries": 2}]},
            "steps[0]: unknown step option 'retries'",
        ),
        ({"table": "t", "key": "id", "steps": [{"id": "a", "log": 3}]}, "steps[0].log: 3 is not"),
        (
            {"table": "t", "key": "id", "colour": "red", "steps": [{"id": "a", "log": "x"}]},
            "unknown key 'colour'",
        ),
        (
            {"name": "other", "table": "t", "key": "id", "steps": [{"id": "a", "log": "x"}]},
            "does not match the file name",
        ),
    ],
)
def test_schema_problems_name_the_path(raw, expected):
    problems = loader.schema_problems(raw, "s")
    assert any(expected in p for p in problems), problems


def test_all_schema_problems_are_reported_at_once():
    raw = {"table": 3, "key": "id", "steps": [{"id": "a", "sms": 1}, {"log": "x"}]}
    problems = loader.schema_problems(raw, "s")
    assert len(problems) == 3, problems


def test_outputs_of_earlier_steps_bind_in_later_steps_only():
    ok = spinner(
        [
            {"id": "a", "set": {"score": "lifetime_value / 100"}},
            {"id": "b", "tag": "high", "when": "score > 10"},
        ]
    )
    assert checks.check(ok, TABLE) == []
    backwards = spinner(
        [
            {"id": "b", "tag": "high", "when": "score > 10"},
            {"id": "a", "set": {"score": "lifetime_value / 100"}},
        ]
    )
    problems = checks.check(backwards, TABLE)
    assert len(problems) == 1 and problems[0].startswith('steps[0].when: column "score" not found')


def test_semantic_problems_are_all_reported_with_paths():
    bad = spinner(
        [
            {"id": "a", "log": "Hi {{ frist_name }}"},
            {"id": "a", "tag": "t", "when": "lifetime_value"},
            {"id": "c", "set": {"first_name": "1", "total": "sum(lifetime_value)"}},
        ],
        select="signup_dat > DATE '2026-01-01'",
        fields={"email": {"required": True}},
    )
    problems = checks.check(bad, TABLE)
    expected = [
        'fields.email: column "email" is not in table contacts',
        "steps[1].id: 'a' is used by an earlier step",
        "steps[2].set.first_name: output 'first_name' has the name of a table column",
        'select: column "signup_dat" not found (did you mean "signup_date"?)',
        'steps[0].log: {{ frist_name }}: column "frist_name" not found',
        "steps[1].when: must be a condition (true or false), but it is DOUBLE",
        "steps[2].set.total: aggregate functions are not allowed",
    ]
    for text in expected:
        assert any(text in p for p in problems), (text, problems)


def test_a_where_filter_is_checked_like_select():
    assert checks.where_problem(TABLE, "lifetime_value > 10") is None
    assert "read_text" in checks.where_problem(TABLE, "read_text('/etc/passwd') IS NOT NULL")
    assert "getenv" in checks.where_problem(TABLE, "getenv('HOME') IS NOT NULL")
    assert "subquery" in checks.where_problem(TABLE, "id IN (SELECT 1)")
    assert "condition" in checks.where_problem(TABLE, "first_name")
