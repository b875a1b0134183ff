"""A most-frequent baseline of the cycles frames: the yardstick and the stand-in.

`baseline_profile` scores a customer's categories by how often they were bought (a Poisson
rate: purchase days over the days observed), ignoring when they were last bought; a cycle
model should beat it at telling which categories fall due in the period (tests/coupons and
tests/engine/test_batch.py report both shares). `baseline_value` sizes customers by spend.
`engine.batch` uses them only when the cycles package (`engine.profiles.profile_frames`) is
not installed, and says so in the batch summary.

Being cycles' stand-in, this module cannot import cycles: the parameters it shares with cycles'
frames (brand-cell thresholds, volume cuts, weekly budgets, margin share) are read from any
object that has them (`CellParams`, `SpendParams`), such as `cycles.params.ProfileParams` and
`cycles.params.ValueParams`, so their defaults stay defined once, there.
"""

from __future__ import annotations

import datetime as dt
from typing import Protocol

import polars as pl

__all__ = ["baseline_profile", "baseline_value", "CellParams", "SpendParams"]


class CellParams(Protocol):
    """What `baseline_profile` reads: brand-cell thresholds and volume cuts (as `cycles.params.ProfileParams`)."""

    @property
    def min_occasions(self) -> int: ...
    @property
    def national_max_store_share(self) -> float: ...
    @property
    def store_min_store_share(self) -> float: ...
    @property
    def volume_cuts(self) -> tuple[float, float]: ...


class SpendParams(Protocol):
    """What `baseline_value` reads: weekly budgets and margin share (as `cycles.params.ValueParams`)."""

    @property
    def weekly_budget_cents(self) -> tuple[int, ...]: ...
    @property
    def margin_share(self) -> float: ...


def baseline_profile(
    history: pl.DataFrame, products: pl.DataFrame, as_of: dt.date, window_days: int, cells: CellParams
) -> pl.DataFrame:
    """Profile frame (the contract columns) from frequencies alone.

    p_buy_in_window = 1 - exp(-window x purchase_days / days observed), days observed from the
    customer's first purchase in `history` to `as_of` (at least 28); brand cells and volume
    tiers with the thresholds and cuts of `cells`.
    """
    c = cells
    h = history.filter(pl.col("day") < as_of)
    buys = h.filter(pl.col("quantity") > 0)
    first_seen = h.group_by("customer_key").agg(pl.col("day").min().alias("_first"))
    days = buys.select("customer_key", "category", "day").unique().sort("customer_key", "category", "day")
    per_day = days.group_by("customer_key", "category").agg(
        pl.len().alias("purchase_days"),
        pl.col("day").max().alias("last_purchase_on"),
        pl.col("day").diff().dt.total_days().median().alias("interval_median_days"),
        ((pl.col("day").max() - pl.col("day").min()).dt.total_days() / (pl.len() - 1).clip(lower_bound=1)).alias(
            "mean_interval_days"
        ),
    )
    units = h.group_by("customer_key", "category").agg(
        pl.col("quantity").sum().alias("_units"),
        (pl.col("quantity") * (pl.col("brand_type") == "store")).sum().alias("_store_units"),
    )
    usual = (
        buys.group_by("customer_key", "category", "product_key")
        .agg(pl.col("quantity").sum().alias("_q"))
        .sort("customer_key", "category", "_q", "product_key", descending=[False, False, True, False])
        .unique(["customer_key", "category"], keep="first", maintain_order=True)
        .join(products.select("product_key", "regular_price_cents"), on="product_key", how="left")
        .select(
            "customer_key",
            "category",
            pl.col("product_key").alias("usual_product_key"),
            pl.col("regular_price_cents").alias("usual_price_cents"),
        )
    )
    observed = pl.max_horizontal((pl.lit(as_of) - pl.col("_first")).dt.total_days(), pl.lit(28))
    share = (pl.col("_store_units") / pl.col("_units")).fill_nan(None).clip(0.0, 1.0)
    f = (
        per_day.join(units, on=["customer_key", "category"], how="left")
        .join(usual, on=["customer_key", "category"], how="left")
        .join(first_seen, on="customer_key", how="left")
        .with_columns(
            share.alias("store_share"),
            (pl.col("_units").clip(lower_bound=0) * 7 / observed).alias("units_per_week"),
            (pl.col("purchase_days") / observed).alias("_rate"),
        )
    )
    cuts = pl.col("units_per_week").rank("average").over("category") / pl.len().over("category")
    cell = (
        pl.when(pl.col("purchase_days") < c.min_occasions)
        .then(pl.lit("unclassified"))
        .when(pl.col("store_share") <= c.national_max_store_share)
        .then(pl.lit("national"))
        .when(pl.col("store_share") >= c.store_min_store_share)
        .then(pl.lit("store"))
        .otherwise(pl.lit("switcher"))
    )
    gap = pl.coalesce(pl.col("interval_median_days"), 1 / pl.col("_rate")).round().cast(pl.Int64)
    return f.select(
        "customer_key",
        "category",
        pl.col("purchase_days").cast(pl.Int64),
        "last_purchase_on",
        pl.col("interval_median_days").cast(pl.Float64),
        pl.col("mean_interval_days").cast(pl.Float64),
        (pl.col("last_purchase_on") + pl.duration(days=gap)).alias("next_expected_on"),
        (1 - (-pl.col("_rate") * window_days).exp()).alias("p_buy_in_window"),
        cell.alias("brand_cell"),
        pl.when(cuts <= c.volume_cuts[0])
        .then(pl.lit("low"))
        .when(cuts <= c.volume_cuts[1])
        .then(pl.lit("mid"))
        .otherwise(pl.lit("high"))
        .alias("volume_tier"),
        "store_share",
        "units_per_week",
        "usual_product_key",
        "usual_price_cents",
    ).sort("customer_key", "category")


