"""Keeping the state's database open in a process between its sessions, while nobody waits.

Opening the state file starts a DuckDB database: 10-20 ms of CPU each time, more than most
sessions of a runtime take (a heartbeat, a claim, a batch's calls staged or written). A process
that opens the state many times a second (a runtime, a job run) asks for it warm: the first
session opens the database and takes the exclusive lock as any session does; the sessions after
it, from any thread and any `State` of this file in the process, join that database through a
connection of their own (a cursor: tens of microseconds), one after another. The database is
closed and the lock let go, so that the others get in as between any two sessions:
- when another process waits for the state (it announces itself: see store/lock.py), seen at
  the end of a session or by a watcher thread within WATCH_EVERY seconds when none runs;
- when no session came for IDLE_AFTER seconds (an idle runtime holds nothing between beats);
- after KEEP_SESSIONS sessions in a row, or fewer if a caller asks (the blocks they wrote stay
  in DuckDB's cache while it is open: a pure job's batch leaves about 5 MB);
- after a session that failed, and when nobody asks for it warm any more.

Readers of this process borrow the open database meanwhile (see store/sharing.py)."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cxrun.store import sharing
from cxrun.store.lock import StateLock

if TYPE_CHECKING:
    import duckdb

KEEP_SESSIONS = 32
WATCH_EVERY = 0.05  # seconds between two looks for a process that waits, between sessions
IDLE_AFTER = 0.25  # seconds without a session after which the database is closed

Opener = Callable[[], "duckdb.DuckDBPyConnection"]  # opens the file and migrates it if need be

_entries: dict[str, Warm] = {}
_entries_lock = threading.Lock()


class Warm:
    """The open database of one state file in this process, and who asked for it."""

    def __init__(self, path: str, lock: StateLock) -> None:
        self.path, self.lock = path, lock
        self.mutex = threading.RLock()  # one session at a time, as the exclusive lock would
        self.users: list[int] = []  # callers of `warm` for this file now: their session limits
        self.con: duckdb.DuckDBPyConnection | None = None
        self._open: ExitStack | None = None
        self._sessions = 0
        self._depth = 0
        self._last = time.monotonic()  # when the last session ended
        self._watcher: threading.Thread | None = None
        self._wake = threading.Event()

    @contextmanager
    def session(self, opener: Opener) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive session on a connection of its own to the open database."""
        with self.mutex:
            if self.con is None:
                self._warm_up(opener)
            assert self.con is not None
            cursor = self.con.cursor()
            self._depth += 1
            failed = True
            try:
                yield cursor
                failed = False
            finally:
                self._depth -= 1
                cursor.close()
                self._sessions += 1
                self._last = time.monotonic()
                if not self._depth and (failed or self._enough() or self.lock.wanted()):
                    self.let_go()

    def _enough(self) -> bool:
        return not self.users or self._sessions >= min(self.users)

    @contextmanager
    def closed(self) -> Iterator[None]:
        """The database closed meanwhile (a session that opens the file its own way)."""
        with self.mutex:
            self.let_go()
            yield

    def let_go(self) -> None:
        """Close the database and let the lock go (waiting for this process's borrowers)."""
        with self.mutex:
            found, self._open, self.con = self._open, None, None
            if found is not None:
                found.close()

    def _warm_up(self, opener: Opener) -> None:
        with ExitStack() as stack:
            stack.enter_context(self.lock.hold(exclusive=True))
            con = opener()
            stack.callback(con.close)
            stack.enter_context(sharing.writing(self.path))
            self._open, self.con = stack.pop_all(), con
            self._sessions = 0

    def start_watching(self) -> None:
        if self._watcher is None or not self._watcher.is_alive():
            self._wake.clear()
            self._watcher = threading.Thread(target=self._watch, name="state-warm", daemon=True)
            self._watcher.start()

    def stop_watching(self) -> None:
        self._wake.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(5)

    def _watch(self) -> None:
        """Between sessions, a process that waits for the state gets it within WATCH_EVERY."""
        while not self._wake.wait(WATCH_EVERY):
            if self.con is None or not self.mutex.acquire(blocking=False):
                continue
            try:
                idle = time.monotonic() - self._last > IDLE_AFTER
                if self.con is not None and not self._depth and (idle or self.lock.wanted()):
                    self.let_go()
            finally:
                self.mutex.release()


def active(path: str) -> Warm | None:
    """The warm entry of this file, when some caller of this process asks for it warm."""
    found = _entries.get(path)
    return found if found is not None and found.users else None


@contextmanager
def warm(path: str, lock_path: Path, timeout: float, sessions: int) -> Iterator[None]:
    """Keep the state file at `path` open between the sessions inside (any thread), for at
    most `sessions` sessions in a row."""
    with _entries_lock:
        entry = _entries.get(path)
        if entry is None:
            entry = _entries[path] = Warm(path, StateLock(lock_path, timeout))
        entry.users.append(sessions)
        if len(entry.users) == 1:
            entry.start_watching()
    try:
        yield
    finally:
        with _entries_lock:
            entry.users.remove(sessions)
            if not entry.users:
                entry.stop_watching()
        with entry.mutex:
            if not entry.users:
                entry.let_go()
