"""Conversion campaigns: move a category's national-brand buyers to the store brand.

A campaign (`coupons.rules.Campaign`) names a category, the brand type to convert towards
(default 'store'), the brand cells it aims at (default national and switcher buyers; store-loyal
buyers are never targeted since they need no push) and a depth by volume tier, so that the
heaviest users get the most aggressive offer (default high 40 %, mid 25 %, low 10 % of the
offered product's shelf price).

The product offered is the target-brand product of the same category closest to the customer's
usual product, among those with a shelf price when any has one (a product without a price
cannot carry an offer; from history, it has not sold lately): nearest size (small < regular <
large < family, other sizes compared for equality), then nearest shelf price, then lowest
product_key (`closest_alternatives`).

`conversion_candidates` keeps every targeted customer (category, brand cell, a depth for the
volume tier) and says why one is not offered: no store-brand alternative in the category, no
price for the offered product, no discount. The offer's expected value is the value of the
switch over `OfferRules.conversion_horizon_weeks` (formula in `coupons.offers`).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.offers import conform_candidates, drop_when, expected_value, unit_margin, viable
from coupons.rules import BatchRules, Campaign, OfferRules

__all__ = [
    "closest_alternatives",
    "conversion_offers",
    "conversion_candidates",
    "switch_value",
    "campaign_name",
    "SIZE_ORDER",
]

SIZE_ORDER = {"small": 0, "regular": 1, "large": 2, "family": 3}


def campaign_name(campaign: Campaign) -> str:
    return campaign.name or f"{campaign.category} to {campaign.to_brand_type}"


def _size_rank(column: str) -> pl.Expr:
    return pl.col(column).str.to_lowercase().replace_strict(SIZE_ORDER, default=None, return_dtype=pl.Int64)


def closest_alternatives(products: pl.DataFrame, category: str, to_brand_type: str) -> pl.DataFrame:
    """For each product of `category`, the closest product of brand type `to_brand_type`.

    Returns
    -------
    pl.DataFrame
        product_key (the usual product), offer_product_key, offer_price_cents, offer_cost_cents;
        empty when the category has no product of that brand type.
    """
    cat = products.filter(pl.col("category") == category)
    targets = cat.filter(pl.col("brand_type") == to_brand_type).select(
        pl.col("product_key").alias("offer_product_key"),
        pl.col("size").alias("offer_size"),
        pl.col("regular_price_cents").alias("offer_price_cents"),
        pl.col("unit_cost_cents").alias("offer_cost_cents"),
    )
    pairs = cat.select("product_key", "size", "regular_price_cents").join(targets, how="cross")
    size_distance = (
        pl.when(_size_rank("size").is_not_null() & _size_rank("offer_size").is_not_null())
        .then((_size_rank("size") - _size_rank("offer_size")).abs())
        .otherwise(pl.when(pl.col("size") == pl.col("offer_size")).then(0).otherwise(9))
    )
    price_distance = (pl.col("regular_price_cents") - pl.col("offer_price_cents")).abs()
    return (
        pairs.with_columns(size_distance.alias("_sd"), price_distance.alias("_pd"))
        .sort("product_key", pl.col("offer_price_cents").is_null(), "_sd", "_pd", "offer_product_key", nulls_last=True)
        .group_by("product_key", maintain_order=True)
        .first()
        .select("product_key", "offer_product_key", "offer_price_cents", "offer_cost_cents")
    )


def switch_value(margin_gain: pl.Expr, horizon_weeks: float, hold_probability: float) -> pl.Expr:
    """Cents a switch is worth: units_per_week x horizon x margin gain per unit x P(switch holds)."""
    units = pl.col("units_per_week").fill_null(0.0).clip(lower_bound=0.0)
    return units * horizon_weeks * margin_gain * hold_probability


def conversion_offers(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    campaigns: tuple[Campaign, ...],
    period_start: dt.date,
    period_end: dt.date,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
    rules: OfferRules | None = None,
) -> pl.DataFrame:
    """Candidate conversion offers of every campaign (the viable rows of `conversion_candidates`).

    Parameters
    ----------
    profile
        The profile frame (customer_key, category, brand_cell, volume_tier, p_buy_in_window,
        units_per_week, usual_product_key, ...).
    products
        product_key, category, size, brand_type, regular_price_cents, unit_cost_cents.
    campaigns
        The campaigns (`coupons.rules.Campaign`).
    margin_share
        Unit margin share of a product without a unit cost.
    rules
        conversion_horizon_weeks and conversion_hold_probability (default `OfferRules()`).

    Returns
    -------
    pl.DataFrame
        Columns of `coupons.offers.OFFER_SCHEMA`, kind 'conversion'; one row per targeted
        customer x campaign. The reason names the campaign.
    """
    return viable(
        conversion_candidates(profile, products, campaigns, period_start, period_end, margin_share, max_uses, rules)
    )


def conversion_candidates(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    campaigns: tuple[Campaign, ...],
    period_start: dt.date,
    period_end: dt.date,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
    rules: OfferRules | None = None,
) -> pl.DataFrame:
    """One candidate per targeted customer x campaign (`coupons.offers.CANDIDATE_SCHEMA`)."""
    s = rules or OfferRules()
    valid_to = period_end - dt.timedelta(days=1)
    usual = products.select(
        "product_key", pl.col("regular_price_cents").alias("usual_price"), pl.col("unit_cost_cents").alias("usual_cost")
    )
    if "units_per_week" not in profile.columns:
        profile = profile.with_columns(pl.lit(None, pl.Float64).alias("units_per_week"))
    frames = []
    for campaign in campaigns:  # a handful of campaigns: each step inside is vectorised
        alternatives = closest_alternatives(products, campaign.category, campaign.to_brand_type)
        depth = pl.col("volume_tier").replace_strict(campaign.depth_by_tier, default=None, return_dtype=pl.Float64)
        rows = (
            profile.filter(
                pl.col("category") == campaign.category, pl.col("brand_cell").is_in(list(campaign.target_cells))
            )
            .with_columns(depth.alias("_depth"))
            .filter(pl.col("_depth").is_not_null() & (pl.col("_depth") > 0))
            .join(alternatives, left_on="usual_product_key", right_on="product_key", how="left")
            .join(usual, left_on="usual_product_key", right_on="product_key", how="left")
        )
        gain = unit_margin("offer_price_cents", "offer_cost_cents", margin_share=margin_share) - unit_margin(
            "usual_price", "usual_cost", margin_share=margin_share
        ).fill_null(0.0)
        discount = (pl.col("offer_price_cents") * pl.col("_depth")).round().cast(pl.Int64)
        frames.append(
            rows.select(
                "customer_key",
                pl.lit("conversion").alias("kind"),
                pl.col("offer_product_key").alias("product_key"),
                "category",
                pl.lit(campaign.funder).alias("funder"),
                pl.lit(float(campaign.funded_share)).alias("funded_share"),
                discount.alias("discount_cents"),
                pl.lit(max_uses).alias("max_uses"),
                pl.lit(period_start).alias("valid_from"),
                pl.lit(valid_to).alias("valid_to"),
                pl.col("p_buy_in_window").alias("p_buy"),
                "brand_cell",
                "volume_tier",
                pl.format(
                    "{}: {}% off, {} buyer, {} volume",
                    pl.lit(campaign_name(campaign)),
                    (pl.col("_depth") * 100).round().cast(pl.Int64),
                    "brand_cell",
                    "volume_tier",
                ).alias("reason"),
                switch_value(gain, s.conversion_horizon_weeks, s.conversion_hold_probability).alias("_value"),
                drop_when(
                    (pl.col("offer_product_key").is_null(), "no store-brand alternative"),
                    (pl.col("offer_price_cents").is_null(), "no price"),
                    (discount <= 0, "no discount"),
                ),
            ).with_columns(expected_value(pl.col("_value")))
        )
    empty = pl.DataFrame(schema={"customer_key": pl.Int64})
    return conform_candidates(pl.concat(frames, how="diagonal_relaxed")) if frames else conform_candidates(empty)
