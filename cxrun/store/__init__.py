"""The store: the only package that speaks SQL to `.cxrun/state.duckdb`."""

from cxrun.store.db import State, transaction

__all__ = ["State", "transaction"]
