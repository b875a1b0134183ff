"""`listwise report`: what the batch did and what the previous period earned, with charts.

`write_report(settings, out_dir, batch_id=None)` writes into `out_dir`:

* ``report.html`` — one self-contained page: every chart is an inline SVG (Vega-Lite rendered
  offline by vl-convert), no script and no link outside the file, so it opens offline;
* ``report.pdf`` — the same sections, one page each, charts as PNG (reportlab);
* ``<table>.csv`` — every table a chart is drawn from, whole (the pages show the first rows).

Sections (their titles are fixed; `SECTIONS`):

1. **Batches over time** — qualifying customers, hold-out and lists per period (summaries of
   the last `ReportSettings.batches_shown` done batches).
2. **Offers by kind and cell** — the chosen batch's offers by kind x brand cell:volume tier.
3. **Campaigns: brand x volume** — per campaign a 3 x 3 heat map of qualifying customers and
   of offers, with the median depth by volume tier (the batch summary's ``campaigns`` grids).
4. **Budget use** — per deal over every batch up to the chosen one, and the chain's
   retailer-funded part of the chosen batch: committed (face value of the offers issued),
   expected (sum of p_buy x discount x uses; face value where an offer has no p_buy),
   redeemed (redemptions not voided), released (face value of expired offers minus their
   redemptions: what can no longer be spent) and outstanding (the rest).
5. **Previous period: redemption rate** — of the results batch's offers by kind and cell:
   offers redeemed at least once / offers, with a Wilson interval.
6. **Previous period: discount paid by funder** — redemptions, discount, the funder's part
   (`coupons.results.amount_due`) and the retailer's part.
7. **Previous period: lift against the hold-out** — per funder ('retailer' and each
   manufacturer): every member of the results batch (treated or hold-out) x the categories
   of that funder's offers in the batch; purchase rate (Newcombe's hybrid score interval) and
   spend per household in those categories (Welch) over the period (`coupons.lift`).
8. **Previous period: calibration** — offers carrying p_buy (the profile's p_buy_in_window)
   binned by it, against the share whose customer bought the category in the offer's
   validity (reliability curve with counts and Wilson intervals); and the next-purchase-day
   error: first purchase day of the category in the period minus the offer's expected_on.
   The offers were on the customers' lists, so "bought" includes the offers' own effect.

The **results batch** is the latest done batch, up to the chosen one, whose period has any
purchase recorded (the checkouts of its fortnight); none: sections 5-8 say so. The report is
*as of* the day after the last purchase or redemption recorded.

Data and rendering are separate: the `*_frame` functions below are pure (frames in, frames
out, tested by hand-worked cases); `render_html` / `render_pdf` draw what they are given.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import html
import io
import json
from pathlib import Path
from typing import Any

import polars as pl

from coupons.lift import holdout_lift, wilson_bounds, z_value
from coupons.offers import face_value, retailer_cost
from coupons.results import amount_due
from engine.db import Gateway
from engine.errors import StateError

__all__ = [
    "ReportSettings",
    "SECTIONS",
    "write_report",
    "batch_trend_frame",
    "offers_frame",
    "campaign_frame",
    "budget_frame",
    "charged_frame",
    "redemption_frame",
    "funder_frame",
    "lift_outcomes_frame",
    "lift_frame",
    "calibration_frame",
    "day_error_frame",
    "render_html",
    "render_pdf",
]

SECTIONS = (
    "Batches over time",
    "Offers by kind and cell",
    "Campaigns: brand x volume",
    "Budget use",
    "Previous period: redemption rate",
    "Previous period: discount paid by funder",
    "Previous period: lift against the hold-out",
    "Previous period: calibration",
)
_CELLS = ("national", "store", "switcher")
_TIERS = ("low", "mid", "high")


@dataclasses.dataclass(frozen=True)
class ReportSettings:
    """Parameters of the report (the lead may add them as a ``[report]`` table of listwise.toml).

    confidence: two-sided level of every interval; batches_shown: periods in the trend chart;
    calibration_bins: equal-width bins of p_buy in [0, 1]; table_rows: rows of a table shown
    on the page (its CSV has all).
    """

    confidence: float = 0.95
    batches_shown: int = 12
    calibration_bins: int = 10
    table_rows: int = 15


# ----------------------------------------------------------------------------------------------
# pure frames
# ----------------------------------------------------------------------------------------------


def _cell() -> pl.Expr:
    return (pl.col("brand_cell").fill_null("none") + ":" + pl.col("volume_tier").fill_null("none")).alias("cell")


def batch_trend_frame(summaries: list[dict]) -> pl.DataFrame:
    """period_start (Date), measure ('qualifying', 'hold-out', 'lists'), customers; by period, measure."""
    rows = [
        {"period_start": dt.date.fromisoformat(s["period_start"]), "measure": m, "customers": int(s[key])}
        for s in summaries
        for m, key in (("qualifying", "qualifying_customers"), ("hold-out", "holdout_customers"), ("lists", "lists"))
    ]
    schema = {"period_start": pl.Date, "measure": pl.String, "customers": pl.Int64}
    return pl.DataFrame(rows, schema=schema).sort("period_start", "measure")


def offers_frame(offers: pl.DataFrame) -> pl.DataFrame:
    """kind, cell ('brand_cell:volume_tier', 'none' where unset), offers, households, face_value_cents,
    retailer_cost_cents; by kind, cell. `offers`: customer_key, kind, brand_cell, volume_tier,
    discount_cents, max_uses, funded_share."""
    return (
        offers.with_columns(_cell(), face_value(), retailer_cost())
        .group_by("kind", "cell")
        .agg(
            offers=pl.len().cast(pl.Int64),
            households=pl.col("customer_key").n_unique().cast(pl.Int64),
            face_value_cents=pl.col("face_value_cents").sum(),
            retailer_cost_cents=pl.col("retailer_cost_cents").sum(),
        )
        .sort("kind", "cell")
    )


def campaign_frame(summary: dict) -> pl.DataFrame:
    """From a batch summary's ``campaigns``: campaign, category, brand_cell, volume_tier,
    qualifying_customers, offers, depth_cents (median discount of the tier; null: none)."""
    rows = []
    for name, c in (summary.get("campaigns") or {}).items():
        depth = c.get("discount_by_tier_cents") or {}
        for cell in _CELLS:
            for tier in _TIERS:
                rows.append(
                    {
                        "campaign": name,
                        "category": c.get("category"),
                        "brand_cell": cell,
                        "volume_tier": tier,
                        "qualifying_customers": int(c["qualifying_customers"][cell][tier]),
                        "offers": int(c["offers"][cell][tier]),
                        "depth_cents": depth.get(tier),
                    }
                )
    schema = {
        "campaign": pl.String,
        "category": pl.String,
        "brand_cell": pl.String,
        "volume_tier": pl.String,
        "qualifying_customers": pl.Int64,
        "offers": pl.Int64,
        "depth_cents": pl.Int64,
    }
    return pl.DataFrame(rows, schema=schema)


def _per_offer_money(offers: pl.DataFrame, redemptions: pl.DataFrame, as_of: dt.date, retailer: bool) -> pl.DataFrame:
    """Per offer, integer cents: committed, expected, redeemed, released.

    Whole offers (`retailer` False): committed = face value. The retailer's part (`retailer`
    True): committed = `coupons.offers.retailer_cost` (rounded up, as the chain budget counts
    it) and a redemption's part = discount - the funder's part rounded as the settlement. An
    expired offer releases committed - redeemed, so it leaves nothing outstanding."""
    face = pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)
    red = redemptions.filter(pl.col("voided") == 0).join(
        offers.select("offer_id", "funded_share"), on="offer_id", how="inner"
    )
    if retailer:
        red = red.with_columns((pl.col("discount_cents") - amount_due()).alias("discount_cents"))
    used = red.group_by("offer_id").agg(redeemed=pl.col("discount_cents").sum().cast(pl.Int64))
    f = offers.join(used, on="offer_id", how="left").with_columns(
        pl.col("redeemed").fill_null(0), (retailer_cost() if retailer else face).alias("committed")
    )
    share = (1.0 - pl.col("funded_share")) if retailer else pl.lit(1.0)
    return f.with_columns(
        expected=(pl.coalesce(pl.col("p_buy").clip(0.0, 1.0), pl.lit(1.0)) * face * share).round(0).cast(pl.Int64),
        released=pl.when(pl.col("valid_to") < as_of)
        .then((pl.col("committed") - pl.col("redeemed")).clip(lower_bound=0))
        .otherwise(0),
    )


def budget_frame(
    deals: pl.DataFrame,
    deal_offers: pl.DataFrame,
    chain_offers: pl.DataFrame,
    redemptions: pl.DataFrame,
    as_of: dt.date,
    chain_budget_cents: int | None,
) -> pl.DataFrame:
    """Budget use per deal and for the chain, in cents.

    Parameters
    ----------
    deals
        deal_id, manufacturer_id, budget_cents (null: no limit).
    deal_offers
        Offers of deals, every batch up to the chosen one: offer_id, deal_id, discount_cents,
        max_uses, funded_share, p_buy, valid_to.
    chain_offers
        The chosen batch's offers: offer_id, discount_cents, max_uses, funded_share, p_buy, valid_to.
    redemptions
        offer_id, discount_cents, voided (of any of those offers).
    as_of
        Offers valid until before this day have expired.

    Returns
    -------
    polars.DataFrame
        line ('chain' or the deal_id), funder, budget_cents, committed_cents, expected_cents,
        redeemed_cents, released_cents, outstanding_cents (= committed - redeemed - released).
        A deal counts whole offers (face value, as its budget does); the chain line the
        retailer-funded part of the chosen batch's offers (see `_per_offer_money`). Deals with
        no offer show zeros. Chain first, then deals by committed (largest first), deal_id.
    """
    money = ("committed", "expected", "redeemed", "released")
    per_deal = (
        _per_offer_money(deal_offers, redemptions, as_of, retailer=False)
        .group_by("deal_id")
        .agg(pl.col(m).sum() for m in money)
    )
    deal_rows = (
        deals.select("deal_id", "manufacturer_id", "budget_cents")
        .join(per_deal, on="deal_id", how="left")
        .select(
            pl.col("deal_id").alias("line"),
            pl.col("manufacturer_id").alias("funder"),
            pl.col("budget_cents").cast(pl.Int64),
            *[pl.col(m).fill_null(0) for m in money],
        )
    )
    chain = _per_offer_money(chain_offers, redemptions, as_of, retailer=True).select(
        pl.lit("chain").alias("line"),
        pl.lit("retailer").alias("funder"),
        pl.lit(chain_budget_cents or None, pl.Int64).alias("budget_cents"),
        *[pl.col(m).sum() for m in money],
    )
    table = pl.concat([chain, deal_rows.sort(["committed", "line"], descending=[True, False])], how="vertical_relaxed")
    return table.select(
        "line", "funder", "budget_cents", **{f"{m}_cents": pl.col(m).cast(pl.Int64) for m in money}
    ).with_columns(
        (pl.col("committed_cents") - pl.col("redeemed_cents") - pl.col("released_cents")).alias("outstanding_cents")
    )


def redemption_frame(offers: pl.DataFrame, redemptions: pl.DataFrame, confidence: float) -> pl.DataFrame:
    """kind, cell, offers, redeemed_offers (used at least once), redemption_rate, ci_low, ci_high
    (Wilson); one row per kind x cell and an 'all' cell per kind; by kind, cell ('all' first)."""
    z = z_value(confidence)
    used = redemptions.filter(pl.col("voided") == 0).select("offer_id").unique().with_columns(used=pl.lit(True))
    f = offers.join(used, on="offer_id", how="left").with_columns(_cell(), pl.col("used").fill_null(False))
    agg = dict(offers=pl.len().cast(pl.Int64), redeemed_offers=pl.col("used").sum().cast(pl.Int64))
    table = pl.concat(
        [
            f.group_by("kind").agg(**agg).with_columns(pl.lit("all").alias("cell")),
            f.group_by("kind", "cell").agg(**agg),
        ],
        how="diagonal",
    )
    low, high = wilson_bounds(pl.col("redeemed_offers"), pl.col("offers"), z)
    return table.select(
        "kind",
        "cell",
        "offers",
        "redeemed_offers",
        redemption_rate=pl.col("redeemed_offers") / pl.col("offers"),
        ci_low=low,
        ci_high=high,
    ).sort("kind", pl.col("cell") != "all", "cell")


def funder_frame(offers: pl.DataFrame, redemptions: pl.DataFrame) -> pl.DataFrame:
    """funder, redemptions, discount_cents, funder_cents (round half up of discount x funded_share per
    redemption, as the settlement), retailer_cents (the rest); retailer first, then by discount."""
    lines = (
        redemptions.filter(pl.col("voided") == 0)
        .select("offer_id", "discount_cents")
        .join(offers.select("offer_id", "funder", "funded_share"), on="offer_id", how="inner")
        .with_columns(pl.when(pl.col("funder") == "retailer").then(0).otherwise(amount_due()).alias("funder_cents"))
    )
    return (
        lines.group_by("funder")
        .agg(
            redemptions=pl.len().cast(pl.Int64),
            discount_cents=pl.col("discount_cents").sum().cast(pl.Int64),
            funder_cents=pl.col("funder_cents").sum().cast(pl.Int64),
        )
        .with_columns((pl.col("discount_cents") - pl.col("funder_cents")).alias("retailer_cents"))
        .sort(pl.col("funder") != "retailer", -pl.col("discount_cents"), "funder")
    )


def lift_outcomes_frame(members: pl.DataFrame, offers: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """One row per member x funder: funder, grp, bought (any of the funder's offered categories
    in the period), spend_cents (in those categories; returns lower it).

    `members`: customer_key, grp. `offers`: funder, category (null ones ignored). `lines`: the
    period's line items: customer_key, category, quantity, amount_cents."""
    cats = offers.filter(pl.col("category").is_not_null()).select("funder", "category").unique()
    spend = (
        lines.join(cats, on="category", how="inner")
        .group_by("customer_key", "funder")
        .agg(spend_cents=pl.col("amount_cents").sum(), bought=(pl.col("quantity") > 0).any())
    )
    return (
        members.select("customer_key", "grp")
        .join(cats.select("funder").unique(), how="cross")
        .join(spend, on=["customer_key", "funder"], how="left")
        .select(
            "funder",
            "grp",
            bought=pl.col("bought").fill_null(False),
            spend_cents=pl.col("spend_cents").fill_null(0).cast(pl.Float64),
        )
    )


