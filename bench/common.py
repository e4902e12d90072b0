"""What the benchmarks in bench/ share: timing a subprocess (wall, CPU, peak RSS), describing the
machine, and a table of realistic contacts.

Wall time is measured around each subprocess (from spawn to reaped). CPU time is the user + system
time of the measured process and of every descendant it waited for: the difference of
`getrusage(RUSAGE_CHILDREN)` around the wait (nothing else of ours is reaped meanwhile). Peak
memory is the kernel's maximum resident set size of the measured process, reported by GNU
`/usr/bin/time -f %M` (a tiny parent that reads it from wait4). `os.wait4` from the benchmark
itself is not used for memory: a child spawned by a large parent inherits the parent's high-water
mark across exec. Without GNU time the fallback polls VmHWM (the kernel's per-process peak) in
/proc/PID/status every 10 ms, which can only miss a peak reached in the last 10 ms before exit.
"""

from __future__ import annotations

import os
import platform
import re
import resource
import subprocess
import tempfile
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

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
) -> Measured:
    """Run `command` to its end and time it; with `memory` ("time" or "poll"), its peak RSS too.

    The child gets this process's environment without CXRUN_PROJECT, updated with `env`.
    """
    child_env = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
    child_env.update(env or {})
    with tempfile.TemporaryDirectory(prefix="cxrun-measure-") as scratch:
        out, err, rss = (Path(scratch) / name for name in ("out", "err", "rss"))
        if memory == "time":
            command = [str(GNU_TIME), "-f", "%M", "-o", str(rss), *command]
        with out.open("w") as stdout, err.open("w") as stderr:
            cpu = children_cpu_s()
            tick = time.perf_counter()
            process = subprocess.Popen(
                command, cwd=cwd, env=child_env, stdout=stdout, stderr=stderr
            )
            poller = PeakPoller(process.pid) if memory == "poll" else None
            code = process.wait()
            wall = time.perf_counter() - tick
            cpu = children_cpu_s() - cpu
        peak = read_time_rss(rss) if memory == "time" else poller.stop() if poller else None
        return Measured(wall, cpu, peak, code, out.read_text(), err.read_text())


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
