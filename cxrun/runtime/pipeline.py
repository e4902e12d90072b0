"""Compiling a spinner into set-based SQL over one batch: stages of pure steps, each ended by
an I/O step whose inputs are rendered in SQL and whose results come back as a table."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cxrun.base.clock import to_db
from cxrun.base.sql import embed, quote_ident, quote_literal
from cxrun.spec.model import (
    AIStep,
    ApprovalStep,
    CallStep,
    SendStep,
    SetStep,
    Spinner,
    Step,
    WaitStep,
)
from cxrun.spec.outputs import output_expression
from cxrun.store.scratch import FAILURES, RESTARTS, io_table, render_column

# Per row, besides the table's columns: _cx_fp/_cx_fe the step a record stopped at and why
# (_cx_sk: it was skipped there, not failed); _cx_pk/_cx_pu/_cx_pm the step it is parked at,
# until when, and why; _cx_go/_cx_gd the step a restarted row starts from and the answer it
# brings (approve, reject, approve-timeout, reject-timeout, due).


@dataclass(frozen=True)
class BatchSql:
    """What a batch's SQL depends on beyond the spinner: its time (waits count from it),
    whether its rows restart from a step, whether the eligible window is closed (and when it
    opens), and for a dry run that nothing parks."""

    now: datetime
    restarts: bool = False
    window_opens: datetime | None = None
    dry: bool = False
    now_sql: str = field(init=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "now_sql", timestamp_sql(self.now))


def timestamp_sql(moment: datetime) -> str:
    return f"TIMESTAMP '{to_db(moment).isoformat(sep=' ')}'"


def gated(spinner: Spinner, step: Step) -> bool:
    """Whether the spinner's eligible window applies to the step (sends and AI calls)."""
    return spinner.eligible is not None and isinstance(step, AIStep | SendStep)


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


def enclosing_calls(spinner: Spinner, pos: int) -> list[int]:
    """The positions of the call steps a step runs inside (outermost first)."""
    found: list[int] = []
    guard = spinner.steps[pos].guard if pos >= 0 else None
    while guard is not None:
        found.insert(0, guard)
        guard = spinner.steps[guard].guard
    return found


def compile_stage(
    spinner: Spinner,
    stage: Stage,
    source: str,
    batch: BatchSql,
    with_failures: bool = False,
    upto: int | None = None,
) -> str:
    """SQL for one stage over `source` (the batch for stage 0, the previous stage's table else).

    A record that fails stops there: `_cx_fp` is the failed step's position (-1 for a required
    field) and `_cx_fe` the error. Rows whose SQL raises are found by the runtime and passed in
    through `_cx_errs` when `with_failures` is set. `upto` keeps only the steps before it (to find
    which step raises).
    """
    ctes = [f"i0 AS ({_stage_input(spinner, stage, source, batch, with_failures)})"]
    positions = [p for p in stage.positions if upto is None or p < upto]
    if stage.io is not None and (upto is None or stage.io < upto):
        positions.append(stage.io)
    kept = [*_ROW_STATE, *_earlier_columns(spinner, stage)]
    for pos in positions:
        step = spinner.steps[pos]
        ran = _ran(pos, step)
        window = spinner.eligible
        if window and gated(spinner, step) and batch.window_opens is not None and not batch.dry:
            # Outside the eligible window: the record waits for it instead of calling.
            until = timestamp_sql(batch.window_opens)
            why = quote_literal(f"outside the eligible window ({window.text})")
            ctes.append(_park(len(ctes), pos, f"({ran}) AND {_not_passed(pos)}", until, why))
        ctes.append(f"i{len(ctes)} AS (SELECT *, ({ran}) AS _cx_w{pos} FROM i{len(ctes) - 1})")
        columns = _step_columns(pos, step, batch)
        kept += [f"_cx_w{pos}"] + [_alias(c) for c in columns]
        if columns:
            ctes.append(f"i{len(ctes)} AS (SELECT *, {', '.join(columns)} FROM i{len(ctes) - 1})")
        if step.parks:
            ctes += _parking(len(ctes), pos, step, batch)
    level = len(ctes) - 1
    # The last stage keeps only what the batch's write needs; earlier ones keep the row too.
    chosen = ", ".join(kept) if stage.io is None and upto is None else "*"
    return f"WITH {', '.join(ctes)} SELECT {chosen} FROM i{level}"


