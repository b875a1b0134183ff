"""Global quantities fitted once and handed to every partition (issue 14): hand-worked cut points,
the sample, and "globals from all customers = fitting on the history itself"."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cycles.brand_volume import brand_volume, tier_against, volume_cut_points
from cycles.profile import SAMPLE_STRATA, ProfileGlobals, customer_profile, profile_globals, sample_customers
from cycles.value import customer_value, score_value, value_parts


@pytest.fixture(scope="module")
def planted_history(chain) -> pl.DataFrame:
    return chain[0]


def test_volume_cut_points_by_hand():
    # TEA: 1, 2, 3, 4, 5 -> the linear 1/3 quantile sits at position 4/3 (1.333..): 2 + 1/3; 2/3 at 8/3: 3 + 2/3
    rates = pl.DataFrame(
        {"category": ["TEA"] * 5 + ["JAM"] * 2, "units_per_week": [5.0, 1.0, 4.0, 2.0, 3.0, 10.0, 20.0]}
    )
    cuts = volume_cut_points(rates, (1 / 3, 2 / 3))
    assert cuts["category"].to_list() == ["JAM", "TEA"]
    jam, tea = cuts.rows()
    assert tea[1] == pytest.approx(2 + 1 / 3) and tea[2] == pytest.approx(3 + 2 / 3)
    assert jam[1] == pytest.approx(10 + 10 / 3) and jam[2] == pytest.approx(10 + 20 / 3)
    tiers = tier_against(rates, cuts)
    assert tiers.to_list() == ["high", "low", "high", "low", "mid", "low", "high"]


def test_a_category_without_cut_points_takes_the_pooled_ones():
    cuts = pl.DataFrame({"category": ["TEA"], "lo": [1.0], "hi": [2.0]})
    rates = pl.DataFrame({"category": ["TEA", "NEW", "NEW", "NEW"], "units_per_week": [1.5, 0.5, 5.0, 50.0]})
    assert tier_against(rates, cuts, pooled=(1.0, 10.0)).to_list() == ["mid", "low", "mid", "high"]


def test_volume_cuts_from_a_sample_that_is_everyone_are_those_of_all(planted_history):
    """The partition path (cuts given) equals the one-pass path (cuts of the frame itself) when the sample is all."""
    from cycles.brand_volume import pair_units_per_week, usual_products
    from cycles.purchase_cycle import PurchaseCycleEstimator

    as_of = planted_history["day"].max() + dt.timedelta(days=1)
    cycles = PurchaseCycleEstimator().fit(planted_history, observed_until=as_of).predict(as_of, 14)
    units = usual_products(planted_history)
    own = brand_volume(units, cycles)
    cuts = volume_cut_points(pair_units_per_week(units, cycles))
    given = brand_volume(units, cycles, cut_points=cuts, pooled_cuts=(0.0, 0.0))
    assert_frame_equal(given, own, check_exact=True)
    assert own["volume_tier"].value_counts()["count"].min() > 100  # all three tiers in use


def test_profile_with_globals_of_everyone_is_the_one_pass_profile(planted_history):
    as_of = planted_history["day"].max() + dt.timedelta(days=1)
    g = profile_globals(planted_history, as_of, 14)
    assert isinstance(g, ProfileGlobals) and g.customers == planted_history["customer_key"].n_unique()
    assert_frame_equal(
        customer_profile(planted_history, as_of, 14, globals_=g), customer_profile(planted_history, as_of, 14)
    )
    # and each customer partition, concatenated, is that profile again
    parts = [
        customer_profile(planted_history.filter(pl.col("customer_key") % 4 == p), as_of, 14, globals_=g)
        for p in range(4)
    ]
    assert_frame_equal(
        pl.concat(parts).sort("customer_key", "category"),
        customer_profile(planted_history, as_of, 14),
        check_exact=True,
    )


def test_priors_for_fills_missing_categories_with_the_pooled_prior():
    priors = pl.DataFrame({"category": ["TEA"], "k": [2.0], "a": [3.0], "b": [40.0], "pi": [0.1], "fit_pairs": [50]})
    g = ProfileGlobals(priors, (1.5, 2.5, 30.0, 0.2), pl.DataFrame(), (0.0, 1.0), 10)
    out = g.priors_for(pl.Series(["TEA", "NEW", "NEW"]))
    assert out.rows() == [("NEW", 1.5, 2.5, 30.0, 0.2, 0), ("TEA", 2.0, 3.0, 40.0, 0.1, 50)]


def test_the_sample_is_defined_by_the_key_alone():
    """Whole strata (key % 64) in order, then the completing stratum's smallest hashes: by hand for 1..1000."""
    keys = pl.Series(range(1, 1001))
    assert sample_customers(keys, 2000).to_list() == list(range(1, 1001))  # a small chain: everyone
    assert SAMPLE_STRATA == 64
    # 1000 = 15 * 64 + 40: stratum 0 is 64, 128, ..., 960 (15 keys), strata 1..40 hold 16 keys, 41..63 15;
    # strata 0..5 hold 15 + 5 * 16 = 95 keys, so a sample of 100 is they and 5 of stratum 6's 16
    stratum = {s: [k for k in range(1, 1001) if k % 64 == s] for s in range(7)}
    assert len(stratum[0]) == 15 and stratum[0][:2] == [64, 128] and len(stratum[1]) == 16
    whole = sorted(k for s in range(6) for k in stratum[s])
    assert sample_customers(keys, 95).to_list() == whole  # strata 0..5 exactly: no hash needed
    six = pl.Series(stratum[6])
    smallest = [k for _, k in sorted(zip(six.hash(seed=23).to_list(), stratum[6]))[:5]]
    sample = sample_customers(keys, 100)
    assert sample.len() == 100 and sample.is_sorted()
    assert sample.to_list() == sorted(whole + smallest)
    assert smallest != stratum[6][:5] and smallest != stratum[6][-5:]  # the hash, not the key order, chose
    # shuffled, duplicated, split in partitions and put back: the same customers
    parts = [keys.filter(keys % 4 == p) for p in (3, 1, 0, 2)]
    assert sample_customers(pl.concat([*parts, parts[0]]), 100).to_list() == sample.to_list()
    # what a reader of the first strata relies on: the keys of strata 0..6 alone give the same sample
    # (strata 0..5 alone, fewer than 100 keys, are all taken)
    first = keys.filter(keys % 64 <= 6)
    assert sample_customers(first, 100).to_list() == sample.to_list()
    assert sample_customers(keys.filter(keys % 64 <= 5), 100).to_list() == whole
    # a bigger chain (1..2000: 31 keys in stratum 0, 32 in strata 1 and 2) is sampled from its own first strata
    bigger = sample_customers(pl.Series(range(1, 2001)), 100).to_list()
    assert [k for k in bigger if k % 64 <= 2] == [k for k in range(1, 2001) if k % 64 <= 2]
    assert sum(k % 64 == 3 for k in bigger) == 5 and max(k % 64 for k in bigger) == 3


