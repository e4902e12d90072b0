"""What keeps ten times the work at ten times the cost: key counts kept per table version
(migration 15), records pages read from their first seq on, a job's batches sharing one state
connection while no other process waits for it, and a job of pure steps that never loads an
HTTP client."""

from __future__ import annotations

import json
import subprocess
import sys
import threading
import time
from pathlib import Path

import duckdb
import pytest
from conftest import write_project

from cxrun.ops import views
from cxrun.store import State, warm
from cxrun.store import tables as table_store
from cxrun.store.context import open_context
from cxrun.store.loading import ensure_loaded
from cxrun.store.schema import LATEST

TWINS = """id,first_name,email,lifetime_value
1,Ada,ada@example.org,10
2,Alan,,20
2,Grace,grace@example.org,30
,Edsger,edsger@example.org,40
5,Barbara,barbara@example.org,50
"""

KEPT_ROWS = """SELECT table_name, table_version, key, nulls, repeats, duplicates
FROM cx_key_counts ORDER BY table_name, table_version, key"""


def _kept(state: State) -> list[tuple]:
    with state.read() as con:
        return con.execute(KEPT_ROWS).fetchall()


# ---- key counts, kept per table version --------------------------------------------------


def test_key_counts_are_counted_once_per_table_version_and_kept(tmp_path: Path) -> None:
    root = write_project(tmp_path / "p", tables={"contacts": TWINS})
    ctx = open_context(str(root))
    info = ensure_loaded(ctx.project, ctx.state, "contacts")
    with ctx.state.write() as con:
        assert table_store.known_keys(con, info, "id") is None
        assert table_store.key_summary(con, info, "id") == (1, 1, ["2"])
    assert _kept(ctx.state) == [("contacts", 1, "id", 1, 1, ["2"])]
    # Read back from what was kept, not counted again: a kept row changed by hand shows.
    with ctx.state.write() as con:
        con.execute("UPDATE cx_key_counts SET repeats = 7")
        assert table_store.key_summary(con, info, "id") == (1, 7, ["2"])
        assert table_store.key_summary(con, info, "email") == (1, 0, [])
    assert [row[2] for row in _kept(ctx.state)] == ["email", "id"]


def test_publish_keeps_the_key_counts_and_a_new_table_version_is_counted_afresh(
    project: Path, cli
) -> None:
    assert cli(project, "publish").code == 0
    state = open_context(str(project)).state
    assert _kept(state) == [("contacts", 1, "id", 0, 0, [])]
    assert cli(project, "run-now", "welcome", "--json").code == 3  # one record lacks its email
    assert _kept(state) == [("contacts", 1, "id", 0, 0, [])]

    (project / "tables" / "contacts.csv").write_text(TWINS)
    done = cli(project, "run-now", "welcome", "--json")
    assert done.code == 2, done
    assert 'column "id" is empty in 1 row(s)' in done.stderr
    assert 'column "id" has duplicate values in tables/contacts.csv (2)' in done.stderr
    # The refused run wrote nothing; validate counts version 2 in a session of its own (version
    # 1 stays, for job 1).
    assert _kept(state) == [("contacts", 1, "id", 0, 0, [])]
    assert cli(project, "validate").code == 2
    assert _kept(state) == [("contacts", 1, "id", 0, 0, []), ("contacts", 2, "id", 1, 1, ["2"])]


def test_a_dropped_table_version_drops_its_key_counts(project: Path, cli) -> None:
    assert cli(project, "publish").code == 0  # version 1, counted; no job uses it
    (project / "tables" / "contacts.csv").write_text(TWINS)
    assert cli(project, "tables", "load").code == 0  # version 2; version 1 is dropped
    assert _kept(open_context(str(project)).state) == []


def test_a_state_from_before_key_counts_gains_the_table_and_runs_on(
    project: Path, cli, run
) -> None:
    """A state at schema 14 (a job and its table) is migrated; its next run (the installed
    executable: a fresh process) counts the keys and keeps them."""
    assert cli(project, "publish").code == 0
    assert cli(project, "run-now", "welcome", "--json").code == 3
    path = project / ".cxrun" / "state.duckdb"
    con = duckdb.connect(str(path))
    con.execute("DROP TABLE cx_key_counts")
    con.execute("UPDATE cx_meta SET value = '14' WHERE key = 'schema_version'")
    con.close()

    done = run(project, "run-now", "welcome", "--json")
    assert done.code == 3, done
    assert json.loads(done.stdout)["job"] == 2
    state = open_context(str(project)).state
    assert _kept(state) == [("contacts", 1, "id", 0, 0, [])]
    with state.read() as con:
        version = con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'")
        assert version.fetchone() == (str(LATEST),)
        assert con.execute("SELECT count(*) FROM cx_records").fetchone() == (10,)


