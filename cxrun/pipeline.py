"""Compiling a spinner into set-based SQL over one batch: stages of pure steps, each ended by
an I/O step whose inputs are rendered in SQL and whose results come back as a table."""

from __future__ import annotations

from dataclasses import dataclass

from cxrun.spec.model import AIStep, SetStep, Spinner, Step, TagStep
from cxrun.spec.outputs import output_expression
from cxrun.sql import quote_ident, quote_literal, wrap

FIELDS_STEP = "(fields)"
FAILURES = "_cx_errs"
# The JSON shape of the attempts list an I/O result carries (see runtime.CallResult).
ATTEMPTS = (
    '[{"attempt": "INTEGER", "status": "VARCHAR", "message": "VARCHAR", "output": "JSON", '
    '"error": "VARCHAR", "started_at": "TIMESTAMP", "ended_at": "TIMESTAMP", '
    '"duration_ms": "DOUBLE", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT"}]'
)


def io_table(pos: int) -> str:
    return f"_cx_io{pos}"


def stage_table(index: int) -> str:
    return f"_cx_s{index}"


def render_column(pos: int, index: int) -> str:
    return f"_cx_r{pos}_{index}"


@dataclass(frozen=True)
class Stage:
    """Pure steps at `positions`, then (unless it is the last stage) the I/O step at `io`."""

    index: int
    positions: tuple[int, ...]
    io: int | None


def stages(spinner: Spinner) -> tuple[Stage, ...]:
    found: list[Stage] = []
    pending: list[int] = []
    for pos, step in enumerate(spinner.steps):
        if step.is_io:
            found.append(Stage(len(found), tuple(pending), pos))
            pending = []
        else:
            pending.append(pos)
    found.append(Stage(len(found), tuple(pending), None))
    return tuple(found)


def compile_stage(
    spinner: Spinner,
    stage: Stage,
    source: str,
    with_failures: bool = False,
    upto: int | None = None,
) -> str:
    """SQL for one stage over `source` (the batch for stage 0, the previous stage's table else).

    A record that fails stops there: `_cx_fp` is the failed step's position (-1 for a required
    field) and `_cx_fe` the error. Rows whose SQL raises are found by the runtime and passed in
    through `_cx_errs` when `with_failures` is set. `upto` keeps only the steps before it (to find
    which step raises).
    """
    ctes = [f"i0 AS ({_stage_input(spinner, stage, source, with_failures)})"]
    positions = [p for p in stage.positions if upto is None or p < upto]
    if stage.io is not None and (upto is None or stage.io < upto):
        positions.append(stage.io)
    level = 0
    kept = ["_cx_row", "_cx_key", "_cx_fp", "_cx_fe", *_earlier_columns(spinner, stage)]
    for pos in positions:
        step = spinner.steps[pos]
        alive = f"(_cx_fp IS NULL OR _cx_fp > {pos})"
        ran = f"{alive} AND coalesce({wrap(step.when)}, false)" if step.when else alive
        ctes.append(f"i{level + 1} AS (SELECT *, ({ran}) AS _cx_w{pos} FROM i{level})")
        columns = _step_columns(pos, step)
        kept += [f"_cx_w{pos}"] + [_alias(c) for c in columns]
        if columns:
            ctes.append(f"i{level + 2} AS (SELECT *, {', '.join(columns)} FROM i{level + 1})")
            level += 2
        else:
            level += 1
    # The last stage keeps only what the batch's write needs; earlier ones keep the row too.
    chosen = ", ".join(kept) if stage.io is None and upto is None else "*"
    return f"WITH {', '.join(ctes)} SELECT {chosen} FROM i{level}"


def _alias(column: str) -> str:
    return column.rsplit(" AS ", 1)[1]


def _earlier_columns(spinner: Spinner, stage: Stage) -> list[str]:
    """The columns earlier stages made that the batch's write reads."""
    columns = []
    for pos, step in enumerate(spinner.steps):
        if pos >= (stage.positions[0] if stage.positions else stage.io or len(spinner.steps)):
            break
        columns.append(f"_cx_w{pos}")
        if isinstance(step, SetStep) or step.is_io:
            columns += [quote_ident(name) for name in step.outputs]
        if step.is_io:
            columns += [f"_cx_m{pos}", f"_cx_a{pos}", f"_cx_v{pos}"]
        elif not isinstance(step, SetStep):
            columns.append(f"_cx_m{pos}")
    return columns


