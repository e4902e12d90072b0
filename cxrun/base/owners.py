"""Who runs a job: owners (a process, by id, PID and host), their leases, and whether one is alive.

The rule: a job that is being worked on has exactly one live owner, set by a claim in the same
state transaction that makes the job runnable (see `store.claims.claim`). A job whose owner is gone
(a dead process on this host, or a lease that ran out elsewhere) may be claimed again.
"""

from __future__ import annotations

import os
import socket
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from cxrun.base.clock import to_db

LEASE = 30.0  # seconds a claim holds without a heartbeat (it matters for owners on other hosts)


def lease_until(now: datetime) -> datetime:
    """When a claim taken (or renewed) at `now` runs out."""
    return now + timedelta(seconds=LEASE)


@dataclass(frozen=True)
class Owner:
    """A process that runs jobs: `run-now` inline, a runtime, a command continuing records."""

    id: str
    pid: int
    host: str


def new_owner(kind: str) -> Owner:
    host = socket.gethostname()
    return Owner(f"{kind}:{host}:{os.getpid()}:{uuid.uuid4().hex[:8]}", os.getpid(), host)


def this_host() -> str:
    return socket.gethostname()


def alive(pid: int) -> bool:
    """Whether a process of this host is alive (a zombie, killed but not reaped, is not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    try:
        with open(f"/proc/{pid}/stat", "rb") as stat:
            return stat.read().rsplit(b")", 1)[-1].split()[0] != b"Z"
    except OSError:
        return True


Alive = Callable[[int], bool]


def gone(
    pid: int | None,
    host: str | None,
    lease: datetime | None,
    now: datetime,
    here: str,
    alive: Alive,
) -> bool:
    """Whether an owner is gone: a dead process on this host, or elsewhere a lease run out (a live
    process here keeps its job whatever its lease says). `lease` as the state holds it."""
    if host == here and pid is not None:
        return not alive(pid)
    return lease is None or lease < to_db(now)