# ---- records pages -------------------------------------------------------------------------

RETRY = """name: flaky
table: contacts
key: id
steps:
  - id: hello
    log: "Hello {{ first_name }}"
  - id: ratio
    set:
      ratio: "CAST(100 / (id % 4) AS INTEGER)"
"""


def _all_records(project: Path, job: int, status: str | None) -> list[str]:
    con = duckdb.connect(str(project / ".cxrun" / "state.duckdb"), read_only=True)
    try:
        return [
            str(row[0])
            for row in con.execute(
                "SELECT key FROM cx_records WHERE job = ? AND (? IS NULL OR status = ?) "
                "ORDER BY seq",
                [job, status, status],
            ).fetchall()
        ]
    finally:
        con.close()


def _paged(project: Path, job: int, status: str | None, size: int) -> list[str]:
    ctx = open_context(str(project))
    found: list[str] = []
    for page in range(1, 100):
        records = views.records(ctx, job, status, page, size)
        if not records:
            return found
        found += [r.record for r in records]
    raise AssertionError("too many pages")


def test_pages_of_records_are_the_job_s_records_in_order_after_a_retry_too(
    tmp_path: Path, cli
) -> None:
    """Every page, with and without a status, matches the records in seq order, including
    after a retry that deletes and writes records again (out of their insertion order)."""
    rows = "id,first_name\n" + "".join(f"{i},P{i}\n" for i in range(1, 41))
    root = write_project(tmp_path / "p", spinners={"flaky": RETRY}, tables={"contacts": rows})
    assert cli(root, "publish").code == 0
    assert cli(root, "run-now", "flaky", "--json").code == 3  # id % 4 = 0 divides by zero
    assert cli(root, "retry", "1", "--json").code == 3  # the same rows fail again
    for status in (None, "completed", "failed"):
        expected = _all_records(root, 1, status)
        assert expected, status
        for size in (1, 3, 7, 50):
            assert _paged(root, 1, status, size) == expected, (status, size)
    assert views.records(open_context(str(root)), 1, None, 10**6, 50) == []


# ---- kept sessions ---------------------------------------------------------------------------

PROBE = (
    "import sys, pathlib\n"
    "from cxrun.store import State\n"
    "from cxrun.base.errors import StateBusy\n"
    "try:\n"
    "    with State(pathlib.Path(sys.argv[1]), float(sys.argv[2])).write() as con:\n"
    "        con.execute('INSERT INTO cx_selections VALUES (9, 9, 9)')\n"
    "except StateBusy:\n"
    "    sys.exit(5)\n"
)


