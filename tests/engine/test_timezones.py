"""Import keeps every timestamp as its store's local wall clock, whatever form the export wrote it in.

Hand-worked instants around America/New_York's DST changes in 2025: DST began on Sunday
9 March at 07:00 UTC (02:00 EST became 03:00 EDT) and ended on Sunday 2 November at 06:00 UTC
(02:00 EDT became 01:00 EST, so 01:30 happened twice).
"""

import datetime as dt
from pathlib import Path
from zoneinfo import ZoneInfo

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import Gateway, connect
from engine.errors import InputError
from engine.history_store import every_line
from engine.ingest import _timestamps_by_basket, import_file, import_files
from tests.conftest import fresh_database

STORES = (
    "store_id,name,timezone\n"
    "NY,Manhattan,America/New_York\n"
    "LA,Venice Beach,America/Los_Angeles\n"
    "HQ,Head office,\n"
)  # no zone of its own: the chain's
CUSTOMERS = "customer_id\nC1\nC2\n"
PRODUCTS = "sku,category,brand_type,regular_price\nP1,COFFEE,national,4.99\nP2,COFFEE,store,3.49\nP3,MILK,store,1.89\n"
HEADER = "basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"


def write(directory: Path, name: str, text: str) -> Path:
    path = directory / name
    path.write_text(text)
    return path


