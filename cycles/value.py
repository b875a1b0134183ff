"""The customer value frame: RFM, ABC, value tier, CLV, lifecycle, share of wallet, weekly spend.

A *visit* is a day with a purchase (a line of positive quantity); spend is net of returns.
Everything is read from history before the as-of date over the lookback.

Partitions: `value_parts` is everything one customer's own history decides (summary, lifecycle,
share of wallet, weekly spend), a pure function of a customer partition; `score_value` is what
compares customers (RFM quintiles, ABC cuts, the BG/NBD and gamma-gamma fits of CLV), run once on
all partitions' parts together (one small row per customer), so it is exact whatever the
partitioning. `customer_value` is the two in one.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

from cycles.abc import abc_classes
from cycles.clv import BetaGeoModel, GammaGammaModel, discounted_clv
from cycles.exceptions import InputError
from cycles.lifecycle import customer_days, lifecycle
from cycles.occasions import require_columns
from cycles.params import ValueParams
from cycles.rfm import rfm_scores

__all__ = ["customer_summary", "customer_value", "value_parts", "score_value", "VALUE_COLUMNS"]

VALUE_COLUMNS = [
    "customer_key",
    "recency_days",
    "frequency",
    "monetary_cents",
    "r_score",
    "f_score",
    "m_score",
    "rfm_score",
    "rfm_segment",
    "abc_class",
    "value_tier",
    "clv_cents",
    "p_alive",
    "lifecycle_stage",
    "decline_warning",
    "share_of_wallet",
    "avg_weekly_spend_cents",
]


def contribution_cents(margin_share: float) -> pl.Expr:
    """Spend minus cost where the unit cost is known, else `margin_share` of spend."""
    known = pl.col("amount_cents") - pl.col("unit_cost_cents") * pl.col("quantity")
    return (
        pl.when(pl.col("unit_cost_cents").is_not_null())
        .then(known)
        .otherwise(pl.col("amount_cents") * margin_share)
        .cast(pl.Float64)
    )


def customer_summary(
    history: pl.DataFrame,
    as_of: dt.date,
    qualifying_weeks: int,
    margin_share: float = ValueParams.margin_share,
    days: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """Per customer with history before `as_of`.

    `days`: `cycles.lifecycle.customer_days(history, as_of)` when the caller has it (the visits
    and the spends are read off it; the contribution, a float, is summed over the lines).

    Returns
    -------
    polars.DataFrame
        customer_key, first_visit_on, last_visit_on (Date), frequency (visits), monetary_cents
        (Int64), contribution_cents (Float64), recent_spend_cents (Int64, over the last
        `qualifying_weeks`), sow_spend_cents (Int64, over the last 13 weeks), sorted by customer_key.
    """
    require_columns(history, {"customer_key", "day", "quantity", "amount_cents", "unit_cost_cents"}, "history")
    if days is None:
        days = customer_days(history, as_of)
    bought, age = pl.col("bought"), pl.col("age")
    visit_on = pl.lit(as_of) - pl.duration(days=age)
    contribution = (
        history.lazy()
        .filter(pl.col("day") < as_of)
        .group_by("customer_key")
        .agg(contribution_cents=contribution_cents(margin_share).sum())
    )
    return (
        days.lazy()
        .group_by("customer_key")
        .agg(
            first_visit_on=visit_on.filter(bought).min().cast(pl.Date),
            last_visit_on=visit_on.filter(bought).max().cast(pl.Date),
            frequency=bought.sum().cast(pl.Int64),
            monetary_cents=pl.col("amount_cents").sum(),
            recent_spend_cents=pl.col("amount_cents").filter(age <= 7 * qualifying_weeks).sum(),
            sow_spend_cents=pl.col("amount_cents").filter(age <= 7 * 13).sum(),
        )
        .join(contribution, on="customer_key", how="left")
        .select(
            "customer_key",
            "first_visit_on",
            "last_visit_on",
            "frequency",
            "monetary_cents",
            "contribution_cents",
            "recent_spend_cents",
            "sow_spend_cents",
        )
        .sort("customer_key")
        .collect()
    )


def customer_value(
    history: pl.DataFrame,
    as_of: dt.date,
    customers: pl.DataFrame | None = None,
    *,
    qualifying_weeks: int,
    params: ValueParams | None = None,
) -> pl.DataFrame:
    """One row per customer: the customer value frame (columns VALUE_COLUMNS).

    Parameters
    ----------
    history
        Line items (engine.history) over the lookback, before `as_of`.
    customers
        customer_key, household_size (optional): every customer listed gets a row, those
        without history with zero value and stage 'lapsed'; None = customers in history.
    qualifying_weeks
        Weeks of the average weekly spend: the window the offer rules qualify customers over
        (a setting of the batch, not of cycles, so it has no default here).
    params
        Margin share, CLV horizon and rate, ABC cuts, VIP share, lifecycle thresholds and the
        weekly budgets of share of wallet (`cycles.params.ValueParams`; None = the defaults).

    Returns
    -------
    polars.DataFrame
        VALUE_COLUMNS, sorted by customer_key: recency_days (Int64, null without a visit),
        frequency (visits), monetary_cents, r/f/m_score, rfm_score, rfm_segment, abc_class,
        value_tier, clv_cents (Int64, BG/NBD x gamma-gamma x margin, discounted), p_alive,
        lifecycle_stage, decline_warning, share_of_wallet (0-1: weekly spend of the last 13
        weeks over the household's weekly grocery budget), avg_weekly_spend_cents (Int64, over
        `qualifying_weeks`).
    """
    return score_value(
        value_parts(history, as_of, customers, qualifying_weeks=qualifying_weeks, params=params), as_of, params
    )


def value_parts(
    history: pl.DataFrame,
    as_of: dt.date,
    customers: pl.DataFrame | None = None,
    *,
    qualifying_weeks: int,
    params: ValueParams | None = None,
) -> pl.DataFrame:
    """What each customer's own history decides (arguments as `customer_value`), for `score_value`.

    Returns
    -------
    polars.DataFrame
        One row per customer (of `customers`, or of `history`), sorted by customer_key:
        `customer_summary`'s columns, household_size, recency_days, lifecycle_stage,
        decline_warning, share_of_wallet, avg_weekly_spend_cents.
    """
    params = params or ValueParams()
    days = customer_days(history, as_of)
    summary = customer_summary(history, as_of, qualifying_weeks, params.margin_share, days)
    if customers is not None:
        require_columns(customers, {"customer_key"}, "customers")
        sizes = customers.select("customer_key", *(["household_size"] if "household_size" in customers.columns else []))
        summary = sizes.join(summary, on="customer_key", how="left")
        if "household_size" not in summary.columns:
            summary = summary.with_columns(pl.lit(None, dtype=pl.Int64).alias("household_size"))
    else:
        summary = summary.with_columns(pl.lit(None, dtype=pl.Int64).alias("household_size"))
    summary = summary.with_columns(
        pl.col("frequency").fill_null(0),
        pl.col("monetary_cents").fill_null(0),
        pl.col("contribution_cents").fill_null(0.0),
        pl.col("recent_spend_cents").fill_null(0),
        pl.col("sow_spend_cents").fill_null(0),
        (pl.lit(as_of) - pl.col("last_visit_on")).dt.total_days().alias("recency_days"),
    ).sort("customer_key")
    stages = lifecycle(
        history,
        as_of,
        summary.select("customer_key", "first_visit_on", "last_visit_on"),
        params.decline_months,
        params.lapsed_days,
        params.new_days,
        days=days,
    )
    budget = pl.Series(list(params.weekly_budget_cents), dtype=pl.Int64)
    size = pl.col("household_size").fill_null(2).clip(1, len(params.weekly_budget_cents)) - 1
    weeks_seen = ((pl.lit(as_of) - pl.col("first_visit_on")).dt.total_days() / 7.0).clip(1.0, 13.0).fill_null(13.0)
    sow = (
        pl.col("sow_spend_cents").clip(lower_bound=0)
        / weeks_seen
        / size.map_batches(lambda s: budget.gather(s.cast(pl.UInt32)), return_dtype=pl.Int64)
    ).clip(0.0, 1.0)
    return (
        summary.with_columns(
            sow.alias("share_of_wallet"),
            (pl.col("recent_spend_cents") / qualifying_weeks).round().cast(pl.Int64).alias("avg_weekly_spend_cents"),
        )
        .join(stages, on="customer_key", how="left", maintain_order="left")
        .sort("customer_key")
    )


def score_value(parts: pl.DataFrame, as_of: dt.date, params: ValueParams | None = None) -> pl.DataFrame:
    """The customer value frame (VALUE_COLUMNS, sorted by customer_key) from every customer's `value_parts`.

    The comparisons between customers happen here, once, over all of them: RFM quintiles, the ABC
    cuts and value tiers, and the CLV models' fits. `parts` may be the concatenation of the
    partitions' `value_parts` in any order.
    """
    params = params or ValueParams()
    summary = parts.sort("customer_key")
    # RFM ranks a customer without a visit as least recent
    worst = (summary["recency_days"].max() or 0) + 1
    rfm = rfm_scores(summary.with_columns(pl.col("recency_days").fill_null(worst))).with_columns(
        pl.col("recency_days").replace(worst, None) if summary["recency_days"].null_count() else pl.col("recency_days")
    )
    scored = abc_classes(rfm, "monetary_cents", tuple(params.abc_cuts), params.vip_sales_share)
    clv, alive = _clv(summary, as_of, params.clv_years, params.annual_discount_rate)
    return (
        scored.with_columns(pl.Series("clv_cents", np.round(clv).astype(np.int64)), pl.Series("p_alive", alive))
        .select(VALUE_COLUMNS)
        .sort("customer_key")
    )


def _clv(summary: pl.DataFrame, as_of: dt.date, years: float, rate: float) -> tuple[np.ndarray, np.ndarray]:
    """(CLV cents, P(alive)) per row of `summary`; zero / zero without a visit."""
    seen = summary["first_visit_on"].is_not_null().to_numpy()
    out_clv = np.zeros(summary.height)
    out_alive = np.zeros(summary.height)
    s = summary.filter(pl.col("first_visit_on").is_not_null())
    if s.height == 0:
        return out_clv, out_alive
    visits = s["frequency"].to_numpy().astype(float)
    x = visits - 1
    tx = ((s["last_visit_on"] - s["first_visit_on"]).dt.total_days().to_numpy()) / 7.0
    T = (np.datetime64(as_of) - s["first_visit_on"].to_numpy()).astype("timedelta64[D]").astype(float) / 7.0
    mean_spend = np.maximum(s["monetary_cents"].to_numpy(), 0) / np.maximum(visits, 1)
    margin = np.clip(s["contribution_cents"].to_numpy() / np.maximum(s["monetary_cents"].to_numpy(), 1), 0, 1)
    bg = BetaGeoModel().fit(x, tx, T)
    alive = bg.p_alive(x, tx, T)
    try:
        spend = GammaGammaModel().fit(visits, mean_spend).expected_spend(visits, mean_spend)
    except InputError:  # too few repeat customers (tiny test sets): observed means
        spend = mean_spend
    clv = discounted_clv(bg, x, tx, T, spend, margin, years, rate)
    out_clv[seen] = np.nan_to_num(clv)
    out_alive[seen] = alive
    return out_clv, out_alive
