"""Rendering: rich tables and progress for people, plain JSON for scripts (the only rich user)."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from cxrun.base.models import Job, JourneyEntry, Record

if TYPE_CHECKING:
    from rich.console import Console
    from rich.table import Table

_STATUS_STYLE = {
    "completed": "green",
    "partial": "yellow",
    "failed": "red",
    "running": "cyan",
    "queued": "blue",
    "skipped": "dim",
    "pending": "dim",
    "waiting": "magenta",
    "paused": "magenta",
    "cancelled": "red",
    "timed_out": "red",
    "invalid_payload": "red",
    "refused": "red",
    "started": "green",
}


def _console(stderr: bool = False) -> Console:
    from rich.console import Console

    console = Console(stderr=stderr, highlight=False, soft_wrap=False)
    if not console.is_terminal:  # a file or a pipe: room for whole rows rather than 80 columns
        console.width = max(console.width, 160)
    return console


def _table(*columns: str, title: str | None = None) -> Table:
    from rich.table import Table

    table = Table(title=title, title_justify="left", header_style="bold")
    for column in columns:
        table.add_column(column, overflow="fold")
    return table


def _status(value: str) -> str:
    style = _STATUS_STYLE.get(value)
    return f"[{style}]{value}[/]" if style else value


def _when(moment: datetime | None) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S") if moment else ""


def _seconds(value: float | None) -> str:
    if value is None:
        return ""
    if value < 60:
        return f"{value:.1f}s" if value < 10 else f"{value:.0f}s"
    minutes, seconds = divmod(int(value), 60)
    return f"{minutes}m{seconds:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


def _bar(done: int, total: int, width: int = 8) -> str:
    filled = width if total == 0 else round(width * done / total)
    return "█" * filled + "░" * (width - filled) + f" {done}/{total}"


def _escape(value: Any) -> str:
    from rich.markup import escape

    if value is None:
        return ""
    text = value if isinstance(value, str) else json.dumps(value, default=str, ensure_ascii=False)
    return escape(text)


def _brief(values: dict[str, Any], limit: int = 60) -> str:
    text = ", ".join(f"{k}={v}" for k, v in values.items() if v not in (None, ""))
    return text if len(text) <= limit else text[: limit - 1] + "…"


def print_json(data: Any) -> None:
    """`data` as one line of JSON; NaN and infinite numbers, which JSON has no words for, are
    printed as null."""
    import math

    def finite(value: Any) -> Any:
        if isinstance(value, float) and not math.isfinite(value):
            return None
        if isinstance(value, dict):
            return {key: finite(item) for key, item in value.items()}
        if isinstance(value, list | tuple):
            return [finite(item) for item in value]
        return value

    try:
        text = json.dumps(data, default=str, ensure_ascii=False, allow_nan=False)
    except ValueError:  # a NaN or an infinity somewhere: only then is the data walked
        text = json.dumps(finite(data), default=str, ensure_ascii=False, allow_nan=False)
    sys.stdout.write(text + "\n")


def error(lines: Sequence[str]) -> None:
    first, *rest = lines
    sys.stderr.write(f"error: {first}\n" + "".join(f"  {line}\n" for line in rest))


def note(text: str) -> None:
    sys.stderr.write(text + "\n")


def lines(items: Sequence[str]) -> None:
    _console().print("\n".join(items), markup=False)


def jobs_table(jobs: Sequence[Job]) -> None:
    _console().print(_jobs(jobs) if jobs else "no jobs yet")


def watch(fetch: Callable[[], Sequence[Job]], interval: float, busy: type[Exception]) -> None:
    """Redraw the jobs table in place every `interval` seconds until Ctrl-C. A state that is
    busy for a moment keeps the last frame rather than failing."""
    import time

    from rich.live import Live

    with Live(_jobs(fetch()), console=_console(), auto_refresh=False) as live:
        while True:
            time.sleep(interval)
            try:
                live.update(_jobs(fetch()), refresh=True)
            except busy:
                continue


def _jobs(jobs: Sequence[Job]) -> Table:
    table = _table(
        "job",
        "spinner",
        "ver",
        "progress",
        "ok",
        "failed",
        "skipped",
        "status",
        "started",
        "ended",
        "duration",
        "tokens",
    )
    for job in jobs:
        table.add_row(
            str(job.job),
            job.spinner,
            str(job.version),
            _bar(job.processed - job.cancelled, job.total),  # rows worked on, not cancelled
            str(job.completed),
            str(job.failed) if job.failed else "0",
            str(job.skipped),
            _status(job.status),
            _when(job.started_at),
            _when(job.ended_at),
            _seconds(job.duration_s()),
            _tokens(job),
        )
    return table


def _tokens(job: Job) -> str:
    total = job.prompt_tokens + job.completion_tokens
    if not total:
        return ""
    cost = f" ${job.cost:.4f}" if job.cost else ""
    return f"{total:,}{cost}"


def job_summary(job: Job) -> None:
    parts = [
        f"job {job.job}",
        f"{job.spinner} v{job.version}",
        _status(job.status),
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
        text += f"\n{_escape(job.reason)}"
    if job.failed and job.status.finished:
        text += f": see them with `cxrun records {job.job} --status failed`"
    _console().print(text)


def records_table(records: Sequence[Record]) -> None:
    table = _table("record", "status", "tags", "outputs", "error", "metadata")
    for record in records:
        table.add_row(
            _escape(record.record),
            _status(record.status),
            _escape(", ".join(record.tags)),
            _escape(record.outputs or None),
            _escape(record.error),
            _escape(_brief(record.metadata)),
        )
    _console().print(table if records else "no records")


def journey_table(entries: Sequence[JourneyEntry]) -> None:
    table = _table("step", "try", "status", "message", "output", "error", "ms")
    for entry in entries:
        depth = entry.step.count(".") if entry.parent else 0  # a called child's step, nested
        label = entry.step.rsplit(".", 1)[-1] if depth else entry.step
        table.add_row(
            _escape("  " * (depth - 1) + "└ " + label if depth else label),
            str(entry.attempt),
            _status(entry.status),
            _escape(entry.message),
            _escape(entry.output),
            _escape(entry.error),
            "" if entry.duration_ms is None else f"{entry.duration_ms:.3f}",
        )
    _console().print(table if entries else "no steps yet")


def dict_table(rows: Sequence[dict[str, Any]], columns: Sequence[str], empty: str) -> None:
    table = _table(*columns)
    for row in rows:
        table.add_row(
            *(_escape(row.get(c)) if c != "status" else _status(str(row.get(c))) for c in columns)
        )
    _console().print(table if rows else empty)


def preview(names: Sequence[str], rows: Sequence[dict[str, Any]], title: str) -> None:
    table = _table(*names, title=title)
    for row in rows:
        table.add_row(*(_escape(row.get(name)) for name in names))
    _console().print(table)


def dry_run(preview: Any) -> None:
    """Each shown row's I/O calls as they would be sent, then the estimate."""
    console = _console()
    for row in preview.rows:
        console.print(f"[bold]record {_escape(row['record'])}[/]")
        for call in row["calls"]:
            target = f" via {call['target']}" if call["target"] else ""
            console.print(f"  {call['step']} ({call['kind']}{target})")
            for name, value in call.items():
                if name not in ("step", "kind", "target"):
                    console.print(f"    {name}: {_escape(value)}")
    estimate = preview.to_json()["estimate"]
    console.print(
        f"dry run: {preview.selected} rows selected, {len(preview.rows)} shown; nothing was sent "
        f"and no job was created.\nestimated AI tokens for all rows: about "
        f"{estimate['prompt_tokens']:,} prompt + {estimate['completion_tokens']:,} completion "
        f"(completion counts max_tokens, or 256 where it is not set)"
    )


