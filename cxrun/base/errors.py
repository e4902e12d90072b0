"""The one error hierarchy: every error a user can cause, with its exit code."""

from __future__ import annotations

from collections.abc import Sequence


class ExitCode:
    OK = 0
    JOB_FAILED = 1
    BAD_INPUT = 2
    PARTIAL = 3
    PLAN_LIMIT = 4
    BUSY = 5
    NOT_FINISHED = 6


class CxrunError(Exception):
    """An error the user can cause; the CLI prints `message` (and `hint`) and exits `exit_code`."""

    exit_code = ExitCode.BAD_INPUT

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def lines(self) -> list[str]:
        return [self.message] + ([self.hint] if self.hint else [])


class NotFound(CxrunError):
    """An unknown project, table, spinner, job or record."""


class NotWrittenYet(NotFound):
    """A record of a job that has not reached it yet: it exists once its batch is written."""

    exit_code = ExitCode.NOT_FINISHED


class Conflict(CxrunError):
    """What a job's state does not allow now: another process runs it, it has finished, it is
    not paused (the API answers 409)."""


class TableError(CxrunError):
    """A table file that cannot be loaded or does not fit its spinner."""


class ValidationFailed(CxrunError):
    """A spinner with problems; every problem is listed, each with file and path."""

    def __init__(self, problems: Sequence[str], hint: str | None = None) -> None:
        self.problems = list(problems)
        super().__init__("\n".join(self.problems), hint)

    def lines(self) -> list[str]:
        return self.problems + ([self.hint] if self.hint else [])


class StateBusy(CxrunError):
    """The state file's lock could not be taken within the wait."""

    exit_code = ExitCode.BUSY


class PlanLimitReached(CxrunError):
    """Starting a job would go over a monthly limit of cxrun.yaml; nothing was started.
    `usage` says which limit, its value, what is used, what the job needs, when it resets."""

    exit_code = ExitCode.PLAN_LIMIT

    def __init__(
        self, message: str, hint: str | None = None, usage: dict[str, object] | None = None
    ) -> None:
        super().__init__(message, hint)
        self.usage = usage or {}


class StateDamaged(CxrunError):
    """The state file is not as cxrun left it: truncated, a table dropped, a value changed."""

    def __init__(self, problem: str, state_file: str = ".cxrun/state.duckdb") -> None:
        aside = state_file.removesuffix(".duckdb") + ".damaged"
        super().__init__(
            f"{state_file} is damaged: {problem}",
            f"move it aside (mv {state_file} {aside}) and run `cxrun publish` to start a new "
            "state from the project files; its job history is lost",
        )
