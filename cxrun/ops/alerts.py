"""Sending the alerts of job statuses: right after a command changed them, and on a thread of
its own beside a runtime (a slow alert endpoint never holds up the runtime's jobs)."""

from __future__ import annotations

import threading
from collections.abc import Callable

from cxrun.base.errors import StateBusy
from cxrun.runtime import alerts
from cxrun.runtime.alerts import Delivered
from cxrun.store.context import Context
from cxrun.store.db import State

EVERY = 5.0  # seconds between two looks for alerts to send, when nothing pokes the courier


def deliver(ctx: Context) -> list[Delivered]:
    """Send the alerts due now; a busy state leaves them to the next delivery."""
    try:
        return alerts.deliver(ctx)
    except StateBusy:
        return []


def describe(item: Delivered) -> str:
    """One line for a runtime's log."""
    alert = item.alert
    what = f"alert of job {alert.job} ({alert.status}) through {alert.channel}"
    if item.error is None:
        return f"{what}: sent"
    return f"{what}: failed after {item.attempts} attempt(s): {item.error}"


class Courier:
    """Delivers alerts on its own thread until stopped: when poked, and every EVERY seconds."""

    def __init__(self, ctx: Context, on_event: Callable[[str], None]) -> None:
        self._ctx = Context(ctx.project, State(ctx.project.state_dir))  # its own state handle
        self._on_event = on_event
        self._poked = threading.Event()
        self._stopping = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="alerts", daemon=True)
        self._thread.start()

    def poke(self) -> None:
        self._poked.set()

    def stop(self, wait: float = 15.0) -> None:
        """Stop after the delivery in progress (alerts it did not finish are sent again by the
        next sender, with the same Idempotency-Key)."""
        self._stopping.set()
        self._poked.set()
        self._thread.join(wait)

    def _loop(self) -> None:
        while True:  # once more after stop: what the last jobs left goes out
            self._poked.wait(EVERY)
            self._poked.clear()
            try:
                for item in deliver(self._ctx):
                    self._on_event(describe(item))
            except Exception as exc:
                self._on_event(f"alerts: {type(exc).__name__}: {exc}")
            if self._stopping.is_set():
                return