def job_detail(data: dict[str, Any]) -> None:
    """`cxrun job JOB`: the summary, records by status, each step's results and timing."""
    console = _console()
    console.print(
        f"job {data['job']} · {data['spinner']} v{data['version']} · {_status(data['status'])}"
        f" · {data['processed']}/{data['total']} rows · {_seconds(data['duration_s'])}"
    )
    if data["reason"]:
        console.print(f"reason: {_escape(data['reason'])}")
    if data["eta_s"] is not None:
        console.print(f"ETA: {_seconds(data['eta_s'])} at {data['rate_per_s']:.1f} records/s")
    counts = ", ".join(f"{n} {status}" for status, n in data["records"].items() if n)
    console.print(f"records: {counts or 'none yet'}")
    if data.get("owner"):
        console.print(f"owner: {data['owner']} (lease until {data['lease_until']})")
    if data.get("errors"):
        console.print("the payload does not fit the spinner's schema:")
    for problem in data.get("errors") or []:
        console.print(f"  {_escape(problem['pointer'] or '/')}: {_escape(problem['message'])}")
    dict_table(
        data["steps"],
        ["step", "completed", "failed", "skipped", "waiting", "attempts", "median_ms"],
        "no steps",
    )


def live(data: dict[str, Any]) -> None:
    """`cxrun live`: jobs by status, the runtime, stalled jobs, recent failures per step."""
    console = _console()
    jobs = ", ".join(f"{n} {_status(status)}" for status, n in data["jobs"].items() if n)
    console.print(f"jobs: {jobs or 'none'}")
    runtime = data["runtime"]
    if runtime["up"]:
        ids = ", ".join(r["id"] for r in runtime["runtimes"])
        console.print(f"runtime: [green]up[/] ({_escape(ids)})")
    else:
        last = runtime["last_heartbeat_at"] or "never"
        console.print(f"runtime: [red]down[/] (last heartbeat: {last})")
    for warning in data["warnings"]:
        console.print(f"[yellow]attention[/]: {_escape(warning)}")
    if data["stalled"]:
        console.print(f"stalled (no progress for {data['stall_minutes']:g} min):")
        dict_table(data["stalled"], ["job", "spinner", "last_progress_at", "idle_s"], "")
    if data["failures"]:
        console.print(f"failures since {data['failures_since']}:")
        dict_table(data["failures"], ["spinner", "step", "failures", "records", "last_error"], "")
    else:
        console.print("no failures in the last hour")


