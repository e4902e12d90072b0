"""Bulk actions beside live processes: a bulk retry over three partial jobs while `cxrun runtime`
runs sends each failed record's message once; a bulk cancel of jobs the runtime runs asks it;
a bulk resume by reason queues the credential pauses only; a job another process still holds
is refused alone."""

from __future__ import annotations

import json
import signal
import threading
from collections import Counter
from pathlib import Path

from servers import FakeServer, OpenAI, Reply, Request
from test_durable import cxrun, start, wait_until
from test_io_runtime import Model, ask, llm, make_project, record_of
from test_ownership import check_invariants, jobs, project, runtime_up

pytest_plugins = ["servers"]


def statuses(root: Path) -> dict[int, str]:
    return {job["job"]: job["status"] for job in jobs(root)}


def stop(runtime) -> str:  # type: ignore[no-untyped-def]
    runtime.send_signal(signal.SIGTERM)
    _, err = runtime.communicate(timeout=60)
    assert runtime.returncode == 0 and "Traceback" not in err, err
    return str(err)


def test_bulk_retry_beside_a_live_runtime_sends_each_failed_message_once(
    tmp_path: Path, http_server: FakeServer
) -> None:
    root, endpoints = project(tmp_path, http_server, delay=0.005)
    endpoints.refuse = {str(i) for i in range(1, 31)}  # the webhook refuses these recipients
    for _ in range(3):
        first = cxrun(root, "run-now", "s", "--json")
        assert first.returncode == 3, first.stderr  # partial: 30 sends refused
    assert len(endpoints.delivered) == 3 * 170
    endpoints.refuse.clear()  # the recipients are fixed
    runtime = start(root, "runtime")
    try:
        assert wait_until(lambda: runtime_up(root), 20)
        done = cxrun(root, "retry", "--spinner", "s", "--status", "partial", "--since", "1h")
        assert done.returncode == 2 and "add --yes to act on 3 jobs" in done.stderr
        retried = cxrun(
            root,
            "retry",
            "--spinner",
            "s",
            "--status",
            "partial",
            "--since",
            "1h",
            "--yes",
            "--json",
        )
        assert retried.returncode == 0, retried.stderr
        outcome = json.loads(retried.stdout)
        assert (outcome["records"], outcome["runtime"], outcome["refused"]) == (90, "up", [])
        assert [(r["job"], r["ok"]) for r in outcome["results"]] == [
            (1, True),
            (2, True),
            (3, True),
        ]
        assert "no runtime is up" not in retried.stderr
        assert wait_until(lambda: set(statuses(root).values()) == {"completed"}, 120)
    finally:
        err = stop(runtime)
    assert all(f"job {n}: claimed" in err for n in (1, 2, 3)), err
    assert endpoints.twice() == {}  # no message went out twice
    assert len(endpoints.delivered) == 3 * 200  # and every failed one went out once
    assert set(endpoints.ai.values()) == {3}  # one AI call per record per job: outputs reused
    check_invariants(root)


def test_bulk_cancel_asks_the_runtime_that_runs_the_jobs(
    tmp_path: Path, http_server: FakeServer
) -> None:
    root, endpoints = project(tmp_path, http_server, delay=0.2)  # 5 s of calls a job
    for _ in range(2):
        assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    runtime = start(root, "runtime", "--max-jobs", "2")
    try:
        assert wait_until(lambda: set(statuses(root).values()) == {"running"}, 30)
        assert wait_until(lambda: sum(endpoints.ai.values()) >= 20)
        cancelled = cxrun(root, "cancel", "--status", "running", "--yes", "--json")
        assert cancelled.returncode == 0, cancelled.stderr
        results = json.loads(cancelled.stdout)["results"]
        assert [(r["job"], r["status"]) for r in results] == [(1, "cancelled"), (2, "cancelled")]
    finally:
        stop(runtime)
    assert statuses(root) == {1: "cancelled", 2: "cancelled"}
    for job in jobs(root):  # the rows no written batch reached are cancelled records
        assert job["cancelled"] > 0 and job["completed"] + job["cancelled"] == 200, job
    assert sum(endpoints.ai.values()) < 2 * 200  # nothing new started after the cancel
    assert endpoints.twice() == {}
    check_invariants(root)


