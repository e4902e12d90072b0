"""Benchmark: cxrun's pure steps (log, tag, set) over a large table, against hand-written SQL.

Run with `.venv/bin/python bench/pure.py` (or `make bench`); `--rows` and `--runs` make it quicker.

What it does, in a temporary folder that is removed at the end:

1. generates a Parquet table of realistic contacts with DuckDB itself, and a project whose spinner
   `pure` has exactly three steps: `log` "Welcome {{ first_name }}", `tag` vip when
   `lifetime_value > 1000`, and `set` score = `lifetime_value / 100`; publishes it (not timed:
   publishing loads the table into the state);
2. times `cxrun run-now pure --json` end to end in a subprocess, `--runs` times, and checks that
   the job it prints is completed with every row completed;
3. times, as many times and interleaved with those runs, a baseline: a `python -c` process that
   imports DuckDB and writes the same records and journey entries into a fresh DuckDB file with
   the same two tables (`cx_records`, `cx_journey`) as cxrun's state, reading the same Parquet
   file, with hand-written SQL. Interpreter start-up and the DuckDB import count for both;
4. times `cxrun --help` and `cxrun jobs --json` (on the state the runs left), 10 times each;
5. checks that the baseline wrote what cxrun wrote (counts per step and status, tags, outputs).

Wall time, CPU time and peak memory are measured as bench/common.py says (peak RSS by GNU
`/usr/bin/time -f %M`, or by polling /proc/PID/status without it).

The exit status is 0 whatever the figures: each figure is marked "ok" or "over target".
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import duckdb
from common import Measured, machine, measure, rss_method, write_contacts

REPO = Path(__file__).resolve().parent.parent
CXRUN = Path(sys.executable).parent / "cxrun"
QUICK_RUNS = 10

TARGET_RATIO = 2.0
TARGET_RSS_MB = 300.0
TARGET_HELP_S = 0.3
TARGET_JOBS_S = 0.5

SPINNER = """\
name: pure
table: contacts
key: id
fields:
  first_name: {}
  lifetime_value: {}
steps:
  - id: hello
    log: "Welcome {{ first_name }}"
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
  - id: score
    set:
      score: "lifetime_value / 100"
"""

# The records and journey tables exactly as cxrun's state has them now (every column its
# migrations added), read from a state made by cxrun itself.
STATE_TABLE_NAMES = ("cx_records", "cx_journey")


def state_tables() -> tuple[str, list[int]]:
    """The CREATE TABLE statements of cx_records and cx_journey in a new cxrun state, and how
    many columns each has."""
    import duckdb

    from cxrun.store import State

    with tempfile.TemporaryDirectory(prefix="cxrun-schema-") as folder:
        state = State(Path(folder) / ".cxrun")
        with state.write():
            pass
        with duckdb.connect(str(state.path), read_only=True) as con:
            found = con.execute(
                "SELECT table_name, sql, column_count FROM duckdb_tables() "
                "WHERE table_name IN (?, ?)",
                list(STATE_TABLE_NAMES),
            ).fetchall()
    statements = {name: (sql, count) for name, sql, count in found}
    sql = "\n".join(statements[name][0] for name in STATE_TABLE_NAMES)
    return sql, [statements[name][1] for name in STATE_TABLE_NAMES]


# The baseline process: argv = database, parquet file, schema. One transaction, one statement for
# the records and one for the journey entries, from the rows computed once.
BASELINE = """
import sys, time
from datetime import UTC, datetime
import duckdb

