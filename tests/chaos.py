"""A seeded chaos driver: real `cxrun` processes side by side, checking the exactly-once promise.

One sequence, in a temporary project folder:

1. a local server on 127.0.0.1 (threads of this process) is an OpenAI-compatible chat endpoint
   (`POST /v1/chat/completions`) and a webhook receiver (`POST /hook`). It answers after 20-50 ms,
   so that calls are in flight when processes die, and records every request: the client's port
   (which process made it), when it came and when it was answered. Each AI answer carries its
   call number (`chaos-call-N`), which the journey keeps, so every paid call can be matched to
   the record that used it. Sends are told apart by their Idempotency-Key (cxrun derives it from
   job, record and step). The first request of a key whose record id is 3 mod 7 gets 400 (the
   record fails, the job ends partial, `retry` has work); of one whose id is 5 mod 11, 500
   (cxrun tries again at once);
2. the project: cxrun.yaml with the provider (`secret:CHAOS_KEY`, set in the children's
   environment) and the webhook channel; a table of `rows` contacts; spinners `main` (log, ai,
   send, an approval on every ninth row past 20, set), `pinged` (started by the event
   `chaos.ping` over `id <= $n`) and `ticker` (every minute, over ten rows); published;
3. a seeded random sequence of operations, each the installed `cxrun` executable in its own
   process with its own stdout and stderr: runtimes started and stopped (SIGTERM); `run-now`
   inline and `--detach`; `pause`, `resume`, `cancel`, `retry`, `approve --all`, `reject --all`
   of jobs picked from `cxrun jobs --json` (and from what the commands print); `trigger
   chaos.ping`; `schedule tick`; `kill -9` of any live cxrun process; Ctrl-C (SIGINT) of an
   inline run-now; short sleeps. Commands that answer at once (detach, pause, cancel) are waited
   for, as at a terminal; the others run in the background. Every exit code must be a
   documented one (or the signal's) and no stderr may show a traceback or an internal error;
4. settling: SIGTERM to the runtimes and every process ends (killed after a while, which fails
   the sequence); with no cxrun process left, no job may be `running` unless its owner was
   killed; then `resume`, `approve --all` and `runtime --once` until every job is finished;
5. the checks, on `cxrun jobs --json` while processes run and, at the end, on the state file
   opened read-only and on what the server saw:
   - `processed <= total`; a finished job's counts add up to its total, an unfinished one's to
     `processed`; the records by status are the job's counts; no record twice; at most one
     completed journey entry per record and step; a finished job has a record for every row;
     `cancel` and `pause` that exit 0 have taken effect; Ctrl-C leaves no job running;
   - no Idempotency-Key got a second 2xx answer unless a process was interrupted (kill -9,
     Ctrl-C) with a request of that key on one of its connections around that moment; every
     send the journey calls completed reached the server;
   - every AI call is used by exactly one record's journey, except the calls of a process around
     the moment it was interrupted (at most its concurrency per interruption) and the calls of
     records that a cancel dropped.

`Driver().run(seed)` plays one sequence and returns its Outcome; `outcome.report()` names the
seed, the operations with their exit codes and every failed invariant with the offending rows.
Replay a seed with `CHAOS_SEED=N .venv/bin/pytest tests/test_chaos.py` or
`.venv/bin/python bench/chaos.py --seed N --sequences 1`: the same seed draws the same
operations and sleeps; which job or process each one meets depends on the processes' timing.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import duckdb
import psutil
from servers import OpenAI

from cxrun.store import steps as steps_store

EXECUTABLE = Path(sys.executable).parent / "cxrun"
API_KEY = "chaos-key"
CONCURRENCY = 8
DOCUMENTED = frozenset(range(7))  # the README's exit codes, 0 to 6
FINISHED = frozenset({"completed", "partial", "failed", "cancelled", "timed_out"})
COUNTS = ("completed", "failed", "skipped", "waiting", "cancelled")
# Commands that run jobs (and so may have calls in flight when they die).
RUNNERS = frozenset(
    {"runtime", "run-now", "resume", "retry", "approve", "reject", "trigger", "tick"}
)
# Around an interruption, the requests on the process's connections that it may have lost:
# answered up to BEFORE_S earlier (not kept yet), or read by the server up to AFTER_S later.
BEFORE_S = 3.0
AFTER_S = 2.0
MAX_LIVE = 5  # live cxrun processes of a sequence at most
STOP_S = 60.0  # how long the processes may take to end once the operations are over
SETTLE_S = 180.0  # how long settling may take
COMMAND_S = 120.0  # how long a waited-for command may take


@dataclass(frozen=True)
class Settings:
    """The size of a sequence."""

    operations: int = 10
    rows: int = 60
    latency: tuple[float, float] = (0.02, 0.05)  # the server's answers, seconds
    pause: tuple[float, float] = (0.1, 0.6)  # the sleep after each operation, seconds


# ---- the server -----------------------------------------------------------------------------


@dataclass
class Call:
    """One request the server received: an AI call or a send."""

    number: int
    kind: str  # "ai" or "send"
    key: str  # ai: "<spinner>:<record>"; send: the Idempotency-Key
    spinner: str  # ai: the model, named after the spinner
    record: str
    job: int | None  # sends: the job in the payload
    port: int  # the client's port: which process made it
    start: float = 0.0  # time.monotonic()
    end: float = 0.0  # 0.0 while in flight
    status: int = 200

    @property
    def delivered(self) -> bool:
        return self.kind == "send" and 200 <= self.status < 300


class _Quiet(ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client killed in the middle of a request: nothing to report


class Server:
    """The chat-completions endpoint and the webhook receiver; `calls` lists every request
    since the last `reset`."""

    def __init__(self, latency: tuple[float, float] = (0.02, 0.05)) -> None:
        self.latency = latency
        self.calls: list[Call] = []
        self._seen: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._http = _Quiet(("127.0.0.1", 0), _Handler)
        self._http.chaos = self  # type: ignore[attr-defined]
        self._thread = threading.Thread(target=self._http.serve_forever, args=(0.05,), daemon=True)

    @property
    def port(self) -> int:
        return int(self._http.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def reset(self) -> None:
        with self._lock:
            self.calls = []
            self._seen.clear()

    def __enter__(self) -> Server:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._http.shutdown()
        self._http.server_close()
        self._thread.join(timeout=5)

    def serve(self, path: str, key: str, body: bytes, port: int) -> tuple[Call, int, bytes]:
        """Record the request, wait the latency, and say what to answer."""
        start = time.monotonic()
        data = json.loads(body or b"{}")
        if path.endswith("/chat/completions"):
            prompt = str(data["messages"][-1]["content"])
            call = self._record("ai", "", str(data.get("model")), prompt.split()[-1], None, port)
        else:
            job, record = int(data.get("job") or 0), str(data.get("record"))
            call = self._record("send", key, "", record, job, port)
        call.start = start
        low, high = self.latency
        time.sleep(low + (call.number * 7919 % 101) / 100 * (high - low))
        if call.kind == "ai":
            text = f"chaos-call-{call.number} for {call.record}"
            return call, 200, OpenAI.answer(text, 9, 4).encoded()[0]
        if call.status != 200:
            return call, call.status, json.dumps({"error": f"chaos: {call.status}"}).encode()
        return call, 200, json.dumps({"id": f"hook-{call.number}"}).encode()

    def _record(
        self, kind: str, key: str, spinner: str, record: str, job: int | None, port: int
    ) -> Call:
        with self._lock:
            key = key or f"{spinner}:{record}"
            self._seen[key] += 1
            call = Call(len(self.calls) + 1, kind, key, spinner, record, job, port)
            call.status = _status(call, self._seen[key])
            self.calls.append(call)
            return call


def _status(call: Call, nth: int) -> int:
    """400 or 500 for the first request of some sends (by record id), else 200."""
    if call.kind == "ai" or nth > 1 or not call.record.isdigit():
        return 200
    number = int(call.record)
    return 400 if number % 7 == 3 else 500 if number % 11 == 5 else 200


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def do_POST(self) -> None:
        server: Server = self.server.chaos  # type: ignore[attr-defined]
        length = int(self.headers.get("content-length") or 0)
        body = self.rfile.read(length) if length else b""
        key = self.headers.get("idempotency-key") or ""
        call, status, data = server.serve(self.path, key, body, self.client_address[1])
        try:
            self.send_response(status)
            self.send_header("content-type", "application/json")
            self.send_header("content-length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)
            self.wfile.flush()
        except OSError:
            pass  # the client died: the server acted all the same
        finally:
            call.end = time.monotonic()

    def log_message(self, format: str, *args: Any) -> None:
        pass


# ---- the project ----------------------------------------------------------------------------

CONFIG = """\
name: chaos
providers:
  chaos: {{kind: openai, base_url: "{url}/v1", api_key: "secret:CHAOS_KEY"}}
