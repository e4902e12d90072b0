"""The API keys of `cxrun serve` in the state: their rows (a hash, never the key), by name or by
lookup, and when each was last used or revoked."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import from_db, to_db

if TYPE_CHECKING:
    import duckdb

_COLUMNS = "name, lookup, hash, scopes, spinners, created_at, last_used_at, revoked_at"


@dataclass(frozen=True)
class StoredKey:
    name: str
    lookup: str
    hash: str
    scopes: tuple[str, ...]
    spinners: tuple[str, ...]
    created_at: datetime
    last_used_at: datetime | None
    revoked_at: datetime | None


def _stored(row: tuple[Any, ...]) -> StoredKey:
    name, lookup, digest, scopes, spinners, created, used, revoked = row
    created_at = from_db(created)
    assert created_at is not None
    return StoredKey(
        name,
        lookup,
        digest,
        tuple(scopes),
        tuple(spinners),
        created_at,
        from_db(used),
        from_db(revoked),
    )


def insert(con: duckdb.DuckDBPyConnection, key: StoredKey) -> None:
    con.execute(
        f"INSERT INTO cx_api_keys ({_COLUMNS}) VALUES (?, ?, ?, ?::VARCHAR[], ?::VARCHAR[], ?, "
        "NULL, NULL)",
        [
            key.name,
            key.lookup,
            key.hash,
            list(key.scopes),
            list(key.spinners),
            to_db(key.created_at),
        ],
    )


def get(con: duckdb.DuckDBPyConnection, name: str) -> StoredKey | None:
    row = con.execute(f"SELECT {_COLUMNS} FROM cx_api_keys WHERE name = ?", [name]).fetchone()
    return _stored(row) if row else None


def by_lookup(con: duckdb.DuckDBPyConnection, lookup: str) -> list[StoredKey]:
    """The keys whose first characters are `lookup` (at most one: each key is made with its own)."""
    rows = con.execute(
        f"SELECT {_COLUMNS} FROM cx_api_keys WHERE lookup = ? ORDER BY name", [lookup]
    ).fetchall()
    return [_stored(row) for row in rows]


def listing(con: duckdb.DuckDBPyConnection) -> list[StoredKey]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM cx_api_keys ORDER BY name").fetchall()
    return [_stored(row) for row in rows]


def revoke(con: duckdb.DuckDBPyConnection, name: str, now: datetime) -> None:
    con.execute(
        "UPDATE cx_api_keys SET revoked_at = ? WHERE name = ? AND revoked_at IS NULL",
        [to_db(now), name],
    )


def touch(con: duckdb.DuckDBPyConnection, name: str, now: datetime, unless_since: datetime) -> None:
    """Mark a live key used at `now`, unless it was marked after `unless_since`."""
    con.execute(
        "UPDATE cx_api_keys SET last_used_at = ? WHERE name = ? AND revoked_at IS NULL "
        "AND (last_used_at IS NULL OR last_used_at <= ?)",
        [to_db(now), name, to_db(unless_since)],
    )
