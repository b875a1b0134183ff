"""Import a chain's files: validate whole files, convert money to cents, load or refuse.

Contract (DESIGN.md, "Import files"): CSV (UTF-8, header, comma) or Parquet with the same
column names; money in dollars with up to two decimals, held as integer cents; ISO dates;
timestamps without a zone are store-local. Every bad value is reported as
``file:row: column 'x': reason (got 'value')`` — row is the CSV line number (the header is
line 1) or, for Parquet, the 1-based row — and a file with any error imports nothing.

Each file is validated as a whole with polars expressions, then written in one database
transaction: dimension files (stores, customers, products, deals, tips) are upserted by
their key, so a re-import of the same file changes nothing; transactions add only baskets
whose (store_id, basket_id) is not yet present, through the Arrow bulk path (ADBC).
"""

from __future__ import annotations

import hashlib
import io
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterable

import polars as pl
import sqlalchemy as sa

from engine.db import allocate_keys, bulk_session, connect, read_frame, require_schema, utc_now
from engine.errors import InputError

__all__ = ["import_files", "import_file", "read_table", "KINDS", "MAX_REPORTED_ERRORS"]

MAX_REPORTED_ERRORS = 20
_ROW = "__row"

# kind -> (required columns, optional columns)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stores": (("store_id",), ("name", "address", "city", "state", "postal_code")),
    "customers": (("customer_id",), ("card_number", "first_name", "last_name", "address_line1", "address_line2",
                                     "city", "state", "postal_code", "email", "household_size", "opted_out",
                                     "joined_on")),
    "products": (("sku", "category", "brand_type"), ("description", "department", "brand", "manufacturer_id",
                                                     "manufacturer_name", "size", "regular_price", "unit_cost")),
    "transactions": (("basket_id", "store_id", "timestamp", "sku", "quantity", "amount"),
                     ("customer_id", "discount")),
    "deals": (("deal_id", "manufacturer_id", "kind", "value", "starts_on", "ends_on"),
              ("sku", "category", "brand", "funded_share", "budget", "max_per_customer", "target_cells")),
    "tips": (("tip_id", "title", "body"), ("category",)),
}

_MONEY = r"^-?[0-9]+(\.[0-9]{1,2})?$"
_TRUE = {"true", "t", "yes", "y", "1"}
_FALSE = {"false", "f", "no", "n", "0", ""}


@dataclass
class _Checked:
    """A file's frame (all columns as text, plus its row numbers) and the checks on it.

    Checks are collected with `flag` and evaluated together in one pass over the frame
    (`raise_if_any`); only a check that fails is looked at row by row.
    """

    name: str
    frame: pl.DataFrame
    checks: list[tuple[pl.Expr, str, str]] = field(default_factory=list)

    def flag(self, bad: pl.Expr, column: str, reason: str) -> None:
        """Every row where `bad` holds is an error in `column`."""
        self.checks.append((bad.fill_null(False), column, reason))

    def require_values(self, *columns: str) -> None:
        for column in columns:
            self.flag(pl.col(column).is_null() | (pl.col(column) == ""), column, "required value missing")

    def errors(self) -> list[tuple[int, str, str, str]]:
        """(row, column, reason, value) of every failed check, at most MAX_REPORTED_ERRORS each."""
        if not self.checks:
            return []
        counts = self.frame.select(
            [bad.sum().alias(str(i)) for i, (bad, _, _) in enumerate(self.checks)]).row(0)
        found = []
        for (bad, column, reason), n in zip(self.checks, counts):
            if not n:
                continue
            hits = self.frame.filter(bad).select(_ROW, pl.col(column).cast(pl.String).fill_null(""))
            found.extend((row, column, reason, value)
                         for row, value in hits.head(MAX_REPORTED_ERRORS).iter_rows())
            found.extend([(2**62, column, reason, "")] * (n - min(n, MAX_REPORTED_ERRORS)))
        return found

    def raise_if_any(self) -> None:
        errors = self.errors()
        self.checks = []
        if not errors:
            return
        shown = sorted(e for e in errors if e[0] < 2**62)[:MAX_REPORTED_ERRORS]
        lines = [f"{self.name}:{row}: column '{col}': {reason} (got '{value}')" for row, col, reason, value in shown]
        if len(errors) > len(shown):
            lines.append(f"{self.name}: {len(errors)} errors in all; nothing was imported from this file")
        else:
            lines.append(f"{self.name}: nothing was imported from this file")
        raise InputError("\n".join(lines))


