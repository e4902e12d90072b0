"""Seeded chaos sequences of real cxrun processes (tests/chaos.py): every message goes out once.

Runs CHAOS_SEQUENCES sequences (default 30, seeds 1 to N), CHAOS_WORKERS at a time (default
3), and fails listing every failing seed with its operations and the invariants it broke;
`CHAOS_SEED=N` runs that one seed only. The projects, logs and server requests of the failed
sequences are kept under the test's tmp_path (printed in the failure).
"""

from __future__ import annotations

import os
import time
from pathlib import Path

import chaos
import pytest

SEQUENCES = int(os.environ.get("CHAOS_SEQUENCES", "30"))
WORKERS = int(os.environ.get("CHAOS_WORKERS", "3"))
CI = chaos.Settings(operations=7, rows=40)


def _seeds() -> list[int]:
    seed = os.environ.get("CHAOS_SEED")
    return [int(seed)] if seed else list(range(1, SEQUENCES + 1))


@pytest.mark.timeout(1800)
def test_every_message_goes_out_once_whatever_the_processes_go_through(tmp_path: Path) -> None:
    began = time.monotonic()
    outcomes = chaos.run_many(_seeds(), CI, workers=WORKERS, keep=tmp_path)
    wall = time.monotonic() - began
    failed = [outcome for outcome in outcomes if not outcome.ok]
    summary = [
        f"{len(failed)} of {len(outcomes)} sequences failed in {wall:.0f}s (kept in {tmp_path}):"
    ]
    summary += [f"  seed {o.seed}: {', '.join(o.failed_invariants())}" for o in failed]
    if failed:
        pytest.fail("\n".join(summary + [""] + [o.report() for o in failed]), pytrace=False)
