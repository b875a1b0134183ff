"""Budgets per deal, per list and per batch are never exceeded; tight budgets keep the best offers.

Deal and chain budgets are charged expected cost plus a Bernstein margin (coupons.budgets): checked by
hand-worked charges and by simulating the period's redemptions over many random settings.
"""

import datetime as dt

import numpy as np
import polars as pl
import pytest

from coupons.budgets import (
    BUDGET_RISK,
    apply_deal_budgets,
    budget_charges,
    deal_commitments,
    margin_cents,
    use_factors,
    within_budget,
)
from coupons.offers import conform
from coupons.select import select_offers

TIERS = ["VIP", "major", "ordinary", "small"]


def random_candidates(rng: np.random.Generator, n_customers: int, n: int) -> pl.DataFrame:
    kinds = rng.choice(["cycle", "conversion", "deal", "household", "reward"], n, p=[0.5, 0.1, 0.25, 0.1, 0.05])
    deal = np.where(kinds == "deal", rng.integers(0, 6, n).astype(str), None)
    return conform(
        pl.DataFrame(
            {
                "customer_key": rng.integers(1, n_customers + 1, n),
                "kind": kinds,
                "product_key": pl.Series(rng.integers(1, 400, n)).set(pl.Series(kinds == "reward"), None),
                "category": pl.Series(rng.integers(1, 60, n).astype(str)).set(pl.Series(kinds == "reward"), None),
                "deal_id": [None if d is None else f"D{d}" for d in deal],
                "funder": np.where(kinds == "deal", "M1", "retailer"),
                "funded_share": np.where(kinds == "deal", rng.choice([0.5, 1.0, 0.3], n), 0.0),
                "discount_cents": rng.integers(1, 600, n),
                "max_uses": rng.integers(1, 4, n),
                "valid_from": dt.date(2025, 7, 7),
                "valid_to": dt.date(2025, 7, 20),
                "p_buy": rng.random(n),
                "expected_value_cents": rng.integers(-200, 300, n),
            }
        )
    )


@pytest.mark.parametrize("seed", range(40))
def test_no_budget_is_ever_exceeded_over_random_settings(seed):
    rng = np.random.default_rng(seed)
    n_customers = int(rng.integers(5, 60))
    cand = random_candidates(rng, n_customers, int(rng.integers(50, 1500)))
    tiers = pl.DataFrame(
        {"customer_key": range(1, n_customers + 1), "value_tier": rng.choice(TIERS, n_customers)}
    ).cast({"customer_key": pl.Int64})
    caps = {t: int(rng.integers(0, 3000)) for t in TIERS}
    budgets = pl.DataFrame(
        {
            "deal_id": [f"D{i}" for i in range(6)],
            "budget_left_cents": [None if rng.random() < 0.2 else int(rng.integers(0, 5000)) for _ in range(6)],
        },
        schema={"deal_id": pl.String, "budget_left_cents": pl.Int64},
    )
    max_offers = int(rng.integers(1, 25))
    chain = int(rng.choice([0, rng.integers(0, 20_000)]))
    out = select_offers(cand, tiers, budgets, caps, max_offers, chain, rounds=int(rng.integers(0, 5)))

    face = pl.col("discount_cents") * pl.col("max_uses")
    retailer = (face.cast(pl.Float64) * (1 - pl.col("funded_share"))).round(6).ceil()
    per_deal = budget_charges(out.filter(pl.col("deal_id").is_not_null()), ["deal_id"])
    check = per_deal.join(budgets, on="deal_id").filter(pl.col("budget_left_cents").is_not_null())
    assert (check["committed_cents"] <= check["budget_left_cents"]).all()
    assert (check["expected_cents"] <= check["committed_cents"]).all()
    assert (check["committed_cents"] <= check["face_cents"]).all()
    # reward lines and the reserved campaign lines are outside the list cap (coupons.select): check the rest
    per_list = (
        out.filter(~pl.col("kind").is_in(["reward", "conversion"]))
        .group_by("customer_key")
        .agg(retailer.sum().alias("used"))
        .join(tiers, on="customer_key")
    )
    assert all(u <= caps[t] for u, t in per_list.select("used", "value_tier").iter_rows())
    if chain:
        assert budget_charges(out, retailer=True)["committed_cents"].item() <= chain
    lines = out.group_by("customer_key").agg(
        pl.len(), pl.col("line_no").max().alias("last"), pl.col("line_no").n_unique().alias("distinct")
    )
    assert (lines["len"] <= max_offers).all() and (lines["len"] == lines["last"]).all()
    assert (lines["len"] == lines["distinct"]).all()
    items = out.filter(pl.col("product_key").is_not_null())
    assert items.select("customer_key", "product_key").is_duplicated().sum() == 0
    assert items.select("customer_key", "category").is_duplicated().sum() == 0