def lift_frame(outcomes: pl.DataFrame, confidence: float) -> pl.DataFrame:
    """`coupons.lift.holdout_lift` per funder, with spend_cents as the mean; retailer first."""
    lift = holdout_lift(outcomes, confidence, by=("funder",), means=("spend_cents",))
    return lift.sort(pl.col("funder") != "retailer", "funder")


def calibration_frame(offers: pl.DataFrame, lines: pl.DataFrame, bins: int, confidence: float) -> pl.DataFrame:
    """Reliability of p_buy: bin (0 .. bins-1), bin_low, bin_high, offers, mean_p_buy, bought_share,
    ci_low, ci_high (Wilson); bins with no offer are left out (a bin of nothing has no rate).

    `offers`: customer_key, category, p_buy, valid_from, valid_to (those with a p_buy and a
    category count). `lines`: customer_key, category, day, quantity."""
    z = z_value(confidence)
    f = offers.filter(pl.col("p_buy").is_not_null() & pl.col("category").is_not_null()).with_row_index("_o")
    bought = (
        f.select("_o", "customer_key", "category", "valid_from", "valid_to")
        .join(
            lines.filter(pl.col("quantity") > 0).select("customer_key", "category", "day"),
            on=["customer_key", "category"],
            how="inner",
        )
        .filter(pl.col("day").is_between(pl.col("valid_from"), pl.col("valid_to")))
        .select("_o")
        .unique()
        .with_columns(bought=pl.lit(True))
    )
    f = f.join(bought, on="_o", how="left").with_columns(
        pl.col("bought").fill_null(False),
        (pl.col("p_buy").clip(0.0, 1.0) * bins).floor().clip(0, bins - 1).cast(pl.Int64).alias("bin"),
    )
    table = f.group_by("bin").agg(
        offers=pl.len().cast(pl.Int64), mean_p_buy=pl.col("p_buy").mean(), buyers=pl.col("bought").sum().cast(pl.Int64)
    )
    low, high = wilson_bounds(pl.col("buyers"), pl.col("offers"), z)
    return table.select(
        "bin",
        bin_low=(pl.col("bin") / bins).round(6),
        bin_high=((pl.col("bin") + 1) / bins).round(6),
        offers="offers",
        mean_p_buy="mean_p_buy",
        bought_share=pl.col("buyers") / pl.col("offers"),
        ci_low=low,
        ci_high=high,
    ).sort("bin")


