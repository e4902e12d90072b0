"""Published spinner versions: immutable, numbered, identified by the digest of their file."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import from_db, to_db

if TYPE_CHECKING:
    import duckdb


@dataclass(frozen=True)
class Version:
    spinner: str
    version: int
    digest: str
    spec: dict[str, Any]
    published_at: datetime


def latest(con: duckdb.DuckDBPyConnection, spinner: str) -> Version | None:
    row = con.execute(
        "SELECT spinner, version, digest, spec, published_at FROM cx_spinners "
        "WHERE spinner = ? ORDER BY version DESC LIMIT 1",
        [spinner],
    ).fetchone()
    if not row:
        return None
    return _version(row)


def version(con: duckdb.DuckDBPyConnection, spinner: str, number: int) -> Version | None:
    row = con.execute(
        "SELECT spinner, version, digest, spec, published_at FROM cx_spinners "
        "WHERE spinner = ? AND version = ?",
        [spinner, number],
    ).fetchone()
    return _version(row) if row else None


def history(con: duckdb.DuckDBPyConnection, spinner: str) -> list[Version]:
    """Every version of a spinner, newest first."""
    rows = con.execute(
        "SELECT spinner, version, digest, spec, published_at FROM cx_spinners "
        "WHERE spinner = ? ORDER BY version DESC",
        [spinner],
    ).fetchall()
    return [_version(r) for r in rows]


def all_latest(con: duckdb.DuckDBPyConnection) -> dict[str, Version]:
    rows = con.execute(
        "SELECT spinner, version, digest, spec, published_at FROM cx_spinners "
        "QUALIFY row_number() OVER (PARTITION BY spinner ORDER BY version DESC) = 1"
    ).fetchall()
    return {r[0]: _version(r) for r in rows}


def names(con: duckdb.DuckDBPyConnection) -> set[str]:
    """The spinners with a published version."""
    return {
        str(row[0]) for row in con.execute("SELECT DISTINCT spinner FROM cx_spinners").fetchall()
    }


def _version(row: tuple[Any, ...]) -> Version:
    published = from_db(row[4])
    assert published is not None
    return Version(row[0], row[1], row[2], json.loads(row[3]), published)


def publish(
    con: duckdb.DuckDBPyConnection,
    spinner: str,
    digest: str,
    spec: dict[str, Any],
    source: str,
    now: datetime,
) -> Version:
    """A new version, unless the latest one has the same digest (then that one)."""
    current = latest(con, spinner)
    if current and current.digest == digest:
        return current
    number = current.version + 1 if current else 1
    con.execute(
        "INSERT INTO cx_spinners VALUES (?, ?, ?, ?, ?, ?)",
        [spinner, number, digest, json.dumps(spec), source, to_db(now)],
    )
    found = latest(con, spinner)
    assert found is not None
    return found