def test_a_tight_budget_keeps_the_best_offers():
    f = pl.DataFrame({"expected_value_cents": [5, 50, 20, 40, 10], "cost": [100] * 5, "budget": [300] * 5})
    kept = within_budget(f, "cost", "budget")
    assert sorted(kept["expected_value_cents"].to_list()) == [20, 40, 50]


def test_refill_takes_a_cheaper_offer_behind_a_costly_one():
    f = pl.DataFrame({"expected_value_cents": [9, 8, 7], "cost": [60, 50, 30], "budget": [100] * 3})
    assert within_budget(f, "cost", "budget", rounds=0)["expected_value_cents"].to_list() == [9]
    assert within_budget(f, "cost", "budget", rounds=2)["expected_value_cents"].to_list() == [9, 7]


def test_groups_have_their_own_budget_and_null_is_unlimited():
    f = pl.DataFrame(
        {
            "g": ["a", "a", "b", "b", "c"],
            "expected_value_cents": [2, 1, 2, 1, 1],
            "cost": [10, 10, 10, 10, 10**9],
            "budget": [10, 10, 25, 25, None],
        }
    )
    kept = within_budget(f, "cost", "budget", ["g"])
    assert kept["g"].to_list() == ["a", "b", "b", "c"]


# --- money: the charge, the model of use, re-basing -------------------------------------------------

# factor 1 in every band: p_buy is the expected number of uses (without evidence the charge is face value)
ONE = pl.DataFrame(
    {"kind": ["deal"] * 6, "band": range(6), "use_factor": [1.0] * 6}, schema_overrides={"band": pl.Int32}
)


def deal_offers(p_buy, discount, uses=1, deal="D", ev=None) -> pl.DataFrame:
    n = len(p_buy)
    return pl.DataFrame(
        {
            "kind": ["deal"] * n,
            "deal_id": [deal] * n,
            "p_buy": p_buy,
            "discount_cents": [discount] * n if isinstance(discount, int) else discount,
            "max_uses": [uses] * n,
            "funded_share": [1.0] * n,
            "expected_value_cents": ev or list(range(n, 0, -1)),
        },
        schema_overrides={"max_uses": pl.Int32},
    )


def test_a_hundred_coin_flips_of_a_dollar_are_charged_by_hand():
    # q = .5, F = 100: mean 5000, variance 100 x 100^2 x .25 = 250000, upper deviation M = 50;
    # L = ln 100 = 4.60517; t = L M / 3 + sqrt((L M / 3)^2 + 2 L 250000) = 76.753 + 1519.367 = 1596.12
    charge = budget_charges(deal_offers([0.5] * 100, 100), factors=ONE)
    assert charge.row(0, named=True) == {
        "face_cents": 10_000,
        "expected_cents": 5_000,
        "committed_cents": 6_597,
        "offers": 100,
    }
    assert margin_cents(250_000, 50) == pytest.approx(1596.12, abs=0.01)
    assert (
        apply_deal_budgets(
            deal_offers([0.5] * 100, 100), pl.DataFrame({"deal_id": ["D"], "budget_left_cents": [6_597]}), factors=ONE
        ).height
        == 100
    )
    # 99 offers: 4950 + 76.753 + sqrt(5891 + 2279559) = 6538.5 fits 6596; 100 do not
    assert (
        apply_deal_budgets(
            deal_offers([0.5] * 100, 100), pl.DataFrame({"deal_id": ["D"], "budget_left_cents": [6_596]}), factors=ONE
        ).height
        == 99
    )
    # no evidence (no factor): face value, as before issue 15
    assert budget_charges(deal_offers([0.5] * 100, 100))["committed_cents"].item() == 10_000


def test_a_charge_never_exceeds_face_value_and_a_sure_use_carries_no_margin():
    few = budget_charges(deal_offers([0.3, 0.2], 500), factors=ONE)  # margin alone would be > $10
    assert few["committed_cents"].item() == 1_000 and few["expected_cents"].item() == 250
    # uses, not face value: a buyer is expected to use one of two uses; factor 2, both
    assert budget_charges(deal_offers([1.0] * 10, 70, uses=2), factors=ONE)["expected_cents"].item() == 700
    sure = budget_charges(
        deal_offers([1.0] * 10, 70, uses=2),
        factors=pl.DataFrame({"kind": ["deal"], "band": [5], "use_factor": [2.0]}, schema_overrides={"band": pl.Int32}),
    )
    assert sure["committed_cents"].item() == sure["expected_cents"].item() == 1_400