def load_dimensions(url: str, directory: Path, stores: str = STORES) -> None:
    for kind, text in (("stores", stores), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(url, kind, write(directory, f"{kind}.csv", text))


@pytest.fixture
def loaded(db_url, tmp_path):
    load_dimensions(db_url, tmp_path)
    return db_url


def _ts(value) -> dt.datetime:
    return value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(str(value))


def baskets(url: str) -> dict[str, dt.datetime]:
    """basket_id -> stored ts."""
    with connect(url).connect() as conn:
        return {b: _ts(ts) for b, ts in conn.execute(sa.text("SELECT basket_id, ts FROM baskets"))}


def dump(url: str) -> list[tuple]:
    """Every basket line with its basket, in natural keys: what two imports must agree on."""
    sql = (
        "SELECT b.basket_key, b.store_id, b.basket_id, c.customer_id, b.ts, b.day, b.source FROM baskets b "
        "LEFT JOIN customers c ON c.customer_key = b.customer_key"
    )
    with Gateway(url) as db:  # the lines history holds: the Parquet parts and basket_lines
        held = every_line(db).rows(named=True)
    with connect(url).connect() as conn:
        basket = {r[0]: (*r[1:4], _ts(r[4]), str(r[5]), r[6]) for r in conn.execute(sa.text(sql))}
        sku = dict(conn.execute(sa.text("SELECT product_key, sku FROM products")).all())
        stores = sorted(tuple(r) for r in conn.execute(sa.text("SELECT * FROM stores")))
    rows = [
        (*basket[r["basket_key"]][:5], sku[r["product_key"]], r["quantity"], r["amount_cents"], r["discount_cents"])
        + (basket[r["basket_key"]][5],)
        for r in held
    ]
    return sorted(rows, key=repr) + stores


# ------------------------------------------------------------------ forms of a timestamp


@pytest.mark.parametrize(
    "store, written, local",
    [
        # spring forward: the last EST minute and the first EDT ones
        ("NY", "2025-03-09T01:30:00-05:00", "2025-03-09T01:30:00"),
        ("NY", "2025-03-09T03:30:00-04:00", "2025-03-09T03:30:00"),
        ("NY", "2025-03-09T06:30:00Z", "2025-03-09T01:30:00"),
        ("NY", "2025-03-09T07:30:00Z", "2025-03-09T03:30:00"),
        # fall back: 01:30 EDT and, an hour later, 01:30 EST have the same wall clock
        ("NY", "2025-11-02T05:30:00Z", "2025-11-02T01:30:00"),
        ("NY", "2025-11-02T01:30:00-04:00", "2025-11-02T01:30:00"),
        ("NY", "2025-11-02T01:30:00-0500", "2025-11-02T01:30:00"),
        ("NY", "2025-11-02T02:30:00-05", "2025-11-02T02:30:00"),
        ("NY", "2025-11-02 01:59:59.250-04:00", "2025-11-02T01:59:59.250"),
        # an offset within the DST shift of the zone is an instant like any other
        ("NY", "2025-01-15T10:00:00-04:00", "2025-01-15T09:00:00"),
        # a store's own zone beats the chain's; a store without one takes the chain's
        ("LA", "2025-01-06T18:00:00Z", "2025-01-06T10:00:00"),
        ("HQ", "2025-01-06T18:00:00Z", "2025-01-06T13:00:00"),
        ("HQ", "2025-01-06T18:00:00-05", "2025-01-06T18:00:00"),
        # naive is store-local, as written; so is the space separator and fractions of a second
        ("LA", "2025-01-06 10:00:00.5", "2025-01-06T10:00:00.5"),
        ("NY", "2025-03-09T03:30", "2025-03-09T03:30:00"),
    ],
)
def test_each_form_lands_as_the_store_local_wall_clock(loaded, tmp_path, store, written, local):
    path = write(tmp_path, "tx.csv", HEADER + f"B1,C1,{store},{written},P1,1,4.99,0\n")
    import_file(loaded, "transactions", path, timezone="America/New_York")
    assert baskets(loaded) == {"B1": dt.datetime.fromisoformat(local)}


def test_the_day_is_the_store_local_day(loaded, tmp_path):
    # 03:00 UTC on the 7th is still the evening of the 6th in New York
    import_file(
        loaded, "transactions", write(tmp_path, "tx.csv", HEADER + "B1,C1,NY,2025-01-07T03:00:00Z,P1,1,4.99,0\n")
    )
    with connect(loaded).connect() as conn:
        assert str(conn.execute(sa.text("SELECT day FROM baskets")).scalar()) == "2025-01-06"


# ------------------------------------------------------------------ the same export, two ways


def _export(offsets: bool, separator: str = "T", fixed: bool = False) -> str:
    """A day of baskets in three stores across both DST changes, written naive or with offsets.

    `fixed`: every offset timestamp as YYYY-MM-DDTHH:MM:SS+HH:MM (no Z, no fraction): the import's
    fixed-position reading (`engine.ingest._fixed_form`) instead of the general one."""
    zones = {"NY": "America/New_York", "LA": "America/Los_Angeles", "HQ": "America/New_York"}  # chain: New York
    rows = []
    for i, (store, local) in enumerate(
        [
            ("NY", "2025-03-09T01:59:00"),
            ("NY", "2025-03-09T03:00:00"),
            ("LA", "2025-03-09T01:30:00"),
            ("LA", "2025-03-09T04:00:00"),
            ("HQ", "2025-11-02T00:59:00"),
            ("NY", "2025-11-02T03:15:00.125"),
            ("LA", "2025-11-01T23:30:00"),
            ("HQ", "2025-07-04T12:00:00"),
        ]
    ):
        when = dt.datetime.fromisoformat(local)
        text = when.replace(tzinfo=ZoneInfo(zones[store])).isoformat() if offsets else when.isoformat()
        if fixed:
            when = when.replace(microsecond=0)
        elif offsets and i % 3 == 0:  # some as UTC with Z, as another exporter would
            text = when.replace(tzinfo=ZoneInfo(zones[store])).astimezone(dt.UTC).isoformat().replace("+00:00", "Z")
        text = text.replace("T", separator)
        for sku, qty, amount in (("P1", 1, "4.99"), ("P3", 2, "3.78")):
            rows.append(f"B{i},C{1 + i % 2},{store},{text},{sku},{qty},{amount},0")
    return HEADER + "\n".join(rows) + "\n"


@pytest.mark.parametrize("separator", ["T", " "])
def test_naive_and_offset_exports_give_identical_databases(request, db_url, tmp_path, separator):
    other = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "other.db")
    for url, offsets in ((db_url, False), (other, True)):
        load_dimensions(url, tmp_path)
        import_file(
            url,
            "transactions",
            write(tmp_path, f"tx-{offsets}.csv", _export(offsets, separator)),
            timezone="America/New_York",
        )
    assert "+" not in _export(False) and "Z" in _export(True)  # the two files do differ
    assert dump(db_url) == dump(other)
    assert len(dump(db_url)) == 16 + 3


