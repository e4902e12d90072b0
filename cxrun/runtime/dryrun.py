"""A dry run: what each I/O step would send for the first selected rows, and a token estimate."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from cxrun.base.clock import utcnow
from cxrun.base.sql import embed
from cxrun.runtime.pipeline import BatchSql, compile_stage, stages
from cxrun.spec.model import AIStep, IOStep, Spinner
from cxrun.store import State
from cxrun.store import journey as journey_store
from cxrun.store.scratch import stage_table
from cxrun.store.tables import ROW, TableInfo

ASSUMED_COMPLETION = 256  # tokens an answer is assumed to take when max_tokens is not set


@dataclass
class DryRun:
    spinner: str
    selected: int
    rows: list[dict[str, Any]] = field(default_factory=list)
    prompt_tokens: int = 0
    completion_tokens: int = 0
    ai_steps: int = 0

    def to_json(self) -> dict[str, Any]:
        return {
            "spinner": self.spinner,
            "selected": self.selected,
            "shown": len(self.rows),
            "rows": self.rows,
            "estimate": {
                "ai_calls_per_row": self.ai_steps,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
            },
        }


def dry_run(
    state: State,
    spinner: Spinner,
    table: TableInfo,
    conditions: list[str],
    limit: int,
    bindings: dict[str, Any] | None = None,
) -> DryRun:
    """Render every I/O step for the first `limit` selected rows; call nothing, write nothing.
    `bindings` are the values of the parameters ($name) the conditions use.

    Outputs of I/O steps are not known in a dry run: later templates see `<name>` in their place.
    """
    with state.read() as con:
        where = " AND ".join(embed(c, con) for c in conditions) or "true"
        row = con.execute(f"SELECT count(*) FROM {table.sql} WHERE {where}", bindings).fetchone()
        selected = int(row[0]) if row else 0
        con.execute(
            f"CREATE TEMP TABLE _cx_dry AS SELECT * FROM {table.sql} WHERE {where} "
            f"ORDER BY {ROW} LIMIT {int(limit)}",
            bindings,
        )
        rendered = _render(con, spinner, "_cx_dry")
    result = DryRun(
        spinner.name, selected, ai_steps=sum(isinstance(s, AIStep) for s in spinner.steps)
    )
    by_row: dict[int, dict[str, Any]] = {}
    for row_id, key, step, inputs in rendered:
        entry = by_row.setdefault(row_id, {"record": key, "calls": []})
        entry["calls"].append({"step": step.id, "kind": step.kind, "target": step.target, **inputs})
    result.rows = list(by_row.values())
    _estimate(result, spinner, rendered)
    return result


def _render(
    con: Any, spinner: Spinner, source: str
) -> list[tuple[int, str, IOStep, dict[str, Any]]]:
    journey_store.set_failures(con, {})
    found = []
    for stage in stages(spinner):
        if stage.index:
            previous = stages(spinner)[stage.index - 1].io
            assert previous is not None
            _placeholder_results(con, spinner, previous, stage_table(stage.index - 1))
        src = source if stage.index == 0 else stage_table(stage.index - 1)
        sql = compile_stage(spinner, stage, src, BatchSql(utcnow(), dry=True))
        journey_store.materialize(con, stage_table(stage.index), sql)
        if stage.io is None:
            break
        step = spinner.steps[stage.io]
        assert isinstance(step, IOStep)
        labels = [label.split(".", 1)[1] for label, _ in step.templates()]
        for row in journey_store.call_inputs(con, stage_table(stage.index), stage.io, len(labels)):
            found.append((int(row[0]), str(row[1]), step, dict(zip(labels, row[2:], strict=True))))
    return found


def _placeholder_results(con: Any, spinner: Spinner, pos: int, table: str) -> None:
    step = spinner.steps[pos]
    text = isinstance(step, AIStep) and step.schema is None
    rows = [
        int(r[0]) for r in con.execute(f"SELECT {ROW} FROM {table} WHERE _cx_w{pos}").fetchall()
    ]
    value = f"<{step.outputs[0]}>" if text and step.outputs else None
    journey_store.load_results(
        con,
        pos,
        [
            {
                "row": r,
                "ok": True,
                "value": value,
                "message": None,
                "error": None,
                "attempts": [],
                "prompt_tokens": 0,
                "completion_tokens": 0,
                "cost": 0.0,
            }
            for r in rows
        ],
    )


def _estimate(result: DryRun, spinner: Spinner, rendered: list[Any]) -> None:
    """Tokens for all selected rows, extrapolated from those rendered (about 4 chars a token)."""
    shown = len({row for row, _, _, _ in rendered}) or 1
    prompt = completion = 0
    for _, _, step, inputs in rendered:
        if isinstance(step, AIStep):
            chars = sum(len(str(v or "")) for v in inputs.values())
            prompt += math.ceil(chars / 4)
            completion += step.max_tokens or ASSUMED_COMPLETION
    result.prompt_tokens = round(prompt * result.selected / shown)
    result.completion_tokens = round(completion * result.selected / shown)
