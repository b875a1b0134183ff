"""Lift against the randomised hold-out, with intervals that cover.

Every qualifying household of a batch is treated (has a list) or held out (has none) at random,
so the difference of the two groups over the batch period estimates the programme's effect
(intention to treat). Two kinds of outcome:

* a **rate** (share of households that bought): the difference of two independent proportions
  with **Newcombe's hybrid score interval** (Newcombe 1998, "Interval estimation for the
  difference between independent proportions", Statistics in Medicine 17:873-890, method 10):
  a Wilson score interval [l_i, u_i] for each rate p_i, then

      low  = (p1 - p2) - sqrt((p1 - l1)^2 + (u2 - p2)^2)
      high = (p1 - p2) + sqrt((u1 - p1)^2 + (p2 - l2)^2)

  Unlike the Wald interval it stays open when a group has no buyer (or only buyers), since
  the Wilson interval of 0/n is [0, z^2 / (n + z^2)], and it covers the truth at about the
  nominal level for hold-outs of 50-100 households (tests/coupons/test_lift.py simulates it);
  the Wald interval covered 87-94 % there.
* a **mean per household** (units, spend in cents): the difference of means with the Welch
  standard error and a normal quantile. Means of hundreds of households are near normal; the
  interval is documented as approximate.

Pure: polars frames in, frames out.
"""

from __future__ import annotations

import statistics
from collections.abc import Sequence

import polars as pl

__all__ = ["z_value", "wilson_bounds", "newcombe_bounds", "holdout_lift"]


def z_value(confidence: float) -> float:
    """The two-sided normal quantile of `confidence` (0.95 -> 1.95996...)."""
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence!r}")
    return statistics.NormalDist().inv_cdf(0.5 + confidence / 2)


def wilson_bounds(successes: pl.Expr, n: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr]:
    """Wilson score interval of a proportion successes / n (no continuity correction).

    centre = (p + z^2 / 2n) / (1 + z^2 / n); half-width = z / (1 + z^2 / n) * sqrt(p (1 - p) / n
    + z^2 / 4n^2) (Wilson 1927). Null where n is 0.
    """
    n = n.cast(pl.Float64)
    p = successes.cast(pl.Float64) / n
    z2 = z * z
    denom = 1.0 + z2 / n
    centre = (p + z2 / (2.0 * n)) / denom
    half = z / denom * (p * (1.0 - p) / n + z2 / (4.0 * n * n)).sqrt()
    valid = n > 0
    return (pl.when(valid).then((centre - half).clip(0.0, 1.0)), pl.when(valid).then((centre + half).clip(0.0, 1.0)))


def newcombe_bounds(x1: pl.Expr, n1: pl.Expr, x2: pl.Expr, n2: pl.Expr, z: float) -> tuple[pl.Expr, pl.Expr]:
    """Newcombe's hybrid score interval of p1 - p2 = x1/n1 - x2/n2 (module docstring)."""
    p1 = x1.cast(pl.Float64) / n1.cast(pl.Float64)
    p2 = x2.cast(pl.Float64) / n2.cast(pl.Float64)
    l1, u1 = wilson_bounds(x1, n1, z)
    l2, u2 = wilson_bounds(x2, n2, z)
    d = p1 - p2
    return (d - ((p1 - l1) ** 2 + (u2 - p2) ** 2).sqrt(), d + ((u1 - p1) ** 2 + (p2 - l2) ** 2).sqrt())


def holdout_lift(
    outcomes: pl.DataFrame,
    confidence: float = 0.95,
    by: Sequence[str] = ("period_start", "category"),
    means: Sequence[str] = ("units",),
) -> pl.DataFrame:
    """Treated minus hold-out: purchase rate (Newcombe) and means per household (Welch), per group.

    Parameters
    ----------
    outcomes
        One row per household x group of `by`: the `by` columns, grp ('treated' | 'holdout'),
        bought (Boolean: bought in the period) and one numeric column per name in `means`
        (0 when nothing was bought).
    confidence
        Two-sided level of the intervals.
    by
        The columns that make one comparison.
    means
        Per-household quantities compared as differences of means.

    Returns
    -------
    polars.DataFrame
        The `by` columns, households, treated_households, holdout_households, treated_buyers,
        holdout_buyers, treated_rate, holdout_rate, rate_lift, rate_ci_low, rate_ci_high, then
        for each name m of `means`: treated_m, holdout_m (per household), m_lift, m_ci_low,
        m_ci_high. One row per group of `by` that has both treated and hold-out households (a
        comparison needs both); sorted by `by`.
    """
    z = z_value(confidence)
    by = list(by)
    g = outcomes.group_by(*by, "grp").agg(
        n=pl.len(),
        x=pl.col("bought").cast(pl.Int64).sum(),
        **{f"_m_{m}": pl.col(m).cast(pl.Float64).mean() for m in means},
        **{f"_v_{m}": pl.col(m).cast(pl.Float64).var(ddof=1).fill_null(0.0) for m in means},
    )
    t = g.filter(pl.col("grp") == "treated").drop("grp")
    h = g.filter(pl.col("grp") == "holdout").drop("grp")
    both = t.join(h, on=by, how="inner", suffix="_h")
    low, high = newcombe_bounds(pl.col("x"), pl.col("n"), pl.col("x_h"), pl.col("n_h"), z)
    rate_t = pl.col("x") / pl.col("n")
    rate_h = pl.col("x_h") / pl.col("n_h")
    columns: dict[str, pl.Expr] = dict(
        households=(pl.col("n") + pl.col("n_h")).cast(pl.Int64),
        treated_households=pl.col("n").cast(pl.Int64),
        holdout_households=pl.col("n_h").cast(pl.Int64),
        treated_buyers=pl.col("x").cast(pl.Int64),
        holdout_buyers=pl.col("x_h").cast(pl.Int64),
        treated_rate=rate_t,
        holdout_rate=rate_h,
        rate_lift=rate_t - rate_h,
        rate_ci_low=low,
        rate_ci_high=high,
    )
    for m in means:
        lift = pl.col(f"_m_{m}") - pl.col(f"_m_{m}_h")
        se = (pl.col(f"_v_{m}") / pl.col("n") + pl.col(f"_v_{m}_h") / pl.col("n_h")).sqrt()
        columns.update(
            {
                f"treated_{m}": pl.col(f"_m_{m}"),
                f"holdout_{m}": pl.col(f"_m_{m}_h"),
                f"{m}_lift": lift,
                f"{m}_ci_low": lift - z * se,
                f"{m}_ci_high": lift + z * se,
            }
        )
    return both.select(*by, **columns).sort(by)
