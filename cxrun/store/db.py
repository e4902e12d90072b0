"""Opening the state file for one short transaction at a time, under the lock, migrated."""

from __future__ import annotations

import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

from cxrun.errors import CxrunError
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
    """

    def __init__(self, state_dir: Path, lock_timeout: float | None = None) -> None:
        self.dir = state_dir
        self.path = state_dir / STATE_FILE
        timeout = _lock_timeout() if lock_timeout is None else lock_timeout
        self.lock = StateLock(state_dir / "state.lock", timeout)
        self._migrated = False

    def _prepare(self) -> None:
        self.dir.mkdir(mode=0o700, parents=True, exist_ok=True)

    @contextmanager
    def write(self, files: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, read-write transaction; committed on success, rolled back on error."""
        with self.session(files) as con, transaction(con):
            yield con

    @contextmanager
    def session(self, files: bool = False) -> Iterator[duckdb.DuckDBPyConnection]:
        """An exclusive, read-write connection in autocommit mode (see `transaction`)."""
        self._prepare()
        with self.lock.hold(exclusive=True):
            con = self._open(read_only=False, files=files)
            try:
                self._migrate(con)
                yield con
            finally:
                con.close()

    @contextmanager
    def read(self) -> Iterator[duckdb.DuckDBPyConnection]:
        """A shared, read-only view of the state (migrating it first if it is new or old)."""
        self._prepare()
        if self.path.exists():
            with self.lock.hold(exclusive=False):
                con = self._open(read_only=True, files=False)
                if self._migrated or self._version(con) == LATEST:
                    self._migrated = True
                    try:
                        yield con
                    finally:
                        con.close()
                    return
                con.close()
        with self.write():
            pass
        with self.lock.hold(exclusive=False):
            con = self._open(read_only=True, files=False)
            try:
                yield con
            finally:
                con.close()

    def _open(self, read_only: bool, files: bool) -> duckdb.DuckDBPyConnection:
        import duckdb

        config: dict[str, str | bool | int | float | list[str]] = {
            "enable_external_access": files,
            "threads": 2,
        }
        try:
            return duckdb.connect(str(self.path), read_only=read_only, config=config)
        except duckdb.IOException as exc:
            raise CxrunError(
                f"cannot open {self.path.name}: {str(exc).splitlines()[0]}",
                "another program may hold it open; close it and try again",
            ) from None

    @staticmethod
    def _version(con: duckdb.DuckDBPyConnection) -> int:
        found = con.execute(
            "SELECT count(*) FROM duckdb_tables() WHERE table_name = 'cx_meta'"
        ).fetchone()
        if not found or not found[0]:
            return 0
        row = con.execute("SELECT value FROM cx_meta WHERE key = 'schema_version'").fetchone()
        return int(row[0]) if row else 0

    def _migrate(self, con: duckdb.DuckDBPyConnection) -> None:
        if self._migrated:
            return
        version = self._version(con)
        if version > LATEST:
            raise CxrunError(
                f"state was written by a newer cxrun (schema {version}, this one knows {LATEST})",
                "upgrade cxrun to read this project",
            )
        for number in range(version, LATEST):
            con.execute("BEGIN")
            con.execute(MIGRATIONS[number])
            con.execute(
                "INSERT OR REPLACE INTO cx_meta VALUES ('schema_version', ?)", [str(number + 1)]
            )
            con.execute("COMMIT")
        self._migrated = True