def day_error_frame(offers: pl.DataFrame, lines: pl.DataFrame) -> pl.DataFrame:
    """Next-purchase-day error: error_days (first purchase day of the category in the offer's
    validity minus expected_on; negative = earlier), offers; by error_days. Offers whose customer
    did not buy in the validity have no error and are not counted (the calibration shows them)."""
    f = offers.filter(pl.col("expected_on").is_not_null() & pl.col("category").is_not_null()).with_row_index("_o")
    first = (
        f.join(
            lines.filter(pl.col("quantity") > 0).select("customer_key", "category", "day"),
            on=["customer_key", "category"],
            how="inner",
        )
        .filter(pl.col("day").is_between(pl.col("valid_from"), pl.col("valid_to")))
        .group_by("_o")
        .agg(pl.col("day").min(), pl.col("expected_on").first())
    )
    return (
        first.select(error_days=(pl.col("day") - pl.col("expected_on")).dt.total_days().cast(pl.Int64))
        .group_by("error_days")
        .agg(offers=pl.len().cast(pl.Int64))
        .sort("error_days")
    )


# ----------------------------------------------------------------------------------------------
# charts (Altair -> Vega-Lite, rendered offline by vl-convert)
# ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Part:
    """One chart of a section and the table it is drawn from."""

    name: str  # the CSV's name (without .csv)
    table: pl.DataFrame
    chart: Any = None  # an Altair chart, or None when the table has no rows
    empty: str = "no data"  # said instead of the chart when the table has no rows


