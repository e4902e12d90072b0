"""Reading YAML files safely, with errors that name the file, line and column."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from cxrun.errors import CxrunError


def parse_yaml(text: str, shown_as: str) -> Any:
    """Parse YAML text with a safe loader; a syntax error names the file, line and column."""
    import yaml

    loader = getattr(yaml, "CSafeLoader", yaml.SafeLoader)
    try:
        return yaml.load(text, Loader=loader)  # noqa: S506 - a safe loader
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        raise CxrunError(
            f"{shown_as}: {where}{exc.problem or exc}",
            "fix the YAML syntax and try again",
        ) from None
    except yaml.YAMLError as exc:
        raise CxrunError(f"{shown_as}: {exc}", "fix the YAML syntax and try again") from None


def read_yaml(path: Path, shown_as: str) -> Any:
    return parse_yaml(read_text(path, shown_as), shown_as)


def read_text(path: Path, shown_as: str) -> str:
    try:
        return path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise CxrunError(f"{shown_as}: file not found") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CxrunError(f"{shown_as}: cannot read ({exc})") from None