def test_use_factor_is_redeemed_over_expected_per_band_shrunk_to_one():
    # band 4: 80 expected uses worth 80,000 cents (1,000 a use), 10,000 redeemed; the prior, 20 uses, is 20,000
    history = pl.DataFrame(
        {
            "kind": ["deal", "deal", "cycle", "deal", "deal"],
            "band": [4, 4, 4, 0, None],
            "expected_cents": [50_000.0, 30_000.0, 0.0, 5_000.0, 9e9],
            "expected_uses": [50.0, 30.0, 0.0, 50.0, 9e6],
            "redeemed_cents": [6_000, 4_000, 0, 15_000, 0],
        },
        schema_overrides={"band": pl.Int32},
    )
    f = {(k, b): v for k, b, v in use_factors(history, prior_uses=20).iter_rows()}
    assert f[("deal", 4)] == pytest.approx((10_000 + 20_000) / (80_000 + 20_000))  # 0.3
    # band 0: 100 cents a use, prior 2,000 cents: coupons on unlikely categories cause their use
    assert f[("deal", 0)] == pytest.approx((15_000 + 2_000) / (5_000 + 2_000))  # 2.43
    assert set(f) == {("deal", 4), ("deal", 0)}  # no expected use, or no p_buy: no evidence, factor 1
    # the factor scales p_buy in its band only: 0.6 is band 4 (0.5 <= p < 0.7), 0.05 band 0
    offers = deal_offers([0.6] * 400 + [0.05] * 100, 100)
    factors = pl.DataFrame(
        {"kind": ["deal", "deal"], "band": [4, 0], "use_factor": [1 / 3, 3.0]}, schema_overrides={"band": pl.Int32}
    )
    plain, learnt = (budget_charges(offers, factors=x)["expected_cents"].item() for x in (ONE, factors))
    assert plain == 24_000 + 500 and learnt == 8_000 + 1_500


def test_expired_offers_hold_what_they_redeemed_and_live_ones_their_charge():
    deals = pl.DataFrame({"deal_id": ["A", "B", "C"], "budget_cents": [5_000, None, 1_000]})
    expired = pl.DataFrame({"deal_id": ["A"], "face_cents": [4_000], "redeemed_cents": [600]})
    live = deal_offers([0.5] * 100, 100, deal="A").select(
        "deal_id", "kind", "p_buy", "discount_cents", "max_uses", pl.lit(0).alias("redeemed_cents")
    )
    live = pl.concat(
        how="vertical_relaxed",
        items=[
            live,
            pl.DataFrame(
                {
                    "deal_id": ["C"],
                    "kind": ["deal"],
                    "p_buy": [0.0],
                    "discount_cents": [900],
                    "max_uses": [1],
                    "redeemed_cents": [900],
                },
                schema_overrides={"max_uses": pl.Int32},
            ),
        ],
    )
    out = {r["deal_id"]: r for r in deal_commitments(deals, expired, live, ONE).iter_rows(named=True)}
    assert out["A"] == {
        "deal_id": "A",
        "budget_cents": 5_000,
        "redeemed_before_cents": 600,
        "released_before_cents": 3_400,
        "live_before_cents": 6_597,
        "committed_before_cents": 7_197,
        "budget_left_cents": 0,
    }
    assert out["B"]["budget_left_cents"] is None and out["B"]["committed_before_cents"] == 0
    # a live offer that already redeemed more than its charge holds what it redeemed
    assert out["C"]["live_before_cents"] == 900 and out["C"]["budget_left_cents"] == 100


