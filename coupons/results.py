"""What a funding manufacturer is told: offer results, lift, category insight, panel, settlement.

Pure (polars frames in, frames out); `engine.extracts` reads the frames from the database and
writes these tables as files. Every aggregate table comes back with the number of rows
withheld by small-group suppression (`coupons.anonymise.suppress`): no published row
describes fewer than `min_group` households, and no withheld row can be recomputed from its
set's total.

* `offer_results` — per funded offer and cell: reach and redemptions.
* `lift_outcomes`, `category_lift`, `lift_results` — the randomised hold-out comparison per
  batch and category (`coupons.lift`).
* `category_insight` — the buyers of the manufacturer's categories by cell, for the period
  and week by week; cells are `cycles.brand_volume.observed_cells` of the lookback window.
* `household_panel` — one row per household and week, under a pseudonym.
* `settlement_lines`, `settlement_totals`, `amount_due` — what the manufacturer owes, to the
  cent: ``round_half_up(discount_cents x funded_share)`` per redemption with the share taken to
  millionths, in integer arithmetic; totals are sums of the lines.
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.anonymise import pseudonyms, suppress
from coupons.lift import holdout_lift
from cycles.brand_volume import observed_cells

__all__ = [
    "amount_due",
    "offer_results",
    "lift_outcomes",
    "category_lift",
    "lift_results",
    "category_insight",
    "household_panel",
    "settlement_lines",
    "settlement_totals",
]


def _offer_label() -> pl.Expr:
    return pl.coalesce(pl.col("deal_id"), pl.col("kind") + pl.lit(":") + pl.col("category").fill_null("basket"))


def amount_due() -> pl.Expr:
    """Funded part of a redemption: round half up of discount_cents x funded_share, exactly.

    The share is taken to millionths and the product computed in integers, so the same
    redemption always gives the same cent on every machine.
    """
    ppm = (pl.col("funded_share") * 1_000_000).round(0).cast(pl.Int64)
    return ((pl.col("discount_cents") * ppm + 500_000) // 1_000_000).alias("amount_due_cents")


def offer_results(offers: pl.DataFrame, redemptions: pl.DataFrame, min_group: int) -> tuple[pl.DataFrame, int]:
    """Per funded offer x cell: reach and redemptions, small groups withheld.

    Parameters
    ----------
    offers
        The manufacturer's offers valid in the period: offer_id, list_id, customer_key, kind,
        category, deal_id, brand_cell, volume_tier (`engine.extracts` reads more).
    redemptions
        Not voided, in the period: offer_id, discount_cents, funded_share.

    Returns
    -------
    (polars.DataFrame, int)
        offer, kind, category, cell ('all' or 'brand_cell:volume_tier'), households, lists,
        offer_lines, redemptions, redeeming_households, redemption_rate, discount_paid_cents,
        funded_cents; sorted by offer, category, cell. And the number of rows withheld.
    """
    lines = offers.with_columns(
        _offer_label().alias("offer"),
        (pl.col("brand_cell").fill_null("unknown") + ":" + pl.col("volume_tier").fill_null("unknown")).alias("cell"),
    )
    used = (
        redemptions.with_columns(amount_due())
        .group_by("offer_id")
        .agg(uses=pl.len(), paid=pl.col("discount_cents").sum(), funded=pl.col("amount_due_cents").sum())
    )
    lines = lines.join(used, on="offer_id", how="left").with_columns(pl.col("uses", "paid", "funded").fill_null(0))
    metrics = dict(
        households=pl.col("customer_key").n_unique(),
        lists=pl.col("list_id").n_unique(),
        offer_lines=pl.len(),
        redemptions=pl.col("uses").sum(),
        redeeming_households=pl.col("customer_key").filter(pl.col("uses") > 0).n_unique(),
        discount_paid_cents=pl.col("paid").sum(),
        funded_cents=pl.col("funded").sum(),
    )
    keys = ["offer", "kind", "category"]
    per_cell = lines.group_by(*keys, "cell").agg(**metrics)
    per_offer = lines.group_by(keys).agg(**metrics).with_columns(pl.lit("all").alias("cell"))
    table = (
        pl.concat([per_offer.select(per_cell.columns), per_cell])
        .with_columns(pl.col(c).cast(pl.Int64) for c in metrics)
        .with_columns(
            (pl.col("redeeming_households") / pl.col("households")).round(4).alias("redemption_rate"),
            (pl.col("cell") == "all").alias("_total"),
        )
        .sort(*keys, pl.col("cell") != "all", "cell")
    )
    kept, withheld = suppress(table, min_group, group=tuple(keys), is_total="_total")
    columns = [
        *keys,
        "cell",
        "households",
        "lists",
        "offer_lines",
        "redemptions",
        "redeeming_households",
        "redemption_rate",
        "discount_paid_cents",
        "funded_cents",
    ]
    return kept.select(columns), withheld


def lift_outcomes(
    members: pl.DataFrame, offers: pl.DataFrame, history: pl.DataFrame, date_from: dt.date, date_to: dt.date
) -> pl.DataFrame:
    """Members x the categories of the manufacturer's offers in their batch, with what they bought.

    Parameters
    ----------
    members
        Every member of the batches overlapping the period, treated or held out: batch_id,
        customer_key, grp, period_start, period_end (exclusive).
    offers
        The manufacturer's offers: batch_id, category.
    history
        Line items of the period: customer_key, category, day, quantity.

    Returns
    -------
    polars.DataFrame
        period_start, category, grp, bought (Boolean), units (Float64, 0 when nothing was
        bought): one row per member x category, counted over the part of the batch period
        inside [date_from, date_to].
    """
    cats = offers.filter(pl.col("category").is_not_null()).select("batch_id", "category").unique()
    rows = members.join(cats, on="batch_id", how="inner").with_columns(
        pl.max_horizontal(pl.col("period_start"), pl.lit(date_from)).alias("_start"),
        pl.min_horizontal(pl.col("period_end"), pl.lit(date_to + dt.timedelta(days=1))).alias("_end"),
    )
    bought = (
        history.filter(pl.col("quantity") > 0)
        .select("customer_key", "category", "day", "quantity")
        .join(
            rows.select("batch_id", "customer_key", "category", "_start", "_end"),
            on=["customer_key", "category"],
            how="inner",
        )
        .filter((pl.col("day") >= pl.col("_start")) & (pl.col("day") < pl.col("_end")))
        .group_by("batch_id", "customer_key", "category")
        .agg(units=pl.col("quantity").sum())
    )
    return rows.join(bought, on=["batch_id", "customer_key", "category"], how="left").select(
        "period_start", "category", "grp", bought=pl.col("units").is_not_null(), units=pl.col("units").fill_null(0.0)
    )


def category_lift(outcomes: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Treated minus hold-out: category purchase rate and units per household, with intervals.

    `coupons.lift.holdout_lift` per period_start x category: the rate with Newcombe's hybrid
    score interval, units with a Welch (normal) interval. Columns: period_start, category,
    households, treated_households, holdout_households, treated_rate, holdout_rate, rate_lift,
    rate_ci_low, rate_ci_high, treated_units, holdout_units (per household), units_lift,
    units_ci_low, units_ci_high; sorted by period_start, category.
    """
    return holdout_lift(outcomes, confidence, by=("period_start", "category"), means=("units",)).drop(
        "treated_buyers", "holdout_buyers"
    )


