"""Import: each kind of bad value is named by file, row and column; bad files import nothing."""

import datetime as dt
from decimal import Decimal
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import Gateway, connect
from engine.errors import InputError
from engine.history import read_history
from engine.history_store import every_line
from engine.ingest import import_file, import_files
from tests.conftest import fresh_database

STORES = "store_id,name,city\nS01,Main St,Springfield\nS02,Elm,Shelbyville\n"
CUSTOMERS = (
    "customer_id,card_number,first_name,last_name,household_size,opted_out,joined_on\n"
    "C1,1234567890123456,Zoë,Ñandú,2,false,2024-01-02\n"
    "C2,2234567890123456,李,明,3,,2024-02-03\n"
)
PRODUCTS = (
    "sku,description,category,department,brand,brand_type,manufacturer_id,manufacturer_name,size,"
    "regular_price,unit_cost\n"
    "P1,Aspirin 100,ANALGESICS,HEALTH,Bayer,national,M1,Bayer AG,100ct,5.99,3.10\n"
    "P2,Our Own Aspirin 100,ANALGESICS,HEALTH,Our Own,store,M0,Chain,100ct,3.49,1.5\n"
)
TRANSACTIONS = (
    "basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"
    "B1,C1,S01,2025-01-06T10:00:00,P1,1,5.99,0\n"
    "B1,C1,S01,2025-01-06T10:00:00,P2,2,6.98,\n"
    "B2,,S02,2025-01-07 11:00:00,P1,1,5.99,0.50\n"
    "B3,C2,S01,2025-01-08T12:30:00,P2,-1,-3.49,0\n"
)


def write(tmp_path: Path, name: str, text: str | bytes) -> Path:
    path = tmp_path / name
    path.write_bytes(text if isinstance(text, bytes) else text.encode())
    return path


@pytest.fixture
def loaded(db_url, tmp_path):
    """A database holding stores, customers and products."""
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(db_url, kind, write(tmp_path, f"{kind}.csv", text))
    return db_url


def lines(url: str) -> pl.DataFrame:
    """Every line history holds (the Parquet parts and basket_lines), by basket_key and line_no."""
    with Gateway(url) as db:
        return every_line(db)


def counts(url: str) -> dict[str, int]:
    """Rows per table; "basket_lines": the lines history holds (`lines`)."""
    tables = ["stores", "customers", "manufacturers", "products", "baskets", "deals"]
    with connect(url).connect() as conn:
        found = {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}
    return {**found, "basket_lines": lines(url).height}


def test_transactions_land_with_money_in_cents_and_returns_kept(loaded, tmp_path):
    import_file(loaded, "transactions", write(tmp_path, "tx.csv", TRANSACTIONS))
    held = lines(loaded).select("amount_cents", "discount_cents", "quantity").sort("amount_cents", "discount_cents")
    assert held.rows() == [(-349, 0, -1.0), (599, 0, 1.0), (599, 50, 1.0), (698, 0, 2.0)]
    history = read_history(loaded, end=dt.date(2026, 1, 1))
    assert history.height == 3  # the card-less basket is not history
    assert history["category"].unique().to_list() == ["ANALGESICS"]


def test_reimporting_the_same_transactions_changes_nothing(loaded, tmp_path):
    path = write(tmp_path, "tx.csv", TRANSACTIONS)
    import_file(loaded, "transactions", path)
    before = counts(loaded)
    import_file(loaded, "transactions", path)
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(loaded, kind, write(tmp_path, f"{kind}.csv", text))
    assert counts(loaded) == before


