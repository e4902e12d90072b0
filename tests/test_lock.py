"""The state lock: readers share, a writer is alone, a bounded wait ends in a clear error."""

from __future__ import annotations

import os

import pytest

from cxrun.base.errors import StateBusy
from cxrun.store.lock import StateLock


class FakeClock:
    """Advances by `step` seconds at every reading; sleeping only records the wish."""

    def __init__(self, step: float = 0.05) -> None:
        self.now, self.step, self.slept = 0.0, step, 0.0

    def __call__(self) -> float:
        self.now += self.step
        return self.now

    def sleep(self, seconds: float) -> None:
        self.slept += seconds


def lock(tmp_path, timeout: float = 1.0) -> tuple[StateLock, FakeClock]:
    clock = FakeClock()
    return StateLock(tmp_path / "state.lock", timeout, clock=clock, sleep=clock.sleep), clock


def test_readers_share_the_lock(tmp_path):
    first, _ = lock(tmp_path)
    second, _ = lock(tmp_path)
    with first.hold(exclusive=False), second.hold(exclusive=False):
        pass


def test_a_writer_excludes_others_and_the_error_names_its_pid(tmp_path):
    writer, _ = lock(tmp_path)
    reader, clock = lock(tmp_path, timeout=0.5)
    with writer.hold(exclusive=True), pytest.raises(StateBusy) as caught:
        with reader.hold(exclusive=False):
            pass
    assert f"held by PID {os.getpid()}" in caught.value.message
    assert caught.value.exit_code == 5
    assert clock.slept > 0
    with reader.hold(exclusive=True):  # free again once the writer is done
        pass


def test_a_reader_blocks_a_writer_until_the_wait_runs_out(tmp_path):
    reader, _ = lock(tmp_path)
    writer, _ = lock(tmp_path, timeout=0.2)
    with reader.hold(exclusive=False), pytest.raises(StateBusy), writer.hold(exclusive=True):
        pass


def test_the_lock_is_reentrant_but_never_upgraded(tmp_path):
    state_lock, _ = lock(tmp_path)
    with state_lock.hold(exclusive=True), state_lock.hold(exclusive=False):
        pass
    with state_lock.hold(exclusive=False), pytest.raises(RuntimeError):
        with state_lock.hold(exclusive=True):
            pass
    other, _ = lock(tmp_path)
    with other.hold(exclusive=True):  # everything above was released
        pass
