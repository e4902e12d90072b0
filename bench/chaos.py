"""Benchmark: hundreds of seeded chaos sequences of real cxrun processes side by side (the driver
of tests/chaos.py), and what they did to the exactly-once promise.

Run with `.venv/bin/python bench/chaos.py` (or `make bench`); `--sequences 20` is quicker, and
`--seed N --sequences 1` replays one sequence (as `CHAOS_SEED=N .venv/bin/pytest
tests/test_chaos.py` does). Each sequence runs in its own temporary project against its worker's
local server on 127.0.0.1 (see tests/chaos.py for what a sequence does and checks).

It prints the sequences, operations, interruptions (kill -9 and Ctrl-C) and jobs; messages
delivered twice without an interruption to explain it (must be 0); AI calls paid again per
interruption, max and mean (at most the concurrency of the process interrupted); records lost
(0); jobs with inconsistent counts (0); each failing seed with the invariants it broke; the
machine and the wall time. The exit status is 0 whatever the figures: the report says OK or
FAIL for each check.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from importlib import metadata
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent / "tests"))

import chaos  # tests/chaos.py, the driver (tests/ is put on the path above)
from common import machine


def arguments() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sequences", type=int, default=200, help="how many (200)")
    parser.add_argument("--seed", type=int, default=1, help="the first seed (1)")
    parser.add_argument("--workers", type=int, default=3, help="sequences at a time (3)")
    parser.add_argument("--operations", type=int, default=12, help="per sequence (12)")
    parser.add_argument("--rows", type=int, default=60, help="table rows (60)")
    parser.add_argument("--keep", type=Path, help="keep the failed sequences' folders here")
    parser.add_argument("--quiet", action="store_true", help="no line per sequence")
    args = parser.parse_args()
    if args.sequences < 1 or args.workers < 1 or args.operations < 1 or args.rows < 10:
        parser.error("--sequences, --workers and --operations must be at least 1, --rows 10")
    return args


def verdict(ok: bool) -> str:
    return "OK" if ok else "FAIL"


def progress(outcome: chaos.Outcome) -> None:
    said = "ok" if outcome.ok else "FAILED: " + ", ".join(outcome.failed_invariants())
    print(
        f"  seed {outcome.seed}: {len(outcome.ops)} operations, {outcome.jobs} jobs, "
        f"{len(outcome.interruptions)} interruptions, {outcome.wall_s:.1f} s: {said}",
        flush=True,
    )


def report(args: argparse.Namespace, outcomes: list[chaos.Outcome], wall: float) -> None:
    pairs = [(i, o.repaid.get(i.op.number, 0)) for o in outcomes for i in o.interruptions]
    repaid = [count for _, count in pairs]
    per_kill = [count for i, count in pairs if i.signal == "kill -9"]
    kills = len(per_kill)
    twice = sum(o.twice_without_kill for o in outcomes)
    lost = sum(o.lost_records for o in outcomes)
    inconsistent = sum(len(o.inconsistent_jobs) for o in outcomes)
    over = [f for o in outcomes for f in o.violations if f.invariant == "re-paid calls per kill"]
    failed = [o for o in outcomes if not o.ok]
    print()
    print(
        f"cxrun chaos benchmark: {len(outcomes)} sequences of {args.operations} operations "
        f"(seeds {args.seed}-{args.seed + args.sequences - 1}), {args.rows} rows, "
        f"concurrency {chaos.CONCURRENCY}, {args.workers} at a time"
    )
    print(*machine(versions()), sep="\n")
    print(f"wall time: {wall:.1f} s ({wall / len(outcomes):.1f} s a sequence)")
    print()
    print(f"operations: {sum(len(o.ops) for o in outcomes):,} (settling included)")
    print(f"interruptions: {len(pairs)} ({kills} kill -9, {len(pairs) - kills} Ctrl-C)")
    print(f"jobs: {sum(o.jobs for o in outcomes):,}")
    print(f"server requests: {sum(o.calls for o in outcomes):,}")
    again = sum(o.twice_after_kill for o in outcomes)
    print(f"messages delivered twice after an interruption (allowed): {again}")
    print()
    print(f"check: messages delivered twice without a kill: {twice}: {verdict(twice == 0)}")
    mean = statistics.mean(repaid) if repaid else 0.0
    print(
        f"check: AI calls paid again per interruption: max {max(repaid, default=0)}, mean "
        f"{mean:.2f} (per kill -9: max {max(per_kill, default=0)}); at most the concurrency "
        f"of the process: {verdict(not over)}"
    )
    print(f"check: records lost: {lost}: {verdict(lost == 0)}")
    print(f"check: jobs with inconsistent counts: {inconsistent}: {verdict(inconsistent == 0)}")
    print(f"check: sequences that broke an invariant: {len(failed)}: {verdict(not failed)}")
    by_invariant: dict[str, list[int]] = {}
    for outcome in failed:
        for invariant in outcome.failed_invariants():
            by_invariant.setdefault(invariant, []).append(outcome.seed)
    for invariant, seeds in sorted(by_invariant.items()):
        shown = ", ".join(map(str, seeds[:20])) + (" ..." if len(seeds) > 20 else "")
        print(f"  {invariant}: {len(seeds)} sequences (seeds {shown})")
    if failed:
        print(f"replay one: .venv/bin/python bench/chaos.py --seed {failed[0].seed} --sequences 1")
    for outcome in failed[:3] if len(outcomes) > 1 else outcomes:
        print()
        print(outcome.report(shown=5))


def versions() -> dict[str, str]:
    found = {}
    for name in ("cxrun", "duckdb", "httpx"):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = "not installed"
    return found


def main() -> int:
    args = arguments()
    if not chaos.EXECUTABLE.exists():
        print("nothing measured: cxrun must be installed (make setup)")
        return 0
    settings = chaos.Settings(operations=args.operations, rows=args.rows)
    seeds = list(range(args.seed, args.seed + args.sequences))
    load = os.getloadavg()[0]
    print(f"{len(seeds)} sequences, {args.workers} at a time (load average {load:.1f})")
    began = time.monotonic()
    done = (lambda outcome: None) if args.quiet else progress
    outcomes = chaos.run_many(seeds, settings, args.workers, args.keep, done)
    report(args, outcomes, time.monotonic() - began)
    return 0


if __name__ == "__main__":
    sys.exit(main())
