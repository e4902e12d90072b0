"""Benchmark: SIGKILL cxrun at random moments of a job with an AI step, let `cxrun runtime --once`
take the job over each time, and check that nothing is lost, no finished step is written twice
and only the calls in flight at a kill are paid for again.

Run with `.venv/bin/python bench/crash.py` (or `make bench`); `--rows 2000 --kills 5` is quicker.

What it does, in a temporary folder that is removed at the end:

1. starts the local OpenAI-compatible server of bench/common.py in its own process (127.0.0.1
   only, answers after 50 ms). It counts the calls per record (the last word of the prompt), the
   calls in flight, and keeps each call's start and end. It stops when the benchmark ends
   (terminated in a finally block; it also exits when its stdin, a pipe from here, closes);
2. a project: a Parquet table of ROWS contacts, a provider `bench` (kind openai, api_key
   `secret:BENCH_KEY`, set in the children's environment) pointing at the server, and a spinner
   `s` with a log step, an ai step whose prompt ends with the record's key, and a set step over
   the AI's answer, at concurrency 32; published;
3. starts `cxrun run-now s --json`. Then KILLS times: waits until the server has seen a random
   100-600 more calls (seeded; scaled down if they would not fit in the job; at most DEADLINE_S),
   reads the calls in flight at the server, SIGKILLs the cxrun process, reaps it, and starts
   `cxrun runtime --once`, which takes over the job of the dead owner;
4. lets the last runtime finish and runs `cxrun runtime --once` once more for anything left; then,
   with no cxrun process left, reads the state file (DuckDB, read-only) and checks:
   - lost records: rows of the table without a completed record (must be 0);
   - duplicated finished steps: (record, step) pairs with more than one completed journey entry
     (must be 0), and records that appear twice in cx_records (must be 0);
   - re-paid AI calls: calls beyond one per record, shown beside the sum of the calls in flight
     at the server just before each kill (for information: cxrun's own calls in flight also
     count answers the server sent and requests it had not read yet). The server's trace tells
     which kill lost each re-paid call and how: in flight at the server at the kill; answered by
     the server just before the kill but not yet kept by cxrun; sent by the killed process but
     read by the server only after the kill (told by its connection); or made again with no kill
     in between, which nothing explains (must be 0). No kill may cost more calls than cxrun can
     have in flight: its concurrency.

The exit status is 0 whatever the figures: the report says OK or FAIL for each check.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import random
import subprocess
import sys
import tempfile
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path
from string import Template
from typing import Any

from common import (
    Measured,
    NotMeasured,
    Server,
    child_env,
    first_line,
    last_line,
    machine,
    measure,
    no_proxy,
    write_contacts,
)

CXRUN = Path(sys.executable).parent / "cxrun"
CONCURRENCY = 32
LATENCY_S = 0.05
GAP = (100, 600)  # calls the server sees between two kills, drawn at random
FIT = 0.8  # the gaps add up to at most this share of the rows: the job outlives every kill
DEADLINE_S = 60.0  # the longest wait for a kill's calls (then it kills anyway)
FINISH_S = 900.0  # the longest wait for the last runtime and for the drain
POLL_S = 0.005
MAX_SERVER_S = 3 * 3600  # the server exits by itself after this, whatever happens
API_KEY = "bench-key"
STEPS = 3

CONFIG = Template("""\
name: crash
providers:
  bench: {kind: openai, base_url: "$url", api_key: "secret:BENCH_KEY"}
""")

# The prompt ends with the record's key: the server counts calls per record by it.
SPINNER = Template("""\
name: s
table: contacts
key: id
limits: {concurrency: $concurrency}
steps:
  - id: hello
    log: "Welcome {{ first_name }}"
  - id: draft
    ai: {provider: bench, model: bench-1, output: draft,
         prompt: "Write one line for {{ first_name }}, record {{ id }}"}
  - id: size
    set: {size: "length(draft)"}
