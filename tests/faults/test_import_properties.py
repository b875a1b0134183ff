"""Property-based bad inputs for the import validator (engine/ingest.py), with hypothesis.

Generated transaction, customer and product files — good rows, then random damage: odd bytes,
NUL, huge numbers, bad dates, missing and case-twin columns, empty and header-only files, other
line endings, broken quoting. Whatever the file, one of two things happens:

* the import lands whole: the rows it adds are the file's rows, and importing it again adds
  nothing and changes nothing; a file with no damage always lands;
* or it raises `InputError` whose first line names the file, the row and the column
  (``name:row: column 'x': ...``), every line names the file, and the database is unchanged;
  damage the contract refuses (a huge amount, an impossible date, a missing column...) always
  raises.

Never another exception type. The example counts are hypothesis profiles in
tests/faults/conftest.py (``faults``: few, derandomised, for CI; ``HYPOTHESIS_PROFILE=faults-explore``:
many, random).
"""

from __future__ import annotations

import csv
import io
import itertools
import re
from pathlib import Path

import pytest
import sqlalchemy as sa
from hypothesis import given
from hypothesis import strategies as st

from engine.db import Gateway, connect
from engine.errors import InputError
from engine.history_store import every_line
from engine.ingest import import_file
from tests.engine.test_ingest import CUSTOMERS, PRODUCTS, STORES

_EXAMPLE = itertools.count(1)  # each example's keys are its own: examples share one database

# (cell, refused by the contract in any column it damages)
ODD_CELLS = [
    ("\x00", True),
    ("a\x00b", True),
    ("\u202e\u0301", False),
    ("😀", False),
    ("  ", False),
    ('"', False),
    ("a,b", False),
    ("line\nbreak", False),
    ("NaN", False),
    ("inf", False),
    ("-0", False),
]
HUGE = ["12345678901234567", "1e400", "99999999999.99", "-1000000000", "1" * 40]
BAD_DATES = ["2025-02-30", "2025-13-01", "yesterday", "2025-1-5", "20250105"]  # (year 9999 is a date: it lands)
BAD_TIMESTAMPS = [
    "2025-02-30T10:00:00",
    "9999-12-31T23:59:59",
    "0001-01-01T00:00:00",
    "2025-01-06T25:00:00",
    "2025-01-06T10:00:00+99:00",
    "noon",
    "2025-01-06T10:00:00-05:00:00",
]


def _table(url: str, sql: str) -> list[tuple]:
    engine = connect(url)
    with engine.connect() as conn:
        rows = [tuple(r) for r in conn.execute(sa.text(sql))]
    engine.dispose()
    return rows


def _lines(url: str) -> list[tuple]:
    """The lines history holds (Parquet parts and basket_lines), by basket_key and line_no."""
    with Gateway(url) as db:
        held = every_line(db)
    return held.select("basket_key", "line_no", "product_key", "quantity", "amount_cents", "discount_cents").rows()


def _state(url: str) -> dict[str, list]:
    """Everything an import writes, the `imports` log aside."""
    return {
        "stores": _table(url, "SELECT * FROM stores ORDER BY store_id"),
        "customers": _table(url, "SELECT * FROM customers ORDER BY customer_key"),
        "products": _table(url, "SELECT * FROM products ORDER BY product_key"),
        "manufacturers": _table(url, "SELECT * FROM manufacturers ORDER BY manufacturer_id"),
        "baskets": _table(
            url,
            "SELECT basket_key, store_id, basket_id, customer_key, CAST(ts AS TEXT), line_count, "
            "line_sum FROM baskets ORDER BY basket_key",
        ),
        "basket_lines": _lines(url),
        "sequences": _table(url, "SELECT name, next_value FROM sequences WHERE name <> 'imports' ORDER BY name"),
    }


# ---------------------------------------------------------------- generated files


def _money(draw, low: int = 0, high: int = 99_999) -> str:
    cents = draw(st.integers(low, high))
    return draw(
        st.sampled_from([f"{cents / 100:.2f}", f"{cents // 100}" if cents % 100 == 0 else f"{cents / 100:.2f}"])
    )


