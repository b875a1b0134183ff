"""Typed reads (issue 10, robust reads; issue 13, PostgreSQL numeric sums).

Every frame read back from the database has an explicit schema: a column with no values is
never mistyped, PostgreSQL's numeric `SUM()` comes back as Int64, a long run of nulls before
the first text value does not break SQLite's driver, and a value that does not fit its type is
an error, never a silent null.
"""

from __future__ import annotations

import ast
import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from engine.db import bulk_session, connect, read_frame, typed
from engine.errors import StateError

ROOT = Path(__file__).resolve().parents[2]
TIP_SCHEMA = {"tip_id": pl.Int64, "category": pl.String, "title": pl.String}


# ------------------------------------------------------------------ typed(), hand-worked frames


def test_a_column_without_values_takes_its_declared_type_whatever_the_driver_said():
    raw = pl.DataFrame(
        {"category": pl.Series([None, None], dtype=pl.Int64), "expected_on": pl.Series([None, None], dtype=pl.Int64)}
    )
    out = typed(raw, {"category": pl.String, "expected_on": pl.Date})
    assert out.schema == pl.Schema({"category": pl.String, "expected_on": pl.Date})
    assert out.null_count().row(0) == (2, 2)


def test_driver_forms_become_the_declared_types():
    raw = pl.DataFrame(
        {
            "cents": ["1200", "37.00", None],
            "day": ["2025-06-16", "2025-06-17 00:00:00", None],
            "flag": [0, 1, None],
            "share": [1, 0, None],
        }
    )
    out = typed(raw, {"day": pl.Date, "cents": pl.Int64, "flag": pl.Boolean, "share": pl.Float64})
    assert out.columns == ["day", "cents", "flag", "share"]  # the schema's order
    assert out.rows() == [
        (dt.date(2025, 6, 16), 1200, False, 1.0),
        (dt.date(2025, 6, 17), 37, True, 0.0),
        (None, None, None, None),
    ]


@pytest.mark.parametrize(
    ("values", "dtype"), [(["12.50"], pl.Int64), (["twelve"], pl.Int64), ([1.5], pl.Int64), (["2025-13-01"], pl.Date)]
)
def test_a_value_that_does_not_fit_is_an_error_naming_the_column(values, dtype):
    with pytest.raises(StateError, match=r"reading offers: column 'x' holds"):
        typed(pl.DataFrame({"x": values}), {"x": dtype}, "reading offers")


def test_missing_or_unexpected_columns_are_an_error():
    with pytest.raises(StateError, match=r"missing \['b'\], unexpected \['c'\]"):
        typed(pl.DataFrame({"a": [1], "c": [2]}), {"a": pl.Int64, "b": pl.Int64})


def test_an_empty_result_has_the_declared_schema():
    out = typed(pl.DataFrame({"a": pl.Series([], dtype=pl.Int64)}), {"a": pl.Date})
    assert out.height == 0 and out.schema == pl.Schema({"a": pl.Date})


# ------------------------------------------------------------------ both databases


def _tips(url: str, categories: list[str | None]) -> None:
    engine = connect(url)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO tips (tip_id, category, title, body) VALUES (:i, :c, 't', 'b')"),
            [{"i": i, "c": c} for i, c in enumerate(categories, start=1)],
        )
    engine.dispose()


def test_an_all_null_column_reads_as_text(db_url):
    _tips(db_url, [None, None, None])
    with bulk_session(db_url, write=False) as db:
        out = db.read("SELECT tip_id, category, title FROM tips ORDER BY tip_id", TIP_SCHEMA)
    assert out.schema == pl.Schema(TIP_SCHEMA) and out["category"].null_count() == 3


def test_a_long_run_of_nulls_before_the_first_text_keeps_every_value(db_url):
    # SQLite's ADBC driver typed a column from its first 1,024 rows: 2,000 nulls made it Int64
    # and the text after them failed the read ("Type mismatch in column")
    _tips(db_url, [None] * 2000 + ["DOG FOODS"] * 5)
    with bulk_session(db_url, write=False) as db:
        out = db.read("SELECT tip_id, category, title FROM tips ORDER BY tip_id", TIP_SCHEMA)
    assert out.height == 2005 and out["category"].to_list()[1998:] == [None, None] + ["DOG FOODS"] * 5


def test_an_integer_sum_reads_as_int64_on_both_databases(db_url):
    # PostgreSQL's SUM(bigint) is numeric, which ADBC hands over as an opaque extension type
    # ("cannot cast extension types to Int64": issue 13); the schema makes it Int64 without a CAST
    _tips(db_url, ["A", "A", "B"])
    sql = "SELECT category, SUM(tip_id * 1000000000000) AS total FROM tips GROUP BY category ORDER BY category"
    schema = {"category": pl.String, "total": pl.Int64}
    with bulk_session(db_url, write=False) as db:
        bulk = db.read(sql, schema)
    engine = connect(db_url)
    with engine.connect() as conn:
        small = read_frame(conn, sql, schema=schema)
    engine.dispose()
    assert bulk.rows() == small.rows() == [("A", 3_000_000_000_000), ("B", 3_000_000_000_000)]
    assert bulk.schema == small.schema == pl.Schema(schema)


# ------------------------------------------------------------------ no untyped read in product code


def _untyped_reads(path: Path, base: Path = ROOT) -> list[str]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
        keywords = {k.arg for k in node.keywords}
        sql_text = bool(node.args) and not (isinstance(node.args[0], ast.Name) and node.args[0].id != "sql")
        if (
            (name == "read" and len(node.args) == 1 and sql_text and "schema" not in keywords)
            or (name == "read_frame" and "schema" not in keywords and len(node.args) < 4)
            or name in ("read_database", "read_database_uri", "from_records")
        ):  # BulkSession.read
            found.append(f"{path.relative_to(base)}:{node.lineno}")
    return found


def test_every_read_in_product_code_names_its_schema():
    paths = [p for package in ("engine", "printing", "cycles", "coupons") for p in (ROOT / package).rglob("*.py")]
    assert len(paths) > 20
    assert [where for p in sorted(paths) for where in _untyped_reads(p)] == []


def test_the_check_finds_an_untyped_read(tmp_path):
    sample = tmp_path / "probe.py"
    sample.write_text(
        "def f(db, conn):\n    db.read('SELECT 1', {'a': int})\n    return db.read('SELECT 1')\n"
        "def g(conn):\n    return read_frame(conn, 'SELECT 1')\n",
        encoding="utf-8",
    )
    assert _untyped_reads(sample, tmp_path) == ["probe.py:3", "probe.py:5"]