""")


@dataclass(frozen=True)
class Kill:
    """One SIGKILL: whom, after how long, and what the server saw just before it."""

    victim: str  # "run-now" or "runtime"
    waited_s: float
    reached: bool  # False: the deadline passed before the calls were seen
    calls: int  # calls the server had seen
    in_flight: int  # calls in flight at the server
    at: float  # time.monotonic() just before the SIGKILL


@dataclass
class Run:
    """The crash run: its kills, how the last runtime and the drain ended, its wall time."""

    kills: list[Kill] = field(default_factory=list)
    ended_early: bool = False  # the job ended by itself before every kill was done
    last_code: int | None = None
    drain: Measured | None = None
    wall_s: float = 0.0
    runtimes: int = 0  # `cxrun runtime --once` processes, the drain included
    claimed: int = 0  # how many of them said they claimed the job
    last_error: str = ""  # what the last runtime said last, when it failed


# ---- the project -----------------------------------------------------------------------------


def environment() -> dict[str, str]:
    return child_env({**no_proxy(), "BENCH_KEY": API_KEY})


def make_project(root: Path, rows: int, url: str) -> None:
    """cxrun.yaml (provider `bench`), spinners/s.yaml and tables/contacts.parquet."""
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text(CONFIG.substitute(url=url))
    (root / "spinners" / "s.yaml").write_text(SPINNER.substitute(concurrency=CONCURRENCY))
    write_contacts(root / "tables" / "contacts.parquet", rows)


def publish(project: Path) -> str | None:
    """None when published, else why not (the first line of what cxrun said)."""
    done = measure([str(CXRUN), "publish", "--json"], project, env=environment())
    if done.code == 0:
        return None
    return f"publish failed: {first_line(done.stderr or done.stdout)}"


# ---- killing and taking over -----------------------------------------------------------------


def gaps(seed: int, kills: int, rows: int) -> list[int]:
    """The calls to wait for before each kill: random in GAP, scaled down when they add up to
    more than FIT of the rows."""
    rng = random.Random(seed)
    drawn = [rng.randint(*GAP) for _ in range(kills)]
    scale = min(1.0, FIT * rows / max(1, sum(drawn)))
    return [max(1, round(gap * scale)) for gap in drawn]


def start(project: Path, logs: Path, *args: str) -> subprocess.Popen[bytes]:
    """A cxrun process in the background, its output in logs/NN-COMMAND.out and .err."""
    number = len(list(logs.glob("*.err"))) + 1
    name = f"{number:02d}-{args[0]}"
    with (logs / f"{name}.out").open("wb") as out, (logs / f"{name}.err").open("wb") as err:
        return subprocess.Popen(
            [str(CXRUN), *args], cwd=project, env=environment(), stdout=out, stderr=err
        )


def wait_for_calls(server: Server, process: subprocess.Popen[bytes], target: int) -> bool | None:
    """Until the server has seen `target` calls (True), the deadline passes (False) or the
    process ends by itself (None)."""
    deadline = time.monotonic() + DEADLINE_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return None
        if server.stats()["calls"] >= target:
            return True
        time.sleep(POLL_S)
    return None if process.poll() is not None else False


def kill(
    process: subprocess.Popen[bytes], server: Server, victim: str, waited: float, reached: bool
) -> Kill:
    """Read what is in flight at the server, SIGKILL the process at once, and reap it."""
    seen = server.stats()
    at = time.monotonic()
    process.kill()
    process.wait()
    return Kill(victim, waited, reached, int(seen["calls"]), int(seen["in_flight"]), at)


def crash_run(project: Path, logs: Path, server: Server, args: argparse.Namespace) -> Run:
    """run-now, then `--kills` times: wait, SIGKILL, take over; then finish and drain."""
    run = Run()
    tick = time.monotonic()
    process = start(project, logs, "run-now", "s", "--json")
    victim = "run-now"
    try:
        for gap in gaps(args.seed, args.kills, args.rows):
            began = time.monotonic()
            reached = wait_for_calls(server, process, server.stats()["calls"] + gap)
            if reached is None:
                run.ended_early = True
                break
            done = kill(process, server, victim, time.monotonic() - began, reached)
            run.kills.append(done)
            print(
                f"kill {len(run.kills)}/{args.kills}: {victim} after {done.waited_s:.2f} s, "
                f"{done.calls:,} calls seen, {done.in_flight} in flight",
                flush=True,
            )
            process, victim = start(project, logs, "runtime", "--once"), "runtime"
        run.last_code = finish(process)
        if run.last_code != 0:  # the newest log is the last process's
            said = sorted(logs.glob("[0-9]*.err"))[-1].read_text(errors="replace")
            run.last_error = f" ({last_line(said)})"
        command = [str(CXRUN), "runtime", "--once"]
        run.drain = measure(command, project, env=environment())
        (logs / "drain-runtime.err").write_text(run.drain.stderr)
        run.wall_s = time.monotonic() - tick
    finally:
        if process.poll() is None:  # the benchmark itself failed: leave no cxrun behind
            process.kill()
            process.wait()
    run.runtimes, run.claimed = claims(logs)
    return run


def finish(process: subprocess.Popen[bytes]) -> int | None:
    """The exit status of the last runtime; None (and killed) if it did not end in FINISH_S."""
    try:
        return process.wait(timeout=FINISH_S)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
        return None


def claims(logs: Path) -> tuple[int, int]:
    """How many `cxrun runtime --once` ran (the drain included), and how many claimed a job."""
    said = [path.read_text(errors="replace") for path in logs.glob("*runtime.err")]
    return len(said), sum(": claimed" in text for text in said)


# ---- what the state and the server say ---------------------------------------------------------

STATE_SQL = """
WITH job AS (SELECT min(job) AS job FROM s.cx_jobs),
records AS (SELECT r.* FROM s.cx_records AS r, job WHERE r.job = job.job),
journey AS (SELECT j.* FROM s.cx_journey AS j, job WHERE j.job = job.job)
SELECT
    (SELECT count(*) FROM s.cx_jobs),
    (SELECT job FROM job),
    (SELECT status FROM s.cx_jobs WHERE job = (SELECT job FROM job)),
    (SELECT count(*) FROM read_parquet($table) AS t ANTI JOIN
        (SELECT key FROM records WHERE status = 'completed') AS r ON r.key = CAST(t.id AS VARCHAR)),
    (SELECT count(*) FROM (SELECT seq, pos FROM journey WHERE status = 'completed'
        GROUP BY seq, pos HAVING count(*) > 1)),
    (SELECT count(*) FROM (SELECT key FROM records GROUP BY key HAVING count(*) > 1)),
    (SELECT count(*) FROM journey WHERE status = 'completed'),
    (SELECT count(*) FROM records WHERE status = 'completed'),
    (SELECT count(*) FROM records WHERE status = 'failed'),
    (SELECT count(*) FROM records WHERE outputs->>'size' IS NOT NULL)
