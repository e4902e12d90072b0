"""The long-lived runtime: claims and runs jobs, fires schedules, sends alerts; with a Dask
cluster, its jobs' I/O calls are made by the cluster's workers."""

from __future__ import annotations

import threading
from collections.abc import Callable
from contextlib import ExitStack
from typing import TYPE_CHECKING

from cxrun.base.errors import CxrunError
from cxrun.base.models import Job
from cxrun.base.owners import Owner
from cxrun.ops.views import job
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store.context import Context
from cxrun.store.db import State
from cxrun.triggers.prepare import job_spinner, plugins_for

if TYPE_CHECKING:
    from cxrun.io.cluster import Cluster
    from cxrun.io.plugins import Plugins
    from cxrun.spec.model import Spinner


def runtime(
    ctx: Context,
    once: bool,
    max_jobs: int,
    stop: threading.Event | None = None,
    on_event: Callable[[str], None] = lambda text: None,
    schedules: bool = True,
    cluster: str | None = None,
) -> int:
    """The long-lived runtime (or, with `once`, until nothing is runnable); it fires due
    schedules every few seconds unless `schedules` is False. `cluster`: a Dask scheduler's
    address (else cxrun.yaml's `executor`, else none) whose workers make the I/O calls."""
    from cxrun.ops import alerts
    from cxrun.runtime import worker
    from cxrun.triggers.schedules import runtime_hook as schedules_hook

    with ExitStack() as stack:
        # beats, claims, batches and alerts: one database kept open while nobody else waits
        stack.enter_context(State(ctx.project.state_dir).warm())
        address = cluster or ctx.project.cluster_address
        connected = _connect(stack, address, on_event) if address else None
        fire = schedules_hook(ctx, on_event) if schedules else None
        courier = alerts.Courier(ctx, on_event)
        stack.callback(courier.stop)

        def tick() -> None:
            if fire is not None:
                fire()
            courier.poke()  # what the last turn's jobs went through

        pace = worker.Pace(aging=ctx.project.aging)
        run_job = _job_runner(ctx, connected)
        return worker.serve(
            ctx.project.state_dir, run_job, once, max_jobs, stop, on_event, pace, tick
        )
    raise AssertionError("unreachable")  # for mypy: the with block returns


def _connect(stack: ExitStack, address: str, on_event: Callable[[str], None]) -> Cluster:
    from cxrun.io import cluster

    found = cluster.connect(address)
    stack.callback(found.close)
    on_event(f"I/O calls go to the Dask cluster at {address} ({len(found.workers())} workers)")
    return found


def _job_runner(
    ctx: Context, cluster: Cluster | None
) -> Callable[[int, Owner, Callable[[], bool]], Job]:
    """How the runtime runs one job it claimed, on a thread of its own."""
    from cxrun.runtime.runner import Runner

    def run_job(job_id: int, owner: Owner, stopping: Callable[[], bool]) -> Job:
        here = Context(ctx.project, State(ctx.project.state_dir))  # its own state handle
        found = job(here, job_id)
        spinner = job_spinner(here, found)
        try:
            built = _plugins(here, found.spinner, spinner, cluster is not None)
        except CxrunError as exc:  # paused for `cxrun resume` once fixed: no longer ours
            with here.state.write() as con:
                if not claim_store.holds(con, job_id, owner):
                    return job_store.get(con, job_id)
                return job_store.pause_now(con, job_id, exc.message)
        runner = Runner(here.state, spinner, built, owner=owner, stop=stopping, cluster=cluster)
        return runner.run(job_id)

    return run_job


def _plugins(ctx: Context, name: str, spinner: Spinner, on_cluster: bool) -> Plugins | None:
    """The job's providers and channels: built here, or, when a cluster's workers make the
    calls, only named (the workers resolve the secrets: this runtime needs none of them)."""
    return plugins_for(ctx, name, spinner, secrets_here=not on_cluster)