def doctor(data: dict[str, Any]) -> None:
    """`cxrun doctor`: one line per check, with what to do about a failed one."""
    console = _console()
    for check in data["checks"]:
        mark = "[green]ok[/]  " if check["ok"] else "[red]FAIL[/]"
        who = f"{check['spinner']}: " if check.get("spinner") else ""
        console.print(f"{mark} {_escape(who + check['check'])}: {_escape(check['detail'])}")
        if not check["ok"] and check.get("fix"):
            console.print(f"      fix: {_escape(check['fix'])}")


def fires(fired: Sequence[Any]) -> None:
    """`cxrun schedule tick`: what each due schedule did."""
    lines([f.describe() for f in fired] or ["no schedule is due"])


def usage(data: dict[str, Any]) -> None:
    """`cxrun usage`: this month's jobs and records against the plan limits."""
    rows = [
        {"counts": name, "used": data[name]["used"], "limit": data[name]["limit"] or "none"}
        for name in ("jobs", "records")
    ]
    dict_table(rows, ["counts", "used", "limit"], "")
    _console().print(f"month {data['month']} (UTC); the counts reset on {data['resets_on']}")


def received(result: Any) -> None:
    """`cxrun trigger`: each job the event started; the errors of a payload that did not fit."""
    if result.duplicate:
        numbers = ", ".join(str(job.job) for job in result.jobs) or "none"
        lines(
            [f"event {result.event} with id {result.event_id} was received already (job {numbers})"]
        )
        return
    for job in result.jobs:
        if job.job in result.errors:
            error(
                [f"job {job.job} ({job.spinner}): the payload does not fit its schema"]
                + [f"{e['pointer'] or '/'}: {e['message']}" for e in result.errors[job.job]]
            )
        elif job.status == "queued":
            lines([f"job {job.job} ({job.spinner}) queued: run `cxrun runtime` to run it"])
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
        console = _console(stderr=True)
        if not console.is_terminal:
            note(f"job {job.job}: {job.spinner} v{job.version} started over {job.total} rows")
            return
        from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

        self._bar = Progress(
            "{task.description}",
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self._task = self._bar.add_task(f"job {job.job} {job.spinner}", total=job.total)
        self._bar.start()

    def update(self, job: Job) -> None:
        if not self.enabled:
            return
        if self._bar is None:
            note(f"job {job.job}: {job.processed}/{job.total} rows, {job.failed} failed")
        else:
            self._bar.update(self._task, completed=job.processed)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None