@dataclasses.dataclass
class Section:
    title: str
    note: str
    parts: list[Part]


def _values(frame: pl.DataFrame) -> list[dict]:
    dates = [c for c, t in frame.schema.items() if t in (pl.Date, pl.Datetime)]
    return frame.with_columns(pl.col(dates).cast(pl.String)).to_dicts() if dates else frame.to_dicts()


def _charts(data: dict[str, Any], s: ReportSettings) -> list[Section]:
    import altair as alt

    def chart(frame: pl.DataFrame):  # noqa: ANN202
        return alt.Chart(alt.Data(values=_values(frame)))

    def part(name: str, frame: pl.DataFrame, build, empty: str) -> Part:  # noqa: ANN001
        return Part(name, frame, build(frame) if frame.height else None, empty)

    def in_dollars(frame: pl.DataFrame, *columns: str) -> pl.DataFrame:  # chart axes, not text: floats
        return frame.with_columns((pl.col(c) / 100).alias(c.replace("_cents", "_dollars")) for c in columns)

    trend = part(
        "batches",
        data["trend"],
        lambda f: (
            chart(f)
            .mark_line(point=True)
            .encode(x=alt.X("period_start:T", title="period start"), y=alt.Y("customers:Q"), color="measure:N")
            .properties(width=520, height=220)
        ),
        "no finished batch",
    )
    kinds = part(
        "offers_by_kind_cell",
        data["offers"],
        lambda f: (
            chart(f)
            .mark_bar()
            .encode(
                y=alt.Y("kind:N"),
                x=alt.X("sum(offers):Q", title="offers"),
                color=alt.Color("cell:N"),
                tooltip=["kind:N", "cell:N", "offers:Q"],
            )
            .properties(width=520, height=160)
        ),
        "the batch has no offers",
    )
    heat = []
    grids = data["campaigns"]
    for name in grids["campaign"].unique(maintain_order=True).to_list():
        g = grids.filter(pl.col("campaign") == name)
        for measure in ("qualifying_customers", "offers"):
            base = chart(g).encode(
                x=alt.X("volume_tier:N", sort=list(_TIERS), title="volume"),
                y=alt.Y("brand_cell:N", sort=list(_CELLS), title="brand"),
            )
            heat.append(
                base.mark_rect()
                .encode(color=alt.Color(f"{measure}:Q", scale=alt.Scale(scheme="blues")))
                .properties(width=180, height=130, title=f"{name}: {measure.replace('_', ' ')}")
                + base.mark_text(baseline="middle").encode(text=f"{measure}:Q")
            )
    rows = [alt.hconcat(*heat[i : i + 2]).resolve_scale(color="independent") for i in range(0, len(heat), 2)]
    campaign_part = Part(
        "campaigns",
        grids,
        (rows[0] if len(rows) == 1 else alt.vconcat(*rows)) if rows else None,
        "no campaign in the settings",
    )
    budget = in_dollars(
        data["budget"], "committed_cents", "expected_cents", "redeemed_cents", "released_cents", "outstanding_cents"
    )
    top = budget.head(12).unpivot(
        index="line",
        on=["expected_dollars", "redeemed_dollars", "released_dollars", "committed_dollars"],
        variable_name="measure",
        value_name="dollars",
    )
    budget_part = Part(
        "budget_use",
        data["budget"],
        chart(top)
        .mark_bar()
        .encode(y=alt.Y("line:N", sort=None), x=alt.X("dollars:Q"), color="measure:N", yOffset="measure:N")
        .properties(width=520, height=22 * max(top["line"].n_unique(), 1) * 2)
        if budget.height
        else None,
        "no deal and no offer",
    )
    results = data["results"]
    missing = "no results batch: no purchase recorded in the period of a finished batch yet"
    if results:
        rates = results["redemption"].filter(pl.col("cell") != "all")
        red = Part(
            "redemption_rate",
            results["redemption"],
            chart(rates)
            .mark_point(filled=True)
            .encode(x=alt.X("redemption_rate:Q", axis=alt.Axis(format="%")), y=alt.Y("cell:N"), color="kind:N")
            .properties(width=520, height=max(14 * rates["cell"].n_unique(), 60))
            + chart(rates).mark_rule().encode(x="ci_low:Q", x2="ci_high:Q", y="cell:N", color="kind:N")
            if rates.height
            else None,
            "no offer in the results batch",
        )
        paid = in_dollars(results["funders"], "funder_cents", "retailer_cents").unpivot(
            index="funder", on=["funder_dollars", "retailer_dollars"], variable_name="paid_by", value_name="dollars"
        )
        fund = Part(
            "discount_by_funder",
            results["funders"],
            chart(paid)
            .mark_bar()
            .encode(y=alt.Y("funder:N", sort=None), x="dollars:Q", color="paid_by:N")
            .properties(width=520, height=max(20 * paid["funder"].n_unique(), 60))
            if paid.height
            else None,
            "no redemption in the results period",
        )
    else:
        red = Part("redemption_rate", pl.DataFrame(), None, missing)
        fund = Part("discount_by_funder", pl.DataFrame(), None, missing)
    lift_data = results["lift"] if results else pl.DataFrame()

    def lift_chart(f: pl.DataFrame):  # noqa: ANN202
        rate = chart(f).mark_point(filled=True, size=60).encode(
            x=alt.X("rate_lift:Q", title="purchase rate, treated - hold-out", axis=alt.Axis(format="%")),
            y=alt.Y("funder:N", sort=None),
        ) + chart(f).mark_rule().encode(x="rate_ci_low:Q", x2="rate_ci_high:Q", y=alt.Y("funder:N", sort=None))
        spend = in_dollars(f, "spend_cents_lift", "spend_cents_ci_low", "spend_cents_ci_high")
        money = chart(spend).mark_point(filled=True, size=60).encode(
            x=alt.X("spend_dollars_lift:Q", title="spend per household ($), treated - hold-out"),
            y=alt.Y("funder:N", sort=None),
        ) + chart(spend).mark_rule().encode(
            x="spend_dollars_ci_low:Q", x2="spend_dollars_ci_high:Q", y=alt.Y("funder:N", sort=None)
        )
        zero = alt.Chart(alt.Data(values=[{"x": 0}])).mark_rule(strokeDash=[4, 4], color="gray").encode(x="x:Q")
        h = max(18 * f.height, 60)
        return alt.hconcat(
            (rate + zero).properties(width=250, height=h), (money + zero).properties(width=250, height=h)
        )

    lift_part = part("lift", lift_data, lift_chart, missing if not results else "no hold-out in the results batch")
    cal = results["calibration"] if results else pl.DataFrame()

    def cal_chart(f: pl.DataFrame):  # noqa: ANN202
        diag = (
            alt.Chart(alt.Data(values=[{"p": 0.0}, {"p": 1.0}]))
            .mark_line(strokeDash=[4, 4], color="gray")
            .encode(x="p:Q", y="p:Q")
        )
        pts = (
            chart(f)
            .mark_point(filled=True)
            .encode(
                x=alt.X("mean_p_buy:Q", title="predicted p_buy", scale=alt.Scale(domain=[0, 1])),
                y=alt.Y("bought_share:Q", title="share bought", scale=alt.Scale(domain=[0, 1])),
                size=alt.Size("offers:Q", title="offers"),
                tooltip=["offers:Q", "mean_p_buy:Q", "bought_share:Q"],
            )
        )
        bars = chart(f).mark_rule().encode(x="mean_p_buy:Q", y="ci_low:Q", y2="ci_high:Q")
        labels = chart(f).mark_text(dy=-12, fontSize=9).encode(x="mean_p_buy:Q", y="ci_high:Q", text="offers:Q")
        return (diag + bars + pts + labels).properties(width=300, height=260)

    cal_part = part(
        "calibration", cal, cal_chart, missing if not results else "no offer of the results batch carries a p_buy"
    )
    err = results["day_error"] if results else pl.DataFrame()
    err_part = part(
        "next_purchase_day_error",
        err,
        lambda f: (
            chart(f)
            .mark_bar()
            .encode(x=alt.X("error_days:O", title="first purchase day - expected day"), y="offers:Q")
            .properties(width=420, height=180)
        ),
        missing if not results else "no offer with an expected day was bought",
    )
    rb = data.get("results_batch")
    period = f" (batch {rb['batch_id']}, {rb['period_start']} to {rb['period_end']})" if rb else ""
    return [
        Section(SECTIONS[0], "Qualifying customers, hold-out and lists per period.", [trend]),
        Section(SECTIONS[1], f"Offers of batch {data['batch']['batch_id']} by kind and brand:volume cell.", [kinds]),
        Section(
            SECTIONS[2],
            "Per campaign: qualifying customers and offers by brand cell x volume tier; "
            "depth (median discount by tier) in campaigns.csv.",
            [campaign_part],
        ),
        Section(
            SECTIONS[3],
            f"As of {data['as_of']}. Deals over every batch so far; the chain line is the "
            "retailer-funded part of this batch. Committed = face value issued; expected = "
            "p_buy x face value; released = face value of expired offers not redeemed.",
            [budget_part],
        ),
        Section(
            SECTIONS[4], f"Offers used at least once / offers, with {s.confidence:.0%} Wilson intervals{period}.", [red]
        ),
        Section(SECTIONS[5], f"Redemptions not voided, split as the settlement splits them{period}.", [fund]),
        Section(
            SECTIONS[6],
            f"Every member of the batch x the categories of the funder's offers{period}: "
            f"purchase rate (Newcombe hybrid score, {s.confidence:.0%}) and spend per household "
            "(Welch) in those categories.",
            [lift_part],
        ),
        Section(
            SECTIONS[7],
            f"Offers binned by p_buy against the share bought in the offer's validity{period}; "
            "numbers are offers per bin, bars Wilson intervals. The offers' own effect is "
            "included. Below: first purchase day minus the expected day.",
            [cal_part, err_part],
        ),
    ]


