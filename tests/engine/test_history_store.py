"""The Parquet history store: partitions read exactly their customers, checkout lines join the
imported ones, compaction changes no line, and the settings that place it are checked."""

from __future__ import annotations

import datetime as dt
import threading

import polars as pl
import pytest
import sqlalchemy as sa

from engine.cli import main
from engine.config import HistorySettings, Settings, validate_settings
from engine.db import Gateway, connect, init_schema
from engine.errors import ConfigError, StateError
from engine.history_store import every_line, manifest, part_paths, read_parts
from engine.ingest import import_file, import_files
from tests.engine.test_ingest import CUSTOMERS, PRODUCTS, STORES, write

END = dt.date(2026, 1, 1)
HEADER = "basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"
MORE_CUSTOMERS = "".join(f"C{i},9{i:015d},F,L,1,false,2024-01-01\n" for i in range(3, 21))


def _tx(first: int, last: int, day: int) -> str:
    rows = [
        f"B{b},{'' if b % 7 == 0 else f'C{1 + b % 20}'},S01,2025-01-{day:02d}T10:{b % 60:02d}:00,"
        f"{('P1', 'P2')[line % 2]},1,{('5.99', '3.49')[line % 2]},0\n"
        for b in range(first, last)
        for line in range(1 + b % 3)
    ]
    return HEADER + "".join(rows)


def _import_sample(url: str, directory, **options) -> None:
    """The dimensions and three transactions files (one basket split across two of them), `import_files(**options)`."""
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
        import_file(url, kind, write(directory, f"{kind}.csv", text))
    files = [
        write(directory, "a.csv", _tx(0, 60, 6)),
        write(directory, "b.csv", _tx(60, 120, 7) + "B59,C20,S01,2025-01-06T10:59:00,P1,3,17.97,0\n"),
        write(directory, "c.csv", _tx(120, 180, 8)),
    ]
    import_files(url, "transactions", files, **options)


@pytest.fixture
def chain(db_url, tmp_path):
    """20 customers, three transactions files imported (one basket split across two of them)."""
    _import_sample(db_url, tmp_path, max_parts=0)
    return db_url


def test_partitions_read_exactly_their_customers_and_together_the_whole_history(chain):
    with Gateway(chain) as db:
        whole = db.history(END)
        assert whole.height > 0 and whole["customer_key"].null_count() == 0
        for n in (1, 2, 4, 8, 16, 32, 64):
            parts = [db.history(END, partition=(p, n)) for p in range(n)]
            for p, part in enumerate(parts):
                assert (part["customer_key"] % n == p).all()
            assert pl.concat(parts).sort("customer_key", "day", "basket_key", maintain_order=True).equals(whole)


def test_a_partition_not_dividing_the_buckets_is_refused(chain):
    with Gateway(chain) as db, pytest.raises(StateError, match="n must divide the history's 64 buckets"):
        db.history(END, partition=(0, 3))


def test_a_worker_reading_by_path_gets_the_partitions_imported_lines(chain):
    with Gateway(chain) as db:
        for p in range(4):
            by_path = read_parts(part_paths(db, (p, 4), END), END).drop("line_no")
            through = db.history(END, partition=(p, 4)).select(by_path.columns)
            assert by_path.sort(by_path.columns).equals(through.sort(by_path.columns))


