"""`cxrun serve` and the runtime beside it: a runtime stopped by an error stops the server too, so
that the jobs it claimed are not left running under a live process that no longer runs them."""

from __future__ import annotations

import os
import signal
import threading
from contextlib import ExitStack
from pathlib import Path

import pytest

from cxrun.api import server
from cxrun.base.errors import StateBusy
from cxrun.ops import open_context, publishing
from cxrun.store.lock import StateLock


def test_a_runtime_stopped_by_a_busy_state_stops_the_server(
    project: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    publishing.publish(open_context(str(project)), None)
    monkeypatch.setenv("CXRUN_LOCK_TIMEOUT", "0.5")
    events: list[str] = []
    held = ExitStack()

    def on_event(text: str) -> None:
        events.append(text)
        if text.startswith("serving "):  # the state stays busy from now on
            held.enter_context(StateLock(project / ".cxrun" / "state.lock", 10).hold(True))

    # Without the fix the server would serve on; SIGTERM ends it then, and nothing is raised.
    guard = threading.Timer(30, os.kill, (os.getpid(), signal.SIGTERM))
    guard.start()
    try:
        with held, pytest.raises(StateBusy):
            server.serve(str(project), server.Options(port=0), on_event)
    finally:
        guard.cancel()
    assert "runtime stopped by an error: the server stops too" in events
