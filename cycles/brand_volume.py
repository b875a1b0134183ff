"""Brand loyalty x volume: the nine cells of a category's buyers.

* Brand cell from the store-brand share of units bought (returns excluded):
  ``national`` (share <= national_max), ``store`` (share >= store_min), ``switcher`` between,
  ``unclassified`` with fewer purchase occasions than `min_occasions`.
* Volume tier from the category's own distribution of units per week among its buyers:
  ``low`` up to the first cut quantile, ``mid`` up to the second, ``high`` above.
"""

from __future__ import annotations

import polars as pl

from cycles.occasions import require_columns
from cycles.params import ProfileParams as _P

__all__ = ["brand_cell", "volume_tier", "brand_volume", "usual_products"]


def brand_cell(store_share: pl.Expr, occasions: pl.Expr, national_max: float = _P.national_max_store_share,
               store_min: float = _P.store_min_store_share, min_occasions: int = _P.min_occasions) -> pl.Expr:
    """'national' | 'store' | 'switcher' | 'unclassified' from a share and an occasion count."""
    return (pl.when(occasions < min_occasions).then(pl.lit("unclassified"))
            .when(store_share <= national_max).then(pl.lit("national"))
            .when(store_share >= store_min).then(pl.lit("store"))
            .otherwise(pl.lit("switcher")).alias("brand_cell"))


def volume_tier(units_per_week: pl.Expr, by: str = "category",
                cuts: tuple[float, float] = _P.volume_cuts) -> pl.Expr:
    """'low' | 'mid' | 'high' against the quantiles `cuts` of `units_per_week` within `by`."""
    lo = units_per_week.quantile(cuts[0], interpolation="linear").over(by)
    hi = units_per_week.quantile(cuts[1], interpolation="linear").over(by)
    return (pl.when(units_per_week <= lo).then(pl.lit("low"))
            .when(units_per_week <= hi).then(pl.lit("mid"))
            .otherwise(pl.lit("high")).alias("volume_tier"))


def usual_products(history: pl.DataFrame) -> pl.DataFrame:
    """Per customer x category: the units, store-brand units and the usual product.

    Returns
    -------
    polars.DataFrame
        customer_key, category, units (Float64, net of returns), bought_units (Float64,
        returns excluded), store_units (Float64, store brand, returns excluded),
        usual_product_key (Int64, most units bought; ties to the lowest key),
        usual_price_cents (Int64, its regular price). Sorted by customer_key, category.
    """
    require_columns(history, {"customer_key", "category", "product_key", "brand_type", "quantity",
                              "regular_price_cents"}, "history")
    bought = pl.col("quantity").clip(lower_bound=0)
    # group on integer keys only; a product's category, brand type and price are its own
    attrs = history.group_by("product_key").agg(pl.col("category").first(), pl.col("brand_type").first(),
                                                pl.col("regular_price_cents").first().alias("price"))
    per_product = (history.group_by("customer_key", "product_key")
                   .agg(net=pl.col("quantity").sum(), bought=bought.sum())
                   .join(attrs, on="product_key", how="left")
                   .with_columns(pl.when(pl.col("brand_type") == "store").then(pl.col("bought")).otherwise(0.0)
                                 .alias("store")))
    return (per_product.sort("customer_key", "category", "bought", "product_key",
                             descending=[False, False, True, False])
            .group_by("customer_key", "category", maintain_order=True)
            .agg(units=pl.col("net").sum(), bought_units=pl.col("bought").sum(),
                 store_units=pl.col("store").sum(),
                 usual_product_key=pl.col("product_key").first(),
                 usual_price_cents=pl.col("price").first().cast(pl.Int64)))


def brand_volume(units: pl.DataFrame, cycles: pl.DataFrame, national_max: float = _P.national_max_store_share,
                 store_min: float = _P.store_min_store_share, min_occasions: int = _P.min_occasions,
                 cuts: tuple[float, float] = _P.volume_cuts,
                 prior_occasions: float = _P.brand_prior_occasions) -> pl.DataFrame:
    """Brand cell and volume tier per customer x category.

    Parameters
    ----------
    units
        `usual_products(history)`.
    cycles
        Per pair: customer_key, category, purchase_days, mean_interval_days (the output of
        `PurchaseCycleEstimator.predict`).

    Returns
    -------
    polars.DataFrame
        customer_key, category, store_share (Float64, estimated: the pair's store-brand
        units plus `prior_occasions` purchases at the customer's store share over all
        categories, over its units plus those), units_per_week (Float64: net units a
        purchase x purchases a week, 7 / mean_interval_days), brand_cell, volume_tier.
        Sorted by customer_key, category.

    Notes
    -----
    The share borrows strength from the customer's other categories because households
    lean one way across the store (measured on the generator's planted preferences: 89 %
    of classified pairs right with 2 prior occasions, 87 % with the raw share). Units per week use the model's cycle rather than units / weeks of history, so a pair
    adopted mid-history, or bought once, is not ranked low for the weeks it did not exist.
    """
    customer_share = (pl.col("store_units").sum() / pl.col("bought_units").sum()).over("customer_key").fill_nan(0.0)
    pseudo = prior_occasions * pl.col("bought_units") / pl.col("purchase_days").cast(pl.Float64)
    share = (pl.when(pl.col("bought_units") > 0)
             .then((pl.col("store_units") + pseudo * customer_share) / (pl.col("bought_units") + pseudo))
             .otherwise(0.0))
    per_purchase = pl.col("units").clip(lower_bound=0) / pl.col("purchase_days").cast(pl.Float64)
    upw = per_purchase * 7.0 / pl.col("mean_interval_days")
    return (cycles.select("customer_key", "category", "purchase_days", "mean_interval_days")
            .join(units, on=["customer_key", "category"], how="left")
            .with_columns(share.alias("store_share"), upw.fill_null(0.0).alias("units_per_week"))
            .with_columns(brand_cell(pl.col("store_share"), pl.col("purchase_days"), national_max, store_min,
                                     min_occasions),
                          volume_tier(pl.col("units_per_week"), "category", cuts))
            .select("customer_key", "category", "store_share", "units_per_week", "brand_cell", "volume_tier")
            .sort("customer_key", "category"))
