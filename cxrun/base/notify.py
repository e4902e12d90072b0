"""Alert rules (`notify:` in cxrun.yaml and in a spinner): which job statuses, through which
channel, to whom, retried how."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from cxrun.base.durations import DURATION_PATTERN, seconds

# The statuses an alert can be sent on: every status a job settles in or stops at.
ALERT_STATUSES = (
    "completed",
    "partial",
    "failed",
    "cancelled",
    "timed_out",
    "paused",
    "waiting",
    "invalid_payload",
)
# Channel kinds that need a recipient (`to:`); a webhook knows where it goes.
NEEDS_RECIPIENT = frozenset({"smtp", "whatsapp"})

_DURATION = {"type": ["string", "number"], "pattern": DURATION_PATTERN, "minimum": 0}
SCHEMA: dict[str, Any] = {
    "description": "Alerts: when a job takes one of `on`, one message through `channel`.",
    "type": "array",
    "items": {
        "type": "object",
        "additionalProperties": False,
        "required": ["on", "channel"],
        "properties": {
            "on": {
                "type": "array",
                "minItems": 1,
                "uniqueItems": True,
                "items": {"enum": list(ALERT_STATUSES)},
            },
            "channel": {"type": "string", "minLength": 1},
            "to": {"type": "string", "minLength": 1},
            "retry": {
                "type": "object",
                "additionalProperties": False,
                "properties": {
                    "attempts": {"type": "integer", "minimum": 1, "maximum": 20},
                    "backoff": _DURATION,
                    "max_backoff": _DURATION,
                },
            },
        },
    },
}


@dataclass(frozen=True)
class Rule:
    """Send an alert through `channel` (to `to`) when a job takes one of the statuses `on`."""

    on: frozenset[str]
    channel: str
    to: str | None = None
    attempts: int = 3
    backoff: float = 1.0
    max_backoff: float = 30.0


def rules(raw: Sequence[Mapping[str, Any]] | None) -> list[Rule]:
    """Rules from schema-valid `notify:` entries."""
    found = []
    for entry in raw or ():
        retry = entry.get("retry") or {}
        found.append(
            Rule(
                on=frozenset(entry["on"]),
                channel=str(entry["channel"]),
                to=entry.get("to"),
                attempts=int(retry.get("attempts", Rule.attempts)),
                backoff=seconds(retry.get("backoff", Rule.backoff), strict=False),
                max_backoff=seconds(retry.get("max_backoff", Rule.max_backoff), strict=False),
            )
        )
    return found


def problems(found: Sequence[Rule], channels: Mapping[str, Any], where: str) -> list[str]:
    """What is wrong with alert rules against the configured channels."""
    wrong = []
    for index, rule in enumerate(found):
        at = f"{where}[{index}]"
        channel = channels.get(rule.channel)
        if not isinstance(channel, Mapping):
            known = ", ".join(sorted(channels)) or "none"
            wrong.append(
                f"{at}: unknown channel '{rule.channel}' (channels in cxrun.yaml: {known})"
            )
        elif channel.get("kind") in NEEDS_RECIPIENT and not rule.to:
            wrong.append(f"{at}: a {channel.get('kind')} channel needs `to:` (who gets the alert)")
    return wrong