"""
STATE_NAMES = (
    "jobs",
    "job",
    "status",
    "lost",
    "duplicated_steps",
    "duplicated_records",
    "entries",
    "completed",
    "failed",
    "sized",
)


def read_state(project: Path) -> dict[str, Any]:
    """The figures of STATE_SQL, from the state file opened read-only (no cxrun is running)."""
    import duckdb

    state = str(project / ".cxrun" / "state.duckdb").replace("'", "''")
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{state}' AS s (READ_ONLY)")
        table = str(project / "tables" / "contacts.parquet")
        found = con.execute(STATE_SQL, {"table": table}).fetchone()
    assert found is not None
    figures = dict(zip(STATE_NAMES, found, strict=True))
    figures["spool_left"] = len(list((project / ".cxrun" / "spool").glob("job-*/*.jsonl")))
    return figures


Traced = tuple[float, float, int]  # a call in the server's trace: start, end, client port


@dataclass
class Repaid:
    """The re-paid calls by cause, and per kill (index in the kills), from the server's trace."""

    in_flight: int = 0  # in flight at the server at their kill
    answered: int = 0  # answered by the server before their kill, not kept by cxrun yet
    late: int = 0  # sent by the killed process, read by the server only after the kill
    no_kill: int = 0  # made again with no kill in between: nothing explains these
    margin_ms: float = 0.0  # the longest time between such an answer and its kill
    per_kill: Counter[int] = field(default_factory=Counter)

    @property
    def total(self) -> int:
        return self.in_flight + self.answered + self.late + self.no_kill

    def lost(
        self, moments: list[float], ports: defaultdict[int, set[int]], call: Traced, again: float
    ) -> None:
        """Find the kill that lost `call`, whose record was called `again` later."""
        began, ended, port = call
        after = bisect.bisect_left(moments, began)  # the first kill at or after its start
        if after and port in ports[after - 1] and moments[after - 1] < again:
            self.late += 1  # on a connection of the process the kill before killed
            self.per_kill[after - 1] += 1
        elif after == len(moments) or moments[after] >= again:
            self.no_kill += 1
        elif ended > moments[after]:
            self.in_flight += 1
            self.per_kill[after] += 1
        else:
            self.answered += 1
            self.per_kill[after] += 1
            self.margin_ms = max(self.margin_ms, (moments[after] - ended) * 1000)


