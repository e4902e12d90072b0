"""Why a job's calls stop: a pause a call asked for, the job's deadline, a request to halt, or
calls that cannot be made at all.

Kept apart from the executor so that a job of pure steps knows them without importing an HTTP
client it never uses."""

from __future__ import annotations


class JobPaused(Exception):
    """A call said the job cannot go on (credentials, credits): nothing new is started."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class JobTimedOut(Exception):
    """The job's deadline passed: nothing new is started."""


class JobHalted(Exception):
    """Someone asked the job to stop (cancel, pause, a runtime shutting down)."""


class JobFailed(Exception):
    """The calls cannot be made at all (a cluster's worker lacks a secret, no worker is left):
    the job fails with this reason."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason
