"""The Typer app, its shared options and its one exit path: every CxrunError leaves here."""

from __future__ import annotations

import atexit
import copy
import math
import os
import sys
import threading
import traceback
from typing import TYPE_CHECKING, Annotated, Any, NoReturn

import typer
from typer.core import TyperGroup

from cxrun import __version__
from cxrun.base.enums import JobStatus, Priority, RecordStatus, Trigger
from cxrun.base.errors import CxrunError

if TYPE_CHECKING:
    from cxrun.base.filters import JobFilter

INTERNAL_ERROR = 70


class _Group(TyperGroup):
    """Catches every CxrunError once: a short message on stderr and its exit code."""

    def invoke(self, ctx: typer.Context) -> Any:  # type: ignore[override]
        from cxrun.render import out

        try:
            return super().invoke(ctx)
        except CxrunError as exc:
            if _debug(ctx):
                traceback.print_exc()
            out.error(exc.lines())
            raise typer.Exit(exc.exit_code) from None
        except typer.TyperException as exc:  # usage: a bad option value, a missing argument
            where = getattr(getattr(exc, "ctx", None), "command_path", "cxrun")
            out.error([exc.format_message(), f"see `{where} --help`"])
            raise typer.Exit(exc.exit_code) from None
        except (typer.Exit, typer.Abort):
            raise
        except KeyboardInterrupt:
            out.error(["interrupted"])
            raise typer.Exit(130) from None
        except Exception as exc:
            if _interrupted(exc):  # Ctrl-C while DuckDB ran a query: it raises its own error
                out.error(["interrupted"])
                raise typer.Exit(130) from None
            if _debug(ctx):
                raise
            out.error(
                [
                    f"internal error: {type(exc).__name__}: {exc}",
                    "run again with --debug for the traceback, and report it",
                ]
            )
            raise typer.Exit(INTERNAL_ERROR) from None


def _interrupted(exc: Exception) -> bool:
    return type(exc) is RuntimeError and str(exc) == "Query interrupted"


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
keys_app = typer.Typer(
    cls=_Group, rich_markup_mode=None, help="Create, list and revoke API keys for `cxrun serve`."
)
app.add_typer(keys_app, name="keys")
tables_app = typer.Typer(cls=_Group, rich_markup_mode=None, help="List, load and preview tables.")
app.add_typer(tables_app, name="tables")
schedule_app = typer.Typer(
    cls=_Group, rich_markup_mode=None, help="Fire, list, pause, resume and remove schedules."
)
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


def finite(param: typer.CallbackParam, value: float | None) -> float | None:
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
PriorityOpt = Annotated[
    Priority | None,
    typer.Option("--priority", help="The job's priority, over the spinner's.", show_default=False),
]
# The filters of `cxrun jobs`, shared by the bulk forms of retry, cancel and resume.
SpinnerOpt = Annotated[str | None, typer.Option("--spinner", help="Only this spinner.")]
TriggerOpt = Annotated[
    Trigger | None, typer.Option("--trigger", help="Only jobs started this way.")
]
SinceOpt = Annotated[
    str | None,
    typer.Option(
        "--since",
        help="Only jobs created since: a duration back from now (7d, 24h, 90m) or an ISO date.",
        show_default=False,
    ),
]
ReasonOpt = Annotated[
    str | None,
    typer.Option("--reason", help="Only jobs whose reason contains this text (any case)."),
]
YesOpt = Annotated[
    bool, typer.Option("--yes", "-y", help="Act on the matching jobs without asking.")
]


def job_filter(
    status: str | None,
    spinner: str | None,
    trigger: str | None,
    since: str | None,
    reason: str | None,
) -> JobFilter:
    """The JobFilter of the filter options (a bad --since is a CxrunError: exit 2)."""
    from cxrun.base.filters import job_filter as parsed

    return parsed(status, spinner, trigger, since, reason)


def _version(value: bool) -> None:
    if value:
        print(f"cxrun {__version__}")
        raise typer.Exit()


_given: dict[str, str | None] = {}  # options given before the command's name


@app.callback()
def _main(
    ctx: typer.Context,
    debug: Annotated[bool, typer.Option("--debug", help="Show tracebacks.")] = False,
    project: ProjectOpt = None,
    version: Annotated[
        bool | None,
        typer.Option("--version", callback=_version, is_eager=True, help="Print the version."),
    ] = None,
) -> None:
    ctx.obj = {"debug": debug}
    _given["project"] = project  # each invocation sets it, or clears it
    from cxrun.base import clock

    try:
        clock.fix_from_environment()
    except ValueError:
        raise CxrunError(
            f"CXRUN_NOW={os.environ.get('CXRUN_NOW')!r} is not an ISO 8601 time",
            "use a time like 2026-11-22T09:00:00Z, or unset CXRUN_NOW",
        ) from None


def context(project: str | None) -> Any:
    """The open project every command's operation is given: the command's own `--project`, or
    else one given before the command's name (`cxrun --project DIR jobs`)."""
    from cxrun.ops import open_context

    return open_context(project_dir(project))


def project_dir(project: str | None) -> str | None:
    """The project folder named after the command (`--project`), or else before it."""
    return project or _given.get("project")


def main() -> None:
    # Started with stdout or stderr closed (`>&-`): what would go there is dropped, as a shell
    # drops what goes to /dev/null, rather than every print failing.
    if sys.stdout is None:
        sys.stdout = open(os.devnull, "w")  # noqa: SIM115 - for the life of the process
    if sys.stderr is None:
        sys.stderr = open(os.devnull, "w")  # noqa: SIM115
    code: str | int | None
    try:
        code = _for(_named(sys.argv[1:]))(prog_name="cxrun")
    except SystemExit as done:
        code = done.code
    leave(code)


def leave(code: str | int | None) -> NoReturn:
    """End the process once the command is done, without the interpreter's teardown: freeing
    every object and module one by one takes 40-70 ms, a fifth of a read command's time. What
    an exit must still do is done first: the atexit functions run (thread pools joined, logs
    flushed) and the output is flushed. A thread still working, an exit message, output
    that cannot be flushed (a closed pipe), or a profiler or tracer (which writes at the
    interpreter's exit) takes the usual way out."""
    if (
        isinstance(code, str)
        or sys.getprofile()
        or sys.gettrace()
        or any(
            thread.is_alive() and not thread.daemon and thread is not threading.main_thread()
            for thread in threading.enumerate()
        )
    ):
        sys.exit(code)
    atexit._run_exitfuncs()
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except (OSError, ValueError):
        sys.exit(code)
    os._exit(code or 0)


def _named(argv: list[str]) -> str | None:
    """The command's name in `argv`: its first word after cxrun's own options."""
    at = 0
    while at < len(argv):
        word = argv[at]
        if word in ("--project", "-P"):
            at += 2
        elif word.startswith("-"):
            at += 1
        else:
            return word
    return None


def _for(name: str | None) -> typer.Typer:
    """The app with the named command only (Typer builds every command's options at each
    start: 20-30 ms of the 0.25 s a read takes), or the whole app when no command of that
    name is registered (the error lists them) or none is named (`--help`)."""
    from typer.main import get_command_name

    commands = [
        c
        for c in app.registered_commands
        if (c.name or (get_command_name(c.callback.__name__) if c.callback else None)) == name
    ]
    groups = [g for g in app.registered_groups if g.name == name]
    if name is None or not (commands or groups):
        return app
    only = copy.copy(app)
    only.registered_commands, only.registered_groups = commands, groups
    return only
