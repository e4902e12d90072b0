"""Views of jobs: the jobs table and its live redraw, summaries, records, journeys, progress."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from cxrun.base.models import Job, JobsPage, JourneyEntry, Record
from cxrun.render import joblist, out, style

_when = joblist.when
_seconds = joblist.seconds
_tokens = joblist.tokens


def _brief(values: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in values.items() if v not in (None, ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def jobs_table(page: JobsPage) -> None:
    """A JobsPage as a table that fits the console, or what its filter matched: nothing."""
    console = style.console()
    console.print(joblist.table(page.jobs, console.width) if page.jobs else joblist.empty_of(page))


def job_summary(job: Job) -> None:
    parts = [
        f"job {job.job}",
        f"{job.spinner} v{job.version}",
        style.status(job.status),
        f"{job.completed} completed",
        f"{job.failed} failed",
        f"{job.skipped} skipped",
        f"{job.waiting} waiting" if job.waiting else "",
        f"{job.cancelled} cancelled" if job.cancelled else "",
        f"of {job.total}",
        _seconds(job.duration_s()),
        f"{_tokens(job)} tokens" if _tokens(job) else "",
    ]
    text = " · ".join(p for p in parts if p)
    if job.reason:
        text += f"\n{style.escape(job.reason)}"
    if job.failed and job.status.finished:
        text += f": see them with `cxrun records {job.job} --status failed`"
    style.console().print(text)


def records_table(
    records: Sequence[Record], job: int | None = None, status: str | None = None, page: int = 1
) -> None:
    """A job's records; an empty page says which filter (or page) matched nothing."""
    table = style.table("record", "status", "tags", "outputs", "error", "metadata")
    for record in records:
        table.add_row(
            style.escape(record.record),
            style.status(record.status),
            style.escape(", ".join(record.tags)),
            style.escape(record.outputs or None),
            style.escape(record.error),
            style.escape(_brief(record.metadata)),
        )
    style.console().print(table if records else _no_records(job, status, page))


def _no_records(job: int | None, status: str | None, page: int) -> str:
    what = f"no {status} records" if status else "no records"
    where = f" in job {job}" if job is not None else ""
    return f"{what}{where}" + (f" on page {page}" if page > 1 else "" if status else " yet")


def journey_table(entries: Sequence[JourneyEntry]) -> None:
    table = style.table("step", "try", "status", "message", "output", "error", "ms")
    for entry in entries:
        depth = entry.step.count(".") if entry.parent else 0  # a called child's step, nested
        label = entry.step.rsplit(".", 1)[-1] if depth else entry.step
        table.add_row(
            style.escape("  " * (depth - 1) + "└ " + label if depth else label),
            str(entry.attempt),
            style.status(entry.status),
            style.escape(entry.message),
            style.escape(entry.output),
            style.escape(entry.error),
            "" if entry.duration_ms is None else f"{entry.duration_ms:.3f}",
        )
    style.console().print(table if entries else "no steps yet")


def dry_run(preview: Any) -> None:
    """Each shown row's I/O calls as they would be sent, then the estimate."""
    console = style.console()
    for row in preview.rows:
        console.print(f"[bold]record {style.escape(row['record'])}[/]")
        for call in row["calls"]:
            target = f" via {call['target']}" if call["target"] else ""
            console.print(f"  {call['step']} ({call['kind']}{target})")
            for name, value in call.items():
                if name not in ("step", "kind", "target"):
                    console.print(f"    {name}: {style.escape(value)}")
    estimate = preview.to_json()["estimate"]
    console.print(
        f"dry run: {preview.selected} rows selected, {len(preview.rows)} shown; nothing was sent "
        f"and no job was created.\nestimated AI tokens for all rows: about "
        f"{estimate['prompt_tokens']:,} prompt + {estimate['completion_tokens']:,} completion "
        f"(completion counts max_tokens, or 256 where it is not set)"
    )


