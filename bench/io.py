"""Benchmark: cxrun's I/O steps (log, tag, ai) against a local 50 ms chat-completions server,
against bare asyncio loops with plain HTTP clients making the same calls.

Run with `.venv/bin/python bench/io.py` (or `make bench`); `--rows` and `--runs` make it quicker,
`--transports default,httpx` runs cxrun once per value of CXRUN_HTTP_TRANSPORT.

What it does, in a temporary folder that is removed at the end:

1. starts the local OpenAI-compatible server of bench/common.py in its own process (aiohttp.web,
   on 127.0.0.1 only, so that it shares no GIL with the client being measured): POST
   /v1/chat/completions waits 50 ms (asyncio.sleep) and answers a chat completion with `usage`;
   GET /stats counts the calls it saw and its own CPU time. It stops when the benchmark ends
   (terminated in a finally block; it also exits by itself when its stdin, a pipe from the
   benchmark, closes, or after MAX_SERVER_S);
2. the baselines, each a fresh Python process (interpreter start-up and imports count, as
   for cxrun) making the same ROWS calls at concurrency 64 from 64 asyncio workers:
   aiohttp's ClientSession (TCPConnector limit 64), plain `httpx.AsyncClient`, httpx with the
   aiohttp transport of `httpx-aiohttp`, the `httpxyz` fork's AsyncClient (each httpx-API
   client with Limits(max_connections=64); the aiohttp transport maps it to its connector limit),
   and httpx over cxrun's own transport (cxrun/io/wire.py) built as cxrun builds it, shown for
   the choice of transport but never taken as the baseline;
3. cxrun: a project with a Parquet table of ROWS contacts, a provider `bench` (kind openai) that
   points at the server, and a spinner `io` with steps log, tag and ai at concurrency 64; publishes
   it (not timed) and times `cxrun run-now io --json` end to end. If publishing fails (the `ai`
   step is not there yet), cxrun is reported as not available and the baselines still are;
4. every contender once on a few rows first (warm-up, not timed), then `--runs` rounds, each
   running every contender once, in an order rotated from round to round; medians are reported;
5. checks that the server saw exactly ROWS calls during each measured run, that every client got
   ROWS answers, and that cxrun's job completed ROWS records with the ai step journaled for each.

The fastest plain client is "the baseline" for the ratio; the figures of the httpx-API clients
decide which transport cxrun uses. No client can beat 64 / 50 ms = 1,280 rows/s. Wall, CPU
(user + sys of the measured process and its children) and peak RSS are measured as
bench/common.py says.
The exit status is 0 whatever the figures, and whichever contender is missing or fails.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from importlib import metadata, util
from pathlib import Path

from common import (
    Measured,
    NotMeasured,
    Server,
    first_line,
    last_line,
    machine,
    measure,
    no_proxy,
    rss_method,
    write_contacts,
)

CXRUN = Path(sys.executable).parent / "cxrun"
CONCURRENCY = 64
LATENCY_S = 0.05
BOUND = CONCURRENCY / LATENCY_S  # rows/s: 64 calls in flight, each answered after 50 ms
TARGET_RATIO = 0.9
WARMUP_ROWS = 256
MAX_SERVER_S = 3 * 3600  # the server exits by itself after this, whatever happens
TRANSPORTS = ("default", "httpx")
API_KEY = "bench-key"

# ---- the baselines ----------------------------------------------------------------------------

# argv: kind, base URL, rows, concurrency. `concurrency` asyncio workers take row numbers from one
# iterator and make one call each; prints {"ok", "failed", "error", "loop_s"} as JSON.
CLIENT = r"""
import asyncio, json, sys, time

kind, base_url, rows, concurrency = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
url = base_url + "/chat/completions"
headers = {"Authorization": "Bearer bench-key"}
names = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Margaret", "Ken", "Frances",
         "John", "Radia", "Tim", "Hedy", "Dennis", "Katherine", "Linus", "Sophie", "Guido",
         "Anita", "Niklaus"]


