"""ABC classes and value tiers from each customer's share of sales (a Pareto cut).

Customers are sorted by value, highest first; a customer's *share before* is the share of
all value held by the customers ahead of it. Class A while that share is below the first
cut (default 0.75: the few who bring ~75 % of sales), B below the second (0.95), C the rest.
Value tiers refine it for service levels: VIP are the top customers bringing `vip_share` of
sales (default 0.30), major the rest of A, ordinary = B, small = C.
"""

from __future__ import annotations

import polars as pl

from cycles.occasions import require_columns
from cycles.params import ValueParams

__all__ = ["abc_classes"]


def abc_classes(
    frame: pl.DataFrame,
    value: str = "monetary_cents",
    cuts: tuple[float, float] = ValueParams.abc_cuts,
    vip_share: float = ValueParams.vip_sales_share,
) -> pl.DataFrame:
    """Add abc_class ('A'|'B'|'C') and value_tier ('VIP'|'major'|'ordinary'|'small').

    Ties in value are broken by customer_key; customers with value <= 0 are C / small.
    The frame's row order is kept.
    """
    require_columns(frame, {"customer_key", value}, "frame")
    v = frame[value].cast(pl.Float64).clip(lower_bound=0)
    total = v.sum()
    # the value order by two columns' arg sort, the shares scattered back to the frame's rows: not two
    # sorts of the whole frame (100k customers' RFM frame: 0.6 -> 0.15 CPU s); the same sums in the same order
    order = frame.select(pl.arg_sort_by([value, "customer_key"], descending=[True, False])).to_series()
    ahead = v.gather(order)
    shares = (ahead.cum_sum() - ahead) / total if total > 0 else pl.repeat(1.0, frame.height, eager=True)
    before = pl.zeros(frame.height, pl.Float64, eager=True).alias("_before").scatter(order, shares)
    positive = pl.col(value) > 0
    return (
        frame.with_columns(before)
        .with_columns(
            pl.when(positive & (pl.col("_before") < cuts[0]))
            .then(pl.lit("A"))
            .when(positive & (pl.col("_before") < cuts[1]))
            .then(pl.lit("B"))
            .otherwise(pl.lit("C"))
            .alias("abc_class"),
            pl.when(positive & (pl.col("_before") < vip_share))
            .then(pl.lit("VIP"))
            .when(positive & (pl.col("_before") < cuts[0]))
            .then(pl.lit("major"))
            .when(positive & (pl.col("_before") < cuts[1]))
            .then(pl.lit("ordinary"))
            .otherwise(pl.lit("small"))
            .alias("value_tier"),
        )
        .drop("_before")
    )
