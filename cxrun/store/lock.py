"""The lock file beside the state: shared to read, exclusive to write, taken in turns."""

from __future__ import annotations

import fcntl
import os
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cxrun.base.errors import CxrunError, StateBusy

# A process that waits announces itself by holding `want` shared; a writer that has just released
# the state gives such waiters a moment to get in before it takes the state again.
_YIELD_FOR = 0.25
_POLL = 0.005


def holders(fd: int, table: Path = Path("/proc/locks")) -> set[int]:
    """The PIDs holding a lock on the file open at `fd`, from the kernel's lock table (Linux)."""
    stat = os.fstat(fd)
    wanted = f"{os.major(stat.st_dev):02x}:{os.minor(stat.st_dev):02x}:{stat.st_ino}"
    try:
        lines = table.read_text().splitlines()
    except OSError:
        return set()
    found = set()
    for line in lines:
        fields = line.split()
        # "1: FLOCK  ADVISORY  WRITE 4242 fd:01:1234 0 EOF"; waiters have "->" after the number
        if len(fields) >= 6 and fields[1] != "->" and fields[5] == wanted and fields[4].isdigit():
            found.add(int(fields[4]))
    return found


def _open(path: Path) -> int:
    """The lock file at `path`, made if need be; a CxrunError when it cannot be."""
    try:
        return os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    except OSError as exc:
        shown = f"{path.parent.name}/{path.name}"
        if path.is_dir():
            raise CxrunError(
                f"{shown} is a folder, but cxrun needs a lock file there",
                f"move it aside (mv {shown} {shown}.old) and try again: cxrun makes the file",
            ) from None
        raise CxrunError(
            f"cannot open {shown}: {exc.strerror}",
            f"make {path.parent.name}/ and its files writable for your user, "
            "or run cxrun as the user who owns them",
        ) from None


class StateLock:
    """A reader/writer lock over `state.lock`, reentrant within a process, with a bounded wait."""

    def __init__(
        self,
        path: Path,
        timeout: float,
        clock: Callable[[], float] = time.monotonic,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.path = path
        self.want_path = path.with_suffix(".want")
        self.timeout = timeout
        self._clock = clock
        self._sleep = sleep
        self._fd: int | None = None
        self._exclusive = False
        self._depth = 0

    @contextmanager
    def hold(self, exclusive: bool) -> Iterator[None]:
        if self._depth:
            if exclusive and not self._exclusive:
                raise RuntimeError("cannot upgrade a shared state lock to exclusive")
            self._depth += 1
            try:
                yield
            finally:
                self._depth -= 1
            return
        self._acquire(exclusive)
        self._depth = 1
        try:
            yield
        finally:
            self._depth = 0
            self._release()

    def _acquire(self, exclusive: bool) -> None:
        fd = _open(self.path)
        try:
            want = _open(self.want_path)
        except BaseException:
            os.close(fd)
            raise
        deadline = self._clock() + self.timeout
        try:
            self._take(want, fcntl.LOCK_SH, deadline, fd)
            try:
                self._take(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH, deadline, fd)
            finally:
                fcntl.flock(want, fcntl.LOCK_UN)
        except BaseException:
            os.close(fd)
            raise
        finally:
            os.close(want)
        self._fd, self._exclusive = fd, exclusive

    def _take(self, fd: int, mode: int, deadline: float, lock_fd: int) -> None:
        while True:
            try:
                fcntl.flock(fd, mode | fcntl.LOCK_NB)
                return
            except BlockingIOError:
                if self._clock() >= deadline:
                    raise self._busy(lock_fd) from None
                self._sleep(_POLL)

    def _busy(self, fd: int) -> StateBusy:
        pids = sorted(holders(fd) - {os.getpid()}) or sorted(holders(fd))
        who = f" (held by PID {', '.join(map(str, pids))})" if pids else ""
        return StateBusy(
            f"state is busy{who}: waited {self.timeout:g}s for .cxrun/state.lock",
            "try again in a moment, or raise CXRUN_LOCK_TIMEOUT (seconds)",
        )

    def _release(self) -> None:
        fd, self._fd = self._fd, None
        if fd is None:
            return
        fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        if self._exclusive:
            self._let_waiters_in()

    def wanted(self) -> bool:
        """Whether another process waits for the state now (a waiter holds `want` shared)."""
        want = os.open(self.want_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(want, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        finally:
            os.close(want)  # closing it lets go of the lock just taken
        return False

    def _let_waiters_in(self) -> None:
        """After a write, give processes that wait for the state a short head start."""
        want = os.open(self.want_path, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            deadline = self._clock() + _YIELD_FOR
            while self._clock() < deadline:
                try:
                    fcntl.flock(want, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    fcntl.flock(want, fcntl.LOCK_UN)
                    return
                except BlockingIOError:
                    self._sleep(_POLL)
        finally:
            os.close(want)
