"""What the benchmarks in bench/ share: timing a subprocess (wall, CPU, peak RSS), describing the
machine, a table of realistic contacts, and a local OpenAI-compatible server.

Wall time is measured around each subprocess (from spawn to reaped). CPU time is the user + system
time of the measured process and of every descendant it waited for: the difference of
`getrusage(RUSAGE_CHILDREN)` around the wait (nothing else of ours is reaped meanwhile). Peak
memory is the kernel's maximum resident set size of the measured process, reported by GNU
`/usr/bin/time -f %M` (a tiny parent that reads it from wait4). `os.wait4` from the benchmark
itself is not used for memory: a child spawned by a large parent inherits the parent's high-water
mark across exec. Without GNU time the fallback polls VmHWM (the kernel's per-process peak) in
/proc/PID/status every 10 ms, which can only miss a peak reached in the last 10 ms before exit.
With `tree`, the resident memory of the process and all its descendants, summed, is also sampled
every 10 ms (`tree_mb`): the peak of a process tree, which no single kernel counter gives.
"""

from __future__ import annotations

import http.client
import json
import os
import platform
import re
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

GNU_TIME = Path("/usr/bin/time")

# Deterministic, varied contacts: names, cities and plans picked by hash, a skewed lifetime value
# (about 40% above 1000), sign-up dates over six years. Run by DuckDB with the row count as `?`.
CONTACTS_SQL = """
COPY (
    SELECT
        i + 1 AS id,
        ['Ada', 'Alan', 'Grace', 'Edsger', 'Barbara', 'Donald', 'Margaret', 'Ken', 'Frances',
         'John', 'Radia', 'Tim', 'Hedy', 'Dennis', 'Katherine', 'Linus', 'Sophie', 'Guido',
         'Anita', 'Niklaus'][1 + CAST(hash(i, 'first') % 20 AS INTEGER)] AS first_name,
        ['Lovelace', 'Turing', 'Hopper', 'Dijkstra', 'Liskov', 'Knuth', 'Hamilton', 'Thompson',
         'Allen', 'McCarthy', 'Perlman', 'Berners-Lee', 'Lamarr', 'Ritchie', 'Johnson',
         'Torvalds', 'Wilson', 'van Rossum', 'Borg', 'Wirth']
            [1 + CAST(hash(i, 'last') % 20 AS INTEGER)] AS last_name,
        lower(first_name || '.' || replace(last_name, ' ', '') || '.' || id) || '@example.org'
            AS email,
        ['London', 'Paris', 'Berlin', 'Madrid', 'Lisbon', 'Rome', 'Amsterdam', 'Dublin',
         'New York', 'Boston', 'Austin', 'Toronto', 'Lyon', 'Manchester', 'Zurich',
         'Vienna'][1 + CAST(hash(i, 'city') % 16 AS INTEGER)] AS city,
        ['FR', 'GB', 'DE', 'ES', 'PT', 'IT', 'NL', 'IE', 'US', 'CA']
            [1 + CAST(hash(i, 'country') % 10 AS INTEGER)] AS country,
        '+33 6 ' || lpad(CAST(hash(i, 'phone') % 100000000 AS VARCHAR), 8, '0') AS phone,
        ['free', 'starter', 'pro', 'enterprise'][1 + CAST(hash(i, 'plan') % 4 AS INTEGER)] AS plan,
        round(pow((hash(i, 'ltv') % 1000000) / 1000000.0, 3) * 5000, 2) AS lifetime_value,
        DATE '2020-01-01' + CAST(hash(i, 'signup') % 2190 AS INTEGER) AS signup_date,
        hash(i, 'opt') % 10 < 8 AS opted_in
    FROM range(?) AS t(i)
) TO '{path}' (FORMAT parquet)
"""


def write_contacts(parquet: Path, rows: int) -> None:
    """`rows` contacts (CONTACTS_SQL) into a Parquet file, written by DuckDB."""
    import duckdb

    with duckdb.connect() as con:
        con.execute(CONTACTS_SQL.format(path=str(parquet).replace("'", "''")), [rows])


@dataclass(frozen=True)
class Measured:
    """One subprocess: its wall time, CPU time (user + sys, s), peak RSS (MB, None if unknown)
    and what it printed."""

    wall_s: float
    cpu_s: float
    rss_mb: float | None
    code: int
    stdout: str
    stderr: str
    tree_mb: float | None = None  # sampled peak of the summed RSS of the process tree

    @property
    def peak_mb(self) -> float | None:
        """The larger of the kernel's peak of the process and the sampled peak of its tree."""
        found = [m for m in (self.rss_mb, self.tree_mb) if m is not None]
        return max(found) if found else None


def gnu_time_works() -> bool:
    if not GNU_TIME.exists():
        return False
    done = subprocess.run([str(GNU_TIME), "-f", "%M", "true"], capture_output=True, text=True)
    lines = done.stderr.strip().splitlines()
    return done.returncode == 0 and bool(lines) and lines[-1].isdigit()


