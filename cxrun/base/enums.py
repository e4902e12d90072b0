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


class Priority(StrEnum):
    """Which queued job a runtime takes first: high, then normal, then low (each by age)."""

    HIGH = "high"
    NORMAL = "normal"
    LOW = "low"

    @property
    def rank(self) -> int:
        """0 for high, 1 for normal, 2 for low: the order runtimes claim queued jobs in."""
        return list(Priority).index(self)

    @classmethod
    def parse(cls, text: str | None, where: str = "priority") -> Priority | None:
        """A priority as given on a command line or in a request (None stays None); a bad one
        is the user's error."""
        from cxrun.base.errors import CxrunError

        if text is None:
            return None
        try:
            return cls(text)
        except ValueError:
            raise CxrunError(
                f"{where}: {text!r} is not a priority", "use high, normal or low"
            ) from None
