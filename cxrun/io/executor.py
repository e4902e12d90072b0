"""Making a batch's I/O calls concurrently: limits, rate, retries, timeouts, pauses, spooling."""

from __future__ import annotations

import asyncio
import random
import time
from collections import deque
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any, Protocol

import httpx

from cxrun.base.clock import to_db, utcnow
from cxrun.base.secrets import EXCERPT, excerpt, scrub_json
from cxrun.io import pacing
from cxrun.io.base import CallError, Pause
from cxrun.io.calls import Call, Outcome, Sleep, Target, ask, cost, paid, request, send
from cxrun.io.stops import JobFailed as JobFailed  # the stops, named here too
from cxrun.io.stops import JobHalted as JobHalted
from cxrun.io.stops import JobPaused as JobPaused
from cxrun.io.stops import JobTimedOut as JobTimedOut
from cxrun.io.watchdog import Watchdog
from cxrun.spec.model import AIStep, HttpStep, IOStep, SendStep

DEFAULT_TIMEOUT = 60.0
MAX_RATE_LIMIT_WAITS = 20
ERROR_EXCERPT = 400  # characters kept of an error (its first line, and the start of a body)


# Where a finished call goes: spooled at once, or (a cluster's worker) an awaitable that is
# done once the runtime has it, which the call's slot waits for.
Keep = Callable[[dict[str, Any]], Awaitable[None] | None]


class CallMaker(Protocol):
    """What runs a job's calls: this module's Executor, or a cluster's (io/cluster.py)."""

    async def run(self, calls: Sequence[Call], keep: Keep) -> None: ...

    def halt(self) -> None: ...

    async def close(self) -> None: ...


async def _nothing() -> None:
    return None


class _Work:
    """The calls of one `run`: taken one at a time by the workers, and counted down as they
    finish them."""

    def __init__(self, calls: Sequence[Call], keep: Keep) -> None:
        self.pending: Iterator[Call] = iter(calls)
        self.left = len(calls)
        self.keep = keep
        self.done: asyncio.Future[None] = asyncio.get_running_loop().create_future()

    def cancel(self) -> None:
        if not self.done.done():
            self.done.cancel()

    def finish(self, error: BaseException | None = None) -> None:
        self.left -= 1
        if self.done.done():
            return
        if error is not None:
            self.done.set_exception(error)
        elif self.left == 0:
            self.done.set_result(None)


