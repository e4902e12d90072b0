"""A job's spool: each finished I/O result appended at once, outside the state lock."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any


class Spool:
    """`.cxrun/spool/job-N.jsonl`: one JSON line per finished call, read back after a restart.

    A result is written with one `write` on an O_APPEND descriptor the moment its call ends, so
    a process killed later loses none of them; the state ingests them with the batch they belong
    to, and the spool is emptied once that batch is committed.
    """

    def __init__(self, state_dir: Path, job: int) -> None:
        self.path = state_dir / "spool" / f"job-{job}.jsonl"
        self._fd: int | None = None

    def load(self) -> dict[tuple[int, int], dict[str, Any]]:
        """Finished results by (row, step position); a torn last line is ignored."""
        found: dict[tuple[int, int], dict[str, Any]] = {}
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return found
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:
                continue
            found[(int(entry["row"]), int(entry["pos"]))] = entry
        return found

    def append(self, entry: dict[str, Any]) -> None:
        if self._fd is None:
            self.path.parent.mkdir(mode=0o700, exist_ok=True)
            self._fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        os.write(self._fd, (json.dumps(entry, separators=(",", ":")) + "\n").encode())

    def clear(self) -> None:
        """Forget what the state now holds (after a batch is committed)."""
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
        elif self.path.exists():
            os.truncate(self.path, 0)

    def close(self, remove: bool = False) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
        if remove:
            self.path.unlink(missing_ok=True)
