"""The cycles models recover what the generator planted (fixed seed)."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from cycles.profile import customer_profile
from cycles.purchase_cycle import PurchaseCycleEstimator
from cycles.value import customer_value


@pytest.fixture(scope="module")
def profile(chain, end_of_history):
    history, _, _, pairs, _ = chain
    truth = pairs.rename({c: f"{c}_true" for c in pairs.columns if c not in ("customer_key", "category")})
    return customer_profile(history, end_of_history).join(truth, on=["customer_key", "category"], how="inner")


def test_mean_interval_within_15_percent_for_pairs_with_six_purchases(profile):
    pairs = profile.filter(pl.col("purchase_days") >= 6)
    rel = (pl.col("mean_interval_days") - pl.col("mean_interval_days_true")).abs() / pl.col("mean_interval_days_true")
    assert pairs.height > 5000
    assert pairs.select(rel.median()).item() <= 0.15


def test_p_buy_is_calibrated_on_the_following_weeks(chain):
    history = chain[0]
    as_of = history["day"].max() + dt.timedelta(days=1 - 28)
    train = history.filter(pl.col("day") < as_of)
    bought = (
        history.filter(
            (pl.col("day") >= as_of) & (pl.col("day") < as_of + dt.timedelta(days=14)) & (pl.col("quantity") > 0)
        )
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(1.0).alias("y"))
    )
    pred = (
        PurchaseCycleEstimator()
        .fit(train, observed_until=as_of)
        .predict(as_of, 14)
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0.0))
    )
    deciles = (
        pred.group_by((pl.col("p_buy_in_window") * 10).floor().clip(0, 9).alias("decile"))
        .agg(n=pl.len(), predicted=pl.col("p_buy_in_window").mean(), observed=pl.col("y").mean())
        .filter(pl.col("n") >= 500)
    )
    assert deciles.height >= 8
    worst = deciles.select((pl.col("predicted") - pl.col("observed")).abs().max()).item()
    assert worst <= 0.05, deciles.sort("decile")


def test_cycle_ranking_beats_most_frequent_categories_on_recall_at_10(chain):
    history = chain[0]
    as_of = history["day"].max() + dt.timedelta(days=1 - 14)
    bought = (
        history.filter((pl.col("day") >= as_of) & (pl.col("quantity") > 0))
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(1).alias("y"))
    )
    pred = (
        PurchaseCycleEstimator()
        .fit(history.filter(pl.col("day") < as_of), observed_until=as_of)
        .predict(as_of, 14)
        .join(bought, on=["customer_key", "category"], how="left")
        .fill_null(0)
    )

    def hits(score: str) -> int:
        top = pred.sort(["customer_key", score, "category"], descending=[False, True, False])
        return top.group_by("customer_key", maintain_order=True).head(10)["y"].sum()

    assert hits("p_buy_in_window") > hits("purchase_days")


def test_brand_cell_matches_planted_preference(profile):
    classified = profile.filter(pl.col("brand_cell") != "unclassified")
    agree = (pl.col("brand_cell") == pl.col("brand_pref_true")).mean()
    assert classified.select(agree).item() >= 0.90
    assert classified.filter(pl.col("purchase_days") >= 6).select(agree).item() >= 0.93


def test_volume_tiers_are_ordered_as_planted(profile):
    planted = (
        profile.group_by("volume_tier")
        .agg(pl.col("units_per_week_true").median())
        .sort("units_per_week_true")["volume_tier"]
        .to_list()
    )
    assert planted == ["low", "mid", "high"]
    assert profile.select((pl.col("volume_tier") == pl.col("volume_tier_true")).mean()).item() > 0.5


def test_lapsing_households_are_flagged_far_more_often(chain, end_of_history):
    history, _, customers, _, households = chain
    value = customer_value(history, end_of_history, customers, qualifying_weeks=8).join(households, on="customer_key")
    flagged = pl.col("lifecycle_stage").is_in(["declining", "lapsed"]).mean()
    rates = dict(value.group_by("lapsing").agg(flagged.alias("rate")).iter_rows())
    assert rates[True] >= 0.6
    assert rates[False] <= 0.15
    assert rates[True] >= 4 * rates[False]


def test_share_of_wallet_follows_the_planted_share(chain, end_of_history):
    history, _, customers, _, households = chain
    value = customer_value(history, end_of_history, customers, qualifying_weeks=8).join(households, on="customer_key")
    # weak by nature: spend against a fixed budget also measures how heavy a household is
    assert value.select(pl.corr("share_of_wallet", "share_of_wallet_right", method="spearman")).item() > 0.15