channels:
  hook: {{kind: webhook, url: "{url}/hook"}}
"""

# Every prompt ends with the record's key, and the model is the spinner's name.
MAIN = """\
name: main
table: contacts
key: id
limits: {concurrency: CONCURRENCY}
steps:
  - id: hello
    log: "Hello {{ first_name }}"
  - id: draft
    ai: {provider: chaos, model: main, output: draft,
         prompt: "One line for {{ first_name }}, record {{ id }}"}
  - id: notify
    send: {channel: hook, to: "{{ email }}", text: "{{ draft }}"}
    retry: {attempts: 2, backoff: 50ms}
  - id: check
    when: "id % 9 = 0 AND id > 20"
    approval: {prompt: "Follow up with record {{ id }}?"}
  - id: done
    set: {finished: "true"}
"""

PINGED = """\
name: pinged
table: contacts
key: id
limits: {concurrency: CONCURRENCY}
triggers:
  - event: chaos.ping
    schema: {type: object, required: [n], properties: {n: {type: integer, minimum: 1}}}
    select: "id <= CAST($n AS INTEGER)"
steps:
  - id: draft
    ai: {provider: chaos, model: pinged, output: draft,
         prompt: "Ping {{ first_name }}, record {{ id }}"}
  - id: notify
    send: {channel: hook, to: "{{ email }}", text: "{{ draft }}"}
    retry: {attempts: 2, backoff: 50ms}
"""

TICKER = """\
name: ticker
table: contacts
key: id
limits: {concurrency: CONCURRENCY}
select: "id <= 10"
triggers:
  - schedule: "* * * * *"
steps:
  - id: draft
    ai: {provider: chaos, model: ticker, output: draft,
         prompt: "Tick {{ first_name }}, record {{ id }}"}
  - id: notify
    send: {channel: hook, to: "{{ email }}", text: "{{ draft }}"}
    retry: {attempts: 2, backoff: 50ms}
