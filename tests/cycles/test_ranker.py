"""The next-window ranker: shape, determinism, calibration, fallback, and that it beats or ties
the renewal model on a generated chain whose truth it never sees."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cycles.exceptions import InputError, NotFittedError
from cycles.purchase_cycle import PurchaseCycleEstimator
from cycles.ranker import RANKER_FEATURES, NextWindowRanker
from engine.history import history_from_files
from engine.sample_chain import generate

W = 14
SMALL = {
    "n_estimators": 60,
    "n_cutoffs": 6,  # small trees: seconds, not minutes
    "new_candidates": 0,
}  # the pairs bought before only (new ones: their own test)


@pytest.fixture(scope="module")
def small_chain(tmp_path_factory) -> pl.DataFrame:
    """800 households x 36 weeks of generated history."""
    out = tmp_path_factory.mktemp("ranker-chain")
    generate(out, customers=800, weeks=36, seed=5, fmt="parquet")
    return history_from_files(out)[0]


@pytest.fixture(scope="module")
def split(small_chain):
    """(train history, as_of, the next window's purchases as customer_key, category, y)."""
    end = small_chain["day"].max() + dt.timedelta(days=1)
    as_of = end - dt.timedelta(days=28)
    train = small_chain.filter(pl.col("day") < as_of)
    bought = (
        small_chain.filter(
            (pl.col("day") >= as_of) & (pl.col("day") < as_of + dt.timedelta(days=W)) & (pl.col("quantity") > 0)
        )
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(1).alias("y"))
    )
    return train, as_of, bought


@pytest.fixture(scope="module")
def fitted(split):
    train, as_of, _ = split
    return NextWindowRanker(**SMALL).fit(train, observed_until=as_of)


def _precision_at_10(pred: pl.DataFrame, score: str, bought: pl.DataFrame) -> float:
    top = (
        pred.sort(["customer_key", score, "category"], descending=[False, True, False])
        .group_by("customer_key", maintain_order=True)
        .head(10)
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0))
    )
    active = bought.select("customer_key").unique()
    return float(top.join(active, on="customer_key").group_by("customer_key").agg(p=pl.col("y").mean())["p"].mean())


def test_predict_has_one_row_per_pair_bought_before_with_probabilities(fitted, split):
    train, as_of, _ = split
    pred = fitted.predict(as_of, W)
    pairs = (
        train.filter(pl.col("quantity") > 0)
        .select("customer_key", "category")
        .unique()
        .sort("customer_key", "category")
    )
    assert pred.columns == ["customer_key", "category", "score", "p_renewal", "p_buy_in_window", "fallback"]
    assert pred.select("customer_key", "category").equals(pairs)
    assert not fitted.fallback_
    p = pred["p_buy_in_window"]
    assert p.null_count() == 0 and p.min() >= 0.0 and p.max() <= 1.0
    knots_x, knots_y = fitted.calibration_
    assert np.all(np.diff(knots_x) >= 0) and np.all(np.diff(knots_y) >= 0)


def test_same_seed_same_ranking(split, fitted):
    train, as_of, _ = split
    again = NextWindowRanker(**SMALL).fit(train, observed_until=as_of).predict(as_of, W)
    assert again.equals(fitted.predict(as_of, W))


def test_training_cutoffs_see_only_the_past_and_the_latest_window_is_held_out(fitted, split):
    _, as_of, _ = split
    *train_cutoffs, calib = fitted.cutoffs_
    assert calib == as_of - dt.timedelta(days=W)
    # a training label window ends before the calibration window starts
    assert max(train_cutoffs) + dt.timedelta(days=W) <= calib


def test_calibrated_on_a_later_period(fitted, split):
    """Each decile of p_buy_in_window with at least 500 pairs is within 0.05 of the observed rate
    in the window after the fitted history (never seen in fit)."""
    _, as_of, bought = split
    pred = fitted.predict(as_of, W).join(bought, on=["customer_key", "category"], how="left")
    deciles = (
        pred.with_columns(pl.col("y").fill_null(0))
        .group_by((pl.col("p_buy_in_window") * 10).floor().clip(0, 9).alias("decile"))
        .agg(n=pl.len(), p=pl.col("p_buy_in_window").mean(), o=pl.col("y").mean())
        .filter(pl.col("n") >= 500)
    )
    assert deciles.height >= 3
    assert (deciles["p"] - deciles["o"]).abs().max() <= 0.05


