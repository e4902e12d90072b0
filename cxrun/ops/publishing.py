"""The project's operations: a new project, validating and publishing spinners, listing them."""

from __future__ import annotations

import shutil
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any

from cxrun.base.clock import utcnow
from cxrun.base.errors import CxrunError, NotFound, TableError, ValidationFailed
from cxrun.base.models import Job
from cxrun.base.project import CONFIG_FILE
from cxrun.spec import checks, children, loader
from cxrun.spec.build import CALLS, build
from cxrun.spec.loader import SpinnerFile
from cxrun.spec.model import Spinner
from cxrun.store import jobs as job_store
from cxrun.store import loading
from cxrun.store import spinners as spinner_store
from cxrun.store import tables as table_store
from cxrun.store.context import Context
from cxrun.store.loading import ensure_loaded
from cxrun.store.tables import TableInfo
from cxrun.triggers import schedule_control
from cxrun.triggers.prepare import (
    key_problems,
    plugin_problems,
)

if TYPE_CHECKING:
    pass


def init_project(folder: Path) -> list[str]:
    """Scaffold a working project (config, one spinner, one table) in `folder`.

    When a file cannot be written (a read-only place, a full disk), those written are removed."""
    if folder.exists() and not folder.is_dir():
        raise CxrunError(f"{folder} is a file, not a folder", "pick a folder (a new one is made)")
    if (folder / CONFIG_FILE).exists():
        raise CxrunError(f"{folder / CONFIG_FILE} exists already", "pick an empty folder")
    scaffold = resources.files("cxrun.scaffold")
    written: list[str] = []
    for relative in ("cxrun.yaml", "spinners/welcome.yaml", "tables/contacts.csv"):
        target = folder / relative
        if target.exists():
            raise CxrunError(f"{target} exists already", "pick an empty folder")
        try:
            target.parent.mkdir(parents=True, exist_ok=True)
            with resources.as_file(scaffold.joinpath(relative.replace("/", "_"))) as source:
                shutil.copyfile(source, target)
        except OSError as exc:
            for done in written:
                (folder / done).unlink(missing_ok=True)
            raise CxrunError(
                f"cannot write {target}: {exc.strerror}",
                "pick a folder you can write to, or make this one writable",
            ) from None
        written.append(relative)
    return written


def parse(ctx: Context, file: SpinnerFile) -> tuple[dict[str, Any], Spinner]:
    """A spinner file read as publish reads it: YAML, schema, and the steps of the child
    spinners it calls, embedded (a `{{ child.output }}` binds only then)."""
    raw, spinner = loader.parse(file)
    called = children.attach_children(ctx.project, raw, file.name)
    if called:
        raise ValidationFailed(
            [f"{file.shown}: {p}" for p in called], f"fix {file.shown} and try again"
        )
    if CALLS in raw:
        spinner = build(raw, file.name)  # with the called children's steps
    return raw, spinner


def _check(ctx: Context, file: SpinnerFile) -> tuple[dict[str, Any], Spinner, TableInfo]:
    """Every check publish does, for one spinner file; ValidationFailed lists every problem."""
    raw, spinner = parse(ctx, file)
    try:
        table = ensure_loaded(ctx.project, ctx.state, spinner.table)
    except (TableError, NotFound) as exc:
        raise ValidationFailed([f"{file.shown}: table: {exc.message}"], exc.hint) from None
    problems = checks.check(spinner, table) + key_problems(ctx, table, spinner.key)
    problems = [f"{file.shown}: {p}" for p in problems + plugin_problems(ctx, spinner)]
    if problems:
        raise ValidationFailed(problems, f"fix {file.shown} (or cxrun.yaml) and try again")
    return raw, spinner, table


def _files(ctx: Context, name: str | None) -> list[SpinnerFile]:
    if name:
        return [loader.spinner_file(ctx.project, name)]
    files = loader.spinner_files(ctx.project)
    if not files:
        raise NotFound("no spinners in spinners/", "add a spinners/NAME.yaml file")
    return files


def _check_all(ctx: Context, name: str | None) -> list[tuple[SpinnerFile, dict[str, Any]]]:
    """Every spinner (or the one named) checked; ValidationFailed lists all their problems."""
    checked, failure = _check_each(ctx, name)
    if failure is not None:
        raise failure
    return checked


