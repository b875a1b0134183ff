"""Who qualifies for a list: card holders, not opted out, spending enough a week."""

from __future__ import annotations

import datetime as dt

import polars as pl

__all__ = ["qualifying_customers", "window_spend", "qualifying_from_spend"]


def qualifying_customers(
    customers: pl.DataFrame, history: pl.DataFrame, as_of: dt.date, threshold_cents: int, weeks: int
) -> pl.DataFrame:
    """Customers who qualify for a list of the period starting `as_of`.

    Average weekly spend = net amount paid (returns subtract) over the `weeks` weeks before
    `as_of`, divided by `weeks`, rounded down to the cent; qualifying needs it >= threshold.

    Parameters
    ----------
    customers
        customer_key, has_card (bool), opted_out (bool).
    history
        customer_key, day, amount_cents.

    Returns
    -------
    pl.DataFrame
        customer_key, avg_weekly_spend_cents (Int64), sorted by customer_key.
    """
    return qualifying_from_spend(customers, window_spend(history, as_of, weeks), threshold_cents, weeks)


def window_spend(history: pl.DataFrame, as_of: dt.date, weeks: int) -> pl.DataFrame:
    """Each customer's net amount paid in the `weeks` weeks before `as_of`: customer_key, spend_cents
    (Int64); customers without a line there have no row. Of customer partitions, the concatenation."""
    start = as_of - dt.timedelta(weeks=weeks)
    return (
        history.lazy()
        .filter(pl.col("day") >= start, pl.col("day") < as_of)
        .group_by("customer_key")
        .agg(pl.col("amount_cents").sum().cast(pl.Int64).alias("spend_cents"))
        .collect()
    )


def qualifying_from_spend(
    customers: pl.DataFrame, spend: pl.DataFrame, threshold_cents: int, weeks: int
) -> pl.DataFrame:
    """`qualifying_customers` given `window_spend` (customer_key, spend_cents)."""
    eligible = customers.filter(pl.col("has_card"), ~pl.col("opted_out").fill_null(False)).select("customer_key")
    return (
        eligible.join(spend, on="customer_key", how="inner")
        .select("customer_key", (pl.col("spend_cents") // weeks).cast(pl.Int64).alias("avg_weekly_spend_cents"))
        .filter(pl.col("avg_weekly_spend_cents") >= threshold_cents)
        .sort("customer_key")
    )
