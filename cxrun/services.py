"""The core operations the command line calls: one function per command, no rendering."""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from importlib import resources
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

from cxrun import owners, starts
from cxrun.clock import utcnow
from cxrun.enums import JobStatus
from cxrun.errors import CxrunError, NotFound, TableError, ValidationFailed
from cxrun.models import Job, JourneyEntry, Record
from cxrun.owners import Owner
from cxrun.project import CONFIG_FILE, Project, load_project
from cxrun.secrets import Secrets
from cxrun.spec import checks, loader
from cxrun.spec.loader import SpinnerFile
from cxrun.spec.model import Spinner
from cxrun.starts import Prepared, Start
from cxrun.store import State
from cxrun.store import jobs as job_store
from cxrun.store import spinners as spinner_store
from cxrun.store import tables as table_store
from cxrun.store.tables import TableInfo
from cxrun.tables import ensure_loaded, loaded

if TYPE_CHECKING:  # the runtime and the I/O plugins are imported when a command needs them
    import duckdb

    from cxrun.dryrun import DryRun
    from cxrun.io.plugins import Plugins

PAGE_SIZE = 50
CONTROL_WAIT = 15.0  # seconds cancel and pause wait for a job's owner to answer
DRY_RUN_ROWS = 10
T = TypeVar("T")


@dataclass(frozen=True)
class Context:
    project: Project
    state: State

    @property
    def secrets(self) -> Secrets:
        return Secrets(self.project.state_dir)


def open_context(project_dir: str | None) -> Context:
    project = load_project(project_dir)
    return Context(project, State(project.state_dir))


# ---- init ---------------------------------------------------------------------------------


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


# ---- validate / publish / spinners --------------------------------------------------------


def _check(ctx: Context, file: SpinnerFile) -> tuple[dict[str, Any], Spinner, TableInfo]:
    """Every check publish does, for one spinner file; ValidationFailed lists every problem."""
    raw, spinner = loader.parse(file)
    called = loader.attach_children(ctx.project, raw, file.name)
    if called:
        raise ValidationFailed(
            [f"{file.shown}: {p}" for p in called], f"fix {file.shown} and try again"
        )
    if loader.CALLS in raw:
        spinner = loader.build(raw, file.name)  # with the called children's steps
    try:
        table = ensure_loaded(ctx.project, ctx.state, spinner.table)
    except (TableError, NotFound) as exc:
        raise ValidationFailed([f"{file.shown}: table: {exc.message}"], exc.hint) from None
    problems = checks.check(spinner, table) + _key_problems(ctx, table, spinner.key)
    problems = [f"{file.shown}: {p}" for p in problems + _plugin_problems(ctx, spinner)]
    if problems:
        raise ValidationFailed(problems, f"fix {file.shown} (or cxrun.yaml) and try again")
    return raw, spinner, table


def _plugin_problems(ctx: Context, spinner: Spinner) -> list[str]:
    """Unknown providers or channels, and the cxrun.yaml entries and secrets they need."""
    from cxrun.io import plugins

    problems = checks.plugin_problems(spinner, ctx.project.providers, ctx.project.channels)
    return problems + plugins.config_problems(ctx.project, spinner, ctx.secrets)


def _key_problems(
    ctx: Context, table: TableInfo, key: str, con: duckdb.DuckDBPyConnection | None = None
) -> list[str]:
    if key.lower() not in {c.lower() for c in table.column_names}:
        return []
    if con is None:
        with ctx.state.read() as con:
            return _key_problems(ctx, table, key, con)
    nulls, repeats = table_store.key_counts(con, table, key)
    duplicates = table_store.duplicate_keys(con, table, key) if repeats else []
    problems = []
    if nulls:
        problems.append(f'key: column "{key}" is empty in {nulls} row(s) of tables/{table.file}')
    if repeats:
        shown = ", ".join(duplicates)
        problems.append(
            f'key: column "{key}" has duplicate values in tables/{table.file} ({shown})'
        )
    return problems


def _files(ctx: Context, name: str | None) -> list[SpinnerFile]:
    if name:
        return [loader.spinner_file(ctx.project, name)]
    files = loader.spinner_files(ctx.project)
    if not files:
        raise NotFound("no spinners in spinners/", "add a spinners/NAME.yaml file")
    return files


