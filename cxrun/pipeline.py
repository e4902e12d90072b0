"""Compiling a spinner's pure steps into set-based SQL over one batch of rows."""

from __future__ import annotations

from dataclasses import dataclass

from cxrun.spec.model import LogStep, SetStep, Spinner, Step, TagStep
from cxrun.sql import quote_ident, quote_literal, wrap

FIELDS_STEP = "(fields)"
RESULT = "_cx_res"
FAILURES = "_cx_errs"


@dataclass(frozen=True)
class JourneyPart:
    """One step's journey entries for a batch, as SQL expressions over the result table."""

    pos: int
    step: str
    status: str
    message: str
    output: str
    error: str
    where: str


@dataclass(frozen=True)
class Compiled:
    compute: str
    tags: str
    outputs: str
    failed_step: str
    journey: tuple[JourneyPart, ...]


def compile_spinner(spinner: Spinner, source: str, with_failures: bool = False) -> Compiled:
    """SQL that computes every step for the rows of `source` (a relation with _cx_row).

    A record that fails stops there: `_cx_fp` is the failed step's position (-1 for a required
    field) and `_cx_fe` the error. Failures that SQL raises for single rows are found by the
    runtime and passed in through the `_cx_errs` table when `with_failures` is set.
    """
    return Compiled(
        compute=_compute(spinner, source, with_failures),
        tags=_tags(spinner.steps),
        outputs=_outputs(spinner.steps),
        failed_step=_failed_step(spinner.steps),
        journey=_journey(spinner),
    )


def _required_check(spinner: Spinner) -> str:
    if not spinner.required_fields:
        return "CAST(NULL AS VARCHAR)"
    cases = " ".join(
        f"WHEN {quote_ident(name)} IS NULL OR trim(CAST({quote_ident(name)} AS VARCHAR)) = '' "
        f"THEN {quote_literal(f'required field {name!r} is empty')}"
        for name in spinner.required_fields
    )
    return f"CASE {cases} END"


def _compute(spinner: Spinner, source: str, with_failures: bool) -> str:
    key = f"CAST({quote_ident(spinner.key)} AS VARCHAR)"
    if with_failures:
        first = (
            f"SELECT src.*, {key} AS _cx_key, {_required_check(spinner)} AS _cx_req, "
            f"e.pos AS _cx_epos, e.error AS _cx_eerr FROM {source} AS src "
            f"LEFT JOIN {FAILURES} AS e ON e.row = src._cx_row"
        )
        fail_pos = "CASE WHEN _cx_req IS NOT NULL THEN -1 ELSE _cx_epos END"
        fail_error = "coalesce(_cx_req, _cx_eerr)"
    else:
        first = (
            f"SELECT src.*, {key} AS _cx_key, {_required_check(spinner)} AS _cx_req "
            f"FROM {source} AS src"
        )
        fail_pos = "CASE WHEN _cx_req IS NOT NULL THEN -1 END"
        fail_error = "_cx_req"
    ctes = [
        f"s0 AS ({first})",
        f"s1 AS (SELECT *, {fail_pos} AS _cx_fp, {fail_error} AS _cx_fe FROM s0)",
    ]
    keep = ["_cx_row", "_cx_key", "_cx_fp", "_cx_fe"]
    level = 1
    for pos, step in enumerate(spinner.steps):
        alive = f"(_cx_fp IS NULL OR _cx_fp > {pos})"
        ran = f"{alive} AND coalesce({wrap(step.when)}, false)" if step.when else alive
        ctes.append(f"s{level + 1} AS (SELECT *, ({ran}) AS _cx_w{pos} FROM s{level})")
        columns = _step_columns(pos, step)
        ctes.append(
            f"s{level + 2} AS (SELECT *, {', '.join(c for c, _ in columns)} FROM s{level + 1})"
        )
        keep += [f"_cx_w{pos}"] + [name for _, name in columns]
        level += 2
    return f"WITH {', '.join(ctes)} SELECT {', '.join(keep)} FROM s{level}"


def _step_columns(pos: int, step: Step) -> list[tuple[str, str]]:
    ran = f"_cx_w{pos}"
    if isinstance(step, LogStep | TagStep):
        template = step.message if isinstance(step, LogStep) else step.tag
        return [(f"CASE WHEN {ran} THEN {template.sql} END AS _cx_m{pos}", f"_cx_m{pos}")]
    assert isinstance(step, SetStep)
    return [
        (f"CASE WHEN {ran} THEN {wrap(expr)} END AS {quote_ident(name)}", quote_ident(name))
        for name, expr in step.values
    ]


def _tags(steps: tuple[Step, ...]) -> str:
    tags = [f"_cx_m{pos}" for pos, step in enumerate(steps) if isinstance(step, TagStep)]
    if not tags:
        return "CAST([] AS VARCHAR[])"
    return f"list_filter([{', '.join(tags)}], lambda t: t IS NOT NULL AND t <> '')"


def _json_object(names: list[str]) -> str:
    return "json_object(" + ", ".join(f"{quote_literal(n)}, {quote_ident(n)}" for n in names) + ")"


def _outputs(steps: tuple[Step, ...]) -> str:
    names = [name for step in steps for name in step.outputs]
    return _json_object(names) if names else "CAST('{}' AS JSON)"


def _failed_step(steps: tuple[Step, ...]) -> str:
    cases = " ".join(f"WHEN {pos} THEN {quote_literal(s.id)}" for pos, s in enumerate(steps))
    return f"CASE _cx_fp WHEN -1 THEN {quote_literal(FIELDS_STEP)} {cases} END"


def _journey(spinner: Spinner) -> tuple[JourneyPart, ...]:
    parts = []
    if spinner.required_fields:
        parts.append(
            JourneyPart(-1, FIELDS_STEP, "'failed'", "NULL", "NULL", "_cx_fe", "_cx_fp = -1")
        )
    for pos, step in enumerate(spinner.steps):
        ran = f"_cx_w{pos}"
        failed = f"_cx_fp IS NOT DISTINCT FROM {pos}"
        message, output = _entry(pos, step)
        parts.append(
            JourneyPart(
                pos=pos,
                step=step.id,
                status=f"CASE WHEN {failed} THEN 'failed' WHEN {ran} THEN 'completed' "
                "ELSE 'skipped' END",
                message=f"CASE WHEN {ran} THEN {message} WHEN NOT {failed} "
                "THEN 'skipped: when is not true' END",
                output=f"CASE WHEN {ran} THEN {output} END",
                error=f"CASE WHEN {failed} THEN _cx_fe END",
                where=f"(_cx_fp IS NULL OR _cx_fp >= {pos})",
            )
        )
    return tuple(parts)


def _entry(pos: int, step: Step) -> tuple[str, str]:
    """The message and output of a step that ran."""
    if isinstance(step, LogStep):
        return f"_cx_m{pos}", "CAST(NULL AS JSON)"
    if isinstance(step, TagStep):
        return f"'tagged ' || _cx_m{pos}", "CAST(NULL AS JSON)"
    names = list(step.outputs)
    return quote_literal("set " + ", ".join(names)), _json_object(names)
