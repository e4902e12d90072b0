"""What the store hands back about jobs, records and journeys, in the JSON contract's shape."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.enums import JobStatus, Priority

if TYPE_CHECKING:
    from cxrun.base.filters import JobFilter


def iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z") if moment else None


@dataclass(frozen=True)
class Job:
    job: int
    spinner: str
    version: int
    trigger: str
    status: JobStatus
    reason: str | None
    table: str
    total: int
    processed: int
    completed: int
    failed: int
    skipped: int
    waiting: int
    cancelled: int
    prompt_tokens: int
    completion_tokens: int
    cost: float
    created_at: datetime | None
    started_at: datetime | None
    ended_at: datetime | None
    paused_at: datetime | None = None
    priority: Priority = Priority.NORMAL
    notify: bool = False  # whether it has alert rules to match its statuses against

    def duration_s(self, now: datetime | None = None) -> float | None:
        """Seconds from the start to the end, or to the pause of a paused job, or to now."""
        if not self.started_at:
            return None
        from cxrun.base.clock import utcnow

        paused = self.paused_at if self.status == JobStatus.PAUSED else None
        end = self.ended_at or paused or now or utcnow()
        return round(max(0.0, (end - self.started_at).total_seconds()), 3)

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "spinner": self.spinner,
            "version": self.version,
            "trigger": self.trigger,
            "status": str(self.status),
            "reason": self.reason,
            "priority": str(self.priority),
            "table": self.table,
            "total": self.total,
            "processed": self.processed,
            "completed": self.completed,
            "failed": self.failed,
            "skipped": self.skipped,
            "waiting": self.waiting,
            "cancelled": self.cancelled,
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "cost": round(self.cost, 6),
            "created_at": iso(self.created_at),
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_s": self.duration_s(),
        }


@dataclass(frozen=True)
class Record:
    job: int
    record: str
    status: str
    metadata: dict[str, Any]
    tags: list[str]
    outputs: dict[str, Any]
    error: str | None
    failed_step: str | None
    attempts: int
    duration_ms: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job,
            "record": self.record,
            "status": self.status,
            "metadata": self.metadata,
            "tags": self.tags,
            "outputs": self.outputs,
            "error": self.error,
            "failed_step": self.failed_step,
            "attempts": self.attempts,
            "duration_s": None if self.duration_ms is None else round(self.duration_ms / 1000, 6),
        }


@dataclass(frozen=True)
class JourneyEntry:
    step: str
    attempt: int
    status: str
    message: str | None
    output: Any
    error: str | None
    started_at: datetime | None
    ended_at: datetime | None
    duration_ms: float | None
    usage: dict[str, int] | None = None  # the tokens an AI provider reported, for AI steps
    parent: str | None = None  # the call step a called child spinner's step ran under

    def to_json(self) -> dict[str, Any]:
        return {
            "step": self.step,
            "attempt": self.attempt,
            "status": self.status,
            "message": self.message,
            "output": self.output,
            "error": self.error,
            "started_at": iso(self.started_at),
            "ended_at": iso(self.ended_at),
            "duration_ms": None if self.duration_ms is None else round(self.duration_ms, 4),
            "usage": self.usage,
            "parent": self.parent,
        }


@dataclass(frozen=True)
class JobsPage:
    """One page of the jobs table, with what a redraw shows around it: how many jobs match,
    when it was read, and whether a runtime is up."""

    jobs: list[Job]
    filters: JobFilter
    page: int
    limit: int
    matching: int
    read_at: datetime
    runtime: str | None  # the runtime that is up ("pid 123"), or None

    @property
    def pages(self) -> int:
        """How many pages the matching jobs fill (one, when none match)."""
        return max(1, -(-self.matching // self.limit))
