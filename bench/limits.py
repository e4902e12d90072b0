"""Benchmark: a provider's `rate` shared by two jobs at once, against a local server.

Run with `.venv/bin/python bench/limits.py` (or `make bench`); `--rows`, `--rate` and `--runs`
change it.

Two spinners, `a` and `b`, each ask the same provider (`rate: 10/s` by default in cxrun.yaml,
concurrency 8 each) once per row of the same table, against the local 50 ms server of
bench/common.py, which notes when each call starts. Each run, in turns:

- **shared**: both jobs queued, then run side by side by one `cxrun runtime --max-jobs 2`: the
  provider's limit is one for both, so together they make `rate` calls a second;
- **two processes** (the figure to compare with): `cxrun run-now a` and `cxrun run-now b`
  started at once, each its own process with its own limit (a limit holds within a process:
  a runtime, or `cxrun serve`), so together they make twice the rate.

For each it prints the calls a second between the first and the last call, the busiest one-second
window, and their ratio to the configured rate. The exit status is 0 whatever the figures.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from common import Server, child_env, machine

CXRUN = Path(sys.executable).parent / "cxrun"
SPINNER = """\
table: people
key: id
limits: {concurrency: 8}
steps:
  - id: draft
    ai: {provider: llm, model: m, prompt: "Write to {{ id }}", output: draft}
"""


def project(root: Path, url: str, rows: int, rate: float) -> None:
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text(
        "name: limits\nproviders:\n"
        f"  llm: {{kind: openai, base_url: '{url}', api_key: 'sk-bench', rate: '{rate:g}/s'}}\n"
    )
    for name in ("a", "b"):
        (root / "spinners" / f"{name}.yaml").write_text(SPINNER)
    people = "id\n" + "".join(f"{i}\n" for i in range(1, rows + 1))
    (root / "tables" / "people.csv").write_text(people)
    cxrun(root, "publish")


def cxrun(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        [str(CXRUN), *args], cwd=root, env=child_env(), capture_output=True, text=True
    )
    if done.returncode != 0:
        raise SystemExit(f"cxrun {' '.join(args)} exited {done.returncode}: {done.stderr}")
    return done


def shared(root: Path) -> None:
    cxrun(root, "run-now", "a", "--detach")
    cxrun(root, "run-now", "b", "--detach")
    cxrun(root, "runtime", "--max-jobs", "2", "--once")


def two_processes(root: Path) -> None:
    both = [
        subprocess.Popen(
            [str(CXRUN), "run-now", name, "--json"],
            cwd=root,
            env=child_env(),
            stdout=subprocess.DEVNULL,
        )
        for name in ("a", "b")
    ]
    for process in both:
        process.wait()


def one_run(folder: Path, how: str, rows: int, rate: float) -> tuple[float, int, int]:
    """(calls a second, busiest second, calls) of one run of `how` on a fresh server."""
    server = Server(folder, 0.05, 3600, trace=True)
    try:
        root = folder / how
        project(root, server.url, rows, rate)
        (shared if how == "shared" else two_processes)(root)
        starts = sorted(call[1] for call in server.stats(detail=True)["trace"])
    finally:
        server.stop()
    span = starts[-1] - starts[0]
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    return (len(starts) - 1) / span if span > 0 else float("nan"), busiest, len(starts)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=60, help="rows of each job (60)")
    parser.add_argument("--rate", type=float, default=10.0, help="the provider's rate (10/s)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each (3)")
    options = parser.parse_args()
    print("\n".join(machine({})))
    print(f"two jobs of {options.rows} calls each, provider rate {options.rate:g}/s, 50 ms server")
    results: dict[str, list[tuple[float, int, int]]] = {"shared": [], "two processes": []}
    for run in range(options.runs):
        for how in results:
            with tempfile.TemporaryDirectory(prefix="cxrun-limits-") as folder:
                results[how].append(one_run(Path(folder), how, options.rows, options.rate))
            rate, busiest, calls = results[how][-1]
            print(f"  run {run + 1} {how:>13}: {rate:5.2f} calls/s, busiest second {busiest}")
    for how, found in results.items():
        rate = statistics.median(r for r, _, _ in found)
        busiest = statistics.median(b for _, b, _ in found)
        calls = {c for _, _, c in found}
        print(
            f"{how:>13}: median {rate:.2f} calls/s ({rate / options.rate:.2f}x the rate), "
            f"busiest second {busiest:g} ({busiest / options.rate:.2f}x), calls per run {calls}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
