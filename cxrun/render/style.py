"""The shared look of the views: the console, a table, status colours and escaped cells."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

_STATUS_STYLE = {
    "completed": "green",
    "partial": "yellow",
    "failed": "red",
    "running": "cyan",
    "queued": "blue",
    "skipped": "dim",
    "pending": "dim",
    "waiting": "magenta",
    "paused": "magenta",
    "cancelled": "red",
    "timed_out": "red",
    "invalid_payload": "red",
    "refused": "red",
    "started": "green",
}


def console(stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # a file or a pipe: room for whole rows rather than 80 columns
        console.width = max(console.width, 160)
    return console


def table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def status(value: str) -> str:
    style = _STATUS_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def escape(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return escape(text)