"""


def environment(now: str | None = None) -> dict[str, str]:
    """The children's environment: the API key, no proxy for 127.0.0.1, and the real clock
    unless `now` is given."""
    env = {k: v for k, v in os.environ.items() if k not in ("CXRUN_PROJECT", "CXRUN_NOW")}
    env.update({"CHAOS_KEY": API_KEY, "NO_PROXY": "127.0.0.1", "no_proxy": "127.0.0.1"})
    if now is not None:
        env["CXRUN_NOW"] = now
    return env


def make_project(root: Path, url: str, rows: int) -> None:
    """A published project in `root`, a folder that does not exist yet."""
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text(CONFIG.format(url=url))
    for name, text in (("main", MAIN), ("pinged", PINGED), ("ticker", TICKER)):
        spinner = text.replace("CONCURRENCY", str(CONCURRENCY))
        (root / "spinners" / f"{name}.yaml").write_text(spinner)
    lines = ["id,first_name,email"] + [f"{i},Name{i},p{i}@example.org" for i in range(1, rows + 1)]
    (root / "tables" / "contacts.csv").write_text("\n".join(lines) + "\n")
    done = subprocess.run(
        [str(EXECUTABLE), "publish"], cwd=root, env=environment(), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise RuntimeError(f"cxrun publish failed: {done.stderr.strip()}")


# ---- what a sequence did and found ----------------------------------------------------------


@dataclass
class Op:
    """One operation: a cxrun process, or a signal sent to one."""

    number: int
    name: str
    at: float  # seconds since the sequence began
    kind: str = ""  # the command ("run-now", "runtime", ...) or the signal ("kill -9", ...)
    process: subprocess.Popen[bytes] | None = None
    folder: Path | None = None  # its stdin, stdout and stderr
    jobs_at_once: int = 1
    signals: list[str] = field(default_factory=list)
    code: int | None = None
    said: str = ""

    def line(self) -> str:
        code = "" if self.process is None else f" -> {self.code}"
        said = f"  [{self.said}]" if self.said else ""
        return f"#{self.number:<3} {self.at:7.2f}s  {self.name}{code}{said}"

    def output(self, name: str = "err") -> str:
        assert self.folder is not None
        return (self.folder / name).read_text(errors="replace")


@dataclass
class Interruption:
    """A process stopped abruptly (kill -9, Ctrl-C): what it had in flight may be made again."""

    op: Op  # the operation that started the process
    signal: str
    at: float  # time.monotonic()
    ports: frozenset[int]  # its connections to the server, just before

    def covers(self, call: Call) -> bool:
        return (
            call.port in self.ports
            and call.start <= self.at + AFTER_S
            and (call.end == 0.0 or call.end >= self.at - BEFORE_S)
        )


@dataclass(frozen=True)
class Violation:
    invariant: str
    detail: str


@dataclass
class Outcome:
    """What one sequence did and found."""

    seed: int
    began: float  # time.monotonic() at the start
    ops: list[Op] = field(default_factory=list)
    interruptions: list[Interruption] = field(default_factory=list)
    violations: list[Violation] = field(default_factory=list)
    repaid: dict[int, int] = field(default_factory=dict)  # calls made again, per interruption
    twice_without_kill: int = 0  # Idempotency-Keys delivered twice that nothing explains
    twice_after_kill: int = 0  # ... that an interruption explains
    lost_records: int = 0  # rows of finished jobs with no record, not counted as cancelled
    inconsistent_jobs: set[int] = field(default_factory=set)
    jobs: int = 0
    calls: int = 0
    wall_s: float = 0.0

    @property
    def ok(self) -> bool:
        return not self.violations

    def fail(self, invariant: str, detail: str) -> None:
        self.violations.append(Violation(invariant, detail))

    def failed_invariants(self) -> list[str]:
        return sorted({v.invariant for v in self.violations})

    def report(self, shown: int = 12) -> str:
        """The seed, the operations with their exit codes, and every failed invariant."""
        lines = [
            f"seed {self.seed}: {'OK' if self.ok else 'FAILED'} ({self.wall_s:.1f}s)",
            f"  replay: CHAOS_SEED={self.seed} .venv/bin/pytest tests/test_chaos.py",
            "operations:",
        ]
        lines += ["  " + op.line() for op in self.ops]
        grouped: dict[str, list[str]] = defaultdict(list)
        for violation in self.violations:
            grouped[violation.invariant].append(violation.detail)
        for invariant, details in grouped.items():
            lines.append(f"FAILED {invariant} ({len(details)}):")
            lines += ["  " + detail for detail in details[:shown]]
            if len(details) > shown:
                lines.append(f"  ... and {len(details) - shown} more")
        return "\n".join(lines)


# ---- one sequence ---------------------------------------------------------------------------


class Sequence:
    """One seeded random sequence of operations in `root` (a published project), then settling
    and the checks."""

    def __init__(self, seed: int, root: Path, server: Server, settings: Settings) -> None:
        # The operations and the sleeps come from `rng` and replay exactly; the other choices
        # (which job, which process) come from `choose` and meet what the processes did so far.
        self.rng = random.Random(seed)
        self.choose = random.Random(seed + 1_000_003)
        self.root = root
        self.logs = root / "logs"
        self.logs.mkdir()
        self.server = server
        self.settings = settings
        self.began = time.monotonic()
        self.outcome = Outcome(seed, self.began)
        self.jobs: dict[int, dict[str, Any]] = {}  # as last seen
        self.observed_at = 0.0
        self.follow: list[Callable[[], None]] = []  # what an operator does next
        minute = datetime.now(UTC).replace(second=0, microsecond=0)
        self.clock = minute + timedelta(minutes=1)  # the ticks' own clock
        self.ticks = 0

    @property
    def live(self) -> list[Op]:
        return [op for op in self.outcome.ops if op.process is not None and op.code is None]

    def run(self) -> Outcome:
        try:
            self.play()
            self.stop_all()
            self.check_nobody_runs()
            self.settle()
            Audit(self).check()
        finally:
            for op in self.live:
                self.signal(op, signal.SIGKILL, "kill -9")
            self.outcome.wall_s = time.monotonic() - self.began
        return self.outcome

    # -- playing ---------------------------------------------------------------------------

    def play(self) -> None:
        actions = [
            (self.start_runtime, 2),
            (self.stop_runtime, 1),
            (self.run_now, 2),
            (self.detach, 2),
            (self.pause, 4),
            (self.resume, 4),
            (self.cancel, 1),
            (self.retry, 3),
            (self.approve, 1),
            (self.reject, 1),
            (self.trigger, 1),
            (self.tick, 1),
            (self.kill, 2),
            (self.interrupt, 2),
            (self.observe, 1),
        ]
        functions, weights = zip(*actions, strict=True)
        for number in range(self.settings.operations):
            self.reap()
            first = number == 0 and self.rng.random() < 0.7  # mostly a runtime from the start
            drawn = self.rng.choices(functions, weights)[0]
            if self.follow:
                self.follow.pop(0)()
            else:
                (self.start_runtime if first else drawn)()
            time.sleep(self.rng.uniform(*self.settings.pause))
        self.reap()

    def start_runtime(self) -> None:
        if len([op for op in self.live if op.kind == "runtime" and not op.signals]) >= 2:
            return self.run_now()
        jobs = self.choose.choice([1, 2, 2, 3])
        op = self.start("runtime", ["runtime"] + (["--max-jobs", str(jobs)] if jobs > 1 else []))
        if op is not None:
            op.jobs_at_once = jobs

    def stop_runtime(self) -> None:
        runtimes = [op for op in self.live if op.kind == "runtime" and not op.signals]
        if runtimes:
            victim = self.choose.choice(runtimes)
            self.new_op(f"SIGTERM #{victim.number} ({victim.name})", "SIGTERM")
            self.signal(victim, signal.SIGTERM, "SIGTERM")

    def run_now(self) -> None:
        args = ["run-now", self.choose.choice(["main", "main", "main", "ticker"])]
        if self.choose.random() < 0.3:
            args += ["--limit", str(self.choose.randint(10, self.settings.rows))]
        self.start("run-now", args)

    def detach(self) -> None:
        spinner = self.choose.choice(["main", "main", "ticker"])
        self.answer("detach", ["run-now", spinner, "--detach"])

    # Each control picks a job in a status it applies to, else does what would make one.

    def pause(self) -> None:
        job = self.pick({"running", "queued", "waiting"})
        if job is None:
            return self.detach()
        self.answer("pause", ["pause", str(job), "--json"])

    def resume(self, job: int | None = None) -> None:
        job = job or self.pick({"paused"})
        if job is None:
            return self.pause()
        self.start("resume", ["resume", str(job)])

    def cancel(self) -> None:
        job = self.pick({"running", "queued", "paused", "waiting"})
        if job is None:
            return self.pause()
        self.answer("cancel", ["cancel", str(job), "--json"])

    def retry(self) -> None:
        job = self.pick({"partial", "failed"})
        if job is None:
            return self.approve()
        self.start("retry", ["retry", str(job)])

    def approve(self, decision: str = "approve") -> None:
        job = self.pick({"waiting"})
        if job is None:
            return self.observe()
        self.start(decision, [decision, str(job), "--all"])

    def reject(self) -> None:
        self.approve("reject")

    def trigger(self) -> None:
        args = ["trigger", "chaos.ping", "--payload", "-"]
        if self.choose.random() < 0.3:
            args += ["--id", f"ping-{self.choose.randint(1, 3)}"]
        payload = json.dumps({"n": self.choose.randint(5, 30)})
        if self.choose.random() < 0.3:
            self.answer("trigger-detach", [*args, "--detach"], stdin=payload)
        else:
            self.start("trigger", args, stdin=payload)

    def tick(self) -> None:
        """`schedule tick` one minute further on a clock of its own, alone: beside processes on
        the real clock, the leases they renew would look run out to it (and its own to them).
        With other processes at work it ticks on the real clock instead."""
        if any(op.kind in RUNNERS for op in self.live):
            self.start("tick", ["schedule", "tick"])
            return
        self.ticks += 1
        now = (self.clock + timedelta(minutes=self.ticks)).strftime("%Y-%m-%dT%H:%M:%SZ")
        op = self.start("tick", ["schedule", "tick"], now=now)
        if op is None:
            return
        if self.choose.random() < 0.3:
            time.sleep(self.choose.uniform(0.1, 1.5))
            self.new_op(f"kill -9 #{op.number} ({op.name})", "kill -9")
            self.signal(op, signal.SIGKILL, "kill -9")
        self.wait(op)

    def kill(self) -> None:
        victims = [op for op in self.live if op.kind in RUNNERS] or self.live
        if victims:
            victim = self.choose.choice(victims)
            self.new_op(f"kill -9 #{victim.number} ({victim.name})", "kill -9")
            self.signal(victim, signal.SIGKILL, "kill -9")

    def interrupt(self, again: bool = True) -> None:
        """Ctrl-C of an inline run-now at work (else: start one, for the next operation); once
        it has stopped, its job must not be left running in its name."""
        running = [op for op in self.live if op.kind == "run-now" and "started over" in op.output()]
        if not running and again:
            self.run_now()
            self.follow.append(lambda: self.interrupt(again=False))
        if not running:
            return
        victim = self.choose.choice(running)
        assert victim.process is not None
        self.new_op(f"SIGINT #{victim.number} ({victim.name})", "SIGINT")
        self.signal(victim, signal.SIGINT, "SIGINT")
        try:
            victim.process.wait(timeout=COMMAND_S)
        except subprocess.TimeoutExpired:
            self.outcome.fail("Ctrl-C stops run-now", f"#{victim.number} runs on after Ctrl-C")
            return
        self.ended(victim)
        found = re.search(r"\bjob (\d+)", victim.output())
        if found:
            self.check_handed_back(victim, int(found.group(1)))

    def check_handed_back(self, victim: Op, job: int) -> None:
        """`cxrun job J --json`: not running in the name of the process stopped by Ctrl-C."""
        op = self.start("job", ["job", str(job), "--json"])
        if op is None:
            return
        self.wait(op)
        if op.code != 0:
            return
        detail = json.loads(op.output("out"))
        assert victim.process is not None
        if detail.get("status") == "running" and detail.get("owner_pid") == victim.process.pid:
            self.outcome.fail(
                "no job running without a live owner",
                f"job {job} is running in the name of #{victim.number} ({victim.name}), which "
                f"stopped on Ctrl-C with exit {victim.code}",
            )

    def observe(self) -> None:
        """`cxrun jobs --json` in the background (checked and learnt from when it ends)."""
        if not any(op.kind == "jobs" for op in self.live):
            self.start("jobs", ["jobs", "--json", "--limit", "1000"])

    # -- which job ---------------------------------------------------------------------------

    def pick(self, statuses: set[str]) -> int | None:
        """A job number: mostly one in these statuses (as last seen), sometimes any known job
        (to be refused); None when there is none."""
        if time.monotonic() - self.observed_at > 3.0:
            self.observe()  # for the next picks
        self.learn()
        fitting = sorted(n for n, j in self.jobs.items() if j["status"] in statuses)
        if fitting and self.choose.random() < 0.9:
            return self.choose.choice(fitting)
        if self.jobs and self.choose.random() < 0.3:
            return self.choose.choice(sorted(self.jobs))
        return None

    def learn(self) -> None:
        """Jobs the commands named (`job 4 queued`, `job 5: main v1 started ...`) that no
        `cxrun jobs` has shown yet."""
        for op in self.outcome.ops:
            if op.folder is None or op.kind not in RUNNERS | {"detach", "trigger-detach"}:
                continue
            for number in map(int, re.findall(r"\bjob (\d+)", op.output("out") + op.output())):
                self.jobs.setdefault(number, {"job": number, "status": "running"})

    def learn_from(self, op: Op) -> None:
        """What an ended command says of jobs: `jobs --json` all of them (checked), `pause`
        and `cancel` theirs (checked), a command that ran a job its end (by its exit code)."""
        if op.kind == "jobs" and op.code == 0:
            self.observed_at = time.monotonic()
            found = json.loads(op.output("out"))
            self.jobs = {job["job"]: job for job in found}
            for job in found:
                self.check_counts(job, f"#{op.number} jobs --json")
        elif op.kind in ("cancel", "pause") and op.code == 0:
            self.check_control(op, json.loads(op.output("out")))
        elif op.kind in ("run-now", "resume", "retry", "approve", "reject"):
            status = {0: "completed", 1: "failed", 3: "partial", 6: "waiting"}.get(op.code or 0)
            found = re.search(r"\bjob (\d+)", op.output())
            if found and status:
                number = int(found.group(1))
                self.jobs[number] = {**self.jobs.get(number, {"job": number}), "status": status}

    def check_control(self, op: Op, job: dict[str, Any]) -> None:
        """A cancel or a pause that exits 0 has taken effect (or the job had ended already)."""
        self.jobs[job["job"]] = job
        if job["status"] == "paused" and self.choose.random() < 0.5:
            self.follow.append(lambda: self.resume(job["job"]))
        wanted = FINISHED | ({"paused"} if op.kind == "pause" else set())
        if job["status"] not in wanted:
            self.outcome.fail(
                "cancel and pause take effect",
                f"#{op.number} {op.name} exited 0 with job {job['job']} {job['status']}"
                f" ({job['reason']})",
            )

    def check_counts(self, job: dict[str, Any], where: str) -> None:
        """processed <= total; the counts add up to total (finished) or processed (not yet)."""
        number, total, processed = job["job"], job["total"], job["processed"]
        counted = sum(job[name] for name in COUNTS)
        shown = f"job {number} ({job['spinner']}, {job['status']}) in {where}: total {total}, "
        shown += f"processed {processed}, " + ", ".join(f"{n} {job[n]}" for n in COUNTS)
        if processed > total:
            self.outcome.fail("processed <= total", shown)
            self.outcome.inconsistent_jobs.add(number)
        if counted != (total if job["status"] in FINISHED else processed):
            self.outcome.fail("counts add up", shown)
            self.outcome.inconsistent_jobs.add(number)
        if not status_fits(job):
            self.outcome.fail("status follows the counts", f"{shown}: {job['reason']}")
            self.outcome.inconsistent_jobs.add(number)

    # -- processes ---------------------------------------------------------------------------

    def start(
        self, kind: str, args: list[str], now: str | None = None, stdin: str | None = None
    ) -> Op | None:
        """A cxrun process in the background (None when too many stay alive)."""
        if not self.wait_for_room():
            return None
        shown = f"cxrun {' '.join(args)}" + (f"  (CXRUN_NOW={now})" if now else "")
        op = self.new_op(shown, kind)
        op.folder = self.logs / f"{op.number:03d}"
        op.folder.mkdir()
        (op.folder / "stdin").write_text(stdin or "")
        with (
            (op.folder / "stdin").open("rb") as source,
            (op.folder / "out").open("wb") as out,
            (op.folder / "err").open("wb") as err,
        ):
            op.process = subprocess.Popen(
                [str(EXECUTABLE), *args],
                cwd=self.root,
                env=environment(now),
                stdin=source,
                stdout=out,
                stderr=err,
            )
        return op

    def answer(self, kind: str, args: list[str], stdin: str | None = None) -> None:
        """A command that answers at once, waited for as at a terminal."""
        op = self.start(kind, args, stdin=stdin)
        if op is not None:
            self.wait(op)

    def new_op(self, name: str, kind: str) -> Op:
        op = Op(len(self.outcome.ops) + 1, name, time.monotonic() - self.began, kind)
        self.outcome.ops.append(op)
        return op

    def wait_for_room(self, wait: float = 20.0) -> bool:
        deadline = time.monotonic() + wait
        while len(self.live) >= MAX_LIVE:
            if time.monotonic() > deadline:
                return False
            time.sleep(0.05)
            self.reap()
        return True

    def wait(self, op: Op) -> None:
        """Until the process ends (killed after COMMAND_S, which fails the sequence)."""
        assert op.process is not None
        if op.code is not None:
            return
        try:
            op.process.wait(timeout=COMMAND_S)
            self.ended(op)
        except subprocess.TimeoutExpired:
            self.outcome.fail("commands end", f"#{op.number} {op.name} runs on after {COMMAND_S}s")
            self.signal(op, signal.SIGKILL, "kill -9")

    def reap(self) -> None:
        for op in self.live:
            assert op.process is not None
            if op.process.poll() is not None:
                self.ended(op)

    def ended(self, op: Op) -> None:
        """Its exit code and what it said on stderr, both checked; what it says of jobs."""
        assert op.process is not None
        op.code = op.process.wait()
        said = op.output()
        lines = [line.strip() for line in said.splitlines() if line.strip()]
        op.said = " | ".join(lines[-2:])[:160]
        allowed = set(DOCUMENTED)
        allowed |= {130, -2} if "SIGINT" in op.signals else set()
        allowed |= {143, -15} if "SIGTERM" in op.signals else set()
        allowed |= {-9} if "kill -9" in op.signals else set()
        if op.code not in allowed:
            self.outcome.fail("exit code", f"#{op.number} {op.name}: exit {op.code}: {op.said}")
        if "Traceback" in said or "internal error" in said:
            excerpt = " | ".join(lines[-3:])[:300]
            self.outcome.fail("no traceback", f"#{op.number} {op.name}: {excerpt}")
        self.learn_from(op)

    def signal(self, op: Op, number: signal.Signals, name: str) -> None:
        """A signal to a live process; kill -9 and Ctrl-C are interruptions."""
        assert op.process is not None
        if op.process.poll() is not None:
            return
        interrupting = name in ("kill -9", "SIGINT")
        if interrupting:  # stopped first: no connection opens between the look and the signal
            op.process.send_signal(signal.SIGSTOP)
        ports = self.server_ports(op.process.pid)
        at = time.monotonic()
        op.process.send_signal(number)
        if interrupting and number != signal.SIGKILL:
            op.process.send_signal(signal.SIGCONT)  # the signal is taken as it goes on
        op.signals.append(name)
        if interrupting:
            self.outcome.interruptions.append(Interruption(op, name, at, ports))
        if number == signal.SIGKILL:
            op.process.wait()  # reaped at once: a zombie still looks alive
            self.ended(op)

    def server_ports(self, pid: int) -> frozenset[int]:
        """The local ports of the process's connections to the server."""
        try:
            found = psutil.Process(pid).net_connections(kind="tcp")
        except (psutil.Error, OSError):
            return frozenset()
        return frozenset(
            c.laddr.port for c in found if c.raddr and c.raddr.port == self.server.port
        )

    # -- settling ----------------------------------------------------------------------------

    def stop_all(self) -> None:
        """SIGTERM to the runtimes; every process ends (or is killed after STOP_S)."""
        for op in self.live:
            if op.kind == "runtime" and "SIGTERM" not in op.signals:
                self.new_op(f"SIGTERM #{op.number} ({op.name})", "SIGTERM")
                self.signal(op, signal.SIGTERM, "SIGTERM")
        deadline = time.monotonic() + STOP_S
        while self.live and time.monotonic() < deadline:
            time.sleep(0.05)
            self.reap()
        for op in self.live:
            self.outcome.fail("commands end", f"#{op.number} {op.name} runs on after {STOP_S}s")
            self.new_op(f"kill -9 #{op.number} ({op.name})", "kill -9")
            self.signal(op, signal.SIGKILL, "kill -9")

    def check_nobody_runs(self) -> None:
        """With no cxrun process left, a `running` job must belong to a killed process."""
        by_pid = {op.process.pid: op for op in self.outcome.ops if op.process is not None}
        with self.state() as con:
            rows = con.execute(
                "SELECT job, spinner, owner, owner_pid FROM cx_jobs WHERE status = 'running'"
            ).fetchall()
        for job, spinner, owner, pid in rows:
            op = by_pid.get(pid)
            if op is not None and "kill -9" in op.signals:
                continue
            who = f"#{op.number} {op.name}, exit {op.code}" if op else f"owner {owner}"
            self.outcome.fail(
                "no job running without a live owner",
                f"job {job} ({spinner}) is running with every process gone ({who})",
            )

    def settle(self) -> None:
        """`resume`, then `approve --all` beside `runtime --once`, until every job is finished
        or two rounds in a row change nothing (between the commands no cxrun process is alive,
        so the state file is read directly)."""
        deadline = time.monotonic() + SETTLE_S
        before: list[tuple[Any, ...]] = []
        stuck = 0
        while time.monotonic() < deadline and stuck < 2:
            jobs = self.state_jobs()
            unfinished = [j for j in jobs if j["status"] not in FINISHED]
            if not unfinished:
                return
            progress = [(j["job"], j["status"], j["cursor"], *(j[n] for n in COUNTS)) for j in jobs]
            stuck = stuck + 1 if progress == before else 0
            before = progress
            paused = [j["job"] for j in unfinished if j["status"] == "paused"]
            if paused:
                self.together([["resume", str(job)] for job in paused])
                unfinished = [j for j in self.state_jobs() if j["status"] not in FINISHED]
            waiting = [j["job"] for j in unfinished if j["status"] == "waiting"]
            commands = [["approve", str(job), "--all"] for job in waiting]
            if any(j["status"] in ("queued", "running") for j in unfinished):
                commands.append(["runtime", "--once", "--max-jobs", "4"])
            self.together(commands)
        for job in self.state_jobs():
            if job["status"] not in FINISHED:
                self.outcome.fail(
                    "settles",
                    f"job {job['job']} ({job['spinner']}) is {job['status']} after settling: "
                    f"{job['reason']}",
                )

    def together(self, commands: list[list[str]]) -> None:
        """Settling commands at the same time, each waited for."""
        started = [self.start(args[0], args) for args in commands]
        for op in started:
            if op is not None:
                self.wait(op)

    def state_jobs(self) -> list[dict[str, Any]]:
        with self.state() as con:
            return rows(con, "SELECT * FROM cx_jobs ORDER BY job")

    @contextlib.contextmanager
    def state(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The state file, read-only, while no cxrun process is alive."""
        assert not self.live
        con = duckdb.connect(str(self.root / ".cxrun" / "state.duckdb"), read_only=True)
        try:
            yield con
        finally:
            con.close()


def status_fits(job: dict[str, Any]) -> bool:
    """Whether a finished job's status, and the count in its reason, agree with its counts: no
    failed record is `completed`, some `partial`, none completed `failed` (or a failure of the
    run itself)."""
    status, failed, completed = job["status"], job["failed"], job["completed"]
    reason = job.get("reason") or ""
    some = re.search(r"(\d+) of (\d+) records failed", reason)
    every = re.search(r"all (\d+) records failed", reason)
    if some and (int(some.group(1)), int(some.group(2))) != (failed, job["total"]):
        return False
    if every and int(every.group(1)) != failed:
        return False
    if status == "completed":
        return failed == 0
    if status == "partial":
        return failed > 0 and completed > 0
    if status == "failed":
        return (failed > 0 and completed == 0) or not (some or every)
    return True


def rows(con: duckdb.DuckDBPyConnection, sql: str) -> list[dict[str, Any]]:
    cursor = con.execute(sql)
    names = [d[0] for d in cursor.description or []]
    return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]


def rounded(stats: list[tuple[Any, ...]]) -> list[tuple[Any, ...]]:
    """The median to 6 decimals: two ways of taking the mean of the middle two differ after."""
    return [(*row[:-1], None if row[-1] is None else round(row[-1], 6)) for row in stats]


def journey_steps(con: duckdb.DuckDBPyConnection, job: int) -> list[tuple[Any, ...]]:
    """store/steps.py's `stats` of a job, counted from the journey itself (durations rounded to
    three significant figures as those tables keep them)."""
    return con.execute(
        "WITH j AS (SELECT *, CASE WHEN duration_ms > 0 THEN round(duration_ms, "
        "(2 - floor(log10(duration_ms)))::INTEGER) ELSE duration_ms END AS ms FROM cx_journey "
        "WHERE job = $job), latest AS (SELECT pos, arg_max(step, attempt) AS step, "
        "arg_max(status, attempt) AS status FROM j GROUP BY seq, pos), "
        "counted AS (SELECT pos, any_value(step) AS step, "
        "count(*) FILTER (WHERE status = 'completed') AS completed, "
        "count(*) FILTER (WHERE status = 'failed') AS failed, "
        "count(*) FILTER (WHERE status = 'skipped') AS skipped, "
        "count(*) FILTER (WHERE status = 'waiting') AS waiting FROM latest GROUP BY pos), "
        "timed AS (SELECT pos, count(*) AS attempts, median(ms) FILTER "
        "(WHERE status IN ('completed', 'failed')) AS median_ms FROM j GROUP BY pos) "
        "SELECT c.pos, c.step, c.completed, c.failed, c.skipped, c.waiting, t.attempts, "
        "t.median_ms FROM counted AS c JOIN timed AS t USING (pos) ORDER BY c.pos",
        {"job": job},
    ).fetchall()


# ---- the checks at the end ------------------------------------------------------------------


class Audit:
    """The settled state file and what the server saw, against the promises."""

    def __init__(self, sequence: Sequence) -> None:
        self.sequence = sequence
        self.outcome = sequence.outcome
        self.calls = list(sequence.server.calls)

    def check(self) -> None:
        with self.sequence.state() as con:
            self.check_jobs(con)
            self.check_records(con)
            self.check_steps(con)
            self.check_sends(con)
            self.check_ai(con)
        self.outcome.calls = len(self.calls)

    def fail(self, invariant: str, detail: str, job: int | None = None) -> None:
        self.outcome.fail(invariant, detail)
        if job is not None:
            self.outcome.inconsistent_jobs.add(job)

    def check_jobs(self, con: duckdb.DuckDBPyConnection) -> None:
        """Each job row against its records."""
        counts: dict[int, Counter[str]] = defaultdict(Counter)
        for job, status, count in con.execute(
            "SELECT job, status, count(*) FROM cx_records GROUP BY ALL"
        ).fetchall():
            counts[job][status] += count
        jobs = rows(con, "SELECT * FROM cx_jobs ORDER BY job")
        self.outcome.jobs = len(jobs)
        for job in jobs:
            self.sequence.check_counts({**job, "processed": job["cursor"]}, "the state file")
            self.check_job(job, counts[job["job"]])

    def check_job(self, job: dict[str, Any], records: Counter[str]) -> None:
        number, status, total = job["job"], job["status"], job["total"]
        shown = f"job {number} ({job['spinner']}, {status}, total {total})"
        if any(records[name] != job[name] for name in COUNTS):
            said = ", ".join(f"{name} {job[name]}/{records[name]}" for name in COUNTS)
            self.fail("records match counts", f"{shown}: counted/records: {said}", number)
        if status in ("running", "queued"):
            self.fail("settles", f"{shown} is still {status}")
        written = sum(records.values())
        if status in FINISHED and written != total:
            self.fail("records cover total", f"{shown}: {written} records")
        counted_only = max(0, job["cancelled"] - records["cancelled"])  # cancelled, no record
        if status in FINISHED and written + counted_only < total:
            self.outcome.lost_records += total - written - counted_only

    def check_records(self, con: duckdb.DuckDBPyConnection) -> None:
        """No record twice; one completed journey entry per record and step."""
        for job, seq, key, count in con.execute(
            "SELECT job, seq, any_value(key), count(*) FROM cx_records GROUP BY job, seq "
            "HAVING count(*) > 1 ORDER BY job, seq"
        ).fetchall():
            self.fail("no record twice", f"job {job} row {seq} (key {key}): {count} rows", job)
        for job, seq, pos, step, count in con.execute(
            "SELECT job, seq, pos, any_value(step), count(*) FROM cx_journey "
            "WHERE status = 'completed' GROUP BY job, seq, pos HAVING count(*) > 1 "
            "ORDER BY job, seq, pos"
        ).fetchall():
            self.fail(
                "one completed journey entry per step",
                f"job {job} row {seq} step {step} (#{pos}): completed {count} times",
                job,
            )

    def check_steps(self, con: duckdb.DuckDBPyConnection) -> None:
        """The step counts and medians kept as the journey was written are the journey's own."""
        for (job,) in con.execute("SELECT job FROM cx_jobs ORDER BY job").fetchall():
            kept, counted = rounded(steps_store.stats(con, job)), rounded(journey_steps(con, job))
            if kept != counted:
                self.fail("step counts match the journey", f"job {job}: {kept} != {counted}", job)

    def check_sends(self, con: duckdb.DuckDBPyConnection) -> None:
        """A second delivery of a key needs an interruption with a delivery of it in flight;
        what the journey calls sent was delivered."""
        by_key: dict[str, list[Call]] = defaultdict(list)
        for call in self.calls:
            if call.delivered:
                by_key[call.key].append(call)
        for key, deliveries in by_key.items():
            if len(deliveries) < 2:
                continue
            explained = [i for i in self.outcome.interruptions if any(map(i.covers, deliveries))]
            if len(deliveries) - 1 <= len(explained):
                self.outcome.twice_after_kill += 1
                continue
            self.outcome.twice_without_kill += 1
            first = deliveries[0]
            times = ", ".join(f"{self.at(c.start):.2f}s" for c in deliveries)
            self.fail(
                "delivered once",
                f"{key} (job {first.job}, record {first.record}) delivered {len(deliveries)} "
                f"times (at {times}); interruptions with it in flight: "
                f"{[f'#{i.op.number}' for i in explained]}",
                first.job,
            )
        delivered = {(c.job, c.record) for c in self.calls if c.delivered}
        for job, record in con.execute(
            "SELECT DISTINCT r.job, r.key FROM cx_journey AS e JOIN cx_records AS r "
            "ON r.job = e.job AND r.seq = e.seq WHERE e.step = 'notify' AND e.status = 'completed'"
        ).fetchall():
            if (job, record) not in delivered:
                self.fail(
                    "sent means delivered",
                    f"job {job} record {record}: the journey says sent, the server got no send",
                )

    def check_ai(self, con: duckdb.DuckDBPyConnection) -> None:
        """Each call is used by one record, or lost to an interruption, or dropped by a cancel;
        no interruption costs more calls than the process could have in flight."""
        used = self.used_calls(con)
        cancels = self.cancel_allowance(con)
        repaid = {i.op.number: 0 for i in self.outcome.interruptions}
        for call in self.calls:
            if call.kind != "ai" or call.number in used:
                continue
            lost = [i for i in self.outcome.interruptions if i.covers(call)]
            if lost:
                repaid[lost[0].op.number] += 1
            elif cancels[(call.spinner, call.record)] > 0:
                cancels[(call.spinner, call.record)] -= 1
            else:
                self.fail(
                    "AI calls paid once",
                    f"call {call.number} ({call.spinner}, record {call.record}, at "
                    f"{self.at(call.start):.2f}s) is used by no record and lost to no interruption",
                )
        self.outcome.repaid = repaid
        for interruption in self.outcome.interruptions:
            bound = CONCURRENCY * interruption.op.jobs_at_once
            if repaid[interruption.op.number] > bound:
                self.fail(
                    "re-paid calls per kill",
                    f"{interruption.signal} of #{interruption.op.number} "
                    f"({interruption.op.name}) cost {repaid[interruption.op.number]} calls "
                    f"again (at most {bound})",
                )

    def used_calls(self, con: duckdb.DuckDBPyConnection) -> set[int]:
        """The calls whose answer a completed AI step kept; one record each."""
        users: dict[int, set[tuple[int, str, str]]] = defaultdict(set)
        for job, spinner, record, output in con.execute(
            "SELECT e.job, j.spinner, r.key, CAST(e.output AS VARCHAR) FROM cx_journey AS e "
            "JOIN cx_records AS r ON r.job = e.job AND r.seq = e.seq "
            "JOIN cx_jobs AS j ON j.job = e.job WHERE e.step = 'draft' AND e.status = 'completed'"
        ).fetchall():
            found = re.search(r"chaos-call-(\d+)", output or "")
            if found:
                users[int(found.group(1))].add((job, spinner, record))
        by_number = {c.number: c for c in self.calls if c.kind == "ai"}
        for number, who in users.items():
            call = by_number.get(number)
            if (
                len(who) > 1
                or call is None
                or {w[1:] for w in who} != {(call.spinner, call.record)}
            ):
                self.fail("one AI answer per record", f"call {number} used by {sorted(who)}")
        return set(users)

    def cancel_allowance(self, con: duckdb.DuckDBPyConnection) -> Counter[tuple[str, str]]:
        """Per (spinner, record): how many cancelled jobs never finished that record (a cancel
        drops the calls it had made)."""
        allowance: Counter[tuple[str, str]] = Counter()
        cancelled = con.execute(
            "SELECT job, spinner FROM cx_jobs WHERE status = 'cancelled'"
        ).fetchall()
        for job, spinner in cancelled:
            finished = {
                key
                for (key,) in con.execute(
                    "SELECT key FROM cx_records WHERE job = ? AND status <> 'cancelled'", [job]
                ).fetchall()
            }
            for row in range(1, self.sequence.settings.rows + 1):
                if str(row) not in finished:
                    allowance[(spinner, str(row))] += 1
        return allowance

    def at(self, moment: float) -> float:
        return moment - self.outcome.began


