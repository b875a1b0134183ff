"""Import: each kind of bad value is named by file, row and column; bad files import nothing."""

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import connect
from engine.errors import InputError
from engine.history import read_history
from engine.ingest import import_file, import_files

STORES = "store_id,name,city\nS01,Main St,Springfield\nS02,Elm,Shelbyville\n"
CUSTOMERS = ("customer_id,card_number,first_name,last_name,household_size,opted_out,joined_on\n"
             "C1,1234567890123456,Zoë,Ñandú,2,false,2024-01-02\n"
             "C2,2234567890123456,李,明,3,,2024-02-03\n")
PRODUCTS = ("sku,description,category,department,brand,brand_type,manufacturer_id,manufacturer_name,size,"
            "regular_price,unit_cost\n"
            "P1,Aspirin 100,ANALGESICS,HEALTH,Bayer,national,M1,Bayer AG,100ct,5.99,3.10\n"
            "P2,Our Own Aspirin 100,ANALGESICS,HEALTH,Our Own,store,M0,Chain,100ct,3.49,1.5\n")
TRANSACTIONS = ("basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n"
                "B1,C1,S01,2025-01-06T10:00:00,P1,1,5.99,0\n"
                "B1,C1,S01,2025-01-06T10:00:00,P2,2,6.98,\n"
                "B2,,S02,2025-01-07 11:00:00,P1,1,5.99,0.50\n"
                "B3,C2,S01,2025-01-08T12:30:00,P2,-1,-3.49,0\n")


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


def counts(url: str) -> dict[str, int]:
    tables = ["stores", "customers", "manufacturers", "products", "baskets", "basket_lines", "deals"]
    with connect(url).connect() as conn:
        return {t: conn.execute(sa.text(f"SELECT count(*) FROM {t}")).scalar() for t in tables}


def test_transactions_land_with_money_in_cents_and_returns_kept(loaded, tmp_path):
    import_file(loaded, "transactions", write(tmp_path, "tx.csv", TRANSACTIONS))
    with connect(loaded).connect() as conn:
        lines = conn.execute(sa.text("SELECT amount_cents, discount_cents, quantity FROM basket_lines "
                                     "ORDER BY amount_cents, discount_cents")).all()
    assert [tuple(r) for r in lines] == [(-349, 0, -1.0), (599, 0, 1.0), (599, 50, 1.0), (698, 0, 2.0)]
    history = read_history(loaded, end=dt.date(2026, 1, 1))
    assert history.height == 3                         # the card-less basket is not history
    assert history["category"].unique().to_list() == ["ANALGESICS"]


def test_reimporting_the_same_transactions_changes_nothing(loaded, tmp_path):
    path = write(tmp_path, "tx.csv", TRANSACTIONS)
    import_file(loaded, "transactions", path)
    before = counts(loaded)
    import_file(loaded, "transactions", path)
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        import_file(loaded, kind, write(tmp_path, f"{kind}.csv", text))
    assert counts(loaded) == before


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
def test_bad_transaction_value_names_file_row_and_column_and_imports_nothing(loaded, tmp_path, line, column,
                                                                            reason):
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


@pytest.mark.parametrize("line, column, reason", [
    ("P3,X,ANALGESICS,HEALTH,B,generic,M1,,1,1.00,0.5", "brand_type", "'national' or 'store'"),
    ("P3,X,ANALGESICS,HEALTH,B,store,M1,,1,-1.00,0.5", "regular_price", "must not be negative"),
    ("P3,X,ANALGESICS,HEALTH,B,store,M1,,1,1.2.3,0.5", "regular_price", "two decimals"),
    ("P1,X,ANALGESICS,HEALTH,B,store,M1,,1,1.00,0.5", "sku", "duplicate sku"),
    ("P3,X,,HEALTH,B,store,M1,,1,1.00,0.5", "category", "required value missing"),
])
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
    deals = ("deal_id,manufacturer_id,sku,category,brand,kind,value,funded_share,starts_on,ends_on,budget,"
             "max_per_customer\n"
             "D1,M1,P1,,,amount_off,1.50,1,2025-01-01,2025-03-31,500.00,1\n"
             "D2,M1,,ANALGESICS,,percent_off,25,0.5,2025-01-01,2025-03-31,,\n")
    import_file(loaded, "deals", write(tmp_path, "deals.csv", deals))
    with connect(loaded).connect() as conn:
        rows = conn.execute(sa.text("SELECT deal_id, value_cents, percent_bp, budget_cents FROM deals "
                                    "ORDER BY deal_id")).all()
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
