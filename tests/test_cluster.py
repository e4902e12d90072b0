"""A runtime whose I/O calls a Dask cluster makes: `distributed.LocalCluster` with real worker
processes, `cxrun runtime --cluster ADDRESS` as a process, a local model and webhook server.
The workers alone have the provider's key (the runtime has none); the runtime stays the only
writer of the state."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from apiserver import environment
from conftest import EXECUTABLE
from daskcluster import local_cluster, tls_settings
from servers import FakeServer, OpenAI, Reply, Request
from test_durable import cxrun, state_rows, wait_until
from test_io_runtime import KEY, ask, llm, make_project, record_of, send

pytest.importorskip("distributed")
pytest_plugins = ["servers"]

ROWS = 120
CONCURRENCY = 16


class Endpoints:
    """A model at /v1 (answering after `delay`, 401 for the records in `deny`) and a webhook at
    /hook; both note when each call came, and the model the calls in flight."""

    def __init__(self, delay: float, slow_after: int | None = None) -> None:
        self.delay = delay
        self.slow_after = slow_after  # records past this one take 2 s (the job is surely busy)
        self.deny: set[str] = set()
        self.limit_once: str | None = None  # this record's first call: 429, Retry-After 2
        self.limited_at: float | None = None
        self.ai: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self.starts: list[float] = []
        self.denied_at: float | None = None
        self.in_flight = 0
        self.lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        if not request.path.startswith("/v1"):
            with self.lock:
                self.sends[request.headers["idempotency-key"]] += 1
            return Reply(200, {"id": "sent"})
        record = record_of(request)
        with self.lock:
            self.ai[record] += 1
            self.starts.append(time.monotonic())
            if record in self.deny:
                self.denied_at = self.denied_at or time.monotonic()
                return OpenAI.unauthorized()
            if record == self.limit_once and self.limited_at is None:
                self.limited_at = time.monotonic()
                return Reply(429, {"error": {"message": "slow down"}}, {"retry-after": "2"})
            self.in_flight += 1
        try:
            slow = self.slow_after is not None and int(record) > self.slow_after
            time.sleep(2.0 if slow else self.delay)
            return OpenAI.answer(f"Hello record {record}", prompt_tokens=3, completion_tokens=4)
        finally:
            with self.lock:
                self.in_flight -= 1


def project(tmp_path: Path, server: FakeServer, **provider: Any) -> Path:
    steps = [{"id": "hello", "log": "hi {{ name }}"}, ask(), send("hook", text="{{ draft }}")]
    root = make_project(
        tmp_path,
        steps,
        rows=ROWS,
        providers=llm(server, **provider),
        channels={"hook": {"kind": "webhook", "url": f"{server.url}/hook"}},
        limits={"concurrency": CONCURRENCY},
    )
    assert cxrun(root, "publish").returncode == 0
    return root


def runtime(
    root: Path, address: str, *more: str, env: dict[str, str] | None = None
) -> subprocess.Popen[str]:
    """`cxrun runtime --cluster ADDRESS`, without the model's key: only the workers have it.
    Its Dask client refreshes its cached scheduler info every 20 ms (2 s by default): a look at
    the workers that trusted that cache would, now and then, find none and take every worker
    for lost; this makes that moment come in every test."""
    return subprocess.Popen(
        [str(EXECUTABLE), "runtime", "--cluster", address, *more],
        cwd=root,
        env={
            **environment(),
            "DASK_DISTRIBUTED__CLIENT__SCHEDULER_INFO_INTERVAL": "20ms",
            **(env or {}),
        },
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def finished(process: subprocess.Popen[str]) -> str:
    _, err = process.communicate(timeout=180)
    assert process.returncode == 0 and "Traceback" not in err, err
    return err


def journal(root: Path) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    records = state_rows(
        root, "SELECT key, status, tags, outputs, error FROM cx_records ORDER BY seq"
    )
    journey = state_rows(
        root,
        "SELECT seq, pos, step, attempt, status, message, output, error FROM cx_journey "
        "ORDER BY seq, pos, attempt",
    )
    return records, journey


def test_a_job_through_the_cluster_writes_what_a_local_run_writes(tmp_path, http_server):
    endpoints = Endpoints(delay=0.01)
    http_server.handler = endpoints
    here = project(tmp_path / "here", http_server)
    there = tmp_path / "there"
    shutil.copytree(here, there)
    local = subprocess.run(
        [str(EXECUTABLE), "run-now", "s"],
        cwd=here,
        env={**environment(), "LLM_KEY": KEY},
        capture_output=True,
        text=True,
    )
    assert local.returncode == 0, local.stderr
    assert cxrun(there, "run-now", "s", "--detach").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        err = finished(runtime(there, cluster.address, "--once"))

    assert "I/O calls go to the Dask cluster" in err and "job 1: completed" in err
    assert journal(there) == journal(here)
    assert sorted(endpoints.ai.values()) == [2] * ROWS  # once for each run
    assert sorted(endpoints.sends.values()) == [2] * ROWS  # each key once a run: the same keys


def test_a_providers_rate_holds_across_the_workers(tmp_path, http_server):
    endpoints = Endpoints(delay=0.01)
    http_server.handler = endpoints
    root = project(tmp_path, http_server, rate="10/s")
    assert cxrun(root, "run-now", "s", "--detach", "--limit", "40").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        err = finished(runtime(root, cluster.address, "--once"))

    starts = sorted(endpoints.starts)
    twice = {record: n for record, n in endpoints.ai.items() if n > 1}
    assert len(starts) == 40, (twice, err)
    assert (len(starts) - 1) / (starts[-1] - starts[0]) <= 10.5  # two workers at 5/s each
    busiest = max(sum(1 for t in starts if s <= t < s + 1.0) for s in starts)
    assert busiest <= 12  # each worker's bucket starts a call at once: 6 + 6, not 11 + 11


def test_a_401_on_one_worker_pauses_the_job_on_every_worker(tmp_path, http_server):
    endpoints = Endpoints(delay=0.05)
    endpoints.deny = {"40"}
    http_server.handler = endpoints
    root = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        err = finished(runtime(root, cluster.address, "--once"))

    assert "job 1: paused" in err, err
    ((status, reason),) = state_rows(root, "SELECT status, reason FROM cx_jobs")
    assert status == "paused" and reason.startswith("credentials"), reason
    denied = endpoints.denied_at
    assert denied is not None
    late = [t for t in endpoints.starts if t > denied + 1.0]
    assert late == []  # neither worker started a call a second after the 401
    assert sum(endpoints.ai.values()) < ROWS


def test_a_429_on_one_worker_holds_the_provider_on_every_worker(tmp_path, http_server):
    endpoints = Endpoints(delay=0.05)
    endpoints.limit_once = "40"
    http_server.handler = endpoints
    root = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        finished(runtime(root, cluster.address, "--once"))

    limited = endpoints.limited_at
    assert limited is not None
    during = [t for t in endpoints.starts if limited + 0.8 < t < limited + 1.8]
    assert during == []  # the other worker held back too, within a second
    assert _status(root) == "completed"
    assert sorted(endpoints.ai.values()) == [1] * (ROWS - 1) + [2]  # the 429 made again


def test_an_operators_pause_stops_the_workers_and_resume_finishes_once(tmp_path, http_server):
    endpoints = Endpoints(delay=0.05, slow_after=40)
    http_server.handler = endpoints
    root = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        running = runtime(root, cluster.address)
        try:
            assert wait_until(lambda: sum(endpoints.ai.values()) >= 30, 60)
            paused = cxrun(root, "pause", "1", "--json")
            assert paused.returncode == 0, paused.stderr
            assert json.loads(paused.stdout)["status"] == "paused"
            asked = time.monotonic()
            made = sum(endpoints.ai.values())
            time.sleep(1.5)
            assert sum(endpoints.ai.values()) - made <= CONCURRENCY  # calls in flight only
            assert [t for t in endpoints.starts if t > asked + 1.0] == []
            endpoints.slow_after = None
            assert cxrun(root, "resume", "1", "--detach").returncode == 0
            done = wait_until(lambda: _status(root) == "completed", 120)
        finally:
            running.send_signal(signal.SIGTERM)
            err = finished(running)
        listed = cxrun(root, "jobs", "--json")
        assert done, (listed.stdout, listed.stderr, err)

    assert sorted(endpoints.ai.values()) == [1] * ROWS
    assert sorted(endpoints.sends.values()) == [1] * ROWS


def _status(root: Path) -> str:
    listed = cxrun(root, "jobs", "--json")
    return str(json.loads(listed.stdout)[0]["status"]) if listed.returncode == 0 else ""


def test_a_worker_killed_mid_batch_costs_at_most_its_calls_in_flight(tmp_path, http_server):
    endpoints = Endpoints(delay=0.1)
    http_server.handler = endpoints
    root = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0

    with local_cluster(2, env={"LLM_KEY": KEY}) as cluster:
        running = runtime(root, cluster.address, "--once")
        assert wait_until(lambda: sum(endpoints.ai.values()) >= 40, 60)
        victim = sorted(cluster.worker_pids().items())[0][1]
        os.kill(victim, signal.SIGKILL)
        err = finished(running)

    assert _status(root) == "completed"
    assert set(endpoints.ai) == {str(i) for i in range(1, ROWS + 1)}  # no record lost
    # A worker's slot is free only once the runtime has its call's result: what a worker can
    # take with it is at most its slots (its share of the concurrency), answered or not.
    repaid = sum(endpoints.ai.values()) - ROWS
    twice = sorted(int(record) for record, n in endpoints.ai.items() if n > 1)
    assert repaid <= CONCURRENCY // 2, (twice, err)
    assert state_rows(root, "SELECT count(*) FROM cx_records WHERE status = 'completed'") == [
        (ROWS,)
    ]
    doubled = state_rows(
        root,
        "SELECT seq, pos FROM cx_journey WHERE status = 'completed' GROUP BY ALL "
        "HAVING count(*) > 1",
    )
    assert doubled == []
    assert max(endpoints.sends.values()) == 1 or repaid > 0  # a send re-made keeps its key


def test_a_worker_without_the_secret_fails_the_job_saying_which(tmp_path, http_server):
    endpoints = Endpoints(delay=0.0)
    http_server.handler = endpoints
    root = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0

    with local_cluster(1) as cluster:  # no LLM_KEY on the worker
        worker = next(iter(cluster.worker_pids()))
        finished(runtime(root, cluster.address, "--once"))

    ((status, reason),) = state_rows(root, "SELECT status, reason FROM cx_jobs")
    assert status == "failed", reason
    assert f"worker {worker}" in reason and "LLM_KEY" in reason, reason
    assert endpoints.ai == Counter()


def test_a_cluster_that_cannot_be_reached_is_a_clear_error(tmp_path, http_server):
    root = project(tmp_path, http_server)

    done = cxrun(root, "runtime", "--once", "--cluster", "tcp://127.0.0.1:9")

    assert done.returncode == 2, done.stderr
    assert "cannot reach the Dask scheduler at tcp://127.0.0.1:9" in done.stderr
    assert "Traceback" not in done.stderr


def test_without_dask_the_cluster_option_says_what_to_install(monkeypatch):
    import sys

    from cxrun.base.errors import CxrunError
    from cxrun.io import cluster

    monkeypatch.setitem(sys.modules, "distributed", None)  # as if it were not installed
    with pytest.raises(CxrunError) as raised:
        cluster.connect("tcp://127.0.0.1:8786")
    assert "pip install 'cxrun[dask]'" in " ".join(raised.value.lines())


def certificates(folder: Path) -> dict[str, tuple[str, str, str]]:
    """A CA and two certificates it signs, made with openssl: the cluster's (scheduler and
    workers) and the runtime's; each as (CA file, certificate, key)."""
    folder.mkdir()
    ca_key, ca = folder / "ca-key.pem", folder / "ca.pem"

    def openssl(*args: str) -> None:
        subprocess.run(["openssl", *args], check=True, capture_output=True, cwd=folder)

    openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", str(ca_key),
            "-out", str(ca), "-days", "2", "-subj", "/CN=cxrun test CA")  # fmt: skip
    made = {}
    for name in ("cluster", "runtime"):
        key, request, cert = (folder / f"{name}{end}" for end in ("-key.pem", ".csr", ".pem"))
        openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", str(key), "-out",
                str(request), "-subj", f"/CN={name}")  # fmt: skip
        openssl("x509", "-req", "-in", str(request), "-CA", str(ca), "-CAkey", str(ca_key),
                "-CAcreateserial", "-out", str(cert), "-days", "2")  # fmt: skip
        made[name] = (str(ca), str(cert), str(key))
    return made


@pytest.mark.skipif(shutil.which("openssl") is None, reason="makes its certificates with openssl")
def test_a_tls_cluster_sends_the_results_back_over_tls_too(tmp_path, http_server):
    endpoints = Endpoints(delay=0.01)
    http_server.handler = endpoints
    root = project(tmp_path / "p", http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    made = certificates(tmp_path / "certs")

    with local_cluster(2, env={"LLM_KEY": KEY}, tls=made["cluster"]) as cluster:
        assert cluster.address.startswith("tls://")
        settings = tls_settings(*made["runtime"], "client")
        err = finished(runtime(root, cluster.address, "--once", env=settings))

    assert "job 1: completed" in err, err
    assert sorted(endpoints.ai.values()) == [1] * ROWS
    assert state_rows(root, "SELECT status FROM cx_jobs") == [("completed",)]
