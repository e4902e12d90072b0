"""Processes side by side: readers list jobs while a job writes; a held lock makes commands wait,
then fail with exit 5, and leaves the state as it was."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import duckdb
import pytest
from conftest import EXECUTABLE, write_project

from cxrun.runtime.batches import BATCH_ROWS

# More than two batches of the runtime, so that readers can come in between them.
ROWS = 1_100_000
assert ROWS > 2 * BATCH_ROWS + BATCH_ROWS // 5  # (a last fifth of a batch joins the one before)
DEADLINE_S = 240.0
POLL_S = 0.02

BIG = """name: big
table: people
key: id
fields:
  email: {required: true}
steps:
  - id: hello
    log: "Hello {{ first_name }} from {{ city }}"
  - id: vip
    tag: vip
    when: "lifetime_value > 1000"
  - id: score
    set:
      score: "lifetime_value / 100"
      band: "CASE WHEN lifetime_value > 1000 THEN 'high' ELSE 'low' END"
  - id: bye
    log: "Bye {{ first_name }}"
"""

PEOPLE_SQL = """
COPY (
    SELECT i + 1 AS id,
           ['Ada', 'Alan', 'Grace', 'Edsger', 'Barbara'][1 + CAST(i % 5 AS INTEGER)] AS first_name,
           'person' || i || '@example.org' AS email,
           ['London', 'Paris', 'Berlin'][1 + CAST(i % 3 AS INTEGER)] AS city,
           CAST((i * 37) % 2000 AS DOUBLE) AS lifetime_value
    FROM range(?) AS t(i)
) TO '{path}' (FORMAT parquet)
"""

# Takes the state lock like a cxrun writer (exclusive, its PID in the file), or shared, then
# holds it until it is killed.
HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o644)
if sys.argv[2] == "exclusive":
    fcntl.flock(fd, fcntl.LOCK_EX)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\\n".encode(), 0)
else:
    fcntl.flock(fd, fcntl.LOCK_SH)
open(sys.argv[3], "w").close()
while True:
    time.sleep(60)
"""


def _env(**extra: str) -> dict[str, str]:
    environment = {k: v for k, v in os.environ.items() if k != "CXRUN_PROJECT"}
    environment.update(extra)
    return environment


