"""A non-price note on each list: a tip or recipe matched to the list's items.

The content is the ``tips`` table (tip_id, category, title, body; category empty = a general
tip), which the chain edits with ``listwise import tips FILE``; `starter_tips` is the set shipped
as ``coupons/tips.csv``. A list gets a tip of the category of its best-ranked offer that has
one (offers ordered by expected value), else a general tip; when a category has several tips,
the customer_key chooses among them (``customer_key mod count``), so neighbours get variety
and a re-run gets the same tip.
"""

from __future__ import annotations

from importlib import resources

import polars as pl

__all__ = ["starter_tips", "choose_tips", "TIP_SCHEMA"]

TIP_SCHEMA = {"tip_id": pl.Int64, "category": pl.String, "title": pl.String, "body": pl.String}


def starter_tips() -> pl.DataFrame:
    """The shipped starter set: tip_id, category (null = general), title, body."""
    text = resources.files("coupons").joinpath("tips.csv").read_text(encoding="utf-8")
    return pl.read_csv(text.encode(), schema=TIP_SCHEMA)


def _pick(candidates: pl.DataFrame) -> pl.DataFrame:
    """One tip per customer among `candidates` (customer_key, tip_id, _rank), by customer_key mod count."""
    return (
        candidates.sort("customer_key", "_rank", "tip_id")
        .filter(pl.col("_rank") == pl.col("_rank").min().over("customer_key"))
        .filter(pl.int_range(pl.len()).over("customer_key") == pl.col("customer_key") % pl.len().over("customer_key"))
        .select("customer_key", "tip_id")
    )


def choose_tips(offers: pl.DataFrame, customer_keys: pl.Series, tips: pl.DataFrame) -> pl.DataFrame:
    """The tip of each list.

    Parameters
    ----------
    offers
        Selected offers (customer_key, category, expected_value_cents, line_no).
    customer_keys
        Every customer who gets a list (also those without an offer).
    tips
        The content table (tip_id, category, title, body).

    Returns
    -------
    pl.DataFrame
        customer_key, tip_id (null when there is no tip at all), sorted by customer_key.
    """
    everyone = pl.DataFrame({"customer_key": customer_keys.cast(pl.Int64)}).unique().sort("customer_key")
    if tips.height == 0:
        return everyone.with_columns(pl.lit(None, pl.Int64).alias("tip_id"))
    topical = tips.filter(pl.col("category").is_not_null()).select("tip_id", "category")
    # only the offers of a category with a tip can choose one: the rest are never sorted (a batch's
    # millions of offers), and the ranks keep their order (the best offer first, list order on ties)
    ranked = (
        offers.select("customer_key", "category", "expected_value_cents")
        .filter(pl.col("category").is_in(topical["category"].implode()))
        .sort("customer_key", "expected_value_cents", descending=[False, True], maintain_order=True)
        .select("customer_key", "category", pl.int_range(pl.len()).over("customer_key").alias("_rank"))
    )
    matched = _pick(ranked.join(topical, on="category", how="inner"))
    general = tips.filter(pl.col("category").is_null()).select("tip_id")
    rest = everyone.join(matched, on="customer_key", how="anti")
    fallback = (
        _pick(rest.join(general, how="cross").with_columns(pl.lit(0).alias("_rank")))
        if general.height
        else pl.DataFrame(schema={"customer_key": pl.Int64, "tip_id": pl.Int64})
    )
    chosen = pl.concat([matched.cast({"tip_id": pl.Int64}), fallback.cast({"tip_id": pl.Int64})])
    return everyone.join(chosen, on="customer_key", how="left").sort("customer_key")
