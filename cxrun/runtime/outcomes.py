"""SQL reading a computed batch's outcomes: tags, outputs, failed step, parking, journey entries."""

from __future__ import annotations

from dataclasses import dataclass

from cxrun.base.sql import quote_ident, quote_literal
from cxrun.runtime.pipeline import gated
from cxrun.spec.model import AIStep, ApprovalStep, CallStep, SetStep, Spinner, Step, TagStep

FIELDS_STEP = "(fields)"

# The JSON shape of the attempts list an I/O result carries (see runtime.CallResult).
ATTEMPTS = (
    '[{"attempt": "INTEGER", "status": "VARCHAR", "message": "VARCHAR", "output": "JSON", '
    '"error": "VARCHAR", "started_at": "TIMESTAMP", "ended_at": "TIMESTAMP", '
    '"duration_ms": "DOUBLE", "prompt_tokens": "BIGINT", "completion_tokens": "BIGINT"}]'
)


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
    """The record's outputs: the spinner's own (a called child's come under the call's id)."""
    names = [name for step in spinner.steps if step.parent is None for name in step.outputs]
    return _json_object(names) if names else "CAST('{}' AS JSON)"


def park_kind_sql(spinner: Spinner) -> str:
    """What holds a parked record: a wait, an approval, or the eligible window."""
    cases = " ".join(
        f"WHEN {p} THEN {quote_literal(s.kind if s.parks else 'window')}"
        for p, s in enumerate(spinner.steps)
        if s.parks or gated(spinner, s)
    )
    return f"CASE _cx_pk {cases} END" if cases else "CAST(NULL AS VARCHAR)"


def failed_step_sql(spinner: Spinner) -> str:
    cases = " ".join(
        f"WHEN {pos} THEN {quote_literal(s.id)}" for pos, s in enumerate(spinner.steps)
    )
    return f"CASE _cx_fp WHEN -1 THEN {quote_literal(FIELDS_STEP)} {cases} END"


_ENTRY = (
    "SELECT {pos} AS pos, {step} AS step, {attempt} AS attempt, {status} AS status, "
    "{message} AS message, {output} AS output, {error} AS error, {started} AS started_at, "
    "{ended} AS ended_at, {ms} AS duration_ms, {usage} AS usage, {parent} AS parent, _cx_row "
    "FROM {source} WHERE {where}"
)


def _reached(pos: int) -> str:
    """The record got to `pos` and was not parked there (parked rows get a `waiting` entry)."""
    return f"(_cx_fp IS NULL OR _cx_fp >= {pos}) AND (_cx_pk IS NULL OR _cx_pk > {pos})"


def journey_parts(spinner: Spinner, result: str) -> list[str]:
    """SELECTs over the result table giving every journey entry of the batch.

    Pure steps take the batch's times ($started, $ended, $ms); I/O steps bring their own, one
    entry per attempt; a parked record gets one `waiting` entry at the step holding it.
    """
    batch = {
        "attempt": "1",
        "started": "$started",
        "ended": "$ended",
        "ms": "$ms",
        "usage": "CAST(NULL AS JSON)",
        "source": result,
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
                where="_cx_fp = -1",
                parent="NULL",
                **batch,
            )
        )
    if any(step.parks or gated(spinner, step) for step in spinner.steps):
        parts.append(
            _ENTRY.format(
                pos="_cx_pk",
                step=_step_at("_cx_pk", spinner),
                status="'waiting'",
                message="_cx_pm",
                output="NULL",
                error="NULL",
                where="_cx_pk IS NOT NULL AND _cx_fp IS NULL",
                parent=_parent_at("_cx_pk", spinner),
                **batch,
            )
        )
    for pos, step in enumerate(spinner.steps):
        if step.hidden:
            continue
        ran = f"_cx_w{pos}"
        parent = quote_literal(step.parent) if step.parent else "NULL"
        failed = f"_cx_fp IS NOT DISTINCT FROM {pos}"
        skipped = dict(
            pos=pos,
            step=quote_literal(step.id),
            status="'skipped'",
            message=_skip_message(step),
            output="NULL",
            error="NULL",
            where=f"NOT {ran} AND {_reached(pos)} AND NOT ({failed})",
            parent=parent,
            **batch,
        )
        if step.is_io:
            parts.append(_ENTRY.format(**skipped))
            parts.append(_io_entries(pos, step, result))
            continue
        status, message, output, error = _entry(spinner, pos, step)
        stopped = f"{failed} AND _cx_sk"  # skipped there (a rejected approval)
        parts.append(
            _ENTRY.format(
                pos=pos,
                step=quote_literal(step.id),
                status=f"CASE WHEN {stopped} THEN 'skipped' WHEN {failed} THEN 'failed' "
                f"WHEN NOT {ran} THEN 'skipped' ELSE {status} END",
                message=f"CASE WHEN {stopped} THEN _cx_fe WHEN {failed} THEN NULL "
                f"WHEN NOT {ran} THEN {_skip_message(step)} ELSE {message} END",
                output=f"CASE WHEN {ran} AND NOT ({failed}) THEN {output} END",
                error=f"CASE WHEN {stopped} THEN NULL WHEN {failed} THEN _cx_fe ELSE {error} END",
                where=_reached(pos),
                parent=parent,
                **batch,
            )
        )
    return parts