def _svg(chart) -> str:  # noqa: ANN001
    import vl_convert as vlc

    return vlc.vegalite_to_svg(chart.to_dict())


def _png(chart) -> bytes:  # noqa: ANN001
    import vl_convert as vlc

    return vlc.vegalite_to_png(chart.to_dict(), scale=2)


def _html_table(frame: pl.DataFrame, rows: int) -> str:
    head = "".join(f"<th>{html.escape(c)}</th>" for c in frame.columns)
    body = "".join(
        "<tr>" + "".join(f"<td>{html.escape(_fmt(v))}</td>" for v in r) + "</tr>" for r in frame.head(rows).iter_rows()
    )
    more = f"<p class='more'>{frame.height - rows:,} more rows in the CSV</p>" if frame.height > rows else ""
    return f"<table><tr>{head}</tr>{body}</table>{more}"


def _fmt(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, float):
        return f"{value:.4g}"
    return str(value)


def render_html(title: str, sections: list[Section], s: ReportSettings) -> str:
    """The report as one HTML page: inline SVG charts, no script, nothing fetched."""
    out = [
        f"<!DOCTYPE html><html lang='en'><head><meta charset='utf-8'><title>{html.escape(title)}</title>",
        "<style>body{font-family:sans-serif;margin:2em;max-width:1100px}table{border-collapse:collapse;"
        "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}"
        ".empty{color:#a00;font-style:italic}.more,.csv{font-size:12px;color:#555}</style></head><body>",
        f"<h1>{html.escape(title)}</h1>",
    ]
    for sec in sections:
        out.append(f"<section><h2>{html.escape(sec.title)}</h2><p>{html.escape(sec.note)}</p>")
        for p in sec.parts:
            if p.chart is None:
                out.append(f"<p class='empty'>No data: {html.escape(p.empty)}.</p>")
            else:
                out.append(f"<figure>{_svg(p.chart)}</figure>")
            out.append(f"<p class='csv'>Table: {html.escape(p.name)}.csv ({p.table.height:,} rows)</p>")
            if p.table.height:
                out.append(_html_table(p.table, s.table_rows))
        out.append("</section>")
    out.append("</body></html>")
    return "\n".join(out)


