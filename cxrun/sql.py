"""User SQL: checking that an expression is one safe scalar expression, compiling templates."""

from __future__ import annotations

import json
import re
from collections.abc import Collection, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from cxrun.spec.model import Template

if TYPE_CHECKING:
    import duckdb

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FORBIDDEN = {"SUBQUERY": "a subquery", "WINDOW": "a window function", "STAR": "a * expression"}
_ERROR_PREFIX = re.compile(r"^[A-Za-z ]+ Error: ")
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found[^!]*!')


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


def wrap(expr: str) -> str:
    """An expression as a parenthesised SQL fragment; the newline ends any trailing comment."""
    return f"({expr}\n)"


def duckdb_message(exc: BaseException | str) -> str:
    """DuckDB's error text made short: no error class prefix, no caret drawing."""
    lines: list[str] = []
    for line in str(exc).splitlines():
        if line.startswith("LINE "):
            break
        if line.strip():
            lines.append(line.strip())
    text = _ERROR_PREFIX.sub("", " ".join(lines)) or type(exc).__name__
    text = text.split(" Candidate functions:", 1)[0]  # the overloads DuckDB lists are noise here
    missing = _MISSING_COLUMN.search(text)
    if missing:
        candidates = text.split("Candidate bindings:", 1)[1].strip() if "Candidate" in text else ""
        best = candidates.split(",")[0].strip()
        hint = f" (did you mean {best}?)" if best else ""
        text = f'column "{missing.group(1)}" not found{hint}'
    return text


def _parse(con: duckdb.DuckDBPyConnection, expr: str) -> dict[str, Any]:
    row = con.execute("SELECT json_serialize_sql(?)", ["SELECT " + wrap(expr)]).fetchone()
    tree: dict[str, Any] = (
        json.loads(row[0]) if row else {"error": True, "error_message": "cannot parse"}
    )
    return tree


def expression_problem(
    con: duckdb.DuckDBPyConnection, expr: str, parameters: Collection[str] = ()
) -> str | None:
    """Why `expr` is not one plain scalar SQL expression over the row, or None if it is.

    Named parameters (`$name`) are allowed when their name is one of `parameters`; their values
    are bound, never spliced into the SQL."""
    if not expr.strip():
        return "empty expression"
    tree = _parse(con, expr)
    if tree.get("error"):
        return "not a single SQL expression: " + duckdb_message(tree.get("error_message", ""))
    statements = tree.get("statements", [])
    node = statements[0].get("node", {}) if len(statements) == 1 else {}
    if (
        len(node.get("select_list", [])) != 1
        or node.get("from_table", {}).get("type") != "EMPTY"
        or node.get("where_clause") is not None
    ):
        return "not a single SQL expression"
    found = _forbidden_in(node["select_list"][0])
    if found:
        return f"{found} is not allowed in a row expression"
    return _parameter_problem(_parameters(node["select_list"][0]), parameters)


def _parameter_problem(used: list[str], allowed: Collection[str]) -> str | None:
    if used and not allowed:
        return "a parameter ($name or ?) is not allowed in a row expression"
    if any(name.isdigit() for name in used):
        return "a positional parameter (? or $1) is not allowed: use a named one ($name)"
    unknown = [name for name in used if name not in allowed]
    if unknown:
        known = ", ".join(f"${name}" for name in sorted(allowed))
        return f"unknown parameter ${unknown[0]} (allowed here: {known})"
    return None


def parameter_names(con: duckdb.DuckDBPyConnection, expr: str) -> set[str]:
    """The names of the parameters (`$name`) an expression uses."""
    tree = _parse(con, expr)
    return set(_parameters(tree.get("statements", [])))


def bound(
    con: duckdb.DuckDBPyConnection, conditions: Iterable[str], values: Mapping[str, Any]
) -> dict[str, Any]:
    """The values of the parameters the conditions use (NULL for a name without a value)."""
    names = sorted({name for c in conditions for name in parameter_names(con, c)})
    return {name: values.get(name) for name in names}


def _parameters(tree: Any) -> list[str]:
    if isinstance(tree, dict):
        if tree.get("class") == "PARAMETER":
            return [str(tree.get("identifier", ""))]
        return [name for child in tree.values() for name in _parameters(child)]
    if isinstance(tree, list):
        return [name for child in tree for name in _parameters(child)]
    return []


def _forbidden_in(tree: Any) -> str | None:
    if isinstance(tree, dict):
        if tree.get("class") in _FORBIDDEN:
            return _FORBIDDEN[tree["class"]]
        children: Iterable[Any] = tree.values()
    elif isinstance(tree, list):
        children = tree
    else:
        return None
    for child in children:
        found = _forbidden_in(child)
        if found:
            return found
    return None


def compile_template(source: str) -> Template:
    """`"Hi {{ first_name }}"` → `concat('Hi ', coalesce(CAST((first_name) AS VARCHAR), ''))`."""
    parts: list[str] = []
    expressions: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        if match.start() > position:
            parts.append(quote_literal(source[position : match.start()]))
        expr = match.group(1).strip()
        expressions.append(expr)
        parts.append(f"coalesce(CAST({wrap(expr)} AS VARCHAR), '')")
        position = match.end()
    if position < len(source):
        parts.append(quote_literal(source[position:]))
    if not parts:
        sql = "''"
    elif len(parts) == 1 and not expressions:
        sql = parts[0]
    else:
        sql = "concat(" + ", ".join(parts) + ")"
    return Template(source=source, sql=sql, expressions=tuple(expressions))