def test_parquet_with_real_datetimes_naive_or_zoned_gives_identical_databases(request, db_url, tmp_path):
    naive = pl.read_csv(write(tmp_path, "naive.csv", _export(False)), infer_schema=False).with_columns(
        pl.col("timestamp").str.to_datetime(time_unit="us")
    )
    zoned = naive.with_columns(  # every store's local time as an instant, in one column of UTC
        pl.when(pl.col("store_id") == "LA")
        .then(pl.col("timestamp").dt.replace_time_zone("America/Los_Angeles").dt.convert_time_zone("UTC"))
        .otherwise(pl.col("timestamp").dt.replace_time_zone("America/New_York").dt.convert_time_zone("UTC"))
    )
    assert zoned["timestamp"].dtype == pl.Datetime("us", "UTC")
    naive.write_parquet(tmp_path / "naive.parquet")
    zoned.write_parquet(tmp_path / "zoned.parquet")
    other = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "other.db")
    for url, path in ((db_url, "naive.parquet"), (other, "zoned.parquet")):
        load_dimensions(url, tmp_path)
        import_file(url, "transactions", tmp_path / path, timezone="America/New_York")
    assert dump(db_url) == dump(other)


# ------------------------------------------------------------------ refusals


def test_an_offset_the_store_zone_cannot_have_is_refused_naming_the_zone(loaded, tmp_path):
    text = HEADER + "B1,C1,NY,2025-01-06T10:00:00-05:00,P1,1,4.99,0\nB2,C1,HQ,2025-01-06T10:00:00-05:00,P1,1,4.99,0\n"
    path = write(tmp_path, "tx.csv", text)
    # the chain zone was left at UTC: HQ (no zone of its own) cannot be at -05:00
    with pytest.raises(
        InputError,
        match=r"tx\.csv:3: column 'timestamp': offset disagrees with the store's time "
        r"zone UTC at all \(it has no DST\); set the store's `timezone` column or the chain's "
        r"`timezone` setting \(got '2025-01-06T10:00:00-05:00'\)",
    ) as err:
        import_file(loaded, "transactions", path)
    assert "tx.csv:2" not in str(err.value)
    assert baskets(loaded) == {}
    import_file(loaded, "transactions", path, timezone="America/New_York")  # the user sets it
    assert baskets(loaded) == {"B1": dt.datetime(2025, 1, 6, 10), "B2": dt.datetime(2025, 1, 6, 10)}


def test_more_than_the_dst_shift_off_is_refused(loaded, tmp_path):
    path = write(
        tmp_path,
        "tx.csv",
        HEADER
        + "B1,C1,NY,2025-07-06T10:00:00-06:00,P1,1,4.99,0\n"  # EDT is -4
        + "B2,C1,NY,2025-07-06T10:00:00+01:00,P1,1,4.99,0\n",
    )
    with pytest.raises(
        InputError,
        match=r"tx\.csv:2: column 'timestamp': offset disagrees with the store's "
        r"time zone America/New_York more than its DST shift of 60 min",
    ):
        import_file(loaded, "transactions", path)


@pytest.mark.parametrize("written", ["2025-01-06T10:00:00+15:00", "2025-01-06T10:00:00+5", "2025-01-06T25:00:00Z"])
def test_malformed_or_impossible_offsets_are_named(loaded, tmp_path, written):
    path = write(tmp_path, "tx.csv", HEADER + f"B1,C1,HQ,{written},P1,1,4.99,0\n")
    with pytest.raises(InputError, match=r"tx\.csv:2: column 'timestamp'"):
        import_file(loaded, "transactions", path)


def test_a_bad_zone_name_in_stores_is_named_and_nothing_imported(db_url, tmp_path):
    text = STORES + "MX,Mars,Mars/Olympus_Mons\nSP,Space,america/new york\n"
    with pytest.raises(
        InputError,
        match=r"stores\.csv:5: column 'timezone': not an IANA time zone name "
        r"\(e\.g\. America/New_York\) \(got 'Mars/Olympus_Mons'\)\n"
        r"stores\.csv:6: column 'timezone'",
    ):
        import_file(db_url, "stores", write(tmp_path, "stores.csv", text))
    with connect(db_url).connect() as conn:
        assert conn.execute(sa.text("SELECT count(*) FROM stores")).scalar() == 0


