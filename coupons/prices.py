"""Shelf prices and unit costs where the catalogue is silent, from the chain's own history.

A chain's catalogue often carries neither shelf prices nor unit costs (the real reference
chain has neither), and every item offer is a share of a shelf price. `complete_prices` fills
them before offers are built:

* ``regular_price_cents``: the catalogue's when given; else the **median per-unit price** the
  product's lines show in the `OfferRules.price_lookback_days` days before the period,
  per line ``(amount_cents + discount_cents) / quantity`` (what the customer would have paid
  without the line's discounts), over lines with quantity > 0 and a positive per-unit price (a
  line given away says nothing about the shelf price); rounded to the cent. The median, not
  the mean, so that a few multi-buy or mis-keyed lines do not move it.
* ``unit_cost_cents``: the catalogue's when given; else ``round(price x (1 - margin share of
  the brand type))`` with `OfferRules.margin_share_store` for brand type 'store' and
  `margin_share_national` for every other brand type (national, or unknown: the lower margin,
  so that an unknown product never looks more profitable than a national one); null without
  a price.
* ``price_source``: 'catalogue', 'history' or 'none' (no price at all: such a product cannot
  carry an item offer, and the offer funnel counts it under 'no price').
"""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["history_prices", "price_counts", "prices_from_counts", "complete_prices", "fill_prices", "PRICE_SOURCES"]

PRICE_SOURCES = ("catalogue", "history", "none")


def price_counts(history: pl.DataFrame, period_start: dt.date, lookback_days: int) -> pl.DataFrame:
    """How many lines of each product show each per-unit price in the lookback window.

    The part of `history_prices` that adds up: the counts of parts of history (customer
    partitions) summed per (product_key, unit_price) are the counts of the whole, and
    `prices_from_counts` gives the same medians from them.

    Returns
    -------
    pl.DataFrame
        product_key, unit_price (Float64), lines (Int64); one row per product and price.
    """
    start = period_start - dt.timedelta(days=lookback_days)
    unit = (pl.col("amount_cents") + pl.col("discount_cents").fill_null(0)) / pl.col("quantity")
    return (
        history.lazy()
        .filter(pl.col("day") >= start, pl.col("day") < period_start, pl.col("quantity") > 0)
        .select("product_key", unit.cast(pl.Float64).alias("unit_price"))
        .filter(pl.col("unit_price") > 0)
        .group_by("product_key", "unit_price")
        .agg(pl.len().cast(pl.Int64).alias("lines"))
        .collect()
    )


def prices_from_counts(counts: pl.DataFrame) -> pl.DataFrame:
    """`history_prices`' frame from `price_counts` (of the whole history, or summed over its parts).

    The median of n sorted values is the middle one (n odd) or polars' median of the two middle
    ones (n even): each product's one or two middle prices are picked from the cumulative counts
    and polars takes their median, so the figure is bit for bit the median of every line.
    """
    ranked = (
        counts.group_by("product_key", "unit_price")
        .agg(pl.col("lines").sum())
        .sort("product_key", "unit_price")
        .with_columns(
            pl.col("lines").cum_sum().over("product_key").alias("_to"),
            pl.col("lines").sum().over("product_key").alias("_n"),
        )
        .with_columns((pl.col("_to") - pl.col("lines")).alias("_from"))
    )
    # 0-based ranks of the middle values: (n - 1) // 2 and n // 2 (the same one when n is odd)
    middle = [((pl.col("_n") - 1) // 2), (pl.col("_n") // 2)]
    picks = pl.concat(
        [
            ranked.filter((pl.col("_from") <= m) & (m < pl.col("_to"))).select("product_key", "unit_price")
            for m in middle
        ]
    )
    lines = ranked.group_by("product_key").agg(pl.col("_n").first().cast(pl.UInt32).alias("price_lines"))
    return (
        picks.group_by("product_key")
        .agg(pl.col("unit_price").median().round().cast(pl.Int64).alias("history_price_cents"))
        .join(lines, on="product_key")
        .sort("product_key")
    )


def history_prices(history: pl.DataFrame, period_start: dt.date, lookback_days: int) -> pl.DataFrame:
    """Median per-unit price of each product over [period_start - lookback_days, period_start).

    Parameters
    ----------
    history
        Line items: product_key, day (Date), quantity, amount_cents, discount_cents (null = 0).

    Returns
    -------
    pl.DataFrame
        product_key, history_price_cents (Int64), price_lines (UInt32, the lines it is the
        median of); only products with at least one such line, sorted by product_key.
    """
    return prices_from_counts(price_counts(history, period_start, lookback_days))


def complete_prices(
    products: pl.DataFrame,
    history: pl.DataFrame,
    period_start: dt.date,
    lookback_days: int,
    margin_share_national: float,
    margin_share_store: float,
) -> pl.DataFrame:
    """`products` with regular_price_cents and unit_cost_cents filled where possible, plus price_source.

    Parameters
    ----------
    products
        The catalogue: product_key, brand_type, regular_price_cents, unit_cost_cents (nulls allowed).
    history
        Line items (see `history_prices`); lines outside the window are ignored.
    period_start, lookback_days
        The window of lines read for a missing price.
    margin_share_national, margin_share_store
        Share of the shelf price kept as margin, by brand type, for a missing unit cost.

    Returns
    -------
    pl.DataFrame
        The columns of `products` in their order (prices and costs Int64) and price_source
        (String: 'catalogue', 'history' or 'none'); same rows, same order.
    """
    seen = history_prices(history, period_start, lookback_days)
    return fill_prices(products, seen, margin_share_national, margin_share_store)


def fill_prices(
    products: pl.DataFrame, seen: pl.DataFrame, margin_share_national: float, margin_share_store: float
) -> pl.DataFrame:
    """`complete_prices` given the history's prices already (`history_prices`, or
    `prices_from_counts` of counts summed over partitions)."""
    share = (
        pl.when(pl.col("brand_type") == "store")
        .then(pl.lit(margin_share_store))
        .otherwise(pl.lit(margin_share_national))
    )
    price = pl.coalesce(pl.col("regular_price_cents").cast(pl.Int64), pl.col("history_price_cents"))
    source = (
        pl.when(pl.col("regular_price_cents").is_not_null())
        .then(pl.lit("catalogue"))
        .when(pl.col("history_price_cents").is_not_null())
        .then(pl.lit("history"))
        .otherwise(pl.lit("none"))
    )
    cost = pl.coalesce(
        pl.col("unit_cost_cents").cast(pl.Int64), (pl.col("regular_price_cents") * (1.0 - share)).round().cast(pl.Int64)
    )
    columns = [c for c in products.columns if c != "price_source"]
    return (
        products.drop("price_source", strict=False)
        .join(seen.select("product_key", "history_price_cents"), on="product_key", how="left", maintain_order="left")
        .with_columns(source.alias("price_source"))
        .with_columns(price.alias("regular_price_cents"))
        .with_columns(cost.alias("unit_cost_cents"))
        .select(*columns, "price_source")
    )
