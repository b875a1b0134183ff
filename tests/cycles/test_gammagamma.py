"""The compiled gamma-gamma prior fit (cycles._gammagamma) against scipy: its special functions, its
optimiser on the same likelihood, and the planted parameters it should recover."""

import numpy as np
import pytest
from scipy import optimize, special

from cycles._gammagamma import digamma, fit_gamma_gamma, trigamma

BOX_LO, BOX_HI = np.array([0.2, 0.3, 1e-3]), np.array([60.0, 1e4, 1e7])


def _mean_ll(params, n, s, lsum):
    """The mean log marginal likelihood, written from the model with scipy's gammaln."""
    k, a, b = params
    return float(
        np.mean(
            (k - 1) * lsum
            - n * special.gammaln(k)
            + a * np.log(b)
            - special.gammaln(a)
            + special.gammaln(a + n * k)
            - (a + n * k) * np.log(b + s)
        )
    )


def _planted(k, a, b, pairs, seed):
    """Pairs' (n, s, logsum) from the model: rate ~ Gamma(a, rate b), 1..12 intervals ~ Gamma(k, rate)."""
    rng = np.random.default_rng(seed)
    lam = rng.gamma(a, 1 / b, pairs)
    n = rng.integers(1, 13, pairs)
    gaps = [rng.gamma(k, 1 / lam_i, n_i) for lam_i, n_i in zip(lam, n)]
    return n.astype(float), np.array([g.sum() for g in gaps]), np.array([np.log(g).sum() for g in gaps])


def _scipy_fit(n, s, lsum):
    """scipy's bounded quasi-Newton on the same likelihood, numeric gradient: an independent optimum."""
    res = optimize.minimize(
        lambda th: -_mean_ll(np.exp(th), n, s, lsum),
        np.log([2.0, 3.0, s.sum() / n.sum()]),
        method="L-BFGS-B",
        bounds=list(zip(np.log(BOX_LO), np.log(BOX_HI))),
        options={"ftol": 1e-15, "gtol": 1e-10, "maxiter": 10_000},
    )
    return np.exp(res.x)


def test_digamma_and_trigamma_match_scipy_from_tiny_to_huge_arguments():
    x = np.exp(np.random.default_rng(0).uniform(np.log(1e-3), np.log(1e7), 20_000))
    psi = np.array([digamma(v) for v in x])
    psi1 = np.array([trigamma(v) for v in x])
    # absolute near psi's root (x = 1.4616...), relative elsewhere
    np.testing.assert_allclose(psi, special.digamma(x), rtol=1e-13, atol=1e-14)
    np.testing.assert_allclose(psi1, special.polygamma(1, x), rtol=1e-13, atol=0)


@pytest.mark.parametrize(
    ("k", "a", "b", "seed"),
    [(2.5, 6.0, 60.0, 1), (1.2, 3.0, 10.0, 2), (6.0, 20.0, 2000.0, 3), (0.8, 1.5, 40.0, 4)],
)
def test_recovers_planted_parameters_and_beats_scipys_optimum(k, a, b, seed):
    n, s, lsum = _planted(k, a, b, 4_000, seed)
    got = np.array(fit_gamma_gamma(n, s, lsum))
    ref = _scipy_fit(n, s, lsum)
    # the optimum: at least as likely as scipy's, and the same point where it is well determined
    assert _mean_ll(got, n, s, lsum) >= _mean_ll(ref, n, s, lsum) - 1e-12
    np.testing.assert_allclose(got, ref, rtol=2e-3)
    # the planted truth, within sampling error of 4,000 pairs
    assert got[0] == pytest.approx(k, rel=0.05)
    assert got[1] / got[2] == pytest.approx(a / b, rel=0.05)  # the mean rate
    assert got[1] == pytest.approx(a, rel=0.2)


def test_gradient_vanishes_at_an_interior_optimum():
    n, s, lsum = _planted(2.5, 6.0, 60.0, 2_000, 7)
    got = np.log(fit_gamma_gamma(n, s, lsum))
    for j in range(3):
        h = 1e-5
        up, down = got.copy(), got.copy()
        up[j] += h
        down[j] -= h
        slope = (_mean_ll(np.exp(up), n, s, lsum) - _mean_ll(np.exp(down), n, s, lsum)) / (2 * h)
        assert abs(slope) < 1e-7


def test_a_common_rate_sends_a_to_its_bound_with_the_rate_right():
    # every pair has the same rate (no spread: a -> infinity): a stops at the box, b keeps a / b the rate
    rng = np.random.default_rng(5)
    n = rng.integers(2, 12, 3_000).astype(float)
    gaps = [rng.gamma(3.0, 1 / 0.1, int(m)) for m in n]
    s, lsum = np.array([g.sum() for g in gaps]), np.array([np.log(g).sum() for g in gaps])
    k, a, b = fit_gamma_gamma(n, s, lsum)
    assert a == pytest.approx(BOX_HI[1], rel=1e-12)
    assert a / b == pytest.approx(0.1, rel=0.03)
    assert k == pytest.approx(3.0, rel=0.05)
    # no better point in the box (scipy's bounded fit is no more likely)
    ref = _scipy_fit(n, s, lsum)
    assert _mean_ll((k, a, b), n, s, lsum) >= _mean_ll(ref, n, s, lsum) - 1e-12


@pytest.mark.parametrize("pairs", [1, 2, 5])
def test_a_handful_of_pairs_gives_a_point_in_the_box(pairs):
    n, s, lsum = _planted(2.0, 4.0, 40.0, pairs, 11)
    got = np.array(fit_gamma_gamma(n, s, lsum))
    assert np.all(np.isfinite(got))
    assert np.all(got >= BOX_LO * (1 - 1e-12)) and np.all(got <= BOX_HI * (1 + 1e-12))
    ref = _scipy_fit(n, s, lsum)
    assert _mean_ll(got, n, s, lsum) >= _mean_ll(ref, n, s, lsum) - 1e-9
