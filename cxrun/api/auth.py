"""Who may call: the bearer key of a request checked once, its scope in one place, and clients
that keep sending bad keys slowed down."""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING

from cxrun.api.errors import ApiError

if TYPE_CHECKING:
    from cxrun.ops import Context
    from cxrun.ops.keys import ApiKey

BAD_KEYS = 10  # bad keys a client may send in WINDOW seconds before it is slowed down
WINDOW = 60.0
_HINT = "send `Authorization: Bearer KEY` with a key from `cxrun keys create`"


class Throttle:
    """Bad keys by client: past BAD_KEYS in WINDOW seconds, its requests get 429 until the
    oldest of them is WINDOW seconds old (good keys too: a guesser learns nothing meanwhile)."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self._clock = clock
        self._bad: dict[str, deque[float]] = {}
        self._lock = threading.Lock()

    def check(self, client: str) -> None:
        with self._lock:
            wait = self._wait(client, self._now())
        if wait > 0:
            raise ApiError(
                429,
                "too many requests with a bad API key from this client",
                f"wait {math.ceil(wait)} s, then send a valid key",
                headers={"Retry-After": str(math.ceil(wait))},
            )

    def failed(self, client: str) -> None:
        with self._lock:
            self._bad.setdefault(client, deque()).append(self._now())

    def _wait(self, client: str, now: float) -> float:
        bad = self._bad.get(client)
        while bad and bad[0] <= now - WINDOW:
            bad.popleft()
        if not bad:
            self._bad.pop(client, None)
            return 0.0
        return bad[0] + WINDOW - now if len(bad) >= BAD_KEYS else 0.0

    def _now(self) -> float:
        return self._clock()


def bearer(header: str | None) -> str:
    """The key of an `Authorization: Bearer KEY` header; 401 without one."""
    if not header:
        raise ApiError(401, "no API key", _HINT)
    kind, _, key = header.partition(" ")
    if kind.lower() != "bearer" or not key.strip():
        raise ApiError(401, "the Authorization header is not `Bearer KEY`", _HINT)
    return key.strip()


def authorize(
    ctx: Context, header: str | None, client: str, scope: str, throttle: Throttle
) -> ApiKey:
    """The live key of a request, with `scope`: 401 without a valid key, 403 without the scope,
    429 for a client that sent too many bad keys."""
    from cxrun.ops import keys

    throttle.check(client)
    key = keys.authenticate(ctx, bearer(header))
    if key is None:
        throttle.failed(client)
        raise ApiError(401, "the API key is not valid (unknown, wrong or revoked)", _HINT)
    if scope not in key.scopes:
        shown = ", ".join(sorted(key.scopes))
        raise ApiError(
            403, f"key '{key.name}' has no '{scope}' scope (it has {shown})", _scope_hint(scope)
        )
    return key


def _scope_hint(scope: str) -> str:
    return f"use a key made with `cxrun keys create NAME --scope {scope}`"
