"""A batch's partitions that find their part files replaced by a compaction list the store again.

A compaction (`listwise history compact`, or an import's) swaps a bucket's files in one transaction
and deletes the old ones. A partition that was sent the old paths must neither fail the batch nor
read half of a swap: its read raises `HistoryMoved`, and the stages list the store again and rerun.
"""

from __future__ import annotations

import polars as pl
import pytest
from polars.testing import assert_frame_equal

import engine.stages as stages
from engine.config import ScaleSettings, Settings
from engine.db import Gateway
from engine.history_store import compact
from engine.ingest import import_files
from engine.stages import HistoryMoved, TotalsWindow, partition_totals, store_sources, store_totals, store_value
from tests.engine.test_history_store import END, _tx, chain, write  # noqa: F401 - chain: the fixture

WINDOW = TotalsWindow(END, 52, 365)


def test_a_partition_sent_replaced_files_says_so_and_the_stages_list_the_store_again(
    chain,  # noqa: F811 - the fixture imported above
    tmp_path,
    monkeypatch,
):
    settings = Settings(scale=ScaleSettings(partitions=4))
    with Gateway(chain) as db:
        if not db.sqlite:  # CI time: the listing and the rerun are the stages', whichever database holds the manifest
            pytest.skip("the rerun logic is the same on PostgreSQL (tests/engine/test_history_store.py reads it there)")
        stale = store_sources(db, 4, END, WINDOW.start)
        assert compact(db, max_parts=1).buckets > 0  # three files a bucket become one, the old ones deleted
        with pytest.raises(HistoryMoved, match="replaced while it was read"):
            partition_totals(next(s for s in stale if s.paths), WINDOW)

        # between the stages' listing and their reads, an import adds a part to every bucket and compacts:
        # the rerun reads the new files, and sees what a run after the import sees
        listed, calls = stages.store_sources, []

        def listing_then_compaction(*args, **kwargs):
            sources = listed(*args, **kwargs)
            if not calls:
                import_files(db, "transactions", [write(tmp_path, "d.csv", _tx(200, 260, 9))], max_parts=1)
            calls.append(1)
            return sources

        monkeypatch.setattr(stages, "store_sources", listing_then_compaction)
        spend, counts = store_totals(db, settings, WINDOW)
        assert len(calls) == 2  # listed, a read found a replaced file, listed again
        calls.clear()
        value = store_value(db, None, settings, END)
        assert len(calls) == 1  # nothing replaced this time
        monkeypatch.undo()
        truth_spend, truth_counts = store_totals(db, settings, WINDOW)
        assert_frame_equal(spend, truth_spend)
        assert_frame_equal(counts.sort(pl.all()), truth_counts.sort(pl.all()))
        assert_frame_equal(value, store_value(db, None, settings, END))
        assert spend["spend_cents"].sum() > 0 and value.height == spend.height