def _wait_for(condition, what: str, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(POLL_S)


@pytest.fixture
def big_project(tmp_path: Path, run) -> Path:
    root = write_project(tmp_path / "big", spinners={"big": BIG}, tables={})
    parquet = root / "tables" / "people.parquet"
    with duckdb.connect() as con:
        con.execute(PEOPLE_SQL.format(path=str(parquet).replace("'", "''")), [ROWS])
    published = run(root, "publish", "--json", timeout=DEADLINE_S)
    assert published.code == 0, published
    return root


def _job_of(listing: list[dict], number: int) -> dict | None:
    return next((job for job in listing if job["job"] == number), None)


def test_readers_list_jobs_while_a_big_job_writes(big_project, run):
    writer = subprocess.Popen(
        [str(EXECUTABLE), "run-now", "big", "--json"],
        cwd=big_project,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + DEADLINE_S
    seen: list[dict] = []  # the job as each reader saw it, in order
    reads_during_run = 0
    try:
        while writer.poll() is None:
            assert time.monotonic() < deadline, "the writer did not finish in time"
            result = run(big_project, "jobs", "--json", timeout=DEADLINE_S)
            assert result.code == 0, result
            job = _job_of(json.loads(result.stdout), 1)
            reads_during_run += 1
            if job is not None:
                seen.append(job)
        out, err = writer.communicate(timeout=DEADLINE_S)
    finally:
        if writer.poll() is None:
            writer.kill()
            writer.communicate()

    assert writer.returncode == 0, err
    final = json.loads(out)
    assert (final["status"], final["total"], final["completed"]) == ("completed", ROWS, ROWS)

    after = run(big_project, "jobs", "--json")
    assert after.code == 0, after
    assert _job_of(json.loads(after.stdout), 1) == final

    assert reads_during_run >= 1
    assert seen, "no reader saw the job while it ran"
    progress = [job["processed"] for job in seen] + [final["processed"]]
    assert progress == sorted(progress), f"progress went backwards: {progress}"
    finished = [job["status"] != "running" for job in seen] + [True]
    assert finished == sorted(finished), f"a finished job was seen running again: {seen}"
    # Each state a reader saw is the final one or an intermediate one: running, rows to go.
    assert all(
        job == final or (job["status"] == "running" and job["processed"] < ROWS) for job in seen
    ), seen


def _release(holder: subprocess.Popen) -> None:
    if holder.poll() is None:
        holder.kill()
    holder.wait(timeout=30)


@pytest.fixture
def lock_holder(tmp_path: Path):
    """Start a process that holds `.cxrun/state.lock` ("exclusive" or "shared") until it is
    released or the test ends."""
    holders: list[subprocess.Popen] = []

    def hold(project: Path, mode: str) -> subprocess.Popen:
        ready = tmp_path / f"held-{len(holders)}"
        holder = subprocess.Popen(
            [sys.executable, "-c", HOLDER, str(project / ".cxrun" / "state.lock"), mode, ready]
        )
        holders.append(holder)
        _wait_for(lambda: ready.exists() or holder.poll() is not None, "the lock holder")
        assert holder.poll() is None, "the lock holder exited"
        return holder

    yield hold
    for holder in holders:
        _release(holder)


@pytest.fixture
def ran_once(project, run) -> tuple[Path, list[dict]]:
    assert run(project, "publish").code == 0
    assert run(project, "run-now", "welcome", "--json").code == 3
    listed = run(project, "jobs", "--json")
    assert listed.code == 0, listed
    return project, json.loads(listed.stdout)


@pytest.mark.parametrize(
    "args",
    [("jobs", "--json"), ("records", "1", "--json"), ("run-now", "welcome", "--json")],
    ids=["read", "read-records", "write"],
)
def test_a_held_lock_fails_with_exit_5_after_the_timeout(ran_once, run, lock_holder, args):
    project, _ = ran_once
    pid = lock_holder(project, "exclusive").pid

    started = time.monotonic()
    busy = run(project, *args, env={"CXRUN_LOCK_TIMEOUT": "0.5"}, timeout=60)
    elapsed = time.monotonic() - started
    assert busy.code == 5, busy
    assert busy.stdout == ""
    assert "state is busy" in busy.stderr
    assert f"PID {pid}" in busy.stderr
    assert "Traceback" not in busy.stderr
    assert elapsed < 8, f"waited {elapsed:.1f}s, not about CXRUN_LOCK_TIMEOUT=0.5"


def test_the_state_is_intact_once_the_lock_is_released(ran_once, run, lock_holder):
    project, jobs_before = ran_once
    holder = lock_holder(project, "exclusive")
    busy = run(project, "run-now", "welcome", "--json", env={"CXRUN_LOCK_TIMEOUT": "0.5"})
    assert busy.code == 5, busy
    _release(holder)

    listed = run(project, "jobs", "--json", env={"CXRUN_LOCK_TIMEOUT": "0.5"})
    assert listed.code == 0, listed
    assert json.loads(listed.stdout) == jobs_before  # the refused run-now created no job
    again = run(project, "run-now", "welcome", "--json")
    assert again.code == 3, again
    assert json.loads(again.stdout)["job"] == 2
    records = run(project, "records", "1", "--json")
    assert records.code == 0, records
    assert len(json.loads(records.stdout)) == 5


def test_a_command_waits_for_a_short_hold_instead_of_failing(ran_once, lock_holder):
    project, jobs_before = ran_once
    holder = lock_holder(project, "exclusive")
    waiting = subprocess.Popen(
        [str(EXECUTABLE), "jobs", "--json"],
        cwd=project,
        env=_env(CXRUN_LOCK_TIMEOUT="30"),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        lock = (project / ".cxrun" / "state.lock").resolve()
        _wait_for(lambda: _has_open(waiting.pid, lock), "the command to wait for the lock")
        assert waiting.poll() is None
        _release(holder)
        out, err = waiting.communicate(timeout=60)
    finally:
        if waiting.poll() is None:
            waiting.kill()
            waiting.communicate()
    assert waiting.returncode == 0, err
    assert json.loads(out) == jobs_before


def _has_open(pid: int, path: Path) -> bool:
    """Whether process `pid` has `path` open (as a cxrun that waits for the state lock has)."""
    try:
        links = [os.readlink(fd) for fd in Path(f"/proc/{pid}/fd").iterdir()]
    except OSError:  # the process ended, or a descriptor closed while listing
        return False
    return str(path) in links


def test_busy_message_names_a_reader_that_keeps_a_writer_out(ran_once, run, lock_holder):
    """Not the PID of an earlier writer (a process that has exited, or another that reused the
    PID since): an operator may act on the number."""
    project, _ = ran_once
    reader = lock_holder(project, "shared").pid
    busy = run(project, "run-now", "welcome", "--json", env={"CXRUN_LOCK_TIMEOUT": "0.5"})
    assert busy.code == 5, busy
    assert "state is busy" in busy.stderr
    assert f"held by PID {reader})" in busy.stderr, busy.stderr