def test_value_an_expired_batch_did_not_use_returns_to_the_deal():
    deals = pl.DataFrame({"deal_id": ["D"], "budget_cents": [3_000]})
    offers = deal_offers([0.2] * 300, 100)
    nothing = pl.DataFrame(schema={"deal_id": pl.String, "face_cents": pl.Int64, "redeemed_cents": pl.Int64})
    no_live = pl.DataFrame(
        schema={
            "deal_id": pl.String,
            "kind": pl.String,
            "p_buy": pl.Float64,
            "discount_cents": pl.Int64,
            "max_uses": pl.Int32,
            "redeemed_cents": pl.Int64,
        }
    )
    first = apply_deal_budgets(offers, deal_commitments(deals, nothing, no_live), factors=ONE)
    assert 0 < first.height < 300
    # while live, the first batch's offers hold the budget: a second batch gets (almost) nothing
    live = first.select("deal_id", "kind", "p_buy", "discount_cents", "max_uses", pl.lit(0).alias("redeemed_cents"))
    held = deal_commitments(deals, nothing, live, ONE)
    assert apply_deal_budgets(offers, held, factors=ONE).height < 5
    # expired having redeemed 1,100 cents: 1,900 return and a second batch uses them
    expired = pl.DataFrame({"deal_id": ["D"], "face_cents": [first.height * 100], "redeemed_cents": [1_100]})
    after = deal_commitments(deals, expired, no_live)
    assert after["budget_left_cents"].item() == 1_900
    assert after["released_before_cents"].item() == first.height * 100 - 1_100
    second = apply_deal_budgets(offers, after, factors=ONE)
    assert second.height > 0
    assert 1_100 + budget_charges(second, factors=ONE)["committed_cents"].item() <= 3_000


def _simulate_exceed_rate(rng, offers: pl.DataFrame, budget: int, draws: int, q_true: np.ndarray) -> float:
    """Share of simulated periods whose redemptions exceed `budget`: each offer is used in full with
    probability q (all or nothing: the largest variance a mean allows), or its uses drawn binomially."""
    face = (offers["discount_cents"] * offers["max_uses"]).to_numpy()
    if rng.random() < 0.5:
        spent = (rng.random((draws, len(face))) < q_true) * face
    else:
        uses = rng.binomial(offers["max_uses"].to_numpy(), q_true, (draws, len(face)))
        spent = uses * offers["discount_cents"].to_numpy()
    return float((spent.sum(axis=1) > budget).mean())


def _random_deal_setting(rng):
    n = int(rng.integers(1, 800))
    p = rng.beta(rng.uniform(0.3, 3), rng.uniform(1, 8), n)
    offers = deal_offers(
        p.tolist(),
        rng.integers(10, rng.choice([60, 300, 2_000]), n).tolist(),
        uses=int(rng.integers(1, 4)),
        ev=rng.integers(-50, 300, n).tolist(),
    )
    return offers, int(rng.integers(100, 60_000)), p


@pytest.mark.parametrize("seed", range(60))
def test_simulated_redemptions_exceed_a_deal_budget_less_often_than_the_risk(seed):
    rng = np.random.default_rng(1_000 + seed)
    offers, budget, _ = _random_deal_setting(rng)
    factor = float(rng.choice([1.0, rng.uniform(0.1, 1.0)]))  # a learnt factor, when the model is right
    factors = pl.DataFrame(
        {"kind": ["deal"] * 6, "band": range(6), "use_factor": [factor] * 6}, schema_overrides={"band": pl.Int32}
    )
    kept = apply_deal_budgets(offers, pl.DataFrame({"deal_id": ["D"], "budget_left_cents": [budget]}), factors=factors)
    q = np.minimum(1.0, kept["p_buy"].to_numpy() * factor / kept["max_uses"].to_numpy())
    # 4,000 periods: an exceedance rate of 1 % would show about 40 (sd 6); Bernstein keeps it well below
    assert _simulate_exceed_rate(rng, kept, budget, 4_000, q) <= BUDGET_RISK


def test_without_the_margin_the_simulation_catches_overspending():
    # the same fill at risk 0.5 (a margin of about 1.2 sd) overspends often: the check above has teeth
    rng = np.random.default_rng(7)
    offers = deal_offers(rng.uniform(0.05, 0.4, 2_000).tolist(), 100)
    budget = 20_000
    loose = apply_deal_budgets(
        offers, pl.DataFrame({"deal_id": ["D"], "budget_left_cents": [budget]}), factors=ONE, risk=0.5
    )
    assert _simulate_exceed_rate(rng, loose, budget, 4_000, loose["p_buy"].to_numpy()) > 0.05
    tight = apply_deal_budgets(offers, pl.DataFrame({"deal_id": ["D"], "budget_left_cents": [budget]}), factors=ONE)
    assert _simulate_exceed_rate(rng, tight, budget, 4_000, tight["p_buy"].to_numpy()) <= BUDGET_RISK
    assert tight.height < loose.height
