"""What a job needs before it is created, and to run here: its published spinner, the table
(reloaded when its file changed, checked again) and its row conditions, its providers and
channels; and running a job this process has claimed."""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

from cxrun.base.errors import CxrunError, NotFound, TableError, ValidationFailed
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.spec import checks, loader
from cxrun.spec.build import build
from cxrun.spec.model import Spinner
from cxrun.store import spinners as spinner_store
from cxrun.store import tables as table_store
from cxrun.store.context import Context
from cxrun.store.loading import ensure_loaded, loaded
from cxrun.store.tables import TableInfo
from cxrun.triggers.starts import Prepared, Start

T = TypeVar("T")

if TYPE_CHECKING:
    import duckdb

    from cxrun.io.plugins import Plugins


def published_spinner(
    ctx: Context, name: str, con: duckdb.DuckDBPyConnection | None = None
) -> tuple[int, Spinner]:
    if con is None:
        with ctx.state.read() as con:
            return published_spinner(ctx, name, con)
    version = spinner_store.latest(con, name)
    if version is None:
        loader.spinner_file(ctx.project, name)  # unknown spinner → NotFound with the known ones
        raise NotFound(f"spinner '{name}' is not published", f"run `cxrun publish {name}` first")
    return version.version, build(version.spec, name)


def job_spinner(ctx: Context, job: Job) -> Spinner:
    """The spinner version a job started with (runs never switch versions)."""
    with ctx.state.read() as con:
        version = spinner_store.version(con, job.spinner, job.version)
    assert version is not None, f"job {job.job} lost its spinner version"
    return build(version.spec, job.spinner)


class Stale(Exception):
    """A spinner's table file changed since it was loaded: load it, then prepare again."""

    def __init__(self, spinner: str, table: str) -> None:
        super().__init__(table)
        self.spinner = spinner
        self.table = table


