"""The `serve` command: the HTTP API, and by default the runtime, in one long-lived process."""

from __future__ import annotations

from typing import Annotated

import typer

from cxrun.cli.app import ProjectOpt, project_dir


def serve(
    host: Annotated[
        str, typer.Option("--host", help="Address to listen on (put TLS in front past 127.0.0.1).")
    ] = "127.0.0.1",
    port: Annotated[
        int, typer.Option("--port", min=0, max=65535, help="Port (0: any free one).")
    ] = 8750,
    no_runtime: Annotated[
        bool, typer.Option("--no-runtime", help="Only the API; a `cxrun runtime` runs the jobs.")
    ] = False,
    max_jobs: Annotated[int, typer.Option("--max-jobs", min=1, max=64, help="Jobs at a time.")] = 1,
    trust_proxy: Annotated[
        list[str] | None,
        typer.Option(
            "--trust-proxy",
            help="Address (or network, 10.0.0.0/8) of a proxy in front: its X-Forwarded-For "
            "names the client. Repeatable; none by default.",
        ),
    ] = None,
    project: ProjectOpt = None,
) -> None:
    """Serve the HTTP API (/api/v1) and run queued jobs; stops cleanly on Ctrl-C or SIGTERM."""
    from cxrun.api import server
    from cxrun.render import out

    options = server.Options(host, port, not no_runtime, max_jobs, tuple(trust_proxy or ()))
    server.serve(project_dir(project), options, out.note)
