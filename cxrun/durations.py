"""Durations (`500ms`, `2s`, `2m`, `1h`, `2d`) and rates (`20/s`, `600/m`) as written in YAML."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")

DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"
RATE_PATTERN = r"^\s*\d+(\.\d+)?\s*/\s*(s|m|h)\s*$"


def seconds(text: str | float | int) -> float:
    """`2m` → 120.0; a bare number is seconds."""
    if isinstance(text, int | float):
        return float(text)
    match = _DURATION.match(text)
    if not match:
        raise ValueError(f"not a duration: {text!r} (write e.g. 500ms, 30s, 2m, 1h, 2d)")
    return float(match.group(1)) * _UNITS[match.group(2)]


def per_second(text: str | float | int) -> float:
    """`20/s` → 20.0, `600/m` → 10.0; a bare number is per second."""
    if isinstance(text, int | float):
        return float(text)
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (write e.g. 20/s or 600/m)")
    return float(match.group(1)) / _UNITS[match.group(2)]
