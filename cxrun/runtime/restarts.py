"""Records run again from a step: which ones, from where, and the earlier I/O results they reuse."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any

from cxrun.runtime.pipeline import enclosing_calls
from cxrun.spec.model import AIStep, ApprovalStep, HttpStep, Spinner, Step
from cxrun.store import State
from cxrun.store import journey as journey_store
from cxrun.store import records as record_store
from cxrun.store.journey import Restart

Reuse = dict[tuple[int, int], dict[str, Any]]


def find_restarts(
    state: State, spinner: Spinner, clock: Callable[[], datetime], job: int, due_too: bool
) -> tuple[dict[int, Restart], Reuse] | None:
    """The records to run again from a step: those a retry marked (from their failed step,
    one more attempt), and (`due_too`) parked ones whose answer came or whose time has come;
    with the I/O results of the steps before, which they reuse. None of them, with rows not
    reached yet: the pass takes those."""
    with state.read() as con:
        marked = record_store.retry_records(con, job)
        if not marked and not due_too:
            return None
        due = record_store.due_records(con, job, clock()) if due_too else []
        rows = [row for row, _, _ in marked] + [int(r[0]) for r in due]
        earlier = journey_store.last_outputs(con, job, rows)
    ids = {step.id: pos for pos, step in enumerate(spinner.steps)}
    restarts: dict[int, Restart] = {}
    for row, step_id, attempts in marked:
        pos = ids.get(step_id or "", -1)
        restarts[row] = Restart(pos, attempts, calls=tuple(enclosing_calls(spinner, pos)))
    for row, pos, _kind, decision, attempts in due:
        step = spinner.steps[pos]
        if decision is None:  # the time has come: a wait is over, an approval timed out
            decision = f"{step.on_timeout}-timeout" if isinstance(step, ApprovalStep) else "due"
        calls = tuple(enclosing_calls(spinner, pos))
        restarts[int(row)] = Restart(pos, int(attempts), 0, decision, calls)
    return restarts, reusable(spinner, restarts, earlier)


def reusable(
    spinner: Spinner, starts: dict[int, Restart], earlier: list[tuple[int, int, Any]]
) -> dict[tuple[int, int], dict[str, Any]]:
    """The I/O results of the steps before each restarted row's step, from the journey."""
    return {
        (row, pos): reused(spinner.steps[pos], row, pos, output)
        for row, pos, output in earlier
        if row in starts and spinner.steps[pos].is_io and pos < starts[row].pos
    }


def reused(step: Step, row: int, pos: int, output: Any) -> dict[str, Any]:
    """An earlier I/O step's result, from its journey entry, as if the call had just been made."""
    import json

    text = output if isinstance(output, str) and not isinstance(step, HttpStep) else None
    if isinstance(step, AIStep) and step.schema is not None:
        text = None
    return {
        "row": row,
        "pos": pos,
        "ok": True,
        "message": None,
        "error": None,
        "attempts": [],
        "value": text if text is not None else json.dumps(output),
        "prompt_tokens": 0,
        "completion_tokens": 0,
        "cost": 0.0,
    }