# ---------------------------------------------------------------- reading

def _expand(paths: Iterable[Path]) -> list[Path]:
    files: list[Path] = []
    for path in map(Path, paths):
        if path.is_dir():
            files.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in {".csv", ".parquet"}))
        elif path.exists():
            files.append(path)
        else:
            raise InputError(f"{path}: file not found")
    if not files:
        raise InputError("no CSV or Parquet files given")
    return files


def _utf8_error(name: str, data: bytes, exc: UnicodeDecodeError) -> InputError:
    line_start = data.rfind(b"\n", 0, exc.start) + 1
    line_no = data.count(b"\n", 0, exc.start) + 1
    header = data[: data.find(b"\n")].decode("utf-8", "replace").strip().split(",")
    index = data.count(b",", line_start, exc.start)
    column = header[index] if index < len(header) else f"#{index + 1}"
    bad = data[exc.start: exc.start + 4]
    return InputError(f"{name}:{line_no}: column '{column}': not valid UTF-8 (got '{bad!r}')\n"
                      f"{name}: nothing was imported from this file")


def read_table(path: Path, kind: str) -> _Checked:
    """A file as text columns with row numbers; refuses non-UTF-8 bytes and missing columns."""
    required, optional = KINDS[kind]
    name = path.name
    if path.suffix.lower() == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:  # noqa: BLE001 - polars raises several types for bad files
            raise InputError(f"{name}:1: not a readable Parquet file ({exc})") from exc
        first_row = 1
    else:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _utf8_error(name, data, exc) from exc
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        try:
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise InputError(f"{name}: not a readable CSV file ({exc})") from exc
        first_row = 2
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(f"{name}:1: column '{missing[0]}': required column missing "
                         f"(got '{', '.join(frame.columns)}')\n{name}: nothing was imported from this file")
    keep = [c for c in (*required, *optional) if c in frame.columns]
    frame = frame.select(
        pl.int_range(first_row, first_row + pl.len(), dtype=pl.Int64).alias(_ROW),
        *[pl.col(c).cast(pl.String).str.strip_chars().replace("", None).alias(c) for c in keep],  # "" = missing
    ).with_columns([pl.lit(None, pl.String).alias(c) for c in optional if c not in frame.columns])
    return _Checked(name, frame)


# ---------------------------------------------------------------- value parsers (expressions)

def _money_ok(column: str) -> pl.Expr:
    return pl.col(column).is_null() | pl.col(column).str.contains(_MONEY)


def _cents(column: str) -> pl.Expr:
    """Dollars text ('3.49', '-2', '0.5') to integer cents, exactly (no float on the way).

    Through Decimal(18, 2), which is exact for text that passed `_money_ok` (at most two
    decimals); measured 12x faster than splitting the text at the point.
    """
    return (pl.col(column).cast(pl.Decimal(18, 2)) * 100).cast(pl.Int64).alias(column)


def _date(column: str) -> pl.Expr:
    return pl.col(column).str.slice(0, 10).str.to_date("%Y-%m-%d", strict=False)


