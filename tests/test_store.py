"""The state file: migrations, one transaction per open, sandboxed connections."""

from __future__ import annotations

import duckdb
import pytest

from cxrun.base.errors import CxrunError
from cxrun.store import State
from cxrun.store.schema import LATEST


def version_on_disk(state: State) -> int:
    con = duckdb.connect(str(state.path), read_only=True)
    try:
        return int(
            con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'").fetchone()[0]
        )
    finally:
        con.close()


def test_a_new_state_is_migrated_to_the_latest_schema(tmp_path):
    state = State(tmp_path / ".cxrun")
    with state.read() as con:
        assert con.execute("SELECT count(*) FROM cx_jobs").fetchone() == (0,)
    assert version_on_disk(state) == LATEST
    assert (tmp_path / ".cxrun").stat().st_mode & 0o777 == 0o700


def test_a_state_from_a_newer_cxrun_is_refused(tmp_path):
    state = State(tmp_path / ".cxrun")
    with state.write() as con:
        con.execute("UPDATE cx_meta SET value = '999' WHERE key = 'schema_version'")
    with pytest.raises(CxrunError, match="newer cxrun"), State(tmp_path / ".cxrun").write():
        pass


def test_a_failed_write_rolls_back_and_leaves_the_state_as_it_was(tmp_path):
    state = State(tmp_path / ".cxrun")
    with state.write() as con:
        con.execute("INSERT INTO cx_selections VALUES (1, 0, 0)")
    with pytest.raises(ZeroDivisionError), state.write() as con:
        con.execute("INSERT INTO cx_selections VALUES (1, 1, 1)")
        raise ZeroDivisionError
    with state.read() as con:
        assert con.execute("SELECT count(*) FROM cx_selections").fetchone() == (1,)


def test_state_connections_cannot_read_files(tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("hunter2")
    state = State(tmp_path / ".cxrun")
    with state.write() as con, pytest.raises(duckdb.PermissionException):
        con.execute("SELECT * FROM read_text(?)", [str(secret)])
    with state.read() as con, pytest.raises(duckdb.PermissionException):
        con.execute(f"ATTACH '{tmp_path / 'other.db'}' AS other")


def test_the_connection_is_closed_after_each_transaction(tmp_path):
    state = State(tmp_path / ".cxrun")
    with state.write():
        pass
    # Nothing in this process holds the file: another connection can open it read-write.
    other = duckdb.connect(str(state.path))
    other.close()


def test_held_opens_the_file_once_keeps_each_write_a_transaction_and_lets_others_in_after(
    tmp_path,
):
    import subprocess
    import sys

    state = State(tmp_path / ".cxrun", lock_timeout=0.5)
    with state.write():
        pass
    opened = []
    real = state._open
    state._open = lambda *a, **k: opened.append(k or a) or real(*a, **k)
    probe = (
        "import sys; from cxrun.store import State; from cxrun.base.errors import StateBusy\n"
        "try:\n    with State(__import__('pathlib').Path(sys.argv[1]), 0.2).read(): pass\n"
        "except StateBusy: sys.exit(5)\n"
    )
    other = [sys.executable, "-c", probe, str(state.dir)]
    with state.held():
        with state.write() as con:
            con.execute("INSERT INTO cx_selections VALUES (1, 0, 0)")
        with pytest.raises(ZeroDivisionError), state.write() as con:
            con.execute("INSERT INTO cx_selections VALUES (1, 1, 1)")
            raise ZeroDivisionError  # this write alone is rolled back
        with state.session(files=True) as con:  # the table loader's own connection
            assert con.execute("SELECT count(*) FROM cx_selections").fetchone() == (1,)
        with state.read() as con:
            assert con.execute("SELECT count(*) FROM cx_selections").fetchone() == (1,)
        assert subprocess.run(other).returncode == 5  # the exclusive lock is held throughout
    assert len(opened) == 3  # held, the files session, held again after it
    assert subprocess.run(other).returncode == 0
    other_con = duckdb.connect(str(state.path))  # and nothing keeps the file open
    other_con.close()


def test_a_thread_reads_the_last_commit_while_another_thread_of_the_process_writes(tmp_path):
    """The reader neither waits for the writer's lock nor sees its open transaction; the
    writer lets the file go only once the reader is done, and then another process opens it."""
    import subprocess
    import sys
    import threading
    import time

    writer, reader = State(tmp_path / ".cxrun"), State(tmp_path / ".cxrun", lock_timeout=0.5)
    with writer.write() as con:
        con.execute("INSERT INTO cx_selections VALUES (1, 0, 0)")
    with reader.read():
        pass  # the reader's State knows the file is migrated
    inside, release, reading, done = (threading.Event() for _ in range(4))

    def write() -> None:
        with writer.write() as con:
            con.execute("INSERT INTO cx_selections VALUES (1, 1, 1)")
            inside.set()
            release.wait(10)
        done.set()

    def read() -> None:
        with reader.read() as con:
            seen.append(con.execute("SELECT count(*) FROM cx_selections").fetchone()[0])
            reading.set()
            time.sleep(0.5)  # the writer ends meanwhile and must wait for this read
            seen.append(done.is_set())

    seen: list[object] = []
    threads = [threading.Thread(target=write)]
    threads[0].start()
    assert inside.wait(10)
    threads.append(threading.Thread(target=read))
    threads[1].start()
    assert reading.wait(10)
    release.set()
    for thread in threads:
        thread.join(10)
    assert seen == [1, False]  # the last commit, and the writer had not let go during the read
    opened = [sys.executable, "-c", f"import duckdb; duckdb.connect({str(writer.path)!r}).close()"]
    assert subprocess.run(opened).returncode == 0
    with reader.read() as con:
        assert con.execute("SELECT count(*) FROM cx_selections").fetchone() == (2,)