@dataclass
class Executor:
    job: int
    targets: Mapping[str, Target]
    http: httpx.AsyncClient
    concurrency: int = 8
    redact: Callable[[str], str] = lambda text: text
    on_rate_limit: Callable[[datetime], Awaitable[object]] = lambda until: _nothing()
    on_resume: Callable[[], Awaitable[object]] = lambda: _nothing()
    record_timeout: float | None = None
    time_left: float | None = None  # seconds until the job's deadline: then nothing new starts
    clock: Callable[[], float] = time.monotonic
    wall: Callable[[], datetime] = utcnow
    sleep: Sleep = asyncio.sleep
    rand: Callable[[], float] = random.random
    _paused: str | None = None
    _timed_out: bool = False
    _row_started: dict[int, float] = field(default_factory=dict)
    _limited_until: float | None = None
    _deadline: float | None = None
    _halted: bool = False
    _napping: set[asyncio.Task[Any]] = field(default_factory=set)  # woken by halt()
    _runs: deque[_Work] = field(default_factory=deque)  # calls not yet taken, run by run
    _idle: list[asyncio.Future[None]] = field(default_factory=list)  # workers with none to take
    _workers: list[asyncio.Task[None]] = field(default_factory=list)
    _watchdog: Watchdog = field(default_factory=lambda: Watchdog())
    _scrubbed: tuple[str, str] = ("", "")  # the last text scrubbed, and what it became

    def __post_init__(self) -> None:
        if self.time_left is not None:
            self._deadline = self.clock() + self.time_left

    async def run(self, calls: Sequence[Call], keep: Keep) -> None:
        """Make every call, each result handed to `keep` the moment it is done.

        `concurrency` workers serve every `run` of this executor, so two batches share the
        slots and a slow call never idles the others. Raises JobPaused or JobTimedOut once the
        calls in flight have finished.
        """
        if not calls:
            return
        self._start_workers()
        work = _Work(calls, keep)
        self._runs.append(work)
        idle, self._idle = self._idle, []
        for waiter in idle:
            if not waiter.done():
                waiter.set_result(None)
        await work.done
        if self._paused:
            raise JobPaused(self._paused)
        if self._halted:
            raise JobHalted()
        if self._timed_out:
            raise JobTimedOut()

    def _start_workers(self) -> None:
        if self._workers:
            return
        loop = asyncio.get_running_loop()
        self._workers = [loop.create_task(self._worker()) for _ in range(self.concurrency)]
        self._workers.append(loop.create_task(self._watchdog.watch()))
        pacing.start()

    async def close(self) -> None:
        if not self._workers:
            return
        for task in self._workers:
            task.cancel()
        await asyncio.gather(*self._workers, return_exceptions=True)
        self._workers = []
        pacing.stop()

    async def _next(self) -> tuple[Call, _Work]:
        """The next call to make, in the order the runs came (a batch's, then the next's)."""
        while True:
            while self._runs:
                work = self._runs[0]
                call = next(work.pending, None)
                if call is not None:
                    return call, work
                self._runs.popleft()
            waiter = asyncio.get_running_loop().create_future()
            self._idle.append(waiter)
            await waiter

    async def _worker(self) -> None:
        while True:
            call, work = await self._next()
            try:
                if not (self._paused or self._halted or self._expired()):
                    result = await self._call(call)
                    if not result["paused"]:  # a paused call is made again on resume
                        kept = work.keep(result)
                        if kept is not None:  # kept elsewhere: the slot waits till it is
                            await kept
            except asyncio.CancelledError:
                work.cancel()
                raise
            except Exception as exc:  # a bug: handed to the run that waits for it
                work.finish(exc)
            else:
                work.finish()

    def halt(self) -> None:
        """Start no new call; the calls in flight finish (and are spooled); a call waiting
        (a 429's Retry-After, a backoff, a rate) gives up its wait and is made again later."""
        self._halted = True
        for task in self._napping:
            task.cancel()

    async def _nap(self, seconds: float) -> None:
        """`sleep`, cut short when the job is halted (a cancel acts within a second, even
        while a 429's Retry-After runs)."""
        task = asyncio.current_task()
        if self._halted or task is None:
            return
        self._napping.add(task)
        try:
            await self.sleep(seconds)
        except asyncio.CancelledError:
            if not self._halted:
                raise
            task.uncancel()  # woken by halt(): the caller sees the job halted
        finally:
            self._napping.discard(task)

    def _expired(self) -> bool:
        if self._deadline is not None and self.clock() >= self._deadline:
            self._timed_out = True
        return self._timed_out

    async def _call(self, call: Call) -> dict[str, Any]:
        attempts: list[dict[str, Any]] = []
        tries = waits = 0
        outcome = Outcome()
        error: CallError | None = None
        self._row_started.setdefault(call.row, self.clock())
        while True:
            tries += 1
            number = len(attempts) + 1
            tried = None if attempts and self._halted else await self._attempt(call, number)
            if tried is None:  # halted while it waited to try (again): made when it goes on
                return {"row": call.row, "pos": call.pos, "paused": True}
            error, outcome, attempt = tried
            attempts.append(attempt)
            if error is None:
                await self._rate_limit_over()
                break
            if error.pause in (Pause.CREDENTIALS, Pause.CREDITS):
                self._paused = f"{error.pause}: {self._kept(error.message, ERROR_EXCERPT)}"
                break
            if error.pause == Pause.RATE_LIMITED and waits < MAX_RATE_LIMIT_WAITS:
                waits += 1
                tries -= 1  # waiting out a rate limit does not use up an attempt
                await self._wait_out(call, error)
                continue
            if not error.retryable or tries >= call.step.retry.attempts:
                break
            await self._nap(self._backoff(call.step, tries))
        return self._result(call, outcome, error, attempts)

    async def _wait_out(self, call: Call, error: CallError) -> None:
        """Wait as long as the remote asked; the job says it is paused until then."""
        delay = error.retry_after if error.retry_after is not None else call.step.retry.backoff
        until = self.clock() + delay
        target = self.targets.get(call.step.target)
        if self._limited_until is None or until > self._limited_until + 1:
            self._limited_until = until
            await self.on_rate_limit(self.wall() + timedelta(seconds=delay))
        if target is not None and target.limit is not None:
            target.limit.hold(until)  # this call and every other one to it wait in `slot`
        else:
            await self._nap(delay)

    async def _rate_limit_over(self) -> None:
        if self._limited_until is not None and self.clock() >= self._limited_until:
            self._limited_until = None
            await self.on_resume()

    def _backoff(self, step: IOStep, tries: int) -> float:
        base = min(step.retry.max_backoff, step.retry.backoff * float(2 ** (tries - 1)))
        return float(base * (0.5 + self.rand()))

    async def _attempt(
        self, call: Call, number: int
    ) -> tuple[CallError | None, Outcome, dict[str, Any]] | None:
        """One try (None: halted before it started), within the target's limits shared with
        the other jobs of this process: a call in flight of its `concurrency`, then a start
        under its `rate`."""
        target = self.targets.get(call.step.target)
        limit = target.limit if target is not None else None
        if limit is None:
            return await self._try(call, number, target)
        await limit.enter()
        try:
            await limit.slot(self.clock, self._nap)
            if self._halted:  # halted while it waited for its turn: not made
                return None
            return await self._try(call, number, target)
        finally:
            limit.leave()

    async def _try(
        self, call: Call, number: int, target: Target | None
    ) -> tuple[CallError | None, Outcome, dict[str, Any]]:
        started, tick = self.wall(), self.clock()
        outcome, error = Outcome(), None
        budget = self._budget(call, target)
        if budget <= 0:
            error = CallError(f"record_timeout of {self.record_timeout:g}s reached")
        else:
            task = self._watchdog.arm(budget)
            try:
                outcome = await self._invoke(call, target)
            except asyncio.CancelledError:
                if not self._watchdog.fired(task):
                    raise
                error = CallError(f"timed out after {budget:g}s", retryable=True)
            except CallError as exc:
                error = exc
                outcome = paid(exc)
            except (httpx.InvalidURL, httpx.UnsupportedProtocol, httpx.LocalProtocolError) as exc:
                # A URL or header (from a row, say) that cannot go on the wire: the same each try.
                error = CallError(f"the request cannot be sent: {exc}")
            except (httpx.ReadTimeout, httpx.WriteTimeout, httpx.PoolTimeout):
                error = CallError(f"timed out after {budget:g}s", retryable=True)
            except httpx.TransportError as exc:  # connect errors and timeouts included
                error = CallError(f"connection error: {type(exc).__name__}: {exc}", retryable=True)
            finally:
                self._watchdog.disarm(task)
        ended = self.wall()
        attempt = {
            "attempt": number,
            "status": "failed" if error else "completed",
            "message": self._kept(outcome.message) if outcome.message else None,
            "output": scrub_json(outcome.output, self._scrub),
            "error": self._kept(error.message, ERROR_EXCERPT) if error else None,
            "started_at": _stamp(started),
            "ended_at": _stamp(ended),
            "duration_ms": round((self.clock() - tick) * 1000, 3),
            "prompt_tokens": outcome.prompt_tokens,
            "completion_tokens": outcome.completion_tokens,
        }
        return error, outcome, attempt

    def _kept(self, text: str, limit: int = EXCERPT) -> str:
        """What is stored of a message or error: scrubbed whole, then collapsed and cut."""
        return excerpt(text, self._scrub, limit)

    def _scrub(self, text: str) -> str:
        """`redact`, once for an answer kept as its value, message and output (one text)."""
        if text is not self._scrubbed[0]:
            self._scrubbed = (text, self.redact(text))
        return self._scrubbed[1]

    def _budget(self, call: Call, target: Target | None) -> float:
        """Seconds this attempt may take: the step's timeout within the record's (0: none left)."""
        chosen = call.step.timeout or (target.timeout if target else None) or DEFAULT_TIMEOUT
        budget = float(chosen)
        if self.record_timeout is not None:
            left = self.record_timeout - (self.clock() - self._row_started[call.row])
            budget = max(0.0, min(budget, float(left)))
        return budget

    async def _invoke(self, call: Call, target: Target | None) -> Outcome:
        step = call.step
        if isinstance(step, AIStep):
            assert target is not None
            return await ask(self.http, target, step, call.inputs)
        if isinstance(step, SendStep):
            assert target is not None
            return await send(self.http, target, step, call, self.job)
        assert isinstance(step, HttpStep)
        return await request(self.http, step, call.inputs)

    def _result(
        self, call: Call, outcome: Outcome, error: CallError | None, attempts: list[dict[str, Any]]
    ) -> dict[str, Any]:
        target = self.targets.get(call.step.target)
        prompt = sum(a["prompt_tokens"] for a in attempts)
        completion = sum(a["completion_tokens"] for a in attempts)
        return {
            "row": call.row,
            "pos": call.pos,
            "ok": error is None,
            "value": self._scrub(outcome.value) if outcome.value is not None else None,
            "message": attempts[-1]["message"],
            "error": attempts[-1]["error"],
            "attempts": attempts,
            "prompt_tokens": prompt,
            "completion_tokens": completion,
            "cost": cost(target, call.step, prompt, completion),
            "paused": error is not None and error.pause in (Pause.CREDENTIALS, Pause.CREDITS),
        }


def _stamp(moment: datetime) -> str:
    if moment.tzinfo is UTC:  # the clock's own: the text without its "+00:00"
        return str(moment)[:-6]
    return to_db(moment).isoformat(sep=" ")
