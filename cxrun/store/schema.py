"""The state file's schema, as numbered migrations applied in order on open."""

from __future__ import annotations

from cxrun.store.steps import BACKFILL

MIGRATIONS: list[str] = [
    # 1: tables, spinner versions, jobs, records, journey (timestamps are naive UTC)
    """
    CREATE TABLE cx_meta (key VARCHAR PRIMARY KEY, value VARCHAR);
    CREATE TABLE cx_tables (
        name VARCHAR, version INTEGER, physical VARCHAR, file VARCHAR, format VARCHAR,
        size BIGINT, mtime_ns BIGINT, digest VARCHAR, row_count BIGINT, columns JSON,
        loaded_at TIMESTAMP, current BOOLEAN
    );
    CREATE TABLE cx_spinners (
        spinner VARCHAR, version INTEGER, digest VARCHAR, spec JSON, source VARCHAR,
        published_at TIMESTAMP
    );
    CREATE SEQUENCE cx_job_ids START 1;
    CREATE TABLE cx_jobs (
        job INTEGER, spinner VARCHAR, version INTEGER, trigger VARCHAR, status VARCHAR,
        reason VARCHAR, table_name VARCHAR, table_version INTEGER, filtered BOOLEAN,
        total BIGINT, cursor BIGINT, completed BIGINT, failed BIGINT, skipped BIGINT,
        waiting BIGINT, cancelled BIGINT, params JSON,
        created_at TIMESTAMP, started_at TIMESTAMP, ended_at TIMESTAMP
    );
    CREATE TABLE cx_selections (job INTEGER, seq BIGINT, row BIGINT);
    CREATE TABLE cx_records (
        job INTEGER, seq BIGINT, key VARCHAR, status VARCHAR, tags VARCHAR[], outputs JSON,
        error VARCHAR, failed_step VARCHAR, attempts INTEGER,
        started_at TIMESTAMP, ended_at TIMESTAMP, duration_ms DOUBLE
    );
    CREATE TABLE cx_journey (
        job INTEGER, seq BIGINT, pos SMALLINT, step VARCHAR, attempt INTEGER, status VARCHAR,
        message VARCHAR, output JSON, error VARCHAR,
        started_at TIMESTAMP, ended_at TIMESTAMP, duration_ms DOUBLE
    );
    """,
]

MIGRATIONS.append(
    # 2: AI token usage and cost per job; the local outbox channel's messages
    """
    ALTER TABLE cx_jobs ADD COLUMN prompt_tokens BIGINT DEFAULT 0;
    ALTER TABLE cx_jobs ADD COLUMN completion_tokens BIGINT DEFAULT 0;
    ALTER TABLE cx_jobs ADD COLUMN cost DOUBLE DEFAULT 0;
    CREATE TABLE cx_outbox (
        job INTEGER, record VARCHAR, step VARCHAR, channel VARCHAR, recipient VARCHAR,
        subject VARCHAR, text VARCHAR, idempotency_key VARCHAR, created_at TIMESTAMP
    );
    """
)

MIGRATIONS.append(
    # 3: the token usage an AI provider reported for each attempt
    """
    ALTER TABLE cx_journey ADD COLUMN usage JSON;
    """
)

MIGRATIONS.append(
    # 4: who runs a job, and until when that claim holds without a heartbeat
    """
    ALTER TABLE cx_jobs ADD COLUMN owner VARCHAR;
    ALTER TABLE cx_jobs ADD COLUMN owner_pid INTEGER;
    ALTER TABLE cx_jobs ADD COLUMN owner_host VARCHAR;
    ALTER TABLE cx_jobs ADD COLUMN lease_until TIMESTAMP;
    CREATE TABLE cx_runtimes (
        id VARCHAR, pid INTEGER, host VARCHAR, started_at TIMESTAMP, heartbeat_at TIMESTAMP,
        stopped_at TIMESTAMP
    );
    """
)

MIGRATIONS.append(
    # 5: what an operator asked of a running job (cancel or pause), for its owner to carry out
    """
    ALTER TABLE cx_jobs ADD COLUMN control VARCHAR;
    """
)

MIGRATIONS.append(
    # 6: records parked on a timer, a window or a person (where, why, until when, the answer);
    # the call step a child spinner's journey entries belong to
    """
    ALTER TABLE cx_records ADD COLUMN park_pos INTEGER;
    ALTER TABLE cx_records ADD COLUMN park_kind VARCHAR;
    ALTER TABLE cx_records ADD COLUMN wake_at TIMESTAMP;
    ALTER TABLE cx_records ADD COLUMN decision VARCHAR;
    ALTER TABLE cx_records ADD COLUMN decided_at TIMESTAMP;
    ALTER TABLE cx_journey ADD COLUMN parent VARCHAR;
    """
)