def body(i):
    prompt = "Write one line for %s." % names[i % len(names)]
    return {"model": "bench-1", "messages": [{"role": "user", "content": prompt}]}


async def calls(call):
    todo = iter(range(rows))
    outcome = {"ok": 0, "failed": 0, "error": None}

    async def worker():
        for i in todo:
            try:
                text = await call(i)
                outcome["ok" if text else "failed"] += 1
            except Exception as error:
                outcome["failed"] += 1
                outcome["error"] = outcome["error"] or repr(error)

    tick = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    outcome["loop_s"] = time.perf_counter() - tick
    return outcome


async def with_aiohttp():
    import aiohttp

    connector = aiohttp.TCPConnector(limit=concurrency)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=connector, headers=headers, timeout=timeout) as s:

        async def call(i):
            async with s.post(url, json=body(i)) as response:
                response.raise_for_status()
                answer = await response.json()
            return answer["choices"][0]["message"]["content"]

        return await calls(call)


async def with_httpx_api():
    if kind == "httpx-wire":  # httpx over cxrun's own transport, as cxrun builds it
        return await with_cxrun_wire()
    if kind == "httpxyz":
        import httpxyz as httpx
    else:
        import httpx
    # max_keepalive_connections stays at its default (20): with 64, plain httpx is slower still.
    limits = httpx.Limits(max_connections=concurrency)
    if kind == "httpx-aiohttp":
        from httpx_aiohttp import AiohttpTransport

        client = httpx.AsyncClient(
            transport=AiohttpTransport(limits=limits), headers=headers, timeout=30
        )
    else:
        client = httpx.AsyncClient(limits=limits, headers=headers, timeout=30)
    async with client:

        async def call(i):
            response = await client.post(url, json=body(i))
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return await calls(call)


async def with_cxrun_wire():
    import httpx

    from cxrun.io.plugins import http_client

    url_ = httpx.URL(url)
    async with http_client(concurrency) as client:

        async def call(i):
            response = await client.post(url_, json=body(i), headers=headers)
            response.raise_for_status()
            return response.json()["choices"][0]["message"]["content"]

        return await calls(call)


outcome = asyncio.run(with_aiohttp() if kind == "aiohttp" else with_httpx_api())
print(json.dumps(outcome))
"""


@dataclass
class Contender:
    """One thing measured: a baseline client or cxrun (with one transport, or the default)."""

    name: str
    label: str
    baseline: bool  # a bare loop (bench client), not cxrun
    needs: tuple[str, ...] = ()  # distributions it imports
    reference: bool = True  # a bare loop that may be "the baseline" (not cxrun's own transport)
    transport: str | None = None  # cxrun: CXRUN_HTTP_TRANSPORT, None to pass through as it is
    runs: list[Measured] = field(default_factory=list)
    loops: list[float] = field(default_factory=list)  # baselines: seconds of the calls alone
    served: list[int] = field(default_factory=list)  # calls the server saw, per measured run
    server_cpu: list[float] = field(default_factory=list)  # the server's CPU s, per measured run
    problem: str | None = None  # why it has no figures (not installed, failed)
    jobs: list[int] = field(default_factory=list)  # cxrun: the measured jobs

    @property
    def ok(self) -> bool:
        return self.problem is None and bool(self.runs)

    def median(self, what: str) -> float | None:
        values = [getattr(r, what) for r in self.runs if getattr(r, what) is not None]
        return statistics.median(values) if values else None

    def rows_per_s(self, rows: int) -> float:
        return rows / statistics.median(r.wall_s for r in self.runs)


def baselines() -> list[Contender]:
    """The baselines, marked not available when a package they import is not installed."""
    found = [
        Contender("aiohttp", "aiohttp ClientSession (bare loop)", True, ("aiohttp",)),
        Contender("httpx", "httpx AsyncClient (httpcore pool)", True, ("httpx",)),
        Contender(
            "httpx-aiohttp",
            "httpx AsyncClient + AiohttpTransport",
            True,
            ("httpx", "aiohttp", "httpx-aiohttp"),
        ),
        Contender("httpxyz", "httpxyz AsyncClient (fork)", True, ("httpxyz",)),
        Contender(
            "httpx-wire",
            "httpx AsyncClient + cxrun's transport",
            True,
            ("httpx", "httptools", "cxrun"),
            reference=False,
        ),
    ]
    for contender in found:
        absent = missing(contender.needs)
        if absent:
            contender.problem = f"not installed: {', '.join(absent)}"
    return found


def missing(names: Sequence[str]) -> list[str]:
    modules = {"httpx-aiohttp": "httpx_aiohttp"}
    return [name for name in names if util.find_spec(modules.get(name, name)) is None]


# ---- cxrun --------------------------------------------------------------------------------------

CONFIG = """\
name: bench
providers:
  bench: {{kind: openai, base_url: "{url}", api_key: "secret:BENCH_KEY"}}
