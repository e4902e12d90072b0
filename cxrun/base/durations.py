"""Durations (`500ms`, `2s`, `2m`, `1h`, `2d`) and rates (`20/s`, `600/m`) as written in YAML."""

from __future__ import annotations

import re

_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86400.0}
_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)\s*$")
_RATE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*/\s*(s|m|h)\s*$")

DURATION_PATTERN = r"^\s*\d+(\.\d+)?\s*(ms|s|m|h|d)\s*$"
RATE_PATTERN = r"^\s*\d+(\.\d+)?\s*/\s*(s|m|h)\s*$"

# The longest duration: 100 years. Every deadline counted from now (a wait, an approval's
# timeout) then stays a time that Python and the state can hold (CXRUN_NOW stops at 9000).
LONGEST_DAYS = 36500
LONGEST = LONGEST_DAYS * _UNITS["d"]


def seconds(text: str | float | int, strict: bool = True) -> float:
    """`2m` → 120.0; a bare number is seconds. A duration longer than LONGEST is refused
    (ValueError), or with `strict=False` taken as LONGEST (a version published before)."""
    if isinstance(text, int | float):
        value = float(text)
        if not value >= 0:  # negative, or NaN
            raise ValueError(f"not a duration: {text!r} (write e.g. 500ms, 30s, 2m, 1h, 2d)")
    else:
        match = _DURATION.match(text)
        if not match:
            raise ValueError(f"not a duration: {text!r} (write e.g. 500ms, 30s, 2m, 1h, 2d)")
        value = float(match.group(1)) * _UNITS[match.group(2)]
    if value > LONGEST:
        if not strict:
            return LONGEST
        raise ValueError(
            f"{text!r} is longer than {LONGEST_DAYS}d (100 years), the longest duration cxrun takes"
        )
    return value


def per_second(text: str | float | int) -> float:
    """`20/s` → 20.0, `600/m` → 10.0; a bare number is per second."""
    if isinstance(text, int | float):
        return float(text)
    match = _RATE.match(text)
    if not match:
        raise ValueError(f"not a rate: {text!r} (write e.g. 20/s or 600/m)")
    return float(match.group(1)) / _UNITS[match.group(2)]
