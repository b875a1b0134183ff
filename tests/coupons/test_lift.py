"""Lift intervals (coupons.lift): Newcombe's hybrid score interval covers the truth.

Truth: hand-worked Wilson bounds, statsmodels' `confint_proportions_2indep(method="newcomb")`
as an independent reference, and simulation of hold-out designs with a known lift.
"""

from __future__ import annotations

import math

import numpy as np
import polars as pl
import pytest

from coupons.lift import holdout_lift, newcombe_bounds, wilson_bounds, z_value

Z95 = 1.959963984540054


def _bounds(x1: int, n1: int, x2: int, n2: int, confidence: float = 0.95) -> tuple[float, float]:
    frame = pl.DataFrame({"x1": [x1], "n1": [n1], "x2": [x2], "n2": [n2]})
    low, high = newcombe_bounds(pl.col("x1"), pl.col("n1"), pl.col("x2"), pl.col("n2"), z_value(confidence))
    row = frame.select(low=low, high=high).row(0)
    return row[0], row[1]


def _outcomes(groups: dict[str, tuple[int, int]]) -> pl.DataFrame:
    """households with bought flags: {grp: (buyers, households)}; units 2 per buyer."""
    rows = []
    for grp, (x, n) in groups.items():
        rows += [{"funder": "retailer", "grp": grp, "bought": i < x, "units": 2.0 if i < x else 0.0} for i in range(n)]
    return pl.DataFrame(rows)


def test_z_of_95_percent():
    assert z_value(0.95) == pytest.approx(Z95, abs=1e-12)
    with pytest.raises(ValueError, match="confidence"):
        z_value(1.0)


def test_wilson_bounds_by_hand():
    # 0 of 10: [0, z^2 / (n + z^2)] = [0, 3.8415 / 13.8415]
    # 3 of 10: centre (0.3 + 0.19207) / 1.38415 = 0.35550, half 1.41597 * sqrt(0.021 + 0.009604) = 0.24771
    f = pl.DataFrame({"x": [0, 3], "n": [10, 10]})
    low, high = wilson_bounds(pl.col("x"), pl.col("n"), Z95)
    got = f.select(low=low, high=high)
    assert got["low"].to_list() == pytest.approx([0.0, 0.10779], abs=1e-4)
    assert got["high"].to_list() == pytest.approx([Z95**2 / (10 + Z95**2), 0.60322], abs=1e-4)


def test_newcombe_hand_worked_case():
    # Newcombe (1998) table II, example (a): 56/70 vs 48/80 -> [0.0524, 0.3339]
    low, high = _bounds(56, 70, 48, 80)
    assert (low, high) == pytest.approx((0.0524, 0.3339), abs=5e-5)


@pytest.mark.parametrize(
    "x1,n1,x2,n2",
    [
        (56, 70, 48, 80),
        (9, 10, 3, 10),
        (0, 60, 0, 80),
        (30, 600, 0, 60),
        (600, 600, 80, 80),
        (7, 1000, 1, 50),
        (330, 600, 25, 75),
    ],
)
def test_agrees_with_statsmodels_newcomb(x1, n1, x2, n2):
    from statsmodels.stats.proportion import confint_proportions_2indep

    ref = confint_proportions_2indep(x1, n1, x2, n2, method="newcomb", compare="diff", alpha=0.05)
    assert _bounds(x1, n1, x2, n2) == pytest.approx(ref, abs=1e-9)


def test_no_holdout_buyer_does_not_collapse_the_interval():
    lift = holdout_lift(_outcomes({"treated": (30, 600), "holdout": (0, 60)}), by=("funder",)).row(0, named=True)
    assert lift["holdout_rate"] == 0.0 and lift["rate_lift"] == pytest.approx(0.05)
    # the Wald interval would be 0.05 +- 1.96 * sqrt(0.05 * 0.95 / 600) = [0.0326, 0.0674], which
    # ignores the hold-out's uncertainty altogether; the score interval allows a hold-out rate up to ~6 %
    assert lift["rate_ci_low"] < 0.0 < lift["rate_ci_high"]
    assert lift["rate_ci_high"] - lift["rate_ci_low"] > 0.07
    assert lift["treated_buyers"] == 30 and lift["holdout_buyers"] == 0


