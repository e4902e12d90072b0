"""Benchmark: a job's run time under `cxrun serve` with the console open on it, against the same
job with no client.

Run with `.venv/bin/python bench/console.py` (or `make bench`); `--rows` and `--runs` make it
quicker.

What it does, in a temporary folder that is removed at the end (every server on 127.0.0.1, on a
free port, in its own process): a project whose spinner `pure` has the three pure steps of
bench/pure.py over a Parquet table of ROWS contacts (bench/serve.py's set-up), published, with a
control key and a read key. Each run takes a fresh copy of it, starts `cxrun serve --port 0` (the
runtime inside) and starts the job with POST /api/v1/spinners/pure/runs. A "quiet" run leaves the
server alone until the job ended. A "console" run is an operator with two tabs open, signed in
with the read key (its cookie): the Jobs page with the job selected (`GET /?job=N`, loaded once,
as the page never refreshes by itself) and Live Ops, which fetches its cards
(`GET /fragments/live`) every 5 seconds as its script does. To load the server more than the
issue asks, the operator also presses Refresh on the Jobs page (`GET /fragments/jobs?job=N`)
every 5 seconds. The figure is the job's duration_s (from its claim by the runtime to its end).
Quiet and console runs alternate; the report gives the medians and the ratio console / quiet
(target at most 1.10). Checks: every job completed every row; every page answered 200.

The client runs in this process, on the same cores as the server it measures. The exit status
is 0 whatever the figures; the report says OK or FAIL for each check.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import statistics
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from common import last_line, machine
from serve import (
    CXRUN,
    PURE,
    RUN_DEADLINE_S,
    UNFINISHED,
    NotMeasured,
    Served,
    client,
    fresh_copy,
    make_key,
    make_project,
    verdict,
    versions,
)

EVERY_S = 5.0  # Live Ops' refresh, and the operator's Refresh on the Jobs page
TARGET_RATIO = 1.10
COOKIE = "cxrun_key"  # what sign-in leaves in the browser


@dataclass
class Pages:
    """What the operator's tabs fetched during one job."""

    fetched: int = 0
    errors: list[str] = field(default_factory=list)
    latencies: list[float] = field(default_factory=list)

    def get(self, http: Any, path: str) -> None:
        tick = time.monotonic()
        answer = http.get(path)
        self.latencies.append(time.monotonic() - tick)
        self.fetched += 1
        if answer.status_code != 200:
            self.errors.append(f"{path}: {answer.status_code} {answer.text[:120]}")

    def line(self) -> str:
        ms = sorted(x * 1000 for x in self.latencies) or [0.0]
        return (
            f"{self.fetched} pages, answered in {statistics.median(ms):.0f} ms median, "
            f"{ms[-1]:.0f} ms max; errors {len(self.errors)}"
        )


def operator(origin: str, key: str, job: int, done: threading.Event) -> Pages:
    """The Jobs page once, then Live Ops' cards and a Refresh every EVERY_S until `done`."""
    import httpx

    pages = Pages()
    with httpx.Client(base_url=origin, cookies={COOKIE: key}, timeout=60, trust_env=False) as http:
        pages.get(http, f"/?job={job}")
        pages.get(http, "/live")
        while not done.wait(EVERY_S):
            pages.get(http, "/fragments/live")
            pages.get(http, f"/fragments/jobs?job={job}")
    return pages


@dataclass(frozen=True)
class Run:
    console: bool
    job: dict[str, Any] | None
    pages: Pages | None
    problem: str | None = None

    @property
    def duration_s(self) -> float | None:
        if self.job is None or self.job["status"] in UNFINISHED:
            return None
        return float(self.job["duration_s"])

    def line(self) -> str:
        if self.duration_s is None:
            ended = f"not measured ({self.problem})"
        else:
            ended = f"job {self.job['status'] if self.job else '?'} in {self.duration_s:.2f} s"
        return ended + (f"; {self.pages.line()}" if self.pages else "")