def _skip_message(step: Step) -> str:
    if step.guard is not None and not step.when:
        return "'skipped: the call did not run'"
    return "'skipped: when is not true'"


def _step_at(column: str, spinner: Spinner) -> str:
    cases = " ".join(f"WHEN {p} THEN {quote_literal(s.id)}" for p, s in enumerate(spinner.steps))
    return f"CASE {column} {cases} END"


def _parent_at(column: str, spinner: Spinner) -> str:
    cases = " ".join(
        f"WHEN {p} THEN {quote_literal(s.parent)}"
        for p, s in enumerate(spinner.steps)
        if s.parent is not None
    )
    return f"CASE {column} {cases} END" if cases else "CAST(NULL AS VARCHAR)"


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
        parent=quote_literal(step.parent) if step.parent else "NULL",
        source=attempts,
        where="true",
    )


_USAGE = "json_object('prompt_tokens', a.prompt_tokens, 'completion_tokens', a.completion_tokens)"


def _entry(spinner: Spinner, pos: int, step: Step) -> tuple[str, str, str, str]:
    """The status, message, output and error of a pure step that ran and did not stop there."""
    none = "CAST(NULL AS JSON)"
    if isinstance(step, SetStep):
        names = list(step.outputs)
        return "'completed'", quote_literal("set " + ", ".join(names)), _json_object(names), "NULL"
    if isinstance(step, TagStep):
        return "'completed'", f"'tagged ' || _cx_m{pos}", none, "NULL"
    if isinstance(step, ApprovalStep):
        answer = (
            "CASE _cx_gd WHEN 'approve' THEN 'approved by an operator' "
            "WHEN 'approve-timeout' THEN 'approved: no answer before the approval timed out' "
            "END"
        )
        return "'completed'", answer, none, "NULL"
    if isinstance(step, CallStep):
        end = next(
            p for p, s in enumerate(spinner.steps) if s.hidden and s.id == f"{step.id}.(end)"
        )
        inside = f"_cx_fp > {pos} AND _cx_fp < {end}"
        status = (
            f"CASE WHEN {inside} AND _cx_sk THEN 'skipped' WHEN {inside} THEN 'failed' "
            f"WHEN _cx_pk > {pos} AND _cx_pk < {end} THEN 'waiting' ELSE 'completed' END"
        )
        error = (
            f"CASE WHEN {inside} AND NOT _cx_sk THEN "
            f"{quote_literal(f'child spinner {step.spinner} failed at step ')} || "
            f"{failed_step_sql(spinner)} || ': ' || _cx_fe END"
        )
        output = quote_ident(spinner.steps[end].outputs[0])
        return status, f"_cx_m{pos}", f"CASE WHEN _cx_fp IS NULL THEN to_json({output}) END", error
    return "'completed'", f"_cx_m{pos}", none, "NULL"