def render_pdf(path: Path, title: str, sections: list[Section], s: ReportSettings) -> int:
    """The report as a PDF, a page per section (reportlab); returns the page count."""
    from reportlab.lib.pagesizes import A4, landscape
    from reportlab.lib.utils import ImageReader
    from reportlab.pdfgen import canvas

    width, height = landscape(A4)
    pdf = canvas.Canvas(str(path), pagesize=(width, height), invariant=1)
    pdf.setTitle(title)
    pages = 0
    for sec in sections:
        y = height - 40
        pdf.setFont("Helvetica-Bold", 9)
        pdf.drawString(36, y, title)
        y -= 24
        pdf.setFont("Helvetica-Bold", 15)
        pdf.drawString(36, y, sec.title)
        y -= 16
        pdf.setFont("Helvetica", 8.5)
        for line in _wrap(sec.note, 170):
            pdf.drawString(36, y, line)
            y -= 11
        # the charts share what the tables leave of the page
        room = max(y - 40 - len(sec.parts) * (30 + 8 * (s.table_rows if len(sec.parts) == 1 else 5)), 120) / len(
            sec.parts
        )
        for p in sec.parts:
            y -= 8
            if p.chart is None:
                pdf.setFont("Helvetica-Oblique", 11)
                pdf.drawString(36, y - 12, f"No data: {p.empty}.")
                y -= 30
            else:
                image = ImageReader(io.BytesIO(_png(p.chart)))
                iw, ih = image.getSize()
                scale = min((width - 72) / iw, room / ih)
                pdf.drawImage(image, 36, y - ih * scale, iw * scale, ih * scale)
                y -= ih * scale + 6
            y = _pdf_table(pdf, p, y, s.table_rows if len(sec.parts) == 1 else 5)
        pdf.showPage()
        pages += 1
    pdf.save()
    return pages


