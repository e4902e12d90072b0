"""User SQL: each expression parsed as one node and embedded as that node only; templates."""

from __future__ import annotations

import json
import re
import threading
import unicodedata
from collections.abc import Collection, Iterable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from cxrun.base.errors import CxrunError

if TYPE_CHECKING:
    import duckdb

_PLACEHOLDER = re.compile(r"\{\{(.*?)\}\}", re.DOTALL)
_FORBIDDEN = {"SUBQUERY": "a subquery", "WINDOW": "a window function", "STAR": "a * expression"}
_ERROR_PREFIX = re.compile(r"^[A-Za-z ]+ Error: ")
_MISSING_COLUMN = re.compile(r'Referenced column "([^"]+)" not found[^!]*!')
# Keys of a parsed tree that say where or how a node was written, not what it computes.
_COSMETIC = frozenset({"query_location", "query_location_length", "is_operator", "alias"})
_INVISIBLE = frozenset({"Cc", "Cf", "Cs"})  # controls, format characters (bidi, zero width)
_KEPT = 512  # parsed expressions kept per process


@dataclass(frozen=True)
class Template:
    """Text with SQL expressions between `{{ }}`, compiled to one SQL expression."""

    source: str
    sql: str
    expressions: tuple[str, ...]


def quote_ident(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def quote_literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ExpressionError(CxrunError):
    """A user expression that is not one plain scalar SQL expression; `problem` says why."""

    def __init__(self, expr: str, problem: str) -> None:
        short = expr if len(expr) <= 80 else expr[:77] + "..."
        super().__init__(f"{problem}: {shown(short)}", "fix the SQL expression and try again")
        self.problem = problem


def shown(expr: str) -> str:
    """An expression as a message shows it: on one line, invisible characters spelled out."""
    return "".join(c.encode("unicode_escape").decode() if _invisible(c) else c for c in expr)


@dataclass(frozen=True)
class Expression:
    """A user expression as it runs: DuckDB's own text for the one node it parsed,
    parenthesised, and the names of the parameters ($name) it uses."""

    sql: str
    parameters: tuple[str, ...]


_parsed: dict[str, Expression | str] = {}
_lock = threading.Lock()
_connection: list[duckdb.DuckDBPyConnection] = []  # the private parser, made on first use
_empty: list[Any] = []  # the shape of `SELECT NULL`


def embed(expr: str, con: duckdb.DuckDBPyConnection | None = None) -> str:
    """The SQL to put where a user expression goes: only the one expression node it parses to,
    written back by DuckDB and parenthesised, so no text of it can reach the SQL around it.
    Raises ExpressionError when it is not one plain scalar expression."""
    return parse_expression(expr, con).sql


def parse_expression(expr: str, con: duckdb.DuckDBPyConnection | None = None) -> Expression:
    """`expr` parsed as the single expression of `SELECT <expr>` (nothing else in the statement)
    and written back from the parsed tree; the written text must parse to the same tree.
    Raises ExpressionError. Parsing needs no table: `con` is any connection, or a private one."""
    found = _parsed.get(expr)
    if found is None:
        try:
            if con is None:
                with _lock:
                    found = _analyse(_parser(), expr)
            else:
                found = _analyse(con, expr)
        except ExpressionError as exc:
            found = exc.problem
        if len(_parsed) >= _KEPT:
            _parsed.clear()
        _parsed[expr] = found
    if isinstance(found, str):
        raise ExpressionError(expr, found)
    return found


def scratch() -> duckdb.DuckDBPyConnection:
    """A connection of its own to the private in-memory database of the parser (no file
    access), for tables of its own: TEMP ones, which no other connection sees. Cheaper than
    another database (some 10 ms to start one)."""
    with _lock:
        return _parser().cursor()


def _parser() -> duckdb.DuckDBPyConnection:
    import duckdb

    if not _connection:
        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": False,
            "threads": 1,
        }
        _connection.append(duckdb.connect(":memory:", config=config))
    return _connection[0]


