"""coupons: pure offer selection (polars frames in, frames out).

Owns turning profiles, customer value, deals and campaign rules into offers per list:
cycle offers, conversion campaigns, manufacturer deals with budgets, household offers,
reward coupons, tips, the hold-out draw and the ranking by expected value
(`coupons.offers` documents the offer frame and the expected-value formula;
`coupons.select` the order of the selection rules).
"""

from coupons.build import build_offers, candidate_offers
from coupons.holdout import assign_groups, holdout_draw
from coupons.offers import OFFER_SCHEMA, empty_offers
from coupons.qualify import qualifying_customers
from coupons.select import SELECTED_COLUMNS, select_offers
from coupons.tips import choose_tips, starter_tips

__all__ = ["build_offers", "candidate_offers", "assign_groups", "holdout_draw", "OFFER_SCHEMA", "empty_offers",
           "qualifying_customers", "SELECTED_COLUMNS", "select_offers", "choose_tips", "starter_tips"]
