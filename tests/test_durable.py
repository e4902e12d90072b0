"""Detached jobs, the runtime, leases and takeover, and resuming after kill -9."""

from __future__ import annotations

import os
import random
import subprocess
import time
from datetime import timedelta

import duckdb
from conftest import EXECUTABLE
from test_io_runtime import KEY, Model, ask, llm, make_project

from cxrun.base.clock import utcnow
from cxrun.store import State
from cxrun.store import claims as claim_store
from cxrun.store.claims import Owner

pytest_plugins = ["servers"]

ROWS = 300
CONCURRENCY = 8


def environment() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
    env["LLM_KEY"] = KEY
    return env


def start(root, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [str(EXECUTABLE), *args],
        cwd=root,
        env=environment(),
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def cxrun(root, *args: str) -> subprocess.CompletedProcess[str]:
    """The installed executable, run to its end, with the model's key in its environment."""
    return subprocess.run(
        [str(EXECUTABLE), *args],
        cwd=root,
        env=environment(),
        capture_output=True,
        text=True,
        timeout=120,
    )


def state_rows(root, sql: str, params: list[object] | None = None) -> list[tuple]:
    """Read the state file directly (only once every cxrun process has exited)."""
    con = duckdb.connect(str(root / ".cxrun" / "state.duckdb"), read_only=True)
    try:
        return con.execute(sql, params or []).fetchall()
    finally:
        con.close()


def wait_until(condition, seconds: float = 60.0) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.005)
    return False


def crash_project(tmp_path, http_server, delay: float = 0.02):
    """A 300-row project with an AI step against a Model that takes `delay` s an answer.

    Tests that must act while the job still runs use a slower model: at 50 ms a call the job
    takes about 2 s at concurrency 8, well over the half second the owner needs to react."""
    model = Model(delay=delay)
    http_server.handler = model
    steps = [
        {"id": "hello", "log": "hi {{ name }}"},
        ask(),
        {"id": "size", "set": {"n": "length(draft)"}},
    ]
    root = make_project(
        tmp_path, steps, rows=ROWS, providers=llm(http_server), limits={"concurrency": CONCURRENCY}
    )
    published = cxrun(root, "publish")
    assert published.returncode == 0, published.stderr
    return root, model


def test_detached_jobs_wait_for_the_runtime(tmp_path, http_server, run):
    root, _ = crash_project(tmp_path, http_server)
    queued = run(root, "run-now", "s", "--detach", "--json", env={"LLM_KEY": KEY})
    assert queued.code == 0, queued
    assert '"status": "queued"' in queued.stdout
    drained = run(root, "runtime", "--once", env={"LLM_KEY": KEY})
    assert drained.code == 0, drained
    assert "job 1: claimed" in drained.stderr and "job 1: completed" in drained.stderr
    assert state_rows(root, "SELECT status, completed FROM cx_jobs") == [("completed", ROWS)]
    assert run(root, "runtime", "--once", env={"LLM_KEY": KEY}).code == 0  # nothing left: fine


def test_kill_9_at_random_moments_loses_nothing_and_repeats_no_finished_call(tmp_path, http_server):
    root, model = crash_project(tmp_path, http_server)
    rng = random.Random(20261122)
    process = start(root, "run-now", "s", "--json")
    kills = lost_in_flight = 0
    for _ in range(5):
        target = sum(model.calls.values()) + rng.randint(10, 50)
        wait_until(
            lambda target=target, process=process: (
                sum(model.calls.values()) >= target or process.poll() is not None
            )
        )
        if process.poll() is not None:
            break
        lost_in_flight += model.in_flight
        process.kill()
        process.wait()
        kills += 1
        process = start(root, "runtime", "--once")  # takes over the dead owner's job
    process.wait(timeout=120)
    finish = cxrun(root, "runtime", "--once")
    assert finish.returncode == 0, finish.stderr

    assert kills == 5, "the job ended before it could be killed five times"
    assert state_rows(root, "SELECT status, completed, failed FROM cx_jobs") == [
        ("completed", ROWS, 0)
    ]
    counts = state_rows(root, "SELECT count(*), count(DISTINCT key) FROM cx_records")
    assert counts == [(ROWS, ROWS)]  # every record exactly once
    repeated = state_rows(
        root,
        "SELECT seq, pos, count(*) FROM cx_journey WHERE status = 'completed' "
        "GROUP BY seq, pos HAVING count(*) <> 1",
    )
    assert repeated == []  # every finished step has exactly one completed entry
    entries = state_rows(root, "SELECT count(*) FROM cx_journey WHERE status = 'completed'")
    assert entries == [(ROWS * 3,)]
    assert set(model.calls) == {str(i) for i in range(1, ROWS + 1)}
    # Only calls in flight at a kill may be made again.
    assert sum(model.calls.values()) <= ROWS + max(lost_in_flight, kills * CONCURRENCY)
    assert not list((root / ".cxrun" / "spool").glob("job-*/*.jsonl"))