def _check_all(ctx: Context, name: str | None) -> list[tuple[SpinnerFile, dict[str, Any]]]:
    """Every spinner (or the one named) checked; ValidationFailed lists all their problems."""
    ctx.project.config  # noqa: B018 - a broken cxrun.yaml fails here, before any spinner
    checked: list[tuple[SpinnerFile, dict[str, Any]]] = []
    failures: list[CxrunError] = []
    for file in _files(ctx, name):
        try:
            raw, _, _ = _check(ctx, file)
            checked.append((file, raw))
        except CxrunError as exc:  # validation problems, or a YAML syntax error
            failures.append(exc)
    if failures:
        problems = [line for exc in failures for line in _problems(exc)]
        hint = failures[0].hint if len(failures) == 1 else "fix these files and try again"
        raise ValidationFailed(problems, hint)
    return checked


def _problems(exc: CxrunError) -> list[str]:
    return exc.problems if isinstance(exc, ValidationFailed) else [exc.message]


def validate(ctx: Context, name: str | None) -> list[str]:
    return [file.name for file, _ in _check_all(ctx, name)]


def publish(ctx: Context, name: str | None) -> list[dict[str, Any]]:
    """Freeze a new version of each spinner whose file changed since its last version."""
    checked = _check_all(ctx, name)
    results = []
    with ctx.state.write() as con:
        for file, raw in checked:
            before = spinner_store.latest(con, file.name)
            digest = loader.calls_digest(ctx.project, file)
            version = spinner_store.publish(con, file.name, digest, raw, file.source, utcnow())
            results.append(
                {
                    "spinner": file.name,
                    "version": version.version,
                    "changed": before is None or before.version != version.version,
                }
            )
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
                    file and version and loader.calls_digest(ctx.project, file) != version.digest
                ),
                "last_job": last[name][0] if name in last else None,
                "last_status": last[name][1] if name in last else None,
            }
        )
    return listing


