"""Assemble the lists: candidates of every kind -> at most N offers a list, within budgets.

Order of the steps (each only removes offers, so what an earlier step guaranteed still holds):

1. one offer per customer x product and per customer x category: the more specific kind
   wins (conversion, then deal, household, cycle — a campaign is the chain's decision, a deal
   is paid for, a household offer is more specific than a cycle offer), then the higher
   expected value; reward lines have neither product nor category and are kept;
2. the cap of retailer-funded discount per list by value tier (`coupons.budgets`);
3. at most `max_offers` lines per list;

   in steps 2 and 3 campaign (conversion) offers are served first, then the others by
   expected value: a campaign is a decision the chain took, and its offer often has a negative
   expected value for this period (a deep discount on a product of lower unit margin);
4. each deal's remaining budget;
5. the chain budget of the batch;
6. line numbers 1..n per list by expected value (best first), then product_key.
"""

from __future__ import annotations

import polars as pl

from coupons.budgets import apply_chain_budget, apply_deal_budgets, apply_list_caps
from coupons.offers import OFFER_SCHEMA

__all__ = ["KIND_PRIORITY", "dedupe", "top_lines", "select_offers", "SELECTED_COLUMNS"]

KIND_PRIORITY = {"conversion": 0, "deal": 1, "household": 2, "cycle": 3, "reward": 4}
SELECTED_COLUMNS = ["customer_key", "line_no", *[c for c in OFFER_SCHEMA if c != "customer_key"]]


def _best_first() -> list[pl.Expr]:
    return [pl.col("customer_key"), pl.col("kind").replace_strict(KIND_PRIORITY, return_dtype=pl.Int32),
            -pl.col("expected_value_cents"), pl.col("product_key"), pl.col("deal_id")]


def dedupe(candidates: pl.DataFrame) -> pl.DataFrame:
    """At most one offer per customer x product_key and per customer x category (rewards exempt)."""
    ordered = candidates.sort(_best_first(), nulls_last=True)
    rewards = ordered.filter(pl.col("kind") == "reward")
    items = ordered.filter(pl.col("kind") != "reward")
    items = (items.unique(["customer_key", "product_key"], keep="first", maintain_order=True)
             .filter(pl.col("category").is_null()
                     | (pl.int_range(pl.len()).over("customer_key", "category") == 0)))
    return pl.concat([items, rewards])


def top_lines(offers: pl.DataFrame, max_offers: int, first: str | None = None) -> pl.DataFrame:
    """The best `max_offers` offers of each list: rows where `first` is true, then by expected value."""
    lead = [pl.col(first).not_()] if first else []
    return (offers.sort([pl.col("customer_key"), *lead, -pl.col("expected_value_cents"), pl.col("product_key")],
                        nulls_last=True)
            .filter(pl.int_range(pl.len()).over("customer_key") < max_offers))


def select_offers(candidates: pl.DataFrame, tiers: pl.DataFrame, deal_budgets: pl.DataFrame,
                  list_caps: dict[str, int], max_offers: int, chain_budget_cents: int = 0,
                  rounds: int = 4) -> pl.DataFrame:
    """The offers of the batch.

    Parameters
    ----------
    candidates
        Candidate offers of every kind (`coupons.offers.OFFER_SCHEMA`), of treated customers only.
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

    Returns
    -------
    pl.DataFrame
        `SELECTED_COLUMNS` (customer_key, line_no Int32, then OFFER_SCHEMA), sorted by
        customer_key, line_no.
    """
    offers = dedupe(candidates).with_columns((pl.col("kind") == "conversion").alias("_campaign"))
    offers = apply_list_caps(offers, tiers, list_caps, rounds, "_campaign")
    offers = top_lines(offers, max_offers, "_campaign").drop("_campaign")
    offers = apply_deal_budgets(offers, deal_budgets, rounds)
    offers = apply_chain_budget(offers, chain_budget_cents, rounds)
    offers = offers.sort("customer_key", "expected_value_cents", "product_key", descending=[False, True, False],
                         nulls_last=True)
    return (offers.with_columns((pl.int_range(pl.len()).over("customer_key") + 1).cast(pl.Int32).alias("line_no"))
            .select(SELECTED_COLUMNS))
