"""All offers of one period: candidates of every kind, then `coupons.select.select_offers`."""

from __future__ import annotations

import datetime as dt

import polars as pl

from coupons.campaigns import conversion_offers
from coupons.cycle_offers import cycle_offers
from coupons.deals import deal_offers
from coupons.household import household_offers
from coupons.offers import OFFER_SCHEMA
from coupons.rewards import reward_offers
from coupons.select import select_offers
from engine.config import Settings

__all__ = ["candidate_offers", "build_offers"]


def candidate_offers(profile: pl.DataFrame, value: pl.DataFrame, products: pl.DataFrame, deals: pl.DataFrame,
                     settings: Settings, period_start: dt.date, period_end: dt.date) -> pl.DataFrame:
    """Candidates of every kind for the customers in `profile` and `value` (`OFFER_SCHEMA`)."""
    o, share, uses = settings.offers, settings.value.margin_share, settings.batch.max_uses
    frames = [
        cycle_offers(profile, products, period_start, period_end, o, share, uses),
        conversion_offers(profile, products, settings.campaigns, period_start, period_end, share, uses),
        deal_offers(profile, products, deals, period_start, period_end, o.deal_max_per_customer, share),
        household_offers(profile, products, period_start, period_end, o, share, uses),
        reward_offers(value, period_start, period_end, o, share),
    ]
    return pl.concat(frames).select(list(OFFER_SCHEMA))


def build_offers(profile: pl.DataFrame, value: pl.DataFrame, products: pl.DataFrame, deals: pl.DataFrame,
                 deal_budgets: pl.DataFrame, treated: pl.Series, settings: Settings, period_start: dt.date,
                 period_end: dt.date) -> pl.DataFrame:
    """The selected offers of the treated customers (`coupons.select.SELECTED_COLUMNS`).

    Parameters
    ----------
    profile, value
        The cycles frames (profile: customer x category; value: one row per customer).
    products, deals
        The catalogue and the ``deals`` table.
    deal_budgets
        deal_id, budget_left_cents: each deal's budget minus what earlier batches committed.
    treated
        customer_key of the customers who get a list.
    """
    treated = treated.cast(pl.Int64)
    profile = profile.filter(pl.col("customer_key").is_in(treated.implode()))
    value = value.filter(pl.col("customer_key").is_in(treated.implode()))
    candidates = candidate_offers(profile, value, products, deals, settings, period_start, period_end)
    return select_offers(candidates, value.select("customer_key", "value_tier"), deal_budgets,
                         settings.offers.list_cap_cents, settings.batch.max_offers,
                         settings.batch.chain_budget_cents, settings.offers.budget_refill_rounds)
