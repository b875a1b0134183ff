"""The compiled beta-prime survival (cycles._betaprime) against closed forms and scipy's betainc."""

import numpy as np
import pytest
from scipy import special

from cycles._betaprime import survivals
from cycles.purchase_cycle import predictive_survival


def _lomax(t, k, alpha, beta):
    """Closed forms of I_x(alpha, k), x = beta / (beta + t): x^alpha (k = 1), x^alpha (1 + alpha (1 - x)) (k = 2)."""
    log_x = -np.log1p(t / beta)
    y = t / (beta + t)
    return np.exp(alpha * log_x) * (1.0 if k == 1 else 1.0 + alpha * y)


@pytest.mark.parametrize("k", [1, 2])
def test_matches_the_closed_forms_of_integer_shape_far_into_the_tail(k):
    rng = np.random.default_rng(k)
    alpha = np.exp(rng.uniform(np.log(0.5), np.log(2e4), 20_000))
    beta = np.exp(rng.uniform(np.log(0.01), np.log(1e5), alpha.size))
    t = np.exp(rng.uniform(np.log(0.5), np.log(1e4), alpha.size))
    exact = _lomax(t, k, alpha, beta)
    keep = exact > 1e-250  # down to 1e-250: scipy's betainc is 35 % off near 1e-283, this is not
    got = survivals(t[keep, None], np.full(keep.sum(), float(k)), alpha[keep], beta[keep])[:, 0]
    assert keep.sum() > 12_000
    np.testing.assert_allclose(got, exact[keep], rtol=1e-11, atol=0)


def test_within_1e_10_of_scipy_over_the_models_parameter_box():
    # the fit's bounds: k in [0.2, 60], a in [0.3, 1e4] (+ n k), b in [1e-3, 1e7] (+ days)
    rng = np.random.default_rng(0)
    n = 200_000
    k = np.exp(rng.uniform(np.log(0.2), np.log(60), n))
    alpha = np.exp(rng.uniform(np.log(0.3), np.log(1e5), n))
    beta = np.exp(rng.uniform(np.log(1e-3), np.log(1e6), n))
    t = np.exp(rng.uniform(np.log(0.5), np.log(1e5), n))
    ref = special.betainc(alpha, k, beta / (beta + t))
    got = survivals(t[:, None], k, alpha, beta)[:, 0]
    assert np.all((got >= 0) & (got <= 1))
    np.testing.assert_allclose(got, ref, rtol=0, atol=1e-10)
    big = ref > 1e-200
    np.testing.assert_allclose(got[big], ref[big], rtol=1e-10, atol=0)


def test_several_days_of_a_pair_at_once_equal_one_at_a_time():
    rng = np.random.default_rng(3)
    k, alpha, beta = rng.uniform(1, 5, 1000), rng.uniform(2, 300, 1000), rng.uniform(5, 3000, 1000)
    u = rng.integers(1, 400, 1000).astype(float)
    days = u[:, None] + np.array([0.0, 14.0, 56.0]) - 0.5
    together = predictive_survival(days, k, alpha, beta)
    for j in range(3):
        assert np.array_equal(together[:, j], predictive_survival(days[:, j], k, alpha, beta))
    # S never rises with t
    assert np.all(np.diff(together, axis=1) <= 0)


def test_edges_as_scipys_betainc():
    t = np.array([-3.0, 0.0, 1.0, np.inf, np.nan])
    got = predictive_survival(t, 2.0, 3.0, 4.0)
    np.testing.assert_array_equal(got[[0, 1, 3, 4]], [1.0, 1.0, 0.0, np.nan])  # S(t <= 0) = 1, S(inf) = 0
    assert got[2] == pytest.approx(0.8192, rel=1e-15)  # I_0.8(3, 2) = 0.8^3 (1 + 3 * 0.2)
    # a category without priors (NaN parameters): NaN, at once
    got = predictive_survival(
        np.array([5.0, 5.0, 5.0]), np.array([np.nan, 2.0, 2.0]), np.array([3.0, np.nan, 3.0]), 4.0
    )
    assert np.isnan(got[:2]).all() and got[2] == pytest.approx(special.betainc(3.0, 2.0, 4.0 / 9.0), rel=1e-14)
    # scalars broadcast like the ufunc
    assert predictive_survival(5.0, 2.0, 3.0, 4.0) == pytest.approx(special.betainc(3.0, 2.0, 4.0 / 9.0), rel=1e-14)
