"""The validated spinner as frozen dataclasses: what the runtime trusts."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Template:
    """Text with SQL expressions between `{{ }}`, compiled to one SQL expression."""

    source: str
    sql: str
    expressions: tuple[str, ...]


@dataclass(frozen=True)
class Step:
    id: str
    when: str | None

    kind = "step"

    @property
    def outputs(self) -> tuple[str, ...]:
        return ()


@dataclass(frozen=True)
class LogStep(Step):
    message: Template

    kind = "log"


@dataclass(frozen=True)
class TagStep(Step):
    tag: Template

    kind = "tag"


@dataclass(frozen=True)
class SetStep(Step):
    values: tuple[tuple[str, str], ...]

    kind = "set"

    @property
    def outputs(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.values)


@dataclass(frozen=True)
class Field:
    name: str
    required: bool


@dataclass(frozen=True)
class Spinner:
    name: str
    table: str
    key: str
    fields: tuple[Field, ...]
    select: str | None
    steps: tuple[Step, ...]

    @property
    def required_fields(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.fields if f.required)
