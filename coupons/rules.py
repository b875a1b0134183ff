"""The rules of the coupons package, each with its default (defined here, once).

* `OfferRules`: depths, floors, household groups, reward coupons, caps and valuation of the
  offers (`coupons.cycle_offers`, `coupons.household`, `coupons.rewards`, `coupons.campaigns`,
  `coupons.select`, `coupons.prices`).
* `Campaign`: one conversion campaign (`coupons.campaigns`); `DEFAULT_CAMPAIGNS` the chain's
  campaigns when it configures none.
* `BatchRules`: who gets a list and what a list may carry (`coupons.qualify`,
  `coupons.holdout`, `coupons.select`).
* `PlanRules`: everything one period's offer plan reads (`coupons.build.plan_offers`).

A leaf module: it imports nothing else of ours. `engine.config` composes these into the settings
file (``[offers]`` is an `OfferRules`, ``[[campaigns]]`` `Campaign` tables, ``[batch]`` a
`BatchRules` plus the engine's own keys); the field's comment is its documentation.
``validate()`` returns the object unchanged or raises `coupons.exceptions.RulesError` naming the
first field out of its range; engine turns that into its own error, naming the section.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from coupons.exceptions import RulesError

__all__ = ["OfferRules", "Campaign", "DEFAULT_CAMPAIGNS", "BatchRules", "PlanRules"]


@dataclass(frozen=True)
class Campaign:
    # category pattern(s), case-insensitive, '*' and '?' wildcards, e.g. "ANALGESIC*"; "dept:HEALTH*" matches
    # every category of a department (required; the default only lets the TOML loader build the class)
    category: str = ""
    name: str = ""  # shown in reasons and the summary; "" = "<category> to <to_brand_type>"
    funder: str = "retailer"  # who pays: 'retailer' or a manufacturer_id
    funded_share: float = 0.0  # share paid by that funder (0 for the retailer's own campaign)
    to_brand_type: str = "store"  # convert towards this brand type
    target_cells: tuple[str, ...] = ("national", "switcher")
    depth_by_tier: dict[str, float] = field(default_factory=lambda: {"high": 0.40, "mid": 0.25, "low": 0.10})

    def validate(self) -> Campaign:
        """This campaign, or `RulesError` naming the first field out of its range."""
        _check(
            [
                ("category", self.category, lambda t: bool(t.strip()), "a category pattern"),
                ("funded_share", self.funded_share, _fraction(), "in [0, 1]"),
                ("to_brand_type", self.to_brand_type, lambda t: t in ("national", "store"), "'national' or 'store'"),
                (
                    "target_cells",
                    self.target_cells,
                    lambda cells: set(cells) <= {"national", "store", "switcher", "unclassified"},
                    "cells among national, store, switcher, unclassified",
                ),
                (
                    "depth_by_tier",
                    self.depth_by_tier,
                    lambda d: set(d) <= {"low", "mid", "high"} and all(0 <= n < 1 for n in d.values()),
                    "depths in [0, 1) for low, mid, high",
                ),
            ]
        )
        return self


DEFAULT_CAMPAIGNS: tuple[Campaign, ...] = (Campaign("ANALGESIC*"),)


@dataclass(frozen=True)
class OfferRules:
    min_p_buy: float = (
        0.40  # cycle offers below this p_buy_in_window are not made (0.40: most are bought, 57 % on the sample)
    )
    cycle_depth: float = 0.10  # discount of a cycle offer, share of shelf price
    household_depth: float = 0.15
    # group -> category patterns (case-insensitive, '*' and '?' wildcards; "dept:NAME" matches a department's
    # categories); `listwise settings check` shows what each matched
    household_groups: dict[str, list[str]] = field(
        default_factory=lambda: {
            "pet": ["DOG FOOD*", "CAT FOOD*"],
            "baby": ["BABY FOOD*", "DIAPER*"],
            "vegetables": ["VEGETABLES*"],
        }
    )
    reward_min_cents: int = 3000  # reward coupons for the most loyal: $30 ...
    reward_max_cents: int = 4000  # ... to $40
    reward_value_tiers: tuple[str, ...] = ("VIP",)
    reward_min_share_of_wallet: float = 0.6
    reward_coupon_cents: int = 1000  # one reward coupon ($10); $30-40 = 3-4 uses of one reward line
    reward_min_spend_cents: int = 5000  # basket spend needed to use a reward coupon ($50)
    household_min_purchase_days: int = 2  # purchase days in a group's categories that reveal the household
    household_heavy_groups: tuple[str, ...] = ("vegetables",)  # groups that also need volume tier 'high'
    deal_max_per_customer: int = 1  # uses of a deal offer when the deal gives no max_per_customer
    budget_refill_rounds: int = 4  # extra greedy passes that fill budget left by a too-costly offer
    campaign_share: float = 0.25  # share of max_offers reserved for campaign (conversion) lines
    # shelf price where the catalogue has none: median per-unit price (amount + discount) of the product's
    # lines in this many days before the period
    price_lookback_days: int = 91
    # unit cost where the catalogue has none: price x (1 - margin share of the brand type); store brands
    # carry the higher margin (private label typically earns 25-35 % more gross margin than national brands)
    margin_share_national: float = 0.25
    margin_share_store: float = 0.35
    # a conversion is worth: expected category units over this horizon x margin gain per unit x the
    # probability that the switch holds, less the retailer's share of the discount
    conversion_horizon_weeks: int = 26
    conversion_hold_probability: float = 0.25
    # cap of retailer-funded discount per list, by value tier
    list_cap_cents: dict[str, int] = field(
        default_factory=lambda: {
            "VIP": 2500,
            "major": 1500,
            "ordinary": 1000,
            "small": 500,
        }
    )

    def validate(self) -> OfferRules:
        """These rules, or `RulesError` naming the first field out of its range."""
        _check(
            [
                ("min_p_buy", self.min_p_buy, _fraction(), "in [0, 1]"),
                ("cycle_depth", self.cycle_depth, _fraction(hi_open=True), "in [0, 1)"),
                ("household_depth", self.household_depth, _fraction(hi_open=True), "in [0, 1)"),
                (
                    "reward_max_cents",
                    self.reward_max_cents,
                    lambda n: n >= self.reward_min_cents >= 0,
                    ">= reward_min_cents >= 0",
                ),
                ("reward_coupon_cents", self.reward_coupon_cents, _positive, ">= 1"),
                ("campaign_share", self.campaign_share, _fraction(), "in [0, 1]"),
                ("price_lookback_days", self.price_lookback_days, _positive, ">= 1"),
                ("margin_share_national", self.margin_share_national, _fraction(hi_open=True), "in [0, 1)"),
                ("margin_share_store", self.margin_share_store, _fraction(hi_open=True), "in [0, 1)"),
                ("conversion_horizon_weeks", self.conversion_horizon_weeks, _positive, ">= 1"),
                ("conversion_hold_probability", self.conversion_hold_probability, _fraction(), "in [0, 1]"),
                ("list_cap_cents", self.list_cap_cents, lambda d: all(n >= 0 for n in d.values()), "amounts >= 0"),
            ]
        )
        return self


@dataclass(frozen=True)
class BatchRules:
    threshold_cents: int = 2500  # average weekly spend needed for a list ($25)
    qualifying_weeks: int = 8  # window over which that average is taken
    holdout_share: float = 0.05  # random share of qualifying customers without a list
    max_offers: int = 20  # offer lines per list, at most
    chain_budget_cents: int = 0  # retailer-funded discount per batch; 0 = no limit
    max_uses: int = 1  # uses of a cycle, conversion or household offer (one per unit)

    def validate(self) -> BatchRules:
        """These rules, or `RulesError` naming the first field out of its range."""
        _check(
            [
                ("threshold_cents", self.threshold_cents, _non_negative, ">= 0"),
                ("qualifying_weeks", self.qualifying_weeks, _positive, ">= 1"),
                ("holdout_share", self.holdout_share, _fraction(hi_open=True), "in [0, 1)"),
                ("max_offers", self.max_offers, _positive, ">= 1"),
                ("chain_budget_cents", self.chain_budget_cents, _non_negative, ">= 0 (0 = no limit)"),
                ("max_uses", self.max_uses, _positive, ">= 1"),
            ]
        )
        return self


@dataclass(frozen=True, kw_only=True)
class PlanRules:
    """What `coupons.build.plan_offers` reads: the offer rules, the campaigns, the batch's list
    rules, and the margin share of a product without a unit cost (also the reward coupons' least
    basket margin). That share is the customer-value setting (``value.margin_share``, owned by
    the value model), so it has no default here: the caller passes it."""

    margin_share: float
    offers: OfferRules = OfferRules()
    campaigns: tuple[Campaign, ...] = DEFAULT_CAMPAIGNS
    batch: BatchRules = BatchRules()


def _positive(n: int) -> bool:
    return n >= 1


def _non_negative(n: int) -> bool:
    return n >= 0


def _fraction(lo_open: bool = False, hi_open: bool = False) -> Callable[[float], bool]:
    def ok(v: float) -> bool:
        return (v > 0 if lo_open else v >= 0) and (v < 1 if hi_open else v <= 1)

    return ok


def _check(rules: Iterable[tuple[str, Any, Callable[[Any], bool], str]]) -> None:
    """Raise `RulesError` for the first (field, value, ok, wanted) whose value is not ok."""
    for name, value, ok, wanted in rules:
        try:
            good = ok(value)
        except TypeError:  # e.g. a string where a number belongs
            good = False
        if not good:
            raise RulesError(name, wanted, value)
