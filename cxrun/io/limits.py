"""A provider's limits, shared by every job that calls it from this process: its `rate` (a
smooth token bucket), its `concurrency` (calls in flight), and the pause a 429 asks for.

Jobs run on threads of their own, each with its own event loop (a runtime's `--max-jobs`, the
runtime of `cxrun serve`), so the state is kept under a thread lock and a call waiting for a
free slot is woken in its own loop."""

from __future__ import annotations

import asyncio
import threading
from collections import deque
from collections.abc import Callable, Hashable
from typing import Any

from cxrun.io.calls import Sleep

_Waiter = tuple[asyncio.AbstractEventLoop, "asyncio.Future[None]"]


class SharedLimit:
    """Limits on a provider that hold across jobs: at most `rate` calls a second together, at
    most `concurrency` at once, and none while a 429's Retry-After runs."""

    def __init__(self, rate: float | None = None, concurrency: int | None = None) -> None:
        self.rate = rate
        self.concurrency = concurrency
        self._lock = threading.Lock()
        self._next = 0.0  # when the next call may start, by the rate
        self._held_until = 0.0  # a 429 asked every caller to wait until then
        self._in_flight = 0
        self._waiters: deque[_Waiter] = deque()

    async def slot(self, clock: Callable[[], float], sleep: Sleep) -> None:
        """Wait out any hold a 429 put on the provider, then for the next start under the rate
        (a hold put meanwhile is for the calls after this one)."""
        with self._lock:
            held = self._held_until - clock()
        if held > 0:
            await sleep(held)
        with self._lock:
            now = clock()
            start = max(now, self._next)
            if self.rate:
                self._next = start + 1.0 / self.rate
        if start > now:
            await sleep(start - now)

    def hold(self, until: float) -> None:
        """A 429: no caller starts a call before `until` (on the callers' clock)."""
        with self._lock:
            self._held_until = max(self._held_until, until)

    async def enter(self) -> None:
        """Take one of the `concurrency` calls in flight (waiting for one to end if need be)."""
        if not self.concurrency:
            return
        loop = asyncio.get_running_loop()
        with self._lock:
            if self._in_flight < self.concurrency:
                self._in_flight += 1
                return
            future: asyncio.Future[None] = loop.create_future()
            self._waiters.append((loop, future))
        try:
            await future
        except asyncio.CancelledError:
            with self._lock:
                waiting = (loop, future) in self._waiters
                if waiting:
                    self._waiters.remove((loop, future))
            if not waiting and future.done() and not future.cancelled():
                self.leave()  # handed a slot just as it was cancelled: pass it on
            raise

    def leave(self) -> None:
        """A call ended: its slot goes to the first caller waiting (in that caller's loop)."""
        if not self.concurrency:
            return
        with self._lock:
            while self._waiters:
                loop, future = self._waiters.popleft()
                try:
                    loop.call_soon_threadsafe(self._hand, future)
                except RuntimeError:  # that caller's loop is closed: the next one
                    continue
                return
            self._in_flight -= 1

    def _hand(self, future: asyncio.Future[None]) -> None:
        if future.cancelled():
            self.leave()
        else:
            future.set_result(None)

    @property
    def in_flight(self) -> int:
        with self._lock:
            return self._in_flight


_shared: dict[Hashable, SharedLimit] = {}
_registry_lock = threading.Lock()


def shared_limit(key: Hashable, options: dict[str, Any]) -> SharedLimit:
    """The limit every job of this process shares for the provider or channel `key` (with these
    options: a changed rate or concurrency is a new limit). One without either still shares
    the hold a 429 puts on the provider."""
    from cxrun.base.durations import per_second

    rate = per_second(options["rate"]) if "rate" in options else None
    concurrency = int(options["concurrency"]) if "concurrency" in options else None
    with _registry_lock:
        return _shared.setdefault((key, rate, concurrency), SharedLimit(rate, concurrency))
