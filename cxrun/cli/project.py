"""Commands for the project: init, tables, schema, validate, publish, spinners, secrets."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Annotated

import typer

from cxrun.cli.app import (
    MAX_LIMIT,
    JsonOpt,
    ProjectOpt,
    context,
)


def init(directory: Annotated[Path, typer.Argument(help="Folder to create.")] = Path(".")) -> None:
    """Scaffold a project: cxrun.yaml, an example spinner and table."""
    from cxrun.ops import publishing
    from cxrun.render import out

    written = publishing.init_project(directory)
    out.lines(
        [f"created {directory / w}" for w in written]
        + [f"next: cd {directory} && cxrun publish && cxrun run-now welcome"]
    )


def tables(ctx: typer.Context, project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """List tables: name, file, rows, columns, loaded at."""
    if ctx.invoked_subcommand:
        return
    from cxrun.ops import publishing
    from cxrun.render import out

    listing = publishing.tables(context(project))
    if json_:
        return out.print_json(listing)
    out.dict_table(
        listing,
        ["name", "file", "rows", "columns", "version", "loaded_at", "stale"],
        "no tables: put CSV or Parquet files under tables/",
    )


def tables_load(
    name: Annotated[str | None, typer.Argument(help="Table name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Load CSV/Parquet files into the state (only those that changed)."""
    from cxrun.ops import publishing
    from cxrun.render import out

    ctx = context(project)
    loaded = publishing.load_tables(ctx, name)
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
        return out.print_json(rows)
    out.dict_table(rows, ["name", "version", "rows", "columns", "loaded_at"], "no tables")


def tables_show(
    name: Annotated[str, typer.Argument(help="Table name.")],
    limit: Annotated[int, typer.Option("--limit", min=1, max=MAX_LIMIT, help="Rows to show.")] = 10,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Preview a table's first rows ("Show data")."""
    from cxrun.ops import publishing
    from cxrun.render import out

    ctx = context(project)
    info, rows = publishing.show_table(ctx, name, limit)
    if json_:
        return out.print_json(rows)
    out.preview(
        info.column_names, rows, f"{info.name}: {info.rows} rows, {len(info.columns)} columns"
    )


def schema() -> None:
    """Print the spinner JSON Schema (for editors)."""
    from cxrun.ops import publishing
    from cxrun.render import out

    out.print_json(publishing.schema())


def validate(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Check spinners as publish would, without publishing."""
    from cxrun.ops import publishing
    from cxrun.render import out

    if not json_:
        return out.lines([f"{name}: ok" for name in publishing.validate(context(project), spinner)])
    names, failure = publishing.validation(context(project), spinner)
    hint = {"hint": failure.hint} if failure else {}
    out.print_json({"valid": names, "problems": failure.problems if failure else [], **hint})
    if failure is not None:  # the same message and exit code as without --json
        out.error(failure.lines())
        raise typer.Exit(failure.exit_code)


def publish(
    spinner: Annotated[str | None, typer.Argument(help="Spinner name (default: all).")] = None,
    project: ProjectOpt = None,
    json_: JsonOpt = False,
) -> None:
    """Freeze a new version of each spinner whose file changed."""
    from cxrun.ops import publishing
    from cxrun.render import out

    results = publishing.publish(context(project), spinner)
    if json_:
        return out.print_json(results)
    out.lines(
        [
            f"{r['spinner']}: published version {r['version']}"
            if r["changed"]
            else f"{r['spinner']}: unchanged, version {r['version']}"
            for r in results
        ]
    )


def spinners(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Each spinner: published version, edited since publish, last job."""
    from cxrun.ops import publishing
    from cxrun.render import out

    listing = publishing.spinners(context(project))
    if json_:
        return out.print_json(listing)
    out.dict_table(
        listing,
        ["spinner", "version", "edited", "last_job", "last_status"],
        "no spinners: add spinners/NAME.yaml",
    )


def secrets_set(
    name: Annotated[str, typer.Argument(help="Secret name, e.g. OPENAI_API_KEY.")],
    project: ProjectOpt = None,
) -> None:
    """Store a secret, read from a hidden prompt or from standard input (never from argv)."""
    from cxrun.base.secrets import read_secret_value
    from cxrun.render import out

    store = context(project).secrets
    store.set(name, read_secret_value(sys.stdin, f"value of {name}: "))
    out.note(f"secret {name} saved in .cxrun/secrets.json")


def secrets_list(project: ProjectOpt = None, json_: JsonOpt = False) -> None:
    """Names of the stored secrets (never their values)."""
    from cxrun.render import out

    names = context(project).secrets.names()
    if json_:
        return out.print_json(names)
    out.lines(names or ["no secrets stored"])


def secrets_rm(
    name: Annotated[str, typer.Argument(help="Secret name.")], project: ProjectOpt = None
) -> None:
    """Remove a stored secret."""
    from cxrun.base.errors import NotFound
    from cxrun.render import out

    if not context(project).secrets.remove(name):
        raise NotFound(f"no stored secret {name}", "list them with `cxrun secrets list`")
    out.note(f"secret {name} removed")