def _wrap(text: str, width: int) -> list[str]:
    lines, line = [], ""
    for word in text.split():
        if len(line) + len(word) + 1 > width:
            lines.append(line)
            line = word
        else:
            line = f"{line} {word}".strip()
    return [*lines, line] if line else lines


def _pdf_table(pdf, part: Part, y: float, rows: int) -> float:  # noqa: ANN001
    pdf.setFont("Helvetica", 7)
    pdf.drawString(
        36, y - 2, f"Table: {part.name}.csv ({part.table.height:,} rows; first {min(rows, part.table.height)} shown)"
    )
    y -= 12
    columns = part.table.columns[:10]
    step = min(78, 770 / max(len(columns), 1))
    pdf.setFont("Helvetica-Bold", 6.5)
    for i, c in enumerate(columns):
        pdf.drawString(36 + i * step, y, c[:22])
    y -= 9
    pdf.setFont("Helvetica", 6.5)
    for r in part.table.head(rows).select(columns).iter_rows():
        if y < 24:
            break
        for i, v in enumerate(r):
            pdf.drawString(36 + i * step, y, _fmt(v)[:22])
        y -= 8
    return y


# ----------------------------------------------------------------------------------------------
# reading and writing
# ----------------------------------------------------------------------------------------------

_OFFER_COLUMNS = {
    "offer_id": pl.Int64,
    "customer_key": pl.Int64,
    "batch_id": pl.Int64,
    "kind": pl.String,
    "category": pl.String,
    "deal_id": pl.String,
    "funder": pl.String,
    "funded_share": pl.Float64,
    "discount_cents": pl.Int64,
    "max_uses": pl.Int64,
    "valid_from": pl.Date,
    "valid_to": pl.Date,
    "expected_on": pl.Date,
    "p_buy": pl.Float64,
    "brand_cell": pl.String,
    "volume_tier": pl.String,
}


def _offers_sql(where: str) -> str:
    return (
        "SELECT o.offer_id, l.customer_key, l.batch_id, o.kind, o.category, o.deal_id, o.funder, "
        "o.funded_share, o.discount_cents, o.max_uses, o.valid_from, o.valid_to, o.expected_on, o.p_buy, "
        f"o.brand_cell, o.volume_tier FROM offers o JOIN lists l ON l.list_id = o.list_id WHERE {where}"
    )


def charged_frame(summaries: list[dict]) -> pl.DataFrame:
    """line, charged_cents: what the batches up to the chosen one charged each budget line.

    The batch charges a budget its expected redemptions plus a safety margin
    (`coupons.budgets`), not the face value shown as ``committed_cents``: a deal's line sums
    every batch's ``deal_budgets[deal].this_batch_cents``; the chain line is the chosen batch's
    ``chain_budget.committed_cents``. Summaries from before that model have no charge (null).
    """
    charged: dict[str, int] = {}
    for summary in summaries:
        for deal, d in summary.get("deal_budgets", {}).items():
            if "expected_cents" in d:  # written by the expected-redemption budget model
                charged[deal] = charged.get(deal, 0) + int(d.get("this_batch_cents") or 0)
    chain = (summaries[-1].get("chain_budget") or {}) if summaries else {}
    if "committed_cents" in chain:
        charged["chain"] = int(chain["committed_cents"])
    return pl.DataFrame(
        {"line": list(charged), "charged_cents": list(charged.values())},
        schema={"line": pl.String, "charged_cents": pl.Int64},
    )


def _with_charged(budget: pl.DataFrame, summaries: list[dict]) -> pl.DataFrame:
    """`budget` with ``charged_cents`` after ``committed_cents``."""
    columns = budget.columns
    at = columns.index("committed_cents") + 1
    return budget.join(charged_frame(summaries), on="line", how="left", maintain_order="left").select(
        *columns[:at], "charged_cents", *columns[at:]
    )


def report_data(
    settings,
    batch_id: int | None = None,
    report: ReportSettings | None = None,  # noqa: ANN001
    gateway: Gateway | None = None,
) -> dict:
    """Everything the report shows, as frames (reads the database; see the module docstring).

    `gateway`: the command's database (`engine.db.Gateway`); None: one from the settings.
    """
    s = report or ReportSettings()
    with Gateway.using(gateway or settings.database_url) as db:
        return _read_report(db.require(), settings, batch_id, s)


