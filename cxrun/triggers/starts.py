"""Creating a job: how it starts (trigger, own select, parameter values), what it needs, and the
plan-limit check, all in the caller's write transaction so that a refusal leaves nothing behind."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from cxrun.base import notify, sql
from cxrun.base.clock import from_db, to_db, utcnow
from cxrun.base.enums import JobStatus, Priority, Trigger
from cxrun.base.errors import CxrunError
from cxrun.base.models import Job, iso
from cxrun.spec.model import Spinner
from cxrun.store import claims as claim_store
from cxrun.store import jobs as job_store
from cxrun.store import triggers as trigger_store
from cxrun.store.tables import TableInfo

if TYPE_CHECKING:
    import duckdb

    from cxrun.base.owners import Owner
    from cxrun.io.plugins import Plugins
    from cxrun.store.context import Context


@dataclass(frozen=True)
class Start:
    """How a job starts: its trigger and that trigger's own row filter, the values of the
    parameters ($name) the selects may use, and what the job keeps about its start."""

    trigger: Trigger = Trigger.MANUAL
    select: str | None = None
    values: Mapping[str, Any] = field(default_factory=dict)  # an event's payload fields
    # A schedule's due time and the one it fired before; otherwise now and the last job's time.
    times: tuple[datetime, datetime | None] | None = None
    params: Mapping[str, Any] = field(default_factory=dict)
    priority: Priority | None = None  # the run's own, over the spinner's


@dataclass(frozen=True)
class Prepared:
    """A job ready to be created: the published spinner, its checked table, the conditions."""

    name: str
    number: int
    spinner: Spinner
    table: TableInfo
    conditions: list[str]
    limit: int | None
    start: Start
    params: dict[str, Any]
    built: Plugins | None = None  # its providers and channels, when it is to run here


def create_job(
    con: duckdb.DuckDBPyConnection,
    ctx: Context,
    prepared: Prepared,
    status: JobStatus,
    now: datetime,
) -> Job:
    """Create a prepared job in the caller's write transaction, once the plan limits allow it
    (PlanLimitReached is raised before anything is written)."""
    from cxrun.triggers import limits

    bound = bindings(con, prepared, now)
    limits.check(
        con,
        ctx.project.limits,
        now,
        lambda: trigger_store.selected(
            con, prepared.table, prepared.conditions, prepared.limit, bound
        ),
    )
    shown = {k: iso(from_db(v)) if isinstance(v, datetime) else v for k, v in bound.items()}
    params = {**prepared.params, "parameters": shown} if bound else prepared.params
    trigger = str(prepared.start.trigger)
    return job_store.create(
        con,
        prepared.name,
        prepared.number,
        trigger,
        prepared.table,
        prepared.conditions,
        prepared.limit,
        params,
        status,
        now,
        bound,
        alert_rules=alert_rules(ctx, prepared),
        priority=prepared.start.priority or prepared.spinner.priority,
    )


def alert_rules(ctx: Context, prepared: Prepared) -> list[dict[str, Any]] | None:
    """The alert rules a new job keeps: cxrun.yaml's, then its spinner's."""
    return notify.to_json([*ctx.project.alert_rules, *prepared.spinner.notify])


def bindings(con: duckdb.DuckDBPyConnection, prepared: Prepared, now: datetime) -> dict[str, Any]:
    """The values of the parameters the job's conditions use (times as naive UTC TIMESTAMPs)."""
    start = prepared.start
    stamp, last = start.times or (now, trigger_store.last_job_at(con, prepared.name))
    values = {**start.values, "timestamp": to_db(stamp), "last_timestamp": last and to_db(last)}
    return sql.bound(con, prepared.conditions, values)


@contextmanager
def selecting(what: str) -> Iterator[None]:
    """A select that fails on the values bound to it is the user's error, not a crash."""
    import duckdb

    try:
        yield
    except (duckdb.DataError, duckdb.BinderException, duckdb.InvalidInputException) as exc:
        raise CxrunError(
            f"{what}: the rows cannot be selected: {sql.duckdb_message(exc)}",
            "check its select expressions against the values of their parameters",
        ) from None


def take(ctx: Context, job_id: int, owner: Owner) -> Job | None:
    """Claim a queued job for this process; None when someone else has taken it already."""
    from cxrun.base.owners import lease_until

    now = utcnow()
    with ctx.state.write() as con:
        until = lease_until(now)
        return claim_store.claim(con, job_id, owner, now, until, frozenset({JobStatus.QUEUED}))