def test_ranks_at_least_as_well_as_the_renewal_model(fitted, split):
    train, as_of, bought = split
    pred = fitted.predict(as_of, W)
    renewal = PurchaseCycleEstimator().fit(train, observed_until=as_of).predict(as_of, W)
    ranker_p10 = _precision_at_10(pred, "p_buy_in_window", bought)
    renewal_p10 = _precision_at_10(renewal, "p_buy_in_window", bought)
    assert ranker_p10 >= renewal_p10 - 0.005, (ranker_p10, renewal_p10)


def test_a_partition_scores_as_in_one_pass(fitted, split):
    train, as_of, _ = split
    part = train.filter(pl.col("customer_key") % 3 == 1)
    alone = fitted.predict(as_of, W, history=part)
    whole = fitted.predict(as_of, W).filter(pl.col("customer_key") % 3 == 1)
    assert alone.equals(whole)


def test_threads_and_parts_give_the_same_model_and_scores(fitted, split, monkeypatch):
    # fit's cutoffs in threads, predict's customers in parts of ~20k occasions scored in threads
    import cycles.ranker

    train, as_of, _ = split
    monkeypatch.setattr(cycles.ranker, "_PART_OCCASIONS", 20_000)
    threaded = NextWindowRanker(**SMALL, n_jobs=2).fit(train, observed_until=as_of)
    assert (
        threaded.model_.model_to_string().split("parameters:")[0]
        == (fitted.model_.model_to_string().split("parameters:")[0])
    )
    assert threaded.predict(as_of, W).equals(fitted.predict(as_of, W))


def test_occasions_split_into_runs_of_whole_customers(fitted, split):
    from cycles.ranker_features import code_occasions

    train, _, _ = split
    occ = code_occasions(train.lazy(), None, 30_000)
    parts = occ.split(7)
    assert len(parts) == 7
    assert np.array_equal(np.concatenate([q.pair for q in parts]), occ.pair)
    assert np.array_equal(np.concatenate([q.day for q in parts]), occ.day)
    last_customers = [q.pair[-1] >> occ.cat_bits for q in parts[:-1]]
    first_customers = [q.pair[0] >> occ.cat_bits for q in parts[1:]]
    assert all(a < b for a, b in zip(last_customers, first_customers, strict=True))
    assert occ.split(1) == [occ]


def test_new_customers_get_the_renewal_probability(fitted, split):
    train, as_of, _ = split
    newcomer = train.filter(pl.col("customer_key") == train["customer_key"].min()).with_columns(
        pl.lit(10**9, pl.Int64).alias("customer_key"),
        (pl.lit(as_of) - pl.duration(days=pl.int_range(pl.len()) % 10 + 1)).alias("day"),
    )
    pred = fitted.predict(as_of, W, history=pl.concat([train, newcomer]))
    new = pred.filter(pl.col("customer_key") == 10**9)
    assert new.height > 0 and new["fallback"].all()
    assert new["p_buy_in_window"].equals(new["p_renewal"])
    assert not pred.filter(pl.col("customer_key") != 10**9)["fallback"].any()


def test_a_short_chain_falls_back_to_the_renewal_model(small_chain):
    start = small_chain["day"].min()
    short = small_chain.filter(pl.col("day") < start + dt.timedelta(days=40))
    as_of = start + dt.timedelta(days=40)
    ranker = NextWindowRanker(**SMALL).fit(short, observed_until=as_of)
    pred = ranker.predict(as_of, W)
    assert ranker.fallback_ and pred["fallback"].all()
    renewal = PurchaseCycleEstimator().fit(short, observed_until=as_of).predict(as_of, W)
    assert pred["p_buy_in_window"].to_list() == pytest.approx(renewal["p_buy_in_window"].to_list())


def test_wrong_window_and_unfitted_are_refused(fitted, split):
    _, as_of, _ = split
    with pytest.raises(InputError, match="14-day"):
        fitted.predict(as_of, 7)
    with pytest.raises(NotFittedError):
        NextWindowRanker().predict(as_of, W)
    assert len(RANKER_FEATURES) == len(set(RANKER_FEATURES))