def _date_ok(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (
        pl.col(column).str.contains(r"^\d{4}-\d{2}-\d{2}( 00:00:00(\.0+)?)?$") & _date(column).is_not_null())


def _timestamp(column: str) -> pl.Expr:
    text = pl.col(column).str.replace(" ", "T")
    return pl.coalesce(
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us"),
        text.str.to_datetime("%Y-%m-%dT%H:%M", strict=False, time_unit="us"),
    )


def _number(column: str, dtype: pl.DataType = pl.Float64) -> pl.Expr:
    return pl.col(column).cast(dtype, strict=False)


def _bool(column: str) -> pl.Expr:
    return pl.col(column).fill_null("").str.to_lowercase().is_in(_TRUE)


def _bool_ok(column: str) -> pl.Expr:
    return pl.col(column).fill_null("").str.to_lowercase().is_in(_TRUE | _FALSE)


def _duplicates(checked: _Checked, *keys: str) -> None:
    checked.flag(pl.struct(keys).is_duplicated() & ~pl.struct(keys).is_first_distinct(), keys[-1],
                 f"duplicate {'+'.join(keys)} in this file")


def _unknown(checked: _Checked, column: str, known: pl.Series, what: str) -> None:
    checked.flag(pl.col(column).is_not_null() & ~pl.col(column).is_in(known.implode()), column, f"unknown {what}")


# ---------------------------------------------------------------- per kind

def _upsert(conn: sa.Connection, table: str, key: str, frame: pl.DataFrame) -> None:
    """INSERT .. ON CONFLICT (key) DO UPDATE — the same SQL on SQLite and PostgreSQL."""
    if frame.height == 0:
        return
    cols = frame.columns
    updates = ", ".join(f"{c} = excluded.{c}" for c in cols if c != key and not c.endswith("_key"))
    action = f"DO UPDATE SET {updates}" if updates else "DO NOTHING"
    sql = sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
                  f"ON CONFLICT ({key}) {action}")
    conn.execute(sql, frame.to_dicts())


def _assign_keys(conn: sa.Connection, frame: pl.DataFrame, natural: str, key: str, table: str) -> pl.DataFrame:
    """Keep the key of rows already in `table`; allocate new keys for the others."""
    existing = read_frame(conn, f"SELECT {natural}, {key} FROM {table}",
                          schema={natural: pl.String, key: pl.Int64})
    frame = frame.join(existing, on=natural, how="left")
    new = frame[key].is_null()
    n_new = int(new.sum())
    if n_new:
        first = allocate_keys(conn, table, n_new)
        frame = frame.with_columns(
            pl.when(new).then(pl.lit(first - 1) + new.cum_sum()).otherwise(pl.col(key)).alias(key))
    return frame


def _load_stores(conn: sa.Connection, checked: _Checked) -> int:
    checked.require_values("store_id")
    _duplicates(checked, "store_id")
    checked.raise_if_any()
    _upsert(conn, "stores", "store_id", checked.frame.drop(_ROW))
    return checked.frame.height


def _load_customers(conn: sa.Connection, checked: _Checked) -> int:
    f = checked.frame
    checked.require_values("customer_id")
    _duplicates(checked, "customer_id")
    checked.flag(pl.col("card_number").is_not_null() & ~pl.col("card_number").str.contains(r"^[0-9]{8,19}$"),
                 "card_number", "card number must be 8 to 19 digits")
    checked.flag(pl.col("card_number").is_not_null() & pl.col("card_number").is_duplicated(), "card_number",
                 "duplicate card_number in this file")
    hs = _number("household_size", pl.Int64)
    checked.flag(pl.col("household_size").is_not_null() & (hs.is_null() | (hs < 1) | (hs > 20)),
                 "household_size", "must be a whole number from 1 to 20")
    checked.flag(~_bool_ok("opted_out"), "opted_out", "must be true or false")
    checked.flag(~_date_ok("joined_on"), "joined_on", "not an ISO date (YYYY-MM-DD)")
    taken = read_frame(conn, "SELECT card_number, customer_id AS owner FROM customers WHERE card_number IS NOT NULL",
                       schema={"card_number": pl.String, "owner": pl.String})
    clash = f.join(taken, on="card_number", how="inner").filter(pl.col("owner") != pl.col("customer_id"))
    checked.flag(pl.col(_ROW).is_in(clash[_ROW].implode()), "card_number", "card_number belongs to another customer")
    checked.raise_if_any()
    rows = f.drop(_ROW).with_columns(
        hs.alias("household_size"), _bool("opted_out").cast(pl.Int64).alias("opted_out"), _date("joined_on"))
    rows = _assign_keys(conn, rows, "customer_id", "customer_key", "customers")
    _upsert(conn, "customers", "customer_id", rows)
    return f.height


