"""Cycle offers: the categories a customer is likely to buy in the period, on the usual product.

One candidate per profile row (customer x category) whose ``p_buy_in_window`` reaches
`OfferRules.min_p_buy`, on the product the customer bought most units of in the category
(``usual_product_key``), at `OfferRules.cycle_depth` of its current shelf price, valid over
the whole period. ``expected_on`` is the profile's ``next_expected_on`` brought inside the
period, so the list can say "likely needed around" that day.

`cycle_candidates` keeps every profile row with a usual product and says why one is not
offered: below the probability floor, no price, no discount (the depth rounds to 0 cents).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.offers import conform_candidates, drop_when, expected_value, unit_margin, viable
from coupons.rules import BatchRules, OfferRules

__all__ = ["cycle_offers", "cycle_candidates", "period_bounds"]


def period_bounds(period_start: dt.date, period_end: dt.date) -> tuple[dt.date, dt.date]:
    """(valid_from, valid_to) of a period [start, end): valid_to is inclusive."""
    return period_start, period_end - dt.timedelta(days=1)


def cycle_offers(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    rules: OfferRules,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
) -> pl.DataFrame:
    """Candidate cycle offers (the viable rows of `cycle_candidates`).

    Parameters
    ----------
    profile
        The profile frame (customer_key, category, p_buy_in_window, next_expected_on,
        usual_product_key, usual_price_cents, brand_cell, volume_tier, ...).
    products
        product_key, regular_price_cents, unit_cost_cents.
    period_start, period_end
        The period [start, end).
    rules
        min_p_buy and cycle_depth (`coupons.rules.OfferRules`).
    margin_share
        Unit margin share of a product without a unit cost.

    Returns
    -------
    pl.DataFrame
        Columns of `coupons.offers.OFFER_SCHEMA`, kind 'cycle', funder 'retailer'.
    """
    return viable(cycle_candidates(profile, products, period_start, period_end, rules, margin_share, max_uses))


def cycle_candidates(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    rules: OfferRules,
    margin_share: float,
    max_uses: int = BatchRules.max_uses,
) -> pl.DataFrame:
    """One cycle candidate per profile row with a usual product (`coupons.offers.CANDIDATE_SCHEMA`)."""
    valid_from, valid_to = period_bounds(period_start, period_end)
    prices = products.select("product_key", "regular_price_cents", "unit_cost_cents")
    rows = (
        profile.filter(pl.col("usual_product_key").is_not_null())
        .join(prices, left_on="usual_product_key", right_on="product_key", how="left")
        .with_columns(pl.coalesce("regular_price_cents", "usual_price_cents").alias("regular_price_cents"))
    )
    discount = (pl.col("regular_price_cents") * rules.cycle_depth).round().cast(pl.Int64)
    expected = pl.col("next_expected_on").clip(valid_from, valid_to)
    offers = rows.select(
        "customer_key",
        pl.lit("cycle").alias("kind"),
        pl.col("usual_product_key").alias("product_key"),
        "category",
        pl.lit("retailer").alias("funder"),
        pl.lit(0.0).alias("funded_share"),
        discount.alias("discount_cents"),
        pl.lit(max_uses).alias("max_uses"),
        pl.lit(valid_from).alias("valid_from"),
        pl.lit(valid_to).alias("valid_to"),
        expected.alias("expected_on"),
        pl.col("p_buy_in_window").alias("p_buy"),
        "brand_cell",
        "volume_tier",
        pl.format("likely needed around {}", expected.dt.strftime("%b %-d")).alias("reason"),
        unit_margin(margin_share=margin_share).alias("_margin"),
        drop_when(
            (
                pl.col("p_buy_in_window").is_null() | (pl.col("p_buy_in_window") < rules.min_p_buy),
                "below probability floor",
            ),
            (pl.col("regular_price_cents").is_null(), "no price"),
            (discount <= 0, "no discount"),
        ),
    )
    return conform_candidates(offers.with_columns(expected_value(pl.col("_margin"))))
