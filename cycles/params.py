"""The parameters of the cycles package, each with its default (defined here, once).

`ProfileParams` parametrises the profile frame (`cycles.profile.customer_profile`: purchase
cycles, brand cells, volume tiers, the ranker's window and lookback); `ValueParams` the customer
value frame (`cycles.value.customer_value`). The functions and estimators of cycles take these
objects, or default their scalar arguments to these fields, so a default never drifts between
two places.

`engine.config` composes them into the settings file: ``[cycles]`` is a `ProfileParams` (plus
the engine's own keys), ``[value]`` a `ValueParams`; the field's comment is its documentation.
``validate()`` returns the object unchanged or raises `cycles.exceptions.ParamsError` naming
the first field out of its range; engine turns that into its own error, naming the section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from cycles.exceptions import ParamsError

__all__ = ["ProfileParams", "ValueParams"]


@dataclass(frozen=True)
class ProfileParams:
    lookback_weeks: int = 52  # history the profile reads
    window_days: int = 14  # default window of p_buy_in_window
    min_occasions: int = 2  # fewer purchase days: brand cell 'unclassified'
    national_max_store_share: float = 0.20  # store-brand share of units <= this: 'national'
    store_min_store_share: float = 0.80  # store-brand share of units >= this: 'store'
    volume_cuts: tuple[float, float] = (1 / 3, 2 / 3)  # quantiles of units/week: low | mid | high
    brand_prior_occasions: float = 2.0  # pseudo-purchases at the customer's overall store share in a pair's share

    def validate(self) -> ProfileParams:
        """This object, or `ParamsError` naming the first field out of its range."""
        _check(
            [
                ("lookback_weeks", self.lookback_weeks, _positive, ">= 1"),
                ("window_days", self.window_days, _positive, ">= 1"),
                ("min_occasions", self.min_occasions, _positive, ">= 1"),
                ("national_max_store_share", self.national_max_store_share, _fraction(), "in [0, 1]"),
                (
                    "store_min_store_share",
                    self.store_min_store_share,
                    lambda s: self.national_max_store_share < s <= 1,
                    "in (national_max_store_share, 1]",
                ),
                (
                    "volume_cuts",
                    self.volume_cuts,
                    lambda q: len(q) == 2 and 0 < q[0] < q[1] < 1,
                    "two increasing quantiles strictly between 0 and 1",
                ),
            ]
        )
        return self


@dataclass(frozen=True)
class ValueParams:
    rfm_lookback_weeks: int = 52
    decline_months: int = 3  # consecutive falling months that raise a decline warning
    lapsed_days: int = 60  # no visit for this long: 'lapsed'
    new_days: int = 56  # first visit within this: 'new'
    annual_discount_rate: float = 0.10  # for CLV
    clv_years: float = 3.0  # CLV horizon
    margin_share: float = 0.25  # contribution share of spend (CLV, reward coupons' least basket margin)
    abc_cuts: tuple[float, float] = (0.75, 0.95)  # cumulative sales share closing class A, then B
    vip_sales_share: float = 0.30  # value tier VIP: the top customers bringing this share of sales
    # weekly grocery budget in cents by household size (1..6+), for share of wallet
    weekly_budget_cents: tuple[int, ...] = (9000, 15000, 19000, 23000, 27000, 31000)

    def validate(self) -> ValueParams:
        """This object, or `ParamsError` naming the first field out of its range."""
        _check(
            [
                ("margin_share", self.margin_share, _fraction(hi_open=True), "in [0, 1)"),
                (
                    "abc_cuts",
                    self.abc_cuts,
                    lambda q: len(q) == 2 and 0 < q[0] < q[1] <= 1,
                    "two increasing cumulative shares in (0, 1]",
                ),
                ("vip_sales_share", self.vip_sales_share, _fraction(lo_open=True), "in (0, 1]"),
                (
                    "weekly_budget_cents",
                    self.weekly_budget_cents,
                    lambda t: len(t) >= 1 and all(n > 0 for n in t),
                    "a non-empty list of positive amounts",
                ),
            ]
        )
        return self


def _positive(n: int) -> bool:
    return n >= 1


def _fraction(lo_open: bool = False, hi_open: bool = False) -> Callable[[float], bool]:
    def ok(v: float) -> bool:
        return (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)

    return ok


def _check(rules: Iterable[tuple[str, Any, Callable[[Any], bool], str]]) -> None:
    """Raise `ParamsError` for the first (field, value, ok, wanted) whose value is not ok."""
    for name, value, ok, wanted in rules:
        try:
            good = ok(value)
        except TypeError:  # e.g. a string where a number belongs
            good = False
        if not good:
            raise ParamsError(name, wanted, value)
