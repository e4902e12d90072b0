"""Reading spinner files: YAML, then the JSON Schema (every problem at once), then the model."""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any

from cxrun.base.durations import seconds
from cxrun.base.errors import CxrunError, NotFound, ValidationFailed
from cxrun.base.project import Project
from cxrun.base.sql import Template, compile_template
from cxrun.base.yamlfile import parse_yaml, read_text
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

STEP_TYPES = ("log", "tag", "set", "ai", "send", "http", "wait", "approval", "call")
CALLS = "_calls"  # in a published spec: the child spinners its call steps run, by name
MAX_CALL_DEPTH = 4
_STEP_OPTIONS = ("id", "when", "retry", "timeout")


@dataclass(frozen=True)
class SpinnerFile:
    name: str
    path: Path
    shown: str
    source: str

    @property
    def digest(self) -> str:
        return hashlib.sha256(self.source.encode()).hexdigest()


@cache
def schema() -> dict[str, Any]:
    text = resources.files("cxrun.spec").joinpath("spinner.schema.json").read_text()
    result: dict[str, Any] = json.loads(text)
    return result


def spinner_files(project: Project) -> list[SpinnerFile]:
    folder = project.spinners_dir
    paths = sorted(folder.glob("*.yaml")) + sorted(folder.glob("*.yml"))
    return [_read(project, path) for path in sorted(paths)]


def spinner_file(project: Project, name: str) -> SpinnerFile:
    for suffix in (".yaml", ".yml"):
        path = project.spinners_dir / f"{name}{suffix}"
        if path.is_file():
            return _read(project, path)
    known = ", ".join(f.name for f in spinner_files(project)) or "none yet"
    raise NotFound(f"unknown spinner '{name}' (spinners: {known})", "check the name in spinners/")


def _read(project: Project, path: Path) -> SpinnerFile:
    shown = project.shown(path)
    try:
        source = read_text(path, shown)  # at most MAX_FILE_BYTES
    except CxrunError as exc:
        raise ValidationFailed([exc.message], exc.hint) from None
    return SpinnerFile(name=path.stem, path=path, shown=shown, source=source)


def parse(file: SpinnerFile) -> tuple[dict[str, Any], Spinner]:
    """The raw (schema-valid) mapping and the model; ValidationFailed lists every schema problem."""
    raw = parse_yaml(file.source, file.shown)
    problems = schema_problems(raw, file.name)
    if problems:
        raise ValidationFailed(
            [f"{file.shown}: {p}" for p in problems], f"fix {file.shown} and try again"
        )
    return raw, build(raw, file.name)


def schema_problems(raw: Any, name: str) -> list[str]:
    import jsonschema

    validator = jsonschema.Draft202012Validator(schema())
    problems: list[str] = []
    for error in sorted(validator.iter_errors(raw), key=lambda e: [str(p) for p in e.path]):
        message = _describe(error)
        if message and message not in problems:
            problems.append(message)
    if isinstance(raw, dict) and raw.get("name") not in (None, name):
        problems.append(f"name: '{raw['name']}' does not match the file name '{name}'")
    if problems:
        return problems
    if raw.get("eligible"):
        from cxrun.spec import windows

        try:
            windows.parse(raw["eligible"])
        except ValueError as exc:
            problems.append(f"eligible.{exc}")
    return problems + duration_problems(raw)


def duration_problems(raw: dict[str, Any]) -> list[str]:
    """Durations longer than the longest (100 years) in a schema-valid mapping, as path: message."""
    limits = raw.get("limits") or {}
    found = [(f"limits.{key}", limits.get(key)) for key in ("record_timeout", "job_timeout")]
    for index, step in enumerate(raw["steps"]):
        retry, approval = step.get("retry") or {}, step.get("approval") or {}
        found += [
            (f"steps[{index}].{where}", value)
            for where, value in (
                ("timeout", step.get("timeout")),
                ("retry.backoff", retry.get("backoff")),
                ("retry.max_backoff", retry.get("max_backoff")),
                ("wait", step.get("wait")),
                ("approval.timeout", approval.get("timeout")),
            )
        ]
    problems = []
    for where, value in found:
        if value is None or isinstance(value, dict):  # not set, or a wait until a timestamp
            continue
        try:
            seconds(value)
        except ValueError as exc:
            problems.append(f"{where}: {exc}")
    return problems