def test_value_scored_over_partitions_is_the_one_pass_value(planted_history):
    """RFM quintiles, ABC cuts and CLV are scored once over every partition's parts: exact."""
    as_of = planted_history["day"].max() + dt.timedelta(days=1)
    whole = customer_value(planted_history, as_of, qualifying_weeks=8)
    parts = [
        value_parts(planted_history.filter(pl.col("customer_key") % 4 == p), as_of, qualifying_weeks=8)
        for p in (2, 0, 3, 1)
    ]
    assert_frame_equal(score_value(pl.concat(parts), as_of), whole, check_exact=True)
    assert whole["abc_class"].n_unique() == 3 and whole["r_score"].n_unique() == 5


def test_priors_fitted_through_a_process_pool_are_the_priors_fitted_here(planted_history):
    """`map_fn`: the categories' fits in other processes (as the batch's local workers fit them) give
    the same priors, bit for bit, and every category with enough pairs went through it."""
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from cycles.purchase_cycle import PurchaseCycleEstimator

    as_of = planted_history["day"].max() + dt.timedelta(days=1)
    here = PurchaseCycleEstimator().fit(planted_history, observed_until=as_of).priors_
    sent = []

    with ProcessPoolExecutor(max_workers=2, mp_context=get_context("spawn")) as pool:

        def map_fn(fn, items):
            items = list(items)
            sent.extend(items)
            return pool.map(fn, items, chunksize=3)

        there = PurchaseCycleEstimator(map_fn=map_fn).fit(planted_history, observed_until=as_of).priors_
    assert_frame_equal(there, here, check_exact=True)
    assert len(sent) == here.filter(pl.col("fit_pairs") >= 30).height > 5