_ROW_STATE = (
    "_cx_row",
    "_cx_key",
    "_cx_fp",
    "_cx_fe",
    "_cx_sk",
    "_cx_pk",
    "_cx_pu",
    "_cx_pm",
    "_cx_go",
    "_cx_gd",
)


def _alive(pos: int) -> str:
    """The record has not stopped or parked before `pos`."""
    return f"(_cx_fp IS NULL OR _cx_fp > {pos}) AND (_cx_pk IS NULL OR _cx_pk > {pos})"


def _ran(pos: int, step: Step) -> str:
    ran = _alive(pos)
    if step.guard is not None:  # inside a called child: only if the call ran
        ran += f" AND _cx_w{step.guard}"
    if step.when:
        ran += f" AND coalesce({embed(step.when)}, false)"
    return ran


def _not_passed(pos: int) -> str:
    """A restarted row passed the steps before the one it starts from (their waits are over)."""
    return f"(_cx_go IS NULL OR _cx_go <= {pos})"


def _park(index: int, pos: int, condition: str, until: str, why: str) -> str:
    """A CTE parking the rows that meet `condition` at `pos` (until NULL: until answered)."""
    return (
        f"i{index} AS (SELECT * REPLACE ("
        f"CASE WHEN {condition} THEN {pos} ELSE _cx_pk END AS _cx_pk, "
        f"CASE WHEN {condition} THEN {until} ELSE _cx_pu END AS _cx_pu, "
        f"CASE WHEN {condition} THEN {why} ELSE _cx_pm END AS _cx_pm) FROM i{index - 1})"
    )


LAST_DEADLINE = "TIMESTAMP '9999-12-31 23:59:59'"  # the latest a record can be parked until


def _parking(index: int, pos: int, step: Step, batch: BatchSql) -> list[str]:
    """CTEs after a wait or approval step's own columns: park the rows it holds, or (restarted
    rows that bring an answer) let them on or stop them there."""
    ran = f"_cx_w{pos}"
    answered = f"(_cx_go = {pos} AND _cx_gd IS NOT NULL)"
    hold = f"{ran} AND {_not_passed(pos)} AND NOT coalesce({answered}, false)"
    if batch.dry:
        return []
    if isinstance(step, WaitStep):
        # A deadline past the year 9999 never comes (nor could it be read back as a time): the
        # record fails at the step instead of waiting for ever.
        late = f"{ran} AND {_not_passed(pos)} AND coalesce(_cx_u{pos} > {LAST_DEADLINE}, false)"
        hold += f" AND coalesce(_cx_u{pos} > {batch.now_sql}, false) AND NOT ({late})"
        why = f"'waiting until ' || strftime(_cx_u{pos}, '%Y-%m-%dT%H:%M:%SZ')"
        error = f"'wait until ' || CAST(_cx_u{pos} AS VARCHAR) || ' is past the year 9999'"
        return [
            f"i{index} AS (SELECT * REPLACE (CASE WHEN {late} THEN {pos} ELSE _cx_fp END "
            f"AS _cx_fp, CASE WHEN {late} THEN {error} ELSE _cx_fe END AS _cx_fe) "
            f"FROM i{index - 1})",
            _park(index + 1, pos, hold, f"_cx_u{pos}", why),
        ]
    assert isinstance(step, ApprovalStep)
    until = (
        f"{batch.now_sql} + INTERVAL {step.timeout:g} SECOND"
        if step.timeout is not None
        else "CAST(NULL AS TIMESTAMP)"
    )
    rejected = f"coalesce({answered} AND _cx_gd LIKE 'reject%', false) AND {ran}"
    reason = (
        "CASE _cx_gd WHEN 'reject' THEN 'rejected by an operator' "
        "ELSE 'rejected: no answer before the approval timed out' END"
    )
    return [
        _park(index, pos, hold, until, f"_cx_m{pos}"),
        f"i{index + 1} AS (SELECT * REPLACE ("
        f"CASE WHEN {rejected} THEN {pos} ELSE _cx_fp END AS _cx_fp, "
        f"CASE WHEN {rejected} THEN {reason} ELSE _cx_fe END AS _cx_fe, "
        f"_cx_sk OR coalesce({rejected}, false) AS _cx_sk) FROM i{index})",
    ]


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
        if isinstance(step, WaitStep):
            columns.append(f"_cx_u{pos}")
    return columns


