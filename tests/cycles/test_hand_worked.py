"""Hand-worked small cases and independent references for the cycles models."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest
from scipy import integrate, stats

from cycles.abc import abc_classes
from cycles.brand_volume import brand_volume, observed_cells, usual_products
from cycles.clv import BetaGeoModel, GammaGammaModel, discounted_clv, group_clv
from cycles.exceptions import InputError, NotFittedError
from cycles.occasions import pair_occasions
from cycles.purchase_cycle import PurchaseCycleEstimator, predictive_survival
from cycles.rfm import rfm_scores

D0 = dt.date(2025, 1, 6)


def lines(rows: list[tuple]) -> pl.DataFrame:
    """History from (customer_key, day offset, category, quantity[, brand_type, product_key, amount]).

    Without a product_key, each category has one product (100, 101, ... in category order).
    """
    full = [(r + (None,) * (7 - len(r))) for r in rows]
    return pl.DataFrame(
        {
            "customer_key": [r[0] for r in full],
            "basket_key": list(range(len(full))),
            "day": [D0 + dt.timedelta(days=r[1]) for r in full],
            "category": [r[2] for r in full],
            "quantity": [float(r[3]) for r in full],
            "brand_type": [r[4] or "national" for r in full],
            "product_key": [r[5] or 100 + sorted({x[2] for x in full}).index(r[2]) for r in full],
            "amount_cents": [r[6] or 100 for r in full],
            "regular_price_cents": [100] * len(full),
            "unit_cost_cents": [60] * len(full),
        },
        schema_overrides={"customer_key": pl.Int64, "product_key": pl.Int64, "basket_key": pl.Int64},
    )


def test_returns_and_same_day_repeats_are_not_new_occasions():
    h = lines(
        [
            (1, 0, "MILK", 1),
            (1, 0, "MILK", 2),
            (1, 7, "MILK", 1),
            (1, 9, "MILK", -1),
            (1, 21, "MILK", 1),
            (2, 3, "MILK", 1),
            (1, 4, "BREAD", 1),
        ]
    )
    occ = pair_occasions(h)
    milk = occ.filter((pl.col("customer_key") == 1) & (pl.col("category") == "MILK")).row(0, named=True)
    assert milk["purchase_days"] == 3
    assert milk["interval_sum_days"] == 21 and milk["interval_median_days"] == 10.5
    assert milk["last_purchase_on"] == D0 + dt.timedelta(days=21)
    assert occ.select("customer_key", "category").rows() == [(1, "BREAD"), (1, "MILK"), (2, "MILK")]


def test_occasion_gaps_by_hand_and_the_log_sum_only_when_asked():
    # MILK of customer 1: occasions on days 0, 7, 21, 22 (gaps 7, 14, 1); BREAD once
    h = lines([(1, 0, "MILK", 1), (1, 7, "MILK", 1), (1, 21, "MILK", 1), (1, 22, "MILK", 2), (1, 4, "BREAD", 1)])
    occ = pair_occasions(h)
    milk = occ.filter(pl.col("category") == "MILK").row(0, named=True)
    assert milk["interval_median_days"] == 7.0 and milk["interval_sum_days"] == 22.0
    assert milk["interval_logsum"] == pytest.approx(np.log(7) + np.log(14) + np.log(1), abs=1e-12)
    bread = occ.filter(pl.col("category") == "BREAD").row(0, named=True)
    assert (bread["n_intervals"], bread["interval_sum_days"], bread["interval_logsum"]) == (0, 0.0, 0.0)
    assert bread["interval_median_days"] is None
    lean = pair_occasions(h, logsum=False)
    assert lean["interval_logsum"].null_count() == lean.height
    assert lean.drop("interval_logsum").equals(occ.drop("interval_logsum"))


def test_usual_products_the_same_for_keys_that_do_not_pack():
    rows = [
        (1, 0, "TEA", 2, "store", 7),
        (1, 3, "TEA", 2, "national", 5),
        (1, 5, "TEA", -1, "store", 7),
        (2, 1, "TEA", 1, "national", 5),
        (2, 2, "COFFEE", 3, "store", 9),
    ]
    h = lines(rows)
    out = usual_products(h)
    # ties on units bought go to the lowest product key; returns count in units, not in bought units
    tea1 = out.filter((pl.col("customer_key") == 1) & (pl.col("category") == "TEA")).row(0, named=True)
    assert (tea1["usual_product_key"], tea1["units"], tea1["bought_units"], tea1["store_units"]) == (5, 3.0, 4.0, 2.0)
    # negative and huge customer keys are coded by rank: the same rows under the same keys
    for shift in (-10, 1 << 55):
        moved = usual_products(h.with_columns(pl.col("customer_key") + shift))
        assert moved.with_columns(pl.col("customer_key") - shift).equals(out)


def test_predictive_survival_matches_numeric_integration_over_the_rate():
    k, alpha, beta, t = 2.5, 7.0, 60.0, 13.0
    reference, _ = integrate.quad(
        lambda lam: stats.gamma.sf(t, k, scale=1 / lam) * stats.gamma.pdf(lam, alpha, scale=1 / beta), 0, np.inf
    )
    assert predictive_survival(np.array([t]), k, alpha, beta)[0] == pytest.approx(reference, rel=1e-6)


def test_p_buy_in_window_matches_monte_carlo_of_the_model():
    # one pair bought every ~10 days; predict 4 days after the last purchase for a 7-day window
    days = [0, 10, 19, 31, 40, 52]
    h = lines([(1, d, "MILK", 1) for d in days] + [(c, d, "MILK", 1) for c in range(2, 40) for d in (0, 9 + c % 5, 20)])
    est = PurchaseCycleEstimator(min_category_pairs=1).fit(h, observed_until=D0 + dt.timedelta(days=56))
    row = est.predict(D0 + dt.timedelta(days=56), window_days=7).filter(pl.col("customer_key") == 1).row(0, named=True)
    prior = est.priors_.row(0, named=True)
    k, pi = prior["k"], prior["pi"]
    alpha, beta = prior["a"] + 5 * k, prior["b"] + 52
    rng = np.random.default_rng(0)
    lam = rng.gamma(alpha, 1 / beta, 2_000_000)
    t = rng.gamma(k, 1 / lam)
    stopped = rng.random(t.size) < pi
    u = 4 - 0.5  # the half-day continuity correction
    alive = (t > u) & ~stopped
    waiting = alive | stopped
    expected = ((t < u + 7) & alive).sum() / waiting.sum()
    assert row["p_buy_in_window"] == pytest.approx(expected, abs=0.003)


def test_predict_before_fit_raises_not_fitted():
    with pytest.raises(NotFittedError):
        PurchaseCycleEstimator().predict(D0)


def test_missing_columns_are_named():
    with pytest.raises(InputError, match="quantity"):
        PurchaseCycleEstimator().fit(
            pl.DataFrame({"customer_key": [1], "day": [D0], "product_key": [1], "category": ["MILK"]})
        )


def test_probabilities_are_probabilities_and_overdue_pairs_fade():
    h = lines([(c, d, "MILK", 1) for c in range(1, 30) for d in range(0, 120, 7)])
    est = PurchaseCycleEstimator().fit(h, observed_until=D0 + dt.timedelta(days=120))
    p = [est.predict(D0 + dt.timedelta(days=120 + extra), 7)["p_buy_in_window"].mean() for extra in (0, 30, 90)]
    assert all(0 <= x <= 1 for x in p)
    assert p[0] > p[1] > p[2]  # weekly buyers silent for weeks have probably gone


def test_rfm_scores_are_quintiles_and_score_is_100r_10f_m():
    summary = pl.DataFrame(
        {
            "customer_key": range(1, 11),
            "recency_days": [1, 2, 3, 4, 5, 6, 7, 8, 9, 10],
            "frequency": [10, 9, 8, 7, 6, 5, 4, 3, 2, 1],
            "monetary_cents": [100, 200, 300, 400, 500, 600, 700, 800, 900, 1000],
        }
    )
    out = rfm_scores(summary)
    assert out["r_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert out["f_score"].to_list() == [5, 5, 4, 4, 3, 3, 2, 2, 1, 1]
    assert out["m_score"].to_list() == [1, 1, 2, 2, 3, 3, 4, 4, 5, 5]
    assert out["rfm_score"].to_list()[0] == 551 and out["rfm_score"].to_list()[-1] == 115
    # mean score 3: customer 1 is high on R and F, low on M; customer 10 low, low, high
    assert out["rfm_segment"][0] == "general value"
    assert out["rfm_segment"][9] == "important retain"


def test_abc_shares_and_value_tiers_by_cumulative_sales():
    frame = pl.DataFrame({"customer_key": [1, 2, 3, 4, 5, 6, 7], "monetary_cents": [50, 20, 10, 10, 5, 5, 0]})
    out = abc_classes(frame, cuts=(0.75, 0.95), vip_share=0.30)
    # shares before each customer: 0, .50, .70, .80, .90, .95, 1.0
    assert out["abc_class"].to_list() == ["A", "A", "A", "B", "B", "C", "C"]
    assert out["value_tier"].to_list() == ["VIP", "major", "major", "ordinary", "ordinary", "small", "small"]


def test_brand_cells_and_volume_tiers_on_a_small_category():
    h = lines(
        [
            (1, 0, "TEA", 1, "national", 1),
            (1, 7, "TEA", 1, "national", 1),
            (2, 0, "TEA", 1, "store", 2),
            (2, 7, "TEA", 1, "store", 2),
            (3, 0, "TEA", 1, "store", 2),
            (3, 7, "TEA", 1, "national", 1),
            (4, 0, "TEA", 5, "store", 2),
        ]
    )
    cycles = pair_occasions(h).with_columns(pl.lit(7.0).alias("mean_interval_days"))
    out = brand_volume(usual_products(h), cycles, prior_occasions=0.0)
    assert out["brand_cell"].to_list() == ["national", "store", "switcher", "unclassified"]
    assert out["volume_tier"].to_list() == ["low", "low", "low", "high"]
    assert usual_products(h).filter(pl.col("customer_key") == 3)["usual_product_key"].item() == 1


def test_observed_cells_read_the_share_and_units_a_week_off_the_window():
    # the small category above over two weeks, plus a return that must not count
    h = lines(
        [
            (1, 0, "TEA", 1, "national", 1),
            (1, 7, "TEA", 1, "national", 1),
            (2, 0, "TEA", 1, "store", 2),
            (2, 7, "TEA", 1, "store", 2),
            (2, 9, "TEA", -1, "store", 2),
            (3, 0, "TEA", 1, "store", 2),
            (3, 7, "TEA", 1, "national", 1),
            (4, 0, "TEA", 5, "store", 2),
        ]
    )
    out = observed_cells(h, weeks=2.0)
    assert out["purchase_days"].to_list() == [2, 2, 2, 1]
    assert out["store_share"].to_list() == [0.0, 1.0, 0.5, 1.0]
    assert out["units_per_week"].to_list() == [1.0, 1.0, 1.0, 2.5]  # units bought / 2 weeks
    # cuts at the linear tertiles of [1, 1, 1, 2.5]: 1 and 1
    assert out["brand_cell"].to_list() == ["national", "store", "switcher", "unclassified"]
    assert out["volume_tier"].to_list() == ["low", "low", "low", "high"]
    stricter = observed_cells(h, weeks=2.0, national_max=0.0, store_min=1.0, min_occasions=1)
    assert stricter["brand_cell"].to_list() == ["national", "store", "switcher", "store"]


def test_bgnbd_recovers_planted_parameters():
    # simulate the BG/NBD process itself (Fader, Hardie & Lee 2005) and fit it back
    rng = np.random.default_rng(1)
    n, T = 4000, 52.0
    r, alpha, a, b = 0.8, 4.0, 0.8, 2.5
    lam = rng.gamma(r, 1 / alpha, n)
    p = rng.beta(a, b, n)
    x = np.zeros(n)
    tx = np.zeros(n)
    for i in range(n):
        t = 0.0
        while True:
            t += rng.exponential(1 / lam[i])
            if t > T:
                break
            x[i] += 1
            tx[i] = t
            if rng.random() < p[i]:
                break
    fit = BetaGeoModel(penalizer=0.0).fit(x, tx, np.full(n, T)).params_
    assert fit["r"] == pytest.approx(r, rel=0.2)
    assert fit["alpha"] == pytest.approx(alpha, rel=0.25)
    assert fit["a"] / (fit["a"] + fit["b"]) == pytest.approx(a / (a + b), rel=0.2)


def test_bgnbd_p_alive_hand_worked():
    bg = BetaGeoModel()
    bg.params_ = {"r": 1.0, "alpha": 2.0, "a": 1.0, "b": 3.0}
    # x = 2, t_x = 4, T = 10: 1 / (1 + a/(b+x-1) ((alpha+T)/(alpha+t_x))^(r+x)) = 1 / (1 + 0.25 * 8)
    assert bg.p_alive([2.0], [4.0], [10.0])[0] == pytest.approx(1 / 3)
    assert bg.p_alive([0.0], [0.0], [10.0])[0] == 1.0


def test_gamma_gamma_shrinks_towards_the_population_mean():
    gg = GammaGammaModel()
    gg.params_ = {"p": 6.0, "q": 4.0, "gamma": 15.0}
    # population mean gamma p / (q - 1) = 30; weight of the customer's own mean p x / (p x + q - 1)
    assert gg.expected_spend([1.0], [60.0])[0] == pytest.approx(30 / 3 + 60 * 2 / 3)  # weight 6 / 9
    assert gg.expected_spend([10.0], [60.0])[0] == pytest.approx((3 / 63) * 30 + (60 / 63) * 60)


def test_discounted_clv_is_visits_times_spend_times_margin():
    bg = BetaGeoModel()
    bg.params_ = {"r": 2.0, "alpha": 4.0, "a": 2.0, "b": 50.0}
    x, tx, T = np.array([10.0]), np.array([20.0]), np.array([21.0])
    undiscounted = discounted_clv(bg, x, tx, T, np.array([1000.0]), np.array([0.25]), years=1.0, annual_rate=0.0)
    visits = bg.expected_visits(52.0, x, tx, T)
    assert undiscounted[0] == pytest.approx(visits[0] * 1000 * 0.25)
    assert discounted_clv(bg, x, tx, T, np.array([1000.0]), np.array([0.25]), 1.0, 0.10)[0] < undiscounted[0]


def test_group_clv_is_yearly_contribution_over_churn():
    frame = pl.DataFrame(
        {
            "tier": ["A", "A", "B", "B"],
            "yearly_contribution_cents": [1000, 3000, 500, 500],
            "churned": [False, True, False, False],
        }
    )
    out = group_clv(frame, "tier")
    assert out.row(0, named=True) == {"tier": "A", "customers": 2, "p_cents": 2000, "r": 0.5, "clv_cents": 4000}
    assert out.row(1, named=True)["r"] == 0.01 and out.row(1, named=True)["clv_cents"] == 50_000


def test_abc_classes_keep_the_rows_order_and_break_ties_by_customer_key():
    """Against a plain loop over the customers by value (highest first, ties by key), rows shuffled."""
    rng = np.random.default_rng(5)
    n = 400
    frame = pl.DataFrame(
        {"customer_key": rng.permutation(n) + 1, "monetary_cents": rng.integers(-3, 12, n) * 1000, "other": ["x"] * n}
    )
    out = abc_classes(frame, cuts=(0.75, 0.95), vip_share=0.30)
    assert out["customer_key"].to_list() == frame["customer_key"].to_list()  # the frame's row order
    total = sum(max(v, 0) for v in frame["monetary_cents"])
    expected, ahead = {}, 0
    for key, value in sorted(zip(frame["customer_key"], frame["monetary_cents"]), key=lambda kv: (-kv[1], kv[0])):
        share = ahead / total
        if value <= 0:
            expected[key] = ("C", "small")
        elif share < 0.30:
            expected[key] = ("A", "VIP")
        elif share < 0.75:
            expected[key] = ("A", "major")
        elif share < 0.95:
            expected[key] = ("B", "ordinary")
        else:
            expected[key] = ("C", "small")
        ahead += max(value, 0)
    assert {k: (a, t) for k, a, t in out.select("customer_key", "abc_class", "value_tier").iter_rows()} == expected
