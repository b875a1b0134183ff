"""All offers of one period: candidates of every kind, then `coupons.select.selection`.

`plan_offers` returns the selected offers with what was dropped and why, and the funnel per
kind (`coupons.funnel`); `build_offers` only the selected offers. Both read their parameters
from a `coupons.rules.PlanRules` (offer rules, campaigns, the batch's list rules, margin share).

At scale the plan is made in two steps: `shortlist_offers` per group of customers (a batch's
partition: candidates, dedupe, list caps and lengths compare one customer's offers only; what it
dropped is kept as tallies, not rows), then `coupons.select.finish_order` on every shortlist
together (the deal and chain budgets compare customers). The result is `plan_offers`'s offers
(tests/coupons/test_select.py; the batch's partitions in tests/engine/test_stages.py).
"""

from __future__ import annotations

import datetime as dt
from typing import NamedTuple

import polars as pl

from coupons.campaigns import conversion_candidates
from coupons.cycle_offers import cycle_candidates
from coupons.deals import deal_candidates
from coupons.funnel import candidate_tally, drop_tally, offer_funnel
from coupons.household import household_candidates
from coupons.offers import CANDIDATE_SCHEMA, conform_candidates, viable
from coupons.rewards import reward_offers
from coupons.rules import PlanRules
from coupons.select import DROPPED_COLUMNS, selection, shortlist

__all__ = [
    "all_candidates",
    "candidate_offers",
    "build_offers",
    "plan_offers",
    "OfferPlan",
    "Shortlisted",
    "shortlist_offers",
]


class OfferPlan(NamedTuple):
    """offers: `coupons.select.SELECTED_COLUMNS`; dropped: `coupons.select.DROPPED_COLUMNS` (every
    candidate not selected, with its drop_reason); funnel: `coupons.funnel.offer_funnel`."""

    offers: pl.DataFrame
    dropped: pl.DataFrame
    funnel: pl.DataFrame


def all_candidates(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
) -> pl.DataFrame:
    """Candidates of every kind, viable or not (`coupons.offers.CANDIDATE_SCHEMA`: drop_reason null = viable)."""
    o, share, uses = rules.offers, rules.margin_share, rules.batch.max_uses
    frames = [
        cycle_candidates(profile, products, period_start, period_end, o, share, uses),
        conversion_candidates(profile, products, rules.campaigns, period_start, period_end, share, uses, o),
        deal_candidates(profile, products, deals, period_start, period_end, share, o.deal_max_per_customer),
        household_candidates(profile, products, period_start, period_end, o, share, uses),
        conform_candidates(reward_offers(value, period_start, period_end, o, share)),
    ]
    return pl.concat(frames).select(list(CANDIDATE_SCHEMA))


def candidate_offers(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
) -> pl.DataFrame:
    """Viable candidates of every kind for the customers in `profile` and `value` (`OFFER_SCHEMA`)."""
    return viable(all_candidates(profile, value, products, deals, rules, period_start, period_end))


def _treated_candidates(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    treated: pl.Series,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(every candidate of the treated customers, their value rows)."""
    keys = treated.cast(pl.Int64).implode()
    profile = profile.filter(pl.col("customer_key").is_in(keys))
    value = value.filter(pl.col("customer_key").is_in(keys))
    return all_candidates(profile, value, products, deals, rules, period_start, period_end), value


def plan_offers(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    treated: pl.Series,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
    factors: pl.DataFrame | None = None,
) -> OfferPlan:
    """The selected offers of the treated customers, what was dropped and why, and the funnel.

    Parameters
    ----------
    profile, value
        The cycles frames (profile: customer x category; value: one row per customer).
    products, deals
        The catalogue (prices completed: `coupons.prices.complete_prices`) and the ``deals`` table.
    deal_budgets
        deal_id, budget_left_cents: each deal's remaining budget minus what earlier batches committed.
    treated
        customer_key of the customers who get a list.
    rules
        The offer rules, campaigns, list rules and margin share (`coupons.rules.PlanRules`).
    factors
        kind, band, use_factor for the deal and chain budgets (`coupons.budgets.use_factors`;
        None or absent: face value).
    """
    candidates, value = _treated_candidates(profile, value, products, deals, treated, rules, period_start, period_end)
    o, b = rules.offers, rules.batch
    chosen = selection(
        viable(candidates),
        value.select("customer_key", "value_tier"),
        deal_budgets,
        o.list_cap_cents,
        b.max_offers,
        b.chain_budget_cents,
        o.budget_refill_rounds,
        o.campaign_share,
        factors,
    )
    dropped = pl.concat(
        [candidates.filter(pl.col("drop_reason").is_not_null()).select(DROPPED_COLUMNS), chosen.dropped]
    )
    return OfferPlan(chosen.offers, dropped, offer_funnel(candidates, chosen.offers, dropped))


def build_offers(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    treated: pl.Series,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
) -> pl.DataFrame:
    """The selected offers of the treated customers (`coupons.select.SELECTED_COLUMNS`; see `plan_offers`)."""
    return plan_offers(profile, value, products, deals, deal_budgets, treated, rules, period_start, period_end).offers


class Shortlisted(NamedTuple):
    """One group of customers' part of the plan (`shortlist_offers`).

    offers: `coupons.select.shortlist`'s offers (OFFER_SCHEMA + _reserved); candidates: kind, n
    (`coupons.funnel.candidate_tally`); dropped: `coupons.funnel.TALLY_KEYS`, n (every candidate
    dropped while making candidates or shortlisting, counted)."""

    offers: pl.DataFrame
    candidates: pl.DataFrame
    dropped: pl.DataFrame


def shortlist_offers(
    profile: pl.DataFrame,
    value: pl.DataFrame,
    products: pl.DataFrame,
    deals: pl.DataFrame,
    treated: pl.Series,
    rules: PlanRules,
    period_start: dt.date,
    period_end: dt.date,
) -> Shortlisted:
    """Candidates of the treated customers in `profile` / `value` and their shortlists (steps 1-4 of
    `coupons.select.selection`): a pure function of these customers' rows and the catalogue, so any
    grouping of customers gives the same rows (a batch's partitions). See `plan_offers`."""
    candidates, value = _treated_candidates(profile, value, products, deals, treated, rules, period_start, period_end)
    o, b = rules.offers, rules.batch
    short = shortlist(
        viable(candidates),
        value.select("customer_key", "value_tier"),
        o.list_cap_cents,
        b.max_offers,
        o.budget_refill_rounds,
        o.campaign_share,
    )
    dropped = pl.concat([drop_tally(candidates.filter(pl.col("drop_reason").is_not_null())), drop_tally(short.dropped)])
    return Shortlisted(short.offers, candidate_tally(candidates), dropped)