def test_padded_values_import_as_the_clean_ones(request, loaded, tmp_path):
    """Spaces, a tab and a no-break space around values are stripped; text without any is taken as
    it is (`engine.ingest._text_bytes` decides per column, from the bytes)."""
    padded = TRANSACTIONS.replace("B1,C1,S01", " B1,C1 ,S01\t").replace("P2,-1", "\u00a0P2,-1 ")
    import_file(loaded, "transactions", write(tmp_path, "padded.csv", padded))
    other_dir = tmp_path / "clean"
    other_dir.mkdir()
    other = fresh_database(request, other_dir, "sqlite" if loaded.startswith("sqlite") else "postgres")
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(other, kind, write(other_dir, f"{kind}.csv", text))
    import_file(other, "transactions", write(other_dir, "clean.csv", TRANSACTIONS))
    assert lines(loaded).equals(lines(other))
    sql = "SELECT store_id, basket_id, customer_key, line_count, line_sum FROM baskets ORDER BY basket_key"
    with connect(loaded).connect() as a, connect(other).connect() as b:
        assert a.execute(sa.text(sql)).all() == b.execute(sa.text(sql)).all()


def test_text_bytes_says_where_a_strip_or_a_nul_check_is_needed():
    from engine.ingest import _text_bytes

    def facts(values):
        return _text_bytes(pl.Series(values, dtype=pl.String))

    assert facts(["B1", None, "", "a longer value than twelve bytes"]) == (False, False, True)
    assert facts(["B1", None, "a longer value than twelve bytes"]) == (False, False, False)
    assert facts([]) == facts([None]) == (False, False, False)
    assert facts([""]) == facts(["", None]) == (False, False, True)
    for padded in (" B1", "B1 ", "\tB1", "B1\r", "\u00a0B1", "B1\u3000", "x" * 30 + " "):
        assert facts(["B2", padded]) == (True, False, False), padded
    assert facts(["B2", "a\x00b"]) == (False, True, False)
    assert facts(pl.Series([" a", "b", "c"]).slice(1)) == (False, False, False)  # a slice: its own values only
    assert facts(pl.Series(["", "b", "c"]).slice(1)) == (False, False, False)
    assert _text_bytes(pl.concat([pl.Series(["a"]), pl.Series([" b"])], rechunk=False)) == (True, False, False)
    assert _text_bytes(pl.concat([pl.Series(["a"]), pl.Series(["", None])], rechunk=False)) == (False, False, True)


def test_empty_text_is_missing_whether_or_not_a_column_is_stripped(loaded, tmp_path):
    """An empty value ("" in a Parquet file) is missing in a column that needs no strip as in one that
    does: an optional one null, a required one refused (`read_table` makes "" null only in the
    columns that hold one)."""
    row = {"basket_id": "B9", "customer_id": "", "store_id": "S01", "timestamp": "2025-03-03T10:00:00"}
    row |= {"sku": "P1", "quantity": "1", "amount": "2.00", "discount": "0"}
    pl.DataFrame([row]).write_parquet(tmp_path / "anonymous.parquet")
    import_file(loaded, "transactions", tmp_path / "anonymous.parquet")
    with connect(loaded).connect() as conn:
        assert conn.execute(sa.text("SELECT customer_key FROM baskets WHERE basket_id = 'B9'")).all() == [(None,)]
    for skus in (["", "P1"], ["", " P1"]):  # the column needs no strip, then one
        frame = pl.DataFrame([row | {"basket_id": "B8", "customer_id": "C1", "sku": sku} for sku in skus])
        frame.write_parquet(tmp_path / "missing.parquet")
        with pytest.raises(InputError, match=r"missing\.parquet:1: column 'sku': required value missing"):
            import_file(loaded, "transactions", tmp_path / "missing.parquet")