def repaid(trace: list[list[Any]], kills: list[Kill]) -> Repaid:
    """Every call of a record but its last was lost: by which kill, and how.

    A request that the killed process had sent but that the server read only after the kill is
    told apart by its connection: its client port was one the killed process used before.
    """
    moments = [k.at for k in kills]
    ports: defaultdict[int, set[int]] = defaultdict(set)  # kill → ports of the process it killed
    calls: defaultdict[str, list[Traced]] = defaultdict(list)
    for record, began, ended, port in trace:
        ports[bisect.bisect_left(moments, began)].add(port)
        calls[record].append((began, ended, port))
    found = Repaid()
    for made in calls.values():
        made.sort()
        for call, following in itertools.pairwise(made):
            found.lost(moments, ports, call, following[0])
    return found


# ---- the report --------------------------------------------------------------------------------


def verdict(ok: bool) -> str:
    return "OK" if ok else "FAIL"


def kills_table(run: Run, lost: Repaid) -> list[str]:
    lines = ["  kill  victim    waited s  calls seen  in flight  re-paid"]
    for number, done in enumerate(run.kills):
        late = "" if done.reached else "  (deadline: killed anyway)"
        lines.append(
            f"  {number + 1:>4}  {done.victim:<8} {done.waited_s:>9.2f} {done.calls:>11,} "
            f"{done.in_flight:>10} {lost.per_kill[number]:>8}{late}"
        )
    return lines


def state_checks(rows: int, state: dict[str, Any]) -> list[str]:
    return [
        f"check: lost records (rows without a completed record): {state['lost']:,}: "
        + verdict(state["lost"] == 0),
        "check: duplicated finished steps ((record, step) pairs with more than one completed "
        f"journey entry): {state['duplicated_steps']:,}: "
        + verdict(state["duplicated_steps"] == 0),
        f"check: records appearing twice in cx_records: {state['duplicated_records']:,}: "
        + verdict(state["duplicated_records"] == 0),
    ]


def call_checks(rows: int, stats: dict[str, Any], kills: list[Kill], lost: Repaid) -> list[str]:
    in_flight = sum(k.in_flight for k in kills)
    calls, called = int(stats["calls"]), len(stats["records"])
    beyond = calls - called
    over = sum(1 for n, k in enumerate(kills) if lost.per_kill[n] > k.in_flight)
    most = max(lost.per_kill.values(), default=0)
    lines = [
        f"check: AI calls made: {calls:,} for {rows:,} rows, {called:,} records called at least "
        "once: " + verdict(called == rows),
        f"re-paid calls (beyond one per record): {beyond:,}; {in_flight:,} were in flight at the "
        "server just before the kills (sum)",
        f"  {over} of {len(kills)} kills re-paid more than the calls in flight at the server "
        "just before them",
        f"  the re-paid calls by cause (server trace, {lost.total:,} calls):",
        f"    {lost.in_flight:>6,} in flight at the server at their kill",
        f"    {lost.answered:>6,} answered by the server up to {lost.margin_ms:.1f} ms before "
        "their kill, not yet kept by cxrun",
        f"    {lost.late:>6,} sent by the killed process, read by the server after the kill",
        f"    {lost.no_kill:>6,} made again with no kill in between",
    ]
    if beyond > in_flight and not lost.no_kill:
        lines.append(
            "  note: the excess are calls still in flight inside cxrun at the kill (answered or "
            "sent, not yet kept) that the server no longer or not yet counted as in flight"
        )
    return [
        *lines,
        f"check: re-paid calls with no kill in between: {lost.no_kill:,}: "
        + verdict(lost.no_kill == 0),
        f"check: re-paid calls at each kill at most the concurrency ({CONCURRENCY}): the most "
        f"was {most}: " + verdict(most <= CONCURRENCY),
        f"check: the server's counts: {stats['answered']:,} answered, {stats['bad']} bad, "
        f"{stats['unauthorized']} without a key: "
        + verdict(stats["bad"] == 0 and stats["unauthorized"] == 0),
    ]