database, parquet, schema = sys.argv[1:4]
tick = time.perf_counter()
started = datetime.now(UTC).replace(tzinfo=None)
con = duckdb.connect(database)
con.execute(schema)
con.execute("BEGIN")
con.execute(
    "CREATE TEMP TABLE batch AS SELECT row_number() OVER () - 1 AS seq, "
    "CAST(id AS VARCHAR) AS key, 'Welcome ' || first_name AS message, "
    "coalesce(lifetime_value > 1000, false) AS vip, lifetime_value / 100 AS score "
    "FROM read_parquet(?)",
    [parquet],
)
rows = con.execute("SELECT count(*) FROM batch").fetchone()[0]
per_row_ms = (time.perf_counter() - tick) * 1000 / max(rows, 1)
ended = datetime.now(UTC).replace(tzinfo=None)
window = [started, ended, per_row_ms]
con.execute(
    "INSERT INTO cx_records (job, seq, key, status, tags, outputs, error, failed_step, attempts, "
    "started_at, ended_at, duration_ms) SELECT 1, seq, key, 'completed', "
    "CASE WHEN vip THEN ['vip'] ELSE CAST([] AS VARCHAR[]) END, json_object('score', score), "
    "NULL, NULL, 1, ?, ?, ? FROM batch",
    window,
)
con.execute(
    "INSERT INTO cx_journey (job, seq, pos, step, attempt, status, message, output, error, "
    "started_at, ended_at, duration_ms) "
    "SELECT 1, seq, pos, step, 1, status, message, output, NULL, ?, ?, ? "
    "FROM ("
    " SELECT seq, 0 AS pos, 'hello' AS step, 'completed' AS status, message, "
    "  CAST(NULL AS JSON) AS output FROM batch"
    " UNION ALL SELECT seq, 1, 'vip', CASE WHEN vip THEN 'completed' ELSE 'skipped' END, "
    "  CASE WHEN vip THEN 'tagged vip' ELSE 'skipped: when is not true' END, NULL FROM batch"
    " UNION ALL SELECT seq, 2, 'score', 'completed', 'set score', json_object('score', score) "
    "  FROM batch)",
    [started, ended, per_row_ms / 3],
)
con.execute("COMMIT")
con.close()
"""


@dataclass(frozen=True)
class Figure:
    label: str
    value: float
    unit: str
    target: float

    def line(self) -> str:
        verdict = "ok" if self.value <= self.target else "over target"
        digits = {" MB": 0, "x": 2}.get(self.unit, 3)
        shown = f"{self.value:.{digits}f}{self.unit}"
        if self.value > self.target and float(f"{self.value:.{digits}f}") <= self.target:
            shown = f"{self.value:.{digits + 2}f}{self.unit}"  # over by less than it shows
        target = f"{self.target:g}{self.unit}"
        return f"  {self.label:<36} {shown:>10}   target <= {target:<8} {verdict}"


# ---- the project and the runs -------------------------------------------------------------


def make_project(root: Path, rows: int) -> Path:
    """cxrun.yaml, spinners/pure.yaml and tables/contacts.parquet (generated by DuckDB)."""
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text("name: bench\n")
    (root / "spinners" / "pure.yaml").write_text(SPINNER)
    parquet = root / "tables" / "contacts.parquet"
    write_contacts(parquet, rows)
    return parquet


def cxrun(project: Path, *args: str, memory: str | None = None) -> Measured:
    return measure([str(CXRUN), *args], project, memory)


def publish(project: Path) -> None:
    done = cxrun(project, "publish", "--json")
    if done.code != 0:
        sys.exit(f"publish failed (exit {done.code}): {done.stderr.strip()}")


def run_cxrun(project: Path, rows: int, memory: str) -> tuple[Measured, int]:
    """One `run-now pure --json`; exits the benchmark if the job is not entirely completed."""
    done = cxrun(project, "run-now", "pure", "--json", memory=memory)
    return done, checked_job(done, rows)


def checked_job(done: Measured, rows: int) -> int:
    """The job a `run-now --json` printed; stops the benchmark unless all `rows` completed."""
    try:
        job = json.loads(done.stdout)
    except json.JSONDecodeError:
        sys.exit(f"run-now printed no JSON (exit {done.code}): {done.stderr.strip()}")
    if done.code != 0 or job["status"] != "completed" or job["completed"] != rows:
        sys.exit(f"run-now did not complete {rows} records (exit {done.code}): {job}")
    return int(job["job"])


def run_baseline(folder: Path, parquet: Path, memory: str) -> Measured:
    database = folder / "baseline.duckdb"
    database.unlink(missing_ok=True)
    command = [sys.executable, "-c", BASELINE, str(database), str(parquet), _tables()]
    done = measure(command, folder, memory)
    if done.code != 0:
        sys.exit(f"baseline failed (exit {done.code}): {done.stderr.strip()}")
    return done


def quick(project: Path, args: Sequence[str], check: Callable[[Measured], bool]) -> list[float]:
    """Wall times of QUICK_RUNS runs of a short command."""
    times = []
    for _ in range(QUICK_RUNS):
        done = cxrun(project, *args)
        if not check(done):
            sys.exit(f"cxrun {' '.join(args)} failed (exit {done.code}): {done.stderr.strip()}")
        times.append(done.wall_s)
    return times


# ---- checks and report --------------------------------------------------------------------


_made: list[tuple[str, list[int]]] = []


def _tables() -> str:
    if not _made:
        _made.append(state_tables())
    return _made[0][0]


def schema_line() -> str:
    """The baseline's tables, as said in the report."""
    _tables()
    columns = " and ".join(map(str, _made[0][1]))
    return f"the state's own cx_records and cx_journey ({columns} columns, NULL where not set)"


