"""coupons: pure offer selection (polars frames in, frames out).

Owns turning profiles, customer value, deals and campaign rules into offers per list:
cycle offers, conversion campaigns, manufacturer deals with budgets, household offers,
reward coupons, tips, the hold-out draw and the ranking by expected value
(`coupons.offers` documents the offer frame and the expected-value formula;
`coupons.select` the order of the selection rules; `coupons.prices` completes a catalogue
without prices or costs; `coupons.funnel` counts what each step dropped and why). Its rules
and their defaults are `coupons.rules`; its errors `coupons.exceptions`.
"""

from coupons.build import OfferPlan, all_candidates, build_offers, candidate_offers, plan_offers
from coupons.funnel import funnel_dict, offer_funnel
from coupons.holdout import assign_groups, holdout_draw
from coupons.offers import CANDIDATE_SCHEMA, DROP_REASONS, OFFER_SCHEMA, empty_offers
from coupons.prices import complete_prices, history_prices
from coupons.qualify import qualifying_customers
from coupons.rules import DEFAULT_CAMPAIGNS, BatchRules, Campaign, OfferRules, PlanRules
from coupons.select import DROPPED_COLUMNS, SELECTED_COLUMNS, select_offers, selection
from coupons.tips import choose_tips, starter_tips

__all__ = [
    "build_offers",
    "candidate_offers",
    "all_candidates",
    "plan_offers",
    "OfferPlan",
    "offer_funnel",
    "funnel_dict",
    "assign_groups",
    "holdout_draw",
    "OFFER_SCHEMA",
    "CANDIDATE_SCHEMA",
    "DROP_REASONS",
    "empty_offers",
    "complete_prices",
    "history_prices",
    "qualifying_customers",
    "SELECTED_COLUMNS",
    "DROPPED_COLUMNS",
    "select_offers",
    "selection",
    "choose_tips",
    "starter_tips",
    "OfferRules",
    "Campaign",
    "DEFAULT_CAMPAIGNS",
    "BatchRules",
    "PlanRules",
]