def _stage_input(spinner: Spinner, stage: Stage, source: str, with_failures: bool) -> str:
    errors = f" LEFT JOIN {FAILURES} AS e ON e.row = src._cx_row" if with_failures else ""
    error_pos = "e.pos" if with_failures else "CAST(NULL AS INTEGER)"
    error_text = "e.error" if with_failures else "CAST(NULL AS VARCHAR)"
    if stage.index == 0:
        key = f"CAST({quote_ident(spinner.key)} AS VARCHAR)"
        required = _required_check(spinner)
        return (
            f"SELECT src.*, {key} AS _cx_key, "
            f"CASE WHEN {required} IS NOT NULL THEN -1 ELSE {error_pos} END AS _cx_fp, "
            f"coalesce({required}, {error_text}) AS _cx_fe FROM {source} AS src{errors}"
        )
    pos = stages(spinner)[stage.index - 1].io
    assert pos is not None
    step = spinner.steps[pos]
    outputs = "".join(
        f", {output_expression(step, 'io.value')} AS {quote_ident(name)}" for name in step.outputs
    )
    failed = "src._cx_fp IS NULL AND io.ok = false"
    return (
        f"SELECT src.* REPLACE ("
        f"CASE WHEN {failed} THEN {pos} ELSE coalesce(src._cx_fp, {error_pos}) END AS _cx_fp, "
        f"CASE WHEN {failed} THEN io.error ELSE coalesce(src._cx_fe, {error_text}) END AS _cx_fe)"
        f"{outputs}, io.message AS _cx_m{pos}, io.attempts AS _cx_a{pos}, "
        f"io.value AS _cx_v{pos} "
        f"FROM {source} AS src LEFT JOIN {io_table(pos)} AS io ON io.row = src._cx_row{errors}"
    )


def _required_check(spinner: Spinner) -> str:
    if not spinner.required_fields:
        return "CAST(NULL AS VARCHAR)"
    cases = " ".join(
        f"WHEN {quote_ident(name)} IS NULL OR trim(CAST({quote_ident(name)} AS VARCHAR)) = '' "
        f"THEN {quote_literal(f'required field {name!r} is empty')}"
        for name in spinner.required_fields
    )
    return f"(CASE {cases} END)"


def _step_columns(pos: int, step: Step) -> list[str]:
    ran = f"_cx_w{pos}"
    if isinstance(step, SetStep):
        return [
            f"CASE WHEN {ran} THEN {wrap(expr)} END AS {quote_ident(name)}"
            for name, expr in step.values
        ]
    if step.is_io:  # the inputs of the call, one column per template
        return [
            f"CASE WHEN {ran} THEN {template.sql} END AS {render_column(pos, index)}"
            for index, (_, template) in enumerate(step.templates())
        ]
    ((_, template),) = step.templates()
    return [f"CASE WHEN {ran} THEN {template.sql} END AS _cx_m{pos}"]


# ---- writing a computed batch ------------------------------------------------------------------


@dataclass(frozen=True)
class JourneyPart:
    """One step's journey entries for a batch, as a SELECT over the result table."""

    sql: str


def tags_sql(spinner: Spinner) -> str:
    tags = [f"_cx_m{pos}" for pos, step in enumerate(spinner.steps) if isinstance(step, TagStep)]
    if not tags:
        return "CAST([] AS VARCHAR[])"
    return f"list_filter([{', '.join(tags)}], lambda t: t IS NOT NULL AND t <> '')"


def _json_object(names: list[str]) -> str:
    return "json_object(" + ", ".join(f"{quote_literal(n)}, {quote_ident(n)}" for n in names) + ")"


def outputs_sql(spinner: Spinner) -> str:
    names = [name for step in spinner.steps for name in step.outputs]
    return _json_object(names) if names else "CAST('{}' AS JSON)"