# ---- run now ------------------------------------------------------------------------------


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
    return version.version, loader.build(version.spec, name)


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
    On `con`, an open state session, a table file that changed raises _Stale."""
    start = start or Start()
    number, spinner, table, conditions = _selection(ctx, name, where, here, start.select, con)
    params = {"where": where, "limit": limit, **start.params}
    built = _plugins(ctx, name, spinner) if here else None
    return Prepared(name, number, spinner, table, conditions, limit, start, params, built)


def run_now(
    ctx: Context,
    name: str,
    where: str | None = None,
    limit: int | None = None,
    on_start: Callable[[Job], None] | None = None,
    on_progress: Callable[[Job], None] | None = None,
    detach: bool = False,
    start: Start | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Job:
    """Create a job over the published spinner's selected rows and run it to its end here
    (or, detached, leave it queued for a runtime). When `stop` turns true the job is handed
    back to the queue between two batches."""
    from cxrun.io import plugins

    if not detach and (ctx.project.providers or ctx.project.channels):
        plugins.prewarm()  # most likely needed: on its thread while the state is read

    owner = owners.new_owner("run-now")

    def create(con: duckdb.DuckDBPyConnection) -> tuple[Prepared, Job]:
        # The checks and the new job in one state session (each session opens the state file).
        prepared = prepare(ctx, name, where, limit, start, here=not detach, con=con)
        now = utcnow()
        with starts.selecting(f"spinner '{name}'"):
            job = starts.create_job(con, ctx, prepared, JobStatus.QUEUED, now)
        if not detach:  # claimed in the transaction that creates it: nobody else can run it
            job = _claimed(job_store.claim(con, job.job, owner, now, _lease(now), _QUEUED))
        return prepared, job

    prepared, job = _in_session(ctx, create)
    if detach:
        return job
    return run_here(ctx, job, prepared, owner, on_start, on_progress, stop)


_QUEUED = frozenset({JobStatus.QUEUED})
_RESUMABLE = frozenset({JobStatus.PAUSED, JobStatus.QUEUED, JobStatus.RUNNING})
_FINISHED = frozenset(s for s in JobStatus if s.finished)
_WAITING = frozenset({JobStatus.WAITING})


def _lease(now: datetime) -> datetime:
    return now + timedelta(seconds=owners.LEASE)


def _claimed(job: Job | None) -> Job:
    assert job is not None, "a job created in this transaction is free"
    return job


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
    from cxrun.runtime import Runner

    if on_start:
        on_start(job)
    spinner, built = prepared.spinner, prepared.built
    runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
    return runner.run(job.job, (job, prepared.table, bool(prepared.conditions)))


def runtime(
    ctx: Context,
    once: bool,
    max_jobs: int,
    stop: threading.Event | None = None,
    on_event: Callable[[str], None] = lambda text: None,
    schedules: bool = True,
) -> int:
    """The long-lived runtime (or, with `once`, until nothing is runnable); it fires due
    schedules every few seconds unless `schedules` is False."""
    from cxrun import worker
    from cxrun.runtime import Runner
    from cxrun.schedules import runtime_hook as schedules_hook

    def run_job(job_id: int, owner: Owner, stopping: Callable[[], bool]) -> Job:
        # Each job on its own thread, with its own handle on the state.
        here = Context(ctx.project, State(ctx.project.state_dir))
        found = job(here, job_id)
        spinner = _job_spinner(here, found)
        try:
            built = _plugins(here, found.spinner, spinner)
        except CxrunError as exc:  # paused for `cxrun resume` once fixed: no longer ours
            with here.state.write() as con:
                if not job_store.holds(con, job_id, owner):
                    return job_store.get(con, job_id)
                return job_store.pause_now(con, job_id, exc.message)
        runner = Runner(here.state, spinner, built, owner=owner, stop=stopping)
        return runner.run(job_id)

    tick = schedules_hook(ctx, on_event) if schedules else None
    return worker.serve(ctx.project.state_dir, run_job, once, max_jobs, stop, on_event, tick=tick)


def handed_back(ctx: Context, job: Job) -> list[str]:
    """What to tell an operator whose command stopped (Ctrl-C, SIGTERM) before its job ended:
    `job` as this command left it, and who finishes it (a runtime may have taken it already)."""
    from cxrun.spool import Spool
    from cxrun.store import monitor as monitor_store

    now = utcnow()
    with ctx.state.read() as con:
        live = job_store.holder(con, job.job, now)
        up = monitor_store.runtimes_up(con, now)
    where = f"{job.status} with {job.processed} of {job.total} records written"
    kept = Spool(ctx.project.state_dir, job.job).count()
    if kept:
        where += f", {kept} finished calls kept"
    if job.status != JobStatus.QUEUED:
        return [f"job {job.job} stopped here: {where}"]
    watch = "watch it with `cxrun jobs --watch`"
    if live is not None:
        return [f"job {job.job} handed back: {where}", f"{_who(live)} runs it now; {watch}"]
    if up:
        return [
            f"job {job.job} handed back: {where}",
            f"the runtime (pid {up[0].pid}) finishes it; {watch}",
        ]
    return [
        f"job {job.job} handed back: {where}; no runtime is up",
        f"continue it here with `cxrun resume {job.job}`, or start `cxrun runtime`",
    ]


def _plugins(ctx: Context, name: str, spinner: Spinner) -> Plugins | None:
    """The providers and channels of a published spinner, checked again before a run."""
    from cxrun.io import plugins

    if not spinner.has_io:
        return None
    problems = _plugin_problems(ctx, spinner)
    if problems:
        raise ValidationFailed(
            [f"spinner '{name}': {p}" for p in problems], "fix cxrun.yaml or set the secrets"
        )
    return plugins.build(ctx.project, spinner, ctx.secrets)


def dry_run(ctx: Context, name: str, where: str | None, limit: int | None) -> DryRun:
    """What run-now would send, for the first rows; no call is made and no job is created."""
    from cxrun import dryrun

    prepared = prepare(ctx, name, where)
    with starts.selecting(f"spinner '{name}'"):
        with ctx.state.read() as con:
            bindings = starts.bindings(con, prepared, utcnow())
        return dryrun.dry_run(
            ctx.state,
            prepared.spinner,
            prepared.table,
            prepared.conditions,
            limit or DRY_RUN_ROWS,
            bindings,
        )


class _Stale(Exception):
    """A spinner's table file changed since it was loaded: load it, then prepare again."""

    def __init__(self, spinner: str, table: str) -> None:
        super().__init__(table)
        self.spinner = spinner
        self.table = table


