"""One owner per job, tried with real processes side by side: a long-lived runtime beside
resume, retry, approve and Ctrl-C; every invariant of the exactly-once promise checked after."""

from __future__ import annotations

import json
import signal
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

from servers import FakeServer, OpenAI, Reply, Request
from test_durable import cxrun, start, state_rows, wait_until
from test_io_runtime import ask, hook, llm, make_project, record_of, send

pytest_plugins = ["servers"]

ROWS = 200
CONCURRENCY = 8


class Endpoints:
    """An OpenAI-compatible model at /v1 and a webhook at /hook, both answering after `delay`.

    The webhook counts deliveries (2xx answers) per Idempotency-Key, and answers 400 to the
    records in `refuse` (a bad recipient, until it is fixed)."""

    def __init__(self, delay: float) -> None:
        self.delay = delay
        self.refuse: set[str] = set()
        self.ai: Counter[str] = Counter()
        self.delivered: Counter[str] = Counter()
        self.sends: Counter[str] = Counter()
        self._lock = threading.Lock()

    def __call__(self, request: Request) -> Reply:
        time.sleep(self.delay)
        if request.path.startswith("/v1"):
            key = record_of(request)
            with self._lock:
                self.ai[key] += 1
            return OpenAI.answer(f"Hello record {key}", prompt_tokens=10, completion_tokens=5)
        idempotency = request.headers.get("idempotency-key", "")
        record = str(request.json()["record"])
        with self._lock:
            self.sends[record] += 1
            if record in self.refuse:
                return Reply(400, {"error": "bad recipient"})
            self.delivered[idempotency] += 1
        return Reply(200, {"id": f"hook-{idempotency}"})

    def twice(self) -> dict[str, int]:
        return {key: n for key, n in self.delivered.items() if n > 1}


def project(tmp_path: Path, server: FakeServer, delay: float = 0.02, approval: bool = False):
    endpoints = Endpoints(delay)
    server.handler = endpoints
    steps: list[dict[str, Any]] = [
        {"id": "hello", "log": "hi {{ name }}"},
        ask(),
        send("hook", text="{{ draft }}"),
    ]
    if approval:
        steps.append({"id": "check", "approval": {"prompt": "Go on with {{ id }}?"}})
    steps.append({"id": "size", "set": {"n": "length(draft)"}})
    root = make_project(
        tmp_path,
        steps,
        rows=ROWS,
        providers=llm(server),
        channels=hook(server),
        limits={"concurrency": CONCURRENCY},
    )
    published = cxrun(root, "publish")
    assert published.returncode == 0, published.stderr
    return root, endpoints


def jobs(root: Path) -> list[dict[str, Any]]:
    listed = cxrun(root, "jobs", "--json")
    assert listed.returncode == 0, listed.stderr
    return list(json.loads(listed.stdout))


def the_job(root: Path, job: int = 1) -> dict[str, Any]:
    return next(j for j in jobs(root) if j["job"] == job)


def check_invariants(root: Path) -> None:
    """What must hold in any state, read once no cxrun process is left."""
    for job in jobs(root):
        counted = sum(job[k] for k in ("completed", "failed", "skipped", "waiting", "cancelled"))
        assert job["processed"] <= job["total"], job
        assert counted == job["processed"], job
    by_status = state_rows(
        root,
        "SELECT j.job, j.completed, j.failed, j.skipped, j.waiting, j.cancelled, "
        "count(*) FILTER (WHERE r.status = 'completed'), count(*) FILTER (WHERE r.status = "
        "'failed'), count(*) FILTER (WHERE r.status = 'skipped'), count(*) FILTER (WHERE "
        "r.status = 'waiting'), count(*) FILTER (WHERE r.status = 'cancelled') FROM cx_jobs AS j "
        "LEFT JOIN cx_records AS r USING (job) GROUP BY ALL",
    )
    for job, *counts in by_status:
        assert counts[:5] == counts[5:], (job, counts)
    assert (
        state_rows(root, "SELECT job, seq FROM cx_records GROUP BY job, seq HAVING count(*) > 1")
        == []
    )
    assert (
        state_rows(
            root,
            "SELECT job, seq, pos FROM cx_journey WHERE status = 'completed' "
            "GROUP BY job, seq, pos HAVING count(*) > 1",
        )
        == []
    )