OUTCOMES_SQL = """
SELECT 'record', status, count(*), count(*) FILTER (WHERE list_contains(tags, 'vip')),
       round(sum(CAST(outputs->>'score' AS DOUBLE)), 2) FROM {db}.cx_records {where} GROUP BY status
UNION ALL
SELECT step, status, count(*), count(DISTINCT message),
       round(sum(CAST(output->>'score' AS DOUBLE)), 2) FROM {db}.cx_journey {where}
GROUP BY step, status ORDER BY 1, 2
"""


def outcome_differences(project: Path, job: int, baseline: Path) -> list[str]:
    """Counts by step and status, tags, messages and score sums: cxrun's last job vs the baseline.

    Called after every cxrun process has ended, so opening the state file read-only is safe.
    Each line that differs is returned as "cxrun (...) != baseline (...)".
    """
    with duckdb.connect() as con:
        con.execute(f"ATTACH '{project / '.cxrun' / 'state.duckdb'}' AS s (READ_ONLY)")
        con.execute(f"ATTACH '{baseline}' AS b (READ_ONLY)")
        ours = con.execute(OUTCOMES_SQL.format(db="s", where=f"WHERE job = {int(job)}")).fetchall()
        theirs = con.execute(OUTCOMES_SQL.format(db="b", where="")).fetchall()
    keys = sorted({row[:2] for row in ours + theirs})
    mine, base = {r[:2]: r for r in ours}, {r[:2]: r for r in theirs}
    return [f"cxrun {mine.get(k)} != baseline {base.get(k)}" for k in keys if mine[k] != base[k]]


def runs_line(label: str, results: Sequence[Measured]) -> str:
    walls = " ".join(f"{r.wall_s:.2f}" for r in results)
    peaks = " ".join("?" if r.rss_mb is None else f"{r.rss_mb:.0f}" for r in results)
    return f"  {label:<10} wall s: {walls}   peak RSS MB: {peaks}"


def summary_line(label: str, results: Sequence[Measured], rows: int) -> str:
    wall = statistics.median(r.wall_s for r in results)
    peaks = [r.rss_mb for r in results if r.rss_mb is not None]
    rss = f"{statistics.median(peaks):.0f} MB" if peaks else "?"
    return f"  {label:<36} {wall:>8.3f} s {rows / wall:>13,.0f} rows/s   peak RSS {rss}"