def test_store_zones_are_kept(loaded):
    with connect(loaded).connect() as conn:
        rows = dict(conn.execute(sa.text("SELECT store_id, timezone FROM stores")).all())
    assert rows == {"NY": "America/New_York", "LA": "America/Los_Angeles", "HQ": None}


def test_a_bad_chain_zone_is_refused_before_reading(loaded, tmp_path):
    with pytest.raises(InputError, match=r"setting 'timezone': not an IANA time zone name \(got 'EST-ish'\)"):
        import_file(loaded, "transactions", write(tmp_path, "tx.csv", HEADER), timezone="EST-ish")


def test_the_cli_passes_the_chain_zone(loaded, tmp_path, capsys):
    from engine.cli import main

    config = write(tmp_path, "listwise.toml", 'timezone = "America/New_York"\n')
    path = write(tmp_path, "tx.csv", HEADER + "B1,C1,HQ,2025-01-06T15:00:00Z,P1,1,4.99,0\n")
    assert main(["--config", str(config), "--database", loaded, "-q", "import", "transactions", str(path)]) == 0
    assert baskets(loaded) == {"B1": dt.datetime(2025, 1, 6, 10)}


# ------------------------------------------------------------------ a basket split across files

SPLIT_A = HEADER + (
    "S1,C1,NY,2025-01-06T10:00:00-05:00,P1,1,4.99,0\n"
    "S1,C1,NY,2025-01-06T10:00:00-05:00,P3,1,1.89,0\n"
    "S2,C2,LA,2025-01-06T09:00:00,P1,1,4.99,0\n"
)
SPLIT_B = HEADER + (
    "S1,C1,NY,2025-01-06T15:00:00Z,P3,2,3.78,0\n"  # two more milks
    "S1,C1,NY,2025-01-06T10:00:00,P2,2,6.98,0.50\n"
    "S3,,HQ,2025-01-06T11:00:00,P2,1,3.49,0\n"
)
WHOLE = [("S1", "P1"), ("S1", "P2"), ("S1", "P3"), ("S1", "P3"), ("S2", "P1"), ("S3", "P2")]


def lines(url: str) -> list[tuple[str, str]]:
    return sorted((r[1], r[5]) for r in dump(url) if len(r) == 10)


@pytest.mark.parametrize("order", [("a", "b"), ("b", "a")])
def test_a_basket_split_across_two_files_keeps_all_its_lines(loaded, tmp_path, order):
    files = {"a": write(tmp_path, "a.csv", SPLIT_A), "b": write(tmp_path, "b.csv", SPLIT_B)}
    first, second = (import_file(loaded, "transactions", files[k]) for k in order)
    assert lines(loaded) == WHOLE
    assert second.endswith("3 line items added (2 to baskets already present)")
    with connect(loaded).connect() as conn:  # line numbers stay unique within the basket
        key = conn.execute(sa.text("SELECT basket_key FROM baskets WHERE basket_id = 'S1'")).scalar()
    with Gateway(loaded) as db:
        numbers = every_line(db).filter(pl.col("basket_key") == key)["line_no"].to_list()
    assert sorted(numbers) == [1, 2, 3, 4]
    before = dump(loaded)
    again = import_files(loaded, "transactions", [files["a"], files["b"]])
    assert dump(loaded) == before
    assert all(r.endswith("0 line items added (0 to baskets already present)") for r in again)


def test_a_split_basket_imports_like_the_whole_file(request, db_url, tmp_path):
    load_dimensions(db_url, tmp_path)
    import_files(db_url, "transactions", [write(tmp_path, "a.csv", SPLIT_A), write(tmp_path, "b.csv", SPLIT_B)])
    other = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "other.db")
    load_dimensions(other, tmp_path)
    whole = HEADER + "".join(SPLIT_A.splitlines(True)[1:]) + "".join(SPLIT_B.splitlines(True)[1:])
    # in one file the basket's lines must agree among themselves: write them all as New York time
    whole = whole.replace("2025-01-06T15:00:00Z", "2025-01-06T10:00:00").replace("10:00:00-05:00", "10:00:00")
    assert "Z" not in whole and "-05:00" not in whole
    import_file(other, "transactions", write(tmp_path, "whole.csv", whole))
    assert dump(db_url) == dump(other)


