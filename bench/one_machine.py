"""Benchmark: ten times the work on one machine, and how each cost grows from 1x to 10x.

Run with `.venv/bin/python bench/one_machine.py` (or `make bench`); `--only pure,reads,io`
picks sections, `--rows`, `--calls` and `--runs` make it quicker.

Three sections, each measured at 1x and at 10x the work, in a temporary folder removed at the end:

1. pure: `cxrun run-now pure --json` (bench/pure.py's spinner: log, tag, set) over --rows and
   10 x --rows rows (1,000,000 and 10,000,000), end to end in a fresh process, against
   bench/pure.py's hand-written DuckDB SQL that writes the same records and journey in one
   transaction of plain `INSERT ... SELECT`s, runs interleaved (the order swapped each round);
   the ratio of the medians, and cxrun's peak RSS (the kernel's peak of the process, and the
   sampled peak of its process tree's summed RSS: the larger is reported). The outcomes of
   cxrun's last job are checked against the baseline's (counts by step and status, tags,
   messages, sums).
2. reads: on the state the first cxrun run of (1) left (one job of 1x or 10x records, three
   journey entries each, copied aside), each read command in a fresh process, --reads times, the
   commands taken in turns: `jobs --json`, `job 1`, `job 1 --json`, `records 1 --page 1000`,
   `journey 1 KEY` (a record of page 1000) with the targets, and `records 1 --page LAST`,
   `live --json` and `doctor` for information.
3. io: --calls and 10 x --calls rows (10,000 and 100,000) x bench/io.py's spinner (log, tag, ai)
   at concurrency 256, against bench/common.py's local server answering after 50 ms, against a
   bare aiohttp loop (bench/io.py's client, the fastest there) at the same concurrency: calls/s,
   CPU s (the process and its children), CPU ms per call, peak RSS, and the ratio.
   On a machine this small the server shares the cores with the client; `--pin` puts the
   server on CPU 0 and the clients (with their threads) on CPU 1, as when the model server is
   another machine, to tell the client's own limit from the sharing of cores.

Every figure is printed at 1x and 10x with its growth; a growth over GROWTH_SLACK times the
work's is marked FASTER THAN THE WORK. The machine's load average is printed with each section:
the machine may be shared, so contender and baseline always run in turns and medians are compared.
The exit status is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import pure
from common import (
    Measured,
    NotMeasured,
    Server,
    load_average,
    machine,
    measure,
    rss_method,
)


def _load_io():  # bench/io.py, under a name that does not hide the standard library's io
    spec = importlib.util.spec_from_file_location("bench_io", Path(__file__).with_name("io.py"))
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    sys.modules["bench_io"] = module  # dataclasses look their module up there
    spec.loader.exec_module(module)
    return module


bench_io = _load_io()

CXRUN = Path(sys.executable).parent / "cxrun"
SCALE = 10
GROWTH_SLACK = 1.25  # a cost that grows more than 1.25 x the work is flagged
TARGET_PURE_RATIO = 1.3
TARGET_PURE_RSS_MB = 500.0
TARGET_READ_S = 0.3
TARGET_IO_RATIO = 1.0
IO_CONCURRENCY = 256
IO_LATENCY_S = 0.05
READ_PAGE = 1000


@dataclass
class Line:
    """One figure at 1x and 10x: the value, how it is shown, an optional target (at most, or at
    least with `floor`), and the work's growth it is compared with (None: not a cost)."""

    label: str
    small: float | None
    large: float | None
    unit: str
    target: float | None = None
    floor: bool = False
    work: float | None = SCALE

    def shown(self, value: float | None) -> str:
        if value is None:
            return "-"
        digits = {"x": 2, " s": 3, " MB": 0, "/s": 0, " ms": 3}.get(self.unit, 2)
        mark = ""
        if self.target is not None:
            good = value >= self.target if self.floor else value <= self.target
            mark = " ok" if good else " MISSED"
        return f"{value:,.{digits}f}{self.unit}{mark}"

    def growth(self) -> str:
        if self.small is None or self.large is None or not self.small or self.work is None:
            return ""
        grown = self.large / self.small
        verdict = "  FASTER THAN THE WORK" if grown > self.work * GROWTH_SLACK else ""
        return f"{grown:.2f}x{verdict}"

    def row(self) -> str:
        target = ""
        if self.target is not None:
            target = f"{'>=' if self.floor else '<='} {self.target:g}{self.unit}"
        return (
            f"  {self.label:<40} {self.shown(self.small):>16} {self.shown(self.large):>18} "
            f"{target:>10}   {self.growth()}"
        )


