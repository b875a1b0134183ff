"""Purchase occasions: the distinct days a customer bought a category, and their gaps.

A purchase occasion is a (customer, category, day) with at least one line of positive
quantity: returns and same-day repeats are not new occasions. Everything downstream
(cycles, brand cells, lifecycle) counts occasions the same way, so it lives here once.

The gaps come from ONE global sort of a packed integer key (customer | category | day)
followed by a diff: about ten times faster than per-group ``unique().sort().diff()``.
"""

from __future__ import annotations

import polars as pl

from cycles.exceptions import InputError

__all__ = ["require_columns", "category_codes", "pair_occasions", "DAY_BITS"]

DAY_BITS = 16  # days since the first day of history: up to 179 years


def require_columns(frame: pl.DataFrame, columns: set[str], name: str) -> None:
    """Raise InputError naming the frame and the missing columns."""
    missing = sorted(columns - set(frame.columns))
    if missing:
        raise InputError(f"{name}: missing column(s) {', '.join(missing)} (has: {', '.join(frame.columns)})")


def category_codes(history: pl.DataFrame) -> pl.DataFrame:
    """Columns: product_key, category, cat_code (UInt32, categories in sorted order).

    Built from the products present in `history` (a group-by over an integer key, cheap
    even at tens of millions of lines), so that later steps sort integers, not strings.
    """
    per_product = history.group_by("product_key").agg(pl.col("category").first())
    cats = per_product.select(pl.col("category").unique().sort()).with_row_index("cat_code")
    return per_product.join(cats, on="category", how="left").sort("product_key")


def _cat_bits(n_categories: int) -> int:
    return max(1, int(n_categories).bit_length())


def pair_occasions(history: pl.DataFrame, codes: pl.DataFrame | None = None) -> pl.DataFrame:
    """Per customer x category: occasion counts and the gaps between occasions.

    Parameters
    ----------
    history
        Line items with at least customer_key, day, product_key, category, quantity.
    codes
        Output of `category_codes` (computed when None).

    Returns
    -------
    polars.DataFrame
        One row per pair, sorted by customer_key, category: customer_key (Int64),
        category (String), purchase_days (UInt32, distinct days with a purchase),
        first_purchase_on, last_purchase_on (Date), n_intervals (UInt32 = purchase_days - 1),
        interval_sum_days (Float64), interval_logsum (Float64, sum of log gaps),
        interval_median_days (Float64, null with fewer than two occasions).
    """
    require_columns(history, {"customer_key", "day", "product_key", "category", "quantity"}, "history")
    if codes is None:
        codes = category_codes(history)
    cat_bits = _cat_bits(codes.height)
    shift_pair = DAY_BITS + cat_bits
    first_day = history.select(pl.col("day").min()).item()
    if first_day is None:
        return _empty()
    lut = codes.select("product_key", "cat_code")
    day_num = (pl.col("day") - pl.lit(first_day)).dt.total_days().cast(pl.Int64)
    keys = (
        history.lazy()
        .filter(pl.col("quantity") > 0)
        .select(pl.col("customer_key"), pl.col("product_key"), day_num.alias("d"))
        .join(lut.lazy(), on="product_key", how="left")
        .select(
            (
                pl.col("customer_key") * (1 << shift_pair)
                + pl.col("cat_code").cast(pl.Int64) * (1 << DAY_BITS)
                + pl.col("d")
            ).alias("key")
        )
        .collect()
    )
    # the one global sort; equal keys are same-day repeats of one occasion
    key = keys["key"].sort()
    new = key.diff().fill_null(1) != 0
    key = key.filter(new)
    pair = key // (1 << DAY_BITS)
    day = key % (1 << DAY_BITS)
    same_pair = pair.diff().fill_null(1) == 0
    gap = pl.Series("gap", day.diff(), dtype=pl.Int64)
    occ = pl.DataFrame({"pair": pair, "d": day, "gap": gap}).with_columns(
        pl.when(same_pair).then(pl.col("gap")).otherwise(None).cast(pl.Float64).alias("gap")
    )
    stats = occ.group_by("pair", maintain_order=True).agg(
        purchase_days=pl.len().cast(pl.UInt32),
        first_d=pl.col("d").first(),
        last_d=pl.col("d").last(),
        interval_sum_days=pl.col("gap").sum(),
        interval_logsum=pl.col("gap").log().sum(),
        interval_median_days=pl.col("gap").median(),
    )
    cats = codes.select("cat_code", "category").unique().sort("cat_code")
    return (
        stats.with_columns(
            (pl.col("pair") // (1 << cat_bits)).alias("customer_key"),
            (pl.col("pair") % (1 << cat_bits)).cast(pl.UInt32).alias("cat_code"),
            (pl.lit(first_day) + pl.duration(days=pl.col("first_d"))).cast(pl.Date).alias("first_purchase_on"),
            (pl.lit(first_day) + pl.duration(days=pl.col("last_d"))).cast(pl.Date).alias("last_purchase_on"),
            (pl.col("purchase_days") - 1).alias("n_intervals"),
        )
        .join(cats, on="cat_code", how="left")
        .select(
            "customer_key",
            "category",
            "purchase_days",
            "first_purchase_on",
            "last_purchase_on",
            "n_intervals",
            "interval_sum_days",
            "interval_logsum",
            "interval_median_days",
        )
        .sort("customer_key", "category")
    )


def _empty() -> pl.DataFrame:
    return pl.DataFrame(
        schema={
            "customer_key": pl.Int64,
            "category": pl.String,
            "purchase_days": pl.UInt32,
            "first_purchase_on": pl.Date,
            "last_purchase_on": pl.Date,
            "n_intervals": pl.UInt32,
            "interval_sum_days": pl.Float64,
            "interval_logsum": pl.Float64,
            "interval_median_days": pl.Float64,
        }
    )
