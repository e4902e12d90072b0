"""Events: `cxrun trigger NAME` starts a job for each published spinner that listens to NAME.

The payload (a JSON object) is checked against each listener's JSON Schema, formats included. A
payload that does not fit gives that spinner a job in `invalid_payload` holding the validation
errors, which runs nothing. Its top-level fields are the parameters ($name) of the trigger's
select, bound as values, never spliced into the SQL.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from cxrun.base.clock import utcnow
from cxrun.base.enums import JobStatus, Priority, Trigger
from cxrun.base.errors import CxrunError, NotFound
from cxrun.base.models import Job
from cxrun.spec.build import build
from cxrun.spec.model import EventTrigger
from cxrun.store import jobs as job_store
from cxrun.store import spinners as spinner_store
from cxrun.store import triggers as trigger_store
from cxrun.triggers.starts import Prepared, Start, alert_rules, create_job, selecting, take

if TYPE_CHECKING:
    import duckdb
    from jsonschema import FormatChecker
    from jsonschema.protocols import Validator

    from cxrun.store.context import Context

MAX_PAYLOAD = 1024 * 1024  # bytes
MAX_DEPTH = 32  # nested objects and arrays
MAX_ERRORS = 20  # validation errors kept for one job
_SEVERITY = (1, 6, 3)  # several jobs exit with the worst: failed, then unfinished, then partial

Errors = list[dict[str, str]]


# ---- the payload --------------------------------------------------------------------------


def read_payload(source: str | None, stdin: BinaryIO) -> dict[str, Any]:
    """The payload from a file, or from standard input (`-`); `{}` without one."""
    if source is None:
        return {}
    shown = "standard input" if source == "-" else source
    try:
        if source == "-":
            data = stdin.read(MAX_PAYLOAD + 1)
        else:
            with Path(source).open("rb") as file:
                data = file.read(MAX_PAYLOAD + 1)
    except OSError as exc:
        raise CxrunError(
            f"cannot read the payload from {shown}: {exc.strerror}", "check the file name"
        ) from None
    if len(data) > MAX_PAYLOAD:
        raise CxrunError(
            f"the payload ({shown}) is larger than 1 MiB; nothing was started",
            "send the ids and fields the spinners select on, not whole documents",
        )
    return parse_payload(data, shown)


def parse_payload(data: bytes, shown: str) -> dict[str, Any]:
    """A JSON object of at most MAX_DEPTH levels, or a CxrunError that says where it is wrong."""
    hint = "fix the payload and send it again; nothing was started"
    try:
        value = json.loads(data, parse_constant=_no_constant)
    except json.JSONDecodeError as exc:
        where = f"line {exc.lineno}, column {exc.colno}"
        message = f"the payload ({shown}) is not valid JSON: {exc.msg} at {where}"
        raise CxrunError(message, hint) from None
    except UnicodeDecodeError:
        raise CxrunError(f"the payload ({shown}) is not UTF-8 text", hint) from None
    except ValueError:  # json reads no integer of more than 4300 digits (sys.int_info)
        message = f"the payload ({shown}) is not valid JSON: a number has too many digits"
        raise CxrunError(message, hint) from None
    except RecursionError:
        value = None
        depth = MAX_DEPTH + 1
    else:
        depth = _depth(value)
    if depth > MAX_DEPTH:
        raise CxrunError(f"the payload ({shown}) is nested deeper than {MAX_DEPTH} levels", hint)
    if not isinstance(value, dict):
        kind = {list: "an array", str: "a string", type(None): "null"}.get(type(value), "a value")
        raise CxrunError(f"the payload ({shown}) must be a JSON object, not {kind}", hint)
    return value


def _no_constant(name: str) -> Any:
    raise json.JSONDecodeError(f"{name} is not a JSON value", name, 0)


def _depth(value: Any) -> int:
    """How deeply objects and arrays nest in `value` (a scalar is 0, `{}` is 1)."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, dict | list):
            deepest = max(deepest, depth)
            if deepest > MAX_DEPTH:
                break
            children = item.values() if isinstance(item, dict) else item
            stack.extend((child, depth + 1) for child in children)
    return deepest


