"""Small hand-made frames for the pure coupons/ tests."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

START = dt.date(2025, 7, 7)
END = dt.date(2025, 7, 21)
MARGIN_SHARE = 0.25  # unit margin share of a product without a unit cost (the value.margin_share default)


def make_products() -> pl.DataFrame:
    rows = [
        # product_key, sku, category, brand, brand_type, maker, size, price, cost
        (1, "N1", "ANALGESICS", "Acme", "national", "M1", "small", 500, 300),
        (2, "N2", "ANALGESICS", "Acme", "national", "M1", "large", 900, 600),
        (3, "S1", "ANALGESICS", "Own", "store", "M0", "small", 350, 200),
        (4, "S2", "ANALGESICS", "Own", "store", "M0", "large", 650, 400),
        (5, "D1", "DOG FOOD", "Rex", "national", "M2", "regular", 1200, 800),
        (6, "M1", "MILK", "Cow", "national", "M3", "regular", 300, None),
        (7, "V1", "VEGETABLES", "Green", "national", "M4", "regular", 200, 120),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "product_key": pl.Int64,
            "sku": pl.String,
            "category": pl.String,
            "brand": pl.String,
            "brand_type": pl.String,
            "manufacturer_id": pl.String,
            "size": pl.String,
            "regular_price_cents": pl.Int64,
            "unit_cost_cents": pl.Int64,
        },
        orient="row",
    ).with_columns(pl.lit("X").alias("department"), pl.col("sku").alias("description"))


def make_profile(rows: list[tuple]) -> pl.DataFrame:
    """rows: (customer_key, category, p_buy, brand_cell, volume_tier, usual_product_key, purchase_days)."""
    f = pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Int64,
            "category": pl.String,
            "p_buy_in_window": pl.Float64,
            "brand_cell": pl.String,
            "volume_tier": pl.String,
            "usual_product_key": pl.Int64,
            "purchase_days": pl.Int64,
        },
        orient="row",
    )
    prices = make_products().select(
        pl.col("product_key").alias("usual_product_key"), pl.col("regular_price_cents").alias("usual_price_cents")
    )
    return f.join(prices, on="usual_product_key", how="left").with_columns(
        pl.lit(START + dt.timedelta(days=3)).alias("next_expected_on"),
        pl.lit(START - dt.timedelta(days=5)).alias("last_purchase_on"),
    )


def make_value(rows: list[tuple]) -> pl.DataFrame:
    """rows: (customer_key, value_tier, share_of_wallet, clv_cents)."""
    return pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Int64,
            "value_tier": pl.String,
            "share_of_wallet": pl.Float64,
            "clv_cents": pl.Int64,
        },
        orient="row",
    ).with_columns(pl.lit(0.9).alias("p_alive"))


DEAL_SCHEMA = {
    "deal_id": pl.String,
    "manufacturer_id": pl.String,
    "sku": pl.String,
    "category": pl.String,
    "brand": pl.String,
    "kind": pl.String,
    "value_cents": pl.Int64,
    "percent_bp": pl.Int64,
    "funded_share": pl.Float64,
    "starts_on": pl.Date,
    "ends_on": pl.Date,
    "budget_cents": pl.Int64,
    "max_per_customer": pl.Int64,
    "target_cells": pl.String,
}


def make_deals(rows: list[dict]) -> pl.DataFrame:
    base = {
        "sku": None,
        "category": None,
        "brand": None,
        "value_cents": None,
        "percent_bp": None,
        "funded_share": 1.0,
        "starts_on": START,
        "ends_on": END,
        "budget_cents": None,
        "max_per_customer": None,
        "target_cells": None,
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=DEAL_SCHEMA)


@pytest.fixture
def products() -> pl.DataFrame:
    return make_products()
