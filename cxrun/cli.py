"""The command line: parse, call one core function, render. Errors leave through one exit path."""

from __future__ import annotations

import math
import os
import sys
import traceback
from pathlib import Path
from typing import Annotated, Any

import typer
from typer.core import TyperGroup

from cxrun import __version__
from cxrun.enums import JobStatus, RecordStatus
from cxrun.errors import CxrunError

INTERNAL_ERROR = 70


class _Group(TyperGroup):
    """Catches every CxrunError once: a short message on stderr and its exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        from cxrun import render

        try:
            return super().invoke(ctx)
        except CxrunError as exc:
            if _debug(ctx):
                traceback.print_exc()
            render.error(exc.lines())
            raise typer.Exit(exc.exit_code) from None
        except typer.TyperException as exc:  # usage: a bad option value, a missing argument
            where = getattr(getattr(exc, "ctx", None), "command_path", "cxrun")
            render.error([exc.format_message(), f"see `{where} --help`"])
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            render.error(["interrupted"])
            raise typer.Exit(130) from None
        except Exception as exc:
            if _debug(ctx):
                raise
            render.error(
                [
                    f"internal error: {type(exc).__name__}: {exc}",
                    "run again with --debug for the traceback, and report it",
                ]
            )
            raise typer.Exit(INTERNAL_ERROR) from None


def _debug(ctx: typer.Context) -> bool:
    return bool((ctx.obj or {}).get("debug")) or os.environ.get("CXRUN_DEBUG") == "1"


app = typer.Typer(
    cls=_Group,
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode=None,
    help="Run spinners (YAML pipelines of steps) over the rows of CSV/Parquet tables.",
)
secrets_app = typer.Typer(cls=_Group, rich_markup_mode=None, help="Manage local secrets.")
app.add_typer(secrets_app, name="secrets")
tables_app = typer.Typer(cls=_Group, rich_markup_mode=None, help="List, load and preview tables.")
app.add_typer(tables_app, name="tables")
schedule_app = typer.Typer(cls=_Group, rich_markup_mode=None, help="Fire and list schedules.")
app.add_typer(schedule_app, name="schedule")

ProjectOpt = Annotated[
    str | None,
    typer.Option(
        "--project",
        "-P",
        help="Project folder (default: found from here upward).",
        show_default=False,
    ),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON only, on stdout.")]
# Bounds of numbers given on the command line: offsets and limits stay far inside DuckDB's
# BIGINT, and times inside what a clock can wait for.
MAX_PAGE = 10**9
MAX_LIMIT = 10**6
MAX_ROWS = 10**12


def _finite(param: typer.CallbackParam, value: float | None) -> float | None:
    """A float option's callback: its range (min and max) lets NaN through."""
    if value is not None and not math.isfinite(value):
        bounds = param.type
        low, high = getattr(bounds, "min", None), getattr(bounds, "max", None)
        raise typer.BadParameter(f"{value} is not a number between {low:g} and {high:g}")
    return value


PageOpt = Annotated[
    int, typer.Option("--page", min=1, max=MAX_PAGE, help="Page number (50 rows a page).")
]
LimitOpt = Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="Rows a page.")]
JobStatusOpt = Annotated[JobStatus | None, typer.Option("--status", help="Only this status.")]
RecordStatusOpt = Annotated[RecordStatus | None, typer.Option("--status", help="Only this status.")]


def _version(value: bool) -> None:
    if value:
        print(f"cxrun {__version__}")
        raise typer.Exit()


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    ctx.obj = {"debug": debug}
    from cxrun import clock

    try:
        clock.fix_from_environment()
    except ValueError:
        raise CxrunError(
            f"CXRUN_NOW={os.environ.get('CXRUN_NOW')!r} is not an ISO 8601 time",
            "use a time like 2026-11-22T09:00:00Z, or unset CXRUN_NOW",
        ) from None


def _ctx(project: str | None) -> Any:
    from cxrun import services

    return services.open_context(project)


@app.command()
def init(directory: Annotated[Path, typer.Argument(help="Folder to create.")] = Path(".")) -> None:
    """Scaffold a project: cxrun.yaml, an example spinner and table."""
    from cxrun import render, services

    written = services.init_project(directory)
    render.lines(
        [f"created {directory / w}" for w in written]
        + [f"next: cd {directory} && cxrun publish && cxrun run-now welcome"]
    )


