"""Opening the state file for one short transaction at a time, under the lock, migrated."""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from contextlib import contextmanager, nullcontext
from functools import cache
from pathlib import Path
from typing import TYPE_CHECKING

from cxrun.base.errors import CxrunError, StateDamaged
from cxrun.store import sharing, warm
from cxrun.store.lock import StateLock
from cxrun.store.schema import LATEST, MIGRATIONS

if TYPE_CHECKING:
    import duckdb

STATE_FILE = "state.duckdb"
DEFAULT_LOCK_TIMEOUT = 10.0


@contextmanager
def transaction(con: duckdb.DuckDBPyConnection) -> Iterator[None]:
    """One transaction on `con`: committed on success, rolled back on any error."""
    con.execute("BEGIN")
    try:
        yield
    except BaseException:
        con.execute("ROLLBACK")
        raise
    con.execute("COMMIT")


def _lock_timeout() -> float:
    """CXRUN_LOCK_TIMEOUT, seconds from 0 to a day (NaN or inf would wait for ever)."""
    raw = os.environ.get("CXRUN_LOCK_TIMEOUT", "")
    if not raw:
        return DEFAULT_LOCK_TIMEOUT
    try:
        seconds = float(raw)
    except ValueError:
        seconds = -1.0
    if not 0 <= seconds <= 86400:  # NaN fails this too
        raise CxrunError(
            f"CXRUN_LOCK_TIMEOUT must be a number of seconds from 0 to 86400, not {raw!r}",
            "unset it or set it to e.g. 10",
        )
    return seconds