@dataclass
class Section:
    """A section's report: its title, sizes, lines, the runs it measured and checks."""

    title: str
    sizes: tuple[str, str]
    lines: list[Line] = field(default_factory=list)
    details: list[str] = field(default_factory=list)
    checks: list[str] = field(default_factory=list)

    def print(self) -> None:
        print()
        print(self.title)
        for line in self.details:
            print(line)
        print(f"  {'':<40} {self.sizes[0]:>16} {self.sizes[1]:>18} {'target':>10}   growth")
        for line in [*(line.row() for line in self.lines), *self.checks]:
            print(line)


def median(values: Sequence[float | None]) -> float | None:
    found = [v for v in values if v is not None]
    return statistics.median(found) if found else None


def walls(results: Sequence[Measured]) -> str:
    return " ".join(f"{r.wall_s:.2f}" for r in results)


# ---- 1. pure steps -------------------------------------------------------------------------


@dataclass
class PureRun:
    rows: int
    ours: list[Measured]
    base: list[Measured]
    checks: list[str]
    snapshot: Path  # a project holding the state the first cxrun run left


def pure_size(folder: Path, rows: int, runs: int, memory: str) -> PureRun:
    """bench/pure.py's project of `rows` rows: cxrun and the baseline in turns, `runs` each."""
    project = folder / "project"
    parquet = pure.setup(project, rows)
    ours: list[Measured] = []
    base: list[Measured] = []
    snapshot = folder / "reads"
    job = 0
    for number in range(runs):
        order = ("cxrun", "baseline") if number % 2 == 0 else ("baseline", "cxrun")
        for side in order:
            if side == "baseline":
                base.append(pure.run_baseline(folder, parquet, memory))
                continue
            done = measure([str(CXRUN), "run-now", "pure", "--json"], project, memory, tree=True)
            job = pure.checked_job(done, rows)
            ours.append(done)
            if not snapshot.exists():
                keep_state(project, snapshot)
        print(
            f"  {rows:,} rows, run {number + 1}/{runs}: cxrun {ours[-1].wall_s:.2f} s "
            f"(peak {ours[-1].peak_mb or 0:.0f} MB), baseline {base[-1].wall_s:.2f} s; "
            f"{load_average()}",
            flush=True,
        )
    found = pure.checks(folder, project, job, rows)
    shutil.rmtree(project)
    return PureRun(rows, ours, base, found, snapshot)


def keep_state(project: Path, snapshot: Path) -> None:
    """A project beside `project` with a copy of its state (no cxrun process runs meanwhile)
    and the same table file (a hard link, so that it is the same file to cxrun)."""
    (snapshot / ".cxrun").mkdir(parents=True)
    (snapshot / "tables").mkdir()
    shutil.copy(project / "cxrun.yaml", snapshot / "cxrun.yaml")
    shutil.copytree(project / "spinners", snapshot / "spinners")
    table = project / "tables" / "contacts.parquet"
    (snapshot / "tables" / table.name).hardlink_to(table)
    shutil.copy(project / ".cxrun" / "state.duckdb", snapshot / ".cxrun" / "state.duckdb")