def test_checkout_lines_join_the_imported_ones_and_a_voided_basket_leaves(chain):
    with Gateway(chain) as db:
        before = db.history(END)
    engine = connect(chain)
    with engine.begin() as conn:  # two checkout baskets of customer 5 (partition 1 of 4), one voided
        for key, voided in ((90001, 0), (90002, 1)):
            conn.execute(
                sa.text(
                    "INSERT INTO baskets (basket_key, store_id, basket_id, customer_key, ts, day, source, voided) "
                    "VALUES (:k, 'S01', :b, 5, '2025-01-09 10:00:00', '2025-01-09', 'checkout', :v)"
                ),
                {"k": key, "b": f"K{key}", "v": voided},
            )
            conn.execute(
                sa.text(
                    "INSERT INTO basket_lines (basket_key, line_no, customer_key, day, product_key, quantity, "
                    "amount_cents, discount_cents) VALUES (:k, 1, 5, '2025-01-09', 1, 1, 599, 0)"
                ),
                {"k": key},
            )
    engine.dispose()
    with Gateway(chain) as db:
        after = db.history(END)
        assert after.height == before.height + 1
        assert after.filter(pl.col("basket_key") == 90001).height == 1
        assert db.history(END, partition=(1, 4)).filter(pl.col("basket_key") == 90001).height == 1
        assert db.history(END, partition=(0, 4)).filter(pl.col("basket_key") == 90001).height == 0


def test_compaction_leaves_one_file_a_bucket_and_every_line_as_it_was(chain):
    with Gateway(chain) as db:
        lines, history = every_line(db), db.history(END)
        files = manifest(db, anon=True)
        assert files.group_by("bucket").len()["len"].max() == 3
    assert main(["--database", chain, "history", "compact"]) == 0
    with Gateway(chain) as db:
        after = manifest(db, anon=True)
        assert after.group_by("bucket").len()["len"].max() == 1
        assert after.height == files["bucket"].n_unique()
        assert every_line(db).equals(lines) and db.history(END).equals(history)
        assert not any((db.history_store().root / f).exists() for f in files["file_name"])


def test_an_import_compacts_a_bucket_with_more_parts_than_the_setting(chain, tmp_path):
    with Gateway(chain) as db:
        lines = every_line(db)
    import_files(chain, "transactions", [write(tmp_path, "a.csv", _tx(0, 60, 6))], max_parts=2)  # a re-import
    with Gateway(chain) as db:
        assert manifest(db, anon=True).group_by("bucket").len()["len"].max() <= 2
        assert every_line(db).equals(lines)


def test_an_import_of_several_files_merges_the_lines_it_holds_as_those_it_reads_back(
    request, db_url, tmp_path, monkeypatch
):
    """`import_files` keeps its part files' lines for its compaction (`compact`'s `held`): the same
    files' contents as a compaction that reads them back (`_HELD_LINES` 0), the split basket too."""
    import engine.ingest as ingest
    from tests.conftest import fresh_database

    def imported(url, directory):
        _import_sample(url, directory)
        with Gateway(url) as db:
            files = manifest(db, anon=True)
            assert files.group_by("bucket").len()["len"].max() == 1
            parts = {
                b: read_parts([str(db.history_store().path(f))]) for b, f in files.select("bucket", "file_name").rows()
            }
            return parts, every_line(db)

    held = imported(db_url, tmp_path)
    monkeypatch.setattr(ingest, "_HELD_LINES", 0)
    other_dir = tmp_path / "read_back"
    other_dir.mkdir()
    read_back = imported(
        fresh_database(request, other_dir, "sqlite" if db_url.startswith("sqlite") else "postgres"), other_dir
    )
    assert held[0].keys() == read_back[0].keys()
    assert all(held[0][b].equals(read_back[0][b]) for b in held[0])
    assert held[1].equals(read_back[1])


def test_compaction_merges_held_lines_without_opening_their_files(chain):
    from engine.history_store import compact

    with Gateway(chain) as db:
        lines, files = every_line(db), manifest(db, anon=True)
        root = db.history_store().root
        held = {f: read_parts([str(root / f)]) for f in files["file_name"]}
        for f in files["file_name"]:
            (root / f).unlink()  # only the held lines can give them now
        done = compact(db, max_parts=1, held=held)
        assert done.files_before == files.height and done.files_after == files["bucket"].n_unique()
        assert every_line(db).equals(lines)