def payload_errors(schema: dict[str, Any] | None, payload: dict[str, Any]) -> Errors:
    """Where and why the payload does not fit the schema (formats checked), as JSON pointers."""
    import jsonschema

    if schema is None:
        return []
    kind = jsonschema.validators.validator_for(schema, jsonschema.Draft202012Validator)
    validator = kind(schema, format_checker=_format_checker(kind))
    errors = [
        {"pointer": _pointer(error.absolute_path), "message": _short(error.message)}
        for error in validator.iter_errors(payload)
    ]
    return sorted(errors, key=lambda e: e["pointer"])[:MAX_ERRORS]


@functools.cache
def _format_checker(kind: type[Validator]) -> FormatChecker:
    """The draft's own format checks (from the validators installed beside jsonschema), with
    `email` and `idn-email` checked by email-validator rather than by looking for an `@`."""
    import jsonschema

    checker = jsonschema.FormatChecker(())
    checker.checkers = dict(kind.FORMAT_CHECKER.checkers)
    for name in ("email", "idn-email"):
        if name in checker.checkers:
            checker.checks(name, raises=ValueError)(_is_email)
    return checker


def _is_email(instance: object) -> bool:
    """An address whose syntax email-validator accepts; no DNS look-up is made."""
    if not isinstance(instance, str):
        return True
    from email_validator import validate_email

    validate_email(instance, check_deliverability=False)  # EmailNotValidError is a ValueError
    return True


def _pointer(path: Any) -> str:
    return "".join("/" + str(p).replace("~", "~0").replace("/", "~1") for p in path)


def _short(text: str, limit: int = 300) -> str:
    return text if len(text) <= limit else text[: limit - 1] + "…"


# ---- starting the jobs --------------------------------------------------------------------


@dataclass(frozen=True)
class Received:
    """What an event started: its jobs (each with its errors when its payload did not fit)."""

    event: str
    event_id: str | None
    jobs: list[Job]
    errors: dict[int, Errors] = field(default_factory=dict)
    duplicate: bool = False

    @property
    def exit_code(self) -> int:
        if self.errors:
            return 2
        codes = {job.status.exit_code for job in self.jobs if job.status != JobStatus.QUEUED}
        return next((code for code in _SEVERITY if code in codes), 0)

    def to_json(self) -> dict[str, Any]:
        return {
            "event": self.event,
            "id": self.event_id,
            "received_already": self.duplicate,
            "jobs": [
                {
                    **job.to_json(),
                    **({"errors": self.errors[job.job]} if job.job in self.errors else {}),
                }
                for job in self.jobs
            ],
        }


def listeners(ctx: Context, event: str) -> list[tuple[str, EventTrigger]]:
    """The published (latest), non-child spinners with a trigger for `event`."""
    with ctx.state.read() as con:
        versions = spinner_store.all_latest(con)
    found, known = [], set()
    for name, version in sorted(versions.items()):
        spinner = build(version.spec, name)
        known |= {t.event for t in spinner.triggers if isinstance(t, EventTrigger)}
        trigger = spinner.listens_to(event)
        if trigger is not None and not spinner.child:
            found.append((name, trigger))
    if not found:
        listened = ", ".join(sorted(known))
        raise NotFound(
            f"no published spinner listens to event '{event}'",
            f"events listened to: {listened}"
            if listened
            else f"add `triggers: [{{event: {event}}}]` to a spinner and publish it",
        )
    return found


def trigger(
    ctx: Context,
    event: str,
    payload: dict[str, Any],
    event_id: str | None = None,
    detach: bool = False,
    on_start: Callable[[Job], None] | None = None,
    on_progress: Callable[[Job], None] | None = None,
    now: datetime | None = None,
    stop: Callable[[], bool] = lambda: False,
    may_start: Callable[[str], None] = lambda spinner: None,
    priority: str | None = None,
) -> Received:
    """Start a job for each spinner listening to `event` (in one write transaction with the
    event itself), then run them here one after the other, or leave them queued (`detach`).
    `may_start(spinner)` is asked first for each listener, and may refuse by raising;
    `priority` overrides each spinner's for its job."""
    chosen = Priority.parse(priority)
    found = listeners(ctx, event)
    for name, _ in found:
        may_start(name)
    if event_id is not None:
        with ctx.state.read() as con:
            seen = _received(con, event, event_id)
        if seen is not None:
            return seen
    plans = [_plan(ctx, (event, event_id), payload, name, t, detach, chosen) for name, t in found]
    now = now or utcnow()
    with selecting(f"event '{event}'"), ctx.state.write() as con:
        seen = _received(con, event, event_id) if event_id is not None else None
        if seen is not None:
            return seen
        jobs = _create(con, ctx, event, event_id, payload, plans, now)
    errors = {job.job: e for job, (_, e) in zip(jobs, plans, strict=True) if e}
    if not detach:
        jobs = [
            job
            if job.job in errors or stop()  # a signal: the jobs not run yet stay queued
            else _run(ctx, job, prepared, on_start, on_progress, stop)
            for job, (prepared, _) in zip(jobs, plans, strict=True)
        ]
    return Received(event, event_id, jobs, errors)