def test_two_runtimes_never_run_the_same_job(tmp_path, http_server):
    root, model = crash_project(tmp_path, http_server)
    for _ in range(3):
        queued = cxrun(root, "run-now", "s", "--detach")
        assert queued.returncode == 0, queued.stderr
    first, second = start(root, "runtime", "--once"), start(root, "runtime", "--once")
    for process in (first, second):
        assert process.wait(timeout=120) == 0, process.stderr.read() if process.stderr else ""
    assert state_rows(root, "SELECT job, status, completed FROM cx_jobs ORDER BY job") == [
        (1, "completed", ROWS),
        (2, "completed", ROWS),
        (3, "completed", ROWS),
    ]
    duplicated = state_rows(
        root, "SELECT job, key FROM cx_records GROUP BY job, key HAVING count(*) > 1"
    )
    assert duplicated == []
    assert sum(model.calls.values()) == 3 * ROWS


def test_an_orphan_is_taken_at_once_on_this_host_and_after_its_lease_elsewhere(tmp_path):
    state = State(tmp_path / ".cxrun")
    now = utcnow()
    with state.write() as con:
        for job in (1, 2, 3, 4):
            con.execute(
                "INSERT INTO cx_jobs (job, spinner, version, status, total, cursor) "
                "VALUES (?, 's', 1, 'running', 10, 0)",
                [job],
            )
        claim_store.claim(con, 1, Owner("a", 999_999_9, "here"), now, now + timedelta(hours=1))
        claim_store.claim(con, 2, Owner("b", os.getpid(), "here"), now, now + timedelta(hours=1))
        claim_store.claim(con, 3, Owner("c", 1234, "elsewhere"), now, now - timedelta(seconds=1))
        claim_store.claim(con, 4, Owner("d", 1234, "elsewhere"), now, now + timedelta(hours=1))

        def alive(pid: int) -> bool:  # on "here", only this test's own process runs
            return pid == os.getpid()

        assert claim_store.claimable(con, now, "here", alive) == [1, 3]
        # A renewal by an owner that lost the job does nothing.
        taker = Owner("e", os.getpid(), "here")
        claim_store.claim(con, 3, taker, now, now + timedelta(hours=1))
        assert not claim_store.renew(con, 3, Owner("c", 1234, "elsewhere"), now)
        assert claim_store.renew(con, 3, taker, now + timedelta(hours=2))


def test_a_runtime_stopped_by_sigterm_gives_its_job_back_and_exits_0(tmp_path, http_server):
    import signal

    root, model = crash_project(tmp_path, http_server, delay=0.05)
    queued = cxrun(root, "run-now", "s", "--detach")
    assert queued.returncode == 0, queued.stderr
    runtime = start(root, "runtime")  # long-lived: only a signal stops it
    assert wait_until(lambda: sum(model.calls.values()) >= 40)
    runtime.send_signal(signal.SIGTERM)
    _, err = runtime.communicate(timeout=30)
    assert runtime.returncode == 0, err
    assert "stopped after" in err and "Traceback" not in err
    assert state_rows(root, "SELECT status, owner FROM cx_jobs") == [("queued", None)]
    before = sum(model.calls.values())
    finish = cxrun(root, "runtime", "--once")
    assert finish.returncode == 0, finish.stderr
    assert state_rows(root, "SELECT status, completed FROM cx_jobs") == [("completed", ROWS)]
    assert max(model.calls.values()) == 1  # what was finished before the stop was kept
    assert before < ROWS and sum(model.calls.values()) == ROWS


