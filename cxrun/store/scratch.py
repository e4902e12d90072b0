"""The names of a batch's temporary tables and columns, shared by the runtime's pipeline that
fills them and the store that writes records and journeys from them."""

from __future__ import annotations

FAILURES = "_cx_errs"
RESTARTS = "_cx_from"  # rows run again from a step: (row, pos, attempts, bump, decision, calls)


def io_table(pos: int) -> str:
    return f"_cx_io{pos}"


def stage_table(index: int) -> str:
    return f"_cx_s{index}"


def render_column(pos: int, index: int) -> str:
    return f"_cx_r{pos}_{index}"
