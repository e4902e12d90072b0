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
    workers, protocol = int(sys.argv[1]), sys.argv[2]
    cluster = LocalCluster(
        n_workers=workers, threads_per_worker=2, processes=True, dashboard_address=None,
        host="127.0.0.1", protocol=protocol,
    )
    print(cluster.scheduler_address, flush=True)
    sys.stdin.read()  # until the test closes it
    cluster.close()
"""


class Running:
    """A started cluster: its scheduler address, and a client to look at its workers."""

    def __init__(self, process: subprocess.Popen[str], address: str, security: Any) -> None:
        from distributed import Client

        self.process, self.address = process, address
        self.client: Any = Client(address, timeout=30, set_as_default=False, security=security)

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


def tls_settings(ca: str, cert: str, key: str, role: str) -> dict[str, str]:
    """Dask's TLS settings as environment variables: the CA file, `role`'s certificate and key
    ("scheduler", "worker" or "client"), encryption required."""
    prefix = "DASK_DISTRIBUTED__COMM__"
    return {
        f"{prefix}TLS__CA_FILE": ca,
        f"{prefix}TLS__{role.upper()}__CERT": cert,
        f"{prefix}TLS__{role.upper()}__KEY": key,
        f"{prefix}REQUIRE_ENCRYPTION": "True",
    }


@contextmanager
def local_cluster(
    workers: int, env: Mapping[str, str] | None = None, tls: tuple[str, str, str] | None = None
) -> Iterator[Running]:
    """A LocalCluster of `workers` worker processes; `env` is added to their environment. With
    `tls` (CA file, certificate, key: the scheduler's and the workers'), a tls:// cluster."""
    protocol, security = "tcp://", None
    settings: dict[str, str] = {}
    if tls is not None:
        from distributed.security import Security

        protocol = "tls://"
        for role in ("scheduler", "worker", "client"):  # (the cluster process is a client too)
            settings.update(tls_settings(*tls, role))
        ca, cert, key = tls
        security = Security(
            tls_ca_file=ca, tls_client_cert=cert, tls_client_key=key, require_encryption=True
        )
    process = subprocess.Popen(
        [sys.executable, "-c", SCRIPT, str(workers), protocol],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
        env={
            **os.environ,
            "DASK_DISTRIBUTED__SCHEDULER__WORK_STEALING": "False",
            **settings,
            **(env or {}),
        },
    )
    assert process.stdout is not None
    address = process.stdout.readline().strip()
    assert address.startswith(protocol), f"the cluster did not start: {address!r}"
    running = Running(process, address, security)
    try:
        running.wait_for_workers(workers)
        yield running
    finally:
        running.close()
