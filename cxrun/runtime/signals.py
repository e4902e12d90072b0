"""Requests to a job's owner as small files beside the state: cheap to watch while calls run."""

from __future__ import annotations

import os
from pathlib import Path


def _path(state_dir: Path, job: int) -> Path:
    return state_dir / "control" / f"job-{job}"


def ask(state_dir: Path, job: int, action: str) -> None:
    """Leave `action` (cancel, pause) for the job's owner; written atomically."""
    path = _path(state_dir, job)
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(action)
    os.replace(temporary, path)


def asked(state_dir: Path, job: int) -> str | None:
    try:
        return _path(state_dir, job).read_text().strip() or None
    except FileNotFoundError:
        return None


def clear(state_dir: Path, job: int) -> None:
    _path(state_dir, job).unlink(missing_ok=True)
