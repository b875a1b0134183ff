"""The offer frame every coupons/ module returns, and its expected value.

Candidate offers (before selection) and selected offers share the columns of
`OFFER_SCHEMA`: ``customer_key`` plus the columns of the ``offers`` table except
``offer_id``, ``list_id`` and ``line_no`` (`coupons.select` adds ``line_no``).

Expected value
--------------
Offers are ranked, within a list and across the batch, by their expected contribution to the
retailer in cents, for one use:

    EV = p_buy * (margin_effect - (1 - funded_share) * discount_cents)

* ``p_buy``: the probability that the customer buys in the offer's category during the
  period (the profile's ``p_buy_in_window``); for a reward coupon, ``p_alive``.
* ``margin_effect``: the unit margin the line brings when the offer is used,
  ``regular_price_cents - unit_cost_cents``, or ``margin_share * regular_price_cents`` where
  the catalogue has no unit cost (`engine.config.ValueSettings.margin_share`). For a
  conversion offer it is the margin of the offered product minus that of the customer's usual
  product (what the switch changes); for a reward coupon, ``margin_share * min_spend_cents``
  (the least contribution of the basket it needs).
* ``(1 - funded_share) * discount_cents``: the part of the discount the retailer pays; a
  manufacturer-funded deal costs the retailer nothing, so it ranks above an equal
  retailer-funded offer.

A reward line's EV is multiplied by its ``max_uses`` (each coupon is one use). The formula
deliberately ignores incremental sales (the customer might buy anyway): ranking by it keeps
cheap, likely, well-funded offers when a budget is tight.
"""

from __future__ import annotations

import polars as pl

__all__ = ["OFFER_SCHEMA", "OFFER_KINDS", "empty_offers", "unit_margin", "expected_value", "retailer_cost",
           "face_value", "conform"]

OFFER_KINDS = ("cycle", "conversion", "deal", "household", "reward")

OFFER_SCHEMA: dict[str, pl.DataType] = {
    "customer_key": pl.Int64, "kind": pl.String, "product_key": pl.Int64, "category": pl.String,
    "deal_id": pl.String, "funder": pl.String, "funded_share": pl.Float64, "discount_cents": pl.Int64,
    "min_spend_cents": pl.Int64, "max_uses": pl.Int32, "valid_from": pl.Date, "valid_to": pl.Date,
    "expected_on": pl.Date, "p_buy": pl.Float64, "expected_value_cents": pl.Int64, "brand_cell": pl.String,
    "volume_tier": pl.String, "reason": pl.String,
}


def empty_offers() -> pl.DataFrame:
    """A frame of no offers with the columns of `OFFER_SCHEMA`."""
    return pl.DataFrame(schema=OFFER_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` cast to `OFFER_SCHEMA`, its columns in order (missing ones null)."""
    return frame.select([
        (pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in OFFER_SCHEMA.items()])


def unit_margin(price: str = "regular_price_cents", cost: str = "unit_cost_cents",
                margin_share: float = 0.25) -> pl.Expr:
    """Cents of margin on one unit: price - unit cost, or `margin_share` x price without a cost."""
    return (pl.when(pl.col(cost).is_not_null()).then(pl.col(price) - pl.col(cost))
            .otherwise(pl.col(price) * margin_share)).cast(pl.Float64)


def expected_value(margin_effect: pl.Expr, p_buy: str = "p_buy") -> pl.Expr:
    """EV in cents for one use (see the module docstring); expects discount_cents, funded_share."""
    retailer_part = (1.0 - pl.col("funded_share")) * pl.col("discount_cents")
    return (pl.col(p_buy) * (margin_effect - retailer_part)).round().cast(pl.Int64).alias("expected_value_cents")


def face_value() -> pl.Expr:
    """Most this offer can ever give away: discount per use x uses (cents)."""
    return (pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)).alias("face_value_cents")


def retailer_cost() -> pl.Expr:
    """The retailer-funded part of the face value, rounded up to the cent so budgets hold."""
    return ((pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)).cast(pl.Float64)
            * (1.0 - pl.col("funded_share"))).round(6).ceil().cast(pl.Int64).alias("retailer_cost_cents")