def test_the_buckets_are_fixed_when_the_database_is_created(tmp_path):
    engine = connect(f"sqlite:///{tmp_path / 'b.db'}")
    init_schema(engine, buckets=16)
    init_schema(engine, buckets=16)
    with pytest.raises(StateError, match="created with 16 buckets"):
        init_schema(engine, buckets=64)
    engine.dispose()
    with Gateway(f"sqlite:///{tmp_path / 'b.db'}") as db:
        assert db.history_store().buckets == 16
        assert db.history_store().root == (tmp_path / "b.history").resolve()


@pytest.mark.parametrize(("key", "value"), [("buckets", 0), ("buckets", 5000), ("max_parts", 0), ("merge_lines", 1)])
def test_history_settings_out_of_range_are_named(key, value):
    with pytest.raises(ConfigError, match=f"history.{key}"):
        validate_settings(Settings(history=HistorySettings(**{key: value})))


@pytest.mark.postgres
def test_postgres_without_a_history_path_refuses_an_import_in_one_line(request, tmp_path, capsys):
    from tests.conftest import _fresh_pg_database

    url = _fresh_pg_database(request.getfixturevalue("pg_server"))
    engine = connect(url)
    init_schema(engine)
    engine.dispose()
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
        import_file(url, kind, write(tmp_path, f"{kind}.csv", text))
    path = write(tmp_path, "t.csv", _tx(1, 3, 6))
    assert main(["--database", url, "import", "transactions", str(path)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "set 'path' in [history] and run 'listwise init'" in err


@pytest.mark.parametrize("seed", range(4))
def test_history_order_is_the_full_sort_whatever_order_the_lines_come_in(seed):
    import numpy as np

    from engine.history_store import _SORT, _in_history_order

    rng = np.random.default_rng(seed)
    n = 2000
    lines = pl.DataFrame(
        {
            "customer_key": rng.integers(1, 30, n),
            "day": pl.Series(rng.integers(0, 20, n)).cast(pl.Date),
            "basket_key": rng.integers(1, 50, n),
            "line_no": rng.integers(1, 5, n).astype(np.int32),
        }
    )
    expected = lines.sort(_SORT)
    assert _in_history_order(lines).equals(expected)  # shuffled: the full sort
    files = [expected.filter(pl.col("customer_key") % 4 == b) for b in range(4)]  # buckets, each in order
    assert _in_history_order(pl.concat(files)).equals(expected)  # the cheap path
    late = pl.concat([*files, expected.head(3)])  # a customer's lines in two places
    assert _in_history_order(late).equals(late.sort(_SORT))


@pytest.mark.parametrize(
    "columns",
    [
        ["customer_key", "day", "amount_cents"],  # the lines' own: no product attribute to join
        ["quantity", "product_key"],
        ["category"],  # a product attribute alone
        ["day", "brand", "customer_key", "unit_cost_cents", "discount_cents"],
    ],
    ids=["lines-only", "product-key-no-attribute", "attribute-only", "mixed"],
)
def test_only_some_columns_of_history_read_only_what_they_need_give_the_whole_frames(chain, columns):
    """`to_history(lines of line_columns(columns), products, columns)` is the whole history frame's
    `columns`, in their order and the frame's row order: with or without a product attribute among them."""
    from engine.history_store import line_columns, to_history

    with Gateway(chain) as db:
        lines, products = read_parts(part_paths(db, None, END), END), db.products()
    whole = to_history(lines, products)
    assert whole.height > 100
    got = to_history(lines.select(line_columns(columns)), products, columns)
    assert got.equals(whole.select(columns))


@pytest.fixture
def unsplit(request, db_url, tmp_path, monkeypatch):
    """(a database holding the sample as its import wrote it, one file of every bucket a transactions
    file, its compaction not run: as a kill between the files leaves them; the same sample imported
    as one file a bucket and file, max_parts 0, on the same kind of database)."""
    import engine.ingest as ingest
    from tests.conftest import fresh_database

    other = tmp_path / "unsplit"
    other.mkdir()
    url = fresh_database(request, other, "sqlite" if db_url.startswith("sqlite") else "postgres")
    with monkeypatch.context() as patched:
        patched.setattr(ingest, "compact", lambda *args, **kwargs: None)
        patched.setattr(ingest, "_Compaction", lambda *a, **k: None)  # nor its last file's transaction
        _import_sample(url, other)
    _import_sample(db_url, tmp_path, max_parts=0)
    return url, db_url


def test_files_of_every_bucket_are_read_as_the_buckets_own_files(unsplit, tmp_path):
    from engine.history_store import MIXED, card_holders, crowded
    from engine.stages import store_sources

    url, reference = unsplit
    with Gateway(url) as db, Gateway(reference) as ref:
        # a file of every bucket a transactions file, its anonymous lines in their own bucket's
        assert sorted(manifest(db, anon=True)["bucket"].to_list(), key=str) == [MIXED] * 3 + [None] * 3
        assert manifest(ref, anon=True)["bucket"].n_unique() > 20
        assert crowded(db, 16) and not crowded(ref, 16)
        assert every_line(db).equals(every_line(ref))
        assert db.history(END).equals(ref.history(END))
        for n in (1, 4, 64):
            for p in range(n):
                assert db.history(END, partition=(p, n)).equals(ref.history(END, partition=(p, n)))
        for p in range(4):  # a worker reading by path keeps the partition's card holders
            got = read_parts(part_paths(db, (p, 4), END), END, where=card_holders((p, 4)))
            want = read_parts(part_paths(ref, (p, 4), END), END)
            assert got.sort(got.columns).equals(want.sort(want.columns))
        start = dt.date(2024, 1, 1)
        for ours, theirs in zip(store_sources(db, 4, END, start), store_sources(ref, 4, END, start)):
            assert ours.history().equals(theirs.history())
            assert ours.strata_history([0, 5, 7], END, start).equals(theirs.strata_history([0, 5, 7], END, start))
            lines, want = (
                ours.lines(start, ["customer_key", "amount_cents"]),
                theirs.lines(start, ["customer_key", "amount_cents"]),
            )
            assert lines.sort(lines.columns).equals(want.sort(want.columns))
        lines = every_line(db)
    # a re-import of a file whose basket the next file completed: the held lines are read from them
    import_files(url, "transactions", [write(tmp_path, "again.csv", _tx(0, 60, 6))], max_parts=0)
    with Gateway(url) as db:
        assert every_line(db).equals(lines)


def test_compaction_splits_files_of_every_bucket_into_the_buckets_own(unsplit):
    from engine.history_store import MIXED, compact

    url, reference = unsplit
    with Gateway(url) as db:
        files = manifest(db, anon=True)
        mixed = [db.history_store().root / f for f in files.filter(pl.col("bucket") == MIXED)["file_name"]]
        done = compact(db, max_parts=16)  # split however few files the buckets hold (the anonymous 3 stay)
        after = manifest(db, anon=True).filter(pl.col("bucket").is_not_null())
        assert done.files_before == 3 and done.files_after == after.height
        assert MIXED not in after["bucket"].to_list() and not any(p.exists() for p in mixed)
        assert after.group_by("bucket").len()["len"].max() == 1
        got = {b: read_parts([str(db.history_store().path(f))]) for b, f in after.select("bucket", "file_name").rows()}
        lines = every_line(db)
    with Gateway(reference) as ref:
        compact(ref, max_parts=1)
        files = manifest(ref, anon=False)
        want = {
            b: read_parts([str(ref.history_store().path(f))]) for b, f in files.select("bucket", "file_name").rows()
        }
        assert got.keys() == want.keys() and all(got[b].equals(want[b]) for b in got)  # the same files, line for line
        assert lines.equals(every_line(ref))


def test_a_file_of_every_bucket_not_in_bucket_order_is_split_all_the_same(unsplit):
    """`_split_mixed` slices a file written by bucket, and groups one that is not (rows shuffled)."""
    from engine.history_store import _split_mixed

    url, _ = unsplit
    with Gateway(url) as db:
        store, files = db.history_store(), manifest(db, anon=True)
        held = {f: read_parts([str(store.path(f))]) for f in files["file_name"]}
    shuffled = {f: lines.sample(fraction=1.0, shuffle=True, seed=1) for f, lines in held.items()}
    ordered, mixed_up = _split_mixed(store, files, held), _split_mixed(store, files, shuffled)
    assert ordered.keys() == mixed_up.keys() and None in ordered and len(ordered) > 20
    for bucket, slices in ordered.items():
        lines, other = pl.concat(slices), pl.concat(mixed_up[bucket])
        assert len(slices) == len(mixed_up[bucket]) <= files.height
        assert lines.sort(lines.columns).equals(other.sort(other.columns))
        keys = lines["customer_key"]
        assert keys.is_null().all() if bucket is None else (keys % 64 == bucket).all()


def test_an_import_stopped_by_a_refused_file_splits_the_files_of_every_bucket_it_committed(db_url, tmp_path):
    from engine.errors import InputError
    from engine.history_store import MIXED

    for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
        import_file(db_url, kind, write(tmp_path, f"{kind}.csv", text))
    good = [write(tmp_path, "a.csv", _tx(0, 60, 6)), write(tmp_path, "b.csv", _tx(60, 120, 7))]
    bad = write(tmp_path, "c.csv", HEADER + "B900,C1,S01,2025-01-08T10:00:00,NOPE,1,5.99,0\n")
    with pytest.raises(InputError, match="c.csv:2: column 'sku'"):
        import_files(db_url, "transactions", [*good, bad])
    with Gateway(db_url) as db:
        files = manifest(db, anon=True)
        assert MIXED not in files["bucket"].to_list() and files.group_by("bucket").len()["len"].max() == 1
        assert every_line(db)["basket_key"].n_unique() == 120  # the two files before the refused one


def test_files_prepared_ahead_of_a_refused_one_are_not_imported(db_url, tmp_path, monkeypatch):
    """Small files are read and checked two ahead of the one written: a refused file still stops the
    import there, the files before it stay imported and none after it lands, whatever was prepared."""
    import engine.ingest as ingest
    from engine.errors import InputError

    for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
        import_file(db_url, kind, write(tmp_path, f"{kind}.csv", text))
    prepared, c_started, together = [], threading.Event(), []
    read = ingest.read_table

    def reading(path, kind):
        prepared.append(path.name)
        if path.name == "c.csv":
            c_started.set()
        if path.name == "a.csv":  # c.csv is read before a.csv is written: a.csv's read waits for it
            together.append(c_started.wait(timeout=10))
        return read(path, kind)

    monkeypatch.setattr(ingest, "read_table", reading)
    bad = write(tmp_path, "b.csv", HEADER + "B900,C1,S01,2025-01-08T10:00:00,NOPE,1,5.99,0\n")
    files = [write(tmp_path, "a.csv", _tx(0, 60, 6)), bad, write(tmp_path, "c.csv", _tx(60, 120, 7))]
    files.append(write(tmp_path, "d.csv", _tx(120, 180, 8)))
    with pytest.raises(InputError, match="b.csv:2: column 'sku'"):
        import_files(db_url, "transactions", files)
    assert together == [True]  # c.csv was read before a.csv was written
    with Gateway(db_url) as db:
        assert every_line(db)["basket_key"].n_unique() == 60
        assert db.read("SELECT file_name FROM imports WHERE kind = 'transactions'", {"file_name": pl.String})[
            "file_name"
        ].to_list() == [str(files[0])]


def test_small_counts_a_parquet_footer_s_rows_and_guesses_a_csv_s_from_its_size(tmp_path, monkeypatch):
    import engine.ingest as ingest

    monkeypatch.setattr(ingest, "_AHEAD_LINES", 1000)
    small, large = tmp_path / "small.parquet", tmp_path / "large.parquet"
    pl.DataFrame({"x": range(400)}).write_parquet(small)
    pl.DataFrame({"x": range(700)}).write_parquet(large)  # the footer's row count, not the file's bytes
    csv = write(tmp_path, "t.csv", "x\n" + "1" * 60 + "\n")  # ~50 bytes a line: one
    assert ingest._small([small, small]) and ingest._small([small, csv])
    assert not ingest._small([small, large]) and not ingest._small([large, large])
    assert not ingest._small([tmp_path / "missing.parquet"])  # its own read names the error


def test_splitting_a_file_of_every_bucket_rewrites_no_bucket_that_has_room_for_one_more(unsplit, tmp_path, monkeypatch):
    """A compacted history, then a file of every bucket (as a kill leaves it): `compact(max_parts=16)`
    writes each bucket's slice as one more file and keeps the bucket's own; with max_parts 1 it merges."""
    from engine.history_store import MIXED, compact

    url, _ = unsplit
    with Gateway(url) as db:
        compact(db, max_parts=1)
        kept = set(manifest(db)["file_name"])  # one file a card holders' bucket
    import engine.ingest as ingest

    with monkeypatch.context() as patched:  # as a kill before the import's own split leaves them
        patched.setattr(ingest, "compact", lambda *args, **kwargs: None)
        patched.setattr(ingest, "_Compaction", lambda *a, **k: None)  # nor its last file's transaction
        more = [write(tmp_path, "d.csv", _tx(180, 240, 9)), write(tmp_path, "e.csv", _tx(240, 300, 10))]
        import_files(url, "transactions", more)
    with Gateway(url) as db:
        lines, history = every_line(db), db.history(END)
        assert MIXED in manifest(db)["bucket"].to_list()
        done = compact(db, max_parts=16)
        after = manifest(db)
        assert kept <= set(after["file_name"])  # no bucket's history rewritten
        assert done.files_before == 2 and MIXED not in after["bucket"].to_list()
        assert after.group_by("bucket").len()["len"].max() == 2
        assert every_line(db).equals(lines) and db.history(END).equals(history)
        compact(db, max_parts=1)
        assert manifest(db).group_by("bucket").len()["len"].max() == 1
        assert every_line(db).equals(lines) and db.history(END).equals(history)


def _database_rows(url: str) -> list[tuple]:
    with connect(url).connect() as conn:
        return [
            tuple(r)
            for r in conn.execute(
                sa.text(
                    "SELECT basket_key, store_id, basket_id, customer_key, CAST(day AS TEXT), line_count, line_sum "
                    "FROM baskets ORDER BY basket_key"
                )
            )
        ]


def test_present_baskets_are_found_by_their_days_or_by_their_keys_alike(request, db_url, tmp_path, monkeypatch):
    """A file's baskets already in the database are read among the baskets of its days while those
    are few, else looked up by key (a temporary table of the file's keys joined on the unique key):
    the same database either way, for a first import, a split basket and a re-import of every file."""
    import engine.ingest as ingest
    from tests.conftest import fresh_database

    (tmp_path / "keys").mkdir()
    by_keys = fresh_database(request, tmp_path / "keys", "sqlite" if db_url.startswith("sqlite") else "postgres")
    sources = []
    present = ingest._present

    def spy(bulk, baskets, where, source="baskets b"):  # noqa: ANN001
        sources.append(source)
        return present(bulk, baskets, where, source)

    monkeypatch.setattr(ingest, "_present", spy)
    files = [tmp_path / name for name in ("a.csv", "b.csv", "c.csv")]
    _import_sample(db_url, tmp_path)
    import_files(db_url, "transactions", files)  # a re-import of every file adds nothing
    assert sources and all(s == "baskets b" for s in sources)  # few baskets on those days: read whole
    monkeypatch.setattr(ingest, "_PRESENT_READ", 0)
    monkeypatch.setattr(ingest, "_PRESENT_FLOOR", 0)  # any basket on the file's days: by key
    sources.clear()
    _import_sample(by_keys, tmp_path / "keys")
    # b.csv meets a.csv's day (its line of B59); c.csv's day has no basket yet: nothing to look up
    assert ["CROSS JOIN" in s for s in sources] == [False, True, False]
    import_files(by_keys, "transactions", files)
    assert ["CROSS JOIN" in s for s in sources[3:]] == [True] * 3
    assert _database_rows(db_url) == _database_rows(by_keys)
    with Gateway(db_url) as db, Gateway(by_keys) as keys:
        assert every_line(db).equals(every_line(keys))
        assert every_line(db).height == 361  # 3 files of 60 baskets of 1, 2, 3 lines, and B59's added line


# ---------------------------------------------------------------- size tiers


@pytest.mark.parametrize(
    ("sizes", "max_parts", "merge_lines", "want"),
    [
        ([5, 5, 5], 3, 100, []),  # not crowded
        ([217] * 17, 16, 4194, [list(range(10))]),  # the 1M chain's 17th file: ten of 217 make 2,170, settled
        ([2] * 17, 16, 4000, [list(range(10))]),  # the ten oldest: 7 left open + the merged one = 8
        ([20] + [2] * 16, 16, 4000, [list(range(1, 11))]),  # the larger older file not rewritten
        ([2170] + [217] * 16, 16, 4194, []),  # the settled file does not count
        ([5, 1, 1, 1], 1, 100, [[0, 1, 2, 3]]),  # by hand: everything into one
        ([40, 45, 48, 30], 1, 100, [[0, 1], [2, 3]]),  # no three fit: 48+30 (39 lines a file) then 40+45
        ([9, 1, 8, 2, 7, 3], 4, 100, [[1, 2, 3, 4, 5]]),  # 1..3: 21 lines for 4 files, not 9..7's 27
        ([60, 10, 10, 10], 1, 100, [[1, 2, 3]]),  # the 60 is settled (>= 50): the three 10s into one
        ([2, 2, 40, 2, 2, 2], 2, 100, [[0, 1, 2, 3, 4, 5]]),  # 2+2+2, then 2+2, then all: settled at 50
    ],
)
def test_the_merge_plan_merges_neighbouring_open_files_by_hand(sizes, max_parts, merge_lines, want):
    from engine.history_store import _merge_plan

    assert _merge_plan(sizes, max_parts, merge_lines) == want


def test_the_merge_plan_bounds_every_merge_and_leaves_few_open_files():
    """Invariants over many plans: groups of two or more distinct open files, each at most merge_lines
    lines; no file left alone between two files of one group (a group is a stretch of the order
    written); afterwards no more open files than half of max_parts (at least 1); and no plan at all
    unless more than max_parts were open."""
    from hypothesis import given, settings
    from hypothesis import strategies as st

    from engine.history_store import _merge_plan

    @settings(max_examples=600, deadline=None)
    @given(st.lists(st.integers(1, 300), max_size=80), st.integers(1, 20), st.integers(2, 400))
    def check(sizes, max_parts, merge_lines):
        groups = _merge_plan(sizes, max_parts, merge_lines)
        settled = merge_lines // 2
        open_ = [i for i, n in enumerate(sizes) if n < settled]
        if len(open_) <= max_parts:
            assert groups == []
            return
        merged = [i for g in groups for i in g]
        assert len(merged) == len(set(merged)) and all(len(g) > 1 for g in groups)
        assert all(i in open_ for i in merged) and all(g == sorted(g) for g in groups)
        assert all(sum(sizes[i] for i in g) <= merge_lines for g in groups)
        alone = [i for i in open_ if i not in merged]
        assert not any(g[0] < i < g[-1] for g in groups for i in alone)
        left = len(alone) + sum(sum(sizes[i] for i in g) < settled for g in groups)
        assert left <= max(1, max_parts // 2)

    check()


def test_compact_by_hand_takes_the_bound_and_refuses_one_out_of_range(chain, capsys):
    """`listwise history compact --merge-lines N`: with N = 2 every file is settled (nothing merged);
    N = 1 is refused in one line on stderr."""
    with Gateway(chain) as db:
        files = manifest(db, anon=True)
    assert main(["--database", chain, "history", "compact", "--merge-lines", "2"]) == 0
    assert "0 buckets, 0 part files into 0" in capsys.readouterr().out
    with Gateway(chain) as db:
        assert manifest(db, anon=True).equals(files)
    assert main(["--database", chain, "history", "compact", "--merge-lines", "1"]) != 0
    err = capsys.readouterr().err
    assert err.strip() == "error: --merge-lines must be >= 2 (got 1)"
    assert main(["--database", chain, "history", "compact"]) == 0  # the setting's bound: one file a bucket
    with Gateway(chain) as db:
        assert manifest(db, anon=True).group_by("bucket").len()["len"].max() == 1


def test_imports_keep_settled_files_and_merge_within_the_bound(request, db_url, tmp_path):
    """Twelve imports, one file (one day) each, with max_parts 4 and merges of at most 24 lines: after
    each no bucket holds more than 4 open files, no compacted file holds more than 24 lines, a
    settled file once written stays, a bucket's files hold days one after another, and history is
    line for line that of the same
    files imported without compaction. A second run of the twelve imports changes nothing."""
    from tests.conftest import fresh_database

    reference = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "ref.db")
    for url in (db_url, reference):
        for kind, text in (("stores", STORES), ("customers", CUSTOMERS + MORE_CUSTOMERS), ("products", PRODUCTS)):
            import_file(url, kind, write(tmp_path, f"{kind}.csv", text))
    # days of different sizes (a merge of the smallest files wherever they lay would leave days between them)
    sizes = (10, 40, 25, 10, 40, 15, 30, 10, 45, 20, 10, 35)
    files = [write(tmp_path, f"t{d:02d}.csv", _tx(50 * d, 50 * d + sizes[d - 1], d)) for d in range(1, 13)]
    settled: set[str] = set()
    for run in range(2):
        for path in files:
            if run == 0:
                import_files(reference, "transactions", [path], max_parts=0)
            with Gateway(db_url) as db:
                before = manifest(db, anon=True)
            import_files(db_url, "transactions", [path], max_parts=4, merge_lines=24)
            with Gateway(db_url) as db:
                after = manifest(db, anon=True)
            if run == 1:
                assert after.equals(before)  # a re-import: nothing written, nothing merged
            assert settled <= set(after["file_name"])  # settled files are never merged again
            settled |= set(after.filter(pl.col("line_count") >= 12)["file_name"])
            open_files = after.filter(pl.col("line_count") < 12).group_by("bucket").len()
            assert open_files["len"].max() <= 4
            # merges are stretches of time: a bucket's files, by first day, hold days one after another
            # (its readers' cheap path to history's order, `_in_history_order`)
            by_day = after.sort("first_day").group_by("bucket", maintain_order=True)
            overlaps = by_day.agg((pl.col("first_day").slice(1) <= pl.col("last_day").slice(0, pl.len() - 1)).any())
            assert not overlaps["first_day"].any()
            assert (after.filter(pl.col("import_id").is_null())["line_count"].max() or 0) <= 24
    with Gateway(db_url) as db, Gateway(reference) as ref:
        compacted = manifest(db, anon=True).filter(pl.col("import_id").is_null())
        assert compacted.height > 20 and len(settled) > 10  # merges happened, and settled files too
        assert every_line(db).equals(every_line(ref)) and db.history(END).equals(ref.history(END))