def pure_section(runs: Sequence[PureRun]) -> Section:
    small, large = runs
    section = Section(
        f"pure steps: run-now pure (log, tag, set) vs hand-written SQL, {len(small.ours)} runs "
        "each, interleaved (medians)",
        (f"{small.rows:,} rows", f"{large.rows:,} rows"),
    )
    for run in runs:
        section.details.append(f"  {run.rows:>12,} rows  cxrun wall s: {walls(run.ours)}")
        section.details.append(f"  {'':>17}  baseline wall s: {walls(run.base)}")
        section.checks += [f"  {run.rows:,} rows: {check}" for check in run.checks]

    def of(run: PureRun, side: str, what: Callable[[Measured], float | None]) -> float | None:
        return median([what(m) for m in (run.ours if side == "cxrun" else run.base)])

    def ratio(run: PureRun) -> float | None:
        ours, base = of(run, "cxrun", wall), of(run, "base", wall)
        return ours / base if ours and base else None

    def wall(m: Measured) -> float:
        return m.wall_s

    section.lines = [
        Line("cxrun run-now wall (s)", of(small, "cxrun", wall), of(large, "cxrun", wall), " s"),
        Line("baseline wall (s)", of(small, "base", wall), of(large, "base", wall), " s"),
        Line(
            "ratio cxrun / baseline", ratio(small), ratio(large), "x", TARGET_PURE_RATIO, work=None
        ),
        Line(
            "cxrun peak RSS (process tree)",
            of(small, "cxrun", lambda m: m.peak_mb),
            of(large, "cxrun", lambda m: m.peak_mb),
            " MB",
            TARGET_PURE_RSS_MB,
        ),
        Line(
            "baseline peak RSS",
            of(small, "base", lambda m: m.rss_mb),
            of(large, "base", lambda m: m.rss_mb),
            " MB",
        ),
        Line(
            "cxrun CPU (s)",
            of(small, "cxrun", lambda m: m.cpu_s),
            of(large, "cxrun", lambda m: m.cpu_s),
            " s",
        ),
        Line(
            "baseline CPU (s)",
            of(small, "base", lambda m: m.cpu_s),
            of(large, "base", lambda m: m.cpu_s),
            " s",
        ),
        Line("ratio cxrun / baseline (CPU)", cpu_ratio(small), cpu_ratio(large), "x", work=None),
    ]
    return section


def cpu_ratio(run: PureRun) -> float | None:
    """The ratio of the median CPU times (user + sys): on a shared machine, less sensitive to
    what else runs than the wall time."""
    ours = median([m.cpu_s for m in run.ours])
    base = median([m.cpu_s for m in run.base])
    return ours / base if ours and base else None


# ---- 2. reads ------------------------------------------------------------------------------


def read_commands(project: Path, rows: int) -> list[tuple[str, list[str], float | None]]:
    """(label, arguments, target) of each read command, on job 1 of the snapshot (page 1000,
    or the last page of a smaller job)."""
    last = -(-rows // 50)
    page = str(min(READ_PAGE, last))
    done = measure([str(CXRUN), "records", "1", "--page", page, "--json"], project)
    try:
        key = str(json.loads(done.stdout)[0]["record"])
    except (json.JSONDecodeError, IndexError, KeyError):
        sys.exit(f"records 1 --page {page} --json gave no record: {done.stderr.strip()}")
    named = f"records 1 --page {READ_PAGE}"  # the label names the page of the issue
    return [
        ("jobs --json", ["jobs", "--json"], TARGET_READ_S),
        ("job 1", ["job", "1"], TARGET_READ_S),
        ("job 1 --json", ["job", "1", "--json"], TARGET_READ_S),
        (named, ["records", "1", "--page", page], TARGET_READ_S),
        (f"{named} --json", ["records", "1", "--page", page, "--json"], None),
        ("journey 1 KEY", ["journey", "1", key], TARGET_READ_S),
        ("journey 1 KEY --json", ["journey", "1", key, "--json"], None),
        ("records 1 --page LAST", ["records", "1", "--page", str(last)], None),
        ("live --json", ["live", "--json"], None),
        ("doctor", ["doctor"], None),
    ]


def reads_size(project: Path, rows: int, reads: int) -> dict[str, list[Measured]]:
    """Each read command `reads` times in a fresh process, the commands in turns."""
    commands = read_commands(project, rows)
    times: dict[str, list[Measured]] = {label: [] for label, _, _ in commands}
    for _ in range(reads):
        for label, args, _ in commands:
            done = measure([str(CXRUN), *args], project)
            if done.code not in (0, 1) or (label != "doctor" and done.code != 0):
                sys.exit(f"cxrun {' '.join(args)} failed (exit {done.code}): {done.stderr}")
            times[label].append(done)
    print(f"  reads on {rows:,} records done; {load_average()}", flush=True)
    return times


def reads_section(
    sizes: Sequence[int],
    found: Sequence[dict[str, list[Measured]]],
    targets: dict[str, float | None],
) -> Section:
    section = Section(
        f"reads: each command a fresh process, on a state of one job ({len(found[0]['job 1'])} "
        "runs each, in turns, medians): wall time, then CPU time (user + sys)",
        (f"{sizes[0]:,} records", f"{sizes[1]:,} records"),
    )
    for label, target in targets.items():
        small, large = (median([m.wall_s for m in times[label]]) for times in found)
        section.lines.append(Line(label, small, large, " s", target))
    for label in targets:
        small, large = (median([m.cpu_s for m in times[label]]) for times in found)
        section.lines.append(Line(f"{label} (CPU)", small, large, " s"))
    return section


# ---- 3. I/O --------------------------------------------------------------------------------


@dataclass
class IoRun:
    rows: int
    ours: list[Measured] = field(default_factory=list)
    base: list[Measured] = field(default_factory=list)
    served: list[int] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)