@pytest.mark.parametrize(
    "line, column",
    [
        ("S1,C2,NY,2025-01-06T10:00:00,P2,1,3.49,0", "customer_id"),
        ("S1,C1,NY,2025-01-06T10:05:00,P2,1,3.49,0", "timestamp"),
        ("S1,C1,NY,2025-01-09T10:00:00,P2,1,3.49,0", "timestamp"),  # another day altogether
    ],
)
def test_a_second_part_that_disagrees_with_its_basket_is_refused(loaded, tmp_path, line, column):
    import_file(loaded, "transactions", write(tmp_path, "a.csv", SPLIT_A))
    before = dump(loaded)
    path = write(tmp_path, "b.csv", HEADER + "S9,C1,NY,2025-01-06T12:00:00,P1,1,4.99,0\n" + line + "\n")
    with pytest.raises(InputError, match=rf"b\.csv:3: column '{column}': basket S1 of store NY is already present"):
        import_file(loaded, "transactions", path)
    assert dump(loaded) == before


def test_a_line_the_basket_already_holds_is_not_added_again(loaded, tmp_path):
    # lines are compared as a multiset of (sku, quantity, amount, discount): the second part's
    # identical milk counts as the one already there; a third copy in the part is one more
    import_file(loaded, "transactions", write(tmp_path, "a.csv", SPLIT_A))
    part = HEADER + "S1,C1,NY,2025-01-06T10:00:00,P3,1,1.89,0\n" * 2
    report = import_file(loaded, "transactions", write(tmp_path, "b.csv", part))
    assert report.endswith("1 line items added (1 to baskets already present)")
    assert lines(loaded) == [("S1", "P1"), ("S1", "P3"), ("S1", "P3"), ("S2", "P1")]


def test_offsets_read_at_fixed_positions_as_the_general_parser_reads_them():
    from engine.ingest import _fixed_form, _parse_wall, _timestamp_parts

    values = [
        "2017-03-12T01:59:59-05:00",  # the last second before New York's spring-forward
        "2017-03-12T03:00:00-04:00",
        "2017-11-05T01:30:00-04:00",  # the repeated hour, both times
        "2017-11-05T01:30:00-05:00",
        "2024-06-01T12:00:00+05:30",
        "2025-01-01T00:00:00+14:00",
        "2025-01-01T00:00:00-12:00",
        None,
    ]
    frame = pl.DataFrame({"timestamp": values})
    wall, offset, zulu = _timestamp_parts("timestamp", True)
    general = frame.select(wall.alias("__wall"), offset.alias("__offset"), zulu.alias("__zulu"))
    general = general.with_columns(_parse_wall(general["__wall"]))
    fixed = _fixed_form(frame)
    assert fixed is not None and fixed.equals(general)
    assert fixed["__offset"].to_list() == [-300, -240, -240, -300, 330, 840, -720, None]
    # any value of another form (Z, a space, a fraction, letters): the general path, which names it
    for other in (
        "2017-03-12T01:59:59Z",
        "2017-03-12 01:59:59-05:00",
        "2017-03-12T01:59:59.5-05:00",
        "2017-03-12T0a:59:59-05:00",
        "2017-03-12T01:59:59-0a:00",
        "2017-03-12T01:59:59+-1:00",  # a sign where a digit belongs: int casts would read these as -60, +60, 299
        "2017-03-12T01:59:59++1:00",
        "2017-03-12T01:59:59+05:-1",
    ):
        assert _fixed_form(pl.DataFrame({"timestamp": [values[0], other]})) is None, other


def test_offsets_in_the_one_fixed_form_give_the_database_of_the_naive_export(request, db_url, tmp_path):
    other = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "other.db")
    for url, offsets in ((db_url, False), (other, True)):
        load_dimensions(url, tmp_path)
        text = _export(offsets, fixed=True)
        import_file(url, "transactions", write(tmp_path, f"tx-{offsets}.csv", text), timezone="America/New_York")
    assert "Z" not in _export(True, fixed=True) and "-04:00" in _export(True, fixed=True)
    assert dump(db_url) == dump(other)


# ------------------------------------------------------------------ a timestamp judged once a basket


def _references():
    from engine.ingest import _References

    return _References(
        pl.DataFrame({"store_id": ["NY", "LA", "HQ"], "timezone": ["America/New_York", "America/Los_Angeles", None]}),
        pl.DataFrame({"sku": ["P1", "P2", "P3"], "product_key": [1, 2, 3]}),
        pl.DataFrame({"customer_id": ["C1", "C2"], "customer_key": [10, 20]}),
    )


