"""Manufacturer deals: offers a manufacturer pays for (all or part), from the deals file.

A deal (table ``deals``) names a product (sku), or a category and/or brand of its manufacturer;
it is offered to customers who buy in the category of one of its products, during the part of
the period it is valid, at most ``max_per_customer`` uses per customer (the offer's
``max_uses``), and only to the brand x volume cells of ``target_cells`` when given
(``'national:high;switcher:high'``: a cell, optionally ``:tier``; ``*`` matches any).
The product offered is the customer's usual product when the deal covers it, else the deal's
product nearest in price to it. Budgets are applied later by `coupons.budgets`.

Discount per use: ``amount_off`` value; ``percent_off`` percent x shelf price; ``price`` shelf
price - deal price; never more than the shelf price. `deal_candidates` keeps one row per
customer x deal and says why one is not offered: the product has no price, or the deal gives
nothing on it (the customer's usual product is preferred among the covered products that give
something).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.offers import conform_candidates, drop_when, expected_value, unit_margin, viable
from coupons.rules import OfferRules

__all__ = ["active_deals", "deal_products", "deal_offers", "deal_candidates", "target_cells"]


def active_deals(deals: pl.DataFrame, period_start: dt.date, period_end: dt.date) -> pl.DataFrame:
    """Deals valid on at least one day of [period_start, period_end), with the offer's valid dates.

    Adds offer_from and offer_to (inclusive): the deal's validity clipped to the period.
    """
    last = period_end - dt.timedelta(days=1)
    return deals.filter(pl.col("starts_on") <= last, pl.col("ends_on") >= period_start).with_columns(
        pl.max_horizontal(pl.col("starts_on"), pl.lit(period_start)).alias("offer_from"),
        pl.min_horizontal(pl.col("ends_on"), pl.lit(last)).alias("offer_to"),
    )


def deal_products(deals: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    """Every (deal_id, product_key) a deal covers, with the discount per use on that product.

    Returns
    -------
    pl.DataFrame
        deal_id, product_key, category, regular_price_cents, unit_cost_cents, discount_cents
        (0 when the deal gives nothing on the product, null when it has no shelf price).
    """
    p = products.select(
        "product_key",
        pl.col("sku").alias("p_sku"),
        pl.col("category").alias("p_category"),
        pl.col("brand").alias("p_brand"),
        pl.col("manufacturer_id").alias("p_maker"),
        "regular_price_cents",
        "unit_cost_cents",
    )
    covered = deals.join(p, how="cross").filter(
        pl.col("sku").is_null() | (pl.col("sku") == pl.col("p_sku")),
        pl.col("category").is_null() | (pl.col("category") == pl.col("p_category")),
        pl.col("brand").is_null() | (pl.col("brand") == pl.col("p_brand")),
        pl.col("sku").is_not_null() | (pl.col("manufacturer_id") == pl.col("p_maker")),
    )
    price = pl.col("regular_price_cents")
    raw = (
        pl.when(pl.col("kind") == "amount_off")
        .then(pl.col("value_cents"))
        .when(pl.col("kind") == "percent_off")
        .then((price * pl.col("percent_bp") / 10_000).round().cast(pl.Int64))
        .otherwise(price - pl.col("value_cents"))
    )
    discount = pl.when(price.is_null()).then(None).otherwise(pl.min_horizontal(raw.clip(lower_bound=0), price))
    return covered.select(
        "deal_id",
        "product_key",
        pl.col("p_category").alias("category"),
        "regular_price_cents",
        "unit_cost_cents",
        discount.cast(pl.Int64).alias("discount_cents"),
    )


def target_cells(deals: pl.DataFrame) -> pl.DataFrame:
    """One row per (deal_id, t_cell, t_tier) of a deal's target_cells; '*' = any (no targets: '*','*')."""
    tokens = (
        deals.select("deal_id", pl.col("target_cells").fill_null("").str.split(";").alias("t"))
        .explode("t")
        .with_columns(pl.col("t").str.strip_chars())
        .filter(pl.col("t") != "")
    )
    parts = pl.col("t").str.split(":")
    named = tokens.select(
        "deal_id",
        parts.list.get(0).str.strip_chars().alias("t_cell"),
        parts.list.get(1, null_on_oob=True).fill_null("*").str.strip_chars().alias("t_tier"),
    )
    untargeted = (
        deals.select("deal_id")
        .join(named, on="deal_id", how="anti")
        .with_columns(pl.lit("*").alias("t_cell"), pl.lit("*").alias("t_tier"))
    )
    return pl.concat([named, untargeted]).unique(maintain_order=True)


