"""The store: the only package that speaks SQL to `.cxrun/state.duckdb` (schema, migrations,
the lock, jobs, records, journeys, tables and their loading, triggers, API keys), and the open
project's `Context`. It may import only the base."""

from cxrun.store.db import State, transaction

__all__ = ["State", "transaction"]