def in_session(ctx: Context, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` in one write transaction; when it finds a table file changed, the table is
    loaded (in its own session) and `work` runs again."""
    for _ in range(5):
        try:
            with ctx.state.write() as con:
                return work(con)
        except Stale as stale:
            try:
                ensure_loaded(ctx.project, ctx.state, stale.table)
            except (TableError, NotFound) as exc:
                raise type(exc)(f"spinner '{stale.spinner}': {exc.message}", exc.hint) from None
    raise CxrunError("a table file keeps changing", "wait until it is written and try again")


def prepare(
    ctx: Context,
    name: str,
    where: str | None = None,
    limit: int | None = None,
    start: Start | None = None,
    here: bool = False,
    con: duckdb.DuckDBPyConnection | None = None,
) -> Prepared:
    """Everything a job needs before it is created; `here`: also what it needs to run here.
    On `con`, an open state session, a table file that changed raises Stale."""
    start = start or Start()
    number, spinner, table, conditions = _selection(ctx, name, where, here, start.select, con)
    params = {"where": where, "limit": limit, **start.params}
    built = plugins_for(ctx, name, spinner) if here else None
    return Prepared(name, number, spinner, table, conditions, limit, start, params, built)


def _selection(
    ctx: Context,
    name: str,
    where: str | None,
    warm: bool = False,
    select: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[int, Spinner, TableInfo, list[str]]:
    """The published spinner, its (reloaded, checked) table and the row conditions of a run."""
    ctx.project.config  # noqa: B018 - a broken cxrun.yaml stops the run before it starts
    number, spinner = published_spinner(ctx, name, con)
    if spinner.child:
        raise CxrunError(
            f"spinner '{name}' is a child spinner: it runs only through a `call: {name}` step",
            "run the spinner that calls it",
        )
    if warm and spinner.has_io:
        from cxrun.io import plugins

        plugins.prewarm()
    table = _current_table(ctx, name, number, spinner, con)
    if where is not None:
        problem = checks.where_problem(table, where)
        if problem:
            raise CxrunError(f"--where: {problem}", "fix the SQL condition and try again")
    return number, spinner, table, [c for c in (spinner.select, select, where) if c]


def _current_table(
    ctx: Context,
    name: str,
    number: int,
    spinner: Spinner,
    con: duckdb.DuckDBPyConnection | None = None,
) -> TableInfo:
    """The spinner's table, reloaded if its file changed (on `con`: Stale), and still fitting
    the spinner."""
    try:
        found = (
            ensure_loaded(ctx.project, ctx.state, spinner.table)
            if con is None
            else loaded(ctx.project, con, spinner.table)
        )
    except (TableError, NotFound) as exc:
        raise type(exc)(f"spinner '{name}': {exc.message}", exc.hint) from None
    if found is None:
        raise Stale(name, spinner.table)
    table = found
    problems = _fit(ctx, name, number, spinner, table, con)
    if problems:
        raise ValidationFailed(
            [
                f"spinner '{name}' (published) no longer fits table {table.name}: {p}"
                for p in problems
            ],
            "fix the table file, or edit the spinner and publish it again",
        )
    return table


# What a published spinner version's check against a loaded table version found: both are kept
# unchanged once written, so a server that starts a job per event checks each pair once.
_FITS: dict[tuple[str, str, int, str, int, str, str], list[str]] = {}


def _fit(
    ctx: Context,
    name: str,
    number: int,
    spinner: Spinner,
    table: TableInfo,
    con: duckdb.DuckDBPyConnection | None,
) -> list[str]:
    key = (
        str(ctx.state.path),
        name,
        number,
        table.name,
        table.version,
        table.physical,
        table.digest,
    )
    found = _FITS.get(key)
    if found is None:
        found = checks.check(spinner, table) + key_problems(ctx, table, spinner.key, con)
        if len(_FITS) >= 256:
            _FITS.clear()
        _FITS[key] = found
    return list(found)


def key_problems(
    ctx: Context, table: TableInfo, key: str, con: duckdb.DuckDBPyConnection | None = None
) -> list[str]:
    """Null or repeated keys in the table version, counted once per version and key (on `con`,
    a writable session, or else in a session of their own when not counted yet)."""
    if key.lower() not in {c.lower() for c in table.column_names}:
        return []
    if con is not None:
        found = table_store.key_summary(con, table, key)
    else:
        with ctx.state.read() as reading:
            known = table_store.known_keys(reading, table, key)
        if known is None:
            with ctx.state.write() as writing:
                known = table_store.key_summary(writing, table, key)
        found = known
    nulls, repeats, duplicates = found
    problems = []
    if nulls:
        problems.append(f'key: column "{key}" is empty in {nulls} row(s) of tables/{table.file}')
    if repeats:
        shown = ", ".join(duplicates)
        problems.append(
            f'key: column "{key}" has duplicate values in tables/{table.file} ({shown})'
        )
    return problems


def plugin_problems(ctx: Context, spinner: Spinner, secrets_here: bool | None = None) -> list[str]:
    """Unknown providers or channels, and the cxrun.yaml entries and secrets they need (the
    secrets only when the calls are made here: not, by default, when cxrun.yaml hands them to
    a cluster, whose workers have their own)."""
    from cxrun.io import plugins

    problems = checks.plugin_problems(spinner, ctx.project.providers, ctx.project.channels)
    if secrets_here is None:
        secrets_here = ctx.project.cluster_address is None
    if not secrets_here:
        return problems
    return problems + plugins.config_problems(ctx.project, spinner, ctx.secrets)


def plugins_for(
    ctx: Context, name: str, spinner: Spinner, secrets_here: bool | None = True
) -> Plugins | None:
    """The providers and channels of a published spinner, checked again before a run; when a
    cluster's workers make the calls (`secrets_here` False, or None with cxrun.yaml's
    `executor` a cluster), only named."""
    if not spinner.has_io:
        return None
    from cxrun.io import plugins

    if secrets_here is None:
        secrets_here = ctx.project.cluster_address is None
    problems = plugin_problems(ctx, spinner, secrets_here)
    if problems:
        raise ValidationFailed(
            [f"spinner '{name}': {p}" for p in problems], "fix cxrun.yaml or set the secrets"
        )
    if not secrets_here:
        return plugins.names_only(ctx.project, spinner, ctx.secrets)
    return plugins.build(ctx.project, spinner, ctx.secrets)


def run_here(
    ctx: Context,
    job: Job,
    prepared: Prepared,
    owner: Owner,
    on_start: Callable[[Job], None] | None = None,
    on_progress: Callable[[Job], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Job:
    """Run a job this process owns to its end (or a pause), with progress."""
    from cxrun.runtime.runner import Runner

    if on_start:
        on_start(job)
    spinner, built = prepared.spinner, prepared.built
    runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
    return runner.run(job.job, (job, prepared.table, bool(prepared.conditions)))