@tables_app.callback(invoke_without_command=True)
def tables(ctx: typer.Context, project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """List tables: name, file, rows, columns, loaded at."""
    if ctx.invoked_subcommand:
        return
    from cxrun import render
    from cxrun import tables as table_service

    listing = table_service.list_tables(_ctx(project).project, _ctx(project).state)
    if json_:
        return render.print_json(listing)
    render.dict_table(
        listing,
        ["name", "file", "rows", "columns", "version", "loaded_at", "stale"],
        "no tables: put CSV or Parquet files under tables/",
    )


@tables_app.command("load")
def tables_load(
    name: Annotated[str | None, typer.Argument(help="Table name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Load CSV/Parquet files into the state (only those that changed)."""
    from cxrun import render
    from cxrun import tables as table_service

    ctx = _ctx(project)
    loaded = table_service.load_tables(ctx.project, ctx.state, name)
    rows = [
        {
            "name": t.name,
            "version": t.version,
            "rows": t.rows,
            "columns": len(t.columns),
            "loaded_at": t.loaded_at.isoformat(),
        }
        for t in loaded
    ]
    if json_:
        return render.print_json(rows)
    render.dict_table(rows, ["name", "version", "rows", "columns", "loaded_at"], "no tables")


@tables_app.command("show")
def tables_show(
    name: Annotated[str, typer.Argument(help="Table name.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="Rows to show.")] = 10,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Preview a table's first rows ("Show data")."""
    from cxrun import render
    from cxrun import tables as table_service

    ctx = _ctx(project)
    info, rows = table_service.show_table(ctx.project, ctx.state, name, limit)
    if json_:
        return render.print_json(rows)
    render.preview(
        info.column_names, rows, f"{info.name}: {info.rows} rows, {len(info.columns)} columns"
    )


@app.command()
def schema() -> None:
    """Print the spinner JSON Schema (for editors)."""
    from cxrun import render
    from cxrun.spec.loader import schema as spinner_schema

    render.print_json(spinner_schema())


@app.command()
def validate(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Check spinners as publish would, without publishing."""
    from cxrun import render, services

    names = services.validate(_ctx(project), spinner)
    if json_:
        return render.print_json({"valid": names})
    render.lines([f"{name}: ok" for name in names])


@app.command()
def publish(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Freeze a new version of each spinner whose file changed."""
    from cxrun import render, services

    results = services.publish(_ctx(project), spinner)
    if json_:
        return render.print_json(results)
    render.lines(
        [
            f"{r['spinner']}: published version {r['version']}"
            if r["changed"]
            else f"{r['spinner']}: unchanged, version {r['version']}"
            for r in results
        ]
    )


@app.command()
def spinners(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Each spinner: published version, edited since publish, last job."""
    from cxrun import render, services

    listing = services.spinners(_ctx(project))
    if json_:
        return render.print_json(listing)
    render.dict_table(
        listing,
        ["spinner", "version", "edited", "last_job", "last_status"],
        "no spinners: add spinners/NAME.yaml",
    )


@app.command("run-now")
def run_now(
    spinner: Annotated[str, typer.Argument(help="Spinner name.")],
    where: Annotated[str | None, typer.Option("--where", help="Extra SQL row filter.")] = None,
    limit: Annotated[
        int | None, typer.Option("--limit", min=0, max=MAX_ROWS, help="At most N rows.")
    ] = None,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Show what would be sent; call nothing.")
    ] = False,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only queue the job, for `cxrun runtime`.")
    ] = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run the published spinner now, here, with progress."""
    from cxrun import render, services

    if dry_run:
        preview = services.dry_run(_ctx(project), spinner, where, limit)
        return render.print_json(preview.to_json()) if json_ else render.dry_run(preview)
    if detach:
        queued = services.run_now(_ctx(project), spinner, where, limit, detach=True)
        if json_:
            return render.print_json(queued.to_json())
        return render.lines([f"job {queued.job} queued: run `cxrun runtime` to run it"])

    _run_job(
        json_,
        lambda view, stop: services.run_now(
            _ctx(project), spinner, where, limit, view.start, view.update, stop=stop
        ),
        project,
    )


@app.command()
def jobs(
    status: JobStatusOpt = None,
    spinner: Annotated[str | None, typer.Option("--spinner", help="Only this spinner.")] = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    watch: Annotated[bool, typer.Option("--watch", help="Redraw in place until Ctrl-C.")] = False,
    interval: Annotated[
        float,
        typer.Option(
            "--interval", min=0.1, max=3600, callback=_finite, help="Seconds between redraws."
        ),
    ] = 1.0,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Jobs, newest first: progress, counts, status, timing."""
    from cxrun import render, services
    from cxrun.errors import StateBusy

    ctx = _ctx(project)
    if watch:
        try:
            render.watch(
                lambda: services.jobs(ctx, status, spinner, page, limit), interval, StateBusy
            )
        except KeyboardInterrupt:
            return
    found = services.jobs(ctx, status, spinner, page, limit)
    if json_:
        return render.print_json([j.to_json() for j in found])
    render.jobs_table(found)


@app.command("job")
def job_command(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One job in detail: records by status, each step's results and timing, ETA, reason."""
    from cxrun import monitor, render

    detail = monitor.job_detail(_ctx(project), job).to_json()
    if json_:
        return render.print_json(detail)
    render.job_detail(detail)


@app.command()
def live(
    stall: Annotated[
        float,
        typer.Option(
            "--stall",
            min=0,
            max=525600,
            callback=_finite,
            help="Minutes without progress = stalled (at most a year).",
        ),
    ] = 5.0,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Live Ops: jobs by status, stalled jobs, runtime up or down, failures per step."""
    from cxrun import monitor, render

    summary = monitor.live(_ctx(project), stall).to_json()
    if json_:
        return render.print_json(summary)
    render.live(summary)


@app.command()
def doctor(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """The pre-run checklist; exits 0 only when every check passes (1 otherwise)."""
    from cxrun import monitor, render

    report = monitor.doctor(_ctx(project), spinner)
    if json_:
        render.print_json(report.to_json())
    else:
        render.doctor(report.to_json())
    raise typer.Exit(0 if report.ok else 1)


@app.command()
def records(
    job: Annotated[int, typer.Argument(help="Job number.")],
    status: RecordStatusOpt = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """A job's records: metadata (the row) and outcomes."""
    from cxrun import render, services

    found = services.records(_ctx(project), job, status, page, limit)
    if json_:
        return render.print_json([r.to_json() for r in found])
    render.records_table(found)


@app.command()
def journey(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str, typer.Argument(help="The record's key.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """One record's steps: status, message, output, error, duration."""
    from cxrun import render, services

    entries = services.journey(_ctx(project), job, record)
    if json_:
        return render.print_json([e.to_json() for e in entries])
    render.journey_table(entries)


class _Interrupt:
    """Ctrl-C or SIGTERM while a job runs here: the job is handed back (queued, its progress
    kept) between two calls instead of the process dying with it; a second signal ends the
    process at once (a runtime then takes the job over)."""

    def __init__(self) -> None:
        self.received: int | None = None

    def __enter__(self) -> _Interrupt:
        import signal

        self._before = {n: signal.getsignal(n) for n in (signal.SIGINT, signal.SIGTERM)}
        for number in self._before:
            signal.signal(number, self._handle)
        return self

    def _handle(self, number: int, frame: Any) -> None:
        import signal

        self.received = number
        for other, handler in self._before.items():
            signal.signal(other, handler)

    def __exit__(self, *exc: object) -> None:
        import signal

        for number, handler in self._before.items():
            signal.signal(number, handler)

    def stop(self) -> bool:
        return self.received is not None

    def handed_back(self, project: str | None, jobs: list[Any]) -> None:
        """After a signal: say who finishes each job left unfinished, and exit 130 (SIGINT) or
        143 (SIGTERM)."""
        from cxrun import render, services

        if self.received is None:
            return
        left = [j for j in jobs if not j.status.finished]
        if not left:
            return
        for job in left:
            first, *rest = services.handed_back(_ctx(project), job)
            render.note("\n".join([f"interrupted: {first}", *(f"  {line}" for line in rest)]))
        raise typer.Exit(128 + self.received)


def _run_job(json_: bool, start: Any, project: str | None) -> None:
    """Run a job with progress, print it, and exit with its status's code."""
    from cxrun import render

    view = render.JobProgress(enabled=not json_)
    with _Interrupt() as interrupt:
        try:
            job = start(view, interrupt.stop)
        finally:
            view.stop()
    if json_:
        render.print_json(job.to_json())
    else:
        render.job_summary(job)
    interrupt.handed_back(project, [job])
    if job.status == JobStatus.PAUSED:
        render.error(
            [
                f"job {job.job} is paused: {job.reason}",
                f"fix the cause, then continue it with `cxrun resume {job.job}`",
            ]
        )
    if job.status == JobStatus.WAITING:
        render.note(
            f"job {job.job} is waiting: `cxrun runtime` (or cron: `cxrun runtime --once`) "
            "continues it when due; `cxrun approvals` lists what needs a person"
        )
    raise typer.Exit(job.status.exit_code)


@app.command()
def runtime(
    once: Annotated[
        bool, typer.Option("--once", help="Stop when nothing is runnable (for cron).")
    ] = False,
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, help="Jobs at a time.")] = 1,
    project: ProjectOpt = None,
) -> None:
    """Run queued jobs, take over orphaned ones; stops cleanly on Ctrl-C or SIGTERM."""
    from cxrun import render, services

    services.runtime(_ctx(project), once, max_jobs, _stop_on_signals(), render.note)


def _stop_on_signals() -> Any:
    """An event set by Ctrl-C or SIGTERM: a runtime's jobs go back to the queue, then it stops."""
    import signal
    import threading

    stop = threading.Event()
    for number in (signal.SIGINT, signal.SIGTERM):
        signal.signal(number, lambda *_: stop.set())
    return stop


@app.command()
def resume(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Continue a paused job here: unfinished records only, no call made twice."""
    from cxrun import services

    _run_job(
        json_, lambda view, stop: services.resume(_ctx(project), job, view.update, stop), project
    )


@app.command()
def retry(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str | None, typer.Option("--record", help="Only this record.")] = None,
    where: Annotated[
        str | None, typer.Option("--where", help="Only failed records whose row meets this SQL.")
    ] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Run a job's failed records again from their failed step, reusing earlier outputs."""
    from cxrun import services

    _run_job(
        json_,
        lambda view, stop: services.retry(_ctx(project), job, record, view.update, where, stop),
        project,
    )


AllOpt = Annotated[bool, typer.Option("--all", help="Every pending approval of the job.")]
WhereApprovalOpt = Annotated[
    str | None, typer.Option("--where", help="Pending approvals whose row meets this SQL.")
]


@app.command()
def approve(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str | None, typer.Argument(help="The record's key.")] = None,
    every: AllOpt = False,
    where: WhereApprovalOpt = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Approve records parked at an approval step; they go on with the next step."""
    _answer_approvals(job, "approve", record, every, where, project, json_)


@app.command()
def reject(
    job: Annotated[int, typer.Argument(help="Job number.")],
    record: Annotated[str | None, typer.Argument(help="The record's key.")] = None,
    every: AllOpt = False,
    where: WhereApprovalOpt = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Reject records parked at an approval step; they end skipped."""
    _answer_approvals(job, "reject", record, every, where, project, json_)


def _answer_approvals(
    job: int,
    decision: str,
    record: str | None,
    every: bool,
    where: str | None,
    project: str | None,
    json_: bool,
) -> None:
    from cxrun import render, services

    view = render.JobProgress(enabled=not json_)
    with _Interrupt() as interrupt:
        try:
            done = services.answer(
                _ctx(project), job, decision, record, every, where, view.update, interrupt.stop
            )
        finally:
            view.stop()
    if json_:
        render.print_json(done.to_json())
        return interrupt.handed_back(project, [done.job])
    verb = "approved" if decision == "approve" else "rejected"
    lines = [f"{verb} {len(done.answered)} record(s) of job {job}"] if done.answered else []
    lines += _already_answered(done.already)
    if not done.answered and not done.already:
        lines.append(f"no pending approvals in job {job} matched")
    render.lines(lines)
    render.job_summary(done.job)
    interrupt.handed_back(project, [done.job])


def _already_answered(already: list[tuple[str, str]], shown: int = 3) -> list[str]:
    """A line per record answered before, or per answer when there are many."""
    if len(already) <= shown:
        return [f"record {key} was answered already: {how}" for key, how in already]
    keys_by_how: dict[str, list[str]] = {}
    for key, how in already:
        keys_by_how.setdefault(how, []).append(key)
    return [
        f"{len(keys)} {'records were' if len(keys) > 1 else 'record was'} answered already: {how} "
        f"({', '.join(keys[:shown])}{', ...' if len(keys) > shown else ''})"
        for how, keys in keys_by_how.items()
    ]


@app.command()
def approvals(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's approvals.")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Records waiting for a person to approve or reject them, with the prompt."""
    from cxrun import render, services

    pending = services.approvals(_ctx(project), job)
    if json_:
        return render.print_json(pending)
    render.dict_table(
        pending,
        ["job", "spinner", "record", "step", "prompt", "since", "timeout_at"],
        "no approvals pending",
    )


@app.command()
def cancel(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Cancel a queued, running or paused job (wherever it runs)."""
    from cxrun import render, services

    _answer(render, services.cancel(_ctx(project), job), json_)


@app.command()
def pause(
    job: Annotated[int, typer.Argument(help="Job number.")],
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Pause a queued or running job; `cxrun resume JOB` continues it."""
    from cxrun import render, services

    _answer(render, services.pause(_ctx(project), job), json_)


def _answer(render: Any, job: Any, json_: bool) -> None:
    if json_:
        render.print_json(job.to_json())
    else:
        render.job_summary(job)


@app.command()
def outbox(
    job: Annotated[int | None, typer.Option("--job", help="Only this job's messages.")] = None,
    page: PageOpt = 1,
    limit: LimitOpt = 50,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Messages kept by the local outbox channel, newest first."""
    from cxrun import render, services

    messages = services.outbox(_ctx(project), job, page, limit)
    if json_:
        return render.print_json(messages)
    render.dict_table(
        messages,
        ["job", "record", "step", "recipient", "subject", "text"],
        "no messages in the outbox",
    )


@schedule_app.command("tick")
def schedule_tick(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Fire the schedules that are due, then run runnable jobs (cron calls this every minute)."""
    from cxrun import render, schedules

    stop = _stop_on_signals()
    fired, ran = schedules.tick(
        _ctx(project), (lambda f: None) if json_ else render.fires, render.note, stop=stop
    )
    if json_:
        render.print_json({"fired": [f.to_json() for f in fired], "ran": ran})
    raise typer.Exit(schedules.exit_code(fired))


@schedule_app.command("list")
def schedule_list(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Each schedule: spinner, cron, time zone, catch-up, last fire, next fire (UTC)."""
    from cxrun import render, schedules

    listing = [s.to_json() for s in schedules.listing(_ctx(project))]
    if json_:
        return render.print_json(listing)
    columns = ["spinner", "cron", "timezone", "catchup", "last_fire", "last_job", "next_fire"]
    render.dict_table(listing, columns, "no schedules: add `triggers: [{schedule: CRON}]`")


@app.command("trigger")
def trigger_event(
    event: Annotated[str, typer.Argument(help="Event name.")],
    payload: Annotated[
        str | None, typer.Option("--payload", help="A JSON object: a file, or - for stdin.")
    ] = None,
    event_id: Annotated[
        str | None, typer.Option("--id", help="The event's id: the same id again starts nothing.")
    ] = None,
    detach: Annotated[
        bool, typer.Option("--detach", help="Only queue the jobs, for `cxrun runtime`.")
    ] = False,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Start a job for each published spinner listening to EVENT (payload checked first)."""
    from cxrun import events, render

    body = events.read_payload(payload, sys.stdin.buffer)
    view = render.JobProgress(enabled=not json_)
    with _Interrupt() as interrupt:
        try:
            result = events.trigger(
                _ctx(project),
                event,
                body,
                event_id,
                detach,
                view.start,
                view.update,
                stop=interrupt.stop,
            )
        finally:
            view.stop()
    if json_:
        render.print_json(result.to_json())
        if result.errors:
            render.error(["the payload does not fit a spinner's schema: see the jobs' errors"])
    else:
        render.received(result)
    if not detach:
        interrupt.handed_back(project, result.jobs)
    raise typer.Exit(result.exit_code)


@app.command()
def usage(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """This month's jobs and records against the plan limits of cxrun.yaml."""
    from cxrun import limits, render

    found = limits.usage(_ctx(project)).to_json()
    if json_:
        return render.print_json(found)
    render.usage(found)


@secrets_app.command("set")
def secrets_set(
    name: Annotated[str, typer.Argument(help="Secret name, e.g. OPENAI_API_KEY.")],
    project: ProjectOpt = None,
) -> None:
    """Store a secret, read from a hidden prompt or from standard input (never from argv)."""
    from cxrun import render
    from cxrun.secrets import read_secret_value

    store = _ctx(project).secrets
    store.set(name, read_secret_value(sys.stdin, f"value of {name}: "))
    render.note(f"secret {name} saved in .cxrun/secrets.json")


@secrets_app.command("list")
def secrets_list(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Names of the stored secrets (never their values)."""
    from cxrun import render

    names = _ctx(project).secrets.names()
    if json_:
        return render.print_json(names)
    render.lines(names or ["no secrets stored"])


@secrets_app.command("rm")
def secrets_rm(
    name: Annotated[str, typer.Argument(help="Secret name.")], project: ProjectOpt = None
) -> None:
    """Remove a stored secret."""
    from cxrun import render
    from cxrun.errors import NotFound

    if not _ctx(project).secrets.remove(name):
        raise NotFound(f"no stored secret {name}", "list them with `cxrun secrets list`")
    render.note(f"secret {name} removed")


def main() -> None:
    sys.exit(app(prog_name="cxrun"))
