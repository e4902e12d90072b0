"""Expressions and templates: one safe scalar expression each, compiled to SQL."""

from __future__ import annotations

import duckdb
import pytest

from cxrun.base.sql import compile_template, duckdb_message, expression_problem


@pytest.fixture
def con():
    connection = duckdb.connect(":memory:", config={"enable_external_access": False})
    connection.execute(
        "CREATE TABLE r AS SELECT 'Ada' AS first_name, NULL::VARCHAR AS city, 3 AS n"
    )
    yield connection
    connection.close()


def render(con, source: str) -> str:
    return con.execute(f"SELECT {compile_template(source).sql} FROM r").fetchone()[0]


def test_template_renders_placeholders_and_keeps_literal_text(con):
    assert render(con, "Welcome {{ first_name }}!") == "Welcome Ada!"
    assert render(con, "{{ n * 2 }} of {{n}}") == "6 of 3"
    assert render(con, "it's {{ upper(first_name) }}") == "it's ADA"


def test_template_renders_null_as_empty_and_plain_text_as_is(con):
    assert render(con, "from {{ city }}.") == "from ."
    assert render(con, "no placeholders") == "no placeholders"
    assert render(con, "") == ""
    assert compile_template("a {{ x }} b {{ y }}").expressions == ("x", "y")


@pytest.mark.parametrize(
    "expr",
    [
        "n > 1",
        "first_name ILIKE 'a%'",
        "coalesce(city, 'x') = 'x'",
        "n IN (1, 2, 3)",
        "CASE WHEN n > 2 THEN 'a' END",
    ],
)
def test_plain_expressions_are_accepted(con, expr):
    assert expression_problem(con, expr) is None


@pytest.mark.parametrize(
    ("expr", "problem"),
    [
        ("n > 1; DROP TABLE r", "not a single SQL expression"),
        ("1) FROM r WHERE (1", "not a single SQL expression"),
        ("n > 1) --", "not a single SQL expression"),
        ("n > 1) UNION SELECT (1", "not a single SQL expression"),
        ("(SELECT count(*) FROM r) > 0", "subquery"),
        ("n IN (SELECT 1)", "subquery"),
        ("EXISTS (SELECT 1)", "subquery"),
        ("row_number() OVER () > 1", "window"),
        ("n = $id", "parameter"),
        ("n = ?", "parameter"),
        ("", "empty"),
    ],
)
def test_statements_subqueries_windows_and_parameters_are_refused(con, expr, problem):
    found = expression_problem(con, expr)
    assert found is not None and problem in found


def test_a_trailing_comment_cannot_swallow_the_closing_parenthesis(con):
    assert expression_problem(con, "n > 1 -- a comment") is None


def test_duckdb_message_names_the_missing_column_and_candidates(con):
    with pytest.raises(duckdb.Error) as caught:
        con.execute("SELECT frist_name FROM r")
    message = duckdb_message(caught.value)
    assert message.startswith('column "frist_name" not found')
    assert "first_name" in message
    assert "LINE" not in message and "^" not in message
