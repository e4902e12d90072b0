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
    """The console to print on; a file or a pipe gets room for whole rows (160 columns), unless
    COLUMNS says how wide."""
    import os

    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal and not os.environ.get("COLUMNS"):
        console.width = max(console.width, 160)
    return console


def table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def narrow_table(*columns: str) -> Table:
    """A table for a narrow terminal: no outer border, one space between columns, and cells that
    are cut short with an ellipsis rather than wrapped."""
    from rich import box
    from rich.table import Table

    table = Table(
        box=box.SIMPLE_HEAD,
        show_edge=False,
        pad_edge=False,
        padding=(0, 0),
        header_style="bold",
    )
    for column in columns:
        table.add_column(column, no_wrap=True, overflow="ellipsis")
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
