"""Purchase history as polars frames: how far back to read, the reads, and the same frames from files.

`history_start` is the one lookback rule of every command that reads history. The reads are
`engine.db.Gateway`'s (`Gateway.history` is the one read of history a command makes: the
Parquet part files of `engine.history_store` and the checkout's lines in `basket_lines`);
`read_history`, `read_products`, `read_customers` do one read by URL.
`history_from_files` builds identical frames from a generator's output directory so that
models and benchmarks can run without a database. Personal data never enters these frames.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from engine.db import CUSTOMER_SCHEMA, HISTORY_COLUMNS, LINE_SCHEMA, PRODUCT_SCHEMA, Gateway, with_products
from engine.values import cents, iso_date, local_timestamp, truthy

if TYPE_CHECKING:
    from engine.config import Settings

__all__ = [
    "read_history",
    "read_products",
    "read_customers",
    "history_from_files",
    "history_start",
    "HISTORY_COLUMNS",
    "PRODUCT_COLUMNS",
    "CUSTOMER_COLUMNS",
]

PRODUCT_COLUMNS = list(PRODUCT_SCHEMA)
CUSTOMER_COLUMNS = list(CUSTOMER_SCHEMA)
_LINE_COLUMNS = list(LINE_SCHEMA)


def history_start(settings: Settings, as_of: dt.date) -> dt.date:
    """The first day of history a command reads to compute as of `as_of` (the one lookback rule).

    The longest window of any stage that reads history: the profile's
    (`cycles.lookback_weeks`), the customer value's (`value.rfm_lookback_weeks`), the
    qualifying spend's (`batch.qualifying_weeks`) and the shelf prices taken from history
    (`offers.price_lookback_days`). Each stage keeps to its own window within it, so what is
    read beyond one stage's window changes none of its results.
    """
    weeks = max(settings.cycles.lookback_weeks, settings.value.rfm_lookback_weeks, settings.batch.qualifying_weeks)
    return min(as_of - dt.timedelta(weeks=weeks), as_of - dt.timedelta(days=settings.offers.price_lookback_days))


# The readers by URL, for a caller that reads once; a command reads through its `engine.db.Gateway`.


def read_products(url: str) -> pl.DataFrame:
    """`Gateway.products` of `url`: PRODUCT_COLUMNS (money in cents)."""
    with Gateway(url) as db:
        return db.products()


def read_customers(url: str) -> pl.DataFrame:
    """`Gateway.customers` of `url` (no personal data: only whether a card exists)."""
    with Gateway(url) as db:
        return db.customers()


def read_history(
    url: str, end: dt.date, start: dt.date | None = None, products: pl.DataFrame | None = None
) -> pl.DataFrame:
    """`Gateway.history` of `url`: card holders' line items with day in [start, end), HISTORY_COLUMNS."""
    with Gateway(url) as db:
        return db.history(end, start, products)


def _read_any(paths: list[Path]) -> pl.DataFrame:
    frames = [
        pl.read_parquet(p).cast(pl.String) if p.suffix == ".parquet" else pl.read_csv(p, infer_schema=False)
        for p in paths
    ]
    return pl.concat(frames, how="diagonal")


def history_from_files(data_dir: str | Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history, products, customers) from a generator's output directory, no database.

    Customer and product keys are assigned as a fresh database would (file order); basket
    keys follow (basket_id, store_id) order (the baskets' unique index's, in which an import of one
    file numbers them). History holds every card holder's line item.
    """
    data_dir = Path(data_dir)
    raw_products = pl.read_csv(data_dir / "products.csv", infer_schema=False)
    products = raw_products.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("product_key"),
        "sku",
        "description",
        "category",
        "department",
        "brand",
        "brand_type",
        "manufacturer_id",
        "size",
        cents("regular_price").alias("regular_price_cents"),
        cents("unit_cost").alias("unit_cost_cents"),
    )
    raw_customers = pl.read_csv(data_dir / "customers.csv", infer_schema=False)
    customers = raw_customers.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("customer_key"),
        "customer_id",
        pl.col("household_size").cast(pl.Int64),
        truthy("opted_out"),
        iso_date(pl.col("joined_on"), strict=False),
        pl.col("card_number").is_not_null().alias("has_card"),
    )
    parts = sorted((data_dir / "transactions").glob("*.parquet")) or sorted((data_dir / "transactions").glob("*.csv"))
    if not parts:
        parts = [data_dir / "transactions.csv"]
    tx = _read_any(parts)
    tx = tx.with_columns(
        pl.struct("basket_id", "store_id").rank("dense").cast(pl.Int64).alias("basket_key"),
        local_timestamp("timestamp").dt.date().alias("day"),
        pl.col("quantity").cast(pl.Float64),
        cents("amount").alias("amount_cents"),
        cents("discount").fill_null(0).alias("discount_cents"),
    ).filter(pl.col("customer_id").is_not_null())
    lines = (
        tx.join(customers.select("customer_id", "customer_key"), on="customer_id", how="inner")
        .join(products.select("sku", "product_key"), on="sku", how="inner")
        .select(_LINE_COLUMNS)
    )
    return with_products(lines, products), products, customers