def test_bulk_resume_by_reason_queues_the_credential_pauses_only(
    tmp_path: Path, http_server: FakeServer
) -> None:
    model = Model()
    model.deny = {"3"}  # a 401: the key was revoked
    http_server.handler = model
    root = make_project(
        tmp_path, [ask()], rows=5, providers=llm(http_server), limits={"concurrency": 1}
    )
    assert cxrun(root, "publish").returncode == 0
    for _ in range(2):
        assert cxrun(root, "run-now", "s").returncode == 6  # paused: credentials
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    assert cxrun(root, "pause", "3").returncode == 0  # paused by an operator
    model.deny = set()  # the key is fixed

    resumed = cxrun(root, "resume", "--status", "paused", "--reason", "CREDENTIALS", "--yes")
    assert resumed.returncode == 0, resumed.stderr
    assert resumed.stdout.splitlines() == [
        "resume: 2 jobs (1, 2), 6 unfinished records",
        "job 1: queued",
        "job 2: queued",
        "resume: 2 of 2 jobs queued",
    ], resumed.stdout
    assert "no runtime is up: start `cxrun runtime`" in resumed.stderr
    assert statuses(root) == {1: "queued", 2: "queued", 3: "paused"}
    drained = cxrun(root, "runtime", "--once")
    assert drained.returncode == 0, drained.stderr
    assert statuses(root) == {1: "completed", 2: "completed", 3: "paused"}
    assert model.calls == Counter({"1": 2, "2": 2, "3": 4, "4": 2, "5": 2})  # no call made twice
    check_invariants(root)


class RateLimited:
    """A model that answers record 2 of the first job with a 429 (Retry-After `wait`) once."""

    def __init__(self, wait: int) -> None:
        self.wait = wait
        self.limited = False
        self.calls: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        key = record_of(request)
        with self._lock:
            self.calls[key] += 1
            first = key == "2" and not self.limited
            self.limited = self.limited or first
        if first:
            return OpenAI.rate_limited(retry_after=str(self.wait))
        return OpenAI.answer(f"Hello record {key}", prompt_tokens=10, completion_tokens=5)


def test_a_job_another_process_holds_is_refused_alone(
    tmp_path: Path, http_server: FakeServer
) -> None:
    """Job 2 is paused by a 429 while its run-now still owns it (waiting a minute out): a bulk
    resume queues job 1 (paused by an operator) and refuses job 2, naming who runs it. The
    window is the minute: nothing here races the wait."""
    model = RateLimited(wait=60)
    http_server.handler = model
    root = make_project(
        tmp_path, [ask()], rows=5, providers=llm(http_server), limits={"concurrency": 1}
    )
    assert cxrun(root, "publish").returncode == 0
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    assert cxrun(root, "pause", "1").returncode == 0
    running = start(root, "run-now", "s", "--json")  # job 2
    try:
        assert wait_until(lambda: statuses(root).get(2) == "paused", 30)
        resumed = cxrun(root, "resume", "--status", "paused", "--yes", "--json")
        assert resumed.returncode == 2, resumed.stderr  # one refused
        outcome = json.loads(resumed.stdout)
        assert outcome["refused"] == [2]
        first, second = outcome["results"]
        assert (first["job"], first["ok"], first["status"]) == (1, True, "queued")
        assert second["ok"] is False and second["status"] is None
        assert f"run-now (pid {running.pid}) runs it" in second["error"], second
    finally:
        running.kill()  # rather than wait the minute out: the runtime takes its job over
        running.wait()
    drained = cxrun(root, "runtime", "--once")
    assert drained.returncode == 0, drained.stderr
    assert statuses(root) == {1: "completed", 2: "completed"}
    assert model.calls["2"] == 3  # the 429, then once in each job
    check_invariants(root)
