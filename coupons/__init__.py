"""coupons: pure offer selection (polars frames in, frames out).

Owns turning profiles, customer value, deals and campaign rules into offers per list:
cycle offers, conversion campaigns, manufacturer deals with budgets, household offers,
reward coupons, tips, the hold-out draw and the ranking by expected value.
"""

__all__: list[str] = []
