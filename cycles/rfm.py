"""RFM: recency, frequency and monetary value scored 1-5, the score and the eight segments.

Scores are quintiles of the customers' ranks (ties share the lower score): a higher score
is better, so recency is ranked on days since the last visit, fewest days best. The score
is 100 R + 10 F + M. A customer is *high* on a dimension when its score is above the mean
score of all customers on that dimension; the eight segments are the high/low combinations
(DESIGN.md, "Customer value vocabulary").
"""

from __future__ import annotations

import polars as pl

from cycles.occasions import require_columns

__all__ = ["quintile_score", "rfm_scores", "SEGMENTS"]

# (R high, F high, M high) -> segment
SEGMENTS: dict[tuple[bool, bool, bool], str] = {
    (True, True, True): "important value",
    (True, False, True): "important development",
    (False, True, True): "important keep",
    (False, False, True): "important retain",
    (True, True, False): "general value",
    (True, False, False): "general development",
    (False, True, False): "general keep",
    (False, False, False): "general retain",
}


def quintile_score(value: pl.Expr, higher_is_better: bool = True) -> pl.Expr:
    """1-5 by quintile of rank: 1 + floor(5 (rank - 1) / n), ties at their lowest rank."""
    goodness = value if higher_is_better else -value
    rank = goodness.rank(method="min")
    return (1 + ((rank - 1) * 5) // pl.len()).cast(pl.Int8)


def rfm_scores(summary: pl.DataFrame) -> pl.DataFrame:
    """RFM scores and segments.

    Parameters
    ----------
    summary
        One row per customer: customer_key, recency_days, frequency, monetary_cents.

    Returns
    -------
    polars.DataFrame
        The input plus r_score, f_score, m_score (Int8, 1-5), rfm_score (Int16,
        100R + 10F + M) and rfm_segment (String), in the input's order.
    """
    require_columns(summary, {"customer_key", "recency_days", "frequency", "monetary_cents"}, "summary")
    scored = summary.with_columns(
        r_score=quintile_score(pl.col("recency_days"), higher_is_better=False),
        f_score=quintile_score(pl.col("frequency")),
        m_score=quintile_score(pl.col("monetary_cents")),
    )
    high = [pl.col(c) > pl.col(c).cast(pl.Float64).mean() for c in ("r_score", "f_score", "m_score")]
    segment = pl.lit("general retain")
    for (r, f, m), name in SEGMENTS.items():
        segment = pl.when((high[0] == r) & (high[1] == f) & (high[2] == m)).then(pl.lit(name)).otherwise(segment)
    return scored.with_columns(
        (
            pl.col("r_score").cast(pl.Int16) * 100
            + pl.col("f_score").cast(pl.Int16) * 10
            + pl.col("m_score").cast(pl.Int16)
        ).alias("rfm_score"),
        segment.alias("rfm_segment"),
    )