def _analyse(con: duckdb.DuckDBPyConnection, expr: str) -> Expression:
    if not expr.strip():
        raise ExpressionError(expr, "empty expression")
    hidden = next((c for c in expr if c not in "\t\n\r" and _invisible(c)), None)
    if hidden is not None:
        name = unicodedata.name(hidden, "a control character")
        raise ExpressionError(expr, f"U+{ord(hidden):04X} ({name}) is not allowed in an expression")
    tree = _parse(con, "SELECT " + expr)
    if tree.get("error"):
        message = duckdb_message(tree.get("error_message", ""))
        if message.startswith("Only SELECT statements"):  # `expr; DROP ...`
            message = "it holds a statement"
        raise ExpressionError(expr, "not a single SQL expression: " + message)
    written = _written(con, expr, tree)
    sql = f"({written[len('SELECT ') :]})" if written.startswith("SELECT ") else ""
    again: dict[str, Any] = _parse(con, "SELECT " + sql) if sql else {"error": True}
    if again.get("error") or _shape(again) != _empty_shape(con):
        raise ExpressionError(expr, "not a single SQL expression")
    if _normal(again) != _normal(tree):
        raise ExpressionError(expr, "DuckDB cannot write this expression back unchanged")
    node = again["statements"][0]["node"]["select_list"][0]
    forbidden = _forbidden_in(node)
    if forbidden:
        raise ExpressionError(expr, f"{forbidden} is not allowed in a row expression")
    return Expression(sql, tuple(_parameters(node)))


def _invisible(char: str) -> bool:
    return unicodedata.category(char) in _INVISIBLE


def _parse(con: duckdb.DuckDBPyConnection, text: str) -> dict[str, Any]:
    row = con.execute("SELECT json_serialize_sql(?)", [text]).fetchone()
    try:
        tree: dict[str, Any] = (
            json.loads(row[0]) if row else {"error": True, "error_message": "cannot parse"}
        )
    except RecursionError:
        return {"error": True, "error_message": "it is nested too deeply"}
    return tree


def _written(con: duckdb.DuckDBPyConnection, expr: str, tree: dict[str, Any]) -> str:
    """The SQL DuckDB writes back for a parsed tree."""
    import duckdb

    try:
        text = json.dumps(tree)
    except RecursionError:
        raise ExpressionError(
            expr, "not a single SQL expression: it is nested too deeply"
        ) from None
    try:
        row = con.execute("SELECT json_deserialize_sql(?)", [text]).fetchone()
    except duckdb.Error as exc:  # e.g. nested deeper than its JSON reader goes
        message = duckdb_message(exc)
        raise ExpressionError(
            expr, f"DuckDB cannot write this expression back: {message}"
        ) from None
    return str(row[0]) if row and row[0] is not None else ""


def _normal(tree: Any) -> Any:
    """A parsed tree without what says where or how it was written."""
    if isinstance(tree, dict):
        return {k: _normal(v) for k, v in tree.items() if k not in _COSMETIC}
    if isinstance(tree, list):
        return [_normal(child) for child in tree]
    return tree


def _empty_shape(con: duckdb.DuckDBPyConnection) -> Any:
    if not _empty:
        _empty.append(_shape(_parse(con, "SELECT NULL")))
    return _empty[0]


def _shape(tree: dict[str, Any]) -> Any:
    """A parsed statement with each select-list entry reduced to its alias: `SELECT NULL` has
    the shape of one unnamed expression with no FROM, WHERE, GROUP BY, ORDER BY, LIMIT ..."""
    statements = tree.get("statements") or [{}]
    node = statements[0].get("node") or {}
    listed = [entry.get("alias") for entry in node.get("select_list") or []]
    return len(statements), _normal({**node, "select_list": None}), listed


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


def expression_problem(
    con: duckdb.DuckDBPyConnection, expr: str, parameters: Collection[str] = ()
) -> str | None:
    """Why `expr` is not one plain scalar SQL expression over the row, or None if it is.

    Named parameters (`$name`) are allowed when their name is one of `parameters`; their values
    are bound, never spliced into the SQL."""
    try:
        parsed = parse_expression(expr, con)
    except ExpressionError as exc:
        return exc.problem
    return parameter_problem(list(parsed.parameters), parameters)


def parameter_problem(used: list[str], allowed: Collection[str]) -> str | None:
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
    """The names of the parameters (`$name`) an expression uses (none if it does not parse)."""
    try:
        return set(parse_expression(expr, con).parameters)
    except ExpressionError:
        return set()


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
    """`"Hi {{ first_name }}"` → `concat('Hi ', coalesce(CAST((first_name) AS VARCHAR), ''))`.

    Each expression goes in as `embed` writes it; one that cannot (publish reports why) becomes
    a call to `error()`, so that a row reaching it fails instead of running other SQL."""
    parts: list[str] = []
    expressions: list[str] = []
    position = 0
    for match in _PLACEHOLDER.finditer(source):
        if match.start() > position:
            parts.append(quote_literal(source[position : match.start()]))
        expr = match.group(1).strip()
        expressions.append(expr)
        try:
            embedded = embed(expr)
        except ExpressionError as exc:
            embedded = f"error({quote_literal('{{ ' + expr + ' }}: ' + exc.problem)})"
        parts.append(f"coalesce(CAST({embedded} AS VARCHAR), '')")
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
