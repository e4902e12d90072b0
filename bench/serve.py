"""Benchmark: `cxrun serve` under load: a job's run time with and without a client polling it,
and events accepted per second against a bare Starlette app that does the least it can.

Run with `.venv/bin/python bench/serve.py` (or `make bench`); `--rows`, `--runs` and `--events`
make it quicker.

What it does, in a temporary folder that is removed at the end (every server on 127.0.0.1, on a
free port, in its own process):

1. polling. A project whose spinner `pure` has the three pure steps of bench/pure.py (log, tag,
   set) over a Parquet table of ROWS contacts (bench/common.py), published, with a control key
   and a read key (`cxrun keys create --json`). Each run takes a fresh copy of that project (no
   run sees the records of another), starts `cxrun serve --port 0` (the runtime inside) and
   starts the job with POST /api/v1/spinners/pure/runs (control key). A "quiet" run then leaves
   the server alone until it says on stderr that the job ended; a "polled" run sends
   GET /api/v1/jobs/{id} with the read key every 100 ms (one client, keep-alive) until the job is
   finished (or the server has stopped). The figure is the job's duration_s (from its claim by
   the runtime to its end), read with one GET once it ended; a run whose job did not end there is
   reported, not measured. Quiet and polled runs alternate; the report gives the medians and
   the ratio polled / quiet. Checks: every job completed every row; during the polled runs every
   answer was 200 and `processed` never went backwards;
2. events. A project whose spinner `welcome` listens to `contact.created` with the README's
   schema (an integer id, an email checked as one) and select `id = $id` over EVENT_ROWS
   contacts, with a trigger key. Each run takes a fresh copy of it and starts either
   `cxrun serve --no-runtime --port 0` (only the API: the jobs stay queued) or the baseline, then
   sends WARMUP events (not timed) and EVENTS events, each with its own Idempotency-Key, from
   CONNECTIONS concurrent connections (httpx.AsyncClient in this process), and counts the events
   answered 202 per second, from the first request to the last answer. The baseline (BASELINE, a
   bare Starlette app on uvicorn) answers POST /api/v1/events/{name} by parsing the body as cxrun
   does (cxrun.triggers.events.parse_payload), then, in Starlette's thread pool as cxrun's routes
   do, taking the project's state lock (StateLock on .cxrun/state.lock, exclusive), opening
   .cxrun/state.duckdb as cxrun opens it, inserting one row into a table of its own, committing,
   closing and releasing: what accepting an event durably costs at the least. cxrun and the
   baseline alternate; the report gives the medians and the ratio cxrun / baseline. Checks: every
   event was answered 202, and the state holds one queued job (cxrun) or one row (baseline) per
   event sent.

The client runs in this process, on the same cores as the server it measures. The exit status
is 0 whatever the figures; the report says OK or FAIL for each check.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import re
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata
from pathlib import Path
from typing import Any

from common import child_env, last_line, machine, no_proxy, write_contacts
from pure import SPINNER

CXRUN = Path(sys.executable).parent / "cxrun"
POLL_EVERY = 0.1  # seconds between two polls: ten a second
TARGET_RATIO = 1.10  # polled / quiet run time
EVENT_ROWS = 1_000
WARMUP = 10  # events sent to each server before the timed ones
STARTUP_S = 60.0
RUN_DEADLINE_S = 900.0  # a job or an event run that takes longer is given up
SERVING = re.compile(r"serving (http://127\.0\.0\.1:\d+/api/v1)")
UNFINISHED = ("queued", "running")

PURE = SPINNER  # bench/pure.py's spinner: log, tag and set over the contacts

WELCOME = """\
name: welcome
table: contacts
key: id
fields:
  email: {required: true}
  first_name: {}
steps:
  - id: hello
    log: "Welcome {{ first_name }}"
triggers:
  - event: contact.created
    schema:
      type: object
      required: [id]
      properties: {id: {type: integer}, email: {type: string, format: email}}
    select: "id = $id"
