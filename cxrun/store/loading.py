"""Tables: finding their files under tables/, loading them when they change, previewing them."""

from __future__ import annotations

import csv
import hashlib
from pathlib import Path
from typing import Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import NotFound, TableError
from cxrun.base.project import Project
from cxrun.base.sql import duckdb_message
from cxrun.store import State
from cxrun.store import tables as table_store
from cxrun.store.tables import TableInfo

FORMATS = {".csv": "csv", ".parquet": "parquet", ".pq": "parquet"}
_DELIMITERS = (",", ";", "\t", "|")
RESERVED_PREFIX = "_cx"


def table_names(project: Project) -> list[str]:
    folder = project.tables_dir
    if not folder.is_dir():
        return []
    return sorted({p.stem for p in folder.iterdir() if p.suffix.lower() in FORMATS})


def table_file(project: Project, name: str) -> Path:
    folder = project.tables_dir
    candidates = sorted(folder.glob(f"{name}.*")) if folder.is_dir() else []
    usable = [p for p in candidates if p.suffix.lower() in FORMATS]
    if len(usable) > 1:
        files = " and ".join(project.shown(p) for p in usable)
        raise TableError(f"table '{name}' has two files: {files}", "keep only one of them")
    if usable:
        return _usable(project, usable[0])
    if candidates:
        raise TableError(
            f"{project.shown(candidates[0])}: unsupported file type '{candidates[0].suffix}'",
            "tables are .csv or .parquet files; convert it to one of those",
        )
    known = ", ".join(table_names(project)) or "none yet"
    raise NotFound(
        f"unknown table '{name}': no tables/{name}.csv or tables/{name}.parquet (tables: {known})",
        "put the file under tables/ or fix the table name",
    )


def _usable(project: Project, path: Path) -> Path:
    """`path` if it is a file (or a link to one); TableError naming it otherwise."""
    if path.is_file():
        return path
    shown = project.shown(path)
    if path.is_dir():
        raise TableError(
            f"{shown} is a folder, not a table file",
            "move it out of tables/: a table is a .csv or .parquet file",
        )
    if path.is_symlink():
        raise TableError(
            f"{shown} is a link to {path.readlink()}, which does not exist",
            "point the link at the table's file, or remove it",
        )
    raise TableError(f"{shown} is not a regular file", "replace it with a .csv or .parquet file")


def loaded(project: Project, con: Any, name: str) -> TableInfo | None:
    """The current version of a table if its file has not changed since it was loaded (None
    when it has: `ensure_loaded` loads it), read on an open state connection."""
    path = table_file(project, name)
    info = table_store.current(con, name)
    return info if info and not _changed(path, info) else None


def ensure_loaded(project: Project, state: State, name: str, force: bool = False) -> TableInfo:
    """The current version of a table, loading the file first when it is new or has changed."""
    path = table_file(project, name)
    try:
        stat = path.stat()
    except OSError as exc:
        raise _unreadable(project, path, exc) from None
    signature = (stat.st_size, stat.st_mtime_ns)
    with state.read() as con:
        info = table_store.current(con, name)
    if info and not force and (info.size, info.mtime_ns) == signature and info.file == path.name:
        return info
    try:
        digest = _digest(path)
    except OSError as exc:
        raise _unreadable(project, path, exc) from None
    with state.write(files=True) as con:
        info = table_store.current(con, name)
        if info and not force and info.digest == digest and info.file == path.name:
            table_store.touch(con, name, signature)
            return info
        return _load(project, con, name, path, signature, digest)


def _load(
    project: Project, con: Any, name: str, path: Path, signature: tuple[int, int], digest: str
) -> TableInfo:
    import duckdb

    shown = project.shown(path)
    fmt = FORMATS[path.suffix.lower()]
    header = _csv_header(path, shown) if fmt == "csv" else None
    delimiter = header[0] if header else ","
    try:
        info = table_store.load(
            con, name, path.name, str(path), fmt, signature, digest, utcnow(), delimiter
        )
    except duckdb.Error as exc:
        problem = (_ragged_line(path, header) if header else None) or duckdb_message(exc)
        raise TableError(
            f"{shown}: cannot load as {fmt.upper()}: {_short(problem)}",
            "fix the file (every row needs the same columns as the header) and try again",
        ) from None
    if header and len(info.columns) != len(header[1]):
        raise TableError(
            f"{shown}: cannot load as CSV: {_ragged_line(path, header) or 'inconsistent rows'}",
            "fix the file (every row needs the same columns as the header) and try again",
        )
    reserved = [c for c in info.column_names if c.lower().startswith(RESERVED_PREFIX)]
    if reserved:
        raise TableError(
            f"{shown}: column name {reserved[0]!r} is reserved (names starting with "
            f"'{RESERVED_PREFIX}' are cxrun's)",
            "rename that column in the file",
        )
    if not info.columns:
        raise TableError(f"{shown}: the file has no columns", "add a header row")
    return info