def _load_products(conn: sa.Connection, checked: _Checked) -> int:
    f = checked.frame
    checked.require_values("sku", "category", "brand_type")
    _duplicates(checked, "sku")
    checked.flag(pl.col("brand_type").is_not_null() & ~pl.col("brand_type").str.to_lowercase().is_in(
        ["national", "store"]), "brand_type", "must be 'national' or 'store'")
    for money in ("regular_price", "unit_cost"):
        checked.flag(~_money_ok(money), money, "not an amount in dollars with up to two decimals")
        checked.flag(_money_ok(money) & pl.col(money).str.starts_with("-"), money, "must not be negative")
    checked.flag(pl.col("manufacturer_name").is_not_null() & pl.col("manufacturer_id").is_null(),
                 "manufacturer_id", "required when manufacturer_name is given")
    checked.raise_if_any()
    makers = (f.filter(pl.col("manufacturer_id").is_not_null())
              .group_by("manufacturer_id").agg(pl.col("manufacturer_name").drop_nulls().first().alias("name"))
              .sort("manufacturer_id"))
    _upsert(conn, "manufacturers", "manufacturer_id", makers)
    rows = f.select(
        "sku", "description", "category", "department", "brand",
        pl.col("brand_type").str.to_lowercase(), "manufacturer_id", "size",
        _cents("regular_price").alias("regular_price_cents"), _cents("unit_cost").alias("unit_cost_cents"),
    )
    rows = _assign_keys(conn, rows, "sku", "product_key", "products")
    _upsert(conn, "products", "sku", rows)
    return f.height


def _load_deals(conn: sa.Connection, checked: _Checked) -> int:
    f = checked.frame
    checked.require_values("deal_id", "manufacturer_id", "kind", "value", "starts_on", "ends_on")
    _duplicates(checked, "deal_id")
    makers = read_frame(conn, "SELECT manufacturer_id FROM manufacturers", schema={"manufacturer_id": pl.String})
    _unknown(checked, "manufacturer_id", makers.to_series(), "manufacturer (import its products first)")
    skus = read_frame(conn, "SELECT sku FROM products", schema={"sku": pl.String}).to_series()
    _unknown(checked, "sku", skus, "sku")
    checked.flag(pl.col("kind").is_not_null() & ~pl.col("kind").is_in(["amount_off", "percent_off", "price"]),
                 "kind", "must be amount_off, percent_off or price")
    pct = _number("value")
    checked.flag((pl.col("kind") != "percent_off") & ~_money_ok("value"), "value",
                 "not an amount in dollars with up to two decimals")
    checked.flag((pl.col("kind") == "percent_off") & (pct.is_null() | (pct <= 0) | (pct > 100)), "value",
                 "percent_off value must be a percentage in (0, 100]")
    checked.flag(_money_ok("value") & pl.col("value").str.starts_with("-"), "value", "must not be negative")
    for column in ("starts_on", "ends_on"):
        checked.flag(~_date_ok(column), column, "not an ISO date (YYYY-MM-DD)")
    checked.flag(_date_ok("starts_on") & _date_ok("ends_on") & (_date("ends_on") < _date("starts_on")),
                 "ends_on", "ends before starts_on")
    share = _number("funded_share")
    checked.flag(pl.col("funded_share").is_not_null() & (share.is_null() | (share < 0) | (share > 1)),
                 "funded_share", "must be a number from 0 to 1")
    checked.flag(~_money_ok("budget") | pl.col("budget").fill_null("").str.starts_with("-"), "budget",
                 "not a non-negative amount in dollars")
    limit = _number("max_per_customer", pl.Int64)
    checked.flag(pl.col("max_per_customer").is_not_null() & (limit.is_null() | (limit < 1)), "max_per_customer",
                 "must be a whole number >= 1")
    checked.flag(pl.col("sku").is_null() & pl.col("category").is_null() & pl.col("brand").is_null(), "sku",
                 "a deal needs a sku, a category or a brand")
    checked.raise_if_any()
    is_pct = pl.col("kind") == "percent_off"
    rows = f.select(
        "deal_id", "manufacturer_id", "sku", "category", "brand", "kind",
        pl.when(is_pct).then(None).otherwise(_cents("value")).alias("value_cents"),
        pl.when(is_pct).then((pct * 100).round().cast(pl.Int64)).otherwise(None).alias("percent_bp"),
        share.fill_null(1.0).alias("funded_share"), _date("starts_on"), _date("ends_on"),
        _cents("budget").alias("budget_cents"), limit.alias("max_per_customer"), "target_cells",
    )
    _upsert(conn, "deals", "deal_id", rows)
    return f.height


