"""What a bulk action (retry, cancel or resume of every job a filter matches) plans, and what it
did to each job: the models every surface shows, in the `--json` shape."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from cxrun.base.filters import JobFilter
from cxrun.base.models import Job


@dataclass(frozen=True)
class Action:
    """One bulk action: what its records are called, and what a job needs for it to apply."""

    name: str
    records: str  # "failed records"
    applies: str  # why a matching job was left out: "has no failed records"


ACTIONS = {
    "retry": Action("retry", "failed records", "has failed records and has finished"),
    "cancel": Action("cancel", "unfinished records", "is unfinished"),
    "resume": Action("resume", "unfinished records", "is paused"),
}


@dataclass(frozen=True)
class Target:
    """A job a plan acts on, and how many of its records the action touches."""

    job: Job
    records: int

    def to_json(self) -> dict[str, Any]:
        job = self.job
        return {
            "job": job.job,
            "spinner": job.spinner,
            "status": str(job.status),
            "reason": job.reason,
            "records": self.records,
        }


@dataclass(frozen=True)
class Plan:
    """The jobs an action would touch (oldest first) among the `matched` jobs of the filter, and
    whether a runtime is up to run what it queues."""

    action: Action
    filters: JobFilter
    targets: list[Target]
    matched: int
    runtime_up: bool

    @property
    def jobs(self) -> list[int]:
        return [target.job.job for target in self.targets]

    @property
    def records(self) -> int:
        return sum(target.records for target in self.targets)

    def to_json(self) -> dict[str, Any]:
        return {
            "action": self.action.name,
            "filters": self.filters.to_json(),
            "matched": self.matched,
            "jobs": [target.to_json() for target in self.targets],
            "records": self.records,
            "confirmed": False,
            "results": [],
            "refused": [],
            "runtime": "up" if self.runtime_up else "down",
        }


@dataclass(frozen=True)
class Result:
    """What the action did to one job: its status after, or why it was refused."""

    job: int
    ok: bool
    status: str | None
    error: str | None = None
    hint: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "ok": self.ok,
            "status": self.status,
            "error": self.error,
            "hint": self.hint,
        }


@dataclass(frozen=True)
class Outcome:
    """A plan carried out: a result per job, in the plan's order."""

    plan: Plan
    results: list[Result]
    runtime_up: bool

    @property
    def refused(self) -> list[int]:
        return [result.job for result in self.results if not result.ok]

    @property
    def queued(self) -> bool:
        """Whether it left jobs queued for a runtime."""
        return any(result.status == "queued" for result in self.results)

    def to_json(self) -> dict[str, Any]:
        return {
            **self.plan.to_json(),
            "confirmed": True,
            "results": [result.to_json() for result in self.results],
            "refused": self.refused,
            "runtime": "up" if self.runtime_up else "down",
        }
