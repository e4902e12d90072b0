"""Sending one alert through a channel: retried as a send is (backoff with jitter, Retry-After)."""

from __future__ import annotations

import asyncio
import random
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from cxrun.base.secrets import excerpt
from cxrun.io.base import CallError, Message
from cxrun.io.calls import Sleep, Target

ATTEMPT_TIMEOUT = 10.0  # seconds one try of an alert may take
ERROR_EXCERPT = 400


@dataclass(frozen=True)
class Sent:
    """How sending an alert ended: the tries it took, and the last error (None: it went out)."""

    attempts: int
    error: str | None


async def send_alert(
    http: httpx.AsyncClient,
    target: Target,
    message: Message,
    retry: tuple[int, float, float],
    redact: Callable[[str], str] = lambda text: text,
    sleep: Sleep = asyncio.sleep,
    rand: Callable[[], float] = random.random,
) -> Sent:
    """Try the alert up to `attempts` times (`retry`: attempts, backoff, max_backoff); an error
    that is not worth retrying (a 4xx other than 429) ends it at once."""
    attempts, first, most = retry
    attempt = 0
    while True:
        attempt += 1
        error, retryable, wait = await _try(http, target, message)
        if error is None:
            return Sent(attempt, None)
        if not retryable or attempt >= attempts:
            return Sent(attempt, excerpt(error, redact, ERROR_EXCERPT))
        backoff = min(most, first * 2 ** (attempt - 1)) * (0.5 + rand())
        await sleep(min(most, wait) if wait is not None else backoff)


async def _try(
    http: httpx.AsyncClient, target: Target, message: Message
) -> tuple[str | None, bool, float | None]:
    """One try: (error, worth retrying, seconds the receiver asked to wait)."""
    timeout = min(target.timeout or ATTEMPT_TIMEOUT, ATTEMPT_TIMEOUT)
    try:
        await asyncio.wait_for(target.plugin.send(http, message), timeout)
    except CallError as exc:
        return exc.message, exc.retryable, exc.retry_after
    except TimeoutError:
        return f"timed out after {timeout:g}s", True, None
    except httpx.TransportError as exc:
        return f"connection error: {type(exc).__name__}: {exc}", True, None
    return None, False, None
