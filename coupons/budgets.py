"""Budgets: keep the best offers (by expected value) that fit each budget.

Three budgets, each a cap in cents on a cost of the offers it covers:

* per deal — the deal's remaining ``budget_cents`` (what earlier batches committed is
  subtracted by the caller) covers the *face value* of its offers, ``discount_cents x
  max_uses``: the most they can ever give away, so redemptions can never exceed the budget
  whatever share the manufacturer funds;
* per list — `OfferSettings.list_cap_cents` by the customer's value tier covers the
  retailer-funded part of the face value, ``ceil(discount x max_uses x (1 - funded_share))``
  (a tier not in the table gets the smallest cap); reward coupons are outside this cap (they
  are the loyalty programme's, sized by `coupons.rewards`) but inside the chain budget, and so
  are the campaign offers on a list's reserved campaign lines (`coupons.select`);
* per batch — `BatchSettings.chain_budget_cents` (0 = no limit) covers the retailer-funded
  face value of every offer of the batch.

`within_budget` is a greedy fill, vectorised: rows sorted by expected value (best first) within
their group, a cumulative sum of cost, keep the prefix that fits; then up to `rounds` refill
passes over the rows left out whose own cost still fits the remainder (so one costly offer does
not block cheaper ones behind it). Each pass only adds rows whose running total fits, so the
kept cost of a group never exceeds its budget.
"""

from __future__ import annotations

import polars as pl

from coupons.offers import face_value, retailer_cost

__all__ = ["within_budget", "apply_list_caps", "apply_deal_budgets", "apply_chain_budget"]


def within_budget(frame: pl.DataFrame, cost: str, budget: str, by: list[str] | None = None,
                  rounds: int = 4, first: str | None = None) -> pl.DataFrame:
    """The rows of `frame` kept by a greedy fill of each group's budget, in their original order.

    Parameters
    ----------
    frame
        Rows with expected_value_cents, `cost` (Int64 >= 0) and `budget` (Int64, the same for
        every row of a group; null = no limit).
    cost, budget
        Column names.
    by
        Group columns (None: one group, the whole frame).
    rounds
        Refill passes after the first.
    first
        A boolean column: its true rows are served before the others (then expected value).
    """
    by = list(by or [])
    lead = [pl.col(first).not_()] if first else []
    f = (frame.with_row_index("_i")
         .sort([*by, *lead, -pl.col("expected_value_cents"), "_i"])
         .with_columns((pl.col(budget).is_null() | (pl.col(cost) <= 0)).alias("_keep"),
                       pl.col(budget).fill_null(0).cast(pl.Int64).alias("_left")))

    def per_group(e: pl.Expr) -> pl.Expr:
        return e.over(by) if by else e

    for _ in range(rounds + 1):
        candidate = ~pl.col("_keep") & (pl.col(cost) <= pl.col("_left"))
        running = per_group(pl.when(candidate).then(pl.col(cost)).otherwise(0).cum_sum())
        f = f.with_columns((candidate & (running <= pl.col("_left"))).alias("_new"))
        if not f["_new"].any():
            break
        spent = per_group(pl.when(pl.col("_new")).then(pl.col(cost)).otherwise(0).sum())
        f = f.with_columns((pl.col("_keep") | pl.col("_new")).alias("_keep"), (pl.col("_left") - spent).alias("_left"))
    return f.filter("_keep").sort("_i").drop("_i", "_keep", "_left", "_new", strict=False)


def apply_list_caps(offers: pl.DataFrame, tiers: pl.DataFrame, caps: dict[str, int], rounds: int = 4,
                    first: str | None = None, exempt: str | None = None) -> pl.DataFrame:
    """Offers within each list's cap of retailer-funded face value by value tier.

    `tiers`: customer_key, value_tier. Reward offers are not counted, nor the rows where the
    boolean column `exempt` is true. `first`: see `within_budget`.
    """
    smallest = min(caps.values()) if caps else None
    cap = pl.col("value_tier").replace_strict(caps, default=smallest, return_dtype=pl.Int64)
    outside = (pl.col("kind") == "reward") | (pl.col(exempt).fill_null(False) if exempt else pl.lit(False))
    f = (offers.join(tiers.select("customer_key", pl.col("value_tier")), on="customer_key", how="left")
         .with_columns(retailer_cost(),
                       pl.when(outside).then(None).otherwise(cap).alias("_cap")))
    kept = within_budget(f, "retailer_cost_cents", "_cap", ["customer_key"], rounds, first)
    return kept.drop("value_tier", "retailer_cost_cents", "_cap")


def apply_deal_budgets(offers: pl.DataFrame, deal_budgets: pl.DataFrame, rounds: int = 4) -> pl.DataFrame:
    """Offers within each deal's remaining budget (face value); `deal_budgets`: deal_id, budget_left_cents.

    A deal without a budget (null) is unlimited; offers of no deal are untouched.
    """
    f = (offers.join(deal_budgets.select("deal_id", "budget_left_cents"), on="deal_id", how="left")
         .with_columns(face_value(),
                       pl.when(pl.col("deal_id").is_null()).then(None)
                       .otherwise(pl.col("budget_left_cents").clip(lower_bound=0)).alias("_budget")))
    kept = within_budget(f, "face_value_cents", "_budget", ["deal_id"], rounds)
    return kept.drop("budget_left_cents", "face_value_cents", "_budget")


def apply_chain_budget(offers: pl.DataFrame, chain_budget_cents: int, rounds: int = 4,
                       first: str | None = None) -> pl.DataFrame:
    """Offers within the batch's budget of retailer-funded face value (0 = no limit); `first`: see `within_budget`."""
    if chain_budget_cents <= 0:
        return offers
    f = offers.with_columns(retailer_cost(), pl.lit(chain_budget_cents, pl.Int64).alias("_budget"))
    return within_budget(f, "retailer_cost_cents", "_budget", None, rounds, first).drop("retailer_cost_cents",
                                                                                       "_budget")
