"""The spool keeps a finished call until the state holds it, whatever batches a restart cuts."""

from __future__ import annotations

from cxrun.runtime.spool import Spool


def entry(row: int) -> dict[str, object]:
    return {"row": row, "pos": 0, "status": "completed", "output": f"answer {row}"}


def test_a_restart_with_smaller_batches_keeps_the_results_it_has_not_written_yet(tmp_path):
    earlier = Spool(tmp_path, 1)
    for row in range(256):  # a batch of 256 calls, killed before it was written
        earlier.append("b0", entry(row))
    earlier.close()

    restarted = Spool(tmp_path, 1)
    found = restarted.load()
    assert len(found) == 256
    Spool.remove(restarted.drop("b0", 15))  # the restart's first batch is rows 0..15: written

    again = Spool(tmp_path, 1).load()  # killed again now: nothing finished is lost
    assert set(again) == {(row, 0) for row in range(256)}

    restarted.append("b16", entry(300))
    Spool.remove(restarted.drop("b16", 255))  # rows up to 255 written: the earlier file goes
    assert not (restarted.folder / "b0.jsonl").exists()
    assert not (restarted.folder / "b16.jsonl").exists()


def test_a_batch_that_reuses_an_earlier_file_name_keeps_it_until_all_its_rows_are_written(
    tmp_path,
):
    earlier = Spool(tmp_path, 2)
    for row in (10, 11, 40):
        earlier.append("b10", entry(row))
    earlier.close()

    restarted = Spool(tmp_path, 2)
    restarted.load()
    restarted.append("b10", entry(12))
    Spool.remove(restarted.drop("b10", 20))
    assert set(Spool(tmp_path, 2).load()) == {(10, 0), (11, 0), (12, 0), (40, 0)}
    Spool.remove(restarted.drop("b21", 40))
    assert Spool(tmp_path, 2).load() == {}