def _prepare(path: Path, monkeypatch, per_basket: bool):
    """`_prepare_transactions` of `path`, its timestamps judged once a basket or (per_basket False) once a line;
    (lines, baskets, whether the per-basket path was taken)."""
    import engine.ingest as ingest

    taken = []

    def spy(*args):  # noqa: ANN002
        taken.append(_timestamps_by_basket(*args) if per_basket else False)
        return taken[-1]

    monkeypatch.setattr(ingest, "_timestamps_by_basket", spy)
    lines, heads = ingest._prepare_transactions(
        ingest.read_table(path, "transactions"), _references(), "America/Chicago"
    )
    return lines, heads, taken == [True]


@pytest.mark.parametrize("fixed", [True, False])
def test_timestamps_judged_once_a_basket_land_as_when_judged_once_a_line(tmp_path, monkeypatch, fixed):
    """Baskets written as runs of rows with one timestamp each take the per-basket path: the same
    lines and baskets (store-local ts, day) as the per-line path, across both 2025 DST changes,
    three zones (one the chain's) and every form of offset."""
    stamps = (
        ["2025-03-09T01:59:59-05:00", "2025-03-09T03:00:00-04:00", "2025-11-02T01:30:00-04:00"]
        + ["2025-11-02T01:30:00-05:00", "2025-01-06T18:00:00-08:00", "2025-06-30T23:30:00-05:00"]
        + ([] if fixed else ["2025-11-02T05:30:00Z", "2025-03-09 03:30", "2025-11-02T02:30:00-05", "2025-01-06T10:00"])
    )
    stores = ["NY", "NY", "NY", "NY", "LA", "HQ", "NY", "LA", "HQ", "NY"]
    rows = [
        f"B{b},{'C1' if b % 3 else ''},{stores[b]},{stamp},P{1 + (b + i) % 3},{1 + i},{(1 + i) * 1.25:.2f},0"
        for b, stamp in enumerate(stamps)
        for i in range(1 + b % 4)
    ]
    path = write(tmp_path, "tx.csv", HEADER + "\n".join(rows) + "\n")
    by_line = _prepare(path, monkeypatch, per_basket=False)
    by_basket = _prepare(path, monkeypatch, per_basket=True)
    assert by_basket[2] and not by_line[2]
    assert by_basket[0].equals(by_line[0]) and by_basket[1].equals(by_line[1])
    assert by_basket[0].height == len(rows)
    # hand-worked: 01:30 EDT and 01:30 EST on 2 November are both 01:30 in New York; Chicago's zone for HQ
    ts = dict(by_basket[1].select("basket_id", pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S")).iter_rows())
    assert ts["B2"] == ts["B3"] == "2025-11-02T01:30:00"
    assert ts["B4"] == "2025-01-06T18:00:00" and ts["B5"] == "2025-06-30T23:30:00"


@pytest.mark.parametrize(
    "bad, reason",
    [
        ("2025-13-01T10:00:00", "not an ISO timestamp"),
        ("2025-01-06T10:00:00+02:00", "offset disagrees with the store's time zone America/New_York"),
        ("1969-12-31T10:00:00", "outside the years"),
    ],
)
def test_a_bad_timestamp_of_a_basket_run_names_every_row_of_it(tmp_path, monkeypatch, bad, reason):
    """A basket's bad timestamp is named on each of its rows, as the per-line path names them."""
    good = "2025-01-06T10:00:00-05:00"
    rows = [f"B1,C1,NY,{good},P1,1,1.00,0", *[f"B2,C2,NY,{bad},P{i},1,1.00,0" for i in (1, 2, 3)]]
    rows.append(f"B3,C1,NY,{good},P2,1,1.00,0")
    path = write(tmp_path, "tx.csv", HEADER + "\n".join(rows) + "\n")
    messages = []
    for per_basket in (False, True):
        with pytest.raises(InputError) as err:
            _prepare(path, monkeypatch, per_basket)
        messages.append(str(err.value))
    assert messages[0] == messages[1]
    assert [line.split(":")[1] for line in messages[1].splitlines()[:3]] == ["3", "4", "5"]
    assert reason in messages[1]
