"""Assemble the lists: candidates of every kind -> at most N offers a list, within budgets.

Order of the steps (each only removes offers, so what an earlier step guaranteed still holds;
`selection` also returns what each step removed, with the step as its drop_reason):

1. **duplicate** — one offer per customer x product and per customer x category: the more
   specific kind wins (conversion, then deal, household, cycle — a campaign is the chain's
   decision, a deal is paid for, a household offer is more specific than a cycle offer), then
   the higher expected value; reward lines have neither product nor category and are kept;
2. **reserved campaign lines** — ``campaign_lines(max_offers, campaign_share)`` lines of each
   list, ``ceil(campaign_share x max_offers)`` and at least 1, go to its campaign (conversion)
   offers first, best expected value first. A campaign is a decision the chain took, and its
   offer often has a small or negative expected value for this period, so it would not earn a
   line on value;
3. **list cap** — the cap of retailer-funded discount per list by value tier
   (`coupons.budgets`). Reserved campaign offers are *exempt* from it, as reward lines are:
   a heavy national-brand buyer's deep conversion offer costs more than a small customer's cap,
   and counting it first would starve either the campaign or every other line. They remain
   inside the chain budget. Campaign offers beyond the reserved lines count like any other;
4. **list length** — at most `max_offers` lines per list: reserved campaign offers first, then
   by expected value;
5. **deal budget** — each deal's remaining budget, charged the offers' expected cost plus a
   safety margin (`coupons.budgets`: the model of use and the margin);
6. **chain budget** — the batch's retailer-funded budget, charged alike, reserved campaign
   offers served first;
7. line numbers 1..n per list by expected value (best first), then product_key.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import polars as pl

from coupons.budgets import apply_chain_budget, apply_deal_budgets, apply_list_caps
from coupons.offers import OFFER_SCHEMA
from coupons.rules import BatchRules, OfferRules

__all__ = [
    "KIND_PRIORITY",
    "dedupe",
    "top_lines",
    "select_offers",
    "selection",
    "shortlist",
    "finish_lists",
    "finish_order",
    "FINISH_COLUMNS",
    "campaign_lines",
    "Selection",
    "SELECTED_COLUMNS",
    "DROPPED_COLUMNS",
]

KIND_PRIORITY = {"conversion": 0, "deal": 1, "household": 2, "cycle": 3, "reward": 4}
SELECTED_COLUMNS = ["customer_key", "line_no", *[c for c in OFFER_SCHEMA if c != "customer_key"]]
DROPPED_COLUMNS = [*OFFER_SCHEMA, "drop_reason"]


class Selection(NamedTuple):
    """The offers of the batch (`SELECTED_COLUMNS`) and the offers the steps removed (`DROPPED_COLUMNS`)."""

    offers: pl.DataFrame
    dropped: pl.DataFrame


def campaign_lines(max_offers: int, campaign_share: float) -> int:
    """Lines of a list reserved for campaign offers: ceil(share x max_offers), at least 1, at most max_offers."""
    if max_offers <= 0:
        return 0
    return min(max_offers, max(1, math.ceil(round(campaign_share * max_offers, 9))))


def _best_first() -> list[pl.Expr]:
    return [
        pl.col("customer_key"),
        pl.col("kind").replace_strict(KIND_PRIORITY, return_dtype=pl.Int32),
        -pl.col("expected_value_cents"),
        pl.col("product_key"),
        pl.col("deal_id"),
    ]


def dedupe(candidates: pl.DataFrame) -> pl.DataFrame:
    """At most one offer per customer x product_key and per customer x category (rewards exempt)."""
    ordered = candidates.sort(_best_first(), nulls_last=True)
    rewards = ordered.filter(pl.col("kind") == "reward")
    items = ordered.filter(pl.col("kind") != "reward")
    items = items.unique(["customer_key", "product_key"], keep="first", maintain_order=True).filter(
        pl.col("category").is_null() | (pl.int_range(pl.len()).over("customer_key", "category") == 0)
    )
    return pl.concat([items, rewards])


def top_lines(offers: pl.DataFrame, max_offers: int, first: str | None = None) -> pl.DataFrame:
    """The best `max_offers` offers of each list: rows where `first` is true, then by expected value."""
    lead = [pl.col(first).not_()] if first else []
    return offers.sort(
        [pl.col("customer_key"), *lead, -pl.col("expected_value_cents"), pl.col("product_key")], nulls_last=True
    ).filter(pl.int_range(pl.len()).over("customer_key") < max_offers)


def select_offers(
    candidates: pl.DataFrame,
    tiers: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    list_caps: dict[str, int],
    max_offers: int,
    chain_budget_cents: int = BatchRules.chain_budget_cents,
    rounds: int = OfferRules.budget_refill_rounds,
    campaign_share: float = OfferRules.campaign_share,
    factors: pl.DataFrame | None = None,
) -> pl.DataFrame:
    """The offers of the batch (`selection(...).offers`)."""
    return selection(
        candidates, tiers, deal_budgets, list_caps, max_offers, chain_budget_cents, rounds, campaign_share, factors
    ).offers


def _removed(before: pl.DataFrame, after: pl.DataFrame, reason: str) -> pl.DataFrame:
    return before.join(after.select("_row"), on="_row", how="anti").with_columns(
        pl.lit(reason, pl.String).alias("drop_reason")
    )


def selection(
    candidates: pl.DataFrame,
    tiers: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    list_caps: dict[str, int],
    max_offers: int,
    chain_budget_cents: int = BatchRules.chain_budget_cents,
    rounds: int = OfferRules.budget_refill_rounds,
    campaign_share: float = OfferRules.campaign_share,
    factors: pl.DataFrame | None = None,
) -> Selection:
    """The offers of the batch, and those each step removed.

    Parameters
    ----------
    candidates
        Viable candidate offers of every kind (`coupons.offers.OFFER_SCHEMA`), of treated
        customers only.
    tiers
        customer_key, value_tier.
    deal_budgets
        deal_id, budget_left_cents (null: unlimited).
    list_caps
        Retailer-funded cap per list by value tier (cents).
    max_offers
        Lines per list, at most.
    chain_budget_cents
        Retailer-funded budget of the batch (0 = no limit).
    campaign_share
        Share of `max_offers` reserved for campaign offers (see `campaign_lines`).
    factors
        kind, band, use_factor: the learnt use factors of the deal and chain budgets
        (`coupons.budgets.use_factors`); None or absent: face value.

    Returns
    -------
    Selection
        offers: `SELECTED_COLUMNS` (customer_key, line_no Int32, then OFFER_SCHEMA), sorted by
        customer_key, line_no. dropped: `DROPPED_COLUMNS`, one row per candidate not selected,
        drop_reason one of 'duplicate', 'list cap', 'list length', 'deal budget', 'chain budget';
        offers + dropped are the candidates, row for row.

    It is `finish_lists` of `shortlist`: the steps 1-4 compare only one customer's offers, so
    customers may be shortlisted in any groups (a batch's partitions) and finished together.
    """
    short = shortlist(candidates, tiers, list_caps, max_offers, rounds, campaign_share)
    done = finish_lists(short.offers, deal_budgets, chain_budget_cents, rounds, factors)
    dropped = pl.concat([short.dropped, done.dropped]).sort("customer_key", "kind", "product_key", nulls_last=True)
    return Selection(done.offers, dropped)


def shortlist(
    candidates: pl.DataFrame,
    tiers: pl.DataFrame,
    list_caps: dict[str, int],
    max_offers: int,
    rounds: int = OfferRules.budget_refill_rounds,
    campaign_share: float = OfferRules.campaign_share,
) -> Selection:
    """Steps 1-4 of `selection` (duplicate, reserved campaign lines, list cap, list length): each
    compares one customer's offers only.

    offers: `OFFER_SCHEMA` plus ``_reserved`` (the campaign's reserved lines), at most `max_offers`
    a customer, sorted by customer_key, reserved first, then expected value (best first),
    product_key; dropped: `DROPPED_COLUMNS`. The shortlists of groups of customers, concatenated
    and sorted by customer_key (stable), are the shortlist of them all.
    """
    reserved = campaign_lines(max_offers, campaign_share)
    frame = candidates.select(list(OFFER_SCHEMA)).with_row_index("_row")
    drops = []
    offers = dedupe(frame)
    drops.append(_removed(frame, offers, "duplicate"))
    campaign = pl.col("kind") == "conversion"
    offers = (
        offers.sort("customer_key", "kind", -pl.col("expected_value_cents"), "_row", nulls_last=True)
        .with_columns((campaign & (pl.int_range(pl.len()).over("customer_key", "kind") < reserved)).alias("_reserved"))
        .sort("_row")
    )
    step = apply_list_caps(offers, tiers, list_caps, rounds, exempt="_reserved")
    drops.append(_removed(offers, step, "list cap"))
    offers = top_lines(step, max_offers, "_reserved")
    drops.append(_removed(step, offers, "list length"))
    dropped = pl.concat([d.select(DROPPED_COLUMNS) for d in drops])
    return Selection(offers.drop("_row"), dropped)


def finish_lists(
    shortlisted: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    chain_budget_cents: int = BatchRules.chain_budget_cents,
    rounds: int = OfferRules.budget_refill_rounds,
    factors: pl.DataFrame | None = None,
) -> Selection:
    """Steps 5-7 of `selection` on every customer's `shortlist` together (the budgets compare
    customers): deal budgets, the chain budget, line numbers. offers: `SELECTED_COLUMNS`;
    dropped: `DROPPED_COLUMNS` ('deal budget', 'chain budget'). See `finish_order`."""
    kept, dropped = finish_order(shortlisted, deal_budgets, chain_budget_cents, rounds, factors)
    offers = shortlisted[kept["_at"]].with_columns(kept["line_no"]).select(SELECTED_COLUMNS)
    return Selection(offers, shortlisted[dropped["_at"]].with_columns(dropped["drop_reason"]).select(DROPPED_COLUMNS))


def finish_order(
    shortlisted: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    chain_budget_cents: int = BatchRules.chain_budget_cents,
    rounds: int = OfferRules.budget_refill_rounds,
    factors: pl.DataFrame | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """`finish_lists` as row positions: it reads only `FINISH_COLUMNS` of `shortlisted` (in
    shortlist order; other columns are ignored) and returns (kept, dropped). kept: ``_at`` (the
    row's position in `shortlisted`, UInt32) and ``line_no`` (Int32), in list order
    (customer_key, line_no); dropped: ``_at`` and ``drop_reason``, in shortlist order.

    Only offers of a deal meet the deal budgets (each deal's greedy fill sees its own offers
    alone), so only those rows are copied for them; with no chain budget nothing else is. A
    batch gathers what it needs of the kept rows itself: the budgets never copy every offer.
    """
    narrow = shortlisted.select(FINISH_COLUMNS).with_row_index("_at")
    of_deals = narrow.filter(pl.col("deal_id").is_not_null())
    held = apply_deal_budgets(of_deals, deal_budgets, rounds, factors)
    over_deals = of_deals.select("_at").filter(~pl.col("_at").is_in(held["_at"].implode()))
    del of_deals, held
    step = narrow.filter(~pl.col("_at").is_in(over_deals["_at"].implode())) if over_deals.height else narrow
    kept = apply_chain_budget(step, chain_budget_cents, rounds, "_reserved", factors)
    over_chain = (
        step.select("_at").filter(~pl.col("_at").is_in(kept["_at"].implode()))
        if kept.height < step.height
        else step.select("_at").clear()
    )
    order = kept.select("_at", "customer_key", "expected_value_cents", "product_key").sort(
        "customer_key",
        "expected_value_cents",
        "product_key",
        descending=[False, True, False],
        nulls_last=True,
        maintain_order=True,
    )
    selected = order.select("_at", (pl.int_range(pl.len()).over("customer_key") + 1).cast(pl.Int32).alias("line_no"))
    dropped = pl.concat(
        [
            over_deals.with_columns(pl.lit("deal budget").alias("drop_reason")),
            over_chain.with_columns(pl.lit("chain budget").alias("drop_reason")),
        ]
    ).sort("_at")
    return selected, dropped


# what the budgets and the list order read of an offer (`finish_order`)
FINISH_COLUMNS = [
    "customer_key",
    "kind",
    "product_key",
    "deal_id",
    "funded_share",
    "discount_cents",
    "max_uses",
    "p_buy",
    "expected_value_cents",
    "_reserved",
]