class State:
    """The state folder. `read()` and `write()` each yield a connection for one transaction.

    Connections are sandboxed (no file, network or extension access) unless `files=True`, which
    only the table loader asks for: user SQL never runs on such a connection.

    The first connection of a process checks the file (whole, every table of its schema there)
    before using or migrating it; any DuckDB error about the file itself, then or later, becomes
    a CxrunError that names the file and says what to do.
    """

    def __init__(self, state_dir: Path, lock_timeout: float | None = None) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        self.shown = f"{state_dir.name}/{STATE_FILE}"  # as the user sees it, from the project
        timeout = _lock_timeout() if lock_timeout is None else lock_timeout
        self.lock = StateLock(state_dir / "state.lock", timeout)
        self._migrated = False
        self._held: duckdb.DuckDBPyConnection | None = None  # see `held`

    def _prepare(self) -> None:
        try:
            self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        except OSError as exc:
            raise self._folder_problem(exc) from None

    def _folder_problem(self, exc: OSError) -> CxrunError:
        name = self.dir.name
        if self.dir.exists() and not self.dir.is_dir():
            return CxrunError(
                f"{name} is a file, but cxrun keeps its state in a folder of that name",
                f"move it aside (mv {name} {name}.old), then `cxrun publish` starts a new state",
            )
        return CxrunError(
            f"cannot create the state folder {name}/: {exc.strerror}",
            "make the project folder writable, or run cxrun as the user who owns it",
        )

    @contextmanager
    def write(self, files: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, read-write transaction; committed on success, rolled back on error."""
        with self.session(files) as con, transaction(con):
            yield con

    @contextmanager
    def held(self) -> Iterator[None]:
        """The exclusive lock and one connection for everything done inside: each `read()`,
        `write()` and `session()` within uses that connection (a write is still a transaction
        of its own), so work that reads and writes several times opens the file once. Only a
        session with `files` opens one of its own meanwhile. Not shared between threads.
        In a process that keeps the file warm (a runtime, `serve`), the sessions inside join
        its database, the other threads' sessions waiting till the work is done."""
        if self._held is not None:
            yield
            return
        warmed = warm.active(str(self.path))
        if warmed is not None:
            with warmed.mutex:
                yield
            return
        self._prepare()
        with self.lock.hold(exclusive=True):
            self._held = self._open(read_only=False, files=False)
            try:
                with sharing.writing(str(self.path)), self._errors():
                    self._migrate(self._held)
                    yield
            finally:
                con, self._held = self._held, None
                con.close()

    @contextmanager
    def warm(self, sessions: int = warm.KEEP_SESSIONS) -> Iterator[None]:
        """Every session of this process inside (any thread, any State of this file) joins one
        database kept open between sessions while no other process waits, for at most
        `sessions` sessions in a row (see store/warm.py)."""
        if self._held is not None:
            yield  # one connection for everything already
            return
        with warm.warm(str(self.path), self.lock.path, self.lock.timeout, sessions):
            yield

    def _open_migrated(self) -> duckdb.DuckDBPyConnection:
        con = self._open(read_only=False, files=False)
        try:
            with self._errors():
                self._migrate(con)
        except BaseException:
            con.close()
            raise
        return con

    @contextmanager
    def session(self, files: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, read-write connection in autocommit mode (see `transaction`)."""
        if self._held is not None:
            with self._within_held(files) as con:
                yield con
            return
        warmed = warm.active(str(self.path))
        if warmed is not None:
            if not files:
                self._prepare()
                with warmed.session(self._open_migrated) as con, self._errors():
                    yield con
                return
            with warmed.closed(), self._own_session(files) as con:  # its own configuration
                yield con
            return
        with self._own_session(files) as con:
            yield con

    @contextmanager
    def _own_session(self, files: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        self._prepare()
        shared = sharing.writing(str(self.path)) if not files else nullcontext()
        with (
            self.lock.hold(exclusive=True),
            self._connect(read_only=False, files=files) as con,
            shared,
        ):
            self._migrate(con)
            yield con

    @contextmanager
    def _within_held(self, files: bool) -> Iterator[duckdb.DuckDBPyConnection]:
        assert self._held is not None
        if not files:
            with self._errors():
                yield self._held
            return
        # One process may not open the file with two configurations: the borrowers of the
        # sandboxed connection are waited for (see `held`), then it is closed meanwhile.
        with sharing.paused(str(self.path)):
            self._held.close()
            try:
                with self._connect(read_only=False, files=True) as con:
                    yield con
            finally:
                self._held = self._open(read_only=False, files=False)

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A shared, read-only view of the state (migrating it first if it is new or old)."""
        if self._held is not None:
            with self._within_held(files=False) as con:
                yield con
            return
        self._prepare()
        warmed = self._migrated or warm.active(str(self.path)) is not None
        if warmed and sharing.borrow(str(self.path)):
            with self._borrowed() as con:
                yield con
            return
        if self.path.exists():
            with self.lock.hold(exclusive=False), self._connect(read_only=True) as con:
                if self._migrated or self._check(con) == LATEST:
                    self._migrated = True
                    yield con
                    return
        with self.write():
            pass
        with self.lock.hold(exclusive=False), self._connect(read_only=True) as con:
            yield con

    @contextmanager
    def _borrowed(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """The database another thread of this process writes, in a read snapshot of its own
        (see store/sharing.py); the borrow ends with it."""
        try:
            with self._connect(read_only=False) as con:
                con.execute("BEGIN TRANSACTION")
                try:
                    yield con
                finally:
                    con.execute("ROLLBACK")
        finally:
            sharing.give_back(str(self.path))

    @contextmanager
    def _connect(self, read_only: bool, files: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """A connection, closed at the end; DuckDB errors about the file become CxrunErrors."""

        con = self._open(read_only, files)
        try:
            with self._errors():
                yield con
        finally:
            con.close()

    @contextmanager
    def _errors(self) -> Iterator[None]:
        """DuckDB errors about the state file itself become CxrunErrors."""
        import duckdb

        try:
            yield
        except duckdb.Error as exc:
            problem = self._about_file(exc)
            if problem is None:
                raise
            raise problem from exc

    def _open(self, read_only: bool, files: bool) -> duckdb.DuckDBPyConnection:
        import duckdb

        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": files,
            "threads": 2,
        }
        try:
            return duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.Error as exc:
            raise self._problem(self._first_line(exc)) from exc

    def _about_file(self, exc: BaseException) -> CxrunError | None:
        """What a DuckDB error (or one it led to, such as a failed rollback) says about the
        state file itself, if it names it; None for any other error."""
        seen: BaseException | None = exc
        for _ in range(4):
            if seen is None:
                return None
            if str(self.path) in str(seen):
                return self._problem(self._first_line(seen))
            seen = seen.__context__
        return None

    def _first_line(self, exc: BaseException) -> str:
        text = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        return text.replace(str(self.dir), self.dir.name)

    def _problem(self, text: str) -> CxrunError:
        """The error for DuckDB's complaint `text` about the state file."""
        if "Could not set lock" in text:
            return CxrunError(
                f"cannot open {self.shown}: {text}",
                "another program may hold it open; close it and try again",
            )
        if "Permission denied" in text or "Read-only file system" in text:
            return CxrunError(
                f"cannot write {self.shown}: {text}",
                f"make {self.dir.name}/ and its files writable for your user "
                f"(chmod -R u+rwX {self.dir.name}), or run cxrun as the user who owns them",
            )
        if "No space left" in text:
            return CxrunError(f"cannot write {self.shown}: {text}", "free some disk space")
        if "version number" in text:
            return CxrunError(
                f"cannot open {self.shown}: {text}",
                "it was written by a newer DuckDB: upgrade cxrun to read it",
            )
        return StateDamaged(text, self.shown)

    @staticmethod
    def _version(con: duckdb.DuckDBPyConnection, tables: set[str]) -> int:
        if "cx_meta" not in tables:
            return 0
        row = con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _check(self, con: duckdb.DuckDBPyConnection) -> int:
        """The schema version of the open file, once it is known to be whole and to have every
        table of that version (StateDamaged otherwise)."""
        rows = con.execute(
            "SELECT table_name FROM duckdb_tables() WHERE database_name = current_database() "
            "AND schema_name = 'main'"
        ).fetchall()
        present = {str(row[0]) for row in rows}
        version = self._version(con, present)
        if version > LATEST:
            raise CxrunError(
                f"state was written by a newer cxrun (schema {version}, this one knows {LATEST})",
                "upgrade cxrun to read this project",
            )
        if version == 0 and present & _tables(LATEST):
            raise StateDamaged("its schema version (table cx_meta) is missing", self.shown)
        missing = sorted(_tables(version) - present)
        if missing:
            raise StateDamaged(f"table {missing[0]} is missing", self.shown)
        self._check_size(con)
        return version

    def _check_size(self, con: duckdb.DuckDBPyConnection) -> None:
        """A file too short for the blocks in use was cut: reading would fail later, at some
        table. (Free blocks may lie past the end of a whole file: only used ones count.)"""
        if self.path.with_name(STATE_FILE + ".wal").exists():
            return  # blocks still in the write-ahead log are not in the file yet
        row = con.execute(
            "SELECT block_size * used_blocks FROM pragma_database_size() "
            "WHERE database_name = current_database()"
        ).fetchone()
        size = self.path.stat().st_size
        if row and row[0] and size < int(row[0]):
            raise StateDamaged(
                f"the file is {size:,} bytes but its blocks in use need {int(row[0]):,} "
                "(was it cut short?)",
                self.shown,
            )

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._migrated:
            return
        version = self._check(con)
        for number in range(version, LATEST):
            con.execute("BEGIN")
            con.execute(MIGRATIONS[number])
            con.execute(
                "INSERT OR REPLACE INTO cx_meta VALUES ('schema_version', ?)", [str(number + 1)]
            )
            con.execute("COMMIT")
        self._migrated = True


@cache
def _tables(version: int) -> frozenset[str]:
    """The cx_ tables a state file at schema `version` has (from the migrations' SQL)."""
    names: set[str] = set()
    for sql in MIGRATIONS[:version]:
        names |= set(re.findall(r"CREATE TABLE (\w+)", sql))
        names -= set(re.findall(r"DROP TABLE (?:IF EXISTS )?(\w+)", sql))
    return frozenset(names)