def test_kill_9_while_parked_records_go_on_loses_and_repeats_nothing(tmp_path, http_server):
    """Records parked at a wait go on in a runtime that is killed twice; the next one finishes."""
    model = Model(delay=0.02)
    http_server.handler = model
    steps = [{"id": "pause", "wait": "1h"}, ask(), {"id": "size", "set": {"n": "length(draft)"}}]
    root = make_project(
        tmp_path, steps, rows=ROWS, providers=llm(http_server), limits={"concurrency": CONCURRENCY}
    )
    early, due = "2026-11-23T10:00:00Z", "2026-11-23T11:00:00Z"

    def at(moment: str, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [str(EXECUTABLE), *args],
            cwd=root,
            env={**environment(), "CXRUN_NOW": moment},
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )

    assert at(early, "publish").wait(timeout=60) == 0
    assert at(early, "run-now", "s").wait(timeout=60) == 6  # everyone waits
    assert sum(model.calls.values()) == 0
    kills = 0
    for target in (60, 150):
        process = at(due, "runtime", "--once")
        wait_until(
            lambda t=target, p=process: sum(model.calls.values()) >= t or p.poll() is not None
        )
        if process.poll() is None:
            process.kill()
            kills += 1
        process.wait()
    assert at(due, "runtime", "--once").wait(timeout=120) == 0

    assert kills == 2
    assert state_rows(root, "SELECT status, completed, waiting FROM cx_jobs") == [
        ("completed", ROWS, 0)
    ]
    assert state_rows(root, "SELECT count(*), count(DISTINCT key) FROM cx_records") == [
        (ROWS, ROWS)
    ]
    entries = state_rows(
        root, "SELECT status, count(*), count(DISTINCT (seq, pos)) FROM cx_journey GROUP BY status"
    )
    assert entries == [("completed", ROWS * 3, ROWS * 3)]  # no waiting entry left, none twice
    waited = state_rows(
        root, "SELECT min(started_at), min(ended_at) FROM cx_journey WHERE step = 'pause'"
    )
    assert [(str(a), str(b)) for a, b in waited] == [("2026-11-23 10:00:00", "2026-11-23 11:00:00")]
    assert set(model.calls) == {str(i) for i in range(1, ROWS + 1)}
    assert sum(model.calls.values()) <= ROWS + kills * CONCURRENCY


def test_a_runtime_outwaited_by_a_long_hold_on_the_state_goes_on_after_it(tmp_path, http_server):
    """A lock held longer than the runtime's lock timeout skips its turns (it says so), instead
    of ending it; once released, the queued job is run."""
    root, model = crash_project(tmp_path, http_server)
    runtime = subprocess.Popen(
        [str(EXECUTABLE), "runtime"],
        cwd=root,
        env={**environment(), "CXRUN_LOCK_TIMEOUT": "0.3"},
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        up = lambda: '"up": true' in cxrun(root, "live", "--json").stdout  # noqa: E731
        assert wait_until(up)  # its loop runs (on a loaded machine it may take a while to start)
        state = State(root / ".cxrun")
        with state.lock.hold(exclusive=True):
            time.sleep(3)  # several turns of the runtime (one a second)
            assert runtime.poll() is None
        assert cxrun(root, "run-now", "s", "--detach").returncode == 0
        assert wait_until(
            lambda: '"status": "completed"' in cxrun(root, "job", "1", "--json").stdout
        )
    finally:
        runtime.send_signal(2)
        _, err = runtime.communicate(timeout=60)
    assert runtime.returncode == 0, err
    assert "state busy, trying again next turn" in err and "Traceback" not in err
    assert sum(model.calls.values()) == ROWS