def _in_session(ctx: Context, work: Callable[[duckdb.DuckDBPyConnection], T]) -> T:
    """`work` in one write transaction; when it finds a table file changed, the table is
    loaded (in its own session) and `work` runs again."""
    for _ in range(5):
        try:
            with ctx.state.write() as con:
                return work(con)
        except _Stale as stale:
            try:
                ensure_loaded(ctx.project, ctx.state, stale.table)
            except (TableError, NotFound) as exc:
                raise type(exc)(f"spinner '{stale.spinner}': {exc.message}", exc.hint) from None
    raise CxrunError("a table file keeps changing", "wait until it is written and try again")


def _selection(
    ctx: Context,
    name: str,
    where: str | None,
    warm: bool = False,
    select: str | None = None,
    con: duckdb.DuckDBPyConnection | None = None,
) -> tuple[int, Spinner, TableInfo, list[str]]:
    """The published spinner, its (reloaded, checked) table and the row conditions of a run."""
    from cxrun.io import plugins

    ctx.project.config  # noqa: B018 - a broken cxrun.yaml stops the run before it starts
    number, spinner = published_spinner(ctx, name, con)
    if spinner.child:
        raise CxrunError(
            f"spinner '{name}' is a child spinner: it runs only through a `call: {name}` step",
            "run the spinner that calls it",
        )
    if warm and spinner.has_io:
        plugins.prewarm()
    table = _current_table(ctx, name, spinner, con)
    if where is not None:
        problem = checks.where_problem(table, where)
        if problem:
            raise CxrunError(f"--where: {problem}", "fix the SQL condition and try again")
    return number, spinner, table, [c for c in (spinner.select, select, where) if c]


def cancel(ctx: Context, job_id: int, wait: float = CONTROL_WAIT) -> Job:
    """Cancel a queued, paused or running job (its owner stops within a second)."""
    return _control(ctx, job_id, "cancel", wait)


def pause(ctx: Context, job_id: int, wait: float = CONTROL_WAIT) -> Job:
    """Pause a queued or running job; `cxrun resume` continues its unfinished records."""
    return _control(ctx, job_id, "pause", wait)


def _control(ctx: Context, job_id: int, action: str, wait: float) -> Job:
    """Done here when nobody runs the job; otherwise asked of its live owner, which acts
    between two calls (the state and a file beside it say what was asked)."""
    from cxrun import signals

    now = utcnow()
    with ctx.state.write() as con:
        found = job_store.get(con, job_id)
        live = job_store.holder(con, job_id, now)
        if found.status.finished or (
            live is None and action == "pause" and found.status == JobStatus.PAUSED
        ):
            raise CxrunError(f"job {job_id} is {found.status} already", "there is nothing to do")
        if live is None:  # nobody runs it: done here
            if action == "cancel":
                return job_store.cancel_now(con, job_id, now)
            return job_store.pause_now(con, job_id, "paused by an operator")
        job_store.request(con, job_id, action)
    signals.ask(ctx.project.state_dir, job_id, action)  # what the owner watches while it calls
    deadline = time.monotonic() + wait
    while time.monotonic() < deadline:  # the owner notices within a second
        time.sleep(0.1)
        with ctx.state.read() as con:
            found = job_store.get(con, job_id)
            if job_store.control_of(con, job_id) is None:  # carried out (or the job ended)
                break
            if job_store.holder(con, job_id, utcnow()) is None:  # its owner died meanwhile
                break
    return found


def _job_spinner(ctx: Context, job: Job) -> Spinner:
    """The spinner version a job started with (runs never switch versions)."""
    with ctx.state.read() as con:
        version = spinner_store.version(con, job.spinner, job.version)
    assert version is not None, f"job {job.job} lost its spinner version"
    return loader.build(version.spec, job.spinner)


