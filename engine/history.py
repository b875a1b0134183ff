"""Purchase history as polars frames: the batch's bulk read, and the same frames from files.

`read_history` is the one scan of `basket_lines` the batch makes (Arrow through ADBC);
`history_from_files` builds identical frames from a generator's output directory so that
models and benchmarks can run without a database. Personal data never enters these frames.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from engine.db import bulk_session
from engine.ingest import _cents, _timestamp

__all__ = ["read_history", "read_products", "read_customers", "history_from_files",
           "HISTORY_COLUMNS", "PRODUCT_COLUMNS", "CUSTOMER_COLUMNS"]

PRODUCT_COLUMNS = ["product_key", "sku", "description", "category", "department", "brand", "brand_type",
                   "manufacturer_id", "size", "regular_price_cents", "unit_cost_cents"]
CUSTOMER_COLUMNS = ["customer_key", "customer_id", "household_size", "opted_out", "joined_on", "has_card"]
_LINE_COLUMNS = ["customer_key", "basket_key", "day", "product_key", "quantity", "amount_cents", "discount_cents"]
HISTORY_COLUMNS = [*_LINE_COLUMNS[:4], "sku", "category", "department", "brand", "brand_type", "manufacturer_id",
                   "quantity", "amount_cents", "discount_cents", "regular_price_cents", "unit_cost_cents"]

_PRODUCT_SCHEMA = {"product_key": pl.Int64, "sku": pl.String, "description": pl.String, "category": pl.String,
                   "department": pl.String, "brand": pl.String, "brand_type": pl.String,
                   "manufacturer_id": pl.String, "size": pl.String, "regular_price_cents": pl.Int64,
                   "unit_cost_cents": pl.Int64}


def _with_products(lines: pl.DataFrame, products: pl.DataFrame) -> pl.DataFrame:
    attrs = products.select("product_key", "sku", "category", "department", "brand", "brand_type",
                            "manufacturer_id", "regular_price_cents", "unit_cost_cents")
    return (lines.join(attrs, on="product_key", how="left")
            .select(HISTORY_COLUMNS).sort("customer_key", "day", "basket_key"))


_CUSTOMER_SCHEMA = {"customer_key": pl.Int64, "customer_id": pl.String, "household_size": pl.Int64,
                    "opted_out": pl.Boolean, "joined_on": pl.Date, "has_card": pl.Boolean}
_LINE_SCHEMA = {"customer_key": pl.Int64, "basket_key": pl.Int64, "day": pl.Date, "product_key": pl.Int64,
                "quantity": pl.Float64, "amount_cents": pl.Int64, "discount_cents": pl.Int64}


def read_products(url: str) -> pl.DataFrame:
    """Columns: PRODUCT_COLUMNS (money in cents)."""
    with bulk_session(url, write=False) as db:
        return db.read(f"SELECT {', '.join(PRODUCT_COLUMNS)} FROM products ORDER BY product_key", _PRODUCT_SCHEMA)


def read_customers(url: str) -> pl.DataFrame:
    """Columns: customer_key, customer_id, household_size, opted_out (bool), joined_on, has_card (bool).

    No names, addresses, card numbers or e-mails: only whether a card exists.
    """
    with bulk_session(url, write=False) as db:
        return db.read("SELECT customer_key, customer_id, household_size, opted_out, joined_on, "
                       "CASE WHEN card_number IS NULL THEN 0 ELSE 1 END AS has_card "
                       "FROM customers ORDER BY customer_key", _CUSTOMER_SCHEMA)


def read_history(url: str, end: dt.date, start: dt.date | None = None,
                 products: pl.DataFrame | None = None) -> pl.DataFrame:
    """Line items of card holders' baskets (not voided) with day in [start, end).

    Columns: HISTORY_COLUMNS — customer_key, basket_key, day (Date), product_key, sku,
    category, department, brand, brand_type, manufacturer_id, quantity (Float64, negative =
    return), amount_cents, discount_cents, regular_price_cents, unit_cost_cents. Sorted by
    customer_key, day, basket_key.
    """
    where = [f"l.day < '{end.isoformat()}'", "l.customer_key IS NOT NULL"]
    if start:
        where.append(f"l.day >= '{start.isoformat()}'")
    sql = (f"SELECT {', '.join('l.' + c for c in _LINE_COLUMNS)} FROM basket_lines l "
           f"WHERE {' AND '.join(where)} "
           "AND l.basket_key NOT IN (SELECT basket_key FROM baskets WHERE voided = 1)")
    with bulk_session(url, write=False) as db:
        lines = db.read(sql, _LINE_SCHEMA)
    return _with_products(lines, products if products is not None else read_products(url))


def _read_any(paths: list[Path]) -> pl.DataFrame:
    frames = [pl.read_parquet(p).cast(pl.String) if p.suffix == ".parquet"
              else pl.read_csv(p, infer_schema=False) for p in paths]
    return pl.concat(frames, how="diagonal")


def history_from_files(data_dir: str | Path) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history, products, customers) from a generator's output directory, no database.

    Customer and product keys are assigned as a fresh database would (file order); basket
    keys follow (store_id, basket_id) order. History holds every card holder's line item.
    """
    data_dir = Path(data_dir)
    raw_products = pl.read_csv(data_dir / "products.csv", infer_schema=False)
    products = raw_products.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("product_key"), "sku", "description", "category",
        "department", "brand", "brand_type", "manufacturer_id", "size",
        _cents("regular_price").alias("regular_price_cents"), _cents("unit_cost").alias("unit_cost_cents"))
    raw_customers = pl.read_csv(data_dir / "customers.csv", infer_schema=False)
    customers = raw_customers.select(
        pl.int_range(1, pl.len() + 1, dtype=pl.Int64).alias("customer_key"), "customer_id",
        pl.col("household_size").cast(pl.Int64),
        pl.col("opted_out").fill_null("false").str.to_lowercase().is_in(["true", "1", "yes", "t", "y"]),
        pl.col("joined_on").str.to_date("%Y-%m-%d", strict=False),
        pl.col("card_number").is_not_null().alias("has_card"))
    parts = sorted((data_dir / "transactions").glob("*.parquet")) or sorted((data_dir / "transactions").glob("*.csv"))
    if not parts:
        parts = [data_dir / "transactions.csv"]
    tx = _read_any(parts)
    tx = tx.with_columns(
        pl.struct("store_id", "basket_id").rank("dense").cast(pl.Int64).alias("basket_key"),
        _timestamp("timestamp").dt.date().alias("day"),
        pl.col("quantity").cast(pl.Float64), _cents("amount").alias("amount_cents"),
        _cents("discount").fill_null(0).alias("discount_cents"),
    ).filter(pl.col("customer_id").is_not_null())
    lines = (tx.join(customers.select("customer_id", "customer_key"), on="customer_id", how="inner")
             .join(products.select("sku", "product_key"), on="sku", how="inner")
             .select(_LINE_COLUMNS))
    return _with_products(lines, products), products, customers
