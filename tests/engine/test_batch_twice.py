"""Two batches in a row, on SQLite and PostgreSQL (issue 13 item 1).

The second batch reads what the first committed on each deal (a `SUM()`, numeric on
PostgreSQL, which failed every second batch there: "cannot cast extension types to Int64").
Claims: the second period follows the first, it counts the first batch's expired, unredeemed
offers as released on each deal (issue 15), and re-running it changes nothing (same summary, lists and codes).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from engine.batch import run_batch
from engine.config import Settings
from engine.db import bulk_session
from engine.ingest import import_files

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PERIOD = dt.date(2025, 6, 16)
SECRET = "test-secret"


def _lists(url: str) -> pl.DataFrame:
    with bulk_session(url, write=False) as db:
        return db.read(
            "SELECT l.batch_id, l.list_id, l.code, l.customer_key, COUNT(o.offer_id) AS offers "
            "FROM lists l LEFT JOIN offers o ON o.list_id = l.list_id "
            "GROUP BY l.batch_id, l.list_id, l.code, l.customer_key ORDER BY l.list_id",
            {
                "batch_id": pl.Int64,
                "list_id": pl.Int64,
                "code": pl.String,
                "customer_key": pl.Int64,
                "offers": pl.Int64,
            },
        )


@pytest.mark.slow
def test_two_batches_in_a_row_and_the_second_rerun(db_url, tmp_path):
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(db_url, kind, paths)
    settings = Settings(database_url=db_url, secret=SECRET)
    first = run_batch(settings, PERIOD, out_dir=tmp_path)
    second = run_batch(settings, out_dir=tmp_path)  # the period after the last batch
    assert second["period_start"] == (PERIOD + dt.timedelta(days=14)).isoformat()
    assert second["batch_id"] == first["batch_id"] + 1 and second["lists"] > 0

    # the first batch's lists expired before the second period with nothing redeemed (no checkout here):
    # the second counts nothing as committed before and the first batch's whole face value as released
    # (coupons.budgets: expired offers hold what they redeemed)
    spent = {d: v["face_value_cents"] for d, v in first["deal_budgets"].items()}
    assert sum(spent.values()) > 0  # some deal was used: the SUM of the second read has rows
    assert {
        d: (v["committed_before_cents"], v["released_before_cents"]) for d, v in second["deal_budgets"].items()
    } == {d: (0, first["deal_budgets"][d]["released_before_cents"] + spent[d]) for d in first["deal_budgets"]}

    lists = _lists(db_url)
    assert lists.group_by("batch_id").len().sort("batch_id").rows() == [
        (first["batch_id"], first["lists"]),
        (second["batch_id"], second["lists"]),
    ]
    assert int(lists["offers"].sum()) == first["offers"] + second["offers"]

    again = run_batch(settings, dt.date.fromisoformat(second["period_start"]), out_dir=tmp_path)
    assert again == second
    assert _lists(db_url).equals(lists)