# ---- running sequences ----------------------------------------------------------------------


@contextlib.contextmanager
def ctrl_c_reaches_children() -> Iterator[None]:
    """A child inherits an ignored SIGINT (as under `nohup` or `&`) and Python then keeps it
    ignored: give the children the default, so that Ctrl-C reaches run-now."""
    main = threading.current_thread() is threading.main_thread()
    before = signal.getsignal(signal.SIGINT)
    if main and before is signal.SIG_IGN:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        yield
    finally:
        if main and before is signal.SIG_IGN:
            signal.signal(signal.SIGINT, before)


class Driver:
    """A server and a published template project, for sequences one after another."""

    def __init__(self, settings: Settings | None = None, keep: Path | None = None) -> None:
        self.settings = settings or Settings()
        self.keep = keep  # where failed sequences' projects, logs and requests are kept
        self._stack = contextlib.ExitStack()
        self.folder = Path(self._stack.enter_context(tempfile.TemporaryDirectory(prefix="chaos-")))
        self.server = self._stack.enter_context(Server(self.settings.latency))
        self._stack.enter_context(ctrl_c_reaches_children())
        self.template = self.folder / "template"
        make_project(self.template, self.server.url, self.settings.rows)

    def __enter__(self) -> Driver:
        return self

    def __exit__(self, *exc: object) -> None:
        self._stack.close()

    def run(self, seed: int) -> Outcome:
        """One sequence in a fresh copy of the template."""
        root = self.folder / f"seed-{seed}"
        shutil.rmtree(root, ignore_errors=True)
        shutil.copytree(self.template, root)
        self.server.reset()
        outcome = Sequence(seed, root, self.server, self.settings).run()
        if not outcome.ok and self.keep is not None:
            self.save(root, outcome)
        shutil.rmtree(root, ignore_errors=True)
        return outcome

    def save(self, root: Path, outcome: Outcome) -> None:
        """The project (state, logs), the report and the server's requests, under `keep`."""
        assert self.keep is not None
        (root / "report.txt").write_text(outcome.report(shown=10_000) + "\n")
        with (root / "requests.jsonl").open("w") as out:
            for call in self.server.calls:
                times = {"start": call.start - outcome.began, "end": call.end - outcome.began}
                out.write(json.dumps({**call.__dict__, **times}) + "\n")
        target = self.keep / root.name
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(root, target)


def run_many(
    seeds: list[int],
    settings: Settings | None = None,
    workers: int = 2,
    keep: Path | None = None,
    done: Callable[[Outcome], None] = lambda outcome: None,
) -> list[Outcome]:
    """The sequences of `seeds`, `workers` at a time (each worker with its own server and
    template), in the order of `seeds`; `done` hears of each one as it ends."""
    pending = list(seeds)
    outcomes: dict[int, Outcome] = {}
    errors: list[BaseException] = []
    lock = threading.Lock()

    def work() -> None:
        try:
            with Driver(settings, keep) as driver:
                while True:
                    with lock:
                        if not pending or errors:
                            return
                        seed = pending.pop(0)
                    outcome = driver.run(seed)
                    with lock:
                        outcomes[seed] = outcome
                        done(outcome)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    with ctrl_c_reaches_children():
        count = max(1, min(workers, len(seeds)))
        threads = [threading.Thread(target=work, daemon=True) for _ in range(count)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    if errors:
        raise errors[0]
    return [outcomes[seed] for seed in seeds]