def _read_report(db: Gateway, settings, batch_id: int | None, s: ReportSettings) -> dict:  # noqa: ANN001
    with db.reading():
        batches = db.batches("done")
        if batches.height == 0:
            raise StateError("no finished batch to report on: run 'listwise batch run' first")
        ids = [int(b) for b in batches["batch_id"]]
        chosen = ids[-1] if batch_id is None else int(batch_id)
        if chosen not in ids:
            raise StateError(f"batch {batch_id} is not a finished batch (finished: {', '.join(map(str, ids))})")
        row = batches.row(ids.index(chosen), named=True)
        summaries = [json.loads(j) for j in batches["summary_json"][: ids.index(chosen) + 1].to_list()]
        start = row["period_start"]
        with_sales = db.read(
            "SELECT b.batch_id, b.period_start, b.period_end FROM batches b WHERE b.status = 'done' "
            f"AND b.period_start <= '{start}' AND EXISTS (SELECT 1 FROM baskets k "
            "WHERE k.day >= b.period_start AND k.day < b.period_end) ORDER BY b.period_start DESC",
            {"batch_id": pl.Int64, "period_start": pl.Date, "period_end": pl.Date},
        )
        offers = db.read(_offers_sql(f"l.batch_id = {chosen}"), _OFFER_COLUMNS)
        deal_offers = db.read(
            _offers_sql(
                f"o.deal_id IS NOT NULL AND l.batch_id IN (SELECT batch_id FROM batches WHERE period_start <= '{start}')"
            ),
            _OFFER_COLUMNS,
        )
        deals = db.deals().select("deal_id", "manufacturer_id", "budget_cents")
        redemptions = db.read(
            "SELECT offer_id, discount_cents, voided FROM redemptions",
            {"offer_id": pl.Int64, "discount_cents": pl.Int64, "voided": pl.Int64},
        )
        last = db.read("SELECT MAX(day) AS d FROM baskets", {"d": pl.Date})["d"][0]
        last_r = db.read("SELECT MAX(redeemed_on) AS d FROM redemptions", {"d": pl.Date})["d"][0]
        results_batch = lines = None
        if with_sales.height:
            results_batch = with_sales.row(0, named=True)
            rid = results_batch["batch_id"]
            r_offers = db.read(_offers_sql(f"l.batch_id = {rid}"), _OFFER_COLUMNS)
            members = db.read(
                f"SELECT customer_key, grp FROM batch_members WHERE batch_id = {rid}",
                {"customer_key": pl.Int64, "grp": pl.String},
            )
            lines = db.history(results_batch["period_end"], results_batch["period_start"]).select(
                "customer_key", "category", "day", "quantity", "amount_cents"
            )
    days = [d for d in (last, last_r) if d is not None]
    as_of = max(days) + dt.timedelta(days=1) if days else start
    data: dict[str, Any] = {
        "batch": {"batch_id": chosen, "period_start": start, "period_end": row["period_end"]},
        "as_of": as_of,
        "results_batch": results_batch,
        "trend": batch_trend_frame(summaries[-s.batches_shown :]),
        "offers": offers_frame(offers),
        "campaigns": campaign_frame(summaries[-1]),
        "budget": _with_charged(
            budget_frame(deals, deal_offers, offers, redemptions, as_of, settings.batch.chain_budget_cents or None),
            summaries,
        ),
        "results": None,
    }
    if results_batch is not None:
        r_red = redemptions.join(r_offers.select("offer_id"), on="offer_id", how="semi")
        data["results"] = {
            "redemption": redemption_frame(r_offers, r_red, s.confidence),
            "funders": funder_frame(r_offers, r_red),
            "lift": lift_frame(lift_outcomes_frame(members, r_offers, lines), s.confidence),
            "calibration": calibration_frame(r_offers, lines, s.calibration_bins, s.confidence),
            "day_error": day_error_frame(r_offers, lines),
        }
    return data


def write_report(
    settings,
    out_dir: str | Path,
    batch_id: int | None = None,  # noqa: ANN001 - Settings
    report: ReportSettings | None = None,
    gateway: Gateway | None = None,
) -> dict:
    """Write report.html, report.pdf and the tables' CSVs for a batch (default: the last done).

    Returns
    -------
    dict
        batch_id, results_batch_id (or None), html, pdf (paths), pages, tables (CSV names).
    """
    s = report or ReportSettings()
    data = report_data(settings, batch_id, s, gateway)
    sections = _charts(data, s)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    tables = []
    for sec in sections:
        for p in sec.parts:
            p.table.write_csv(out / f"{p.name}.csv")
            tables.append(f"{p.name}.csv")
    b = data["batch"]
    title = f"{settings.chain_name}: batch {b['batch_id']}, period {b['period_start']} to {b['period_end']}"
    (out / "report.html").write_text(render_html(title, sections, s), encoding="utf-8")
    pages = render_pdf(out / "report.pdf", title, sections, s)
    rb = data["results_batch"]
    return {
        "batch_id": b["batch_id"],
        "results_batch_id": rb["batch_id"] if rb else None,
        "html": str(out / "report.html"),
        "pdf": str(out / "report.pdf"),
        "pages": pages,
        "tables": tables,
    }