def deal_offers(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    margin_share: float,
    default_max_uses: int = OfferRules.deal_max_per_customer,
) -> pl.DataFrame:
    """Candidate deal offers, before the deal budgets (the viable rows of `deal_candidates`).

    Parameters
    ----------
    profile
        The profile frame (customer_key, category, usual_product_key, usual_price_cents,
        p_buy_in_window, brand_cell, volume_tier).
    products
        The products frame.
    deals
        Rows of the ``deals`` table (deal_id, manufacturer_id, sku, category, brand, kind,
        value_cents, percent_bp, funded_share, starts_on, ends_on, budget_cents,
        max_per_customer, target_cells).

    Returns
    -------
    pl.DataFrame
        Columns of `coupons.offers.OFFER_SCHEMA`, kind 'deal', funder the manufacturer_id;
        at most one row per customer x deal.
    """
    return viable(deal_candidates(profile, products, deals, period_start, period_end, margin_share, default_max_uses))


def deal_candidates(
    profile: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    period_start: dt.date,
    period_end: dt.date,
    margin_share: float,
    default_max_uses: int = OfferRules.deal_max_per_customer,
) -> pl.DataFrame:
    """One deal candidate per targeted customer x active deal (`coupons.offers.CANDIDATE_SCHEMA`)."""
    active = active_deals(deals, period_start, period_end)
    if active.height == 0:
        return conform_candidates(pl.DataFrame(schema={"customer_key": pl.Int64}))
    covered = deal_products(active, products)
    rows = profile.select(
        "customer_key",
        "category",
        "usual_product_key",
        "usual_price_cents",
        "p_buy_in_window",
        "brand_cell",
        "volume_tier",
    ).join(covered, on="category", how="inner")
    targets = target_cells(active)
    rows = (
        rows.join(targets, on="deal_id", how="inner")
        .filter(
            (pl.col("t_cell") == "*") | (pl.col("t_cell") == pl.col("brand_cell")),
            (pl.col("t_tier") == "*") | (pl.col("t_tier") == pl.col("volume_tier")),
        )
        .drop("t_cell", "t_tier")
    )
    is_usual = pl.col("product_key") == pl.col("usual_product_key")
    gives = (pl.col("discount_cents") > 0).fill_null(False)
    distance = (pl.col("regular_price_cents") - pl.col("usual_price_cents")).abs().fill_null(0)
    rows = (
        rows.sort(
            "customer_key",
            "deal_id",
            gives,
            is_usual,
            distance,
            "product_key",
            descending=[False, False, True, True, False, False],
        )
        .unique(["customer_key", "deal_id"], keep="first", maintain_order=True)
        .join(
            active.select(
                "deal_id", "manufacturer_id", "funded_share", "max_per_customer", "offer_from", "offer_to", "kind"
            ),
            on="deal_id",
            how="inner",
        )
    )
    offers = rows.select(
        "customer_key",
        pl.lit("deal").alias("kind"),
        "product_key",
        "category",
        "deal_id",
        pl.col("manufacturer_id").alias("funder"),
        pl.col("funded_share").fill_null(1.0),
        "discount_cents",
        pl.col("max_per_customer").fill_null(default_max_uses).alias("max_uses"),
        pl.col("offer_from").alias("valid_from"),
        pl.col("offer_to").alias("valid_to"),
        pl.col("p_buy_in_window").alias("p_buy"),
        "brand_cell",
        "volume_tier",
        pl.format("manufacturer deal {}", "deal_id").alias("reason"),
        unit_margin(margin_share=margin_share).alias("_margin"),
        drop_when(
            (pl.col("regular_price_cents").is_null(), "no price"), (pl.col("discount_cents") <= 0, "no discount")
        ),
    )
    return conform_candidates(offers.with_columns(expected_value(pl.col("_margin"))))
