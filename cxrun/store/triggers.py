"""What starts jobs besides an operator: schedule fires and the schedules paused or removed,
events received, and this month's usage."""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any, NamedTuple

from cxrun.base.clock import from_db, to_db
from cxrun.base.sql import embed
from cxrun.store.tables import ROW, TableInfo

if TYPE_CHECKING:
    import duckdb


def selected(
    con: duckdb.DuckDBPyConnection,
    table: TableInfo,
    conditions: list[str],
    limit: int | None,
    bindings: dict[str, Any],
) -> int:
    """How many rows a job with these conditions would take (as `jobs.create` selects them)."""
    if not conditions:
        return table.rows if limit is None else min(limit, table.rows)
    where = " AND ".join(embed(c, con) for c in conditions)
    row = con.execute(
        f"SELECT count(*) FROM (SELECT {ROW} FROM {table.sql} WHERE {where} LIMIT $_cx_limit)",
        {**bindings, "_cx_limit": limit},
    ).fetchone()
    return int(row[0]) if row else 0


def last_job_at(con: duckdb.DuckDBPyConnection, spinner: str) -> datetime | None:
    """When the spinner's latest job was created (what `$last_timestamp` is for a manual run)."""
    row = con.execute("SELECT max(created_at) FROM cx_jobs WHERE spinner = ?", [spinner]).fetchone()
    return from_db(row[0]) if row else None


def month_usage(con: duckdb.DuckDBPyConnection, start: datetime, end: datetime) -> tuple[int, int]:
    """Jobs created in [start, end) and the records they selected; invalid payloads are free."""
    row = con.execute(
        "SELECT count(*), coalesce(sum(total), 0) FROM cx_jobs WHERE created_at >= ? "
        "AND created_at < ? AND status <> 'invalid_payload'",
        [to_db(start), to_db(end)],
    ).fetchone()
    return (int(row[0]), int(row[1])) if row else (0, 0)


# ---- schedules ----------------------------------------------------------------------------


def last_fire(
    con: duckdb.DuckDBPyConnection, spinner: str, cron: str, timezone: str, started: bool = False
) -> tuple[datetime, int | None, str] | None:
    """The latest due time of a schedule that fired (or, with `started`, that started a job):
    (due time, job, outcome)."""
    row = con.execute(
        "SELECT due_at, job, outcome FROM cx_fires WHERE spinner = ? AND cron = ? AND "
        "timezone = ? AND (NOT ? OR outcome = 'started') ORDER BY due_at DESC LIMIT 1",
        [spinner, cron, timezone, started],
    ).fetchone()
    if not row:
        return None
    due = from_db(row[0])
    assert due is not None
    return due, row[1], row[2]


def record_fire(
    con: duckdb.DuckDBPyConnection,
    spinner: str,
    schedule: tuple[str, str],
    due: datetime,
    outcome: tuple[int | None, str, str | None],
    now: datetime,
) -> None:
    """A due time of (cron, timezone) fired: its job, outcome (started, refused) and message."""
    job, status, message = outcome
    con.execute(
        "INSERT INTO cx_fires VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        [spinner, *schedule, to_db(due), job, status, message, to_db(now)],
    )


class ScheduleState(NamedTuple):
    """What an operator made of a schedule: `paused` or `removed` (or `active` again) since a
    moment; due times at or before `floor` never fire (a removal lifted by a publish)."""

    state: str
    since: datetime
    floor: datetime | None


def schedule_states(con: duckdb.DuckDBPyConnection) -> dict[tuple[str, str, str], ScheduleState]:
    """The schedules an operator acted on, by (spinner, cron, timezone)."""
    rows = con.execute(
        "SELECT spinner, cron, timezone, state, since, floor FROM cx_schedule_states"
    ).fetchall()
    return {
        (name, cron, zone): ScheduleState(state, _moment(since), from_db(floor))
        for name, cron, zone, state, since, floor in rows
    }


def schedule_state(
    con: duckdb.DuckDBPyConnection, key: tuple[str, str, str]
) -> ScheduleState | None:
    """What an operator made of the schedule (spinner, cron, timezone); None: nothing."""
    row = con.execute(
        "SELECT state, since, floor FROM cx_schedule_states WHERE spinner = ? AND cron = ? "
        "AND timezone = ?",
        list(key),
    ).fetchone()
    return None if row is None else ScheduleState(row[0], _moment(row[1]), from_db(row[2]))


def _moment(value: Any) -> datetime:
    moment = from_db(value)
    assert moment is not None
    return moment


def set_schedule_state(
    con: duckdb.DuckDBPyConnection, key: tuple[str, str, str], state: str, since: datetime
) -> None:
    """The schedule (spinner, cron, timezone) is `state` from `since` on (its floor is kept)."""
    con.execute(
        "INSERT INTO cx_schedule_states VALUES (?, ?, ?, ?, ?, NULL) "
        "ON CONFLICT (spinner, cron, timezone) DO UPDATE SET state = excluded.state, "
        "since = excluded.since",
        [*key, state, to_db(since)],
    )


def lift_removed(
    con: duckdb.DuckDBPyConnection, spinner: str, schedules: list[tuple[str, str]], at: datetime
) -> None:
    """A version published `at` has these (cron, timezone) schedules: those removed are active
    again, counting from `at` (the due times before it never fire)."""
    for cron, zone in schedules:
        con.execute(
            "UPDATE cx_schedule_states SET state = 'active', since = $at, floor = $at "
            "WHERE spinner = $spinner AND cron = $cron AND timezone = $zone "
            "AND state = 'removed'",
            {"at": to_db(at), "spinner": spinner, "cron": cron, "zone": zone},
        )


# ---- events -------------------------------------------------------------------------------


def event_jobs(con: duckdb.DuckDBPyConnection, name: str, event_id: str) -> list[int] | None:
    """The jobs an event with this name and id started, or None if it was never received."""
    rows = con.execute(
        "SELECT e.event, j.job FROM cx_events AS e LEFT JOIN cx_event_jobs AS j "
        "ON j.event = e.event WHERE e.name = ? AND e.event_id = ? ORDER BY j.job",
        [name, event_id],
    ).fetchall()
    if not rows:
        return None
    return [int(job) for _, job in rows if job is not None]


def record_event(
    con: duckdb.DuckDBPyConnection,
    name: str,
    event_id: str | None,
    payload: dict[str, Any],
    now: datetime,
) -> int:
    row = con.execute("SELECT nextval('cx_event_ids')").fetchone()
    event = int(row[0]) if row else 0
    con.execute(
        "INSERT INTO cx_events VALUES (?, ?, ?, ?, ?)",
        [event, name, event_id, json.dumps(payload), to_db(now)],
    )
    return event


def link_job(
    con: duckdb.DuckDBPyConnection,
    event: int,
    job: int,
    spinner: str,
    errors: list[dict[str, str]] | None,
) -> None:
    """A job an event started; `errors` when its payload did not fit the spinner's schema."""
    con.execute(
        "INSERT INTO cx_event_jobs VALUES (?, ?, ?, ?)",
        [event, job, spinner, None if errors is None else json.dumps(errors)],
    )


def payload_errors(con: duckdb.DuckDBPyConnection, job: int) -> list[dict[str, str]] | None:
    """Why an event's payload did not fit the job's spinner, or None."""
    row = con.execute(
        "SELECT errors FROM cx_event_jobs WHERE job = ? AND errors IS NOT NULL", [job]
    ).fetchone()
    if not row:
        return None
    errors: list[dict[str, str]] = json.loads(row[0])
    return errors