def one_run(project: Path, keys: dict[str, str], console: bool) -> Run:
    server = Served([str(CXRUN), "serve", "--port", "0"], project)
    try:
        with client(server.url, keys["control"]) as http:
            started = http.post("/spinners/pure/runs")
        if started.status_code != 202:
            raise NotMeasured(f"POST /spinners/pure/runs: {started.status_code} {started.text}")
        job = int(started.json()["job"])
        done, found_pages = threading.Event(), []
        origin = server.url.removesuffix("/api/v1")
        tab = threading.Thread(
            target=lambda: found_pages.append(operator(origin, keys["read"], job, done))
        )
        if console:
            tab.start()
        ended = server.wait_for(
            re.compile(rf"job {job}: (?!claimed)|runtime stopped"), RUN_DEADLINE_S
        )
        done.set()
        if console:
            tab.join()
        pages = found_pages[0] if found_pages else None
        if ended is None or ended.group(0) == "runtime stopped":
            return Run(console, None, pages, f"server: {last_line(server.log())}")
        with client(server.url, keys["read"]) as http:
            return Run(console, http.get(f"/jobs/{job}").json(), pages)
    finally:
        server.stop()


def runs(folder: Path, template: Path, keys: dict[str, str], count: int) -> list[Run]:
    done: list[Run] = []
    for number in range(2 * count):
        console = number % 2 == 1
        project = fresh_copy(template, folder, "run")
        result = one_run(project, keys, console)
        shutil.rmtree(project)
        done.append(result)
        side = "console" if console else "quiet  "
        print(f"  run {number + 1}/{2 * count} {side}: {result.line()}", flush=True)
    return done


def report(rows: int, done: list[Run]) -> list[str]:
    quiet = [r.duration_s for r in done if not r.console and r.duration_s is not None]
    opened = [r.duration_s for r in done if r.console and r.duration_s is not None]
    ratio = statistics.median(opened) / statistics.median(quiet) if quiet and opened else None
    errors = [e for r in done if r.pages for e in r.pages.errors]
    fetched = sum(r.pages.fetched for r in done if r.pages)
    complete = [r for r in done if r.job and r.job["completed"] == rows]
    shown = "not measured" if ratio is None else f"{ratio:.3f}"

    def median(values: list[float]) -> str:
        runs_shown = " ".join(f"{x:.2f}" for x in values)
        return f"{statistics.median(values):7.2f} s   runs: {runs_shown}" if values else "-"

    return [
        f"  quiet   (no client)                       median {median(quiet)}",
        f"  console (Jobs page open, Live Ops polling) median {median(opened)}",
        f"  ratio console / quiet                     {shown}   target <= {TARGET_RATIO:g}",
        "",
        f"check: run time ratio console / quiet {shown} <= {TARGET_RATIO:g}: "
        + verdict(ratio is not None and ratio <= TARGET_RATIO),
        f"check: pages answered other than 200: {len(errors)} of {fetched}"
        + (f" (first: {errors[0]})" if errors else "")
        + ": "
        + verdict(not errors and fetched > 0),
        f"check: jobs that completed {rows:,} of {rows:,} records: {len(complete)} of "
        f"{len(done)}: " + verdict(len(complete) == len(done)),
    ]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=2_000_000, help="rows of the job (2,000,000)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each side (3)")
    args = parser.parse_args()
    if min(args.rows, args.runs) < 1:
        parser.error("--rows and --runs must be at least 1")
    if not CXRUN.exists():
        print(f"nothing measured: no cxrun executable at {CXRUN} (run `make setup`)")
        return 0
    tick, load = time.perf_counter(), os.getloadavg()[0]
    with tempfile.TemporaryDirectory(prefix="cxrun-bench-console-") as temp:
        folder = Path(temp)
        template = folder / "pure"
        try:
            make_project(template, "pure", PURE, args.rows)
            keys = {scope: make_key(template, scope, scope) for scope in ("control", "read")}
            print(f"setup (not timed): {args.rows:,}-row project published", flush=True)
            lines = report(args.rows, runs(folder, template, keys, args.runs))
        except NotMeasured as exc:
            lines = [f"check: measured: FAIL ({exc})"]
    print()
    print(
        f"cxrun console benchmark ({time.perf_counter() - tick:.0f} s in all); a shared machine "
        f"(load average {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)"
    )
    print(*machine(versions()), sep="\n")
    print()
    print(
        f"a job's run time (duration_s) under `cxrun serve`: {args.rows:,} rows x (log, tag, set), "
        f"{args.runs} quiet + {args.runs} console runs in turns, medians"
    )
    print(*lines, sep="\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