@st.composite
def transactions(draw, tag: str) -> list[dict]:
    rows = []
    for b in range(draw(st.integers(1, 6))):
        # one basket: one store, customer and timestamp on all its lines
        store, customer = draw(st.sampled_from(["S01", "S02"])), draw(st.sampled_from(["C1", "C2", ""]))
        ts = (
            f"2025-01-{draw(st.integers(6, 28)):02d}{draw(st.sampled_from(['T', ' ']))}"
            f"{draw(st.integers(0, 23)):02d}:{draw(st.integers(0, 59)):02d}:00"
        )
        for _ in range(draw(st.integers(1, 4))):
            qty = draw(st.sampled_from(["1", "2", "0.5", "-1", "12"]))
            amount = _money(draw)
            if qty.startswith("-"):
                amount = "-" + amount
            rows.append(
                {
                    "basket_id": f"{tag}-B{b}",
                    "customer_id": customer,
                    "store_id": store,
                    "timestamp": ts,
                    "sku": draw(st.sampled_from(["P1", "P2"])),
                    "quantity": qty,
                    "amount": amount,
                    "discount": draw(st.sampled_from(["", "0", "0.10", "1"])),
                }
            )
    return rows


@st.composite
def customers(draw, tag: str) -> list[dict]:
    n = draw(st.integers(1, 6))
    return [
        {
            "customer_id": f"{tag}-C{i}",
            "card_number": f"9{int(tag[1:]):07d}{i:04d}",
            "first_name": draw(st.text(max_size=8).filter(lambda t: "\x00" not in t)),
            "household_size": draw(st.sampled_from(["", "1", "4", "20"])),
            "opted_out": draw(st.sampled_from(["", "true", "false", "Y", "0"])),
            "joined_on": draw(st.sampled_from(["", "2024-02-29", "2025-01-06"])),
        }
        for i in range(n)
    ]


@st.composite
def products(draw, tag: str) -> list[dict]:
    n = draw(st.integers(1, 6))
    return [
        {
            "sku": f"{tag}-P{i}",
            "description": draw(st.text(max_size=10).filter(lambda t: "\x00" not in t)),
            "category": draw(st.sampled_from(["COFFEE", "TEA", "Baby Food"])),
            "brand_type": draw(st.sampled_from(["national", "store", "Store"])),
            "manufacturer_id": f"{tag}-M",
            "regular_price": _money(draw),
            "unit_cost": _money(draw, 0, 500),
        }
        for i in range(n)
    ]


# kind -> (generator, required columns, columns whose damage the contract refuses: column -> bad cells)
KINDS = {
    "transactions": (
        transactions,
        ["basket_id", "store_id", "timestamp", "sku", "quantity", "amount"],
        {
            "amount": HUGE + ["1.234", "$5", "5,00"],
            "discount": HUGE + ["-1.00"],
            "quantity": ["0", "1e400", "NaN", "many", "99999"],
            "timestamp": BAD_TIMESTAMPS,
            "store_id": ["S99"],
            "sku": ["NOPE"],
            "customer_id": ["C404"],
        },
    ),
    "customers": (
        customers,
        ["customer_id"],
        {
            "household_size": HUGE + ["0", "2.5", "-1"],
            "joined_on": BAD_DATES,
            "card_number": ["12", "1234-5678-9012", "1" * 20],
            "opted_out": ["maybe", "2"],
        },
    ),
    "products": (
        products,
        ["sku", "category", "brand_type"],
        {
            "regular_price": HUGE + ["-1.00", "1.999"],
            "unit_cost": HUGE + ["-0.01", "abc"],
            "brand_type": ["generic", "national store"],
        },
    ),
}


