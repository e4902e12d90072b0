"""Benchmark: a runtime's I/O calls made here, or by the workers of a Dask cluster.

Run with `.venv/bin/python bench/scale.py` (or `make bench`); `--rows`, `--concurrency` and
`--runs` change it. Needs `cxrun[dask]`.

A project whose spinner asks an AI model once per row (concurrency 512 by default) against the
local 50 ms server of bench/common.py. Each run queues the job (`run-now --detach`) and times
`cxrun runtime --once` (a fresh process) in turns for:

- **local**: the runtime's own executor, the baseline;
- **cluster, 1 worker** and **cluster, 2 workers**: `--cluster` on a `distributed.LocalCluster`
  of worker processes (2 threads each) started beforehand, the model's key in the workers'
  environment only.

Then, for the pure steps: three steps (a log text, a tag, a computed field) over one batch of
rows (245,760) done by DuckDB where the rows are, against the same rows taken out of DuckDB,
shipped to a worker, computed there in Python and shipped back (what handing pure steps to
the cluster would cost at the least).

It prints, medians of the runs: calls a second over the job's own duration (started to ended:
the runtime's start-up and its connection to the cluster are left out), the ratio to the local
executor (the goal: at least 0.8x on this 2-core machine, where the workers, the runtime and
the server share two cores), the runtime process's CPU seconds and its CPU per returned call,
and from that how many calls a second one runtime could take from a cluster (one core's worth)
and how many workers at the measured per-worker rate that feeds. The exit status is 0 whatever
the figures.
"""

from __future__ import annotations

import argparse
import json
import os
import pickle
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from common import Server, child_env, machine, measure, write_contacts

CXRUN = Path(sys.executable).parent / "cxrun"
KEY = "sk-bench-key-not-real"
SPINNER = """\
table: people
key: id
limits: {{concurrency: {concurrency}}}
steps:
  - id: draft
    ai: {{provider: llm, model: m, prompt: "Write to {{{{ id }}}}", output: draft}}
"""
CLUSTER = """
import sys
from distributed import LocalCluster

if __name__ == "__main__":
    cluster = LocalCluster(n_workers=int(sys.argv[1]), threads_per_worker=2, processes=True,
                           dashboard_address=None, host="127.0.0.1")
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()
    cluster.close()
"""


def project(root: Path, url: str, rows: int, concurrency: int) -> None:
    (root / "spinners").mkdir(parents=True)
    (root / "tables").mkdir()
    (root / "cxrun.yaml").write_text(
        f"name: scale\nproviders:\n  llm: {{kind: openai, base_url: '{url}', "
        "api_key: 'secret:LLM_KEY'}\n"
    )
    (root / "spinners" / "io.yaml").write_text(SPINNER.format(concurrency=concurrency))
    (root / "tables" / "people.csv").write_text(
        "id\n" + "".join(f"{i}\n" for i in range(1, rows + 1))
    )
    done = subprocess.run(
        [str(CXRUN), "publish"],
        cwd=root,
        env=child_env({"LLM_KEY": KEY}),
        capture_output=True,
        text=True,
    )
    if done.returncode != 0:
        raise SystemExit(f"publish failed: {done.stderr}")