def _run(
    ctx: Context,
    job: Job,
    prepared: Prepared,
    on_start: Callable[[Job], None] | None,
    on_progress: Callable[[Job], None] | None,
    stop: Callable[[], bool],
) -> Job:
    """Run a queued job here, unless a runtime has taken it meanwhile."""
    from cxrun.base import owners
    from cxrun.triggers.prepare import run_here

    owner = owners.new_owner("trigger")
    taken = take(ctx, job.job, owner)
    if taken is None:
        with ctx.state.read() as con:
            return job_store.get(con, job.job)
    return run_here(ctx, taken, prepared, owner, on_start, on_progress, stop)


def _plan(
    ctx: Context,
    received: tuple[str, str | None],
    payload: dict[str, Any],
    name: str,
    listener: EventTrigger,
    detach: bool,
    priority: Priority | None,
) -> tuple[Prepared, Errors]:
    """One listener's job, prepared, with the payload's validation errors against its schema
    (`received`: the event's name and id)."""
    from cxrun.triggers.prepare import prepare

    errors = payload_errors(listener.schema, payload)
    values = {k: json.dumps(v) if isinstance(v, dict | list) else v for k, v in payload.items()}
    event, event_id = received
    start = Start(
        Trigger.EVENT,
        None if errors else listener.select,
        values=values,
        params={"event": event, "event_id": event_id},
        priority=priority,
    )
    return prepare(ctx, name, start=start, here=not (detach or errors)), errors


def _create(
    con: duckdb.DuckDBPyConnection,
    ctx: Context,
    event: str,
    event_id: str | None,
    payload: dict[str, Any],
    plans: list[tuple[Prepared, Errors]],
    now: datetime,
) -> list[Job]:
    """The event and its jobs (queued, or invalid_payload); a plan limit refuses them all."""

    number = trigger_store.record_event(con, event, event_id, payload, now)
    jobs = []
    for prepared, errors in plans:
        if errors:
            job = _invalid(con, ctx, prepared, errors, now)
        else:
            job = create_job(con, ctx, prepared, JobStatus.QUEUED, now)
        trigger_store.link_job(con, number, job.job, prepared.name, errors or None)
        jobs.append(job)
    return jobs


def _invalid(
    con: duckdb.DuckDBPyConnection, ctx: Context, prepared: Prepared, errors: Errors, now: datetime
) -> Job:
    """A finished job over no rows that keeps why the payload did not fit (created queued, and
    ended in the same transaction: its alerts say why)."""
    job = job_store.create(
        con,
        prepared.name,
        prepared.number,
        str(Trigger.EVENT),
        prepared.table,
        ["false"],
        None,
        prepared.params,
        JobStatus.QUEUED,
        now,
        alert_rules=alert_rules(ctx, prepared),
    )
    first = errors[0]
    more = f" (and {len(errors) - 1} more)" if len(errors) > 1 else ""
    reason = f"payload does not fit the schema: {first['pointer'] or '/'}: {first['message']}"
    return job_store.finish(con, job.job, JobStatus.INVALID_PAYLOAD, reason + more, now)


def _received(con: duckdb.DuckDBPyConnection, event: str, event_id: str) -> Received | None:
    """The jobs of an event received before with this id, or None."""
    numbers = trigger_store.event_jobs(con, event, event_id)
    if numbers is None:
        return None
    jobs = [job_store.get(con, n) for n in numbers]
    return Received(event, event_id, jobs, duplicate=True)
