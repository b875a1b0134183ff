"""Review probes of the files of every bucket (MIXED): readers, compaction, odd bucket counts."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

import engine.ingest as ingest
from engine.db import Gateway, connect, init_schema
from engine.errors import InputError
from engine.history_store import MIXED, compact, every_line, manifest, read_parts
from engine.ingest import import_file, import_files
from tests.engine.test_history_store import CUSTOMERS, END, MORE_CUSTOMERS, PRODUCTS, STORES, _tx
from tests.engine.test_ingest import write


def _files(directory):
    return [
        write(directory, "a.csv", _tx(0, 60, 6)),
        write(directory, "b.csv", _tx(60, 120, 7) + "B59,C20,S01,2025-01-06T10:59:00,P1,3,17.97,0\n"),
        write(directory, "c.csv", _tx(120, 180, 8)),
    ]


def _dimensions(url, directory):
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
        import_file(url, kind, write(directory, f"{kind}.csv", text))


def _sqlite(directory, buckets=None):
    directory.mkdir(exist_ok=True)
    url = f"sqlite:///{directory / 'listwise.db'}"
    engine = connect(url)
    init_schema(engine, buckets=buckets)
    engine.dispose()
    _dimensions(url, directory)
    return url


_ORDER = ["customer_key", "day", "basket_key", "line_no"]


def _files_in_history_order(db):
    store = db.history_store()
    for name in manifest(db, anon=True)["file_name"]:
        part = read_parts([str(store.path(name))])
        want = part.sort(_ORDER, nulls_last=True, maintain_order=True)
        assert part.equals(want), f"{name} is not in history's order"


def test_compacted_files_are_in_history_order_when_held_runs_out_mid_import(tmp_path, monkeypatch):
    """The first file fits _HELD_LINES (a MIXED file), the next does not (a file a bucket): the
    compaction merges the bucket's own files (later) before the MIXED slices (earlier). The card
    holders' buckets are then fully sorted; the anonymous bucket's must be too."""
    url = _sqlite(tmp_path / "db")
    monkeypatch.setattr(ingest, "_HELD_LINES", 130)  # a.csv: 120 rows fit, b.csv does not
    import_files(url, "transactions", _files(tmp_path))
    with Gateway(url) as db:
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list()
        _files_in_history_order(db)


@pytest.mark.parametrize("buckets", [16, 8])
def test_mixed_files_with_fewer_buckets_read_as_the_buckets_own(tmp_path, monkeypatch, buckets):
    from engine.stages import store_sources

    unsplit, ref = _sqlite(tmp_path / "u", buckets), _sqlite(tmp_path / "r", buckets)
    with monkeypatch.context() as patched:
        patched.setattr(ingest, "compact", lambda *a, **k: None)
        patched.setattr(ingest, "_Compaction", lambda *a, **k: None)  # nor its last file's transaction
        import_files(unsplit, "transactions", _files(tmp_path))
    import_files(ref, "transactions", _files(tmp_path), max_parts=0)
    start = dt.date(2024, 1, 1)
    with Gateway(unsplit) as db, Gateway(ref) as other:
        files = manifest(db, anon=True)
        assert set(files["bucket"].to_list()) == {MIXED, None}
        # the files of every bucket as Arrow IPC, the anonymous bucket's as Parquet: read together
        assert {f.rsplit(".", 1)[1] for f in files.filter(pl.col("bucket") == MIXED)["file_name"]} == {"arrow"}
        assert {f.rsplit(".", 1)[1] for f in files.filter(pl.col("bucket").is_null())["file_name"]} == {"parquet"}
        assert every_line(db).equals(every_line(other))
        for n in (1, 2, buckets):
            for p in range(n):
                assert db.history(END, partition=(p, n)).equals(other.history(END, partition=(p, n)))
        for ours, theirs in zip(store_sources(db, 2, END, start), store_sources(other, 2, END, start)):
            assert ours.history().equals(theirs.history())
            for strata in ([0], [3, 5], list(range(64))):
                assert ours.strata_history(strata, END, start).equals(theirs.strata_history(strata, END, start))
    with Gateway(unsplit) as db:
        compact(db, max_parts=16)
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list()
        assert every_line(db).equals(every_line(Gateway(ref)))
        assert manifest(db).group_by("bucket").len()["len"].max() == 1  # the card holders' (the anonymous 3 stay)


def test_a_failed_multi_file_import_leaves_mixed_files_split_by_the_next_import(tmp_path):
    url = _sqlite(tmp_path / "db")
    files = _files(tmp_path)
    bad = write(tmp_path, "bad.csv", "nonsense\n1\n")
    with pytest.raises(InputError):
        import_files(url, "transactions", [*files[:2], bad])
    with Gateway(url) as db:
        left = manifest(db, anon=True)["bucket"].to_list()
    import_files(url, "transactions", files[2:])
    with Gateway(url) as db:
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list(), left


def test_the_compaction_merges_mixed_slices_in_the_order_written(tmp_path, monkeypatch):
    """Held lines running out mid-import: a bucket's MIXED slices (the first files) come before its own
    files (the later ones), so the stable sort by customer is the order (no full sort of the import)."""
    import engine.history_store as hs

    url = _sqlite(tmp_path / "db")
    monkeypatch.setattr(ingest, "_HELD_LINES", 130)
    merged = []
    real = hs._in_history_order
    monkeypatch.setattr(
        hs,
        "_in_history_order",
        lambda lines: (
            merged.append(lines.sort("customer_key", maintain_order=True).equals(lines.sort(_ORDER))) or real(lines)
        ),
    )
    import_files(url, "transactions", _files(tmp_path))
    assert len(merged) > 20 and all(merged)


def test_only_anonymous_lines_in_an_unsplit_file_are_no_purchase_history(tmp_path, monkeypatch, capsys):
    from engine.cli import main
    from tests.engine.test_history_store import HEADER

    url = _sqlite(tmp_path / "db")
    anon = [
        write(tmp_path, f"{n}.csv", HEADER + "".join(f"B{b},,S01,2025-01-0{day}T10:00:00,P1,1,5.99,0\n" for b in keys))
        for n, keys, day in (("x", range(10), 6), ("y", range(10, 20), 7))
    ]
    monkeypatch.setattr(ingest, "compact", lambda *a, **k: None)  # as a kill before the split leaves it
    monkeypatch.setattr(ingest, "_Compaction", lambda *a, **k: None)  # nor its last file's transaction
    import_files(url, "transactions", anon)
    out = tmp_path / "c.csv"
    assert main(["-q", "--database", url, "customers", "--as-of", "2025-02-01", "--out", str(out)]) == 1
    assert "no purchase history" in capsys.readouterr().err


def test_a_history_read_retries_after_a_compaction_split_the_files_it_listed(tmp_path, monkeypatch):
    import engine.history_store as hs

    url = _sqlite(tmp_path / "db")
    with monkeypatch.context() as patched:
        patched.setattr(ingest, "compact", lambda *a, **k: None)
        patched.setattr(ingest, "_Compaction", lambda *a, **k: None)  # nor its last file's transaction
        import_files(url, "transactions", _files(tmp_path))
    real, calls = hs.read_parts, []

    def racing(paths, *args, **kwargs):
        if not calls:
            calls.append(1)
            with Gateway(url) as other:
                compact(other, max_parts=16)  # commits between the listing and the read
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(hs, "read_parts", racing)
    with Gateway(url) as db:
        assert db.history(END).height > 0
