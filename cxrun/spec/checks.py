"""Checks beyond the schema: columns exist, every SQL expression binds against the real table."""

from __future__ import annotations

from collections.abc import Collection, Iterator, Mapping
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from cxrun.base import notify
from cxrun.base.cron import cron_problem, zone_problem
from cxrun.base.sql import (
    ExpressionError,
    duckdb_message,
    embed,
    parameter_problem,
    parse_expression,
    quote_ident,
    scratch,
    shown,
)
from cxrun.spec.model import (
    TIME_PARAMETERS,
    AIStep,
    ScheduleTrigger,
    SendStep,
    SetStep,
    Spinner,
    WaitStep,
)
from cxrun.spec.outputs import output_expression
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

RESERVED_PREFIX = "_cx"


@contextmanager
def sandbox(table: TableInfo) -> Iterator[duckdb.DuckDBPyConnection]:
    """An in-memory DuckDB with no file access and an empty `ctx0` shaped like the table (the
    contexts are TEMP tables, this connection's own)."""
    con = scratch()
    try:
        columns = ", ".join(f"{quote_ident(n)} {t}" for n, t in table.columns)
        con.execute(f"CREATE TEMP TABLE ctx0 ({columns})")
        yield con
    finally:
        con.close()


def expression_error(
    con: duckdb.DuckDBPyConnection,
    context: str,
    expr: str,
    condition: bool = False,
    parameters: Collection[str] = (),
) -> str | None:
    """Why `expr` does not work as a row expression over the `context` table, or None.

    What is bound is the SQL that runs (`embed`); the `parameters` it may use are bound as
    NULL: one that needs a type must be cast."""
    import duckdb

    try:
        parsed = parse_expression(expr, con)
    except ExpressionError as exc:
        return exc.problem
    problem = parameter_problem(list(parsed.parameters), parameters)
    if problem:
        return problem
    nulls = dict.fromkeys(parsed.parameters) if parameters else None
    try:
        described = con.execute(
            f"DESCRIBE SELECT {parsed.sql} AS v, * FROM {context}", nulls
        ).fetchall()
    except duckdb.Error as exc:
        message = duckdb_message(exc)
        if "GROUP BY" in message:
            return "aggregate functions are not allowed in a row expression"
        if nulls:
            message += " (parameters are checked as NULL: cast one whose type matters, e.g. "
            message += "CAST($timestamp AS TIMESTAMP))"
        return message
    kind = str(described[0][1])
    if condition and kind not in ("BOOLEAN", '"NULL"', "NULL"):
        return f"must be a condition (true or false), but it is {kind}"
    return None


def where_problem(table: TableInfo, where: str) -> str | None:
    """Why a `--where` condition does not work over the table's rows, or None; it is bound
    as the SQL that will run (`embed`), with no parameters."""
    with sandbox(table) as con:
        return expression_error(con, "ctx0", where, condition=True)


def check(spinner: Spinner, table: TableInfo) -> list[str]:
    """Every semantic problem of the spinner against the table's real columns, as path: message."""
    columns = {name.lower() for name in table.column_names}
    listing = ", ".join(table.column_names)
    problems: list[str] = []
    if spinner.key.lower() not in columns:
        problems.append(f'key: column "{spinner.key}" is not in table {table.name} ({listing})')
    for field in spinner.fields:
        if field.name.lower() not in columns:
            problems.append(
                f'fields.{field.name}: column "{field.name}" is not in table '
                f"{table.name} ({listing})"
            )
    problems += _names(spinner, columns)
    with sandbox(table) as con:
        problems += _expressions(con, spinner)
    return problems + deadline_problems(spinner)


def _names(spinner: Spinner, columns: set[str]) -> list[str]:
    problems: list[str] = []
    seen_ids: set[str] = set()
    seen_outputs: dict[str, str] = {}
    for step in spinner.steps:
        if step.id in seen_ids:
            problems.append(f"{step.path}.id: '{step.id}' is used by an earlier step")
        seen_ids.add(step.id)
        for output in step.outputs:
            where = f"{step.path}.{'call' if step.hidden else 'set'}.{output}"
            if output.lower() in columns:
                problems.append(f"{where}: output '{output}' has the name of a table column")
            elif output.lower().startswith(RESERVED_PREFIX):
                problems.append(f"{where}: names starting with '{RESERVED_PREFIX}' are reserved")
            elif output.lower() in seen_outputs:
                problems.append(
                    f"{where}: output '{output}' is set by step "
                    f"'{seen_outputs[output.lower()]}' already"
                )
            seen_outputs.setdefault(output.lower(), step.id)
    return problems


