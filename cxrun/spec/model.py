"""The validated spinner as frozen dataclasses: what the runtime trusts."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from cxrun.base.notify import Rule
from cxrun.base.sql import Template


@dataclass(frozen=True)
class Step:
    id: str
    when: str | None
    # Where the step is written (`steps[2]`, or `steps[2] > followup.steps[0]` inside a called
    # child spinner); the call step it runs under (its id) and that call's position.
    path: str = field(default="", kw_only=True)
    parent: str | None = field(default=None, kw_only=True)
    guard: int | None = field(default=None, kw_only=True)
    hidden: bool = field(default=False, kw_only=True)  # no journey entry of its own

    kind = "step"
    is_io = False
    parks = False  # may park the record (a wait, an approval)

    @property
    def outputs(self) -> tuple[str, ...]:
        return ()

    def templates(self) -> tuple[tuple[str, Template], ...]:
        """The step's templates, each with the path under the step that names it in errors."""
        return ()


@dataclass(frozen=True)
class LogStep(Step):
    message: Template

    kind = "log"

    def templates(self) -> tuple[tuple[str, Template], ...]:
        return (("log", self.message),)


@dataclass(frozen=True)
class TagStep(Step):
    tag: Template

    kind = "tag"

    def templates(self) -> tuple[tuple[str, Template], ...]:
        return (("tag", self.tag),)


@dataclass(frozen=True)
class SetStep(Step):
    values: tuple[tuple[str, str], ...]

    kind = "set"

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.values)


@dataclass(frozen=True)
class WaitStep(Step):
    """Parks the record for a duration, or until a SQL timestamp."""

    seconds: float | None
    until: str | None

    kind = "wait"
    parks = True


@dataclass(frozen=True)
class ApprovalStep(Step):
    """Parks the record until a person approves or rejects it (or the timeout decides)."""

    prompt: Template
    timeout: float | None
    on_timeout: str  # approve | reject

    kind = "approval"
    parks = True

    def templates(self) -> tuple[tuple[str, Template], ...]:
        return (("approval.prompt", self.prompt),)


@dataclass(frozen=True)
class CallStep(Step):
    """Runs a child spinner's steps for this row; they follow it, guarded by it, and a hidden
    set step after them gathers the child's outputs under this step's id."""

    spinner: str

    kind = "call"


@dataclass(frozen=True)
class Retry:
    attempts: int = 1
    backoff: float = 1.0
    max_backoff: float = 60.0


@dataclass(frozen=True)
class IOStep(Step):
    """A step that calls out: its inputs are rendered with SQL, the call is made concurrently."""

    retry: Retry
    timeout: float | None

    is_io = True
    output: str | None = None

    @property
    def outputs(self) -> tuple[str, ...]:
        return (self.output,) if self.output else ()

    @property
    def target(self) -> str:
        """The provider or channel this step uses ("" for plain HTTP)."""
        return ""


@dataclass(frozen=True)
class AIStep(IOStep):
    provider: str = ""
    model: str = ""
    prompt: Template | None = None
    system: Template | None = None
    schema_json: str | None = None  # the JSON Schema the answer must fit, as JSON text
    temperature: float | None = None
    max_tokens: int | None = None

    kind = "ai"

    @property
    def target(self) -> str:
        return self.provider

    @property
    def schema(self) -> dict[str, Any] | None:
        return json.loads(self.schema_json) if self.schema_json else None

    def templates(self) -> tuple[tuple[str, Template], ...]:
        found = [("ai.prompt", self.prompt), ("ai.system", self.system)]
        return tuple((label, t) for label, t in found if t is not None)


@dataclass(frozen=True)
class SendStep(IOStep):
    channel: str = ""
    to: Template | None = None
    text: Template | None = None
    subject: Template | None = None

    kind = "send"

    @property
    def target(self) -> str:
        return self.channel

    def templates(self) -> tuple[tuple[str, Template], ...]:
        found = [("send.to", self.to), ("send.text", self.text), ("send.subject", self.subject)]
        return tuple((label, t) for label, t in found if t is not None)


@dataclass(frozen=True)
class HttpStep(IOStep):
    method: str = "GET"
    url: Template | None = None
    headers: tuple[tuple[str, Template], ...] = ()
    body: tuple[tuple[str, Template], ...] = ()  # JSON-pointer-like paths of string leaves
    body_json: str | None = None  # the body with its string leaves, as JSON text

    kind = "http"

    def templates(self) -> tuple[tuple[str, Template], ...]:
        found: list[tuple[str, Template]] = [("http.url", self.url)] if self.url else []
        found += [(f"http.headers.{name}", t) for name, t in self.headers]
        found += [(f"http.json{path}", t) for path, t in self.body]
        return tuple(found)


@dataclass(frozen=True)
class Field:
    name: str
    required: bool


@dataclass(frozen=True)
class Limits:
    concurrency: int = 8
    record_timeout: float | None = None
    job_timeout: float | None = None


# Parameters ($name) every select may use: the time a job starts for, and the one before it.
TIME_PARAMETERS = ("timestamp", "last_timestamp")


@dataclass(frozen=True)
class ScheduleTrigger:
    """Start a job at each due time of a cron expression, matched in a time zone."""

    cron: str
    timezone: str = "UTC"
    catchup: str = "one"  # missed due times: skip, one (the latest), all
    select: str | None = None

    kind = "schedule"

    @property
    def allowed(self) -> tuple[str, ...]:
        """The parameters its select may use."""
        return TIME_PARAMETERS


@dataclass(frozen=True)
class EventTrigger:
    """Start a job when `cxrun trigger EVENT` is called with a payload that fits the schema."""

    event: str
    schema_json: str | None = None  # the payload's JSON Schema, as JSON text
    select: str | None = None
    parameters: tuple[str, ...] = ()  # the schema's top-level property names

    kind = "event"

    @property
    def allowed(self) -> tuple[str, ...]:
        """The parameters its select may use: the times, then the payload's properties."""
        payload = (p for p in self.parameters if p not in TIME_PARAMETERS and p[:3] != "_cx")
        return TIME_PARAMETERS + tuple(payload)

    @property
    def schema(self) -> dict[str, Any] | None:
        return json.loads(self.schema_json) if self.schema_json else None


TriggerSpec = ScheduleTrigger | EventTrigger


@dataclass(frozen=True)
class Eligible:
    """When sends and AI calls may happen: weekdays (0 = Monday) and minutes of the day
    [start, end) in a time zone."""

    days: tuple[int, ...]
    start: int
    end: int
    timezone: str
    text: str


@dataclass(frozen=True)
class Spinner:
    name: str
    table: str
    key: str
    fields: tuple[Field, ...]
    select: str | None
    steps: tuple[Step, ...]
    limits: Limits = Limits()
    child: bool = False
    eligible: Eligible | None = None
    triggers: tuple[TriggerSpec, ...] = ()
    notify: tuple[Rule, ...] = ()  # alert rules of its own (cxrun.yaml's apply too)

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)

    @property
    def has_io(self) -> bool:
        return any(step.is_io for step in self.steps)

    @property
    def schedules(self) -> tuple[ScheduleTrigger, ...]:
        return tuple(t for t in self.triggers if isinstance(t, ScheduleTrigger))

    def listens_to(self, event: str) -> EventTrigger | None:
        return next(
            (t for t in self.triggers if isinstance(t, EventTrigger) and t.event == event), None
        )