@pytest.mark.parametrize("kind", ["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
@pytest.mark.parametrize("older", [False, True])
def test_baskets_are_numbered_in_the_order_of_their_unique_index(request, tmp_path, monkeypatch, older, kind):
    """A file's baskets get their keys in the order of the baskets' unique index: schema.sql's
    (basket_id, store_id), or (store_id, basket_id) in a database created before (which keeps it)."""
    import engine.db
    from engine.ingest import _unique_order

    if older:  # the schema as it was: the index on (store_id, basket_id)
        statements = engine.db.schema_statements()
        assert sum("UNIQUE (basket_id, store_id)" in s for s in statements) == 1
        monkeypatch.setattr(
            engine.db,
            "schema_statements",
            lambda: [s.replace("UNIQUE (basket_id, store_id)", "UNIQUE (store_id, basket_id)") for s in statements],
        )
    url = fresh_database(request, tmp_path, kind)
    monkeypatch.undo()
    for name, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(url, name, write(tmp_path, f"{name}.csv", text))
    # by store then basket: S01/B2, S02/B1; by basket then store: B1/S02, B2/S01
    rows = "B1,C1,S02,2025-01-06T10:00:00,P1,1,5.99,0\nB2,C2,S01,2025-01-06T11:00:00,P2,1,3.49,0\n"
    import_file(url, "transactions", write(tmp_path, "two.csv", TRANSACTIONS.split("\n")[0] + "\n" + rows))
    with Gateway(url) as db:
        assert _unique_order(db) == (("store_id", "basket_id") if older else ("basket_id", "store_id"))
    with connect(url).connect() as conn:
        got = conn.execute(sa.text("SELECT basket_id FROM baskets ORDER BY basket_key")).scalars().all()
    assert got == (["B2", "B1"] if older else ["B1", "B2"])


def test_parquet_imports_like_csv(loaded, tmp_path):
    frame = pl.read_csv(write(tmp_path, "tx.csv", TRANSACTIONS), infer_schema=False)
    frame.write_parquet(tmp_path / "tx.parquet")
    import_file(loaded, "transactions", tmp_path / "tx.parquet")
    assert counts(loaded)["basket_lines"] == 4


BAD_TRANSACTIONS = [
    # (bad line, expected column, expected reason fragment)
    ("B9,C1,S01,2025-13-45T10:00:00,P1,1,5.99,0", "timestamp", "not an ISO timestamp"),
    ("B9,C1,S01,2025-01-06T10:00:00,P1,1,5.999,0", "amount", "two decimals"),
    ("B9,C1,S01,2025-01-06T10:00:00,P1,1,abc,0", "amount", "two decimals"),
    ("B9,C1,S99,2025-01-06T10:00:00,P1,1,5.99,0", "store_id", "unknown store"),
    ("B9,C1,S01,2025-01-06T10:00:00,NOPE,1,5.99,0", "sku", "unknown sku"),
    ("B9,C404,S01,2025-01-06T10:00:00,P1,1,5.99,0", "customer_id", "unknown customer"),
    ("B9,C1,S01,2025-01-06T10:00:00,P1,0,5.99,0", "quantity", "non-zero"),
    ("B9,C1,S01,2025-01-06T10:00:00,P1,1,5.99,-1", "discount", "must not be negative"),
    ("B9,C1,S01,,P1,1,5.99,0", "timestamp", "required value missing"),
]


@pytest.mark.parametrize("line, column, reason", BAD_TRANSACTIONS)
def test_bad_transaction_value_names_file_row_and_column_and_imports_nothing(loaded, tmp_path, line, column, reason):
    before = counts(loaded)
    path = write(tmp_path, "bad.csv", TRANSACTIONS + line + "\n")
    with pytest.raises(InputError, match=rf"bad\.csv:6: column '{column}': .*{reason}"):
        import_file(loaded, "transactions", path)
    assert counts(loaded) == before


def test_lines_of_one_basket_must_agree(loaded, tmp_path):
    path = write(tmp_path, "bad.csv", TRANSACTIONS + "B1,C2,S01,2025-01-06T10:00:00,P1,1,5.99,0\n")
    with pytest.raises(InputError, match=r"bad\.csv:\d: column 'basket_id': lines of one basket disagree"):
        import_file(loaded, "transactions", path)


def test_missing_required_column_is_named(loaded, tmp_path):
    path = write(tmp_path, "tx.csv", "basket_id,store_id,timestamp,sku,quantity\nB1,S01,2025-01-06T10:00:00,P1,1\n")
    with pytest.raises(InputError, match=r"tx\.csv:1: column 'amount': required column missing"):
        import_file(loaded, "transactions", path)


def test_non_utf8_bytes_are_named_by_row_and_column(loaded, tmp_path):
    path = write(tmp_path, "cust.csv", CUSTOMERS.encode() + b"C3,3234567890123456,Jos\xe9,Ruiz,1,false,2024-01-01\n")
    with pytest.raises(InputError, match=r"cust\.csv:4: column 'first_name': not valid UTF-8"):
        import_file(loaded, "customers", path)
    assert counts(loaded)["customers"] == 2


@pytest.mark.parametrize(
    "line, column, reason",
    [
        ("P3,X,ANALGESICS,HEALTH,B,generic,M1,,1,1.00,0.5", "brand_type", "'national' or 'store'"),
        ("P3,X,ANALGESICS,HEALTH,B,store,M1,,1,-1.00,0.5", "regular_price", "must not be negative"),
        ("P3,X,ANALGESICS,HEALTH,B,store,M1,,1,1.2.3,0.5", "regular_price", "two decimals"),
        ("P1,X,ANALGESICS,HEALTH,B,store,M1,,1,1.00,0.5", "sku", "duplicate sku"),
        ("P3,X,,HEALTH,B,store,M1,,1,1.00,0.5", "category", "required value missing"),
    ],
)
def test_bad_product_is_refused_whole(loaded, tmp_path, line, column, reason):
    path = write(tmp_path, "products2.csv", PRODUCTS + line + "\n")
    with pytest.raises(InputError, match=rf"products2\.csv:4: column '{column}': .*{reason}"):
        import_file(loaded, "products", path)
    assert counts(loaded)["products"] == 2


def test_duplicate_and_foreign_card_numbers_are_refused(loaded, tmp_path):
    path = write(tmp_path, "c.csv", "customer_id,card_number\nC9,1234567890123456\n")
    with pytest.raises(InputError, match=r"c\.csv:2: column 'card_number': card_number belongs to another"):
        import_file(loaded, "customers", path)


def test_deals_convert_money_and_percent(loaded, tmp_path):
    deals = (
        "deal_id,manufacturer_id,sku,category,brand,kind,value,funded_share,starts_on,ends_on,budget,"
        "max_per_customer\n"
        "D1,M1,P1,,,amount_off,1.50,1,2025-01-01,2025-03-31,500.00,1\n"
        "D2,M1,,ANALGESICS,,percent_off,25,0.5,2025-01-01,2025-03-31,,\n"
    )
    import_file(loaded, "deals", write(tmp_path, "deals.csv", deals))
    with connect(loaded).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT deal_id, value_cents, percent_bp, budget_cents FROM deals ORDER BY deal_id")
        ).all()
    assert [tuple(r) for r in rows] == [("D1", 150, None, 50000), ("D2", None, 2500, None)]
    bad = deals + "D3,M404,P1,,,amount_off,1,1,2025-01-01,2025-03-31,,\n"
    with pytest.raises(InputError, match=r"deals2\.csv:4: column 'manufacturer_id': unknown manufacturer"):
        import_file(loaded, "deals", write(tmp_path, "deals2.csv", bad))


def test_import_files_reads_a_directory_of_parts(loaded, tmp_path):
    parts = tmp_path / "parts"
    parts.mkdir()
    lines = TRANSACTIONS.splitlines()
    write(parts, "part-0.csv", "\n".join(lines[:3]) + "\n")
    write(parts, "part-1.csv", "\n".join([lines[0], *lines[3:]]) + "\n")
    report = import_files(loaded, "transactions", [parts])
    assert len(report) == 2 and counts(loaded)["basket_lines"] == 4


# ------------------------------------------------------------------ issue 13: tracebacks instead of errors

HEADER = "basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"
GOOD = "B9,C1,S01,2025-01-06T10:00:00,P1,1,5.99,0\n"


def cli_import(url: str, kind: str, path: Path, capsys) -> str:
    from engine.cli import main

    assert main(["-q", "--database", url, "import", kind, str(path)]) == 1
    return capsys.readouterr().err


@pytest.mark.parametrize(
    "kind, name, text, where",
    [
        (
            "transactions",
            "t.csv",
            HEADER + GOOD + "B1,C1,S01,2025-01-06T10:00:00,P1,1,12345678901234567.00,0\n",
            "t.csv:3: column 'amount': more than 9 digits",
        ),
        (
            "transactions",
            "t.csv",
            HEADER + GOOD + "B1,C1,S01,2025-01-06T10:00:00,P1,1,1.00,1234567890.00\n",
            "t.csv:3: column 'discount': more than 9 digits",
        ),
        (
            "products",
            "p.csv",
            "sku,category,brand_type,regular_price\nP9,X,store,1.00\nP8,X,store,12345678901234567\n",
            "p.csv:3: column 'regular_price': more than 9 digits",
        ),
        (
            "transactions",
            "t.csv",
            HEADER.replace("sku,", "sku,SKU,") + "B1,C1,S01,2025-01-06T10:00:00,P1,P2,1,1.00,0\n",
            "t.csv:1: column 'sku': appears twice in the header",
        ),
        (
            "transactions",
            "t.csv",
            HEADER + GOOD + "B1,C1,S01,9999-12-31T23:00:00,P1,1,1.00,0\n",
            "t.csv:3: column 'timestamp': outside the years 1970-2099",
        ),
        (
            "transactions",
            "t.csv",
            HEADER + GOOD + "B\x001,C1,S01,2025-01-06T10:00:00,P1,1,1.00,0\n",
            "t.csv:3: column 'basket_id': NUL byte in text",
        ),
        ("stores", "s.csv", "store_id,name\nS09,Ma\x00in\n", "s.csv:2: column 'name': NUL byte in text"),
    ],
)
def test_hostile_values_are_one_line_errors_through_the_cli(loaded, tmp_path, capsys, kind, name, text, where):
    before = counts(loaded)
    err = cli_import(loaded, kind, write(tmp_path, name, text), capsys)
    assert err.startswith(f"error: {where}")
    assert "Traceback" not in err and "\x00" not in err
    assert counts(loaded) == before


def _parquet(tmp_path: Path, **amount) -> Path:
    frame = pl.DataFrame(
        {
            "basket_id": ["B1", "B2"],
            "store_id": ["S01", "S01"],
            "timestamp": ["2025-01-06T10:00:00", "2025-01-07T10:00:00"],
            "sku": ["P1", "P2"],
            "quantity": [1, 2],
            **amount,
        }
    )
    path = tmp_path / "t.parquet"
    frame.write_parquet(path)
    return path


@pytest.mark.parametrize(
    "column, where",
    [
        (pl.Series("amount", [["1.00"], ["2.00"]]), "t.parquet:1: column 'amount': a Parquet List(String) column"),
        (pl.Series("amount", [b"1.00", b"\xff"]), "t.parquet:2: column 'amount': not valid UTF-8"),
        (
            pl.Series("amount", [Decimal("1.00"), Decimal(10**27)], dtype=pl.Decimal(38, 2)),
            "t.parquet:2: column 'amount': more than 9 digits",
        ),
    ],
)
def test_hostile_parquet_columns_are_one_line_errors(loaded, tmp_path, capsys, column, where):
    before = counts(loaded)
    err = cli_import(loaded, "transactions", _parquet(tmp_path, amount=column), capsys)
    assert err.startswith(f"error: {where}")
    assert counts(loaded) == before


def test_parquet_decimal_and_binary_columns_import_exactly(loaded, tmp_path):
    amounts = pl.Series("amount", [Decimal("5.99"), Decimal("6.98")], dtype=pl.Decimal(38, 10))
    path = _parquet(tmp_path, amount=amounts)
    pl.read_parquet(path).with_columns(pl.col("basket_id").cast(pl.Binary)).write_parquet(path)
    import_file(loaded, "transactions", path)
    got = lines(loaded)["amount_cents"].sort().to_list()
    assert got == [599, 698]


def test_a_header_only_file_imports_nothing_and_says_so(loaded, tmp_path):
    report = import_file(loaded, "transactions", write(tmp_path, "t.csv", HEADER))
    assert report.endswith("0 rows read, 0 line items added (0 to baskets already present)")
    assert counts(loaded)["baskets"] == 0


def test_a_basket_resent_on_another_day_is_named(loaded, tmp_path, capsys):
    import_file(loaded, "transactions", write(tmp_path, "a.csv", HEADER + GOOD))
    before = counts(loaded)
    err = cli_import(loaded, "transactions", write(tmp_path, "b.csv", HEADER + GOOD.replace("01-06", "03-06")), capsys)
    assert err.startswith("error: b.csv:2: column 'timestamp': basket B9 of store S01 is already present")
    assert counts(loaded) == before


@pytest.mark.parametrize("command", ["profile", "customers"])
def test_reading_commands_on_a_missing_database_fail_in_one_line_and_create_nothing(tmp_path, capsys, command):
    from engine.cli import main

    path = tmp_path / "none.db"
    assert (
        main(
            [
                "-q",
                "--database",
                f"sqlite:///{path}",
                command,
                "--as-of",
                "2025-02-01",
                "--out",
                str(tmp_path / "out.csv"),
            ]
        )
        == 1
    )
    assert "does not exist: run 'listwise init' first" in capsys.readouterr().err
    assert not path.exists()


@pytest.mark.parametrize("command", ["profile", "customers"])
def test_reading_commands_on_an_uninitialised_or_empty_database_fail_in_one_line(
    request, db_url, tmp_path, capsys, command
):
    from engine.cli import main

    args = [command, "--as-of", "2025-02-01", "--out", str(tmp_path / "out.csv")]
    assert main(["-q", "--database", db_url, *args]) == 1  # initialised, no history
    assert "no purchase history before 2025-02-01" in capsys.readouterr().err
    bare = tmp_path / "bare.db"
    connect(f"sqlite:///{bare}").connect().close()  # a file without tables
    assert main(["-q", "--database", f"sqlite:///{bare}", *args]) == 1
    assert "is not initialised: run 'listwise init' first" in capsys.readouterr().err


# ------------------------------------------------------------------ re-import without reading basket_lines


def test_the_checkout_and_the_import_compute_the_same_line_checksum():
    from engine.ingest import _checksums, line_checksum

    rows = [(3, 1.0, 599, 0), (3, 1.0, 599, 0), (7, -0.25, -349, 0), (2**40, 2.5, 10**11, 50)]
    frame = pl.DataFrame(rows, schema=["product_key", "quantity", "amount_cents", "discount_cents"], orient="row")
    ours = _checksums(frame.with_columns(pl.lit(1).alias("b")), ["b"]).row(0)[1:]
    assert ours == line_checksum(rows)
    assert line_checksum(rows[::-1]) == line_checksum(rows)  # order-free
    assert line_checksum(rows[:3]) != line_checksum(rows[:2] + [(7, -0.25, -348, 0)])


def test_a_plain_reimport_reads_no_basket_lines(loaded, tmp_path, monkeypatch):
    import engine.ingest as ingest

    read = []
    original = ingest._read_held
    monkeypatch.setattr(
        ingest, "_read_held", lambda bulk, store, keys: read.append(keys.height) or original(bulk, store, keys)
    )
    path = write(tmp_path, "t.csv", TRANSACTIONS)
    import_file(loaded, "transactions", path)
    before = counts(loaded)
    assert import_file(loaded, "transactions", path).endswith("0 line items added (0 to baskets already present)")
    assert read == [0]  # every basket matched its stored count and checksum
    assert counts(loaded) == before


def test_a_database_without_the_checksums_is_upgraded_and_still_compared(loaded, tmp_path):
    from engine.db import init_schema

    path = write(tmp_path, "t.csv", TRANSACTIONS)
    import_file(loaded, "transactions", path)
    engine = connect(loaded)
    with engine.begin() as conn:  # as an import before this version left them
        conn.execute(sa.text("UPDATE baskets SET line_count = NULL, line_sum = NULL"))
    init_schema(engine)  # idempotent on a current database
    counts_before = counts(loaded)
    assert import_file(loaded, "transactions", path).endswith("0 line items added (0 to baskets already present)")
    assert counts(loaded) == counts_before
    with engine.connect() as conn:  # filled in by the comparison
        assert conn.execute(sa.text("SELECT count(*) FROM baskets WHERE line_sum IS NULL")).scalar() == 0
    engine.dispose()


def test_init_adds_the_checksum_columns_to_an_older_database(tmp_path):
    from engine.db import init_schema

    url = f"sqlite:///{tmp_path / 'old.db'}"
    engine = connect(url)
    init_schema(engine)
    with engine.begin() as conn:
        conn.exec_driver_sql("ALTER TABLE baskets DROP COLUMN line_sum")
        conn.exec_driver_sql("ALTER TABLE baskets DROP COLUMN line_count")
    init_schema(engine)
    assert {"line_count", "line_sum"} <= {c["name"] for c in sa.inspect(engine).get_columns("baskets")}
    engine.dispose()


def _many_baskets(seed: int) -> pl.DataFrame:
    """60 baskets of 1-6 lines (of 5 customers, a sixth without a card), grouped by basket."""
    import numpy as np

    rng = np.random.default_rng(seed)
    rows = []
    for b in range(60):
        customer = ["C1", "C2", "C3", "C4", "C5", ""][b % 6]
        ts = f"2025-01-{1 + rng.integers(0, 28):02d}T{rng.integers(7, 22):02d}:00:00"
        store = ["S01", "S02"][int(rng.integers(0, 2))]
        for _ in range(int(rng.integers(1, 7))):
            qty = int(rng.choice([-1, 1, 2, 3]))
            amount = f"{qty * float(rng.choice([3.49, 5.99])):.2f}"
            rows.append((f"B{b:03d}", customer, store, ts, str(rng.choice(["P1", "P2"])), str(qty), amount, "0"))
    return pl.DataFrame(
        rows,
        schema=["basket_id", "customer_id", "store_id", "timestamp", "sku", "quantity", "amount", "discount"],
        orient="row",
    )


def _imported(url: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every line with its basket's store_id and basket_id instead of basket_key; the baskets' rows)."""
    with connect(url).connect() as conn:
        baskets = pl.DataFrame(
            conn.execute(
                sa.text(
                    "SELECT basket_key, store_id, basket_id, customer_key, CAST(day AS TEXT), line_count, line_sum "
                    "FROM baskets"
                )
            ).all(),
            schema=["basket_key", "store_id", "basket_id", "customer_key", "day", "line_count", "line_sum"],
            orient="row",
        )
    held = lines(url).join(baskets.select("basket_key", "store_id", "basket_id"), on="basket_key")
    keyless = ["store_id", "basket_id", "line_no", "customer_key", "day", "product_key", "quantity", "amount_cents"]
    return held.select(keyless).sort("store_id", "basket_id", "line_no"), baskets.drop("basket_key").sort(
        "store_id", "basket_id"
    )


@pytest.mark.parametrize("seed", range(2))
def test_interleaved_baskets_import_as_the_same_lines_grouped_by_basket(request, db_url, tmp_path, seed):
    """Grouped lines take the runs path, interleaved ones the join path: the same lines, line numbers,
    checksums and baskets, and part files in history's order either way."""
    from engine.history_store import _SORT

    grouped = _many_baskets(seed)
    # round-robin over the baskets (every basket's first line, then every second line...): no basket
    # is one run of rows, and each basket's own lines keep their order
    interleaved = (
        grouped.with_columns(pl.int_range(pl.len()).over("basket_id").alias("i")).sort("i", maintain_order=True)
    ).drop("i")
    assert interleaved.select((pl.col("basket_id") != pl.col("basket_id").shift(1)).sum()).item() > 100
    more_customers = CUSTOMERS + "".join(f"C{i},,,,,,\n" for i in (3, 4, 5))
    results = []
    for name, frame in (("grouped", grouped), ("interleaved", interleaved)):
        url = db_url
        if name == "interleaved":
            url = fresh_database(request, tmp_path, "sqlite" if db_url.startswith("sqlite") else "postgres", "i.db")
        with connect(url).begin() as conn:  # 2 buckets, not 64: customers share a bucket's files
            conn.execute(sa.text("UPDATE history_store SET buckets = 2"))
        for kind, text in (("stores", STORES), ("customers", more_customers), ("products", PRODUCTS)):
            import_file(url, kind, write(tmp_path, f"{name}-{kind}.csv", text))
        frame.write_csv(tmp_path / f"{name}.csv")
        import_file(url, "transactions", tmp_path / f"{name}.csv")
        results.append(_imported(url))
        with Gateway(url) as db:
            store = db.history_store()
            for path in store.root.glob("bucket=*/*.parquet"):
                part = pl.read_parquet(path)
                assert part.equals(part.sort(_SORT)), path
    (lines_a, baskets_a), (lines_b, baskets_b) = results
    assert lines_a.height == grouped.height
    assert lines_a.equals(lines_b)
    assert baskets_a.equals(baskets_b)
    # line numbers follow each basket's rows in the file
    first = grouped.with_row_index().filter(pl.col("basket_id") == "B000")
    assert lines_a.filter(pl.col("basket_id") == "B000")["line_no"].to_list() == list(range(1, first.height + 1))


@pytest.mark.parametrize("layout", ["grouped", "interleaved"])
def test_new_baskets_carry_their_lines_checksum_timestamp_and_keys_in_unique_key_order(
    request, db_url, tmp_path, layout
):
    """The baskets' rows (made from the file's frame while its lines are still being collected) agree
    with the lines history holds: line_count and line_sum are `line_checksum` of them, ts is the
    file's; keys are given in the unique index's order (basket_id, store_id), whatever order the file has."""
    from engine.ingest import line_checksum

    frame = _many_baskets(0)
    if layout == "interleaved":  # the join path: no basket is one run of rows
        frame = frame.with_columns(pl.int_range(pl.len()).over("basket_id").alias("i")).sort("i", maintain_order=True)
    frame = frame.drop("i", strict=False).reverse() if layout == "grouped" else frame.drop("i")
    more_customers = CUSTOMERS + "".join(f"C{i},,,,,,\n" for i in (3, 4, 5))
    for kind, text in (("stores", STORES), ("customers", more_customers), ("products", PRODUCTS)):
        import_file(db_url, kind, write(tmp_path, f"{kind}.csv", text))
    frame.write_csv(tmp_path / "tx.csv")
    import_file(db_url, "transactions", tmp_path / "tx.csv")
    with connect(db_url).connect() as conn:
        rows = conn.execute(
            sa.text("SELECT basket_key, store_id, basket_id, CAST(ts AS TEXT), line_count, line_sum FROM baskets")
        ).all()
    baskets = pl.DataFrame(
        rows, schema=["basket_key", "store_id", "basket_id", "ts", "line_count", "line_sum"], orient="row"
    ).sort("basket_key")
    assert baskets.height == 60
    assert baskets.select("basket_id", "store_id").equals(baskets.select("basket_id", "store_id").sort(pl.all()))
    held = lines(db_url)
    for key, n, total in baskets.select("basket_key", "line_count", "line_sum").iter_rows():
        mine = held.filter(pl.col("basket_key") == key)
        assert (n, total) == line_checksum(
            mine.select("product_key", "quantity", "amount_cents", "discount_cents").iter_rows()
        )
    stamps = frame.group_by("basket_id").agg(pl.col("timestamp").first())
    got = baskets.select("basket_id", pl.col("ts").str.slice(0, 19).str.replace(" ", "T")).join(stamps, on="basket_id")
    assert got.height == 60 and (got["ts"] == got["timestamp"]).all()


def test_a_disagreeing_line_inside_its_basket_run_is_named(loaded, tmp_path):
    text = TRANSACTIONS.replace(
        "B1,C1,S01,2025-01-06T10:00:00,P2,2,6.98,\n", "B1,C1,S01,2025-01-06T10:00:01,P2,2,6.98,\n"
    )
    before = counts(loaded)
    with pytest.raises(InputError, match=r"bad\.csv:2: column 'basket_id': lines of one basket disagree"):
        import_file(loaded, "transactions", write(tmp_path, "bad.csv", text))
    assert counts(loaded) == before