def test_means_and_counts_by_hand():
    lift = holdout_lift(_outcomes({"treated": (3, 4), "holdout": (1, 4)}), by=("funder",)).row(0, named=True)
    assert (lift["treated_households"], lift["holdout_households"], lift["households"]) == (4, 4, 8)
    assert (lift["treated_units"], lift["holdout_units"], lift["units_lift"]) == (1.5, 0.5, 1.0)
    # Welch: var(2,2,2,0) = 1, var(2,0,0,0) = 1; se = sqrt(1/4 + 1/4)
    assert lift["units_ci_high"] - lift["units_lift"] == pytest.approx(Z95 * math.sqrt(0.5))


def test_a_group_without_holdout_has_no_comparison():
    frame = pl.concat(
        [
            _outcomes({"treated": (3, 4), "holdout": (1, 4)}),
            _outcomes({"treated": (2, 5)}).with_columns(pl.lit("M1").alias("funder")),
        ]
    )
    assert holdout_lift(frame, by=("funder",))["funder"].to_list() == ["retailer"]


def _coverage(
    rng: np.random.Generator, draws: int, n_treated: int, n_holdout: int, p_t: float, p_h: float, wald: bool = False
) -> float:
    x1 = rng.binomial(n_treated, p_t, draws)
    x2 = rng.binomial(n_holdout, p_h, draws)
    f = pl.DataFrame({"x1": x1, "n1": n_treated, "x2": x2, "n2": n_holdout})
    if wald:
        p1, p2 = pl.col("x1") / pl.col("n1"), pl.col("x2") / pl.col("n2")
        se = (p1 * (1 - p1) / pl.col("n1") + p2 * (1 - p2) / pl.col("n2")).sqrt()
        low, high = p1 - p2 - Z95 * se, p1 - p2 + Z95 * se
    else:
        low, high = newcombe_bounds(pl.col("x1"), pl.col("n1"), pl.col("x2"), pl.col("n2"), Z95)
    truth = p_t - p_h
    return float(f.select(((low <= truth) & (truth <= high)).mean()).item())


# hold-outs of 50-100 households (5-10 % of a few hundred to a thousand qualifying), purchase
# rates of a category in a fortnight from rare to common
DESIGNS = [
    (950, 50, 0.08, 0.05),
    (900, 100, 0.08, 0.05),
    (600, 60, 0.55, 0.35),
    (1400, 75, 0.15, 0.10),
    (450, 50, 0.30, 0.20),
    (900, 100, 0.04, 0.02),
]


@pytest.mark.parametrize("n_treated,n_holdout,p_t,p_h", DESIGNS)
def test_newcombe_covers_95_percent_by_simulation(n_treated, n_holdout, p_t, p_h):
    rng = np.random.default_rng([15, n_treated, n_holdout])
    coverage = _coverage(rng, 4000, n_treated, n_holdout, p_t, p_h)
    assert 0.93 <= coverage <= 0.97, coverage


def test_wald_is_what_we_replaced_it_undercovers_with_rare_holdout_buyers():
    rng = np.random.default_rng(7)
    wald = _coverage(rng, 4000, 950, 50, 0.08, 0.05, wald=True)
    newcombe = _coverage(np.random.default_rng(7), 4000, 950, 50, 0.08, 0.05)
    assert wald < 0.93 < newcombe


def test_holdout_lift_frame_covers_by_simulation():
    """The whole frame path (grouping, joins) at a hold-out of 60: coverage within 93-97 %."""
    rng = np.random.default_rng(2026)
    draws, n_t, n_h, p_t, p_h = 2000, 300, 60, 0.30, 0.20
    grp = np.array(["treated"] * n_t + ["holdout"] * n_h)
    p = np.where(grp == "treated", p_t, p_h)
    bought = rng.random((draws, n_t + n_h)) < p
    frame = pl.DataFrame(
        {
            "draw": np.repeat(np.arange(draws), n_t + n_h),
            "grp": np.tile(grp, draws),
            "bought": bought.ravel(),
            "units": bought.ravel().astype(float),
        }
    )
    lift = holdout_lift(frame, by=("draw",))
    assert lift.height == draws
    coverage = lift.select(((pl.col("rate_ci_low") <= p_t - p_h) & (p_t - p_h <= pl.col("rate_ci_high"))).mean()).item()
    assert 0.93 <= coverage <= 0.97, coverage