def _probe(state: State, wait: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", PROBE, str(state.dir), str(wait)])


def _count(con: duckdb.DuckDBPyConnection, job: int) -> int:
    return int(con.execute("SELECT count(*) FROM cx_selections WHERE job = ?", [job]).fetchone()[0])


def _new_state(folder: Path, lock_timeout: float = 10.0) -> State:
    """A state made and migrated, nobody holding it."""
    state = State(folder / ".cxrun", lock_timeout=lock_timeout)
    with state.write():
        pass
    return state


def _counting(state: State) -> list[object]:
    """The openings of the file (new DuckDB databases) by `state`'s warm sessions from now on
    (a reader's borrowing connection joins the open database: not counted)."""
    opened: list[object] = []
    real = state._open_migrated
    state._open_migrated = lambda: opened.append(1) or real()  # type: ignore[method-assign]
    return opened


def test_warm_sessions_share_one_database_and_let_a_waiting_process_in(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "IDLE_AFTER", 600.0)  # not let go for idleness in this test
    state = _new_state(tmp_path, lock_timeout=60)
    opened = _counting(state)
    with state.warm():
        for seq in range(3):
            with state.write() as con:
                con.execute("INSERT INTO cx_selections VALUES (1, ?, ?)", [seq, seq])
        assert len(opened) == 1  # one database for the three sessions
        # Nobody waits: the lock stays held between sessions, a process that will not wait
        # finds the state busy.
        assert _probe(state, 0.0).wait(60) == 5
        # A process that waits gets in between sessions, with no session of ours to end.
        assert _probe(state, 60.0).wait(60) == 0
        with state.session() as con:  # opened again, and the waiter's write is there
            assert _count(con, 1) == 3 and _count(con, 9) == 1
        assert len(opened) == 2
    other = duckdb.connect(str(state.path))  # and nothing keeps the file open after
    other.close()


def test_a_warm_database_is_shared_by_the_threads_and_states_of_the_process(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "IDLE_AFTER", 600.0)
    state = _new_state(tmp_path, lock_timeout=60)
    other = State(tmp_path / ".cxrun", lock_timeout=60)  # as a courier's or a job's own
    opened, opened_other = _counting(state), _counting(other)

    def insert(which: State, job: int) -> None:
        for seq in range(20):
            with which.write() as con:
                con.execute("INSERT INTO cx_selections VALUES (?, ?, ?)", [job, seq, seq])

    with state.warm():
        with state.session():
            pass  # opened here
        threads = [
            threading.Thread(target=insert, args=(s, n)) for n, s in ((1, state), (2, other))
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        with other.read() as con:  # a reader of the process borrows it
            assert _count(con, 1) == 20 and _count(con, 2) == 20
    assert len(opened) + len(opened_other) == 2  # 41 sessions: 32 in a row, then once more


def test_a_warm_database_is_let_go_when_idle(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "IDLE_AFTER", 0.2)
    state = _new_state(tmp_path, lock_timeout=0.5)
    with state.warm():
        with state.session():
            pass
        time.sleep(0.5)
        assert _probe(state, 0.0).wait(60) == 0  # it did not wait: nothing held the state


def test_a_warm_database_is_opened_again_after_so_many_sessions(tmp_path: Path) -> None:
    state = _new_state(tmp_path)
    opened = _counting(state)
    with state.warm(sessions=8):
        for _ in range(2 * 8 + 1):
            with state.session():
                pass
    assert len(opened) == 3


def test_a_failed_warm_session_rolls_back_and_lets_the_file_go(tmp_path: Path) -> None:
    state = _new_state(tmp_path, lock_timeout=0.5)
    with state.warm():
        with pytest.raises(ZeroDivisionError), state.write() as con:
            con.execute("INSERT INTO cx_selections VALUES (1, 0, 0)")
            raise ZeroDivisionError
        assert _probe(state, 0.0).wait(60) == 0  # let go at once: the probe got in
        with state.read() as con:
            assert _count(con, 1) == 0 and _count(con, 9) == 1


def test_sessions_inside_a_warm_session_keep_the_database_open_till_it_ends(
    tmp_path: Path,
) -> None:
    state = _new_state(tmp_path)
    opened = _counting(state)
    with state.warm(sessions=4):
        with state.session() as outer:
            for seq in range(4 + 1):
                with state.write() as inner:
                    inner.execute("INSERT INTO cx_selections VALUES (1, ?, ?)", [seq, seq])
            assert _count(outer, 1) == 5
        assert len(opened) == 1  # not let go while the outer session ran
    other = duckdb.connect(str(state.path))  # let go once the outer session ended
    other.close()


# ---- what a pure job imports -----------------------------------------------------------------

NO_HTTP = (  # what was imported, once the command is done (cxrun's exit runs atexit first)
    "import atexit, sys\n"
    "from cxrun.cli import main\n"
    "atexit.register(lambda: print('httpx' in sys.modules))\n"
    "sys.argv = ['cxrun', 'run-now', 'welcome', '--json']\n"
    "main()\n"
)


def test_a_job_of_pure_steps_runs_without_importing_an_http_client(project: Path, cli) -> None:
    """httpx (and what it imports) cost a short run-now a good part of its start: a spinner
    without I/O steps never loads it."""
    assert cli(project, "publish").code == 0
    done = subprocess.run(
        [sys.executable, "-c", NO_HTTP], cwd=project, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 3, done  # partial: one record of five fails
    assert done.stdout.strip().splitlines()[-1] == "False", done


def test_held_work_in_a_warm_process_joins_its_database_and_keeps_other_threads_out(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(warm, "IDLE_AFTER", 600.0)
    state = _new_state(tmp_path, lock_timeout=60)
    other = State(tmp_path / ".cxrun", lock_timeout=60)  # as the runtime thread of `serve`
    opened, opened_other = _counting(state), _counting(other)
    order: list[str] = []

    def write_beside() -> None:
        with other.write() as con:
            con.execute("INSERT INTO cx_selections VALUES (2, 0, 0)")
            order.append("other thread")

    with state.warm():
        with state.session():
            pass  # opened here
        with state.held():
            beside = threading.Thread(target=write_beside)
            beside.start()
            time.sleep(0.3)
            for seq in range(3):
                with state.write() as con:
                    con.execute("INSERT INTO cx_selections VALUES (1, ?, ?)", [seq, seq])
            order.append("held work")
        beside.join(30)
        with state.read() as con:
            assert _count(con, 1) == 3 and _count(con, 2) == 1
    assert order == ["held work", "other thread"]
    # the held work opened nothing of its own: the database was not let go and opened again
    assert len(opened) + len(opened_other) == 1
