"""Time limits for I/O attempts: one periodic check cancels the overdue ones."""

from __future__ import annotations

import asyncio
import time
from typing import Any


class Watchdog:
    """Time limits for attempts: one periodic check cancels the overdue ones (cheaper than a
    timer per attempt at thousands of calls a second)."""

    def __init__(self, period: float = 0.02) -> None:
        self.period = period
        self._due: dict[asyncio.Task[Any], float] = {}
        self._fired: set[asyncio.Task[Any]] = set()

    def arm(self, seconds: float) -> asyncio.Task[Any]:
        task = asyncio.current_task()
        assert task is not None
        self._due[task] = time.monotonic() + seconds
        return task

    def disarm(self, task: asyncio.Task[Any]) -> None:
        self._due.pop(task, None)
        self._fired.discard(task)

    def fired(self, task: asyncio.Task[Any]) -> bool:
        """Whether the watchdog cancelled `task` (then the cancellation is taken back)."""
        if task not in self._fired:
            return False
        self._fired.discard(task)
        task.uncancel()
        return True

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(self.period)
            now = time.monotonic()
            for task, due in list(self._due.items()):
                if due <= now:
                    del self._due[task]
                    self._fired.add(task)
                    task.cancel()
