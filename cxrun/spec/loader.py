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
from cxrun.base.yamlfile import parse_yaml, read_text
from cxrun.spec.build import build
from cxrun.spec.model import Spinner

STEP_TYPES = ("log", "tag", "set", "ai", "send", "http", "wait", "approval", "call")
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


def spinner_names(project: Project) -> set[str]:
    """The names of the spinner files, without reading them."""
    return {
        path.stem
        for suffix in (".yaml", ".yml")
        for path in project.spinners_dir.glob("*" + suffix)
    }


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
