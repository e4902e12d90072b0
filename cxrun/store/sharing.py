"""Reading the state from another thread of the process that is writing it.

A process that holds the state file open read-write (under the exclusive lock) has the only
DuckDB database of that file; any connection this process opens to the same file, with the same
configuration, joins that database instead of opening the file again. So a thread that wants to
read while another thread of the process writes (the API of `cxrun serve` beside its runtime)
need not wait for the lock: it borrows the open database and reads the last committed state, in
a snapshot of its own. The writer waits for its borrowers before it closes its connection and
lets the lock go, so the file is never open here once another process may take it.
"""

from __future__ import annotations

import threading
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager

_changed = threading.Condition()
_writers: Counter[str] = Counter()  # by path: connections of this process writing the file
_borrowers: Counter[str] = Counter()  # by path: readers using their database meanwhile


@contextmanager
def writing(path: str) -> Iterator[None]:
    """Around a read-write connection to `path` (opened with the sandboxed configuration):
    others may borrow its database meanwhile; at the end, wait until they are done."""
    with _changed:
        _writers[path] += 1
    try:
        yield
    finally:
        with _changed:
            _writers[path] -= 1
            while _borrowers[path] and not _writers[path]:
                _changed.wait()


def borrow(path: str) -> bool:
    """Whether a connection of this process writes `path` now; if so, a borrower is counted
    until `give_back`."""
    with _changed:
        if not _writers[path]:
            return False
        _borrowers[path] += 1
        return True


def give_back(path: str) -> None:
    with _changed:
        _borrowers[path] -= 1
        _changed.notify_all()


@contextmanager
def paused(path: str) -> Iterator[None]:
    """A writer's connection closed for a moment (to open the file with another configuration):
    no new borrowers, and the current ones are waited for."""
    with _changed:
        _writers[path] -= 1
        while _borrowers[path] and not _writers[path]:
            _changed.wait()
    try:
        yield
    finally:
        with _changed:
            _writers[path] += 1
