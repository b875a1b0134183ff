"""The CLV models' likelihoods: their analytic gradients against finite differences, and the fits
against an optimiser that uses no gradient at all."""

import numpy as np
import pytest
from scipy import optimize

from cycles.clv import BetaGeoModel, GammaGammaModel, _bgnbd_neg, _spend_neg


def _customers(seed=0, n=800):
    rng = np.random.default_rng(seed)
    x = rng.integers(0, 30, n).astype(float)
    T = rng.uniform(5, 52, n)
    tx = np.where(x > 0, rng.uniform(0, 1, n) * T, 0.0)
    return x, tx, T


def _spends(seed=0, n=800):
    rng = np.random.default_rng(seed)
    visits = rng.integers(2, 40, n).astype(float)
    return visits, rng.gamma(3.0, 1.0, n) * rng.gamma(5.0, 0.2, n) + 0.1


def _numeric_gradient(fn, theta, h=1e-6):
    out = np.empty_like(theta)
    for j in range(theta.size):
        up, down = theta.copy(), theta.copy()
        up[j] += h
        down[j] -= h
        out[j] = (fn(up)[0] - fn(down)[0]) / (2 * h)
    return out


@pytest.mark.parametrize("params", [[0.8, 5.0, 0.7, 2.5], [2.0, 30.0, 1.5, 0.6], [13.0, 10.0, 0.18, 95.0]])
def test_bgnbd_gradient_is_the_likelihoods(params):
    x, tx, T = _customers()
    weight = np.random.default_rng(1).integers(1, 5, x.size).astype(float)

    def fn(theta):
        return _bgnbd_neg(theta, x, tx, T, weight, 1e-3)

    theta = np.log(params)
    np.testing.assert_allclose(fn(theta)[1], _numeric_gradient(fn, theta), rtol=1e-5, atol=1e-7)


@pytest.mark.parametrize("params", [[0.47, 5.2, 1.0], [6.0, 4.0, 15.0], [2.0, 1.5, 0.3]])
def test_spend_gradient_is_the_likelihoods(params):
    visits, spend = _spends()

    def fn(theta):
        return _spend_neg(theta, visits, spend, 1e-3)

    theta = np.log(params)
    np.testing.assert_allclose(fn(theta)[1], _numeric_gradient(fn, theta), rtol=1e-5, atol=1e-7)


def test_bgnbd_fit_is_the_optimum_nelder_mead_finds():
    x, tx, T = _customers(seed=2, n=3000)
    fit = BetaGeoModel().fit(x, tx, T).params_
    got = np.log([fit["r"], fit["alpha"], fit["a"], fit["b"]])
    ones = np.ones(x.size)

    def value(theta):
        return _bgnbd_neg(theta, x, tx, T, ones, 1e-3)[0]

    ref = optimize.minimize(
        value, np.zeros(4), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 20_000}
    )
    assert value(got) <= ref.fun + 1e-10
    np.testing.assert_allclose(got, ref.x, atol=1e-3)


def test_spend_fit_is_the_optimum_nelder_mead_finds():
    visits, spend = _spends(seed=3, n=3000)
    fit = GammaGammaModel().fit(visits, spend * 100).params_  # in cents: the fit scales by the median
    scale = float(np.median(spend * 100))
    got = np.log([fit["p"], fit["q"], fit["gamma"] / scale])

    def value(theta):
        return _spend_neg(theta, visits, spend * 100 / scale, 1e-3)[0]

    ref = optimize.minimize(
        value, np.zeros(3), method="Nelder-Mead", options={"xatol": 1e-9, "fatol": 1e-13, "maxiter": 20_000}
    )
    assert value(got) <= ref.fun + 1e-10
    np.testing.assert_allclose(got, ref.x, atol=1e-3)
