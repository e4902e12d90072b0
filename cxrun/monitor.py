"""Watching the work: one job in detail, the Live Ops summary, and the pre-run checklist."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from cxrun import owners
from cxrun.clock import utcnow
from cxrun.enums import JobStatus, RecordStatus
from cxrun.errors import CxrunError, NotFound, StateBusy, TableError, ValidationFailed
from cxrun.io import plugins
from cxrun.models import Job, iso
from cxrun.spec import checks, loader
from cxrun.spec.loader import SpinnerFile
from cxrun.spec.model import Spinner
from cxrun.store import jobs as job_store
from cxrun.store import monitor as monitor_store
from cxrun.store import spinners as spinner_store
from cxrun.store import triggers as trigger_store
from cxrun.store.monitor import Lease, Progress, Runtime, Stalled, StepFailures, StepStats
from cxrun.store.tables import TableInfo
from cxrun.tables import ensure_loaded

if TYPE_CHECKING:
    from cxrun.services import Context

FAILURE_WINDOW = timedelta(hours=1)
RUNTIME_FIX = "start `cxrun runtime` (or run `cxrun runtime --once` from cron)"


# ---- one job ------------------------------------------------------------------------------


@dataclass(frozen=True)
class JobDetail:
    """One job: its counts, records by status, each step's results and timing, ETA, owner."""

    job: Job
    records: dict[str, int]
    steps: list[StepStats]
    lease: Lease
    rate_per_s: float | None
    eta_s: float | None
    now: datetime
    errors: list[dict[str, str]] | None = None  # why an event's payload did not fit

    def to_json(self) -> dict[str, Any]:
        return {
            **self.job.to_json(),
            "duration_s": self.job.duration_s(self.now),
            "records": self.records,
            "steps": [step.to_json() for step in self.steps],
            "rate_per_s": None if self.rate_per_s is None else round(self.rate_per_s, 3),
            "eta_s": None if self.eta_s is None else round(self.eta_s, 1),
            **self.lease.to_json(),
            **({"errors": self.errors} if self.errors is not None else {}),
        }


def job_detail(ctx: Context, job_id: int, now: datetime | None = None) -> JobDetail:
    """A job in detail; NotFound for an unknown job. The ETA is only known while it runs."""
    now = now or utcnow()
    with ctx.state.read() as con:
        job = job_store.get(con, job_id)
        counts = monitor_store.record_counts(con, job_id)
        stats = monitor_store.step_stats(con, job_id)
        version = spinner_store.version(con, job.spinner, job.version)
        done = monitor_store.progress(con, job_id)
        lease = monitor_store.lease(con, job_id)
        errors = trigger_store.payload_errors(con, job_id)
    rate, eta = _eta(job, done, now)
    ids = [str(step["id"]) for step in version.spec["steps"]] if version else []
    counted = _record_counts(job, counts, done)
    return JobDetail(job, counted, _all_steps(ids, stats), lease, rate, eta, now, errors)


def _record_counts(job: Job, counts: dict[str, int], done: Progress) -> dict[str, int]:
    """Records by status, every status listed; rows no batch reached yet are pending, those a
    cancel counted are cancelled."""
    result = {str(status): counts.get(str(status), 0) for status in RecordStatus}
    unwritten = max(0, job.cancelled - result["cancelled"])  # cancelled by an earlier version
    result["cancelled"] += unwritten
    result["pending"] += max(0, job.total - done.records - unwritten)
    return result


def _all_steps(ids: list[str], stats: list[StepStats]) -> list[StepStats]:
    """Every step of the spinner version in order (zeros where no record reached it yet), with
    the required-fields check first when records failed it."""
    by_pos = {s.pos: s for s in stats}
    listed = [by_pos.get(pos, StepStats(pos, step)) for pos, step in enumerate(ids)]
    extra = [s for s in stats if s.pos < 0 or s.pos >= len(ids)]
    return sorted(extra + listed, key=lambda s: s.pos)


def _eta(job: Job, done: Progress, now: datetime) -> tuple[float | None, float | None]:
    """Records per second since the first record began, and the seconds left at that rate;
    (None, None) unless the job is running and has written records."""
    if job.status != JobStatus.RUNNING or not done.records or done.first_started_at is None:
        return None, None
    elapsed = (now - done.first_started_at).total_seconds()
    if elapsed <= 0:
        return None, None
    rate = done.records / elapsed
    left = job.total - job.processed
    return rate, (left / rate if left > 0 else None)


