"""Reward coupons: $30-40 of basket coupons for the most valuable, most loyal customers.

Eligible: value tier in `OfferRules.reward_value_tiers` (default VIP) and share of wallet at
least `reward_min_share_of_wallet`. The amount grows with the customer's CLV rank among the
eligible, from `reward_min_cents` (lowest) to `reward_max_cents` (highest), in whole coupons of
`reward_coupon_cents`; it is one offer line with no product and no category, ``discount_cents``
= one coupon, ``max_uses`` = the number of coupons, each use needing a basket of
`reward_min_spend_cents`. EV (see `coupons.offers`): p_alive x uses x (margin_share x min
spend - coupon).
"""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.offers import conform
from coupons.rules import OfferRules

__all__ = ["reward_offers", "with_reward_uses"]


def reward_offers(
    value: pl.DataFrame, period_start: dt.date, period_end: dt.date, rules: OfferRules, margin_share: float
) -> pl.DataFrame:
    """Candidate reward offers, one per eligible customer.

    Parameters
    ----------
    value
        The customer value frame (customer_key, value_tier, share_of_wallet, clv_cents, p_alive),
        with ``reward_uses`` (`with_reward_uses` of every customer's frame) when it is a part of it.

    Returns
    -------
    pl.DataFrame
        Columns of `coupons.offers.OFFER_SCHEMA`, kind 'reward', product_key and category null.
    """
    coupon = rules.reward_coupon_cents
    if "reward_uses" not in value.columns:
        value = with_reward_uses(value, rules)
    eligible = value.filter(pl.col("reward_uses").is_not_null())
    uses = pl.col("reward_uses")
    p_alive = pl.col("p_alive").fill_null(1.0)
    offers = eligible.select(
        "customer_key",
        pl.lit("reward").alias("kind"),
        pl.lit("retailer").alias("funder"),
        pl.lit(0.0).alias("funded_share"),
        pl.lit(coupon).alias("discount_cents"),
        pl.lit(rules.reward_min_spend_cents).alias("min_spend_cents"),
        uses.alias("max_uses"),
        pl.lit(period_start).alias("valid_from"),
        pl.lit(period_end - dt.timedelta(days=1)).alias("valid_to"),
        p_alive.alias("p_buy"),
        (p_alive * uses * (margin_share * rules.reward_min_spend_cents - coupon))
        .round()
        .cast(pl.Int64)
        .alias("expected_value_cents"),
        pl.format(
            "reward: {} customer, {}% of wallet", "value_tier", (pl.col("share_of_wallet") * 100).round().cast(pl.Int64)
        ).alias("reason"),
    )
    return conform(offers)


def with_reward_uses(value: pl.DataFrame, rules: OfferRules) -> pl.DataFrame:
    """`value` with ``reward_uses`` (Int32): the coupons of an eligible customer, null for the others.

    The count ranks a customer's CLV among every eligible customer of the frame, so it is computed
    on the whole value frame; a part of it then keeps its customers' counts (a batch's partitions).
    """
    coupon = rules.reward_coupon_cents
    lo = -(-rules.reward_min_cents // coupon)  # whole coupons, at least the minimum
    hi = max(lo, rules.reward_max_cents // coupon)
    eligible = pl.col("value_tier").is_in(list(rules.reward_value_tiers)) & (
        pl.col("share_of_wallet") >= rules.reward_min_share_of_wallet
    )
    ranked = value.filter(eligible)
    rank = (pl.col("clv_cents").rank("ordinal") - 1) / pl.max_horizontal(pl.len() - 1, pl.lit(1))
    uses = ranked.select("customer_key", (pl.lit(lo) + (rank * (hi - lo)).round()).cast(pl.Int32).alias("reward_uses"))
    return value.join(uses, on="customer_key", how="left", maintain_order="left")