def _expressions(con: duckdb.DuckDBPyConnection, spinner: Spinner) -> list[str]:
    problems: list[str] = []
    if spinner.select:
        problem = expression_error(con, "ctx0", spinner.select, True, TIME_PARAMETERS)
        if problem:
            problems.append(f"select: {problem}")
    problems += _trigger_problems(con, spinner)
    context = "ctx0"
    for index, step in enumerate(spinner.steps):
        at = step.path
        if isinstance(step, WaitStep) and step.until is not None:
            problem = _timestamp_error(con, context, step.until)
            if problem:
                problems.append(f"{at}.wait.until: {problem}")
        if step.when:
            problem = expression_error(con, context, step.when, condition=True)
            if problem:
                problems.append(f"{at}.when: {problem}")
        for label, template in step.templates():
            for expr in template.expressions:
                problem = expression_error(con, context, expr)
                if problem:
                    problems.append(f"{at}.{label}: {{{{ {shown(expr)} }}}}: {problem}")
        if isinstance(step, SetStep):
            selected, found = _set_columns(con, context, index, step, at)
            problems += found
        else:
            selected = [
                f"{output_expression(step, 'NULL')} AS {quote_ident(name)}" for name in step.outputs
            ]
        if selected:
            context = _extend(con, context, index, selected)
    return problems


_MOMENTS = ("DATE", "TIMESTAMP", "TIMESTAMP WITH TIME ZONE", "TIMESTAMP_S", "TIMESTAMP_MS")


def _timestamp_error(con: duckdb.DuckDBPyConnection, context: str, expr: str) -> str | None:
    problem = expression_error(con, context, expr)
    if problem:
        return problem
    described = con.execute(f"DESCRIBE SELECT {embed(expr, con)} AS v FROM {context}").fetchall()
    kind = str(described[0][1])
    if kind not in (*_MOMENTS, "TIMESTAMP_NS", '"NULL"', "NULL"):
        return f"must be a timestamp or a date, but it is {kind} (CAST it to TIMESTAMP)"
    return None


def _trigger_problems(con: duckdb.DuckDBPyConnection, spinner: Spinner) -> list[str]:
    """Cron expressions, time zones, event schemas and selects; no trigger twice."""
    problems: list[str] = []
    if spinner.child and spinner.triggers:
        problems.append(
            "triggers: a child spinner (child: true) runs only through a call step of another "
            "spinner; remove its triggers"
        )
    seen: dict[tuple[str, ...], int] = {}
    for index, trigger in enumerate(spinner.triggers):
        at = f"triggers[{index}]"
        if isinstance(trigger, ScheduleTrigger):
            identity: tuple[str, ...] = ("schedule", trigger.cron.strip(), trigger.timezone)
            found = [f"{at}.schedule: {p}" for p in [cron_problem(trigger.cron)] if p] + [
                f"{at}.timezone: {p}" for p in [zone_problem(trigger.timezone)] if p
            ]
        else:
            identity = ("event", trigger.event)
            found = [f"{at}.schema: {p}" for p in [json_schema_problem(trigger.schema)] if p]
        if identity in seen:
            found.append(f"{at}: the same {trigger.kind} as triggers[{seen[identity]}]")
        seen.setdefault(identity, index)
        if trigger.select:
            problem = expression_error(con, "ctx0", trigger.select, True, trigger.allowed)
            found += [f"{at}.select: {problem}"] if problem else []
        problems += found
    return problems


def json_schema_problem(schema: dict[str, Any] | None) -> str | None:
    """Why `schema` is not a valid JSON Schema (of its declared draft; 2020-12 by default)."""
    import jsonschema

    if schema is None:
        return None
    validator = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    try:
        validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return f"not a valid JSON Schema: {exc.message}"
    return None