def rss_method() -> tuple[str, str]:
    """How peak memory is measured: "time" or "poll", and a sentence for the report."""
    if gnu_time_works():
        return "time", "GNU /usr/bin/time -f %M (kernel max RSS of the process, via wait4)"
    return "poll", "highest VmHWM in /proc/PID/status, polled every 10 ms"


def children_cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def measure(
    command: Sequence[str],
    cwd: Path,
    memory: str | None = None,
    env: Mapping[str, str] | None = None,
    tree: bool = False,
) -> Measured:
    """Run `command` to its end and time it; with `memory` ("time" or "poll"), its peak RSS too;
    with `tree`, the sampled peak of its process tree's summed RSS.

    The child gets this process's environment without CXRUN_PROJECT, updated with `env`.
    """
    with tempfile.TemporaryDirectory(prefix="cxrun-measure-") as scratch:
        out, err, rss = (Path(scratch) / name for name in ("out", "err", "rss"))
        if memory == "time":
            command = [str(GNU_TIME), "-f", "%M", "-o", str(rss), *command]
        with out.open("w") as stdout, err.open("w") as stderr:
            cpu = children_cpu_s()
            tick = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=cwd, env=child_env(env), stdout=stdout, stderr=stderr
            )
            poller = PeakPoller(process.pid) if memory == "poll" else None
            sampler = TreePoller(process.pid) if tree else None
            code = process.wait()
            wall = time.perf_counter() - tick
            cpu = children_cpu_s() - cpu
        peak = read_time_rss(rss) if memory == "time" else poller.stop() if poller else None
        summed = sampler.stop() if sampler else None
        return Measured(wall, cpu, peak, code, out.read_text(), err.read_text(), summed)


def child_env(env: Mapping[str, str] | None = None) -> dict[str, str]:
    """This process's environment without CXRUN_PROJECT, updated with `env`."""
    found = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
    found.update(env or {})
    return found


def no_proxy() -> dict[str, str]:
    """No proxy for the local server, whatever the environment says."""
    return {"NO_PROXY": "127.0.0.1,localhost", "no_proxy": "127.0.0.1,localhost"}


def first_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[0] if lines else "(nothing printed)"


def last_line(text: str) -> str:
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1] if lines else "(nothing printed)"


def read_time_rss(path: Path) -> float | None:
    """The last line GNU time wrote (after a possible "Command exited with ..." line), in MB."""
    lines = path.read_text().strip().splitlines() if path.exists() else []
    return int(lines[-1]) / 1024 if lines and lines[-1].isdigit() else None


class PeakPoller:
    """Reads VmHWM (the kernel's peak RSS of the process) every 10 ms, in a thread, so that the
    caller can wait for the process and time it exactly."""

    def __init__(self, pid: int, every: float = 0.01) -> None:
        self.status = Path(f"/proc/{pid}/status")
        self.every = every
        self.peak: float | None = None
        self.done = threading.Event()
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()

    def _poll(self) -> None:
        while not self.done.is_set():
            try:
                found = re.search(r"^VmHWM:\s+(\d+) kB", self.status.read_text(), re.MULTILINE)
            except OSError:
                return
            if found:
                self.peak = max(self.peak or 0.0, int(found.group(1)) / 1024)
            self.done.wait(self.every)

    def stop(self) -> float | None:
        self.done.set()
        self.thread.join()
        return self.peak


class TreePoller(PeakPoller):
    """Sums VmRSS of a process and of every descendant (found through
    /proc/PID/task/*/children) every 10 ms, and keeps the highest sum."""

    def _poll(self) -> None:
        root = int(self.status.parent.name)
        while not self.done.is_set():
            total = sum(_rss_kb(pid) for pid in _tree(root))
            if total:
                self.peak = max(self.peak or 0.0, total / 1024)
            self.done.wait(self.every)


def _tree(root: int) -> list[int]:
    """The process and its descendants, as /proc shows them now."""
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        for task in Path(f"/proc/{pid}/task").glob("*/children"):
            try:
                todo += [int(child) for child in task.read_text().split()]
            except OSError:
                continue
    return found


def _rss_kb(pid: int) -> int:
    try:
        found = re.search(r"^VmRSS:\s+(\d+) kB", Path(f"/proc/{pid}/status").read_text(), re.M)
    except OSError:
        return 0
    return int(found.group(1)) if found else 0


def load_average() -> str:
    """The machine's load average (1, 5 and 15 minutes), for the report."""
    one, five, fifteen = os.getloadavg()
    return f"load average {one:.2f} {five:.2f} {fifteen:.2f}"


