"""Plain output: JSON for scripts, lines, notes and errors, and generic tables of rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from cxrun.render import style


def print_json(data: Any) -> None:
    """`data` as one line of JSON on stdout (see `json_text`)."""
    sys.stdout.write(json_text(data) + "\n")


def json_text(data: Any) -> str:
    """`data` as one line of JSON; NaN and infinite numbers, which JSON has no words for, are
    written as null."""
    try:
        return json.dumps(data, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere: only then is the data walked
        return json.dumps(_finite(data), default=str, ensure_ascii=False, allow_nan=False)


def _finite(value: Any) -> Any:
    import math

    if isinstance(value, float) and not math.isfinite(value):
        return None
    if isinstance(value, dict):
        return {key: _finite(item) for key, item in value.items()}
    if isinstance(value, list | tuple):
        return [_finite(item) for item in value]
    return value


def error(lines: Sequence[str]) -> None:
    first, *rest = lines
    sys.stderr.write(f"error: {first}\n" + "".join(f"  {line}\n" for line in rest))


def note(text: str) -> None:
    sys.stderr.write(text + "\n")


def ask(question: str) -> bool:
    """A yes-or-no question on stderr (stdout keeps only data), answered on stdin; anything but
    y or yes, an empty line and the end of input included, is no."""
    sys.stderr.write(f"{question} [y/N] ")
    sys.stderr.flush()
    return sys.stdin.readline().strip().lower() in ("y", "yes")


def lines(items: Sequence[str]) -> None:
    style.console().print("\n".join(items), markup=False)


def dict_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str) -> None:
    table = style.table(*columns)
    for row in rows:
        table.add_row(
            *(
                style.escape(row.get(c)) if c != "status" else style.status(str(row.get(c)))
                for c in columns
            )
        )
    style.console().print(table if rows else empty)


def preview(names: Sequence[str], rows: Sequence[dict[str, Any]], title: str) -> None:
    table = style.table(*names, title=title)
    for row in rows:
        table.add_row(*(style.escape(row.get(name)) for name in names))
    style.console().print(table)