"""

SPINNER = """\
name: io
table: contacts
key: id
limits: {concurrency: 64}
steps:
  - id: hello
    log: "Welcome {{ first_name }}"
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
  - id: draft
    ai: {provider: bench, model: bench-1, prompt: "Write one line for {{ first_name }}.", output: draft}
"""  # noqa: E501


def make_project(root: Path, rows: int, url: str, concurrency: int = CONCURRENCY) -> None:
    """cxrun.yaml (provider `bench`), spinners/io.yaml (at `concurrency`) and
    tables/contacts.parquet."""
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text(CONFIG.format(url=url))
    spinner = SPINNER.replace(f"concurrency: {CONCURRENCY}}}", f"concurrency: {concurrency}}}")
    (root / "spinners" / "io.yaml").write_text(spinner)
    write_contacts(root / "tables" / "contacts.parquet", rows)


def cxrun_env(transport: str | None) -> dict[str, str]:
    env = {"BENCH_KEY": API_KEY}
    if transport is not None:
        env["CXRUN_HTTP_TRANSPORT"] = transport
    return env


def publish(project: Path) -> str | None:
    """None when published, else why not (the first line of what cxrun said)."""
    done = measure([str(CXRUN), "publish", "--json"], project, env=cxrun_env(None))
    if done.code == 0:
        return None
    return f"publish failed: {first_line(done.stderr or done.stdout)}"


def cxrun_contenders(transports: Sequence[str] | None) -> list[Contender]:
    if transports is None:
        return [Contender("cxrun", "cxrun run-now io --json", False)]
    return [
        Contender(f"cxrun/{t}", f"cxrun run-now io --json ({t})", False, transport=t)
        for t in transports
    ]


# ---- running --------------------------------------------------------------------------------


def run_once(
    contender: Contender,
    server: Server,
    folder: Path,
    project: Path,
    rows: int,
    memory: str | None,
    limit: bool = False,
    concurrency: int = CONCURRENCY,
) -> tuple[Measured, int, float, str | None, float | None, int | None]:
    """One run over `rows` rows (cxrun: the whole table, or `--limit rows` with `limit`): what
    was measured, calls the server saw, its CPU s, a problem, the loop time of a baseline and the
    job of cxrun. A baseline makes its calls at `concurrency` (cxrun at its spinner's)."""
    before = server.stats()
    env = no_proxy()
    if contender.baseline:
        command = [
            sys.executable,
            str(folder / "client.py"),
            contender.name,
            server.url,
            str(rows),
            str(concurrency),
        ]
        done = measure(command, folder, memory, env, tree=True)
    else:
        env.update(cxrun_env(contender.transport))
        command = [str(CXRUN), "run-now", "io", "--json"]
        command += ["--limit", str(rows)] if limit else []
        done = measure(command, project, memory, env, tree=True)
    after = server.stats()
    served = int(after["calls"]) - int(before["calls"])
    server_cpu = float(after["cpu_s"]) - float(before["cpu_s"])
    problem, loop_s, job = None, None, None
    try:
        printed = json.loads(done.stdout)
    except json.JSONDecodeError:
        printed = None
    if contender.baseline:
        if done.code != 0 or not isinstance(printed, dict):
            problem = f"exit {done.code}: {last_line(done.stderr)}"
        elif printed["ok"] != rows:
            problem = f"{printed['ok']:,} answers of {rows:,} ({printed['error']})"
        else:
            loop_s = float(printed["loop_s"])
    elif not isinstance(printed, dict):
        problem = f"run-now printed no JSON (exit {done.code}): {last_line(done.stderr)}"
    else:
        job = int(printed.get("job", 0))
        completed = printed.get("completed")
        if done.code != 0 or printed.get("status") != "completed" or completed != rows:
            problem = (
                f"run-now (exit {done.code}) job {job} {printed.get('status')}, "
                f"{completed} of {rows:,} records completed"
            )
    return done, served, server_cpu, problem, loop_s, job


def warm_up(contenders: Sequence[Contender], server: Server, folder: Path, project: Path) -> None:
    """Every contender once on WARMUP_ROWS rows (imports and page cache), not counted."""
    for contender in contenders:
        if contender.problem is None:
            _, _, _, problem, _, _ = run_once(
                contender, server, folder, project, WARMUP_ROWS, None, limit=True
            )
            if problem:
                contender.problem = f"warm-up: {problem}"


def rounds(
    contenders: Sequence[Contender],
    server: Server,
    folder: Path,
    project: Path,
    args: argparse.Namespace,
    memory: str,
) -> None:
    """`--runs` rounds; each runs every available contender once, the order rotated each round."""
    for number in range(args.runs):
        shift = number % len(contenders)
        order = [*contenders[shift:], *contenders[:shift]]
        walls = []
        for contender in order:
            if contender.problem is not None:
                continue
            done, served, cpu, problem, loop_s, job = run_once(
                contender, server, folder, project, args.rows, memory
            )
            if problem:
                contender.problem = problem
                walls.append(f"{contender.name} failed")
                continue
            contender.runs.append(done)
            contender.served.append(served)
            contender.server_cpu.append(cpu)
            if loop_s is not None:
                contender.loops.append(loop_s)
            if job is not None:
                contender.jobs.append(job)
            walls.append(f"{contender.name} {args.rows / done.wall_s:,.0f}")
        print(f"run {number + 1}/{args.runs} (rows/s): {', '.join(walls)}", flush=True)


# ---- checks and report -------------------------------------------------------------------------

JOURNAL_SQL = """
SELECT
    (SELECT count(*) FROM s.cx_records WHERE job = $job AND status = 'completed'),
    (SELECT count(*) FROM s.cx_records WHERE job = $job AND outputs->>'draft' IS NOT NULL),
    (SELECT count(*) FROM s.cx_journey WHERE job = $job AND step = 'draft'
        AND status = 'completed')
"""


def journal_check(project: Path, contender: Contender, rows: int) -> str:
    """Whether cxrun's last measured job recorded every row, with the ai step's output."""
    import duckdb

    job = contender.jobs[-1]
    try:
        with duckdb.connect() as con:
            state = str(project / ".cxrun" / "state.duckdb").replace("'", "''")
            con.execute(f"ATTACH '{state}' AS s (READ_ONLY)")
            found = con.execute(JOURNAL_SQL, {"job": job}).fetchone()
    except duckdb.Error as error:
        return f"check: {contender.name} job {job} journal: could not read the state ({error})"
    assert found is not None
    records, drafts, journeyed = found
    verdict = "ok" if records == drafts == journeyed == rows else "MISMATCH"
    return (
        f"check: {contender.name} job {job}: {records:,} records completed, {drafts:,} with an "
        f"output `draft`, {journeyed:,} `draft` journey entries completed: {verdict}"
    )


def versions() -> dict[str, str]:
    found = {}
    for name in ("aiohttp", "httpx", "httpx-aiohttp", "httpxyz", "duckdb"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def runs_line(contender: Contender, rows: int) -> str:
    walls = " ".join(f"{r.wall_s:.2f}" for r in contender.runs)
    cpus = " ".join(f"{r.cpu_s:.2f}" for r in contender.runs)
    peaks = " ".join("?" if r.rss_mb is None else f"{r.rss_mb:.0f}" for r in contender.runs)
    loops = ""
    if contender.loops:
        loops = "   calls alone rows/s: " + " ".join(f"{rows / s:,.0f}" for s in contender.loops)
    return f"  {contender.name:<14} wall s: {walls}   CPU s: {cpus}   peak RSS MB: {peaks}{loops}"


def summary_line(contender: Contender, rows: int, baseline: Contender | None) -> str:
    label = f"{contender.label:<40}"
    if not contender.ok:
        return f"  {label} not available ({contender.problem or 'not run'})"
    speed = contender.rows_per_s(rows)
    cpu = contender.median("cpu_s") or 0.0
    rss = contender.median("rss_mb")
    shown_rss = "?" if rss is None else f"{rss:.0f} MB"
    wall = statistics.median(r.wall_s for r in contender.runs)
    server = statistics.median(contender.server_cpu) / wall * 100
    ratio = f"{speed / baseline.rows_per_s(rows):.2f}x" if baseline else "?"
    mark = "  <- the baseline" if contender is baseline else ""
    if not contender.reference:
        mark = "  (cxrun's transport: not a baseline)"
    return (
        f"  {label} {speed:>7,.0f} {wall:>7.2f} {cpu:>6.2f} {shown_rss:>8} "
        f"{server:>7.0f}% {ratio:>8}{mark}"
    )


def report(
    args: argparse.Namespace,
    contenders: Sequence[Contender],
    method: str,
    server: Server,
    checks: Sequence[str],
) -> None:
    rows = args.rows
    baselines = [c for c in contenders if c.baseline and c.ok]
    references = [c for c in baselines if c.reference]
    baseline = max(references, key=lambda c: c.rows_per_s(rows), default=None)
    print()
    print(
        f"cxrun I/O-step benchmark: {rows:,} rows x (log, tag, ai), server answers after "
        f"{LATENCY_S * 1000:.0f} ms, concurrency {CONCURRENCY}, {args.runs} runs each "
        "(medians, interleaved)"
    )
    print(*machine(versions()), sep="\n")
    print(f"peak RSS: {method}")
    print("CPU: user + sys of the measured process and its children (getrusage RUSAGE_CHILDREN)")
    print(
        f"server: aiohttp.web in its own process on 127.0.0.1:{server.port}; 'server CPU' is its "
        "CPU time over the run's wall time (100% = one core)"
    )
    print()
    print(*(runs_line(c, rows) for c in contenders if c.runs), sep="\n")
    print()
    print(f"  {'contender':<40}  rows/s  wall s  CPU s peak RSS  server  vs base")
    print(*(summary_line(c, rows, baseline) for c in contenders if c.baseline), sep="\n")
    print(*(summary_line(c, rows, baseline) for c in contenders if not c.baseline), sep="\n")
    print()
    if baseline is None:
        print("  no baseline ran: no ratio")
    else:
        best = baseline.rows_per_s(rows)
        print(
            f"  bound: {CONCURRENCY} calls in flight / {LATENCY_S * 1000:.0f} ms = {BOUND:,.0f} "
            f"rows/s; the baseline ({baseline.name}) reached {best / BOUND:.0%} of it"
        )
        httpx_api = [c for c in baselines if c.name != "aiohttp"]
        if httpx_api:
            fastest = max(httpx_api, key=lambda c: c.rows_per_s(rows))
            print(
                f"  fastest client with the httpx API: {fastest.name}, "
                f"{fastest.rows_per_s(rows):,.0f} rows/s ({fastest.rows_per_s(rows) / best:.2f}x "
                "the baseline)"
            )
        for contender in contenders:
            if contender.baseline:
                continue
            target = f"target >= {TARGET_RATIO:g}x"
            title = f"ratio {contender.name} / baseline (rows/s)"
            if contender.ok:
                ratio = contender.rows_per_s(rows) / best
                verdict = "ok" if ratio >= TARGET_RATIO else "under target"
                print(f"  {title:<40} {ratio:>6.2f}x   {target}   {verdict}")
            else:
                print(f"  {title:<40} {'-':>7}   {target}   not measured")
    print()
    print(*checks, sep="\n")


def server_checks(contenders: Sequence[Contender], server: Server, rows: int) -> list[str]:
    stats = server.stats()
    seen = [n for c in contenders for n in c.served]
    exact = all(n == rows for n in seen)
    lines = [
        f"check: the server saw exactly {rows:,} calls in each of the {len(seen)} measured runs: "
        + ("ok" if exact and seen else "MISMATCH " + str(seen) if seen else "no run"),
        f"check: server totals (warm-up included): {stats['calls']:,} calls, "
        f"{stats['answered']:,} answered, {stats['bad']} bad, {stats['unauthorized']} without "
        "a key: " + ("ok" if stats["calls"] == stats["answered"] and not stats["bad"] else "BAD"),
    ]
    measured = [c for c in contenders if c.baseline and c.runs]
    if measured:
        lines.append(
            f"check: every baseline run got {rows:,} answers: ok "
            f"({', '.join(c.name for c in measured)})"
        )
    return lines


# ---- main ---------------------------------------------------------------------------------------


def transports(value: str) -> list[str]:
    chosen = [t.strip() for t in value.split(",") if t.strip()]
    wrong = [t for t in chosen if t not in TRANSPORTS]
    if wrong or not chosen:
        raise argparse.ArgumentTypeError(f"choose among {', '.join(TRANSPORTS)}")
    return chosen


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000, help="table rows and calls (10,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each contender (3)")
    parser.add_argument(
        "--transports",
        type=transports,
        nargs="?",
        const=list(TRANSPORTS),
        help="run cxrun once per CXRUN_HTTP_TRANSPORT value in this comma-separated list "
        f"({','.join(TRANSPORTS)} without a list); without the option, cxrun runs with the "
        "environment as it is",
    )
    parser.add_argument(
        "--skip",
        default="",
        help="comma-separated baselines not to run, e.g. httpx (about 90 s a run) for a quick look",
    )
    args = parser.parse_args()
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be at least 1")
    return args


def setup_cxrun(project: Path, rows: int, url: str, contenders: Sequence[Contender]) -> None:
    """The project, published (not timed); marks the cxrun contenders not available on failure."""
    problem = None
    if not CXRUN.exists():
        problem = f"no cxrun executable at {CXRUN}: run `make setup` first"
    else:
        tick = time.perf_counter()
        make_project(project, rows, url)
        problem = publish(project)
        took = time.perf_counter() - tick
        if problem is None:
            print(
                f"setup (not timed): {rows:,}-row table generated, published in {took:.1f} s",
                flush=True,
            )
        else:
            print(f"cxrun: not available ({problem})", flush=True)
    for contender in contenders:
        contender.problem = problem


def main() -> int:
    args = arguments()
    memory, method = rss_method()
    ours = cxrun_contenders(args.transports)
    skipped = {name.strip() for name in args.skip.split(",") if name.strip()}
    contenders = [c for c in baselines() if c.name not in skipped] + ours
    if missing(["aiohttp"]):
        print("nothing measured: the benchmark server needs aiohttp (`make setup` installs it)")
        return 0
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-io-") as temp:
        folder = Path(temp)
        project = folder / "project"
        (folder / "client.py").write_text(CLIENT)
        try:
            server = Server(folder, LATENCY_S, MAX_SERVER_S)
        except NotMeasured as error:
            print(f"nothing measured: {error}")
            return 0
        try:
            setup_cxrun(project, args.rows, server.url, ours)
            warm_up(contenders, server, folder, project)
            rounds(contenders, server, folder, project, args, memory)
            checks = server_checks(contenders, server, args.rows)
            checks += [journal_check(project, c, args.rows) for c in ours if c.ok and c.jobs]
            report(args, contenders, method, server, checks)
        finally:
            server.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
