"""kill -9 during a partition's stage (engine.stages, LISTWISE_FAULT=stage-partition; its offers stage,
engine.batch.partition_offers: stage-offers): the database keeps
nothing of the killed batch but its claimed row, and a plain re-run completes the uninterrupted batch.

With one partition the stage runs in the command's own process, so the command itself dies; with four
it runs in the local process pool, whose killed worker fails the command with one line (the batch row
'failed'). Either way the re-run, with four partitions, writes what the plain one-partition run wrote.
"""

from __future__ import annotations

import signal

import pytest

from tests.faults.conftest import RUN, SECOND_PERIOD, cli, copy_database, dump_batches


@pytest.mark.slow  # two CLI batch runs each
@pytest.mark.parametrize(
    ("partitions", "fault"), [("1", "stage-partition"), ("4", "stage-partition"), ("4", "stage-offers")]
)
def test_a_kill_in_a_partition_stage_then_a_rerun_gives_the_uninterrupted_batch(
    request, second_batch, tmp_path, partitions, fault
):
    kind, base, expected = second_batch
    url = copy_database(request, base, tmp_path)
    before = dump_batches(url)
    scale = ("--partitions", partitions, "--executor", "local")
    killed = cli(url, *RUN, *scale, "--out", str(tmp_path / "out"), cwd=tmp_path, fault=fault)
    after_kill = dump_batches(url)
    if partitions == "1":
        assert killed.returncode == -signal.SIGKILL, killed.stderr
        status = "running"
    else:  # a worker process died: the command says so in one line and marks its batch failed
        assert killed.returncode == 1, killed.stderr
        assert "a partition's process died" in killed.stderr and len(killed.stderr.strip().splitlines()) == 1
        status = "failed"
    assert after_kill["batches"] == [
        *before["batches"],
        (expected["batches"][1][0], SECOND_PERIOD, "2025-07-14", status),
    ]
    untouched = ("batches", "sequences", "summaries")
    assert {k: v for k, v in after_kill.items() if k not in untouched} == {
        k: v for k, v in before.items() if k not in untouched
    }

    again = cli(url, *RUN, "--partitions", "4", "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr
    assert dump_batches(url) == expected  # same batch id, lists, codes, offers, needs, summary