@st.composite
def damaged_file(draw, kind: str) -> tuple[bytes, list[dict], bool, bool]:
    """(file bytes, its good rows, damaged at all, damage the contract refuses)."""
    make, required, refusable = KINDS[kind]
    tag = f"E{next(_EXAMPLE)}"
    rows = draw(make(tag))
    columns = list(rows[0])
    damage = draw(
        st.sampled_from(
            [
                "none",
                "none",
                "cell",
                "refused-cell",
                "odd-bytes",
                "missing-column",
                "case-twin",
                "empty",
                "header-only",
                "line-endings",
                "ragged",
                "quote",
            ]
        )
    )
    must_fail = damage in ("refused-cell", "missing-column", "case-twin", "empty", "ragged", "quote")
    if damage == "cell":
        cell, refused = draw(st.sampled_from(ODD_CELLS))
        row, column = draw(st.integers(0, len(rows) - 1)), draw(st.sampled_from(columns))
        rows[row][column] = cell
        must_fail = refused
    elif damage == "refused-cell":
        column = draw(st.sampled_from(sorted(refusable)))
        row = draw(st.integers(0, len(rows) - 1))
        rows[row][column] = draw(st.sampled_from(refusable[column]))
    elif damage == "missing-column":
        gone = draw(st.sampled_from(required))
        columns.remove(gone)
    elif damage == "case-twin":
        columns.append(draw(st.sampled_from(columns)).upper())
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(columns)
    if damage != "header-only":
        for r in rows:
            writer.writerow([r.get(c.lower(), "") for c in columns])
    data = out.getvalue().encode()
    if damage == "empty":
        data = draw(st.sampled_from([b"", b"\n", b"\n\n"]))
    elif damage == "odd-bytes":  # not UTF-8, somewhere after the header
        at = draw(st.integers(data.index(b"\n") + 1, len(data) - 1))
        data = data[:at] + draw(st.sampled_from([b"\xff", b"\xc3", b"\xed\xa0\x80", b"\x80\x80"])) + data[at:]
        must_fail = True
    elif damage == "line-endings":
        data = data.replace(b"\n", draw(st.sampled_from([b"\r\n", b"\r"])))
        must_fail = b"\r" in data and b"\r\n" not in data and len(rows) > 0  # CR alone: one long line
    elif damage == "ragged":  # a row with more fields than the header
        lines = data.split(b"\n")
        at = draw(st.integers(1, len(lines) - 2))
        lines[at] += b",extra,fields"
        data = b"\n".join(lines)
    elif damage == "quote":  # a quoted field never closed
        lines = data.split(b"\n")
        at = draw(st.integers(1, len(lines) - 2))
        lines[at] = lines[at] + b',"never closed'
        data = b"\n".join(lines)
    return data, rows if damage != "header-only" else [], damage != "none", must_fail


def _landed(kind: str, before: dict, after: dict, rows: list[dict]) -> None:
    """The rows it added are the file's rows."""
    added = {t: len(after[t]) - len(before[t]) for t in after if t != "sequences"}
    if kind == "transactions":
        assert added["basket_lines"] == len(rows)
        assert added["baskets"] == len({r["basket_id"] for r in rows})
    elif kind == "customers":
        assert added["customers"] == len(rows)
    else:
        assert added["products"] == len(rows)


def _check(url: str, tmp_path: Path, kind: str, example: tuple[bytes, list[dict], bool, bool]) -> None:
    data, rows, damaged, must_fail = example
    name = f"{kind}-{next(_EXAMPLE)}.csv"
    path = tmp_path / name
    path.write_bytes(data)
    before = _state(url)
    try:
        import_file(url, kind, path)
    except InputError as exc:
        lines = str(exc).splitlines()
        assert lines and all(line.startswith(f"{name}:") for line in lines), str(exc)  # noqa: PT017 - either outcome is legal; the refusal is checked here
        assert re.match(rf"^{re.escape(name)}:\d+: column '[^']+': ", lines[0]), lines[0]
        assert _state(url) == before  # refused: nothing written
        assert damaged, f"an undamaged file was refused: {lines[0]}"
        return
    assert not must_fail, f"damage the contract refuses was imported: {data[:300]!r}"
    after = _state(url)
    if rows and not damaged:
        _landed(kind, before, after, rows)
    import_file(url, kind, path)
    assert _state(url) == after  # importing it again changes nothing


@pytest.fixture
def dimensions(db_url, tmp_path):
    """Stores S01, S02, customers C1, C2, products P1, P2 (tests/engine/test_ingest.py)."""
    for kind, text in (("stores", STORES), ("customers", CUSTOMERS), ("products", PRODUCTS)):
        path = tmp_path / f"{kind}.csv"
        path.write_text(text)
        import_file(db_url, kind, path)
    return db_url


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_file_lands_whole_or_is_refused_naming_file_row_and_column(dimensions, tmp_path, kind):
    @given(damaged_file(kind))
    def property_(example):
        _check(dimensions, tmp_path, kind, example)

    property_()