"""
EVENT = "contact.created"
NAMES = ("Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Ken")

# The baseline server, run in the project's folder. Prints the line `cxrun serve` prints once it
# listens, then serves until SIGTERM.
BASELINE = r"""
import json, signal, socket, sys
from pathlib import Path

import duckdb, uvicorn
from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse
from starlette.routing import Route

from cxrun.base.errors import CxrunError
from cxrun.store.lock import StateLock
from cxrun.triggers.events import parse_payload

STATE = Path(".cxrun")
CONFIG = {"enable_external_access": False, "threads": 2}  # as cxrun opens the state file


def locked(sql, values=()):
    with StateLock(STATE / "state.lock", 10.0).hold(exclusive=True):
        con = duckdb.connect(str(STATE / "state.duckdb"), config=CONFIG)
        try:
            con.execute("BEGIN")
            con.execute(sql, values)
            con.execute("COMMIT")
        finally:
            con.close()


async def post_event(request):
    try:
        payload = parse_payload(await request.body(), "the body")
    except CxrunError as exc:
        return JSONResponse({"error": exc.message}, 400)
    name, key = request.path_params["name"], request.headers.get("idempotency-key")
    row = [name, key, json.dumps(payload)]
    await run_in_threadpool(locked, "INSERT INTO bench_events VALUES (?, ?, ?, now())", row)
    return JSONResponse({"event": name, "id": key, "accepted": True}, 202)