def io_size(folder: Path, server: Server, rows: int, runs: int, memory: str) -> IoRun:
    """bench/io.py's project at concurrency 256: cxrun and the bare aiohttp loop in turns."""
    project = folder / f"io-{rows}"
    bench_io.make_project(project, rows, server.url, IO_CONCURRENCY)
    problem = bench_io.publish(project)
    if problem:
        sys.exit(f"io: {problem}")
    contenders = {
        "cxrun": bench_io.Contender("cxrun", "cxrun run-now io --json", False),
        "aiohttp": bench_io.Contender("aiohttp", "aiohttp (bare loop)", True),
    }
    found = IoRun(rows)
    for contender in contenders.values():  # warm-up: imports and page cache, not counted
        bench_io.run_once(
            contender, server, folder, project, 2 * IO_CONCURRENCY, None, True, IO_CONCURRENCY
        )
    for number in range(runs):
        order = ("cxrun", "aiohttp") if number % 2 == 0 else ("aiohttp", "cxrun")
        for name in order:
            done, served, _, problem, _, _ = bench_io.run_once(
                contenders[name], server, folder, project, rows, memory, False, IO_CONCURRENCY
            )
            (found.ours if name == "cxrun" else found.base).append(done)
            found.served.append(served)
            if problem:
                found.problems.append(f"{name}: {problem}")
        print(
            f"  {rows:,} calls, run {number + 1}/{runs}: cxrun {rows / found.ours[-1].wall_s:,.0f}"
            f"/s, aiohttp {rows / found.base[-1].wall_s:,.0f}/s; {load_average()}",
            flush=True,
        )
    shutil.rmtree(project)
    return found


def io_section(runs: Sequence[IoRun], pinned: bool) -> Section:
    small, large = runs
    where = "; server on CPU 0, clients on CPU 1" if pinned else ""
    section = Section(
        f"I/O: an ai step at concurrency {IO_CONCURRENCY} against a {IO_LATENCY_S * 1000:.0f} ms "
        f"server, vs a bare aiohttp loop ({len(small.ours)} runs each, interleaved, medians; "
        f"no client can beat {IO_CONCURRENCY / IO_LATENCY_S:,.0f} calls/s{where})",
        (f"{small.rows:,} calls", f"{large.rows:,} calls"),
    )

    def rate(run: IoRun, side: list[Measured]) -> float | None:
        wall = median([m.wall_s for m in side])
        return run.rows / wall if wall else None

    def ratio(run: IoRun) -> float | None:
        ours, base = rate(run, run.ours), rate(run, run.base)
        return ours / base if ours and base else None

    def per_call(run: IoRun, side: list[Measured]) -> float | None:
        cpu = median([m.cpu_s for m in side])
        return cpu * 1000 / run.rows if cpu is not None else None

    section.lines = [
        Line("cxrun calls/s", rate(small, small.ours), rate(large, large.ours), "/s", work=None),
        Line("aiohttp calls/s", rate(small, small.base), rate(large, large.base), "/s", work=None),
        Line("ratio cxrun / aiohttp", ratio(small), ratio(large), "x", TARGET_IO_RATIO, True, None),
        Line(
            "cxrun CPU (s)",
            median([m.cpu_s for m in small.ours]),
            median([m.cpu_s for m in large.ours]),
            " s",
        ),
        Line(
            "cxrun CPU per call (ms)",
            per_call(small, small.ours),
            per_call(large, large.ours),
            " ms",
            work=1,
        ),
        Line(
            "aiohttp CPU per call (ms)",
            per_call(small, small.base),
            per_call(large, large.base),
            " ms",
            work=1,
        ),
        Line(
            "cxrun peak RSS (process tree)",
            median([m.peak_mb for m in small.ours]),
            median([m.peak_mb for m in large.ours]),
            " MB",
        ),
        Line(
            "aiohttp peak RSS",
            median([m.peak_mb for m in small.base]),
            median([m.peak_mb for m in large.base]),
            " MB",
        ),
    ]
    for run in runs:
        exact = all(n == run.rows for n in run.served)
        section.checks.append(
            f"  check: {run.rows:,} calls: the server saw exactly {run.rows:,} calls in each run: "
            + ("ok" if exact and not run.problems else f"MISMATCH {run.served} {run.problems}")
        )
    return section


