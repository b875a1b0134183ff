"""The ranker recovers a planted signal: on a generated chain where timing matters (regular gamma
cycles) and on one where only frequency does (memoryless, Poisson purchases), it ranks the next
fortnight's categories at least as well as P-TopFreq and the renewal model.

P@10 is compared per customer (paired), on the fortnight after the fitted history (never seen in
fit); the margin of a tie is two standard errors of the mean paired difference at this size, and
the test checks that this margin is small enough to mean something."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cycles.purchase_cycle import PurchaseCycleEstimator
from cycles.ranker import NextWindowRanker
from engine.history import history_from_files
from engine.sample_chain import generate

W = 14
SMALL = {"n_estimators": 60, "n_cutoffs": 6}
MAX_SE = 0.006  # above this, 2 SE would hide a real difference: the chain is too small


def _p_at_10(pred: pl.DataFrame, score: str, bought: pl.DataFrame) -> pl.DataFrame:
    """customer_key, p: hits in the top 10 by `score` / min(10, candidates), customers who bought."""
    top = (
        pred.sort(["customer_key", score, "category"], descending=[False, True, False])
        .group_by("customer_key", maintain_order=True)
        .head(10)
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0))
    )
    return (
        top.join(bought.select("customer_key").unique(), on="customer_key")
        .group_by("customer_key")
        .agg(p=pl.col("y").mean())
        .sort("customer_key")
    )


def _scores(shape_k: float, tmp_path_factory) -> dict[str, np.ndarray]:
    """Per-customer P@10 of the ranker, P-TopFreq and the renewal model on a generated chain whose
    categories all have gamma shape `shape_k`, at 28 days before its end."""
    out = tmp_path_factory.mktemp(f"planted-k{shape_k:g}")
    generate(out, customers=1000, weeks=36, seed=21, fmt="parquet", shape_k=shape_k)
    history = history_from_files(out)[0]
    as_of = history["day"].max() + dt.timedelta(days=1) - dt.timedelta(days=28)
    train = history.filter(pl.col("day") < as_of)
    bought = (
        history.filter(
            (pl.col("day") >= as_of) & (pl.col("day") < as_of + dt.timedelta(days=W)) & (pl.col("quantity") > 0)
        )
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(1).alias("y"))
    )
    ranked = NextWindowRanker(**SMALL).fit(train, observed_until=as_of).predict(as_of, W)
    renewal = PurchaseCycleEstimator().fit(train, observed_until=as_of).predict(as_of, W)
    per = (
        _p_at_10(ranked, "p_buy_in_window", bought)
        .rename({"p": "ranker"})
        .join(
            _p_at_10(renewal.with_columns(pl.col("purchase_days").cast(pl.Float64)), "purchase_days", bought).rename(
                {"p": "topfreq"}
            ),
            on="customer_key",
        )
        .join(_p_at_10(renewal, "p_buy_in_window", bought).rename({"p": "renewal"}), on="customer_key")
    )
    return {name: per[name].to_numpy() for name in ("ranker", "topfreq", "renewal")}


def _diff(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Mean paired difference a - b and its standard error."""
    d = a - b
    return float(d.mean()), float(d.std(ddof=1) / np.sqrt(d.size))


@pytest.fixture(scope="module")
def regular(tmp_path_factory):
    return _scores(12.0, tmp_path_factory)


@pytest.fixture(scope="module")
def memoryless(tmp_path_factory):
    return _scores(1.0, tmp_path_factory)


def test_where_timing_matters_the_ranker_beats_frequency_and_ties_the_renewal_model(regular):
    # the chain plants what it claims: the renewal model (timing) beats plain frequency
    gain, se = _diff(regular["renewal"], regular["topfreq"])
    assert gain > 2 * se and se < MAX_SE, (gain, se)
    gain, se = _diff(regular["ranker"], regular["topfreq"])
    assert gain > 2 * se and se < MAX_SE, (gain, se)
    gain, se = _diff(regular["ranker"], regular["renewal"])
    assert gain > -2 * se and se < MAX_SE, (gain, se)


def test_where_only_frequency_matters_the_ranker_ties_frequency_and_the_renewal_model(memoryless):
    # the chain plants what it claims: timing adds nothing, the renewal model does not beat frequency
    gain, se = _diff(memoryless["renewal"], memoryless["topfreq"])
    assert gain < 2 * se and se < MAX_SE, (gain, se)
    gain, se = _diff(memoryless["ranker"], memoryless["topfreq"])
    assert gain > -2 * se and se < MAX_SE, (gain, se)
    gain, se = _diff(memoryless["ranker"], memoryless["renewal"])
    assert gain > -2 * se and se < MAX_SE, (gain, se)
