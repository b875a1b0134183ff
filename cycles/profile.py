"""The profile frame: one row per customer x category, as coupons/ and `listwise profile` read it.

Partitions: the profile's global quantities (the purchase-cycle priors per category and the
volume tiers' cut points) are `ProfileGlobals`, fitted once by `profile_globals` on a customer
sample (`sample_customers`: defined by customer_key alone) and handed to `customer_profile` for
every customer partition, so a partition's profile is a pure function of its own customers'
history and the globals: 1, 4 or 64 partitions give the same frame.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

import polars as pl

from cycles.brand_volume import (
    brand_volume,
    pair_units_per_week,
    product_attributes,
    usual_products,
    volume_cut_points,
)
from cycles.occasions import OccasionKeys, category_codes, left_join, occasion_keys, pair_occasions
from cycles.params import ProfileParams
from cycles.purchase_cycle import PurchaseCycleEstimator

__all__ = [
    "customer_profile",
    "profile_globals",
    "sample_customers",
    "SAMPLE_STRATA",
    "ProfileGlobals",
    "PROFILE_COLUMNS",
]

_SAMPLE_SEED = 23
# `sample_customers` takes whole strata of customers, stratum s the keys with key % SAMPLE_STRATA == s:
# the history store's default bucket count, so that with it a stratum is one bucket's files
SAMPLE_STRATA = 64
_POOLED = "\x00pooled"  # the category name the pooled prior is fitted under (no catalogue category)

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
    globals_: ProfileGlobals | None = None,
    extra_columns: tuple[str, ...] = (),
    occasions: OccasionKeys | None = None,
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
        partition); default a fresh one. Ignored with `globals_`.
    globals_
        Priors and volume cut points fitted once for all partitions (`profile_globals`); None =
        fitted on `history` itself.
    extra_columns
        Columns of the purchase-cycle prediction to keep after PROFILE_COLUMNS (e.g. "p_active",
        which `cycles.ranker.NextWindowRanker.predict` takes instead of computing it again).
    occasions
        `cycles.occasions.occasion_keys(history)` when the caller has them (the ranker scores the
        same occasions: one sort of the lines for both).

    Returns
    -------
    polars.DataFrame
        PROFILE_COLUMNS (+ `extra_columns`), one row per pair with at least one purchase occasion, sorted by
        customer_key, category (see DESIGN.md and the profile contract).
    """
    params = params or ProfileParams()
    # with the globals every category has its prior: nothing is fitted, so no log-gaps are summed
    # one pass over the lines for the products' attributes, read by the occasions and the usual products
    products = product_attributes(history)
    if occasions is None:
        occasions = occasion_keys(history, category_codes(products))
    pairs = pair_occasions(history, logsum=globals_ is None, occasions=occasions)
    if globals_ is not None:
        estimator = PurchaseCycleEstimator(priors=globals_.priors_for(pairs["category"].unique()))
    estimator = estimator or PurchaseCycleEstimator()
    window_days = window_days or params.window_days
    cycles = estimator.fit(history, observed_until=as_of, pairs=pairs).predict(as_of, window_days)
    units = usual_products(history, products)
    cells = brand_volume(
        units,
        cycles,
        params.national_max_store_share,
        params.store_min_store_share,
        params.min_occasions,
        tuple(params.volume_cuts),
        params.brand_prior_occasions,
        cut_points=None if globals_ is None else globals_.volume_cuts,
        pooled_cuts=None if globals_ is None else globals_.pooled_cuts,
    )
    usual = units.select("customer_key", "category", "usual_product_key", "usual_price_cents")
    return (
        left_join(left_join(cycles, cells, ["customer_key", "category"]), usual, ["customer_key", "category"])
        .with_columns(pl.col("purchase_days").cast(pl.Int64))
        .select(*PROFILE_COLUMNS, *extra_columns)
        .sort("customer_key", "category")
    )


@dataclass(frozen=True)
class ProfileGlobals:
    """The profile's global quantities, fitted once (`profile_globals`) and shared by every partition.

    Attributes
    ----------
    priors
        Purchase-cycle hyper-parameters per category (`PurchaseCycleEstimator.priors_` columns).
    pooled
        (k, a, b, pi) fitted on all the sample's pairs pooled: the prior of a category the sample
        never bought (a partition must not fit one of its own, or the partitioning would show).
    volume_cuts
        `cycles.brand_volume.volume_cut_points` per category; `pooled_cuts` (lo, hi) over all
        categories, for a category missing from them.
    customers
        How many customers the sample held.
    """

    priors: pl.DataFrame
    pooled: tuple[float, float, float, float]
    volume_cuts: pl.DataFrame
    pooled_cuts: tuple[float, float]
    customers: int

    def priors_for(self, categories: pl.Series) -> pl.DataFrame:
        """`priors` plus a pooled row for each of `categories` it lacks."""
        missing = categories.filter(~categories.is_in(self.priors["category"].implode())).unique().sort()
        if missing.len() == 0:
            return self.priors
        k, a, b, pi = self.pooled
        extra = pl.DataFrame({"category": missing, "k": k, "a": a, "b": b, "pi": pi, "fit_pairs": 0})
        return pl.concat([self.priors, extra.select(self.priors.columns).cast(self.priors.schema)]).sort("category")


