"""Plain output: JSON for scripts, lines, notes and errors, and generic tables of rows."""

from __future__ import annotations

import json
import sys
from collections.abc import Sequence
from typing import Any

from cxrun.render import style


def print_json(data: Any) -> None:
    """`data` as one line of JSON; NaN and infinite numbers, which JSON has no words for, are
    printed as null."""
    import math

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [finite(item) for item in value]
        return value

    try:
        text = json.dumps(data, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere: only then is the data walked
        text = json.dumps(finite(data), default=str, ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")


def error(lines: Sequence[str]) -> None:
    first, *rest = lines
    sys.stderr.write(f"error: {first}\n" + "".join(f"  {line}\n" for line in rest))


def note(text: str) -> None:
    sys.stderr.write(text + "\n")


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