def failed_step_sql(spinner: Spinner) -> str:
    cases = " ".join(
        f"WHEN {pos} THEN {quote_literal(s.id)}" for pos, s in enumerate(spinner.steps)
    )
    return f"CASE _cx_fp WHEN -1 THEN {quote_literal(FIELDS_STEP)} {cases} END"


_ENTRY = (
    "SELECT {pos} AS pos, {step} AS step, {attempt} AS attempt, {status} AS status, "
    "{message} AS message, {output} AS output, {error} AS error, {started} AS started_at, "
    "{ended} AS ended_at, {ms} AS duration_ms, {usage} AS usage, _cx_row FROM {source} "
    "WHERE {where}"
)


def journey_parts(spinner: Spinner, result: str) -> list[str]:
    """SELECTs over the result table giving every journey entry of the batch.

    Pure steps take the batch's times ($started, $ended, $ms); I/O steps bring their own, one
    entry per attempt.
    """
    batch = {
        "attempt": "1",
        "started": "$started",
        "ended": "$ended",
        "ms": "$ms",
        "usage": "CAST(NULL AS JSON)",
    }
    parts = []
    if spinner.required_fields:
        parts.append(
            _ENTRY.format(
                pos=-1,
                step=quote_literal(FIELDS_STEP),
                status="'failed'",
                message="NULL",
                output="NULL",
                error="_cx_fe",
                source=result,
                where="_cx_fp = -1",
                **batch,
            )
        )
    for pos, step in enumerate(spinner.steps):
        ran = f"_cx_w{pos}"
        failed = f"_cx_fp IS NOT DISTINCT FROM {pos}"
        skipped = dict(
            pos=pos,
            step=quote_literal(step.id),
            status="'skipped'",
            message="'skipped: when is not true'",
            output="NULL",
            error="NULL",
            source=result,
            where=f"NOT {ran} AND (_cx_fp IS NULL OR _cx_fp > {pos})",
            **batch,
        )
        if step.is_io:
            parts.append(_ENTRY.format(**skipped))
            parts.append(_io_entries(pos, step, result))
            continue
        message, output = _entry(pos, step)
        parts.append(
            _ENTRY.format(
                pos=pos,
                step=quote_literal(step.id),
                status=f"CASE WHEN {failed} THEN 'failed' WHEN {ran} THEN 'completed' "
                "ELSE 'skipped' END",
                message=f"CASE WHEN {ran} THEN {message} WHEN NOT {failed} "
                "THEN 'skipped: when is not true' END",
                output=f"CASE WHEN {ran} THEN {output} END",
                error=f"CASE WHEN {failed} THEN _cx_fe END",
                source=result,
                where=f"(_cx_fp IS NULL OR _cx_fp >= {pos})",
                **batch,
            )
        )
    return parts


def _io_entries(pos: int, step: Step, result: str) -> str:
    attempts = (
        f"(SELECT _cx_row, unnest(from_json(_cx_a{pos}, {quote_literal(ATTEMPTS)})) AS a "
        f"FROM {result} WHERE _cx_w{pos} AND _cx_a{pos} IS NOT NULL)"
    )
    return _ENTRY.format(
        pos=pos,
        step=quote_literal(step.id),
        attempt="a.attempt",
        status="a.status",
        message="a.message",
        output="a.output",
        error="a.error",
        started="a.started_at",
        ended="a.ended_at",
        ms="a.duration_ms",
        usage=_USAGE if isinstance(step, AIStep) else "CAST(NULL AS JSON)",
        source=attempts,
        where="true",
    )


_USAGE = "json_object('prompt_tokens', a.prompt_tokens, 'completion_tokens', a.completion_tokens)"


def _entry(pos: int, step: Step) -> tuple[str, str]:
    """The message and output of a pure step that ran."""
    if isinstance(step, SetStep):
        names = list(step.outputs)
        return quote_literal("set " + ", ".join(names)), _json_object(names)
    if isinstance(step, TagStep):
        return f"'tagged ' || _cx_m{pos}", "CAST(NULL AS JSON)"
    return f"_cx_m{pos}", "CAST(NULL AS JSON)"