def sample_customers(keys: pl.Series, size: int, seed: int = _SAMPLE_SEED) -> pl.Series:
    """A deterministic sample of customer keys, defined by the key alone (never by a partition).

    All of `keys` when there are at most `size`. Else whole strata — stratum s is the keys with
    key % SAMPLE_STRATA == s — in the order 0, 1, 2, ... until `size` keys are taken; of the stratum
    that completes it, its keys of smallest (seeded) hash, so the sample holds exactly `size`.
    A key is in the sample of a chain or not whatever partition it lands in, so the sample and
    anything fitted on it are the same for 1 or 64 partitions.

    Why strata and not the smallest hashes of all keys: the sample of the keys of strata 0..j,
    once they hold `size` or more, is the sample of all keys, so a reader of history bucketed by
    customer_key finds the sample's lines in the first few strata alone (`engine.stages.fit_globals`)
    instead of reading every customer's key first. A stratum is a fair sample of the chain, as a
    hash's is: customer keys are numbered in the order the customers file lists them, which has no
    reason to repeat with a period of 64.

    Parameters
    ----------
    keys
        Customer keys, in any order, repeated or not.
    size
        The sample's size.
    seed
        The hash's seed (the stratum that completes the sample).

    Returns
    -------
    polars.Series
        The sample's keys, each once, sorted.

    Examples
    --------
    >>> sample_customers(pl.Series([5, 3, 9]), 10).to_list()
    [3, 5, 9]

    Of keys 1..200, stratum 0 is 64, 128, 192 and stratum 1 is 1, 65, 129, 193: a sample of 3 is
    stratum 0, one of 5 adds the two keys of stratum 1 of smallest hash.

    >>> sample_customers(pl.Series(range(1, 201)), 3).to_list()
    [64, 128, 192]
    >>> sample_customers(pl.Series(range(1, 201)), 5).to_list()
    [1, 64, 65, 128, 192]
    """
    keys = keys.unique()
    if keys.len() <= size:
        return keys.sort()
    k = pl.col("k")
    # (stratum, hash, key) order: the whole strata first, then the completing one's smallest hashes
    ordered = pl.DataFrame({"k": keys}).sort(k % SAMPLE_STRATA, k.hash(seed=seed), k)
    return ordered.head(size)["k"].sort().rename(keys.name)


def profile_globals(
    sample: pl.DataFrame,
    as_of: dt.date,
    window_days: int | None = None,
    *,
    params: ProfileParams | None = None,
    priors: pl.DataFrame | None = None,
    map_fn: Callable[..., Iterable[Any]] | None = None,
) -> ProfileGlobals:
    """Fit the profile's global quantities on the line items of a customer sample.

    Parameters
    ----------
    sample
        Line items (engine.history columns) of the customers of `sample_customers`, over the
        lookback, before `as_of`.
    priors
        Category priors fitted elsewhere (the ranker's renewal priors); categories they lack
        are fitted on `sample`.
    map_fn
        The ``map`` the categories' prior fits go through (`PurchaseCycleEstimator`'s; e.g. a
        process pool's); None = the builtin one. The priors are the same either way.

    Returns
    -------
    ProfileGlobals
        With the whole chain as the sample, `customer_profile(history, globals_=...)` is
        `customer_profile(history)` row for row.
    """
    params = params or ProfileParams()
    window_days = window_days or params.window_days
    products = product_attributes(sample)
    pairs = pair_occasions(sample, category_codes(products))
    estimator = PurchaseCycleEstimator(priors=priors, map_fn=map_fn).fit(sample, observed_until=as_of, pairs=pairs)
    if pairs.height:
        pooled_fit = PurchaseCycleEstimator().fit(
            sample, observed_until=as_of, pairs=pairs.with_columns(pl.lit(_POOLED).alias("category"))
        )
        row = pooled_fit.priors_.row(0, named=True)
        pooled = (float(row["k"]), float(row["a"]), float(row["b"]), float(row["pi"]))
    else:
        pooled = (1.0, 2.0, 30.0, 0.5)  # nothing to learn from: a 30-day exponential guess
    cycles = estimator.predict(as_of, window_days)
    rates = pair_units_per_week(usual_products(sample, products), cycles, params.brand_prior_occasions)
    cuts = volume_cut_points(rates, tuple(params.volume_cuts))
    pooled_cuts = volume_cut_points(rates.with_columns(pl.lit(_POOLED).alias("category")), tuple(params.volume_cuts))
    lo_hi = (float(pooled_cuts["lo"][0]), float(pooled_cuts["hi"][0])) if pooled_cuts.height else (0.0, float("inf"))
    return ProfileGlobals(
        priors=estimator.priors_,
        pooled=pooled,
        volume_cuts=cuts,
        pooled_cuts=lo_hi,
        customers=int(sample["customer_key"].n_unique()),
    )
