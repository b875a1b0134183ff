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
  the catalogue has no unit cost (the ``value.margin_share`` setting, passed in). For a
  conversion offer it is the margin of the offered product minus that of the customer's usual
  product (what the switch changes), over the switch's horizon (below); for a reward coupon, ``margin_share * min_spend_cents``
  (the least contribution of the basket it needs).
* ``(1 - funded_share) * discount_cents``: the part of the discount the retailer pays; a
  manufacturer-funded deal costs the retailer nothing, so it ranks above an equal
  retailer-funded offer.

Conversion offers value the switch, not the one unit sold (`coupons.campaigns`):

    switch_value = units_per_week * conversion_horizon_weeks
                   * (offered unit margin - usual product's unit margin)
                   * conversion_hold_probability
    EV = p_buy * (switch_value - (1 - funded_share) * discount_cents)

``units_per_week`` is the customer's category volume from the profile, so the heaviest buyers'
switches are worth the most; the hold probability is the chance that a customer who used the
offer keeps buying the store brand over the horizon (`coupons.rules.OfferRules`). With the
default margin shares by brand type (store 35 %, national 25 % of the shelf price, see
`coupons.prices`) a store product priced at 72 % of the national one earns the same unit margin,
so the switch value is small and can be negative: a campaign's lines are reserved on the list
(`coupons.select`) rather than earned by EV.

A reward line's EV is multiplied by its ``max_uses`` (each coupon is one use). The formula
deliberately ignores incremental sales (the customer might buy anyway): ranking by it keeps
cheap, likely, well-funded offers when a budget is tight.
"""

from __future__ import annotations

import polars as pl

__all__ = [
    "OFFER_SCHEMA",
    "OFFER_KINDS",
    "CANDIDATE_SCHEMA",
    "DROP_REASONS",
    "empty_offers",
    "unit_margin",
    "expected_value",
    "retailer_cost",
    "face_value",
    "conform",
    "conform_candidates",
    "viable",
    "drop_when",
]

OFFER_KINDS = ("cycle", "conversion", "deal", "household", "reward")

OFFER_SCHEMA: dict[str, pl.DataType] = {
    "customer_key": pl.Int64,
    "kind": pl.String,
    "product_key": pl.Int64,
    "category": pl.String,
    "deal_id": pl.String,
    "funder": pl.String,
    "funded_share": pl.Float64,
    "discount_cents": pl.Int64,
    "min_spend_cents": pl.Int64,
    "max_uses": pl.Int32,
    "valid_from": pl.Date,
    "valid_to": pl.Date,
    "expected_on": pl.Date,
    "p_buy": pl.Float64,
    "expected_value_cents": pl.Int64,
    "brand_cell": pl.String,
    "volume_tier": pl.String,
    "reason": pl.String,
}


# Why a candidate offer is not on a list, in the order the steps drop them. Making candidates:
# below the probability floor (cycle), no store-brand alternative in the category (conversion),
# no price for the product (any item offer), no discount (the depth rounds to 0 cents, or a deal
# gives nothing on the product). Selecting (`coupons.select`): duplicate (the same product or
# category as a better offer), list cap, list length (max_offers), deal budget, chain budget.
# Offers of negative expected value are not dropped (campaigns often are negative this period).
DROP_REASONS = (
    "below probability floor",
    "no store-brand alternative",
    "no price",
    "no discount",
    "duplicate",
    "list cap",
    "list length",
    "deal budget",
    "chain budget",
)

# A candidate of any kind: an offer, and why it was dropped while making candidates (null: viable).
CANDIDATE_SCHEMA: dict[str, pl.DataType] = {**OFFER_SCHEMA, "drop_reason": pl.String}


def drop_when(*rules: tuple[pl.Expr, str]) -> pl.Expr:
    """drop_reason: the reason of the first rule whose condition is true, else null (viable)."""
    expr = pl.lit(None, pl.String)
    for condition, reason in reversed(rules):
        expr = pl.when(condition.fill_null(False)).then(pl.lit(reason)).otherwise(expr)
    return expr.alias("drop_reason")


def conform_candidates(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` cast to `CANDIDATE_SCHEMA` (missing columns null: a frame without drop_reason is all viable)."""
    return frame.select(
        [(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in CANDIDATE_SCHEMA.items()]
    )


def viable(candidates: pl.DataFrame) -> pl.DataFrame:
    """The candidates no rule dropped, as offers (`OFFER_SCHEMA`)."""
    return candidates.filter(pl.col("drop_reason").is_null()).select(list(OFFER_SCHEMA))


def empty_offers() -> pl.DataFrame:
    """A frame of no offers with the columns of `OFFER_SCHEMA`."""
    return pl.DataFrame(schema=OFFER_SCHEMA)


def conform(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` cast to `OFFER_SCHEMA`, its columns in order (missing ones null)."""
    return frame.select(
        [(pl.col(c) if c in frame.columns else pl.lit(None)).cast(t).alias(c) for c, t in OFFER_SCHEMA.items()]
    )


def unit_margin(price: str = "regular_price_cents", cost: str = "unit_cost_cents", *, margin_share: float) -> pl.Expr:
    """Cents of margin on one unit: price - unit cost, or `margin_share` x price without a cost."""
    return (
        pl.when(pl.col(cost).is_not_null()).then(pl.col(price) - pl.col(cost)).otherwise(pl.col(price) * margin_share)
    ).cast(pl.Float64)


def expected_value(margin_effect: pl.Expr, p_buy: str = "p_buy") -> pl.Expr:
    """EV in cents for one use (see the module docstring); expects discount_cents, funded_share."""
    retailer_part = (1.0 - pl.col("funded_share")) * pl.col("discount_cents")
    return (pl.col(p_buy) * (margin_effect - retailer_part)).round().cast(pl.Int64).alias("expected_value_cents")


def face_value() -> pl.Expr:
    """Most this offer can ever give away: discount per use x uses (cents)."""
    return (pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)).alias("face_value_cents")


def retailer_cost() -> pl.Expr:
    """The retailer-funded part of the face value, rounded up to the cent so budgets hold."""
    return (
        (
            (pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)).cast(pl.Float64)
            * (1.0 - pl.col("funded_share"))
        )
        .round(6)
        .ceil()
        .cast(pl.Int64)
        .alias("retailer_cost_cents")
    )