def lift_results(
    members: pl.DataFrame,
    offers: pl.DataFrame,
    history: pl.DataFrame,
    date_from: dt.date,
    date_to: dt.date,
    confidence: float,
    min_group: int,
) -> tuple[pl.DataFrame, int]:
    """`category_lift` of `lift_outcomes`, without comparisons whose smaller group is below `min_group`.

    Returns
    -------
    (polars.DataFrame, int)
        The columns of `category_lift`, and the number of rows withheld.
    """
    lift = category_lift(lift_outcomes(members, offers, history, date_from, date_to), confidence)
    kept, withheld = suppress(
        lift.with_columns(pl.min_horizontal("treated_households", "holdout_households").alias("_smaller")),
        min_group,
        count="_smaller",
    )
    return kept.drop("_smaller"), withheld


def _shares(manufacturer_id: str) -> dict[str, pl.Expr]:
    units = pl.col("quantity").sum()
    return dict(
        units=units,
        national_share=(pl.col("quantity").filter(pl.col("brand_type") == "national").sum() / units).round(4),
        store_brand_share=(pl.col("quantity").filter(pl.col("brand_type") == "store").sum() / units).round(4),
        manufacturer_share=(
            pl.col("quantity").filter(pl.col("manufacturer_id") == manufacturer_id).sum() / units
        ).round(4),
    )