def report(
    args: argparse.Namespace, run: Run, state: dict[str, Any], stats: dict[str, Any], port: int
) -> None:
    lost = repaid(stats["trace"], run.kills)
    drain = run.drain
    print()
    print(
        f"cxrun crash benchmark: {args.rows:,} rows x (log, ai, set), server answers after "
        f"{LATENCY_S * 1000:.0f} ms, concurrency {CONCURRENCY}, {args.kills} SIGKILLs "
        f"(seed {args.seed})"
    )
    print(*machine(versions()), sep="\n")
    print(
        f"server: aiohttp.web in its own process on 127.0.0.1:{port}; counts calls per record "
        "(the last word of the prompt) and calls in flight"
    )
    print()
    print(*kills_table(run, lost), sep="\n")
    print()
    ended = " (the job ended before the rest)" if run.ended_early else ""
    print(f"rows: {args.rows:,}")
    print(f"kills done: {len(run.kills)} of {args.kills}{ended}")
    print(f"wall time: {run.wall_s:.1f} s (from run-now to the end of the drain)")
    print(
        f"processes: the last before the drain exit {run.last_code}{run.last_error}, the drain "
        f"exit {drain.code if drain else '?'} ({drain.wall_s if drain else 0:.1f} s); "
        f"{run.claimed} of {run.runtimes} `runtime --once` claimed a job"
    )
    print(
        f"job {state['job']} of {state['jobs']}: {state['status']}, {state['completed']:,} "
        f"records completed, {state['failed']:,} failed, {state['sized']:,} with the set output, "
        f"{state['entries']:,} completed journey entries ({STEPS} steps x {args.rows:,} rows = "
        f"{STEPS * args.rows:,}), {state['spool_left']} spool files left"
    )
    print()
    print(*state_checks(args.rows, state), sep="\n")
    print(*call_checks(args.rows, stats, run.kills, lost), sep="\n")


def versions() -> dict[str, str]:
    found = {}
    for name in ("cxrun", "aiohttp", "duckdb"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


# ---- main ---------------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="table rows (10,000)")
    parser.add_argument("--kills", type=int, default=20, help="SIGKILLs during the job (20)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the kill points (1)")
    args = parser.parse_args()
    if args.rows < 1 or args.kills < 0:
        parser.error("--rows must be at least 1 and --kills at least 0")
    return args


def main() -> int:
    args = arguments()
    if util.find_spec("aiohttp") is None or not CXRUN.exists():
        print("nothing measured: the server needs aiohttp and cxrun must be installed (make setup)")
        return 0
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-crash-") as temp:
        folder = Path(temp)
        try:
            server = Server(folder, LATENCY_S, MAX_SERVER_S, trace=True)
        except NotMeasured as error:
            print(f"nothing measured: {error}")
            return 0
        try:
            project, logs = folder / "project", folder / "logs"
            logs.mkdir()
            make_project(project, args.rows, server.url)
            problem = publish(project)
            if problem:
                print(f"nothing measured: {problem}")
                return 0
            run = crash_run(project, logs, server, args)
            report(args, run, read_state(project), server.stats(detail=True), server.port)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