def test_the_profile_takes_p_buy_from_the_ranker_unless_set_to_renewal(small_chain, split):
    from engine.config import CycleSettings, Settings
    from engine.errors import ConfigError
    from engine.profiles import profile_frame

    _, as_of, _ = split
    history = small_chain.filter((pl.col("day") < as_of) & (pl.col("customer_key") % 2 == 0))
    by_ranker = profile_frame(history, Settings(), as_of, W)
    by_renewal = profile_frame(history, Settings(cycles=CycleSettings(p_buy_model="renewal")), as_of, W)
    ranked = NextWindowRanker(window_days=W).fit(history, observed_until=as_of).predict(as_of, W)
    # the profile holds the pairs bought before; the ranker's never-bought candidates are not in it
    ranked = by_ranker.select("customer_key", "category").join(ranked, on=["customer_key", "category"], how="left")
    assert by_ranker["p_buy_in_window"].to_list() == pytest.approx(ranked["p_buy_in_window"].to_list())
    renewal = PurchaseCycleEstimator().fit(history, observed_until=as_of).predict(as_of, W)
    assert by_renewal["p_buy_in_window"].to_list() == pytest.approx(renewal["p_buy_in_window"].to_list())
    assert by_ranker.drop("p_buy_in_window").equals(by_renewal.drop("p_buy_in_window"))
    with pytest.raises(ConfigError, match="p_buy_model"):
        profile_frame(history, Settings(cycles=CycleSettings(p_buy_model="magic")), as_of, W)


def test_p_renewal_is_the_renewal_model_with_the_rankers_priors(fitted, split):
    """The one-query pair statistics give the renewal model's own probabilities (pair_occasions path)."""
    train, as_of, _ = split
    pred = fitted.predict(as_of, W)
    renewal = PurchaseCycleEstimator(priors=fitted.renewal_priors_).fit(train, observed_until=as_of).predict(as_of, W)
    assert pred["p_renewal"].to_list() == pytest.approx(renewal["p_buy_in_window"].to_list(), abs=1e-9)


def test_given_renewal_figures_are_used_and_give_the_same_scores(fitted, split):
    """predict(renewal=...) takes the profile's renewal figures instead of computing them: the same scores."""
    train, as_of, _ = split
    lookback = train.filter(pl.col("day") >= as_of - dt.timedelta(days=fitted.lookback_days))
    renewal = (
        PurchaseCycleEstimator(priors=fitted.renewal_priors_).fit(lookback, observed_until=as_of).predict(as_of, W)
    )
    own = fitted.predict(as_of, W, history=train)
    assert fitted.predict(as_of, W, history=train, renewal=renewal).equals(own)
    # and they are read: other figures give other scores
    other = renewal.with_columns((1 - pl.col("p_buy_in_window")).alias("p_buy_in_window"))
    moved = fitted.predict(as_of, W, history=train, renewal=other)
    assert (moved["p_renewal"] - own["p_renewal"]).abs().max() > 0.1


def test_training_on_a_sample_of_customers_still_scores_everyone(split):
    train, as_of, _ = split
    ranker = NextWindowRanker(max_train_customers=300, **SMALL).fit(train, observed_until=as_of)
    pred = ranker.predict(as_of, W)
    assert not ranker.fallback_
    assert pred["customer_key"].n_unique() == train["customer_key"].n_unique()
    again = NextWindowRanker(max_train_customers=300, **SMALL).fit(
        train.sample(fraction=1.0, shuffle=True, seed=3), observed_until=as_of
    )
    assert again.predict(as_of, W, history=train).equals(pred)


def test_new_candidates_are_the_most_popular_categories_a_customer_never_bought(split):
    train, as_of, bought = split
    ranker = NextWindowRanker(**{**SMALL, "new_candidates": 3}).fit(train, observed_until=as_of)
    pred = ranker.predict(as_of, W)
    had = train.filter(pl.col("quantity") > 0).select("customer_key", "category").unique()
    new = pred.join(had, on=["customer_key", "category"], how="anti")
    assert pred.height == had.height + 3 * had["customer_key"].n_unique()
    assert (new.group_by("customer_key").len()["len"] == 3).all()
    popular = ranker.category_stats_.sort(["cat_share", "category"], descending=[True, False])["category"].to_list()
    for key in new["customer_key"].unique().sort().head(25):
        own = set(had.filter(pl.col("customer_key") == key)["category"])
        assert sorted(new.filter(pl.col("customer_key") == key)["category"]) == sorted(
            [c for c in popular if c not in own][:3]
        )
    assert (new["p_renewal"] == 0).all() and new["p_buy_in_window"].is_between(0, 1).all()
    # calibrated like the others: their mean probability is near their rate of purchase in the next window
    rate = new.join(bought, on=["customer_key", "category"], how="left")["y"].fill_null(0).mean()
    assert abs(new["p_buy_in_window"].mean() - rate) <= 0.02