def baseline_value(
    history: pl.DataFrame, customers: pl.DataFrame, as_of: dt.date, params: SpendParams, qualifying_weeks: int
) -> pl.DataFrame:
    """customer_key, avg_weekly_spend_cents, monetary_cents, value_tier, share_of_wallet, clv_cents, p_alive.

    value_tier by spend rank over the `qualifying_weeks` window: top 5 % VIP, next 15 % major,
    next 40 % ordinary, the rest small; share of wallet = weekly spend / weekly budget of the
    household size (`params.weekly_budget_cents`); p_alive = exp(-days since last visit / 30);
    CLV = a year of margin (`params.margin_share`).
    """
    weeks = qualifying_weeks
    spend = (
        history.filter(pl.col("day") < as_of)
        .group_by("customer_key")
        .agg(
            pl.col("day").max().alias("_last"),
            pl.col("amount_cents").filter(pl.col("day") >= as_of - dt.timedelta(weeks=weeks)).sum().alias("_recent"),
        )
    )
    budgets = params.weekly_budget_cents
    size = pl.col("household_size").fill_null(2).clip(1, len(budgets)) - 1
    f = spend.join(customers.select("customer_key", "household_size"), on="customer_key", how="left").with_columns(
        (pl.col("_recent") // weeks).cast(pl.Int64).alias("avg_weekly_spend_cents"),
        size.replace_strict(list(range(len(budgets))), list(budgets), return_dtype=pl.Int64).alias("_budget"),
    )
    rank = pl.col("avg_weekly_spend_cents").rank("ordinal", descending=True) / pl.len()
    return f.select(
        "customer_key",
        "avg_weekly_spend_cents",
        pl.col("_recent").alias("monetary_cents"),
        pl.when(rank <= 0.05)
        .then(pl.lit("VIP"))
        .when(rank <= 0.20)
        .then(pl.lit("major"))
        .when(rank <= 0.60)
        .then(pl.lit("ordinary"))
        .otherwise(pl.lit("small"))
        .alias("value_tier"),
        (pl.col("avg_weekly_spend_cents") / pl.col("_budget")).clip(0.0, 1.0).alias("share_of_wallet"),
        (pl.col("avg_weekly_spend_cents") * 52 * params.margin_share).round().cast(pl.Int64).alias("clv_cents"),
        (-(pl.lit(as_of) - pl.col("_last")).dt.total_days() / 30).exp().alias("p_alive"),
    ).sort("customer_key")