def test_resume_beside_a_live_runtime_runs_the_job_once(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    runtime = start(root, "runtime")
    try:
        assert wait_until(lambda: sum(endpoints.ai.values()) >= 30)
        paused = cxrun(root, "pause", "1", "--json")
        assert paused.returncode == 0, paused.stderr
        assert json.loads(paused.stdout)["status"] == "paused"
        resumed = cxrun(root, "resume", "1", "--json")  # here, with the runtime still up
        assert resumed.returncode == 0, resumed.stderr
        assert json.loads(resumed.stdout)["status"] == "completed"
        time.sleep(2.5)  # two turns of the runtime: it must not run the job again
    finally:
        runtime.send_signal(signal.SIGTERM)
        _, err = runtime.communicate(timeout=30)
    assert runtime.returncode == 0 and "Traceback" not in err, err
    assert err.count("job 1: claimed") == 1, err  # the runtime took it once, before the pause
    job = the_job(root)
    assert (job["status"], job["completed"], job["total"]) == ("completed", ROWS, ROWS)
    assert endpoints.twice() == {}  # no message went out twice
    assert len(endpoints.delivered) == ROWS and max(endpoints.ai.values()) == 1
    check_invariants(root)


def test_retry_beside_a_live_runtime_retries_once(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.005)
    endpoints.refuse = {str(i) for i in range(1, 41)}
    first = cxrun(root, "run-now", "s", "--json")
    assert first.returncode == 3, first.stderr  # partial: 40 sends refused
    assert json.loads(first.stdout)["failed"] == 40
    endpoints.refuse.clear()  # the recipients are fixed
    runtime = start(root, "runtime")
    try:
        assert wait_until(lambda: runtime_up(root), 20)
        retried = cxrun(root, "retry", "1", "--json")
        assert retried.returncode == 0, retried.stderr
        job = json.loads(retried.stdout)
        assert (job["status"], job["completed"], job["failed"]) == ("completed", ROWS, 0)
        time.sleep(2.5)
    finally:
        runtime.send_signal(signal.SIGTERM)
        _, err = runtime.communicate(timeout=30)
    assert "claimed" not in err, err  # the retry's own process ran it, and only it
    assert the_job(root)["status"] == "completed"
    assert endpoints.twice() == {}
    assert len(endpoints.delivered) == ROWS
    assert max(endpoints.ai.values()) == 1  # the retried sends reused the AI answers
    check_invariants(root)


def runtime_up(root: Path) -> bool:
    return bool(json.loads(cxrun(root, "live", "--json").stdout)["runtime"]["up"])


def test_ctrl_c_on_run_now_hands_the_job_back_and_resume_finishes_it(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    running = start(root, "run-now", "s")
    assert wait_until(lambda: sum(endpoints.ai.values()) >= 40)
    running.send_signal(signal.SIGINT)
    _, err = running.communicate(timeout=60)
    assert running.returncode == 130, err
    assert "Traceback" not in err
    assert "interrupted: job 1 handed back: queued with" in err and "cxrun resume 1" in err, err
    job = the_job(root)
    assert job["status"] == "queued" and job["processed"] < ROWS
    assert state_rows(root, "SELECT owner FROM cx_jobs") == [(None,)]

    doctor = cxrun(root, "doctor", "--json")
    runtime_check = next(c for c in json.loads(doctor.stdout)["checks"] if c["check"] == "runtime")
    assert not runtime_check["ok"] and "1 job(s) queued" in runtime_check["detail"]

    resumed = cxrun(root, "resume", "1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["completed"] == ROWS
    assert endpoints.twice() == {}
    assert sum(endpoints.ai.values()) <= ROWS + CONCURRENCY  # at most the calls in flight again
    check_invariants(root)


def test_sigterm_on_run_now_beside_a_runtime_says_the_runtime_finishes_it(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    runtime = start(root, "runtime")
    try:
        running = start(root, "run-now", "s")
        assert wait_until(lambda: sum(endpoints.ai.values()) >= 40)
        running.send_signal(signal.SIGTERM)
        _, err = running.communicate(timeout=60)
        assert running.returncode == 143, err
        assert "job 1 handed back" in err and "runtime (pid" in err, err
        assert wait_until(lambda: the_job(root)["status"] == "completed", 60)
    finally:
        runtime.send_signal(signal.SIGTERM)
        runtime.communicate(timeout=30)
    assert endpoints.twice() == {}
    check_invariants(root)


def test_a_dead_owner_is_flagged_by_doctor_and_live_then_taken_over(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    running = start(root, "run-now", "s")
    assert wait_until(lambda: sum(endpoints.ai.values()) >= 40)
    running.kill()
    running.wait()
    assert the_job(root)["status"] == "running"

    live = json.loads(cxrun(root, "live", "--json").stdout)
    assert [o["job"] for o in live["orphaned"]] == [1], live
    assert live["orphaned"][0]["owner_pid"] == running.pid
    doctor = json.loads(cxrun(root, "doctor", "--json").stdout)
    check = next(c for c in doctor["checks"] if c["check"] == "runtime")
    assert not check["ok"] and "job 1" in check["detail"] and "gone" in check["detail"], check

    resumed = cxrun(root, "resume", "1", "--json")  # resume takes over a job whose owner died
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    check_invariants(root)


def test_resume_of_a_job_a_live_process_runs_is_refused(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    running = start(root, "run-now", "s")
    try:
        assert wait_until(lambda: sum(endpoints.ai.values()) >= 20)
        again = cxrun(root, "resume", "1")
        assert again.returncode == 2, again.stderr
        assert f"run-now (pid {running.pid}) runs it" in again.stderr, again.stderr
    finally:
        running.communicate(timeout=120)
    assert running.returncode == 0
    assert endpoints.twice() == {}
    check_invariants(root)


def test_an_answer_to_a_running_job_goes_on_in_its_owner(tmp_path, http_server):
    """Approvals answered while run-now is still going: the run-now continues them itself."""
    root, endpoints = project(tmp_path, http_server, delay=0.02, approval=True)
    running = start(root, "run-now", "s", "--json")
    assert wait_until(lambda: any(j["waiting"] for j in jobs(root)), 60)
    answered = cxrun(root, "approve", "1", "--all", "--json")
    assert answered.returncode == 0, answered.stderr
    out, err = running.communicate(timeout=120)
    job = json.loads(out)
    assert running.returncode in (0, 6), err
    if job["status"] == "waiting":  # answered after the pass: approve again, here
        assert cxrun(root, "approve", "1", "--all").returncode == 0
    final = the_job(root)
    assert final["status"] == "completed" and final["completed"] == ROWS, final
    assert endpoints.twice() == {}
    check_invariants(root)


def test_a_cancelled_job_counts_its_rows_the_same_everywhere(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    running = start(root, "run-now", "s")
    assert wait_until(lambda: sum(endpoints.ai.values()) >= 40)
    cancelled = cxrun(root, "cancel", "1", "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    running.communicate(timeout=60)
    job = the_job(root)
    left = job["cancelled"]
    assert job["status"] == "cancelled" and left > 0
    assert job["completed"] + left == ROWS == job["processed"]
    listed = cxrun(root, "records", "1", "--status", "cancelled", "--json", "--limit", "1000")
    assert len(json.loads(listed.stdout)) == left
    pending = cxrun(root, "records", "1", "--status", "pending", "--json")
    assert json.loads(pending.stdout) == []
    detail = json.loads(cxrun(root, "job", "1", "--json").stdout)
    assert detail["records"]["cancelled"] == left, detail["records"]
    summary = cxrun(root, "job", "1")
    assert f"{left} cancelled" in summary.stdout, summary.stdout
    check_invariants(root)


def test_kill_9_during_a_retry_is_carried_out_by_the_runtime_that_takes_over(tmp_path, http_server):
    root, endpoints = project(tmp_path, http_server, delay=0.05)
    endpoints.refuse = {str(i) for i in range(1, 101)}
    assert cxrun(root, "run-now", "s").returncode == 3
    endpoints.refuse.clear()
    sent_before = sum(endpoints.sends.values())
    retrying = start(root, "retry", "1")
    assert wait_until(lambda: sum(endpoints.sends.values()) >= sent_before + 30)
    retrying.kill()
    retrying.wait()
    drained = cxrun(root, "runtime", "--once")
    assert drained.returncode == 0, drained.stderr
    job = the_job(root)
    assert (job["status"], job["completed"], job["failed"]) == ("completed", ROWS, 0), job
    assert max(endpoints.ai.values()) == 1
    assert sum(n - 1 for n in endpoints.delivered.values() if n > 1) <= CONCURRENCY
    check_invariants(root)
