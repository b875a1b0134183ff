"""The profile frame: one row per customer x category, as coupons/ and `listwise profile` read it."""

from __future__ import annotations

import datetime as dt

import polars as pl

from cycles.brand_volume import brand_volume, usual_products
from cycles.occasions import pair_occasions
from cycles.params import ProfileParams
from cycles.purchase_cycle import PurchaseCycleEstimator

__all__ = ["customer_profile", "PROFILE_COLUMNS"]

PROFILE_COLUMNS = [
    "customer_key",
    "category",
    "purchase_days",
    "last_purchase_on",
    "interval_median_days",
    "mean_interval_days",
    "next_expected_on",
    "p_buy_in_window",
    "brand_cell",
    "volume_tier",
    "store_share",
    "units_per_week",
    "usual_product_key",
    "usual_price_cents",
]


def customer_profile(
    history: pl.DataFrame,
    as_of: dt.date,
    window_days: int | None = None,
    *,
    params: ProfileParams | None = None,
    estimator: PurchaseCycleEstimator | None = None,
) -> pl.DataFrame:
    """Purchase cycle, brand cell, volume tier and usual product per customer x category.

    Parameters
    ----------
    history
        Line items before `as_of` over the lookback (engine.history columns).
    window_days
        Window of p_buy_in_window; None = `params.window_days`.
    params
        The brand-cell thresholds, volume cuts and share prior (`cycles.params.ProfileParams`;
        None = the defaults).
    estimator
        An unfitted PurchaseCycleEstimator to use (e.g. with priors from another
        partition); default a fresh one.

    Returns
    -------
    polars.DataFrame
        PROFILE_COLUMNS, one row per pair with at least one purchase occasion, sorted by
        customer_key, category (see DESIGN.md and the profile contract).
    """
    params = params or ProfileParams()
    estimator = estimator or PurchaseCycleEstimator()
    pairs = pair_occasions(history)
    window_days = window_days or params.window_days
    cycles = estimator.fit(history, observed_until=as_of, pairs=pairs).predict(as_of, window_days)
    units = usual_products(history)
    cells = brand_volume(
        units,
        cycles,
        params.national_max_store_share,
        params.store_min_store_share,
        params.min_occasions,
        tuple(params.volume_cuts),
        params.brand_prior_occasions,
    )
    usual = units.select("customer_key", "category", "usual_product_key", "usual_price_cents")
    return (
        cycles.join(cells, on=["customer_key", "category"], how="left")
        .join(usual, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("purchase_days").cast(pl.Int64))
        .select(PROFILE_COLUMNS)
        .sort("customer_key", "category")
    )