def _check_each(
    ctx: Context, name: str | None
) -> tuple[list[tuple[SpinnerFile, dict[str, Any]]], ValidationFailed | None]:
    """The spinners that pass every check, and one ValidationFailed for all those that do not."""
    ctx.project.config  # noqa: B018 - a broken cxrun.yaml fails here, before any spinner
    checked: list[tuple[SpinnerFile, dict[str, Any]]] = []
    failures: list[CxrunError] = []
    for file in _files(ctx, name):
        try:
            raw, _, _ = _check(ctx, file)
            checked.append((file, raw))
        except CxrunError as exc:  # validation problems, or a YAML syntax error
            failures.append(exc)
    if not failures:
        return checked, None
    problems = [line for exc in failures for line in _problems(exc)]
    hint = failures[0].hint if len(failures) == 1 else "fix these files and try again"
    return checked, ValidationFailed(problems, hint)


def _problems(exc: CxrunError) -> list[str]:
    return exc.problems if isinstance(exc, ValidationFailed) else [exc.message]


def validate(ctx: Context, name: str | None) -> list[str]:
    """The names of the spinners checked; ValidationFailed lists every problem."""
    return [file.name for file, _ in _check_all(ctx, name)]


def validation(ctx: Context, name: str | None) -> tuple[list[str], ValidationFailed | None]:
    """The spinners that pass every check publish does, and the problems of those that do not
    (as one ValidationFailed, not raised)."""
    checked, failure = _check_each(ctx, name)
    return [file.name for file, _ in checked], failure


def publish(ctx: Context, name: str | None) -> list[dict[str, Any]]:
    """Freeze a new version of each spinner whose file changed since its last version."""
    checked = _check_all(ctx, name)
    results = []
    with ctx.state.write() as con:
        for file, raw in checked:
            before = spinner_store.latest(con, file.name)
            digest = children.calls_digest(ctx.project, file)
            version = spinner_store.publish(con, file.name, digest, raw, file.source, utcnow())
            changed = before is None or before.version != version.version
            if changed:  # its schedules that were removed count from now on
                schedule_control.published(con, file.name, version.spec, version.published_at)
            results.append({"spinner": file.name, "version": version.version, "changed": changed})
    return results


def spinners(ctx: Context) -> list[dict[str, Any]]:
    files = {f.name: f for f in loader.spinner_files(ctx.project)}
    with ctx.state.read() as con:
        published = spinner_store.all_latest(con)
        last = job_store.last_status(con)
    listing = []
    for name in sorted(set(files) | set(published)):
        file, version = files.get(name), published.get(name)
        listing.append(
            {
                "spinner": name,
                "file": file.shown if file else None,
                "version": version.version if version else None,
                "published_at": version.published_at.isoformat() if version else None,
                "edited": bool(
                    file and version and children.calls_digest(ctx.project, file) != version.digest
                ),
                "last_job": last[name][0] if name in last else None,
                "last_status": last[name][1] if name in last else None,
            }
        )
    return listing


def edited_notes(ctx: Context, jobs: list[Job]) -> list[str]:
    """For each spinner version these jobs run, a line when its file was edited since that
    version was published (the job runs the published version, not the file)."""
    wanted = dict.fromkeys((j.spinner, j.version) for j in jobs)
    if not wanted:
        return []
    with ctx.state.read() as con:  # one read for all of them
        versions = {(s, v): spinner_store.version(con, s, v) for s, v in wanted}
    notes = []
    for (spinner, version), published in versions.items():
        try:
            file = loader.spinner_file(ctx.project, spinner)
        except CxrunError:
            continue  # no file (or an unreadable one): nothing was edited to warn about
        if published and children.calls_digest(ctx.project, file) != published.digest:
            notes.append(
                f"spinner {spinner} was edited since v{version}; this job runs v{version} "
                "(cxrun publish to update)"
            )
    return notes


def table_note(ctx: Context, job: int) -> str | None:
    """A line when the table file a job runs over changed since it started: the job keeps the
    rows it started with."""
    with ctx.state.read() as con:
        job_store.get(con, job)  # NotFound for an unknown job
        name, number, _ = job_store.table_of(con, job)
        info = table_store.version(con, name, number)
    if info is None or not loading.file_changed(ctx.project, info):
        return None
    return (
        f"tables/{info.file} changed since job {job} started; the job keeps its rows "
        f"(version {info.version} of table {name})"
    )


def schema() -> dict[str, Any]:
    """The spinner files' JSON Schema (for editors)."""
    return loader.schema()


def tables(ctx: Context) -> list[dict[str, Any]]:
    """Each table: its file, rows, columns, version, when it was loaded, whether it is stale."""
    return loading.list_tables(ctx.project, ctx.state)


def load_tables(ctx: Context, name: str | None) -> list[TableInfo]:
    """Load the table files that changed (or the one named) into the state."""
    return loading.load_tables(ctx.project, ctx.state, name)


def show_table(ctx: Context, name: str, limit: int) -> tuple[TableInfo, list[dict[str, Any]]]:
    """A table's first rows."""
    return loading.show_table(ctx.project, ctx.state, name, limit)