locked("CREATE TABLE bench_events (event VARCHAR, id VARCHAR, payload JSON, received_at TIMESTAMP)")
app = Starlette(routes=[Route("/api/v1/events/{name}", post_event, methods=["POST"])])
sock = socket.socket()
sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
sock.bind(("127.0.0.1", 0))
sock.listen(2048)
server = uvicorn.Server(uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off"))
print(f"serving http://127.0.0.1:{sock.getsockname()[1]}/api/v1 (baseline)", file=sys.stderr,
      flush=True)
server.run(sockets=[sock])
"""


class NotMeasured(Exception):
    """A run could not be measured (a server that does not start, a job that does not end)."""


# ---- servers and projects -----------------------------------------------------------------


class Served:
    """A server process started in a project; a thread keeps every line it writes on stderr."""

    def __init__(self, argv: Sequence[str], cwd: Path) -> None:
        self.process = subprocess.Popen(
            argv,
            cwd=cwd,
            env=child_env(no_proxy()),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: list[str] = []
        self.closed = False
        self.changed = threading.Condition()
        self.reader = threading.Thread(target=self._read, daemon=True)
        self.reader.start()
        found = self.wait_for(SERVING, STARTUP_S)
        if found is None:
            self.stop()
            raise NotMeasured(f"{argv[1]} did not start: {last_line(self.log())}")
        self.url = found.group(1)

    def _read(self) -> None:
        assert self.process.stderr is not None
        for line in self.process.stderr:
            with self.changed:
                self.lines.append(line.rstrip("\n"))
                self.changed.notify_all()
        with self.changed:
            self.closed = True
            self.changed.notify_all()

    def wait_for(self, pattern: re.Pattern[str], timeout: float) -> re.Match[str] | None:
        """The first stderr line that matches, waiting up to `timeout` seconds for it."""
        deadline = time.monotonic() + timeout
        with self.changed:
            while True:
                for line in self.lines:
                    found = pattern.search(line)
                    if found:
                        return found
                left = deadline - time.monotonic()
                if self.closed or left <= 0:
                    return None
                self.changed.wait(left)

    def log(self) -> str:
        with self.changed:
            return "\n".join(self.lines)

    def stop(self) -> int:
        """SIGTERM (the runtime hands its jobs back), then SIGKILL after 30 s; the exit code."""
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self.reader.join(timeout=10)
        return self.process.returncode


def cxrun(project: Path, *args: str) -> str:
    """Stdout of a cxrun command that must succeed."""
    done = subprocess.run(
        [str(CXRUN), *args], cwd=project, env=child_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise NotMeasured(f"cxrun {' '.join(args)} failed (exit {done.returncode}): {done.stderr}")
    return done.stdout


def make_project(root: Path, spinner: str, spinner_text: str, rows: int) -> None:
    """cxrun.yaml, one spinner and tables/contacts.parquet, published."""
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text("name: bench\n")
    (root / "spinners" / f"{spinner}.yaml").write_text(spinner_text)
    write_contacts(root / "tables" / "contacts.parquet", rows)
    cxrun(root, "publish", "--json")


def make_key(project: Path, name: str, *scopes: str) -> str:
    options = [item for scope in scopes for item in ("--scope", scope)]
    return str(json.loads(cxrun(project, "keys", "create", name, *options, "--json"))["key"])


def fresh_copy(template: Path, folder: Path, name: str) -> Path:
    """A copy of the published project, for one run."""
    target = folder / name
    shutil.rmtree(target, ignore_errors=True)
    shutil.copytree(template, target)
    return target


def client(url: str, key: str) -> Any:
    import httpx

    headers = {"Authorization": f"Bearer {key}"}
    return httpx.Client(base_url=url, headers=headers, timeout=60, trust_env=False)


# ---- 1. a job's run time, with and without a client polling it ----------------------------


@dataclass
class Polls:
    """What the polling client saw during one job."""

    sent: int = 0
    errors: int = 0
    first_error: str | None = None
    backwards: int = 0
    seen: list[int] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)
    span_s: float = 0.0

    def answer(self, status: int, text: str, processed: int | None) -> None:
        self.sent += 1
        if status != 200:
            self.errors += 1
            self.first_error = self.first_error or f"{status}: {text[:200]}"
            return
        if processed is not None:
            if self.seen and processed < max(self.seen):
                self.backwards += 1
            self.seen.append(processed)

    def line(self) -> str:
        rate = self.sent / self.span_s if self.span_s else 0.0
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        p95 = ms[min(len(ms) - 1, int(len(ms) * 0.95))]
        return (
            f"{self.sent} polls ({rate:.1f}/s), answered in {statistics.median(ms):.0f} ms median, "
            f"{p95:.0f} ms p95, {ms[-1]:.0f} ms max; errors {self.errors}, "
            f"processed went backwards {self.backwards}x"
        )


@dataclass(frozen=True)
class JobRun:
    """One run: the job as the API shows it once it ended (None if it did not), and why not."""

    polled: bool
    job: dict[str, Any] | None
    polls: Polls | None
    problem: str | None = None

    @property
    def duration_s(self) -> float | None:
        return float(self.job["duration_s"]) if self.job and self.finished else None

    @property
    def finished(self) -> bool:
        return self.job is not None and self.job["status"] not in UNFINISHED

    def line(self) -> str:
        if self.duration_s is None:
            shown = self.job["status"] if self.job else "unknown"
            ended = f"job {shown}, not measured ({self.problem})"
        else:
            ended = f"job {self.job['status'] if self.job else '?'} in {self.duration_s:.2f} s"
        return ended + (f"; {self.polls.line()}" if self.polls else "")


def poll(http: Any, job: int, server: Served) -> Polls:
    """GET /jobs/{job} every POLL_EVERY seconds until the job is finished, the server has
    stopped or the deadline has passed."""
    import httpx

    polls = Polls()
    start = time.monotonic()
    due = start
    while time.monotonic() - start < RUN_DEADLINE_S and server.process.poll() is None:
        tick = time.monotonic()
        status, processed, text, found = 0, None, "", {}
        try:
            answer = http.get(f"/jobs/{job}")
            status, text = answer.status_code, answer.text
            found = answer.json() if status == 200 else {}
            processed = found.get("processed")
        except (httpx.HTTPError, ValueError) as exc:
            text = repr(exc)
        polls.latencies.append(time.monotonic() - tick)
        polls.answer(status, text, processed)
        if status == 200 and found.get("status") not in UNFINISHED:
            break
        due = max(due + POLL_EVERY, time.monotonic())
        time.sleep(max(0.0, due - time.monotonic()))
    polls.span_s = time.monotonic() - start
    return polls


def job_run(project: Path, control: str, read: str, polled: bool) -> JobRun:
    """One job of `pure` started over the API of a fresh `cxrun serve`, polled or left alone."""
    server = Served([str(CXRUN), "serve", "--port", "0"], project)
    try:
        with client(server.url, control) as http:
            started = http.post("/spinners/pure/runs")
        if started.status_code != 202:
            raise NotMeasured(f"POST /spinners/pure/runs: {started.status_code} {started.text}")
        job = int(started.json()["job"])
        with client(server.url, read) as http:
            polls = poll(http, job, server) if polled else None
            ended = re.compile(rf"job {job}: (?!claimed)|runtime stopped")
            found = server.wait_for(ended, RUN_DEADLINE_S)
            if found is None or found.group(0) == "runtime stopped":
                return JobRun(polled, None, polls, f"server: {last_line(server.log())}")
            return JobRun(polled, http.get(f"/jobs/{job}").json(), polls)
    finally:
        server.stop()


def job_runs(folder: Path, template: Path, keys: dict[str, str], runs: int) -> list[JobRun]:
    """Quiet and polled runs in turns, each on its own copy of the project."""
    done: list[JobRun] = []
    for number in range(2 * runs):
        polled = number % 2 == 1
        project = fresh_copy(template, folder, "run")
        result = job_run(project, keys["control"], keys["read"], polled)
        shutil.rmtree(project)
        done.append(result)
        side = "polled" if polled else "quiet "
        print(f"  run {number + 1}/{2 * runs} {side}: {result.line()}", flush=True)
    return done


def median_line(label: str, values: list[float]) -> str:
    shown = " ".join(f"{x:.2f}" for x in values)
    median = f"{statistics.median(values):7.2f} s" if values else "      - (none measured)"
    return f"  {label:<37} median {median}   runs: {shown}"


def polling_report(rows: int, done: list[JobRun]) -> list[str]:
    quiet = [r.duration_s for r in done if not r.polled and r.duration_s is not None]
    polled = [r.duration_s for r in done if r.polled and r.duration_s is not None]
    ratio = statistics.median(polled) / statistics.median(quiet) if quiet and polled else None
    polls = [r.polls for r in done if r.polls]
    errors = sum(p.errors for p in polls)
    backwards = sum(p.backwards for p in polls)
    complete = [r for r in done if r.job and r.job["status"] == "completed"]
    complete = [r for r in complete if r.job and r.job["completed"] == rows]
    first = next((p.first_error for p in polls if p.first_error), None)
    shown = "not measured" if ratio is None else f"{ratio:.3f}"
    return [
        median_line("quiet  (no client)", quiet),
        median_line("polled (GET /jobs/{id} 10 a second)", polled),
        f"  ratio polled / quiet                  {shown}   target <= {TARGET_RATIO:g}",
        "",
        f"check: run time ratio polled / quiet {shown} <= {TARGET_RATIO:g}: "
        + verdict(ratio is not None and ratio <= TARGET_RATIO),
        f"check: polled answers other than 200: {errors} of {sum(p.sent for p in polls)}"
        + (f" (first: {first})" if first else "")
        + ": "
        + verdict(errors == 0),
        f"check: times `processed` went backwards between two polls: {backwards}: "
        + verdict(backwards == 0),
        f"check: jobs that completed {rows:,} of {rows:,} records: {len(complete)} of "
        f"{len(done)}: " + verdict(len(complete) == len(done)),
    ]


# ---- 2. events accepted per second --------------------------------------------------------


@dataclass(frozen=True)
class Sent:
    """What one client run of `count` events got back."""

    count: int
    wall_s: float
    statuses: Counter[str]
    first_error: str | None

    @property
    def accepted(self) -> int:
        return self.statuses["202"]

    @property
    def per_s(self) -> float:
        return self.accepted / self.wall_s


def payload(number: int) -> dict[str, Any]:
    contact = number % EVENT_ROWS + 1
    name = NAMES[number % len(NAMES)]
    return {"id": contact, "email": f"{name.lower()}.{contact}@example.org", "first_name": name}


async def send(url: str, key: str, label: str, count: int, connections: int) -> Sent:
    """`count` events from `connections` concurrent connections, each with its own key."""
    import httpx

    statuses: Counter[str] = Counter()
    errors: list[str] = []
    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    headers = {"Authorization": f"Bearer {key}"}
    todo = iter(range(count))
    async with httpx.AsyncClient(
        base_url=url, headers=headers, limits=limits, timeout=60, trust_env=False
    ) as http:

        async def worker() -> None:
            for number in todo:
                try:
                    answer = await http.post(
                        f"/events/{EVENT}",
                        json=payload(number),
                        headers={"Idempotency-Key": f"{label}-{number}"},
                    )
                    statuses[str(answer.status_code)] += 1
                    if answer.status_code != 202:
                        errors.append(f"{answer.status_code}: {answer.text[:200]}")
                except httpx.HTTPError as exc:
                    statuses["no answer"] += 1
                    errors.append(repr(exc))

        tick = time.perf_counter()
        await asyncio.gather(*(worker() for _ in range(connections)))
        wall = time.perf_counter() - tick
    return Sent(count, wall, statuses, errors[0] if errors else None)


@dataclass(frozen=True)
class EventRun:
    side: str  # "cxrun" or "baseline"
    sent: Sent
    kept: int  # queued jobs (cxrun) or rows (baseline) in the state afterwards
    expected: int


def event_run(
    project: Path, key: str, side: str, number: int, args: argparse.Namespace
) -> EventRun:
    """WARMUP then `args.events` events against a fresh server of `side`, and what it kept."""
    if side == "cxrun":
        argv = [str(CXRUN), "serve", "--no-runtime", "--port", "0"]
    else:
        (project / "baseline.py").write_text(BASELINE)
        argv = [sys.executable, "baseline.py"]
    server = Served(argv, project)
    try:
        warm = asyncio.run(send(server.url, key, f"warm{number}", WARMUP, args.connections))
        sent = asyncio.run(send(server.url, key, f"run{number}", args.events, args.connections))
    finally:
        server.stop()
    kept = queued_jobs(project) if side == "cxrun" else baseline_rows(project)
    return EventRun(side, sent, kept, warm.accepted + sent.accepted)


def queued_jobs(project: Path) -> int:
    listed = json.loads(
        cxrun(project, "jobs", "--json", "--spinner", "welcome", "--limit", "1000000")
    )
    return sum(1 for job in listed if job["status"] == "queued" and job["trigger"] == "event")


def baseline_rows(project: Path) -> int:
    import duckdb

    with duckdb.connect(str(project / ".cxrun" / "state.duckdb"), read_only=True) as con:
        row = con.execute("SELECT count(DISTINCT id) FROM bench_events").fetchone()
    return int(row[0]) if row else 0


def event_runs(folder: Path, template: Path, key: str, args: argparse.Namespace) -> list[EventRun]:
    """cxrun and the baseline in turns, each on its own copy of the project."""
    done: list[EventRun] = []
    for number in range(2 * args.runs):
        side = "cxrun" if number % 2 == 0 else "baseline"
        project = fresh_copy(template, folder, "events")
        result = event_run(project, key, side, number, args)
        shutil.rmtree(project)
        done.append(result)
        print(
            f"  run {number + 1}/{2 * args.runs} {side:<8}: {result.sent.accepted:,} of "
            f"{args.events:,} accepted in {result.sent.wall_s:.2f} s = "
            f"{result.sent.per_s:,.1f} events/s; kept {result.kept:,} of {result.expected:,}",
            flush=True,
        )
    return done


def events_report(args: argparse.Namespace, done: list[EventRun]) -> list[str]:
    ours = [r.sent.per_s for r in done if r.side == "cxrun"]
    base = [r.sent.per_s for r in done if r.side == "baseline"]
    ratio = statistics.median(ours) / statistics.median(base)
    refused = sum(r.sent.count - r.sent.accepted for r in done)
    statuses = sum((r.sent.statuses for r in done), Counter())
    first = next((r.sent.first_error for r in done if r.sent.first_error), None)
    kept = all(r.kept == r.expected for r in done)
    shown = ", ".join(f"{status}: {n:,}" for status, n in sorted(statuses.items()))
    return [
        f"  cxrun serve --no-runtime          median {statistics.median(ours):7,.1f} events/s   "
        f"runs: {' '.join(f'{x:,.1f}' for x in ours)}",
        f"  baseline (parse, lock, insert)    median {statistics.median(base):7,.1f} events/s   "
        f"runs: {' '.join(f'{x:,.1f}' for x in base)}",
        f"  ratio cxrun / baseline            {ratio:.3f}",
        "",
        f"check: timed events answered other than 202: {refused} ({shown})"
        + (f"; first: {first}" if first else "")
        + ": "
        + verdict(refused == 0),
        "check: the state holds one queued job (cxrun) or one row (baseline) per accepted event, "
        "warm-up included: " + verdict(kept),
    ]


# ---- report and main ----------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "OK" if ok else "FAIL"


def versions() -> dict[str, str]:
    found = {}
    for name in ("cxrun", "starlette", "uvicorn", "httpx", "duckdb"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the job (2,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side, per figure (3)")
    parser.add_argument("--events", type=int, default=100, help="events per run (100)")
    parser.add_argument(
        "--connections", type=int, default=8, help="concurrent connections sending events (8)"
    )
    args = parser.parse_args()
    if min(args.rows, args.runs, args.events, args.connections) < 1:
        parser.error("--rows, --runs, --events and --connections must be at least 1")
    return args


def polling(folder: Path, args: argparse.Namespace) -> list[str]:
    tick = time.perf_counter()
    template = folder / "pure"
    make_project(template, "pure", PURE, args.rows)
    keys = {scope: make_key(template, scope, scope) for scope in ("control", "read")}
    print(
        f"1. setup (not timed): {args.rows:,}-row project published in "
        f"{time.perf_counter() - tick:.1f} s",
        flush=True,
    )
    return polling_report(args.rows, job_runs(folder, template, keys, args.runs))


def events(folder: Path, args: argparse.Namespace) -> list[str]:
    template = folder / "welcome"
    make_project(template, "welcome", WELCOME, EVENT_ROWS)
    key = make_key(template, "crm", "trigger")
    print("2. setup (not timed): event project published", flush=True)
    return events_report(args, event_runs(folder, template, key, args))


def main() -> int:
    args = arguments()
    if not CXRUN.exists():
        print(f"nothing measured: no cxrun executable at {CXRUN} (run `make setup`)")
        return 0
    tick = time.perf_counter()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-serve-") as temp:
        folder = Path(temp)
        try:
            first = polling(folder, args)
        except NotMeasured as exc:
            first = [f"check: figure 1 measured: FAIL ({exc})"]
        try:
            second = events(folder, args)
        except NotMeasured as exc:
            second = [f"check: figure 2 measured: FAIL ({exc})"]
    print()
    print(
        f"cxrun serve benchmark ({time.perf_counter() - tick:.0f} s in all); a shared machine "
        f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end), so "
        "figures vary from run to run"
    )
    print(*machine(versions()), sep="\n")
    print()
    print(
        f"1. a job's run time (duration_s) under `cxrun serve`: {args.rows:,} rows x (log, tag, "
        f"set), {args.runs} quiet + {args.runs} polled runs in turns, medians"
    )
    print(*first, sep="\n")
    print()
    print(
        f"2. events accepted per second by POST /api/v1/events/{EVENT}: {args.events:,} events a "
        f"run from {args.connections} connections, {args.runs} runs each side in turns, medians"
    )
    print(*second, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