MIGRATIONS.append(
    # 7: each due time of a schedule that fired (or was refused), so it fires once; events
    # received (by name and id, so a repeated one starts nothing) and the jobs they started,
    # with the validation errors of a payload that did not fit a spinner's schema
    """
    CREATE TABLE cx_fires (
        spinner VARCHAR, cron VARCHAR, timezone VARCHAR, due_at TIMESTAMP, job INTEGER,
        outcome VARCHAR, message VARCHAR, fired_at TIMESTAMP,
        UNIQUE (spinner, cron, timezone, due_at)
    );
    CREATE SEQUENCE cx_event_ids START 1;
    CREATE TABLE cx_events (
        event BIGINT, name VARCHAR, event_id VARCHAR, payload JSON, received_at TIMESTAMP,
        UNIQUE (name, event_id)
    );
    CREATE TABLE cx_event_jobs (event BIGINT, job INTEGER, spinner VARCHAR, errors JSON);
    """
)

MIGRATIONS.append(
    # 8: failed records to run again (a retry that whoever owns the job carries out); a job can
    # no longer be running without an owner, so one left so by an earlier version is queued
    """
    ALTER TABLE cx_records ADD COLUMN restart BOOLEAN;
    UPDATE cx_jobs SET status = 'queued' WHERE status = 'running' AND owner IS NULL;
    """
)

MIGRATIONS.append(
    # 9: API keys for `cxrun serve`: never the key itself, only the sha256 of the whole key and
    # its first characters (`lookup`) to find its row; what it may do, when it was last used
    """
    CREATE TABLE cx_api_keys (
        name VARCHAR PRIMARY KEY, lookup VARCHAR, hash VARCHAR, scopes VARCHAR[],
        spinners VARCHAR[], created_at TIMESTAMP, last_used_at TIMESTAMP, revoked_at TIMESTAMP
    );
    """
)

MIGRATIONS.append(
    # 10: each job's step counts and timings, kept as the journey is written (store/steps.py),
    # built here from the journey so far
    """
    CREATE TABLE cx_step_counts (
        job INTEGER, pos SMALLINT, step VARCHAR, status VARCHAR, latest BIGINT, attempts BIGINT,
        PRIMARY KEY (job, pos, status)
    );
    CREATE TABLE cx_step_times (
        job INTEGER, pos SMALLINT, ms DOUBLE, n BIGINT, PRIMARY KEY (job, pos, ms)
    );
    """
    + BACKFILL
)

MIGRATIONS.append(
    # 11: when a job was paused, so that a paused job's duration ends there
    """
    ALTER TABLE cx_jobs ADD COLUMN paused_at TIMESTAMP;
    """
)

MIGRATIONS.append(
    # 12: which queued jobs a runtime takes first (high, normal, low); jobs before it are normal
    """
    ALTER TABLE cx_jobs ADD COLUMN priority VARCHAR DEFAULT 'normal';
    UPDATE cx_jobs SET priority = 'normal' WHERE priority IS NULL;
    """
)

MIGRATIONS.append(
    # 13: schedules an operator paused or removed, keyed like a schedule (spinner, cron,
    # timezone): the state, since when, and the moment before which its due times never fire
    # (a removed schedule published again counts from that publish)
    """
    CREATE TABLE cx_schedule_states (
        spinner VARCHAR, cron VARCHAR, timezone VARCHAR, state VARCHAR, since TIMESTAMP,
        floor TIMESTAMP, PRIMARY KEY (spinner, cron, timezone)
    );
    """
)

MIGRATIONS.append(
    # 14: alerts: the rules a job was created with (cxrun.yaml's and its spinner's), the last
    # status they were matched against, and each alert to send
    """
    ALTER TABLE cx_jobs ADD COLUMN alert_rules JSON;
    ALTER TABLE cx_jobs ADD COLUMN alerted_status VARCHAR;
    CREATE SEQUENCE cx_alert_ids START 1;
    CREATE TABLE cx_alerts (
        id BIGINT DEFAULT nextval('cx_alert_ids'), job INTEGER, status VARCHAR, n INTEGER,
        channel VARCHAR, recipient VARCHAR,
        idempotency_key VARCHAR, state VARCHAR, attempts INTEGER DEFAULT 0, error VARCHAR,
        document JSON, retry JSON, created_at TIMESTAMP, sent_at TIMESTAMP,
        owner VARCHAR, owner_pid INTEGER, owner_host VARCHAR, lease_until TIMESTAMP
    );
    """
)

MIGRATIONS.append(
    # 15: null and repeated keys of each table version and key column, counted once (a version
    # never changes; counting reads the whole table) and read by every later job's checks
    """
    CREATE TABLE cx_key_counts (
        table_name VARCHAR, table_version INTEGER, key VARCHAR, nulls BIGINT, repeats BIGINT,
        duplicates VARCHAR[], PRIMARY KEY (table_name, table_version, key)
    );
    """
)

LATEST = len(MIGRATIONS)
