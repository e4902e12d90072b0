"""Statuses shared by the store, the runtime and the renderer."""

from __future__ import annotations

from enum import StrEnum


class JobStatus(StrEnum):
    QUEUED = "queued"
    RUNNING = "running"
    WAITING = "waiting"
    PAUSED = "paused"
    COMPLETED = "completed"
    PARTIAL = "partial"
    FAILED = "failed"
    CANCELLED = "cancelled"
    TIMED_OUT = "timed_out"
    INVALID_PAYLOAD = "invalid_payload"

    @property
    def finished(self) -> bool:
        return self in _FINISHED

    @property
    def exit_code(self) -> int:
        return _EXIT_CODES.get(self, 6)


_FINISHED = {
    JobStatus.COMPLETED,
    JobStatus.PARTIAL,
    JobStatus.FAILED,
    JobStatus.CANCELLED,
    JobStatus.TIMED_OUT,
    JobStatus.INVALID_PAYLOAD,
}
_EXIT_CODES = {
    JobStatus.COMPLETED: 0,
    JobStatus.PARTIAL: 3,
    JobStatus.FAILED: 1,
    JobStatus.CANCELLED: 1,
    JobStatus.TIMED_OUT: 1,
    JobStatus.INVALID_PAYLOAD: 2,
}


class RecordStatus(StrEnum):
    PENDING = "pending"
    RUNNING = "running"
    WAITING = "waiting"
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    CANCELLED = "cancelled"


class StepStatus(StrEnum):
    COMPLETED = "completed"
    FAILED = "failed"
    SKIPPED = "skipped"
    WAITING = "waiting"


class Trigger(StrEnum):
    MANUAL = "manual"
    SCHEDULE = "schedule"
    EVENT = "event"
    RETRY = "retry"