# ---- Live Ops -----------------------------------------------------------------------------


@dataclass(frozen=True)
class Live:
    """The Live Ops summary: jobs by status, stalled jobs, recent failures, the runtime."""

    now: datetime
    stall_minutes: float
    jobs: dict[str, int]
    stalled: list[Stalled]
    failures: list[StepFailures]
    runtimes: list[Runtime]
    last_heartbeat_at: datetime | None
    orphaned: list[Stalled]  # jobs whose owner is gone
    queued: int

    @property
    def runtime_up(self) -> bool:
        return bool(self.runtimes)

    @property
    def warnings(self) -> list[str]:
        """What needs an operator: jobs whose owner is gone, queued jobs with no runtime."""
        found = [_orphan_line(o) for o in self.orphaned]
        if self.queued and not self.runtime_up:
            found.append(f"{self.queued} job(s) queued and no runtime is up: {RUNTIME_FIX}")
        return found

    def to_json(self) -> dict[str, Any]:
        return {
            "now": iso(self.now),
            "jobs": self.jobs,
            "stall_minutes": self.stall_minutes,
            "stalled": [s.to_json(self.now) for s in self.stalled],
            "orphaned": [o.to_json(self.now) for o in self.orphaned],
            "warnings": self.warnings,
            "failures_since": iso(self.now - FAILURE_WINDOW),
            "failures": [f.to_json() for f in self.failures],
            "runtime": {
                "up": self.runtime_up,
                "runtimes": [r.to_json() for r in self.runtimes],
                "last_heartbeat_at": iso(self.last_heartbeat_at),
            },
        }


def live(ctx: Context, stall_minutes: float = 5, now: datetime | None = None) -> Live:
    """Running jobs with no progress for `stall_minutes` are stalled; failures are counted over
    the last hour; a runtime is up while it beats (every few seconds) and has not stopped."""
    now = now or utcnow()
    with ctx.state.read() as con:
        counts = monitor_store.jobs_by_status(con)
        stalled = monitor_store.stalled(con, now - timedelta(minutes=stall_minutes))
        failures = monitor_store.step_failures(con, now - FAILURE_WINDOW)
        runtimes = monitor_store.runtimes_up(con, now)
        last = monitor_store.last_heartbeat(con)
        orphaned = monitor_store.orphans(con, now)
    jobs = {str(status): counts.get(str(status), 0) for status in JobStatus}
    queued = jobs[str(JobStatus.QUEUED)]
    return Live(now, stall_minutes, jobs, stalled, failures, runtimes, last, orphaned, queued)


def _orphan_line(orphan: Stalled) -> str:
    lease = orphan.lease
    where = f"pid {lease.pid}" + ("" if lease.host == owners.this_host() else f" on {lease.host}")
    return (
        f"job {orphan.job} ({orphan.spinner}): its owner ({where}) is gone; "
        f"`cxrun runtime` takes it over, or `cxrun resume {orphan.job}` continues it here"
    )


# ---- doctor -------------------------------------------------------------------------------


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
        _, spinner = loader.parse(file)
    except CxrunError as exc:  # YAML or schema problems
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
    from cxrun import services

    problems = checks.check(spinner, table) + services._key_problems(ctx, table, spinner.key)
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
    digest = loader.calls_digest(ctx.project, file)
    if version.digest != digest:
        edited = file.shown if digest == file.digest else f"{file.shown} (or a spinner it calls)"
        detail = f"{edited} was edited since version {version.version} was published ({when})"
        fix = f"{publish} (runs use version {version.version} until then)"
        return Check("published", False, detail, fix, name)
    return Check("published", True, f"version {version.version}, published {when}", None, name)


_CONFIG_FIX = "fix the providers and channels in cxrun.yaml"


def _providers_check(ctx: Context, spinner: Spinner) -> Check:
    """The providers and channels the steps use are in cxrun.yaml, valid, with their secrets."""
    from cxrun import services

    providers, channels = plugins.used(spinner)
    problems = services._plugin_problems(ctx, spinner)
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
        detail = "; ".join(_orphan_line(o) for o in orphaned)
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