def _stage_input(
    spinner: Spinner, stage: Stage, source: str, batch: BatchSql, with_failures: bool
) -> str:
    errors = f" LEFT JOIN {FAILURES} AS e ON e.row = src._cx_row" if with_failures else ""
    error_pos = "e.pos" if with_failures else "CAST(NULL AS INTEGER)"
    error_text = "e.error" if with_failures else "CAST(NULL AS VARCHAR)"
    if stage.index == 0:
        key = f"CAST({quote_ident(spinner.key)} AS VARCHAR)"
        required = _required_check(spinner)
        if batch.restarts:
            errors += f" LEFT JOIN {RESTARTS} AS f ON f.row = src._cx_row"
        go = "f.pos" if batch.restarts else "CAST(NULL AS INTEGER)"
        answer = "f.decision" if batch.restarts else "CAST(NULL AS VARCHAR)"
        return (
            f"SELECT src.*, {key} AS _cx_key, "
            f"CASE WHEN {required} IS NOT NULL THEN -1 ELSE {error_pos} END AS _cx_fp, "
            f"coalesce({required}, {error_text}) AS _cx_fe, false AS _cx_sk, "
            "CAST(NULL AS INTEGER) AS _cx_pk, CAST(NULL AS TIMESTAMP) AS _cx_pu, "
            f"CAST(NULL AS VARCHAR) AS _cx_pm, {go} AS _cx_go, {answer} AS _cx_gd "
            f"FROM {source} AS src{errors}"
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


def _step_columns(pos: int, step: Step, batch: BatchSql) -> list[str]:
    ran = f"_cx_w{pos}"
    if isinstance(step, WaitStep):
        until = (
            f"CAST({embed(step.until)} AS TIMESTAMP)"
            if step.until is not None
            else f"{batch.now_sql} + INTERVAL {step.seconds:g} SECOND"
        )
        message = (
            f"CASE WHEN _cx_go > {pos} OR _cx_go = {pos} AND _cx_gd IS NOT NULL "
            "THEN 'the wait is over' "
            f"WHEN _cx_u{pos} IS NULL THEN 'no wait: the time is null' "
            f"ELSE 'no wait: ' || strftime(_cx_u{pos}, '%Y-%m-%dT%H:%M:%SZ') || ' has passed' END"
        )
        # The deadline counts from the batch that reached the step; a restart keeps it.
        return [
            f"CASE WHEN {ran} THEN {until} END AS _cx_u{pos}",
            f"CASE WHEN {ran} THEN {message} END AS _cx_m{pos}",
        ]
    if isinstance(step, CallStep):
        return [f"CASE WHEN {ran} THEN {quote_literal('called ' + step.spinner)} END AS _cx_m{pos}"]
    if isinstance(step, SetStep):
        return [
            f"CASE WHEN {ran} THEN {embed(expr)} END AS {quote_ident(name)}"
            for name, expr in step.values
        ]
    if step.is_io:  # the inputs of the call, one column per template
        return [
            f"CASE WHEN {ran} THEN {template.sql} END AS {render_column(pos, index)}"
            for index, (_, template) in enumerate(step.templates())
        ]
    ((_, template),) = step.templates()
    return [f"CASE WHEN {ran} THEN {template.sql} END AS _cx_m{pos}"]
