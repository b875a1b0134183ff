"""kill -9 of a real `listwise batch run` at known points: a plain `listwise batch run` then
completes the same period with the lists, offers and codes an uninterrupted run writes.

The chain has its first batch done; the run under test is the second period's, taken by a
plain `batch run` (no date). The kill comes from engine/batch.py's fault points
(LISTWISE_FAULT=batch-...: a SIGKILL the process sends itself, so the point is exact). The
truth is the same run, uninterrupted, on another copy of the same database. (A kill right after the
period is claimed, `batch-after-start`, leaves what `batch-after-profile` leaves; the
in-process test of it is tests/engine/test_batch_lifecycle.py.)
"""

from __future__ import annotations

import signal

import pytest

from tests.faults.conftest import RUN, SECOND_PERIOD, cli, copy_database, dump_batches


@pytest.mark.slow  # two CLI batch runs each: ~20 s apiece under load
@pytest.mark.parametrize(
    "fault",
    [
        "batch-after-profile",  # profiles computed, nothing written
        "batch-mid-write",  # lists written in the open transaction, their offers not
        "batch-before-commit",  # everything written and the row set 'done', not committed
        "batch-after-commit",  # committed; summary.json not written
    ],
)
def test_a_killed_batch_rerun_gives_the_uninterrupted_batch(request, second_batch, tmp_path, fault):
    kind, base, expected = second_batch
    url = copy_database(request, base, tmp_path)
    before = dump_batches(url)
    killed = cli(url, *RUN, "--out", str(tmp_path / "out"), cwd=tmp_path, fault=fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    after_kill = dump_batches(url)
    if fault == "batch-after-commit":
        assert after_kill == expected  # the kill came after the commit
    else:
        # nothing of the second batch but its claimed 'running' row: the first batch untouched
        assert after_kill["batches"] == before["batches"] + [
            (expected["batches"][1][0], SECOND_PERIOD, "2025-07-14", "running")
        ]
        assert {k: v for k, v in after_kill.items() if k not in ("batches", "sequences", "summaries")} == {
            k: v for k, v in before.items() if k not in ("batches", "sequences", "summaries")
        }

    if fault == "batch-after-commit":
        # the period is done (a plain run would move on to the next one): asking for it again returns the
        # stored batch, writes its summary.json and never rewrites it
        again = cli(url, *RUN, "--period-start", SECOND_PERIOD, "--out", str(tmp_path / "out"), cwd=tmp_path)
    else:
        again = cli(url, *RUN, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert f"period {SECOND_PERIOD}" in again.stdout
    assert dump_batches(url) == expected  # same batch id, lists, codes, offers, needs, summary
    assert (tmp_path / "out" / SECOND_PERIOD / "summary.json").is_file()
