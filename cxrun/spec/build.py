"""The model from a schema-valid mapping: the spinner, its triggers and its steps in run order."""

from __future__ import annotations

import json
from typing import Any

from cxrun.base import notify
from cxrun.base.durations import seconds
from cxrun.base.sql import Template, compile_template
from cxrun.spec.model import (
    AIStep,
    ApprovalStep,
    CallStep,
    EventTrigger,
    Field,
    HttpStep,
    Limits,
    LogStep,
    Retry,
    ScheduleTrigger,
    SendStep,
    SetStep,
    Spinner,
    Step,
    TagStep,
    TriggerSpec,
    WaitStep,
)

CALLS = "_calls"  # in a published spec: the child spinners its call steps run, by name


def build(raw: dict[str, Any], name: str) -> Spinner:
    """The model from a schema-valid mapping (a file just read, or a published version)."""
    fields = tuple(
        Field(name=column, required=bool((options or {}).get("required", False)))
        for column, options in (raw.get("fields") or {}).items()
    )
    limits = raw.get("limits") or {}
    steps: list[Step] = []
    _expand(raw["steps"], raw.get(CALLS) or {}, steps, "", None, None, "")
    eligible = None
    if raw.get("eligible"):
        from cxrun.spec import windows

        eligible = windows.parse(raw["eligible"])
    return Spinner(
        name=name,
        table=raw["table"],
        key=raw["key"],
        fields=fields,
        select=raw.get("select"),
        child=bool(raw.get("child", False)),
        eligible=eligible,
        triggers=tuple(_build_trigger(t) for t in raw.get("triggers") or ()),
        notify=tuple(notify.rules(raw.get("notify"))),
        steps=tuple(steps),
        limits=Limits(
            concurrency=int(limits.get("concurrency", Limits.concurrency)),
            record_timeout=_optional_seconds(limits.get("record_timeout")),
            job_timeout=_optional_seconds(limits.get("job_timeout")),
        ),
    )


def _build_trigger(raw: dict[str, Any]) -> TriggerSpec:
    if "schedule" in raw:
        return ScheduleTrigger(
            cron=raw["schedule"],
            timezone=raw.get("timezone", "UTC"),
            catchup=raw.get("catchup", "one"),
            select=raw.get("select"),
        )
    schema = raw.get("schema")
    properties = (schema or {}).get("properties")
    return EventTrigger(
        event=raw["event"],
        schema_json=None if schema is None else json.dumps(schema),
        select=raw.get("select"),
        parameters=tuple(properties) if isinstance(properties, dict) else (),
    )


def _optional_seconds(value: Any) -> float | None:
    return None if value is None else _seconds(value)


def _seconds(value: Any) -> float:
    """A checked duration (a version published before the longest was checked may have a
    longer one: it is taken as the longest)."""
    return seconds(value, strict=False)


def _expand(
    raws: list[dict[str, Any]],
    calls: dict[str, dict[str, Any]],
    steps: list[Step],
    prefix: str,
    parent: str | None,
    guard: int | None,
    where: str,
) -> None:
    """The steps in run order. A call step is followed by its child's steps (ids prefixed with
    the call's id, guarded by it), then a hidden set step that gathers the child's outputs
    into a STRUCT named after the call step."""
    from cxrun.base.sql import quote_ident

    for index, raw in enumerate(raws):
        common: dict[str, Any] = {
            "id": prefix + raw["id"],
            "when": raw.get("when"),
            "path": f"{where}steps[{index}]",
            "parent": parent,
            "guard": guard,
        }
        if "call" not in raw:
            steps.append(_build_step(raw, common))
            continue
        child = calls.get(raw["call"])
        at = len(steps)
        steps.append(CallStep(**common, spinner=raw["call"]))
        if child is None:  # a file checked before its children are attached
            continue
        first = len(steps)
        inner = f"{common['path']} > {raw['call']}."
        _expand(child["steps"], calls, steps, f"{common['id']}.", common["id"], at, inner)
        outputs = [n for s in steps[first:] if s.parent == common["id"] for n in s.outputs]
        packed = ", ".join(f"{quote_ident(n)} := {quote_ident(n)}" for n in outputs)
        steps.append(
            SetStep(
                id=f"{common['id']}.(end)",
                when=None,
                values=((raw["id"], f"struct_pack({packed})" if packed else "NULL::JSON"),),
                path=common["path"],
                parent=parent,
                guard=at,
                hidden=True,
            )
        )


def _build_step(raw: dict[str, Any], common: dict[str, Any]) -> Step:
    if "wait" in raw:
        wait = raw["wait"]
        if isinstance(wait, dict):
            return WaitStep(**common, seconds=None, until=str(wait["until"]))
        return WaitStep(**common, seconds=_seconds(wait), until=None)
    if "approval" in raw:
        spec = raw["approval"]
        return ApprovalStep(
            **common,
            prompt=compile_template(spec["prompt"]),
            timeout=_optional_seconds(spec.get("timeout")),
            on_timeout=spec.get("on_timeout", "reject"),
        )
    if "log" in raw:
        return LogStep(**common, message=compile_template(raw["log"]))
    if "tag" in raw:
        return TagStep(**common, tag=compile_template(raw["tag"]))
    if "set" in raw:
        values = tuple((k, _sql_text(v)) for k, v in raw["set"].items())
        return SetStep(**common, values=values)
    retry = raw.get("retry") or {}
    common["retry"] = Retry(
        attempts=int(retry.get("attempts", 1)),
        backoff=_seconds(retry.get("backoff", "1s")),
        max_backoff=_seconds(retry.get("max_backoff", "60s")),
    )
    common["timeout"] = _optional_seconds(raw.get("timeout"))
    if "ai" in raw:
        return _ai_step(raw["ai"], common)
    if "send" in raw:
        spec = raw["send"]
        return SendStep(
            **common,
            channel=spec["channel"],
            to=compile_template(spec["to"]),
            text=compile_template(spec["text"]),
            subject=_optional_template(spec.get("subject")),
        )
    return _http_step(raw["http"], common)


def _ai_step(spec: dict[str, Any], common: dict[str, Any]) -> AIStep:
    return AIStep(
        **common,
        output=spec["output"],
        provider=spec["provider"],
        model=spec["model"],
        prompt=compile_template(spec["prompt"]),
        system=_optional_template(spec.get("system")),
        schema_json=json.dumps(spec["schema"]) if "schema" in spec else None,
        temperature=spec.get("temperature"),
        max_tokens=spec.get("max_tokens"),
    )


def _http_step(spec: dict[str, Any], common: dict[str, Any]) -> HttpStep:
    body = spec.get("json")
    return HttpStep(
        **common,
        output=spec.get("output"),
        method=spec.get("method", "POST" if body is not None else "GET"),
        url=compile_template(spec["url"]),
        headers=tuple(
            (name, compile_template(value)) for name, value in (spec.get("headers") or {}).items()
        ),
        body=tuple((path, compile_template(text)) for path, text in string_leaves(body)),
        body_json=None if body is None else json.dumps(body),
    )


def string_leaves(value: Any, path: str = "") -> list[tuple[str, str]]:
    """Every string inside a JSON value, with its path (`/a/0/b`)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [leaf for k, v in value.items() for leaf in string_leaves(v, f"{path}/{k}")]
    if isinstance(value, list):
        return [leaf for i, v in enumerate(value) for leaf in string_leaves(v, f"{path}/{i}")]
    return []


def _optional_template(text: str | None) -> Template | None:
    return None if text is None else compile_template(text)


def _sql_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)