def report(
    rows: int,
    ours: list[Measured],
    base: list[Measured],
    help_s: list[float],
    jobs_s: list[float],
    rss_method: str,
    checks: list[str],
) -> None:
    ratio = statistics.median(r.wall_s for r in ours) / statistics.median(r.wall_s for r in base)
    peaks = [r.rss_mb for r in ours if r.rss_mb is not None]
    print()
    print(f"cxrun pure-step benchmark: {rows:,} rows, {len(ours)} runs each (medians)")
    print(*machine({"DuckDB": duckdb.__version__}), sep="\n")
    print(f"peak RSS: {rss_method}")
    print()
    print(runs_line("cxrun", ours))
    print(runs_line("baseline", base))
    print()
    print(summary_line("cxrun run-now pure --json", ours, rows))
    print(summary_line("baseline (hand-written DuckDB SQL)", base, rows))
    print()
    figures = [Figure("ratio cxrun / baseline (wall)", ratio, "x", TARGET_RATIO)]
    if peaks:
        figures.append(
            Figure("cxrun run-now peak RSS", statistics.median(peaks), " MB", TARGET_RSS_MB)
        )
    figures += [
        Figure(f"cxrun --help ({QUICK_RUNS} runs)", statistics.median(help_s), " s", TARGET_HELP_S),
        Figure(
            f"cxrun jobs --json ({QUICK_RUNS} runs, {len(ours)} jobs)",
            statistics.median(jobs_s),
            " s",
            TARGET_JOBS_S,
        ),
    ]
    print(*(f.line() for f in figures), sep="\n")
    if not peaks:
        print("  cxrun run-now peak RSS                      unknown (no GNU time, no /proc)")
    print()
    print(*checks, sep="\n")


# ---- main ---------------------------------------------------------------------------------


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000, help="table rows (1,000,000)")
    parser.add_argument("--runs", type=int, default=5, help="timed runs of each side (5)")
    args = parser.parse_args()
    if args.rows < 1 or args.runs < 1:
        parser.error("--rows and --runs must be at least 1")
    return args


def setup(project: Path, rows: int) -> Path:
    """The project, published; prints how long that took (not part of the figures)."""
    tick = time.perf_counter()
    parquet = make_project(project, rows)
    generated = time.perf_counter() - tick
    tick = time.perf_counter()
    publish(project)
    published = time.perf_counter() - tick
    size = parquet.stat().st_size / 2**20
    print(
        f"setup (not timed): {rows:,}-row Parquet ({size:.0f} MB) generated in {generated:.1f} s, "
        f"published (table loaded) in {published:.1f} s",
        flush=True,
    )
    return parquet


def interleaved_runs(
    folder: Path, project: Path, parquet: Path, args: argparse.Namespace, memory: str
) -> tuple[list[Measured], list[Measured], int]:
    """cxrun and the baseline in turns, so that both see the same machine; and the last job."""
    ours: list[Measured] = []
    base: list[Measured] = []
    job = 0
    for number in range(1, args.runs + 1):
        done, job = run_cxrun(project, args.rows, memory)
        ours.append(done)
        base.append(run_baseline(folder, parquet, memory))
        print(
            f"run {number}/{args.runs}: cxrun {ours[-1].wall_s:.2f} s, "
            f"baseline {base[-1].wall_s:.2f} s",
            flush=True,
        )
    return ours, base, job


def checks(folder: Path, project: Path, job: int, rows: int) -> list[str]:
    differences = outcome_differences(project, job, folder / "baseline.duckdb")
    same_schema = schema_line()
    return [
        f"check: every cxrun job completed {rows:,} of {rows:,} records: ok",
        "check: baseline records and journey equal cxrun's (counts by step and status, "
        f"tags, distinct messages, score sums): {'MISMATCH' if differences else 'ok'}",
        *(
            f"  (step, status, rows, vip tags or distinct messages, score sum): {d}"
            for d in differences
        ),
        f"check: baseline tables: {same_schema}",
    ]


def main() -> int:
    args = arguments()
    if not CXRUN.exists():
        sys.exit(f"no cxrun executable at {CXRUN}: run `make setup` first")
    memory, method = rss_method()
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-") as temp:
        folder = Path(temp)
        project = folder / "project"
        parquet = setup(project, args.rows)
        ours, base, job = interleaved_runs(folder, project, parquet, args, memory)
        help_s = quick(project, ["--help"], lambda m: m.code == 0 and "run-now" in m.stdout)
        jobs_s = quick(
            project,
            ["jobs", "--json"],
            lambda m: m.code == 0 and len(json.loads(m.stdout)) == args.runs,
        )
        found = checks(folder, project, job, args.rows)
        report(args.rows, ours, base, help_s, jobs_s, method, found)
    return 0


if __name__ == "__main__":
    sys.exit(main())