def attach_children(project: Project, raw: dict[str, Any], name: str) -> list[str]:
    """Find the child spinners the call steps run (from their files, recursively) and keep them
    in `raw[CALLS]`; the problems (unknown, not a child, invalid, a cycle) as path: message."""
    children: dict[str, dict[str, Any]] = {}
    problems: list[str] = []

    def visit(steps: list[dict[str, Any]], where: str, chain: tuple[str, ...]) -> None:
        for index, step in enumerate(steps):
            target = step.get("call")
            if target is None:
                continue
            at = f"{where}steps[{index}].call"
            if target in chain:
                problems.append(f"{at}: '{target}' calls itself ({' > '.join((*chain, target))})")
                continue
            if len(chain) > MAX_CALL_DEPTH:
                problems.append(f"{at}: calls nest deeper than {MAX_CALL_DEPTH} levels")
                continue
            if target not in children:
                child = _child(project, target, at, problems)
                if child is None:
                    continue
                children[target] = child
            visit(children[target]["steps"], f"{at} > {target}.", (*chain, target))

    visit(raw["steps"], "", (name,))
    if not problems:
        raw[CALLS] = children
    return problems


def _child(project: Project, target: str, at: str, problems: list[str]) -> dict[str, Any] | None:
    try:
        file = spinner_file(project, target)
    except NotFound:
        known = ", ".join(f.name for f in spinner_files(project)) or "none"
        problems.append(f"{at}: unknown spinner '{target}' (spinners: {known})")
        return None
    try:
        child = parse_yaml(file.source, file.shown)
    except CxrunError:
        child = None
    if not isinstance(child, dict) or schema_problems(child, target):
        problems.append(f"{at}: spinner '{target}' is not valid (see `cxrun validate {target}`)")
        return None
    if not child.get("child"):
        problems.append(
            f"{at}: spinner '{target}' is not a child spinner (add `child: true` to {file.shown})"
        )
        return None
    return child


def calls_digest(project: Project, file: SpinnerFile) -> str:
    """The digest that tells whether a spinner needs publishing again: its file and the files of
    the child spinners it calls (a changed child makes a new version of its callers)."""
    if "call" not in file.source:
        return file.digest
    names: list[str] = []
    pending = [file.source]
    while pending:
        try:
            raw = parse_yaml(pending.pop(), file.shown)
        except CxrunError:
            continue
        steps = raw.get("steps") if isinstance(raw, dict) else None
        for step in steps if isinstance(steps, list) else []:
            target = step.get("call") if isinstance(step, dict) else None
            if isinstance(target, str) and target not in names and target != file.name:
                names.append(target)
                try:
                    pending.append(spinner_file(project, target).source)
                except NotFound:
                    continue
    if not names:
        return file.digest
    digest = hashlib.sha256(file.source.encode())
    for target in sorted(names):
        try:
            digest.update(f"\0{target}\0".encode() + spinner_file(project, target).source.encode())
        except NotFound:
            digest.update(f"\0{target}\0missing".encode())
    return digest.hexdigest()


def path_text(path: Any) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text


def _describe(error: Any) -> str | None:
    where = path_text(error.absolute_path)
    prefix = f"{where}: " if where else ""
    instance = error.instance
    is_step = len(error.absolute_path) == 2 and error.absolute_path[0] == "steps"
    if is_step and error.validator in ("oneOf", "additionalProperties"):
        return prefix + _step_type_problem(instance)
    is_trigger = len(error.absolute_path) == 2 and error.absolute_path[0] == "triggers"
    if is_trigger and error.validator in ("oneOf", "type"):
        return prefix + _trigger_problem(instance)
    if error.validator == "additionalProperties":
        extra = sorted(set(instance) - set(error.schema.get("properties", {})))
        return prefix + f"unknown key{'s' if len(extra) > 1 else ''} {', '.join(map(repr, extra))}"
    if error.validator == "required":
        return prefix + str(error.message).replace("is a required property", "is required")
    if error.validator == "type" and instance is None:
        return prefix + "is empty"
    return prefix + str(error.message)


def _step_type_problem(step: Any) -> str:
    if not isinstance(step, dict):
        return "a step must be a mapping"
    types = [k for k in step if k in STEP_TYPES]
    unknown = [k for k in step if k not in STEP_TYPES and k not in _STEP_OPTIONS]
    known = ", ".join(STEP_TYPES)
    if not types and unknown:
        return f"'{unknown[0]}' is not a step type (one of: {known})"
    if not types:
        return f"a step needs a type (one of: {known})"
    if len(types) > 1:
        return f"a step has one type, found {' and '.join(types)}"
    return f"unknown step option{'s' if len(unknown) > 1 else ''} {', '.join(map(repr, unknown))}"


def _trigger_problem(trigger: Any) -> str:
    if not isinstance(trigger, dict):
        return "a trigger must be a mapping ({schedule: CRON} or {event: NAME})"
    if "schedule" in trigger and "event" in trigger:
        return "a trigger has either schedule or event, not both"
    if "schedule" in trigger:
        return "schema belongs to event triggers, not to a schedule"
    if "event" in trigger:
        return "timezone and catchup belong to schedules, not to an event trigger"
    return "a trigger needs schedule (a cron expression) or event (a name)"


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
