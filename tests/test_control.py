"""cancel, pause and resume, from another process than the one running the job."""

from __future__ import annotations

import json
import subprocess

from test_durable import ROWS, crash_project, cxrun, start, state_rows, wait_until

pytest_plugins = ["servers"]


def running(root, model, calls: int = 40) -> subprocess.Popen[str]:
    """A run-now in its own process, some calls into its job."""
    process = start(root, "run-now", "s", "--json")
    assert wait_until(lambda: sum(model.calls.values()) >= calls), "the job never started"
    return process


def test_cancel_stops_a_job_running_in_another_process(tmp_path, http_server):
    root, model = crash_project(tmp_path, http_server, delay=0.05)
    process = running(root, model)
    answered = cxrun(root, "cancel", "1", "--json")
    assert answered.returncode == 0, answered.stderr
    job = json.loads(answered.stdout)
    assert job["status"] == "cancelled" and job["cancelled"] > 0
    assert process.wait(timeout=30) == 1  # the run ends as the job did: cancelled
    calls = sum(model.calls.values())
    assert calls < ROWS  # nothing new started after the cancel
    ((status, done, cancelled),) = state_rows(
        root, "SELECT status, completed + failed, cancelled FROM cx_jobs"
    )
    assert status == "cancelled" and done + cancelled == ROWS
    again = cxrun(root, "cancel", "1")
    assert again.returncode == 2 and "cancelled already" in again.stderr


def test_pause_then_resume_finishes_without_calling_twice(tmp_path, http_server):
    root, model = crash_project(tmp_path, http_server, delay=0.05)
    process = running(root, model)
    paused = cxrun(root, "pause", "1", "--json")
    assert paused.returncode == 0, paused.stderr
    assert json.loads(paused.stdout)["status"] == "paused"
    assert process.wait(timeout=30) == 6  # run-now exits 6 for a paused job
    before = sum(model.calls.values())
    resumed = cxrun(root, "resume", "1", "--json")
    assert resumed.returncode == 0, resumed.stderr
    assert json.loads(resumed.stdout)["status"] == "completed"
    assert state_rows(root, "SELECT count(*), count(DISTINCT key) FROM cx_records") == [
        (ROWS, ROWS)
    ]
    assert max(model.calls.values()) == 1  # no record's call was made twice
    assert sum(model.calls.values()) == ROWS and before < ROWS


def test_a_queued_job_is_cancelled_or_paused_at_once(tmp_path, http_server):
    root, model = crash_project(tmp_path, http_server)
    for _ in range(2):
        assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    assert json.loads(cxrun(root, "pause", "1", "--json").stdout)["status"] == "paused"
    cancelled = json.loads(cxrun(root, "cancel", "2", "--json").stdout)
    assert (cancelled["status"], cancelled["cancelled"]) == ("cancelled", ROWS)
    assert cxrun(root, "runtime", "--once").returncode == 0
    assert state_rows(root, "SELECT job, status FROM cx_jobs ORDER BY job") == [
        (1, "paused"),
        (2, "cancelled"),
    ]
    assert sum(model.calls.values()) == 0


def test_watch_redraws_while_a_runtime_works_and_leaves_on_ctrl_c(tmp_path, http_server):
    import signal

    root, _ = crash_project(tmp_path, http_server)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    watcher = start(root, "jobs", "--watch", "--interval", "0.2")
    runtime = cxrun(root, "runtime", "--once")
    assert runtime.returncode == 0, runtime.stderr
    assert wait_until(lambda: state_rows(root, "SELECT status FROM cx_jobs") == [("completed",)])
    watcher.send_signal(signal.SIGINT)
    out, err = watcher.communicate(timeout=30)
    assert watcher.returncode == 0, err
    assert "Traceback" not in out + err
    # Off a terminal the live display prints its last frame only: the job as it ended.
    assert "completed" in out and f"{ROWS}/{ROWS}" in out


def test_side_by_side_a_run_a_poller_and_a_runtime_never_fail(tmp_path, http_server):
    """A job running inline, `jobs --json` five times a second, and a runtime started meanwhile
    (with a second job queued for it): no process fails, progress never goes backwards."""
    import time

    root, model = crash_project(tmp_path, http_server, delay=0.05)
    inline = running(root, model, calls=20)
    assert cxrun(root, "run-now", "s", "--detach").returncode == 0
    runtime = start(root, "runtime", "--once")
    seen: dict[int, list[int]] = {}
    failures = []
    while inline.poll() is None or runtime.poll() is None:
        polled = cxrun(root, "jobs", "--json")
        if polled.returncode != 0:
            failures.append(polled.stderr)
        else:
            for job in json.loads(polled.stdout):
                seen.setdefault(job["job"], []).append(job["processed"])
        time.sleep(0.2)
    assert failures == []
    assert inline.returncode == 0 and runtime.returncode == 0
    assert state_rows(root, "SELECT job, status, completed FROM cx_jobs ORDER BY job") == [
        (1, "completed", ROWS),
        (2, "completed", ROWS),
    ]
    for progress in seen.values():
        assert progress == sorted(progress)  # never backwards
    assert len(seen[1]) >= 3
