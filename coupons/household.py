"""Household offers: pet food for pet owners, baby items for babies, vegetables for heavy buyers.

Households are inferred from history alone, through the profile: a customer belongs to a
group of `OfferRules.household_groups` (name -> category patterns, `coupons.categories`) when their purchase days in the
group's categories add up to at least `household_min_purchase_days`; a group listed in
`household_heavy_groups` (default: vegetables) also needs volume tier 'high' in one of them.
Each member gets one offer per group, on their usual product of the group category they are
most likely to buy in the period, at `household_depth` of the shelf price.
`household_candidates` keeps every member x group and says why one is not offered (no price,
no discount).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.categories import match_categories
from coupons.offers import conform_candidates, drop_when, expected_value, unit_margin, viable
from coupons.rules import BatchRules, OfferRules

__all__ = ["household_groups", "household_offers", "household_candidates"]


def _group_categories(profile: pl.DataFrame, rules: OfferRules) -> pl.DataFrame:
    """category, group: the profile's categories each group's patterns match (`coupons.categories`)."""
    categories = profile.select("category").unique()
    frames = [
        match_categories(patterns, categories).select("category", pl.lit(group).alias("group"))
        for group, patterns in rules.household_groups.items()
    ]
    schema = {"category": pl.String, "group": pl.String}
    return pl.concat([pl.DataFrame(schema=schema), *frames]).unique().sort("group", "category")


def household_groups(profile: pl.DataFrame, rules: OfferRules) -> pl.DataFrame:
    """Columns: customer_key, group — one row per customer and group they belong to."""
    mapping = _group_categories(profile, rules)
    rows = profile.join(mapping, on="category", how="inner")
    members = rows.group_by("customer_key", "group").agg(
        pl.col("purchase_days").sum().alias("days"), (pl.col("volume_tier") == "high").any().alias("heavy")
    )
    heavy_needed = pl.col("group").is_in(list(rules.household_heavy_groups))
    return (
        members.filter(pl.col("days") >= rules.household_min_purchase_days, ~heavy_needed | pl.col("heavy"))
        .select("customer_key", "group")
        .sort("customer_key", "group")
    )


def household_offers(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    rules: OfferRules,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
) -> pl.DataFrame:
    """Candidate household offers (the viable rows of `household_candidates`).

    Returns
    -------
    pl.DataFrame
        Columns of `coupons.offers.OFFER_SCHEMA`, kind 'household', funder 'retailer', reason
        naming the group; at most one row per customer x group.
    """
    return viable(household_candidates(profile, products, period_start, period_end, rules, margin_share, max_uses))


def household_candidates(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    rules: OfferRules,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
) -> pl.DataFrame:
    """One household candidate per member x group (`coupons.offers.CANDIDATE_SCHEMA`)."""
    groups = household_groups(profile, rules)
    mapping = _group_categories(profile, rules)
    prices = products.select("product_key", "regular_price_cents", "unit_cost_cents")
    rows = (
        profile.filter(pl.col("usual_product_key").is_not_null())
        .join(mapping, on="category", how="inner")
        .join(groups, on=["customer_key", "group"], how="semi")
        .sort("customer_key", "group", "p_buy_in_window", "category", descending=[False, False, True, False])
        .unique(["customer_key", "group"], keep="first", maintain_order=True)
        .join(prices, left_on="usual_product_key", right_on="product_key", how="left")
    )
    valid_to = period_end - dt.timedelta(days=1)
    discount = (pl.col("regular_price_cents") * rules.household_depth).round().cast(pl.Int64)
    offers = rows.select(
        "customer_key",
        pl.lit("household").alias("kind"),
        pl.col("usual_product_key").alias("product_key"),
        "category",
        pl.lit("retailer").alias("funder"),
        pl.lit(0.0).alias("funded_share"),
        discount.alias("discount_cents"),
        pl.lit(max_uses).alias("max_uses"),
        pl.lit(period_start).alias("valid_from"),
        pl.lit(valid_to).alias("valid_to"),
        pl.col("p_buy_in_window").alias("p_buy"),
        "brand_cell",
        "volume_tier",
        pl.format("household: {}", "group").alias("reason"),
        unit_margin(margin_share=margin_share).alias("_margin"),
        drop_when((pl.col("regular_price_cents").is_null(), "no price"), (discount <= 0, "no discount")),
    )
    return conform_candidates(offers.with_columns(expected_value(pl.col("_margin"))))