def job_detail(data: dict[str, Any]) -> None:
    """`cxrun job JOB`: the summary, records by status, each step's results and timing."""
    console = style.console()
    console.print(
        f"job {data['job']} · {data['spinner']} v{data['version']} · {style.status(data['status'])}"
        f" · {data['processed']}/{data['total']} rows · {_seconds(data['duration_s'])}"
    )
    if data["reason"]:
        console.print(f"reason: {style.escape(data['reason'])}")
    if data["eta_s"] is not None:
        console.print(f"ETA: {_seconds(data['eta_s'])} at {data['rate_per_s']:.1f} records/s")
    counts = ", ".join(f"{n} {status}" for status, n in data["records"].items() if n)
    console.print(f"records: {counts or 'none yet'}")
    if data.get("owner"):
        console.print(f"owner: {data['owner']} (lease until {data['lease_until']})")
    if data.get("errors"):
        console.print("the payload does not fit the spinner's schema:")
    for problem in data.get("errors") or []:
        console.print(
            f"  {style.escape(problem['pointer'] or '/')}: {style.escape(problem['message'])}"
        )
    out.dict_table(
        data["steps"],
        ["step", "completed", "failed", "skipped", "waiting", "attempts", "median_ms"],
        "no steps",
    )
    for alert in data.get("alerts") or []:
        console.print(f"alert: {style.escape(_alert(alert))}")


def _alert(alert: dict[str, Any]) -> str:
    """One alert of a job, as `cxrun job` lists it."""
    to = f" to {alert['to']}" if alert["to"] else ""
    what = f"{alert['status']} (#{alert['n']}) through {alert['channel']}{to}"
    if alert["state"] == "sent":
        return f"{what}: sent {alert['sent_at']}"
    if alert["state"] == "failed":
        return f"{what}: FAILED after {alert['attempts']} attempt(s): {alert['error']}"
    return f"{what}: {alert['state']}"


def fires(fired: Sequence[Any]) -> None:
    """`cxrun schedule tick`: what each due schedule did."""
    out.lines([f.describe() for f in fired] or ["no schedule is due"])


def received(result: Any) -> None:
    """`cxrun trigger`: each job the event started; the errors of a payload that did not fit."""
    if result.duplicate:
        numbers = ", ".join(str(job.job) for job in result.jobs) or "none"
        out.lines(
            [f"event {result.event} with id {result.event_id} was received already (job {numbers})"]
        )
        return
    for job in result.jobs:
        if job.job in result.errors:
            out.error(
                [f"job {job.job} ({job.spinner}): the payload does not fit its schema"]
                + [f"{e['pointer'] or '/'}: {e['message']}" for e in result.errors[job.job]]
            )
        elif job.status == "queued":
            out.lines([f"job {job.job} ({job.spinner}) queued: run `cxrun runtime` to run it"])
        else:
            job_summary(job)


class JobProgress:
    """A job's progress on stderr: a bar on a terminal, a plain line per batch otherwise."""

    def __init__(self, enabled: bool = True) -> None:
        self.enabled = enabled
        self._bar: Any = None
        self._task: Any = None

    def start(self, job: Job) -> None:
        self.stop()  # one bar at a time: an event may run several jobs one after the other
        if not self.enabled:
            return
        console = style.console(stderr=True)
        if not console.is_terminal:
            out.note(f"job {job.job}: {job.spinner} v{job.version} started over {job.total} rows")
            return
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self._bar = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            "[red]{task.fields[failed]} failed[/]",
            TimeElapsedColumn(),
            "ETA",
            TimeRemainingColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task(
            f"job {job.job} {job.spinner}", total=job.total, failed=job.failed
        )
        self._bar.start()

    def update(self, job: Job) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            out.note(f"job {job.job}: {job.processed}/{job.total} rows, {job.failed} failed")
        else:
            self._bar.update(self._task, completed=job.processed, failed=job.failed)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