def _load_tips(conn: sa.Connection, checked: _Checked) -> int:
    checked.require_values("tip_id", "title", "body")
    checked.flag(_number("tip_id", pl.Int64).is_null(), "tip_id", "must be a whole number")
    _duplicates(checked, "tip_id")
    checked.raise_if_any()
    rows = checked.frame.select(_number("tip_id", pl.Int64), "category", "title", "body")
    _upsert(conn, "tips", "tip_id", rows)
    return rows.height


@dataclass(frozen=True)
class _References:
    """What transactions may refer to, read once per import."""

    stores: pl.Series
    products: pl.DataFrame      # sku, product_key
    customers: pl.DataFrame     # customer_id, customer_key

    @classmethod
    def read(cls, engine: sa.Engine) -> "_References":
        with engine.connect() as conn:   # closed before any bulk session opens (see engine.db)
            return cls(
                read_frame(conn, "SELECT store_id FROM stores", schema={"store_id": pl.String}).to_series(),
                read_frame(conn, "SELECT sku, product_key FROM products",
                           schema={"sku": pl.String, "product_key": pl.Int64}),
                read_frame(conn, "SELECT customer_id, customer_key FROM customers",
                           schema={"customer_id": pl.String, "customer_key": pl.Int64}))


def _prepare_transactions(checked: _Checked, refs: _References) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate a transactions file; (lines, baskets) ready to write. Pure: no database."""
    checked.frame = checked.frame.with_columns(_timestamp("timestamp").alias("__ts"))   # parsed once
    f = checked.frame
    checked.require_values("basket_id", "store_id", "timestamp", "sku", "quantity", "amount")
    _unknown(checked, "store_id", refs.stores, "store (import stores first)")
    _unknown(checked, "sku", refs.products["sku"], "sku (import products first)")
    _unknown(checked, "customer_id", refs.customers["customer_id"], "customer (import customers first)")
    checked.flag(pl.col("timestamp").is_not_null() & pl.col("__ts").is_null(), "timestamp",
                 "not an ISO timestamp in store-local time (YYYY-MM-DDTHH:MM:SS)")
    qty = _number("quantity")
    checked.flag(pl.col("quantity").is_not_null() & (qty.is_null() | (qty == 0) | (qty.abs() > 10_000)), "quantity",
                 "must be a non-zero number of units (negative for a return)")
    checked.flag(~_money_ok("amount"), "amount", "not an amount in dollars with up to two decimals")
    checked.flag(~_money_ok("discount"), "discount", "not an amount in dollars with up to two decimals")
    checked.flag(_money_ok("discount") & pl.col("discount").fill_null("").str.starts_with("-"), "discount",
                 "must not be negative")
    checked.flag((qty > 0) & pl.col("amount").fill_null("").str.starts_with("-") & _money_ok("amount"), "amount",
                 "negative amount on a sale (returns have a negative quantity)")
    checked.raise_if_any()
    basket = ["store_id", "basket_id"]
    conflict = pl.any_horizontal(pl.col("customer_id").n_unique().over(basket) > 1,
                                 pl.col("timestamp").n_unique().over(basket) > 1)
    checked.flag(conflict, "basket_id", "lines of one basket disagree on customer_id or timestamp")
    checked.raise_if_any()

    lines = (f.lazy()
             .with_columns(pl.col("__ts").alias("ts"), qty.alias("quantity"), _cents("amount"),
                           _cents("discount").fill_null(0).alias("discount_cents"))
             .join(refs.products.lazy(), on="sku", how="left")
             .join(refs.customers.lazy(), on="customer_id", how="left")
             .with_columns(pl.col("ts").dt.date().alias("day"))
             .select("store_id", "basket_id", "customer_key", "ts", "day", "product_key", "quantity",
                     pl.col("amount").alias("amount_cents"), "discount_cents")
             .collect())
    baskets = (lines.group_by(basket)
               .agg(pl.col("customer_key").first(), pl.col("ts").first(), pl.col("day").first())
               .sort("ts", "store_id", "basket_id"))
    return lines, baskets


def _write_transactions(url: str, lines: pl.DataFrame, baskets: pl.DataFrame) -> int:
    """Add the baskets not yet present, and their lines, in one bulk transaction."""
    basket = ["store_id", "basket_id"]
    with bulk_session(url) as bulk:
        present = bulk.read("SELECT store_id, basket_id FROM baskets WHERE day >= '%s' AND day <= '%s'"
                            % (baskets["day"].min(), baskets["day"].max()),
                            {"store_id": pl.String, "basket_id": pl.String})
        if present.height:
            present = present.select(pl.col("store_id").cast(pl.String), pl.col("basket_id").cast(pl.String))
            baskets = baskets.join(present, on=basket, how="anti", maintain_order="left")
        if baskets.height == 0:
            return 0
        first = bulk.allocate_keys("baskets", baskets.height)
        baskets = baskets.with_columns(pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias("basket_key"))
        new_lines = (lines.join(baskets.select(*basket, "basket_key"), on=basket, how="inner")
                     .with_columns((pl.int_range(pl.len()).over("basket_key") + 1).cast(pl.Int32).alias("line_no"))
                     .select("basket_key", "line_no", "customer_key", "day", "product_key", "quantity",
                             "amount_cents", "discount_cents"))
        bulk.append("baskets", baskets.select(
            "basket_key", *basket, "customer_key", "ts", "day", pl.lit("import").alias("source"),
            pl.lit(None, pl.Int32).alias("lane"), pl.lit(0, pl.Int32).alias("voided")))
        bulk.append("basket_lines", new_lines)
        return new_lines.height


# ---------------------------------------------------------------- entry points

_DIMENSIONS = {"stores": _load_stores, "customers": _load_customers, "products": _load_products,
               "deals": _load_deals, "tips": _load_tips}


def _record(engine: sa.Engine, kind: str, path: Path, rows_read: int, added: int) -> str:
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO imports (import_id, kind, file_name, sha256, rows_read, rows_added, "
                             "imported_at) VALUES (:i, :k, :f, :s, :r, :a, :t)"),
                     {"i": allocate_keys(conn, "imports", 1), "k": kind, "f": str(path),
                      "s": hashlib.sha256(path.read_bytes()).hexdigest(), "r": rows_read, "a": added,
                      "t": utc_now()})
    what = "line items added" if kind == "transactions" else "rows imported"
    return f"{path}: {rows_read:,} rows read, {added:,} {what}"


def import_file(url: str, kind: str, path: Path) -> str:
    """Import one file whole or not at all; returns a one-line report."""
    return import_files(url, kind, [path])[0]


def import_files(url: str, kind: str, paths: Iterable[Path],
                 progress: Callable[[str, int, int], None] | None = None) -> list[str]:
    """Import each file (directories are searched for CSV and Parquet files) in turn.

    Each file is its own transaction; the first file with an error stops the import with
    an `InputError` naming file, row and column (files before it stay imported).
    Transactions are pipelined: the next file is read and validated in a worker thread
    while the current one is written (polars and the ADBC driver both release the GIL).
    """
    if kind not in KINDS:
        raise InputError(f"unknown import kind {kind!r} (one of {', '.join(KINDS)})")
    files = _expand(paths)
    engine = connect(url)
    report = []
    try:
        require_schema(engine)
        if kind == "transactions":
            refs = _References.read(engine)

            def prepare(path: Path):
                checked = read_table(path, kind)
                return checked.frame.height, _prepare_transactions(checked, refs)

            with ThreadPoolExecutor(max_workers=1) as pool:
                pending = pool.submit(prepare, files[0])
                for i, path in enumerate(files):
                    rows_read, (lines, baskets) = pending.result()
                    if i + 1 < len(files):
                        pending = pool.submit(prepare, files[i + 1])
                    added = _write_transactions(url, lines, baskets)
                    report.append(_record(engine, kind, path, rows_read, added))
                    if progress:
                        progress(f"import {kind}", i + 1, len(files))
        else:
            for i, path in enumerate(files):
                checked = read_table(path, kind)
                with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
                    added = _DIMENSIONS[kind](conn, checked)
                report.append(_record(engine, kind, path, checked.frame.height, added))
                if progress:
                    progress(f"import {kind}", i + 1, len(files))
    finally:
        engine.dispose()
    return report
