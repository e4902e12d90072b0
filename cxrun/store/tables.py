"""Loaded tables: immutable numbered versions of a CSV/Parquet file, each with a row ordinal."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import from_db, to_db
from cxrun.base.sql import quote_ident

if TYPE_CHECKING:
    import duckdb

ROW = "_cx_row"
# max_line_size (DuckDB's default is 2 MiB) is the file's size: any line of a valid file fits.
_CSV = "read_csv(?, delim = ?, max_line_size = ?, header = true, strict_mode = true{})"
_MIN_LINE_SIZE = 2 * 1024 * 1024
# The same file as text, where a quoted empty cell ("") is an empty string, not NULL.
_CSV_TEXT = _CSV.format(", all_varchar = true, allow_quoted_nulls = false")


@dataclass(frozen=True)
class TableInfo:
    name: str
    version: int
    physical: str
    file: str
    format: str
    size: int
    mtime_ns: int
    digest: str
    rows: int
    columns: tuple[tuple[str, str], ...]
    loaded_at: datetime

    @property
    def column_names(self) -> tuple[str, ...]:
        return tuple(name for name, _ in self.columns)

    @property
    def sql(self) -> str:
        return quote_ident(self.physical)


_COLUMNS = (
    "name, version, physical, file, format, size, mtime_ns, digest, row_count, columns, loaded_at"
)


def _info(row: tuple[Any, ...]) -> TableInfo:
    columns = tuple((str(c[0]), str(c[1])) for c in json.loads(row[9]))
    name, number, physical, file, fmt, size, mtime_ns, digest, count = row[:9]
    loaded_at = from_db(row[10])
    assert loaded_at is not None
    return TableInfo(
        name, number, physical, file, fmt, size, mtime_ns, digest, count, columns, loaded_at
    )


def current(con: duckdb.DuckDBPyConnection, name: str) -> TableInfo | None:
    row = con.execute(
        f"SELECT {_COLUMNS} FROM cx_tables WHERE name = ? AND current", [name]
    ).fetchone()
    return _info(row) if row else None


def version(con: duckdb.DuckDBPyConnection, name: str, number: int) -> TableInfo | None:
    row = con.execute(
        f"SELECT {_COLUMNS} FROM cx_tables WHERE name = ? AND version = ?", [name, number]
    ).fetchone()
    return _info(row) if row else None


def all_current(con: duckdb.DuckDBPyConnection) -> list[TableInfo]:
    rows = con.execute(f"SELECT {_COLUMNS} FROM cx_tables WHERE current ORDER BY name").fetchall()
    return [_info(row) for row in rows]


def load(
    con: duckdb.DuckDBPyConnection,
    name: str,
    file: str,
    path: str,
    fmt: str,
    stat: tuple[int, int],
    digest: str,
    now: datetime,
    delimiter: str = ",",
) -> TableInfo:
    """Read the file into a new version of the table (inside the caller's transaction)."""
    row = con.execute(
        "SELECT coalesce(max(version), 0) + 1 FROM cx_tables WHERE name = ?", [name]
    ).fetchone()
    number = int(row[0]) if row else 1
    physical = f"t_{name}_v{number}"
    if fmt == "csv":
        select, parameters = _csv_reader(con, path, delimiter, stat[0])
    else:
        select, parameters = "SELECT * FROM read_parquet(?)", [path]
    con.execute(
        f"CREATE TABLE {quote_ident(physical)} AS "
        f"SELECT (row_number() OVER ()) - 1 AS {ROW}, * FROM ({select})",
        parameters,
    )
    described = con.execute(f"DESCRIBE {quote_ident(physical)}").fetchall()
    columns = [(str(c[0]), str(c[1])) for c in described if c[0] != ROW]
    count = con.execute(f"SELECT count(*) FROM {quote_ident(physical)}").fetchone()
    con.execute("UPDATE cx_tables SET current = false WHERE name = ? AND current", [name])
    con.execute(
        "INSERT INTO cx_tables VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, true)",
        [
            name,
            number,
            physical,
            file,
            fmt,
            stat[0],
            stat[1],
            digest,
            count[0] if count else 0,
            json.dumps(columns),
            to_db(now),
        ],
    )
    _drop_unused(con, name)
    info = current(con, name)
    assert info is not None
    return info


def _csv_reader(
    con: duckdb.DuckDBPyConnection, path: str, delimiter: str, size: int
) -> tuple[str, list[str | int]]:
    """The SELECT that reads a CSV file of `size` bytes, and its parameters.

    Column types are detected as DuckDB does, an empty cell being NULL whether quoted or not.
    The text columns are then taken from a second reading, row for row, in which a quoted
    empty cell is an empty string: a column of numbers or dates keeps its type even when some
    cells are `""`, where one reading with allow_quoted_nulls = false would make it text.
    """
    typed = _CSV.format("")
    reading: list[str | int] = [path, delimiter, max(size + 1, _MIN_LINE_SIZE)]
    described = con.execute(f"DESCRIBE SELECT * FROM {typed}", reading).fetchall()
    text = {str(c[0]) for c in described if c[1] == "VARCHAR"}
    if not text:
        return f"SELECT * FROM {typed}", reading
    picked = ", ".join(
        ("s." if str(c[0]) in text else "t.") + quote_ident(str(c[0])) for c in described
    )
    select = f"SELECT {picked} FROM {typed} AS t POSITIONAL JOIN {_CSV_TEXT} AS s"
    return select, reading + reading


def touch(con: duckdb.DuckDBPyConnection, name: str, stat: tuple[int, int]) -> None:
    """The file was rewritten with the same content: remember its new size and time."""
    con.execute(
        "UPDATE cx_tables SET size = ?, mtime_ns = ? WHERE name = ? AND current",
        [stat[0], stat[1], name],
    )


def _drop_unused(con: duckdb.DuckDBPyConnection, name: str) -> None:
    unused = con.execute(
        "SELECT version, physical FROM cx_tables WHERE name = ? AND NOT current "
        "AND version NOT IN (SELECT table_version FROM cx_jobs WHERE table_name = ?)",
        [name, name],
    ).fetchall()
    for number, physical in unused:
        con.execute(f"DROP TABLE IF EXISTS {quote_ident(physical)}")
        con.execute("DELETE FROM cx_tables WHERE name = ? AND version = ?", [name, number])
        con.execute(
            "DELETE FROM cx_key_counts WHERE table_name = ? AND table_version = ?", [name, number]
        )


def preview(con: duckdb.DuckDBPyConnection, info: TableInfo, limit: int) -> list[dict[str, Any]]:
    """The first rows, as JSON-ready mappings (values converted by DuckDB itself)."""
    rows = con.execute(
        f"SELECT to_json(t) FROM (SELECT * FROM {info.sql} ORDER BY {ROW} LIMIT ?) AS t", [limit]
    ).fetchall()
    result = []
    for (text,) in rows:
        values = json.loads(text)
        values.pop(ROW, None)
        result.append(values)
    return result


def key_counts(con: duckdb.DuckDBPyConnection, info: TableInfo, key: str) -> tuple[int, int]:
    """How many rows have a null key, and how many rows repeat an earlier key."""
    column = quote_ident(key)
    row = con.execute(
        f"SELECT count(*) FILTER (WHERE {column} IS NULL), "
        f"count({column}) - count(DISTINCT {column}) FROM {info.sql}"
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


KeySummary = tuple[int, int, list[str]]  # rows with a null key, rows repeating one, a few repeated


def known_keys(con: duckdb.DuckDBPyConnection, info: TableInfo, key: str) -> KeySummary | None:
    """What `key_summary` found for this table version and key column, if it was kept."""
    row = con.execute(
        "SELECT nulls, repeats, duplicates FROM cx_key_counts WHERE table_name = ? "
        "AND table_version = ? AND key = ?",
        [info.name, info.version, key],
    ).fetchone()
    return (int(row[0]), int(row[1]), list(row[2] or [])) if row else None


def key_summary(con: duckdb.DuckDBPyConnection, info: TableInfo, key: str) -> KeySummary:
    """Null and repeated keys of a table version, counted once and kept (a version never
    changes): counting distinct keys reads the whole table into a hash table, which at ten
    million rows costs seconds and hundreds of MB. `con` must be writable."""
    found = known_keys(con, info, key)
    if found is not None:
        return found
    nulls, repeats = key_counts(con, info, key)
    duplicates = duplicate_keys(con, info, key) if repeats else []
    con.execute(
        "INSERT INTO cx_key_counts VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT DO NOTHING",
        [info.name, info.version, key, nulls, repeats, duplicates],
    )
    return nulls, repeats, duplicates


def duplicate_keys(
    con: duckdb.DuckDBPyConnection, info: TableInfo, key: str, limit: int = 3
) -> list[str]:
    column = quote_ident(key)
    rows = con.execute(
        f"SELECT CAST({column} AS VARCHAR) FROM {info.sql} WHERE {column} IS NOT NULL "
        f"GROUP BY {column} HAVING count(*) > 1 ORDER BY min({ROW}) LIMIT ?",
        [limit],
    ).fetchall()
    return [str(r[0]) for r in rows]
