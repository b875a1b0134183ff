"""kill -9 of a real `listwise import transactions` at known points: a plain re-run gives the
database an uninterrupted import gives (nothing lost, nothing duplicated).

The kill comes from engine/faults.py's `fault_point` hook (LISTWISE_FAULT=point[#n]): a SIGKILL
the process sends itself mid-write, so the point is exact and no timing is guessed.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.db import Gateway, connect
from engine.history_store import every_line
from engine.ingest import import_file, import_files
from tests.conftest import fresh_database
from tests.engine.test_ingest import CUSTOMERS, PRODUCTS, STORES

ROOT = Path(__file__).resolve().parents[2]
HEADER = "basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"


def _part(first: int, last: int, day: int) -> str:
    rows = []
    for b in range(first, last):
        customer = ("C1", "C2", "")[b % 3]
        for line in range(1 + b % 4):
            sku, price = (("P1", "5.99"), ("P2", "3.49"))[line % 2]
            rows.append(
                f"B{b},{customer},S0{1 + b % 2},2025-01-{day:02d}T{8 + b % 10:02d}:{b % 60:02d}:00,{sku},1,{price},0\n"
            )
    return HEADER + "".join(rows)


def _files(tmp_path: Path) -> list[Path]:
    """Two parts; basket B39 is split across them (its second part adds two lines)."""
    a = tmp_path / "part-1.csv"
    a.write_text(_part(0, 40, 6))
    b = tmp_path / "part-2.csv"
    b.write_text(
        _part(40, 80, 7) + "B39,C1,S02,2025-01-06T17:39:00,P2,2,6.98,0\nB39,C1,S02,2025-01-06T17:39:00,P1,1,5.99,0.50\n"
    )
    return [a, b]


def _load_dimensions(url: str, tmp_path: Path) -> None:
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(text)
        import_file(url, kind, path)


def dump(url: str) -> dict[str, list[tuple]]:
    """Every row the import writes (the `imports` log aside), in a stable order; keys included."""
    queries = {
        "baskets": "SELECT basket_key, store_id, basket_id, customer_key, CAST(ts AS TEXT), CAST(day AS TEXT), "
        "source, line_count, line_sum FROM baskets ORDER BY basket_key",
        "sequences": "SELECT name, next_value FROM sequences WHERE name = 'baskets'",
    }
    engine = connect(url)
    with engine.connect() as conn:
        out = {name: [tuple(r) for r in conn.execute(sa.text(sql))] for name, sql in queries.items()}
    engine.dispose()
    with Gateway(url) as db:  # the lines history holds: the committed Parquet parts (and basket_lines)
        out["basket_lines"] = every_line(db).rows()
    return out


def _cli(url: str, files: list[Path], fault: str | None) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("LISTWISE_FAULT", None)
    if fault:
        env["LISTWISE_FAULT"] = fault
    return subprocess.run(
        [sys.executable, "-m", "engine.cli", "-q", "--database", url, "import", "transactions", *map(str, files)],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=ROOT,
    )


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def reference(request, tmp_path_factory):
    """(kind, dump of an uninterrupted import of the two parts), once per database kind."""
    tmp = tmp_path_factory.mktemp("reference")
    url = fresh_database(request, tmp, request.param)
    _load_dimensions(url, tmp)
    import_files(url, "transactions", _files(tmp))
    return request.param, dump(url)


@pytest.mark.slow  # three CLI processes each: ~4 s apiece under load
@pytest.mark.parametrize(
    "fault",
    [
        "before-commit#1",  # the first part written, not committed
        "after-parquet#1",  # the first part's Parquet files written, their manifest rows not
        "after-commit#1",  # between the parts: the first committed, its log line not written
        "after-baskets#2",  # the second part's new baskets written, their lines not (split basket B39 updated)
    ],
)
def test_a_killed_import_rerun_gives_the_uninterrupted_database(request, reference, tmp_path, fault):
    kind, expected = reference
    url = fresh_database(request, tmp_path, kind)
    _load_dimensions(url, tmp_path)
    files = _files(tmp_path)
    killed = _cli(url, files, fault)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert dump(url) != expected  # the kill did stop it short
    again = _cli(url, files, None)
    assert again.returncode == 0, again.stderr
    assert dump(url) == expected
    assert _cli(url, files, None).returncode == 0  # and a third run changes nothing
    assert dump(url) == expected


@pytest.mark.slow
def test_a_kill_between_the_files_leaves_a_file_of_every_bucket_that_reads_as_its_buckets_and_the_rerun_splits(
    request, reference, tmp_path
):
    """An import of several files writes one part file of every bucket a file (MIXED) and splits them at
    its end: killed between the files, the first file's is history, read as its buckets' files."""
    import datetime as dt

    from engine.history_store import MIXED, manifest

    kind, expected = reference
    url = fresh_database(request, tmp_path, kind)
    _load_dimensions(url, tmp_path)
    files = _files(tmp_path)
    (tmp_path / "single").mkdir()
    single = fresh_database(request, tmp_path / "single", kind)  # the first file alone, one file a bucket
    _load_dimensions(single, tmp_path / "single")
    import_files(single, "transactions", files[:1])
    killed = _cli(url, files, "after-commit#1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    end = dt.date(2026, 1, 1)
    with Gateway(url) as db, Gateway(single) as one:
        assert sorted(manifest(db, anon=True)["bucket"].to_list(), key=str) == [MIXED, None]  # anonymous: their own
        assert every_line(db).equals(every_line(one))
        for p in range(4):
            assert db.history(end, partition=(p, 4)).equals(one.history(end, partition=(p, 4)))
    again = _cli(url, files, None)
    assert again.returncode == 0, again.stderr
    assert dump(url) == expected
    with Gateway(url) as db:
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list()


@pytest.mark.slow
def test_a_kill_after_the_parquet_write_leaves_orphans_no_read_sees_and_compaction_removes(
    request, reference, tmp_path
):
    from engine.history_store import compact, manifest

    kind, expected = reference
    url = fresh_database(request, tmp_path, kind)
    _load_dimensions(url, tmp_path)
    files = _files(tmp_path)
    killed = _cli(url, files[:1], "after-parquet#1")
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Gateway(url) as db:
        root = db.history_store().root
        orphans = sorted(root.glob("bucket=*/*.parquet"))
        assert orphans  # the files are there ...
        assert manifest(db, anon=True).height == 0 and every_line(db).height == 0  # ... and no read sees them
    for file in files:  # one import each: a bucket keeps a part file per import
        assert _cli(url, [file], None).returncode == 0
    assert dump(url) == expected
    with Gateway(url) as db:
        done = compact(db, max_parts=1)
        assert done.orphans == len(orphans) and not any(p.exists() for p in orphans)
        assert done.files_before > done.files_after  # the two imports' parts of a bucket became one file
    assert dump(url) == expected  # compaction changes no line


@pytest.mark.slow
def test_a_kill_during_the_compaction_of_an_import_loses_nothing(request, reference, tmp_path):
    """The import's last file commits with its compaction (one transaction): killed while the buckets'
    files are written, the first file is history (a file of every bucket), the second not; the merged
    files are orphans the re-run sweeps."""
    from engine.history_store import MIXED, compact, manifest

    kind, expected = reference
    url = fresh_database(request, tmp_path, kind)
    _load_dimensions(url, tmp_path)
    files = _files(tmp_path)
    (tmp_path / "first").mkdir()
    first = fresh_database(request, tmp_path / "first", kind)  # the first file alone
    _load_dimensions(first, tmp_path / "first")
    import_files(first, "transactions", files[:1])
    killed = _cli(url, files, "before-compact-commit#1")  # the second file's transaction, its merges written
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Gateway(url) as db, Gateway(first) as one:
        assert every_line(db).equals(every_line(one))  # the first file's lines, no line of the second
        assert MIXED in manifest(db, anon=True)["bucket"].to_list()
        root = db.history_store().root
        named = {root / f for f in manifest(db, anon=True)["file_name"]}
        orphans = [p for p in root.glob("bucket=*/*.parquet") if p not in named]
        assert orphans  # the merged files the kill left uncommitted
    assert _cli(url, files, None).returncode == 0  # the re-run imports the second file, and sweeps them
    assert dump(url) == expected
    assert not any(p.exists() for p in orphans)
    with Gateway(url) as db:  # the first file's file of every bucket split by the re-run (it is crowded)
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list()
        # a bucket: the re-run's merge of its files and the killed run's slice, beside it
        assert manifest(db).group_by("bucket").len()["len"].max() == 2
        compact(db)  # by hand: one file a bucket
        assert manifest(db, anon=True).group_by("bucket").len()["len"].max() == 1
    assert dump(url) == expected


@pytest.mark.slow
def test_a_killed_compaction_loses_nothing_and_a_rerun_completes_it(request, reference, tmp_path):
    """`listwise history compact` killed before its commit: the files of every bucket the killed import
    left are still history, read as before; the merged files are orphans the next compaction sweeps."""
    from engine.history_store import MIXED, manifest

    kind, expected = reference
    url = fresh_database(request, tmp_path, kind)
    _load_dimensions(url, tmp_path)
    files = _files(tmp_path)
    assert _cli(url, files, "after-commit#1").returncode == -signal.SIGKILL  # the first file's, unsplit
    with Gateway(url) as db:
        before = every_line(db)
        assert MIXED in manifest(db, anon=True)["bucket"].to_list()
    env = {**os.environ, "PYTHONPATH": str(ROOT), "LISTWISE_FAULT": "before-compact-commit#1"}
    command = [sys.executable, "-m", "engine.cli", "-q", "--database", url, "history", "compact"]
    killed = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    with Gateway(url) as db:
        assert every_line(db).equals(before)
        assert MIXED in manifest(db, anon=True)["bucket"].to_list()
        root = db.history_store().root
        named = {root / f for f in manifest(db, anon=True)["file_name"]}
        orphans = [p for p in root.glob("bucket=*/*.parquet") if p not in named]
        assert orphans
    env.pop("LISTWISE_FAULT")
    assert subprocess.run(command, env=env, capture_output=True, text=True, timeout=120, cwd=ROOT).returncode == 0
    assert not any(p.exists() for p in orphans)
    with Gateway(url) as db:
        assert every_line(db).equals(before)
        assert MIXED not in manifest(db, anon=True)["bucket"].to_list()
    assert _cli(url, files, None).returncode == 0
    assert dump(url) == expected