def machine(versions: Mapping[str, str]) -> list[str]:
    """Two report lines: CPUs, CPU model and memory; system, Python and the given versions."""
    cpu = "unknown"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        found = re.search(r"^model name\s*:\s*(.+)$", cpuinfo.read_text(), re.MULTILINE)
        cpu = found.group(1).strip() if found else cpu
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    packages = "".join(f", {name} {version}" for name, version in versions.items())
    return [
        f"machine: {os.cpu_count()} CPUs (nproc {len(os.sched_getaffinity(0))}), {cpu}, "
        f"{memory:.0f} GiB RAM",
        f"system:  {platform.system()} {platform.release()}, "
        f"Python {platform.python_version()}{packages}",
    ]


# ---- the chat-completions server ----------------------------------------------------------------

# argv: latency (s), lifetime (s), trace (1 to keep each call). Prints its
# port on the first line of stdout, then serves until stdin reaches end of file (the benchmark
# ended or died), the lifetime runs out, or SIGTERM. A call's record is the last word of its
# prompt. GET /stats: counters (calls, answered, in_flight, ...) and its CPU time; with
# ?detail=1 also the calls per record and (traced) every call as [record, start, end, the client's
# port], start and end in time.monotonic() seconds (CLOCK_MONOTONIC: the benchmark's clock too).
SERVER = r"""
import asyncio, collections, json, os, socket, sys, time
from aiohttp import web

latency, lifetime, tracing = float(sys.argv[1]), float(sys.argv[2]), sys.argv[3] == "1"
stats = {"calls": 0, "answered": 0, "in_flight": 0, "bad": 0, "unauthorized": 0}
records = collections.Counter()
trace = []


async def completions(request):
    try:
        body = json.loads(await request.read())
        model = str(body["model"])
        prompt = str(body["messages"][-1]["content"])
    except Exception:
        stats["bad"] += 1
        error = {"message": "bad request", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=400)
    if not request.headers.get("Authorization", "").startswith("Bearer "):
        stats["unauthorized"] += 1
        error = {"message": "no API key", "type": "invalid_request_error"}
        return web.json_response({"error": error}, status=401)
    record = (prompt.split() or [""])[-1]
    peer = request.transport.get_extra_info("peername") if request.transport else None
    stats["calls"] += 1
    stats["in_flight"] += 1
    records[record] += 1
    start = time.monotonic()
    try:
        await asyncio.sleep(latency)
    finally:
        stats["in_flight"] -= 1
        if tracing:
            trace.append([record, start, time.monotonic(), peer[1] if peer else 0])
    text = "One line, as asked: " + prompt[:200]
    usage = {"prompt_tokens": len(prompt.split()), "completion_tokens": len(text.split())}
    usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
    answer = {
        "id": "chatcmpl-bench-%d" % stats["calls"],
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text},
                "finish_reason": "stop",
            }
        ],
        "usage": usage,
    }
    stats["answered"] += 1
    return web.Response(text=json.dumps(answer), content_type="application/json")


async def statistics(request):
    found = {**stats, "cpu_s": time.process_time()}
    if request.query.get("detail") == "1":
        found.update(records=records, trace=trace)
    return web.json_response(found)


async def main():
    app = web.Application()
    app.add_routes([web.post("/v1/chat/completions", completions), web.get("/stats", statistics)])
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind(("127.0.0.1", 0))
    site = web.SockSite(runner, sock, backlog=1024)
    await site.start()
    print(sock.getsockname()[1], flush=True)
    loop = asyncio.get_running_loop()
    gone = loop.create_future()

    def stdin_ready():
        if not os.read(0, 4096) and not gone.done():
            gone.set_result(None)

    loop.add_reader(0, stdin_ready)
    try:
        await asyncio.wait_for(gone, lifetime)
    except asyncio.TimeoutError:
        pass
    await runner.cleanup()


asyncio.run(main())
"""


class NotMeasured(Exception):
    """Nothing can be measured (the server cannot start)."""


class Server:
    """The chat-completions server process (SERVER); `stats()` asks it what it saw so far."""

    def __init__(self, folder: Path, latency: float, lifetime: float, trace: bool = False) -> None:
        self.log = folder / "server.log"
        script = folder / "server.py"
        script.write_text(SERVER)
        argv = [sys.executable, str(script), str(latency), str(lifetime), "1" if trace else "0"]
        with self.log.open("w") as log:
            self.process = subprocess.Popen(
                argv,
                cwd=folder,
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        line = self.process.stdout.readline().strip()
        if not line.isdigit():
            self.stop()
            raise NotMeasured(f"the server did not start: {last_line(self.log.read_text())}")
        self.port = int(line)
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def stats(self, detail: bool = False) -> dict[str, Any]:
        """Its counters; with `detail`, the calls per record and the trace too."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=10)
        try:
            connection.request("GET", "/stats?detail=1" if detail else "/stats")
            return dict(json.loads(connection.getresponse().read()))
        finally:
            connection.close()

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        for stream in (self.process.stdin, self.process.stdout):
            if stream is not None:
                stream.close()