class Cluster:
    """A LocalCluster in a process of its own, as a scheduler elsewhere would be."""

    def __init__(self, workers: int) -> None:
        self.process = subprocess.Popen(
            [sys.executable, "-c", CLUSTER, str(workers)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL,
            text=True,
            env={**os.environ, "LLM_KEY": KEY},
        )
        assert self.process.stdout is not None
        self.address = self.process.stdout.readline().strip()
        from distributed import Client

        with Client(self.address, timeout=60, set_as_default=False) as client:
            client.wait_for_workers(workers, timeout=120)

    def close(self) -> None:
        if self.process.stdin is not None:
            self.process.stdin.close()
        self.process.wait(60)


def cpu_seconds(pid: int, part: str = "process") -> float:
    """CPU seconds so far of a process ("process"), or of its descendants alive now
    ("children")."""
    import psutil

    found = psutil.Process(pid)
    total = 0.0
    for one in [found] if part == "process" else found.children(recursive=True):
        try:
            times = one.cpu_times()
        except psutil.NoSuchProcess:
            continue
        total += times.user + times.system
    return total


def one_run(
    root: Path, cluster: str | None, others: dict[str, tuple[int, str]] | None = None
) -> tuple[float, float, int]:
    """(calls a second over the job's duration, the runtime's CPU seconds, calls) of one job;
    the CPU seconds the `others` (name: pid and part, as `cpu_seconds` takes them) spent
    meanwhile are printed."""
    env = {} if cluster else {"LLM_KEY": KEY}  # on a cluster, only the workers have the key
    queued = subprocess.run(
        [str(CXRUN), "run-now", "io", "--detach", "--json"],
        cwd=root,
        env=child_env({"LLM_KEY": KEY}),
        capture_output=True,
        text=True,
    )
    job = json.loads(queued.stdout)["job"]
    more = ["--cluster", cluster] if cluster else []
    before = {name: cpu_seconds(*found) for name, found in (others or {}).items()}
    ran = measure([str(CXRUN), "runtime", "--once", *more], root, env=env)
    if others:
        spent = {name: cpu_seconds(*found) - before[name] for name, found in others.items()}
        print("    CPU s: " + ", ".join(f"{n} {c:.2f}" for n, c in spent.items()), end="")
        print(f", runtime {ran.cpu_s:.2f}")
    if ran.code != 0:
        raise SystemExit(f"the runtime failed: {ran.stderr[-2000:]}")
    shown = subprocess.run(
        [str(CXRUN), "job", str(job), "--json"],
        cwd=root,
        env=child_env(),
        capture_output=True,
        text=True,
    )
    detail = json.loads(shown.stdout)
    if detail["status"] != "completed":
        raise SystemExit(f"job {job} ended {detail['status']}: {detail['reason']}")
    return detail["completed"] / detail["duration_s"], ran.cpu_s, detail["completed"]


PURE_ROWS = 245_760
PURE_SQL = (
    "SELECT id, 'Welcome ' || first_name AS message, lifetime_value > 1000 AS vip, "
    "lifetime_value / 100 AS score FROM read_parquet(?)"
)


def steps_in_python(shipped: bytes) -> bytes:
    """The three pure steps, row by row, as a worker would compute them (rows in and out as
    one pickled blob: the cheapest way to move them)."""
    import pickle

    rows = pickle.loads(shipped)
    done = [(i, f"Welcome {n}", float(v) > 1000, float(v) / 100) for i, n, v in rows]
    return pickle.dumps(done)


def pure(folder: Path, address: str, runs: int) -> tuple[float, float]:
    """Seconds (medians) for the pure steps over one batch: in DuckDB, and shipped to a worker."""
    import duckdb
    from distributed import Client

    table = folder / "pure.parquet"
    write_contacts(table, PURE_ROWS)
    here, shipped = [], []
    with Client(address, set_as_default=False) as client, duckdb.connect() as con:
        for _ in range(runs):
            started = time.perf_counter()
            con.execute(f"CREATE OR REPLACE TABLE done AS {PURE_SQL}", [str(table)])
            here.append(time.perf_counter() - started)
            started = time.perf_counter()
            rows = con.execute(
                "SELECT id, first_name, lifetime_value FROM read_parquet(?)", [str(table)]
            ).fetchall()
            [sent] = client.scatter([pickle.dumps(rows)], direct=True)  # straight to a worker
            pickle.loads(client.submit(steps_in_python, sent, pure=False).result())
            shipped.append(time.perf_counter() - started)  # not even written back yet
    return statistics.median(here), statistics.median(shipped)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="calls a job makes (20,000)")
    parser.add_argument("--concurrency", type=int, default=512, help="the job's (512)")
    parser.add_argument("--runs", type=int, default=3, help="runs of each contender (3)")
    options = parser.parse_args()
    print("\n".join(machine({})))
    print(f"{options.rows} AI calls a job, concurrency {options.concurrency}, 50 ms server")
    contenders = {"local": 0, "cluster, 1 worker": 1, "cluster, 2 workers": 2}
    results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
    with tempfile.TemporaryDirectory(prefix="cxrun-scale-") as folder:
        server = Server(Path(folder), 0.05, 24 * 3600)
        clusters = {n: Cluster(n) for n in set(contenders.values()) if n}
        try:
            root = Path(folder) / "project"
            project(root, server.url, options.rows, options.concurrency)
            for run in range(options.runs):
                for name, workers in contenders.items():
                    address = clusters[workers].address if workers else None
                    others = {"server": (server.process.pid, "process")}
                    if workers:
                        others["scheduler"] = (clusters[workers].process.pid, "process")
                        others["workers"] = (clusters[workers].process.pid, "children")
                    results[name].append(one_run(root, address, others))
                    rate, cpu, _ = results[name][-1]
                    print(
                        f"  run {run + 1} {name:>18}: {rate:7.0f} calls/s, runtime CPU {cpu:.2f} s"
                    )
            in_duckdb, shipped = pure(Path(folder), clusters[1].address, options.runs)
        finally:
            for cluster in clusters.values():
                cluster.close()
            server.stop()
    report(results, options.rows)
    print(
        f"pure steps over {PURE_ROWS:,} rows: {in_duckdb:.3f} s in DuckDB where the rows are, "
        f"{shipped:.3f} s taken out, shipped to a worker and computed there "
        f"({shipped / in_duckdb:.1f}x, before writing anything back): they stay on the runtime"
    )
    return 0


def report(results: dict[str, list[tuple[float, float, int]]], rows: int) -> None:
    local = statistics.median(rate for rate, _, _ in results["local"])
    for name, found in results.items():
        rate = statistics.median(r for r, _, _ in found)
        cpu = statistics.median(c for _, c, _ in found)
        print(
            f"{name:>18}: {rate:7.0f} calls/s ({rate / local:.2f}x local), runtime CPU {cpu:.2f} s"
            f" = {cpu / rows * 1000:.3f} ms a call"
        )
    per_call = statistics.median(c for _, c, _ in results["cluster, 2 workers"]) / rows
    per_worker = statistics.median(r for r, _, _ in results["cluster, 1 worker"])
    ceiling = 1 / per_call
    print(
        f"ceiling of one runtime feeding a cluster: about {ceiling:,.0f} calls/s on one core "
        f"({per_call * 1000:.3f} ms of runtime CPU a call); at {per_worker:,.0f} calls/s a worker, "
        f"that feeds about {ceiling / per_worker:.1f} workers"
    )


if __name__ == "__main__":
    sys.exit(main())
