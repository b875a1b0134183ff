"""Lifecycle stage (new, growing, mature, declining, lapsed) and the decline warning.

History before the as-of date is cut into 28-day "months", month 0 the latest. A decline
warning is raised by any of:

* visits fell in each of the last `decline_months` months (e.g. 6 > 4 > 3 > 1);
* spend fell in each of the last `decline_months` months;
* distinct categories of the latest month at most `category_ratio` of the mean of the
  `decline_months` months before (five categories down to two), from at least 3;
* visits of the last two months at most `visit_ratio` of the rate of the four months
  before (from at least one visit a month): a sudden drop.

Stages, first match wins: ``lapsed`` (no visit for `lapsed_days`), ``new`` (first visit
within `new_days`), ``declining`` (a warning), ``growing`` (spend of the last 13 weeks at
least `growing_ratio` times the 13 weeks before), ``mature``.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from cycles.occasions import DAY_BITS, category_codes, product_lookup, require_columns
from cycles.params import ValueParams as _V

__all__ = ["customer_days", "monthly_activity", "lifecycle"]

_MONTH = 28


def customer_days(history: pl.DataFrame, as_of: dt.date) -> pl.DataFrame:
    """Per customer and day with a line before `as_of`: customer_key, age (Int64, days before
    `as_of`, >= 1), amount_cents (Int64, net), bought (Bool, a line of positive quantity).

    One group-by of the lines on a packed integer key; the visits, spend and lifecycle months of
    `cycles.value` are read off this much smaller frame.
    """
    require_columns(history, {"customer_key", "day", "quantity", "amount_cents"}, "history")
    age = (pl.lit(as_of) - pl.col("day")).dt.total_days()
    key = pl.col("customer_key") * (1 << DAY_BITS) + age
    return (
        history.lazy()
        .filter(pl.col("day") < as_of)
        .group_by(key.alias("_k"))
        .agg(amount_cents=pl.col("amount_cents").sum(), bought=(pl.col("quantity") > 0).any())
        .select(
            (pl.col("_k") // (1 << DAY_BITS)).alias("customer_key"),
            (pl.col("_k") % (1 << DAY_BITS)).alias("age"),
            "amount_cents",
            "bought",
        )
        .collect()
    )


def monthly_activity(
    history: pl.DataFrame, as_of: dt.date, months: int, days: pl.DataFrame | None = None
) -> pl.DataFrame:
    """Per customer and 28-day month (0 = latest): visits, spend_cents, categories.

    `days`: `customer_days(history, as_of)` when the caller has it.

    Returns
    -------
    polars.DataFrame
        customer_key, month (Int32), visits (UInt32, days with a purchase), spend_cents
        (Int64, net of returns), categories (UInt32); only months with activity.
    """
    require_columns(history, {"customer_key", "day", "category", "quantity", "amount_cents"}, "history")
    if days is None:
        days = customer_days(history, as_of)
    month = ((pl.col("age") - 1) // _MONTH).cast(pl.Int32)
    per = (
        days.lazy()
        .filter(pl.col("age") <= months * _MONTH)
        .group_by("customer_key", month.alias("month"))
        .agg(visits=pl.col("bought").sum().cast(pl.UInt32), spend_cents=pl.col("amount_cents").sum())
    )
    # distinct categories bought a month: distinct packed (customer, month, category code) keys
    if "product_key" in history.columns:  # through the product's integer key: no string hashed per line
        codes = category_codes(history)
        n_cat, cat = codes.height, product_lookup(codes["product_key"], codes["cat_code"].cast(pl.Int64))
    else:
        names = history["category"].unique()
        n_cat, cat = names.len(), pl.col("category").replace_strict(names, pl.int_range(names.len(), eager=True))
    cat_bits = max(1, n_cat.bit_length())
    m_bits = max(1, int(months).bit_length())
    age = (pl.lit(as_of) - pl.col("day")).dt.total_days()
    cats = (
        history.lazy()
        .filter((pl.col("day") < as_of) & (age <= months * _MONTH) & (pl.col("quantity") > 0))
        .select(
            (
                pl.col("customer_key") * (1 << (m_bits + cat_bits))
                + ((age - 1) // _MONTH) * (1 << cat_bits)
                + cat.cast(pl.Int64)
            ).alias("_k")
        )
        .unique()
        .group_by(pl.col("_k") // (1 << cat_bits))
        .agg(pl.len().cast(pl.UInt32).alias("categories"))
        .select(
            (pl.col("_k") // (1 << m_bits)).alias("customer_key"),
            (pl.col("_k") % (1 << m_bits)).cast(pl.Int32).alias("month"),
            "categories",
        )
    )
    return (
        per.join(cats, on=["customer_key", "month"], how="left")
        .with_columns(pl.col("categories").fill_null(0))
        .select("customer_key", "month", "visits", "spend_cents", "categories")
        .collect()
    )


def _falling(frame: pl.DataFrame, column: str, months: int) -> pl.Expr:
    return pl.all_horizontal([pl.col(f"{column}_{m}") < pl.col(f"{column}_{m + 1}") for m in range(months)])


def lifecycle(
    history: pl.DataFrame,
    as_of: dt.date,
    first_visit: pl.DataFrame,
    decline_months: int = _V.decline_months,
    lapsed_days: int = _V.lapsed_days,
    new_days: int = _V.new_days,
    category_ratio: float = 0.4,
    visit_ratio: float = 0.5,
    growing_ratio: float = 1.2,
    days: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Stage and decline warning per customer.

    Parameters
    ----------
    history
        Line items before `as_of` (customer_key, day, category, quantity, amount_cents).
    first_visit
        customer_key, first_visit_on, last_visit_on (Date): one row per customer to classify.
    days
        `customer_days(history, as_of)` when the caller has it.

    Returns
    -------
    polars.DataFrame
        customer_key, lifecycle_stage, decline_warning (Bool), in `first_visit`'s order.
    """
    months = max(decline_months + 1, 6)
    act = monthly_activity(history, as_of, months, days)
    wide = first_visit.select("customer_key", "first_visit_on", "last_visit_on")
    for m in range(months):
        one = act.filter(pl.col("month") == m).select(
            "customer_key",
            pl.col("visits").alias(f"visits_{m}"),
            pl.col("spend_cents").alias(f"spend_{m}"),
            pl.col("categories").alias(f"cats_{m}"),
        )
        wide = wide.join(one, on="customer_key", how="left")
    wide = wide.fill_null(0)
    prior_cats = pl.mean_horizontal([pl.col(f"cats_{m}") for m in range(1, decline_months + 1)])
    recent_rate = (pl.col("visits_0") + pl.col("visits_1")) / 2.0
    base_rate = pl.mean_horizontal([pl.col(f"visits_{m}") for m in range(2, 6)])
    warning = (
        _falling(wide, "visits", decline_months)
        | _falling(wide, "spend", decline_months)
        | ((prior_cats >= 3) & (pl.col("cats_0") <= category_ratio * prior_cats))
        | ((base_rate >= 1) & (recent_rate <= visit_ratio * base_rate))
    )
    spend_recent = act.filter(pl.col("month") < 3).group_by("customer_key").agg(pl.col("spend_cents").sum().alias("q0"))
    spend_before = (
        act.filter((pl.col("month") >= 3) & (pl.col("month") < 6))
        .group_by("customer_key")
        .agg(pl.col("spend_cents").sum().alias("q1"))
    )
    days_since = (pl.lit(as_of) - pl.col("last_visit_on")).dt.total_days()
    stage = (
        pl.when(pl.col("last_visit_on").is_null() | (days_since > lapsed_days))
        .then(pl.lit("lapsed"))
        .when((pl.lit(as_of) - pl.col("first_visit_on")).dt.total_days() <= new_days)
        .then(pl.lit("new"))
        .when(pl.col("decline_warning"))
        .then(pl.lit("declining"))
        .when(pl.col("q0") >= growing_ratio * pl.col("q1"))
        .then(pl.lit("growing"))
        .otherwise(pl.lit("mature"))
    )
    return (
        wide.with_columns(warning.alias("decline_warning"))
        .join(spend_recent, on="customer_key", how="left")
        .join(spend_before, on="customer_key", how="left")
        .with_columns(pl.col("q0").fill_null(0), pl.col("q1").fill_null(0))
        .select("customer_key", stage.alias("lifecycle_stage"), "decline_warning")
    )
