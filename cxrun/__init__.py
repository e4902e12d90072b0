"""cxrun: a local job runner for per-row pipelines (spinners) over CSV/Parquet tables."""

__version__ = "0.1.0"
