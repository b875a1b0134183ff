"""The needs section of a list: what the customer will likely buy in the period, at any price.

A list is a shopping list first: beside its specials it names the categories the customer
is most likely to need in the period, each on the product they usually buy there, with the
day they likely need it. These lines cost nothing, so no budget applies; they come straight
from the profile the batch already computes: per treated customer, the categories with
``p_buy_in_window`` at or above a floor, best first, at most a number of them.

Ties in ``p_buy_in_window`` are broken by the earlier expected day, then the category name,
so the selection is deterministic.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["select_needs", "NEEDS_SCHEMA"]

NEEDS_SCHEMA = {
    "customer_key": pl.Int64,
    "line_no": pl.Int64,
    "category": pl.String,
    "product_key": pl.Int64,
    "p_buy": pl.Float64,
    "expected_on": pl.Date,
    "interval_days": pl.Int64,
}


def select_needs(
    profile: pl.DataFrame,
    customer_keys: pl.Series,
    period_start: dt.date,
    period_end: dt.date,
    *,
    min_p_buy: float = 0.5,
    max_lines: int = 12,
) -> pl.DataFrame:
    """The needs lines of each treated customer's list.

    Parameters
    ----------
    profile
        One row per customer x category: customer_key, category, p_buy_in_window,
        next_expected_on, interval_median_days, usual_product_key (null allowed: the line
        then names the category).
    customer_keys
        The customers who get a list (treated); other customers' rows are ignored.
    period_start, period_end
        The period [start, end); ``expected_on`` is ``next_expected_on`` brought inside it.
    min_p_buy
        Categories below this probability of a purchase in the period are not listed.
    max_lines
        At most this many needs per list (0: no needs section).

    Returns
    -------
    pl.DataFrame
        `NEEDS_SCHEMA`: customer_key, line_no (1.. per customer, best first), category,
        product_key (the usual product, may be null), p_buy, expected_on (Date, inside the
        period), interval_days (rounded median days between purchases, may be null); sorted
        by customer_key, line_no.

    Examples
    --------
    >>> import datetime as dt, polars as pl
    >>> profile = pl.DataFrame({"customer_key": [1, 1, 1], "category": ["MILK", "EGGS", "SALT"],
    ...     "p_buy_in_window": [0.9, 0.6, 0.1], "next_expected_on": [dt.date(2025, 3, 1)] * 3,
    ...     "interval_median_days": [7.0, 12.0, 90.0], "usual_product_key": [10, 20, 30]})
    >>> select_needs(profile, pl.Series([1]), dt.date(2025, 3, 3), dt.date(2025, 3, 17))["category"].to_list()
    ['MILK', 'EGGS']
    """
    if not 0.0 <= min_p_buy <= 1.0:
        raise ValueError(f"needs min_p_buy must be in [0, 1], got {min_p_buy!r}")
    if max_lines < 0:
        raise ValueError(f"needs max_lines must be >= 0, got {max_lines!r}")
    last_day = period_end - dt.timedelta(days=1)
    keys = pl.DataFrame({"customer_key": customer_keys.cast(pl.Int64)}).unique()
    interval = (
        pl.col("interval_median_days").cast(pl.Float64).round().cast(pl.Int64)
        if "interval_median_days" in profile.columns
        else pl.lit(None, pl.Int64)
    )
    expected = (
        pl.col("next_expected_on").cast(pl.Date).fill_null(period_start)
        if "next_expected_on" in profile.columns
        else pl.lit(period_start)
    )
    product = pl.col("usual_product_key") if "usual_product_key" in profile.columns else pl.lit(None)
    rows = (
        profile.with_columns(pl.col("customer_key").cast(pl.Int64))
        .join(keys, on="customer_key", how="semi")
        .filter(pl.col("p_buy_in_window").is_not_null() & (pl.col("p_buy_in_window") >= min_p_buy))
        .select(
            "customer_key",
            "category",
            product.cast(pl.Int64).alias("product_key"),
            pl.col("p_buy_in_window").cast(pl.Float64).alias("p_buy"),
            expected.clip(period_start, last_day).alias("expected_on"),
            interval.alias("interval_days"),
        )
        .sort(["customer_key", "p_buy", "expected_on", "category"], descending=[False, True, False, False])
        .with_columns((pl.int_range(pl.len()).over("customer_key") + 1).cast(pl.Int64).alias("line_no"))
        .filter(pl.col("line_no") <= max_lines)
    )
    return rows.select(list(NEEDS_SCHEMA)).cast(NEEDS_SCHEMA)
