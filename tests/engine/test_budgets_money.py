"""Deal budgets that mean money, on a real database (SQLite and PostgreSQL).

Claims of issue 15 item 2: a batch charges each deal the expected cost of its offers plus the
margin (coupons.budgets), never more than the budget; when the lists expire, the deal holds
what was redeemed and the rest returns, so the next batch can offer it again; the use factor is
learnt from those redemptions.
"""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from coupons.budgets import FACTOR_PRIOR_USES
from engine.batch import run_batch as _run_batch
from engine.config import BatchSettings, Settings
from engine.db import bulk_session
from tests.engine.test_batch import PERIOD, PROFILER, SAMPLE, SECRET

BUDGET = 2_000  # cents per deal: tight enough that the first batch fills it


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def sample_url(request, tmp_path) -> str:
    from engine.ingest import import_files
    from tests.conftest import fresh_database

    url = fresh_database(request, tmp_path, request.param)
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(url, kind, paths)
    with bulk_session(url) as db:
        db.execute(f"UPDATE deals SET budget_cents = {BUDGET}")
    return url


def run(url: str, start: dt.date, out) -> dict:  # noqa: ANN001
    settings = Settings(database_url=url, secret=SECRET, batch=BatchSettings())
    return _run_batch(settings, start, out, profiler=PROFILER)


def deal_offers(url: str, start: dt.date) -> pl.DataFrame:
    with bulk_session(url, write=False) as db:
        return db.read(
            "SELECT o.offer_id, o.deal_id, o.kind, o.p_buy, o.discount_cents, o.max_uses, l.customer_key "
            "FROM offers o JOIN lists l ON l.list_id = o.list_id JOIN batches b ON b.batch_id = l.batch_id "
            f"WHERE o.deal_id IS NOT NULL AND b.period_start = '{start}' ORDER BY o.offer_id"
        ).cast({"offer_id": pl.Int64, "discount_cents": pl.Int64, "max_uses": pl.Int64, "p_buy": pl.Float64})


def test_redeemed_value_stays_charged_and_the_rest_returns_to_the_deal(sample_url, tmp_path):
    first = run(sample_url, PERIOD, tmp_path / "b")
    deals = first["deal_budgets"]
    full = {d: v for d, v in deals.items() if v["offers"] and v["this_batch_cents"] > BUDGET // 2}
    assert full, "the tight budget should bind at least one deal"
    assert all(v["this_batch_cents"] <= BUDGET and v["expected_cents"] <= v["this_batch_cents"] for v in deals.values())
    # the checkout redeems one use of every other offer of the first batch's deals, in its period
    offers = deal_offers(sample_url, PERIOD)
    used = offers.filter(pl.int_range(pl.len()) % 2 == 0)
    rows = used.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("redemption_id"),
        "offer_id",
        pl.lit(1, pl.Int32).alias("use_no"),
        pl.lit("1").alias("store_id"),
        pl.format("B{}", "offer_id").alias("basket_id"),
        pl.lit(PERIOD + dt.timedelta(days=3)).alias("redeemed_on"),
        "discount_cents",
        pl.lit(0, pl.Int32).alias("voided"),
        pl.lit(dt.datetime(2025, 6, 19, 12)).alias("created_at"),
    )
    with bulk_session(sample_url) as db:
        store = db.read("SELECT MIN(store_id) AS s FROM stores")["s"][0]
        db.append("redemptions", rows.with_columns(pl.lit(str(store)).alias("store_id")))
    second = run(sample_url, PERIOD + dt.timedelta(days=14), tmp_path / "b")
    redeemed = used.group_by("deal_id").agg(pl.col("discount_cents").sum())
    redeemed = dict(redeemed.iter_rows())
    face = dict(offers.group_by("deal_id").agg((pl.col("discount_cents") * pl.col("max_uses")).sum()).iter_rows())
    for deal, d in second["deal_budgets"].items():
        r = redeemed.get(deal, 0)
        assert d["redeemed_before_cents"] == d["committed_before_cents"] == r
        assert d["released_before_cents"] == face.get(deal, 0) - r
        assert d["committed_before_cents"] + d["this_batch_cents"] <= BUDGET
        assert d["left_cents"] == BUDGET - r - d["this_batch_cents"]
    # what returned is used again: a deal the first batch filled gets offers in the second
    assert any(second["deal_budgets"][d]["offers"] > 0 for d in full)
    # the use factor learnt from the first batch's deal offers of p_buy below 0.1 (band 0) and their redemptions
    with bulk_session(sample_url, write=False) as db:
        all_first = db.read(
            "SELECT o.offer_id, o.kind, o.p_buy, o.discount_cents, o.max_uses FROM offers o "
            "JOIN lists l ON l.list_id = o.list_id JOIN batches b ON b.batch_id = l.batch_id "
            f"WHERE b.period_start = '{PERIOD}' AND o.kind = 'deal'"
        ).cast({"offer_id": pl.Int64, "p_buy": pl.Float64, "discount_cents": pl.Int64, "max_uses": pl.Int64})
    low = all_first.filter(pl.col("p_buy") < 0.1)
    expected = low.select((pl.col("p_buy") * pl.col("discount_cents")).sum()).item()
    uses = low["p_buy"].sum()
    red = used.join(low.select("offer_id"), on="offer_id", how="semi")["discount_cents"].sum()
    prior = FACTOR_PRIOR_USES * expected / uses
    factor = (red + prior) / (expected + prior)
    assert low.height and second["budget_model"]["use_factors"]["deal 0"] == pytest.approx(factor, abs=1e-4)
