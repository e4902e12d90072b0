"""A real Dask cluster for the tests: `distributed.LocalCluster` with worker processes (each
under a nanny, which starts a new worker when one dies), started in a process of its own so
that `cxrun runtime --cluster ADDRESS` connects to it as it would to any scheduler.

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        cxrun(root, "runtime", "--once", "--cluster", cluster.address)
        cluster.worker_pids()   # {address: pid}, to kill one
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from typing import Any

START_S = 90.0

SCRIPT = """
import os, sys
from distributed import LocalCluster

if __name__ == "__main__":
    workers = int(sys.argv[1])
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=2, processes=True, dashboard_address=None,
        host="127.0.0.1",
    )
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.close()
"""


class Running:
    """A started cluster: its scheduler address, and a client to look at its workers."""

    def __init__(self, process: subprocess.Popen[str], address: str) -> None:
        from distributed import Client

        self.process, self.address = process, address
        self.client: Any = Client(address, timeout=30, set_as_default=False)

    def worker_pids(self) -> dict[str, int]:
        return {address: int(pid) for address, pid in self.client.run(os.getpid).items()}

    def wait_for_workers(self, count: int) -> None:
        self.client.wait_for_workers(count, timeout=START_S)

    def close(self) -> None:
        self.client.close()
        if self.process.stdin is not None:
            self.process.stdin.close()
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


@contextmanager
def local_cluster(workers: int, env: Mapping[str, str] | None = None) -> Iterator[Running]:
    """A LocalCluster of `workers` worker processes; `env` is added to their environment."""
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workers)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={**os.environ, "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False", **(env or {})},
    )
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    assert address.startswith("tcp://"), f"the cluster did not start: {address!r}"
    running = Running(process, address)
    try:
        running.wait_for_workers(workers)
        yield running
    finally:
        running.close()