def test_a_copy_without_history_scores_a_given_history_as_the_original(fitted, split):
    """What the stages send to the partitions: no fitted lines, the same scores for the lines given."""
    train, as_of, _ = split
    twin = fitted.without_history(n_jobs=1)
    assert twin._history.height == 0 and fitted._history.height > 0
    assert twin.predict(as_of, W, history=train).equals(fitted.predict(as_of, W))


def test_prior_fits_through_a_process_pool_give_the_same_model_and_scores(fitted, split):
    """`map_fn` (the batch's idle local workers): the renewal priors' category fits, at the first
    training cutoff and at the end, in other processes give the same priors, trees and scores, and
    a copy for the partitions does not carry the map (a pool cannot travel)."""
    import pickle
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    train, as_of, _ = split
    sent = []
    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:

        def map_fn(fn, items):
            items = list(items)
            sent.append(len(items))
            return pool.map(fn, items, chunksize=4)

        there = NextWindowRanker(**SMALL, map_fn=map_fn).fit(train, observed_until=as_of)
    assert len(sent) == 2 and min(sent) > 5  # both fits went through it
    assert_frame_equal(there.renewal_priors_, fitted.renewal_priors_, check_exact=True)
    assert (
        there.model_.model_to_string().split("parameters:")[0]
        == fitted.model_.model_to_string().split("parameters:")[0]
    )
    assert there.predict(as_of, W).equals(fitted.predict(as_of, W))
    twin = pickle.loads(pickle.dumps(there.without_history()))
    assert twin.map_fn is None and there.map_fn is map_fn


def test_the_profiles_occasions_give_the_same_scores(fitted, split):
    """`predict(occasions=...)` and the profile's: the occasions sorted once (`occasion_keys`, of the whole
    history: those before the lookback are left out) score as the ranker's own coding, even with a
    category bought only as a return (a code of its own there, none in `code_occasions`)."""
    from cycles.occasions import occasion_keys
    from cycles.profile import customer_profile

    train, as_of, _ = split
    ret = train.head(1).with_columns(
        pl.lit("AAA returned only").alias("category"),
        pl.lit(-1.0).cast(train["quantity"].dtype).alias("quantity"),
        (pl.col("product_key").max() + 10_000).alias("product_key"),
    )
    for lines in (train, pl.concat([train, ret])):
        keys = occasion_keys(lines)
        assert keys.first_day == lines["day"].min() and keys.key.size > 0
        assert fitted.predict(as_of, W, history=lines, occasions=keys).equals(fitted.predict(as_of, W, history=lines))
        assert customer_profile(lines, as_of, W, occasions=keys).equals(customer_profile(lines, as_of, W))
    assert "AAA returned only" in occasion_keys(pl.concat([train, ret])).codes["category"].to_list()


def test_the_profiles_occasions_make_no_candidate_of_a_category_without_occasions(split):
    """With never-bought candidates: a popular category the scored lines hold only as a return has a
    code in the profile's coding but no occasion, and is no candidate (as in the ranker's own coding);
    a customer_key that does not fit the packed key is refused, not wrapped."""
    from cycles.occasions import occasion_keys

    train, as_of, _ = split
    ranker = NextWindowRanker(**{**SMALL, "new_candidates": 3}).fit(train, observed_until=as_of)
    top = ranker.category_stats_.sort("cat_share", descending=True, maintain_order=True)["category"][0]
    returned = train.filter(pl.col("category") == top).head(1).with_columns(-pl.col("quantity").abs())
    lines = pl.concat([train.filter(pl.col("category") != top), returned])
    with_keys = ranker.predict(as_of, W, history=lines, occasions=occasion_keys(lines))
    assert with_keys.equals(ranker.predict(as_of, W, history=lines))
    assert top not in with_keys["category"].to_list() and with_keys.height > 0
    with pytest.raises(InputError, match="customer_key .* does not fit"):
        occasion_keys(train.with_columns(pl.col("customer_key") + 2**45))