def resume(
    ctx: Context,
    job_id: int,
    on_progress: Callable[[Job], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Job:
    """Continue a paused or queued job here, or one whose owner died, with its unfinished
    records (finished calls are not made again). A job a live process runs is left to it."""
    from cxrun.runtime import Runner

    found = job(ctx, job_id)
    if found.status not in _RESUMABLE:
        raise CxrunError(f"job {job_id} is {found.status}, not paused", _not_resumable(found))
    spinner = _job_spinner(ctx, found)
    built = _plugins(ctx, found.spinner, spinner)
    owner = owners.new_owner("resume")
    now = utcnow()
    with ctx.state.write() as con:
        if job_store.claim(con, job_id, owner, now, _lease(now), _RESUMABLE) is None:
            raise _taken(con, job_id, now)
    return Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop).run(
        job_id
    )


def _not_resumable(found: Job) -> str:
    if found.status.finished:
        return f"only a paused job resumes; `cxrun retry {found.job}` runs its failed records again"
    return "`cxrun runtime` continues it when its records are due; `cxrun approvals` lists answers"


def _taken(con: duckdb.DuckDBPyConnection, job_id: int, now: datetime) -> CxrunError:
    """Why a job cannot be run here: it is not free (another live process runs it)."""
    found = job_store.get(con, job_id)
    live = job_store.holder(con, job_id, now)
    if live is None:
        return CxrunError(f"job {job_id} is {found.status}", "there is nothing to run")
    why = f" ({found.reason})" if found.reason else ""
    return CxrunError(
        f"job {job_id} is {found.status}{why}: {_who(live)} runs it",
        f"it goes on there; watch it with `cxrun jobs --watch`, or `cxrun pause {job_id}` it",
    )


def _who(owner: Owner) -> str:
    kind = owner.id.split(":", 1)[0]
    where = "" if owner.host == owners.this_host() else f" on {owner.host}"
    return f"{kind} (pid {owner.pid}{where})"


def retry(
    ctx: Context,
    job_id: int,
    record: str | None = None,
    on_progress: Callable[[Job], None] | None = None,
    where: str | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Job:
    """Run a finished job's failed records again from their failed step, reusing what succeeded.
    The records are marked in the transaction that claims the job, so that the runtime that
    takes it over (should this process die) carries the retry out."""
    from cxrun.runtime import Runner

    found = job(ctx, job_id)
    if not found.status.finished:
        raise CxrunError(f"job {job_id} is {found.status}", "retry a job once it has finished")
    spinner = _job_spinner(ctx, found)
    with ctx.state.read() as con:
        name, number, _ = job_store.table_of(con, job_id)
        table = table_store.version(con, name, number)
    assert table is not None
    if where is not None:
        problem = checks.where_problem(table, where)
        if problem:
            raise CxrunError(f"--where: {problem}", "fix the SQL condition and try again")
    built = _plugins(ctx, found.spinner, spinner)
    owner = owners.new_owner("retry")
    now = utcnow()
    with ctx.state.write() as con:
        failed = job_store.failed_records(con, job_id, record, table, where)
        if not failed:
            which = f"record '{record}'" if record else "records"
            raise CxrunError(f"job {job_id} has no failed {which} to retry")
        if job_store.claim(con, job_id, owner, now, _lease(now), _FINISHED) is None:
            raise _taken(con, job_id, now)
        job_store.mark_retry(con, job_id, [row for row, _, _ in failed])
    runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
    return runner.run(job_id)


def _current_table(
    ctx: Context, name: str, spinner: Spinner, con: duckdb.DuckDBPyConnection | None = None
) -> TableInfo:
    """The spinner's table, reloaded if its file changed (on `con`: _Stale), and still fitting
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
        raise _Stale(name, spinner.table)
    table = found
    problems = checks.check(spinner, table) + _key_problems(ctx, table, spinner.key, con)
    if problems:
        raise ValidationFailed(
            [
                f"spinner '{name}' (published) no longer fits table {table.name}: {p}"
                for p in problems
            ],
            "fix the table file, or edit the spinner and publish it again",
        )
    return table


# ---- reading results ----------------------------------------------------------------------


def jobs(
    ctx: Context, status: str | None, spinner: str | None, page: int, limit: int = PAGE_SIZE
) -> list[Job]:
    with ctx.state.read() as con:
        return job_store.listing(con, status, spinner, limit, (page - 1) * limit)


def job(ctx: Context, job_id: int) -> Job:
    with ctx.state.read() as con:
        return job_store.get(con, job_id)


def records(
    ctx: Context, job_id: int, status: str | None, page: int, limit: int = PAGE_SIZE
) -> list[Record]:
    offset = (page - 1) * limit
    with ctx.state.read() as con:
        found = job_store.get(con, job_id)
        name, number, _ = job_store.table_of(con, job_id)
        table = table_store.version(con, name, number)
        assert table is not None
        if status == "pending":
            spec = spinner_store.latest(con, found.spinner)
            key = spec.spec["key"] if spec else ""
            return job_store.pending_records(con, found, table, key, limit, offset)
        return job_store.records(con, job_id, table, status, limit, offset)


def outbox(
    ctx: Context, job_id: int | None, page: int, limit: int = PAGE_SIZE
) -> list[dict[str, Any]]:
    with ctx.state.read() as con:
        return job_store.outbox(con, job_id, limit, (page - 1) * limit)


def journey(ctx: Context, job_id: int, record: str) -> list[JourneyEntry]:
    with ctx.state.read() as con:
        job_store.get(con, job_id)
        seq = job_store.record_seq(con, job_id, record)
        if seq is None:
            raise NotFound(
                f"job {job_id} has no record '{record}'",
                f"list its records with `cxrun records {job_id}`",
            )
        return job_store.journey(con, job_id, seq)


# ---- waiting records: approvals ------------------------------------------------------------


@dataclass(frozen=True)
class Answered:
    """What `approve` / `reject` did: the records answered now, those answered before (with
    how), and the job after the answered records went on."""

    job: Job
    decision: str
    answered: list[str]
    already: list[tuple[str, str]]

    def to_json(self) -> dict[str, Any]:
        return {
            "job": self.job.job,
            "decision": self.decision,
            "answered": self.answered,
            "already": [{"record": key, "answer": how} for key, how in self.already],
            "status": self.job.to_json(),
        }


def answer(
    ctx: Context,
    job_id: int,
    decision: str,
    record: str | None = None,
    every: bool = False,
    where: str | None = None,
    on_progress: Callable[[Job], None] | None = None,
    stop: Callable[[], bool] = lambda: False,
) -> Answered:
    """Approve or reject parked approval steps, then let the answered records go on here
    (unless the job is running elsewhere: its owner picks the answers up)."""
    from cxrun.runtime import Runner

    if not (record or every or where):
        raise CxrunError("say which records: a RECORD key, --all, or --where SQL")
    found = job(ctx, job_id)
    with ctx.state.read() as con:
        name, number, _ = job_store.table_of(con, job_id)
        table = table_store.version(con, name, number)
    assert table is not None
    if where is not None:
        problem = checks.where_problem(table, where)
        if problem:
            raise CxrunError(f"--where: {problem}", "fix the SQL condition and try again")
    with ctx.state.read() as con:
        targets = job_store.approval_targets(con, job_id, table, record, where)
        before = {
            seq: job_store.last_answer(con, job_id, seq)
            for seq, _, status, kind, answered in targets
            if not (status == "waiting" and kind == "approval" and answered is None)
        }
    if record and not targets:
        raise NotFound(
            f"job {job_id} has no record '{record}'",
            f"list the pending approvals with `cxrun approvals --job {job_id}`",
        )
    pending = [(seq, key) for seq, key, *_ in targets if seq not in before]
    already = []
    for seq, key, status, _, answered in targets:
        if seq in before:
            how = before[seq] or _pending_answer(status, answered)
            already.append((key, how or f"not awaiting approval (the record is {status})"))
    spinner = _job_spinner(ctx, found)
    built = _plugins(ctx, found.spinner, spinner) if pending else None
    now = utcnow()
    owner = owners.new_owner("answer")
    with ctx.state.write() as con:
        job_store.answer(con, job_id, [seq for seq, _ in pending], decision, now)
        # A waiting job goes on here; one that someone runs picks the answers up at the end of
        # its pass, and a queued or paused one when it is run.
        claimed = pending and job_store.claim(con, job_id, owner, now, _lease(now), _WAITING)
        current = job_store.get(con, job_id)
    if claimed:
        runner = Runner(ctx.state, spinner, built, on_progress=on_progress, owner=owner, stop=stop)
        current = runner.run(job_id)
    return Answered(current, decision, [key for _, key in pending], already)


def _pending_answer(status: str, answer: str | None) -> str | None:
    if status == "waiting" and answer is not None:
        return f"{answer}d, not gone on yet"
    return None


def approvals(ctx: Context, job_id: int | None) -> list[dict[str, Any]]:
    with ctx.state.read() as con:
        if job_id is not None:
            job_store.get(con, job_id)
        return job_store.pending_approvals(con, job_id)