def _unreadable(project: Project, path: Path, exc: OSError) -> TableError:
    return TableError(
        f"{project.shown(path)}: cannot read it: {exc.strerror}",
        "make the file readable for your user, or replace it",
    )


def _csv_header(path: Path, shown: str) -> tuple[str, list[str]]:
    """The delimiter (the likeliest of , ; tab |) and the column names of a CSV's first line."""
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        first = handle.readline()
    if not first.strip():
        raise TableError(f"{shown}: the file is empty", "add a header row and some rows")
    delimiter = max(_DELIMITERS, key=first.count)
    try:
        return delimiter, next(csv.reader([first], delimiter=delimiter))
    except csv.Error as exc:
        raise TableError(f"{shown}: cannot read its header line: {exc}", "fix the file") from None


def _ragged_line(path: Path, header: tuple[str, list[str]]) -> str | None:
    """Where the first row with a different number of fields than the header is, if any."""
    delimiter, names = header
    with path.open(encoding="utf-8", errors="replace", newline="") as handle:
        reader = csv.reader(handle, delimiter=delimiter)
        try:
            for row in reader:
                if row and len(row) != len(names):
                    return (
                        f"line {reader.line_num} has {len(row)} fields "
                        f"but the header has {len(names)}"
                    )
        except csv.Error:  # a field over the csv module's limit: DuckDB's own message says
            return None
    return None


def _short(message: str, limit: int = 300) -> str:
    message = message.split(" Possible fixes", 1)[0].split(" Original Line", 1)[0]
    return message if len(message) <= limit else message[: limit - 1] + "…"


def _digest(path: Path) -> str:
    sha = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            sha.update(block)
    return sha.hexdigest()


def load_tables(project: Project, state: State, name: str | None) -> list[TableInfo]:
    names = [name] if name else table_names(project)
    return [ensure_loaded(project, state, n, force=False) for n in names]


def list_tables(project: Project, state: State) -> list[dict[str, Any]]:
    """Every table file with what is loaded of it (rows, columns, loaded at), loaded or not."""
    with state.read() as con:
        loaded = {info.name: info for info in table_store.all_current(con)}
    listing = []
    for name in sorted(set(table_names(project)) | set(loaded)):
        info = loaded.get(name)
        path = next(
            (
                project.tables_dir / f"{name}{s}"
                for s in FORMATS
                if (project.tables_dir / f"{name}{s}").is_file()
            ),
            None,
        )
        stale = info is None or path is None or _changed(path, info)
        listing.append(
            {
                "name": name,
                "file": project.shown(path) if path else None,
                "rows": info.rows if info else None,
                "columns": len(info.columns) if info else None,
                "version": info.version if info else None,
                "loaded_at": info.loaded_at.isoformat() if info else None,
                "stale": stale,
            }
        )
    return listing


def _changed(path: Path, info: TableInfo) -> bool:
    stat = path.stat()
    return (stat.st_size, stat.st_mtime_ns) != (info.size, info.mtime_ns) or path.name != info.file


def file_changed(project: Project, info: TableInfo) -> bool:
    """Whether the table's file is no longer the one loaded as `info` (another file, or other
    contents; a file only touched is the same)."""
    try:
        path = table_file(project, info.name)
    except (TableError, NotFound):
        return True
    if not _changed(path, info):
        return False
    return path.name != info.file or _digest(path) != info.digest


def show_table(
    project: Project, state: State, name: str, limit: int
) -> tuple[TableInfo, list[dict[str, Any]]]:
    info = ensure_loaded(project, state, name)
    with state.read() as con:
        return info, table_store.preview(con, info, limit)