# ---- main ----------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="1x rows (1,000,000)")
    parser.add_argument("--calls", type=int, default=10_000, help="1x AI calls (10,000)")
    parser.add_argument("--runs", type=int, default=3, help="timed runs of each side (3)")
    parser.add_argument("--reads", type=int, default=7, help="runs of each read command (7)")
    parser.add_argument(
        "--only", default="pure,reads,io", help="comma-separated sections (pure,reads,io)"
    )
    parser.add_argument(
        "--pin", action="store_true", help="io: the server on CPU 0, the clients on CPU 1"
    )
    args = parser.parse_args()
    args.sections = {s.strip() for s in args.only.split(",") if s.strip()}
    if args.sections - {"pure", "reads", "io"} or not args.sections:
        parser.error("--only takes pure, reads and io")
    if min(args.rows, args.calls, args.runs, args.reads) < 1:
        parser.error("--rows, --calls, --runs and --reads must be at least 1")
    return args


def run_pure_and_reads(folder: Path, args: argparse.Namespace, memory: str) -> list[Section]:
    sizes = [args.rows, args.rows * SCALE]
    done: list[PureRun] = []
    reads: list[dict[str, list[Measured]]] = []
    targets: dict[str, float | None] = {}
    for rows in sizes:
        print(f"pure steps at {rows:,} rows; {load_average()}", flush=True)
        runs = args.runs if "pure" in args.sections else 1
        run = pure_size(folder / f"pure-{rows}", rows, runs, memory)
        done.append(run)
        if "reads" in args.sections:
            targets = {label: t for label, _, t in read_commands(run.snapshot, rows)}
            reads.append(reads_size(run.snapshot, rows, args.reads))
        shutil.rmtree(folder / f"pure-{rows}")
    found = [pure_section(done)] if "pure" in args.sections else []
    if reads:
        found.append(reads_section(sizes, reads, targets))
    return found


def run_io(folder: Path, args: argparse.Namespace, memory: str) -> list[Section]:
    (folder / "client.py").write_text(bench_io.CLIENT)
    try:
        server = Server(folder, IO_LATENCY_S, 3 * 3600)
    except NotMeasured as error:
        print(f"io: nothing measured: {error}")
        return []
    cpus = os.sched_getaffinity(0)
    try:
        if args.pin and not {0, 1} <= cpus:
            sys.exit("--pin needs CPUs 0 and 1")
        if args.pin:  # the clients are started by this process: they take its CPU
            os.sched_setaffinity(server.process.pid, {0})
            os.sched_setaffinity(0, {1})
        runs = []
        for calls in (args.calls, args.calls * SCALE):
            print(f"I/O at {calls:,} calls; {load_average()}", flush=True)
            runs.append(io_size(folder, server, calls, args.runs, memory))
        return [io_section(runs, args.pin)]
    finally:
        os.sched_setaffinity(0, cpus)
        server.stop()


def compile_cxrun() -> None:
    """cxrun's modules byte-compiled, as pip does when it installs a package: an editable
    install run with PYTHONDONTWRITEBYTECODE set would compile every module at every start."""
    import compileall

    import cxrun

    compileall.compile_dir(Path(cxrun.__file__).parent, quiet=1)


def main() -> int:
    args = arguments()
    if not CXRUN.exists():
        sys.exit(f"no cxrun executable at {CXRUN}: run `make setup` first")
    compile_cxrun()
    memory, method = rss_method()
    started = load_average()
    tick = time.perf_counter()
    sections: list[Section] = []
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-scale-") as temp:
        folder = Path(temp)
        if args.sections & {"pure", "reads"}:
            sections += run_pure_and_reads(folder, args, memory)
        if "io" in args.sections:
            sections += run_io(folder, args, memory)
    print()
    print(f"cxrun at 1x and {SCALE}x the work on one machine ({time.perf_counter() - tick:.0f} s)")
    import duckdb

    print(*machine({"DuckDB": duckdb.__version__}), sep="\n")
    print(f"peak RSS: {method}; process tree: summed VmRSS sampled every 10 ms")
    print(f"at the start: {started}; at the end: {load_average()}")
    for section in sections:
        section.print()
    return 0


if __name__ == "__main__":
    sys.exit(main())