def _customer_habits(window: pl.DataFrame, weeks: float, cell_rules: dict) -> pl.DataFrame:
    """Per customer x category of the window: cell, median cycle, first week bought."""
    habits = window.group_by("customer_key", "category").agg(
        cycle_days=pl.col("day").unique().sort().diff().dt.total_days().median(), first_week=pl.col("week_start").min()
    )
    cells = observed_cells(window, weeks, **cell_rules).select(
        "customer_key", "category", (pl.col("brand_cell") + ":" + pl.col("volume_tier")).alias("cell")
    )
    return habits.join(cells, on=["customer_key", "category"], how="inner")


def category_insight(
    history: pl.DataFrame,
    manufacturer_id: str,
    categories: list[str],
    date_from: dt.date,
    date_to: dt.date,
    min_group: int,
    *,
    min_occasions: int = 2,
    national_max_store_share: float = 0.20,
    store_min_store_share: float = 0.80,
    volume_cuts: tuple[float, float] = (1 / 3, 2 / 3),
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Buyers of the manufacturer's categories by cell, for the period and week by week.

    Parameters
    ----------
    history
        Line items up to `date_to` (included), reaching back `CycleSettings.lookback_weeks`
        before it where available: a household's cell and cycle come from that whole window,
        the figures below from the period [date_from, date_to] only. Columns: customer_key,
        category, day, quantity, brand_type, manufacturer_id.
    min_occasions, national_max_store_share, store_min_store_share, volume_cuts
        The cell thresholds (`CycleSettings`), as `cycles.brand_volume.observed_cells` takes
        them; units per week over the window's weeks.

    Returns
    -------
    (cells, weekly, withheld)
        cells: category, cell ('all' or 'brand_cell:volume_tier'), households (buyers in the
        period), units, national_share, store_brand_share, manufacturer_share (of units
        bought in the period), repeat_rate (share of the period's buyers who bought on two or
        more days of it), median_cycle_days (median over households of their median days
        between purchase days in the window).
        weekly: category, week_start (Monday), cell, households (buyers that week), units, the
        three shares, repeat_rate (share of the week's buyers who had bought the category in an
        earlier week of the window), median_cycle_days (of those buyers). Withheld: rows per table.
    """
    window = history.filter(
        pl.col("category").is_in(categories) & (pl.col("quantity") > 0) & (pl.col("day") <= date_to)
    ).with_columns(pl.col("day").dt.truncate("1w").alias("week_start"))
    first_day = window["day"].min() if window.height else date_from
    weeks = max(((date_to - min(first_day, date_from)).days + 1) / 7, 1 / 7)
    who = _customer_habits(
        window,
        weeks,
        dict(
            national_max=national_max_store_share,
            store_min=store_min_store_share,
            min_occasions=min_occasions,
            cuts=volume_cuts,
        ),
    )
    lines = window.filter(pl.col("day") >= date_from)
    in_period = lines.group_by("customer_key", "category").agg(period_days=pl.col("day").n_unique())
    who = who.join(in_period, on=["customer_key", "category"], how="inner")
    lines = lines.join(
        who.select("customer_key", "category", "cell", "cycle_days", "first_week"),
        on=["customer_key", "category"],
        how="left",
    )
    cell_metrics = dict(households=pl.col("customer_key").n_unique().cast(pl.Int64), **_shares(manufacturer_id))
    cell_rows = pl.concat(
        [
            lines.group_by("category").agg(**cell_metrics).with_columns(pl.lit("all").alias("cell")),
            lines.group_by("category", "cell").agg(**cell_metrics),
        ],
        how="diagonal",
    )
    habits = pl.concat(
        [
            who.group_by("category")
            .agg(
                repeat_rate=(pl.col("period_days") >= 2).mean().round(4),
                median_cycle_days=pl.col("cycle_days").median(),
            )
            .with_columns(pl.lit("all").alias("cell")),
            who.group_by("category", "cell").agg(
                repeat_rate=(pl.col("period_days") >= 2).mean().round(4),
                median_cycle_days=pl.col("cycle_days").median(),
            ),
        ],
        how="diagonal",
    )
    cells = (
        cell_rows.join(habits, on=["category", "cell"], how="left")
        .with_columns((pl.col("cell") == "all").alias("_total"))
        .sort("category", pl.col("cell") != "all", "cell")
    )
    cells, cells_out = suppress(cells, min_group, group=("category",), is_total="_total")

    buyer = lines.select("customer_key", "category", "week_start", "cell", "cycle_days", "first_week").unique()
    week_habits = dict(
        repeat_rate=(pl.col("first_week") < pl.col("week_start")).mean().round(4),
        median_cycle_days=pl.col("cycle_days").median(),
    )
    weekly = (
        pl.concat(
            [
                lines.group_by("category", "week_start").agg(**cell_metrics).with_columns(pl.lit("all").alias("cell")),
                lines.group_by("category", "week_start", "cell").agg(**cell_metrics),
            ],
            how="diagonal",
        )
        .join(
            pl.concat(
                [
                    buyer.group_by("category", "week_start")
                    .agg(**week_habits)
                    .with_columns(pl.lit("all").alias("cell")),
                    buyer.group_by("category", "week_start", "cell").agg(**week_habits),
                ],
                how="diagonal",
            ),
            on=["category", "week_start", "cell"],
            how="left",
        )
        .with_columns((pl.col("cell") == "all").alias("_total"))
        .sort("category", "week_start", pl.col("cell") != "all", "cell")
    )
    weekly, weekly_out = suppress(weekly, min_group, group=("category", "week_start"), is_total="_total")
    order = [
        "households",
        "units",
        "national_share",
        "store_brand_share",
        "manufacturer_share",
        "repeat_rate",
        "median_cycle_days",
    ]
    return (
        cells.select("category", "cell", *order),
        weekly.select("category", "week_start", "cell", *order),
        {"category_cells": cells_out, "category_weekly": weekly_out},
    )


def household_panel(
    history: pl.DataFrame,
    customers: pl.DataFrame,
    redemptions_by_customer: pl.DataFrame,
    manufacturer_id: str,
    categories: list[str],
    key: bytes,
) -> pl.DataFrame:
    """One row per household and week in the manufacturer's categories, under a pseudonym.

    Parameters
    ----------
    history
        Line items of the period: customer_key, category, day, quantity, brand_type,
        manufacturer_id, amount_cents.
    customers
        customer_key, customer_id, opted_out (Boolean).
    redemptions_by_customer
        The manufacturer's redemptions of the period: customer_key, redeemed_on.
    key
        `coupons.anonymise.pseudonym_key(secret, manufacturer_id)`.

    Returns
    -------
    polars.DataFrame
        pseudonym, week_start (Monday), category_units, manufacturer_units, store_brand_units,
        manufacturer_spend_cents, redemptions (of this manufacturer's offers that week).
        Opted-out customers are left out. Sorted by pseudonym, week_start.
    """
    allowed = customers.filter(~pl.col("opted_out")).select("customer_key", "customer_id")
    lines = history.filter(pl.col("category").is_in(categories)).with_columns(
        pl.col("day").dt.truncate("1w").alias("week_start")
    )
    mine = pl.col("manufacturer_id") == manufacturer_id
    weekly = lines.group_by("customer_key", "week_start").agg(
        category_units=pl.col("quantity").sum(),
        manufacturer_units=pl.col("quantity").filter(mine).sum(),
        store_brand_units=pl.col("quantity").filter(pl.col("brand_type") == "store").sum(),
        manufacturer_spend_cents=pl.col("amount_cents").filter(mine).sum().cast(pl.Int64),
    )
    used = (
        redemptions_by_customer.with_columns(pl.col("redeemed_on").dt.truncate("1w").alias("week_start"))
        .group_by("customer_key", "week_start")
        .agg(redemptions=pl.len().cast(pl.Int64))
    )
    panel = (
        weekly.join(used, on=["customer_key", "week_start"], how="full", coalesce=True)
        .with_columns(
            pl.col("category_units", "manufacturer_units", "store_brand_units").fill_null(0.0),
            pl.col("manufacturer_spend_cents", "redemptions").fill_null(0),
        )
        .join(allowed, on="customer_key", how="inner")
    )
    return (
        panel.with_columns(pseudonyms(panel["customer_id"], key))
        .select(
            "pseudonym",
            "week_start",
            "category_units",
            "manufacturer_units",
            "store_brand_units",
            "manufacturer_spend_cents",
            "redemptions",
        )
        .sort("pseudonym", "week_start")
    )


def settlement_lines(redemptions: pl.DataFrame) -> pl.DataFrame:
    """One line per redemption (voided ones dropped) with its amount due.

    Parameters
    ----------
    redemptions
        redemption_id, offer_id, deal_id, kind, category, sku, redeemed_on, store_id,
        discount_cents, funded_share, voided (0 or 1).

    Returns
    -------
    polars.DataFrame
        line_no, redemption_id, offer_id, deal_id, offer (deal or kind:category), sku,
        redeemed_on, store_id, discount_cents, funded_share, amount_due_cents; sorted by
        redeemed_on, redemption_id.
    """
    return (
        redemptions.filter(pl.col("voided") == 0)
        .sort("redeemed_on", "redemption_id")
        .with_columns(amount_due(), _offer_label().alias("offer"))
        .with_row_index("line_no", offset=1)
        .select(
            pl.col("line_no").cast(pl.Int64),
            "redemption_id",
            "offer_id",
            "deal_id",
            "offer",
            "sku",
            "redeemed_on",
            "store_id",
            "discount_cents",
            "funded_share",
            "amount_due_cents",
        )
    )


def settlement_totals(lines: pl.DataFrame) -> pl.DataFrame:
    """Per offer and in all: sums of the settlement lines, so that they agree to the cent.

    Parameters
    ----------
    lines
        `settlement_lines(...)`.

    Returns
    -------
    polars.DataFrame
        offer, redemptions, discount_cents, amount_due_cents (Int64): one row per offer sorted
        by offer, then the row ``TOTAL`` (zeros when there is no line).
    """
    sums = dict(
        redemptions=pl.len().cast(pl.Int64),
        discount_cents=pl.col("discount_cents").sum().cast(pl.Int64),
        amount_due_cents=pl.col("amount_due_cents").sum().cast(pl.Int64),
    )
    per_offer = lines.group_by("offer").agg(**sums).sort("offer")
    total = lines.select(pl.lit("TOTAL").alias("offer"), **sums)
    return pl.concat([per_offer, total.cast(per_offer.schema)])
