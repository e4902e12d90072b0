"""The pre-run checklist: each spinner's table, fields, publication, providers and secrets,
and whether a runtime is up."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import CxrunError, NotFound, StateBusy, TableError, ValidationFailed
from cxrun.base.models import iso
from cxrun.io import plugins
from cxrun.ops import publishing
from cxrun.ops.watch import RUNTIME_FIX, orphan_line
from cxrun.spec import checks, children, loader
from cxrun.spec.loader import SpinnerFile
from cxrun.spec.model import Spinner
from cxrun.store import monitor as monitor_store
from cxrun.store import spinners as spinner_store
from cxrun.store.context import Context
from cxrun.store.loading import ensure_loaded
from cxrun.store.tables import TableInfo
from cxrun.triggers.prepare import key_problems, plugin_problems


@dataclass(frozen=True)
class Check:
    """One line of the pre-run checklist; a failed one says what to do in `fix`."""

    check: str
    ok: bool
    detail: str
    fix: str | None = None
    spinner: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {
            "spinner": self.spinner,
            "check": self.check,
            "ok": self.ok,
            "detail": self.detail,
            "fix": self.fix,
        }


@dataclass(frozen=True)
class Doctor:
    checks: list[Check]

    @property
    def ok(self) -> bool:
        return all(c.ok for c in self.checks)

    @property
    def failed(self) -> list[Check]:
        return [c for c in self.checks if not c.ok]

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "checks": [c.to_json() for c in self.checks]}


def doctor(ctx: Context, spinner: str | None = None, now: datetime | None = None) -> Doctor:
    """The pre-run checklist for one spinner (or every spinner file): the project's config, then
    per spinner its file, table, fields, published version, providers and secrets, then the
    runtime. Problems are reported, never raised (an unknown spinner name is NotFound)."""
    names = _spinner_names(ctx)
    if spinner is not None and spinner not in names:
        loader.spinner_file(ctx.project, spinner)  # NotFound, listing the known spinners
    found = [_guarded(None, "config", "fix cxrun.yaml", lambda: _config_check(ctx))]
    if not names:
        found.append(Check("spinners", False, "no spinners in spinners/", _ADD_SPINNER))
    for name in [spinner] if spinner else names:
        found += _spinner_checks(ctx, name)
    found.append(_runtime_check(ctx, now or utcnow()))
    return Doctor(found)


_ADD_SPINNER = "add a spinners/NAME.yaml file (`cxrun schema` prints its JSON Schema)"


def _spinner_names(ctx: Context) -> list[str]:
    folder = ctx.project.spinners_dir
    paths = [*folder.glob("*.yaml"), *folder.glob("*.yml")] if folder.is_dir() else []
    return sorted({p.stem for p in paths if p.is_file()})


def _guarded(spinner: str | None, check: str, fix: str, run: Callable[[], Check]) -> Check:
    """A check that reports any error a user can cause as its own failure (a busy state is not
    a check's failure: it is raised)."""
    try:
        return run()
    except StateBusy:
        raise
    except CxrunError as exc:
        return Check(check, False, _lines(exc), exc.hint or fix, spinner)


def _lines(exc: CxrunError) -> str:
    return "\n".join(exc.problems if isinstance(exc, ValidationFailed) else [exc.message])


def _config_check(ctx: Context) -> Check:
    config = ctx.project.config
    providers, channels = len(config.get("providers") or {}), len(config.get("channels") or {})
    return Check("config", True, f"cxrun.yaml: {providers} provider(s), {channels} channel(s)")


def _spinner_checks(ctx: Context, name: str) -> list[Check]:
    """The checks of one spinner file; those that need the spinner (or its table) to be
    readable are left out when it is not (its own failed check says what to fix)."""
    fix = f"fix spinners/{name}.yaml, then run `cxrun validate {name}`"
    try:
        file = loader.spinner_file(ctx.project, name)
    except CxrunError as exc:  # an unreadable file
        return [Check("spinner", False, _lines(exc), fix, name)]
    try:
        _, spinner = publishing.parse(ctx, file)  # as publish reads it: children embedded
    except CxrunError as exc:  # YAML or schema problems, or a called child's
        return [Check("spinner", False, _lines(exc), fix, name), _published_check(ctx, file)]
    found = [Check("spinner", True, f"{file.shown} is valid", spinner=name)]
    table, table_check = _table_check(ctx, file, spinner)
    found.append(table_check)
    if table is not None:
        found.append(_guarded(name, "fields", fix, lambda: _fields_check(ctx, spinner, table)))
    found.append(_published_check(ctx, file))
    found.append(_guarded(name, "providers", _CONFIG_FIX, lambda: _providers_check(ctx, spinner)))
    return found


def _table_check(
    ctx: Context, file: SpinnerFile, spinner: Spinner
) -> tuple[TableInfo | None, Check]:
    """The spinner's table file is there, loads, and has rows."""
    name = spinner.name
    try:
        table = ensure_loaded(ctx.project, ctx.state, spinner.table)
    except NotFound as exc:
        fix = f"add tables/{spinner.table}.csv (or .parquet), or fix `table:` in {file.shown}"
        return None, Check("table", False, exc.message, fix, name)
    except TableError as exc:
        return None, Check("table", False, exc.message, exc.hint, name)
    shown = f"tables/{table.file}"
    if not table.rows:
        fix = f"add rows to {shown}, then look at them with `cxrun tables show {table.name}`"
        return table, Check("table", False, f"{shown} has no rows", fix, name)
    detail = f"{shown}: {table.rows} row(s), {len(table.columns)} column(s)"
    return table, Check("table", True, detail, spinner=name)


def _fields_check(ctx: Context, spinner: Spinner, table: TableInfo) -> Check:
    """The key, the fields and every expression fit the table's columns; the key is unique."""

    problems = checks.check(spinner, table) + key_problems(ctx, table, spinner.key)
    if problems:
        fix = (
            f"add the missing columns to tables/{table.file} or fix spinners/{spinner.name}.yaml, "
            f"then run `cxrun validate {spinner.name}`"
        )
        return Check("fields", False, "\n".join(problems), fix, spinner.name)
    named = ", ".join(f.name for f in spinner.fields)
    detail = (
        f"key {spinner.key}{f' and fields {named}' if named else ''} are columns of {table.name}"
    )
    return Check("fields", True, detail + _empty_note(ctx, spinner, table), spinner=spinner.name)


def _empty_note(ctx: Context, spinner: Spinner, table: TableInfo) -> str:
    """Rows whose required fields are empty: their records will fail (that is data, not setup)."""
    with ctx.state.read() as con:
        empty = monitor_store.empty_values(con, table, list(spinner.required_fields))
    notes = [f"{n} of {table.rows} row(s) have no {column}" for column, n in empty.items() if n]
    return f"; {', '.join(notes)} (those records will fail)" if notes else ""


def _published_check(ctx: Context, file: SpinnerFile) -> Check:
    """A version is published, and the file has not changed since (runs use published versions)."""
    name = file.name
    with ctx.state.read() as con:
        version = spinner_store.latest(con, name)
    publish = f"run `cxrun publish {name}`"
    if version is None:
        return Check("published", False, f"spinner '{name}' is not published", publish, name)
    when = iso(version.published_at)
    digest = children.calls_digest(ctx.project, file)
    if version.digest != digest:
        edited = file.shown if digest == file.digest else f"{file.shown} (or a spinner it calls)"
        detail = f"{edited} was edited since version {version.version} was published ({when})"
        fix = f"{publish} (runs use version {version.version} until then)"
        return Check("published", False, detail, fix, name)
    return Check("published", True, f"version {version.version}, published {when}", None, name)


_CONFIG_FIX = "fix the providers and channels in cxrun.yaml"


def _providers_check(ctx: Context, spinner: Spinner) -> Check:
    """The providers and channels the steps use are in cxrun.yaml, valid, with their secrets."""

    providers, channels = plugins.used(spinner)
    problems = plugin_problems(ctx, spinner)
    if problems:
        return Check(
            "providers",
            False,
            "\n".join(problems),
            _providers_fix(ctx, spinner, problems),
            spinner.name,
        )
    used = sorted(providers | channels)
    detail = f"{', '.join(used)}: configured, secrets set" if used else "none used"
    return Check("providers", True, detail, spinner=spinner.name)


def _providers_fix(ctx: Context, spinner: Spinner, problems: list[str]) -> str:
    """`cxrun secrets set NAME` for each missing secret, and/or fixing cxrun.yaml."""
    missing = _missing_secrets(ctx, spinner)
    about_secrets = [f"secret {name} is not set" for name in missing]
    others = [p for p in problems if not any(text in p for text in about_secrets)]
    fixes = []
    if missing:
        fixes.append("run " + " and ".join(f"`cxrun secrets set {name}`" for name in missing))
    if others or not missing:
        fixes.append(_CONFIG_FIX)
    return "; ".join(fixes)


def _missing_secrets(ctx: Context, spinner: Spinner) -> list[str]:
    providers, channels = plugins.used(spinner)
    entries = [ctx.project.providers.get(n) for n in providers]
    entries += [ctx.project.channels.get(n) for n in channels]
    return sorted({name for e in entries if e for name in ctx.secrets.missing(dict(e))})


def _runtime_check(ctx: Context, now: datetime) -> Check:
    """Queued jobs need a runtime to run them (`run-now` runs its job itself); a job whose
    owner is gone is flagged whatever else runs."""
    with ctx.state.read() as con:
        queued = monitor_store.queued_jobs(con)
        up = monitor_store.runtimes_up(con, now)
        last = monitor_store.last_heartbeat(con)
        orphaned = monitor_store.orphans(con, now)
    if orphaned:
        detail = "; ".join(orphan_line(o) for o in orphaned)
        return Check("runtime", False, detail, RUNTIME_FIX if not up else None)
    if up:
        beat = up[0]
        detail = f"runtime {beat.id} (pid {beat.pid}) beat at {iso(beat.heartbeat_at)}"
        return Check("runtime", True, detail)
    seen = f"last heartbeat {iso(last)}" if last else "no runtime has run here yet"
    if queued:
        return Check(
            "runtime", False, f"{queued} job(s) queued, no runtime is up ({seen})", RUNTIME_FIX
        )
    return Check("runtime", True, f"no runtime is up ({seen}); nothing is queued")
