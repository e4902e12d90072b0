"""A job's spool: each finished I/O result appended at once, outside the state lock."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

from cxrun.base import fastjson


class Spool:
    """`.cxrun/spool/job-N/B.jsonl`: one JSON line per finished call of the job's batch B.

    A result is written with one `write` on an O_APPEND descriptor the moment its call ends, so
    a process killed later loses none of them. The state ingests them with their batch, and the
    batch's file is removed once that batch is committed; a restart reads the files left.
    A restart may cut its batches differently (a small first batch, another rate): a file left
    by an earlier process is removed only once every row it holds is committed.
    """

    def __init__(self, state_dir: Path, job: int) -> None:
        self.folder = state_dir / "spool" / f"job-{job}"
        self._open: dict[str, int] = {}
        self._left: dict[str, int] = {}  # files an earlier process left: the last row in each

    def load(self) -> dict[tuple[int, int], dict[str, Any]]:
        """Finished results by (row, step position); a torn last line is ignored."""
        found: dict[tuple[int, int], dict[str, Any]] = {}
        self._left = {}
        for path in sorted(self.folder.glob("*.jsonl")) if self.folder.is_dir() else []:
            last = -1
            # Split on newlines only: a line holds U+2028 and the like as they are.
            for line in path.read_bytes().split(b"\n"):
                try:
                    entry = fastjson.loads(line)
                except ValueError:
                    continue
                row = int(entry["row"])
                found[(row, int(entry["pos"]))] = entry
                last = max(last, row)
            self._left[path.stem] = last
        return found

    def count(self) -> int:
        """How many finished results the files hold."""
        return len(self.load())

    def append(self, batch: str, entry: dict[str, Any]) -> bytes:
        """Append `entry` to batch's file; its JSON (the state takes it as it is)."""
        fd = self._open.get(batch)
        if fd is None:
            self.folder.mkdir(mode=0o700, parents=True, exist_ok=True)
            path = self.folder / f"{batch}.jsonl"
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            self._open[batch] = fd
        line = fastjson.dumps(entry)
        os.write(fd, line + b"\n")
        if batch in self._left:
            self._left[batch] = max(self._left[batch], int(entry["row"]))
        return line

    def drop(self, batch: str, through: int) -> list[Path]:
        """Forget a batch the state now holds (after it is committed), and the files left by
        an earlier process whose rows are all committed (`through`: the batch's last row;
        batches are committed in row order): the files to `remove` (megabytes each, so
        the caller removes them off its event loop)."""
        fd = self._open.pop(batch, None)
        if fd is not None:
            os.close(fd)
        gone = []
        for name, last in list(self._left.items()):
            if last <= through:
                del self._left[name]
                gone.append(self.folder / f"{name}.jsonl")
        if batch not in self._left:
            gone.append(self.folder / f"{batch}.jsonl")
        return gone

    @staticmethod
    def remove(files: list[Path]) -> None:
        for path in files:
            path.unlink(missing_ok=True)

    def close(self, remove: bool = False) -> None:
        for fd in self._open.values():
            os.close(fd)
        self._open.clear()
        if remove:
            shutil.rmtree(self.folder, ignore_errors=True)