def _set_columns(
    con: duckdb.DuckDBPyConnection, context: str, index: int, step: SetStep, at: str
) -> tuple[list[str], list[str]]:
    """A set step's columns for the next context (NULL where an expression has a problem)."""
    problems: list[str] = []
    selected: list[str] = []
    for name, expr in step.values:
        problem = expression_error(con, context, expr)
        if problem:
            problems.append(f"{at}.set.{name}: {problem}")
        selected.append(f"{'NULL' if problem else embed(expr, con)} AS {quote_ident(name)}")
    return selected, problems


def _extend(con: duckdb.DuckDBPyConnection, context: str, index: int, selected: list[str]) -> str:
    """The next context: the previous one with a step's outputs as columns."""
    import duckdb

    following = f"ctx{index + 1}"
    try:
        con.execute(
            f"CREATE TEMP TABLE {following} AS SELECT *, {', '.join(selected)} FROM {context} "
            "LIMIT 0"
        )
    except duckdb.Error:  # an output that clashes with a column: reported by _names already
        return context
    return following


def plugin_problems(
    spinner: Spinner, providers: Mapping[str, Any], channels: Mapping[str, Any]
) -> list[str]:
    """Every AI step names a provider of cxrun.yaml, every send step a channel."""
    problems = []
    for step in spinner.steps:
        index = step.path
        if isinstance(step, AIStep) and step.provider not in providers:
            known = ", ".join(sorted(providers)) or "none"
            problems.append(
                f"{index}.ai.provider: unknown provider '{step.provider}' "
                f"(providers in cxrun.yaml: {known})"
            )
        if isinstance(step, SendStep) and step.channel not in channels:
            known = ", ".join(sorted(channels)) or "none"
            problems.append(
                f"{index}.send.channel: unknown channel '{step.channel}' "
                f"(channels in cxrun.yaml: {known})"
            )
        if isinstance(step, AIStep) and step.schema is not None:
            problems += _schema_problem(index, step.schema)
    return problems + notify.problems(spinner.notify, channels, "notify")


def _schema_problem(index: str, schema: dict[str, Any]) -> list[str]:
    import jsonschema

    try:
        jsonschema.Draft202012Validator.check_schema(schema)
    except jsonschema.SchemaError as exc:
        return [f"{index}.ai.schema: not a valid JSON Schema: {exc.message}"]
    return []


def deadline_problems(spinner: Spinner) -> list[str]:
    """A wait until a timestamp that is the same for every row (it names no column) must come
    within the longest duration (100 years) from now, and be a time DuckDB can compute."""
    waits = [s for s in spinner.steps if isinstance(s, WaitStep) and s.until is not None]
    if not waits:
        return []
    # Two connections to the parser's empty database: one checks that an expression is one
    # plain expression, the other computes it; an expression that names a column cannot bind.
    checker, con = scratch(), scratch()
    try:
        found = [_deadline_problem(checker, con, step) for step in waits]
    finally:
        checker.close()
        con.close()
    return [f"{step.path}.wait.until: {p}" for step, p in zip(waits, found, strict=True) if p]


def _deadline_problem(
    checker: duckdb.DuckDBPyConnection, con: duckdb.DuckDBPyConnection, step: WaitStep
) -> str | None:
    import duckdb

    from cxrun.base import clock
    from cxrun.base.durations import LONGEST, LONGEST_DAYS
    from cxrun.base.sql import expression_problem

    if step.until is None or expression_problem(checker, step.until):  # said by the checks above
        return None
    try:
        moment = con.sql(f"SELECT {step.until}")
        name = quote_ident(moment.columns[0])
        rows = moment.project(f"CAST({name} AS VARCHAR), epoch({name})").fetchall()
    except (duckdb.ConversionException, duckdb.OutOfRangeException) as exc:
        return f"cannot be computed: {duckdb_message(exc)}"
    except duckdb.Error:  # it depends on the row, or is not a time (said by the checks above)
        return None
    shown, seconds = rows[0] if rows else (None, None)
    if seconds is None or seconds <= clock.utcnow().timestamp() + LONGEST:
        return None
    return f"{shown} is more than {LONGEST_DAYS}d (100 years) from now, the longest wait"
