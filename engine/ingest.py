"""Import a chain's files: validate whole files, convert money to cents, load or refuse.

Contract (DESIGN.md, "Import files"): CSV (UTF-8, header, comma) or Parquet with the same
column names; money in dollars with up to two decimals, held as integer cents; ISO dates.
Every bad value is reported as ``file:row: column 'x': reason (got 'value')`` — row is the
CSV line number (the header is line 1) or, for Parquet, the 1-based row — and a file with
any error imports nothing.

Timestamps are kept as the store's local wall clock (schema.sql: baskets.ts), in the store's
zone (`stores.timezone`), else the chain's (`Settings.timezone`, passed as `timezone`). A
timestamp without an offset is that already; one with an offset (``-05:00``, ``+0100``,
``-05``) or ``Z`` is an instant, converted DST-correctly (``T`` or a space before the time,
fractions of a second or none). An offset that differs from the zone's own at that instant
by more than the zone's DST shift is an error naming the zone expected (the zone is set
wrong); ``Z`` is never judged (exporters write UTC whatever the store's zone), nor is a
Parquet column of zoned datetimes (read as UTC instants). So the same export written with
offsets or without gives the same database.

Each file is validated as a whole with polars expressions, then written in one database
transaction: dimension files (stores, customers, products, deals, tips) are upserted by
their key, so a re-import of the same file changes nothing. Transactions add the baskets
whose (store_id, basket_id) is not yet present, through the Arrow bulk path (ADBC). A basket
already present — its lines split across two files — gets the file's lines it does not hold
yet: lines are compared as multisets of (sku, quantity, amount, discount), so the k-th
identical line of the file is added only when the basket holds fewer than k of them, and a
re-import of either file changes nothing. The file's customer and timestamp must be the
basket's, else an error naming the row. A basket the checkout recorded is kept as recorded
(its export's other lines are counted in the report, not added). The one-line report says
how many lines went to baskets already present.
"""

from __future__ import annotations

import contextlib
import csv
import dataclasses
import functools
import hashlib
import io
import re
import threading
from collections import deque
from collections.abc import Iterable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import polars as pl
import pyarrow as pa
import pyarrow.parquet as pq
import sqlalchemy as sa

from engine.db import Gateway, MissingReference, allocate_keys, read_frame, utc_now
from engine.errors import InputError
from engine.faults import fault_point
from engine.history_store import (
    DEFAULT_MAX_PARTS,
    DEFAULT_MERGE_LINES,
    MIXED,
    PART_SCHEMA,
    Compacted,
    HistoryStore,
    Swap,
    bucket_of,
    compact,
    crowded,
    held_lines,
    listed_parts,
    lock,
    manifest_row,
    record_parts,
    write_parts,
    write_swap,
)
from engine.progress import Progress
from engine.values import FALSE_TEXT, OFFSET_PATTERN, TRUE_TEXT, cents, iso_date, store_local, truthy, wall_clock
from engine.zones import ZONE_HINT, dst_shift, is_zone

__all__ = ["import_files", "import_file", "read_table", "line_checksum", "KINDS", "MAX_REPORTED_ERRORS"]

MAX_REPORTED_ERRORS = 20
_ROW = "__row"

# kind -> (required columns, optional columns)
KINDS: dict[str, tuple[tuple[str, ...], tuple[str, ...]]] = {
    "stores": (("store_id",), ("name", "address", "city", "state", "postal_code", "timezone")),
    "customers": (
        ("customer_id",),
        (
            "card_number",
            "first_name",
            "last_name",
            "address_line1",
            "address_line2",
            "city",
            "state",
            "postal_code",
            "email",
            "household_size",
            "opted_out",
            "joined_on",
        ),
    ),
    "products": (
        ("sku", "category", "brand_type"),
        (
            "description",
            "department",
            "brand",
            "manufacturer_id",
            "manufacturer_name",
            "size",
            "regular_price",
            "unit_cost",
        ),
    ),
    "transactions": (("basket_id", "store_id", "timestamp", "sku", "quantity", "amount"), ("customer_id", "discount")),
    "deals": (
        ("deal_id", "manufacturer_id", "kind", "value", "starts_on", "ends_on"),
        ("sku", "category", "brand", "funded_share", "budget", "max_per_customer", "target_cells"),
    ),
    "tips": (("tip_id", "title", "body"), ("category",)),
}

_MONEY = r"^-?[0-9]+(\.[0-9]{1,2})?$"
# At most this many digits before the point (leading zeros aside): 999,999,999.99 dollars, so
# that a sum over 90 million such lines still fits the 64-bit integer cents (and the Decimal(18, 2)
# on the way); a longer amount is a corrupt export, not a sale.
MAX_MONEY_DIGITS = 9
_MONEY_BIG = rf"^-?0*[1-9][0-9]{{{MAX_MONEY_DIGITS},}}"
# _MONEY and not _MONEY_BIG in one: at most MAX_MONEY_DIGITS digits after the leading zeros
_MONEY_FITS = rf"^-?0*[0-9]{{1,{MAX_MONEY_DIGITS}}}(\.[0-9]{{1,2}})?$"


@dataclass
class _Checked:
    """A file's frame (all columns as text, plus its row numbers) and the checks on it.

    Checks are collected with `flag` and evaluated together in one pass over the frame
    (`raise_if_any`); only a check that fails is looked at row by row.
    """

    name: str
    frame: pl.DataFrame
    checks: list[tuple[pl.Expr, str, str]] = field(default_factory=list)
    amounts: set[str] = field(default_factory=set)  # text columns `_flag_money` found all valid amounts

    def flag(self, bad: pl.Expr, column: str, reason: str) -> None:
        """Every row where `bad` holds is an error in `column`."""
        self.checks.append((bad.fill_null(False), column, reason))

    def require_values(self, *columns: str) -> None:
        for column in columns:  # `read_table` made every empty text null
            self.flag(pl.col(column).is_null(), column, "required value missing")

    def errors(self) -> list[tuple[int, str, str, str]]:
        """(row, column, reason, value) of every failed check, at most MAX_REPORTED_ERRORS each."""
        if not self.checks:
            return []
        counts = self.frame.select([bad.sum().alias(str(i)) for i, (bad, _, _) in enumerate(self.checks)]).row(0)
        found = []
        for (bad, column, reason), n in zip(self.checks, counts):
            if not n:
                continue
            hits = self.frame.filter(bad).select(_ROW, pl.col(column).cast(pl.String).fill_null(""))
            found.extend((row, column, reason, value) for row, value in hits.head(MAX_REPORTED_ERRORS).iter_rows())
            found.extend([(2**62, column, reason, "")] * (n - min(n, MAX_REPORTED_ERRORS)))
        return found

    def raise_if_any(self) -> None:
        errors = self.errors()
        self.checks = []
        if not errors:
            return
        shown = sorted(e for e in errors if e[0] < 2**62)[:MAX_REPORTED_ERRORS]
        lines = [
            f"{self.name}:{row}: column '{col}': {reason} (got '{_printable(value)}')"
            for row, col, reason, value in shown
        ]
        if len(errors) > len(shown):
            lines.append(f"{self.name}: {len(errors)} errors in all; nothing was imported from this file")
        else:
            lines.append(f"{self.name}: nothing was imported from this file")
        raise InputError("\n".join(lines))


def _printable(value: str) -> str:
    """`value` on one line: control characters (NUL, newlines) escaped, at most 60 characters."""
    text = "".join(ch if ch.isprintable() else ascii(ch)[1:-1] for ch in value)
    return text if len(text) <= 60 else text[:57] + "..."


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
    bad = data[exc.start : exc.start + 4]
    return InputError(
        f"{name}:{line_no}: column '{column}': not valid UTF-8 (got '{bad!r}')\n"
        f"{name}: nothing was imported from this file"
    )


def _refuse(name: str, row: int, column: str, reason: str) -> InputError:
    return InputError(f"{name}:{row}: column '{column}': {reason}\n{name}: nothing was imported from this file")


def _unreadable_csv(name: str, text: str, exc: Exception) -> InputError:
    """The row (and field) where a CSV stops being readable: polars' error names neither."""
    reader = csv.reader(io.StringIO(text, newline=""))
    header, row = next(reader, []), 2
    try:
        for record in reader:
            if len(record) > len(header):
                return _refuse(
                    name,
                    row,
                    f"#{len(header) + 1}",
                    f"more fields than the header's {len(header)} (an unquoted comma, or a quote never closed?)",
                )
            row = reader.line_num + 1
    except csv.Error as error:
        return _refuse(name, row, header[0] if header else "#1", f"not readable as CSV ({error})")
    reason = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
    return _refuse(name, row, header[0] if header else "#1", f"not readable as CSV ({reason})")


def _header(name: str, columns: list[str], first_row: int) -> None:
    """Refuse a header naming one column twice, as written or differing only in case or spaces."""
    seen: dict[str, str] = {}
    for column in columns:
        key = column.strip().lower()
        if key in seen:
            raise _refuse(
                name,
                1,
                key,
                f"appears twice in the header (as '{seen[key]}' and '{column}'); "
                "column names are compared without case and spaces",
            )
        seen[key] = column


def _as_text(name: str, frame: pl.DataFrame, column: str, first_row: int) -> pl.Expr:
    """A Parquet column as text: numbers and decimals as written, bytes as UTF-8; nested types refused."""
    dtype = frame.schema[column]
    if dtype.is_nested() or dtype == pl.Object:
        raise _refuse(name, first_row, column, f"a Parquet {dtype} column cannot be imported (text or numbers)")
    if dtype == pl.Binary:
        for i, value in enumerate(frame[column].to_list()):
            try:
                value is None or value.decode("utf-8")
            except UnicodeDecodeError:
                raise _refuse(name, first_row + i, column, f"not valid UTF-8 (got '{value[:8]!r}')") from None
        return pl.col(column).map_batches(
            lambda s: pl.Series(
                s.name, [None if v is None else v.decode("utf-8") for v in s.to_list()], dtype=pl.String
            ),
            return_dtype=pl.String,
        )
    if isinstance(dtype, pl.Decimal):
        # a decimal(38, 10) holds 1.25 as '1.2500000000': the zeros beyond two decimals are not digits
        return pl.col(column).cast(pl.String).str.replace(r"(\.[0-9]{2}[0-9]*?)0+$", "$1")
    return pl.col(column).cast(pl.String)


# Parquet columns of a transactions file that stay typed instead of becoming text: what they hold
# converts exactly, and the text round trip (write, then parse again) was most of an import's time
# (1M lines: 1.3 s to write timestamps as text, 2.2 s to parse them back, 0.8 s for the money columns).
_TYPED_MONEY = ("amount", "discount")


def _kept_typed(column: str, dtype: pl.DataType) -> bool:
    """Whether `read_table` keeps Parquet column `column` of a transactions file as `dtype`."""
    if column == "timestamp":
        return isinstance(dtype, pl.Datetime) and dtype.time_zone is None  # store-local wall clock
    if column == "quantity":
        return dtype.is_integer()
    if column in _TYPED_MONEY:
        return dtype.is_integer() or (isinstance(dtype, pl.Decimal) and (dtype.scale or 0) <= 2)
    return False


def _is_text(checked: _Checked, column: str) -> bool:
    return checked.frame.schema[column] == pl.String


def _text_bytes(text: pl.Series) -> tuple[bool, bool, bool]:
    """(whether some value of `text` may start or end with whitespace, whether some holds a NUL byte,
    whether some is empty: "", not null).

    From the values' bytes (Arrow's offsets and data): a first or last byte that is a control
    character, a space or not ASCII (a multi-byte character may be Unicode whitespace) counts as
    may. 1.3M values of 8 columns: 0.12 s of CPU, not 0.35 s for a strip and a search of each.
    """
    values = text.to_arrow(compat_level=pl.CompatLevel.oldest())  # large_string: one data buffer
    if isinstance(values, pa.ChunkedArray):
        values = values.combine_chunks()
    _, offsets_buffer, data_buffer = values.buffers()
    if len(values) == 0:
        return False, False, False
    offsets = np.frombuffer(offsets_buffer, dtype=np.int64, count=len(values) + 1, offset=values.offset * 8)
    starts, ends = offsets[:-1], offsets[1:]
    filled = ends > starts  # nulls and empty values have no bytes
    empty = len(values) - int(np.count_nonzero(filled)) > values.null_count
    if data_buffer is None:
        return False, False, empty
    data = np.frombuffer(data_buffer, dtype=np.uint8)
    edges = np.concatenate([data[starts[filled]], data[ends[filled] - 1]])
    return bool(((edges <= 0x20) | (edges >= 0x7F)).any()), bool((data[offsets[0] : offsets[-1]] == 0).any()), empty


def read_table(path: Path, kind: str) -> _Checked:
    """A file as text columns with row numbers; refuses non-UTF-8 bytes, NUL bytes and bad headers.

    A transactions file's Parquet columns that convert exactly stay typed (`_kept_typed`): naive
    datetimes, integer quantities, integer or two-decimal money; the checks read either form.
    """
    required, optional = KINDS[kind]
    name = path.name
    if path.suffix.lower() == ".parquet":
        try:
            frame = pl.read_parquet(path)
        except Exception as exc:
            raise InputError(f"{name}:1: not a readable Parquet file ({exc})") from exc
        first_row = 1
        _header(name, frame.columns, first_row)
    else:
        data = path.read_bytes()
        try:
            data.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise _utf8_error(name, data, exc) from exc
        if data.startswith(b"\xef\xbb\xbf"):
            data = data[3:]
        if not data.strip():  # no header at all: its first required column is missing
            raise _refuse(name, 1, required[0], "required column missing (the file is empty)")
        first_line = data.split(b"\n", 1)[0].decode("utf-8").rstrip("\r")
        if "\r" in first_line:  # the csv module (and polars) would read one endless line
            raise _refuse(
                name,
                1,
                first_line.split(",", 1)[0].strip(),
                "lines end in a lone CR (carriage return): save the file with LF or CRLF line ends",
            )
        _header(name, next(csv.reader([first_line]), []), 2)
        try:
            frame = pl.read_csv(io.BytesIO(data), infer_schema=False)
        except pl.exceptions.PolarsError as exc:
            raise _unreadable_csv(name, data.decode("utf-8"), exc) from exc
        first_row = 2
    frame = frame.rename({c: c.strip().lower() for c in frame.columns})
    missing = [c for c in required if c not in frame.columns]
    if missing:
        raise InputError(
            f"{name}:1: column '{missing[0]}': required column missing "
            f"(got '{', '.join(frame.columns)}')\n{name}: nothing was imported from this file"
        )
    keep = [c for c in (*required, *optional) if c in frame.columns]
    typed = [c for c in keep if kind == "transactions" and _kept_typed(c, frame.schema[c])]
    # a column of zoned datetimes holds instants: as UTC text with Z (its zone is the writer's, not the store's)
    frame = frame.with_columns(
        (pl.col(c).dt.convert_time_zone("UTC").dt.replace_time_zone(None).cast(pl.String) + "Z").alias(c)
        for c in keep
        if isinstance(frame.schema[c], pl.Datetime) and frame.schema[c].time_zone
    )
    # a text column whose values neither start nor end with a byte that may be whitespace, nor hold a NUL
    # byte, needs no strip and no NUL check; one without empty values no "" -> null (`_text_bytes`: its
    # bytes, not passes of polars)
    facts = {c: _text_bytes(frame[c]) for c in keep if c not in typed and frame.schema[c] == pl.String}

    def text(c: str) -> pl.Expr:
        space, nul, empty = facts.get(c, (True, True, True))
        if not (space or nul or empty):
            return pl.col(c)
        value = pl.col(c) if not (space or nul) else _as_text(name, frame, c, first_row).str.strip_chars()
        return value.replace("", None).alias(c)  # "" = missing: after `read_table` no text value is ""

    frame = frame.select(
        pl.int_range(first_row, first_row + pl.len(), dtype=pl.Int64).alias(_ROW),
        *[pl.col(c).cast(pl.Datetime("us")) if isinstance(frame.schema[c], pl.Datetime) else pl.col(c) for c in typed],
        *[text(c) for c in keep if c not in typed],
    ).with_columns([pl.lit(None, pl.String).alias(c) for c in optional if c not in frame.columns])
    checked = _Checked(name, frame)
    for column in keep:  # PostgreSQL's text cannot hold NUL; refused on every database alike
        if column not in typed and facts.get(column, (True, True, True))[1]:
            checked.flag(pl.col(column).str.contains("\x00", literal=True), column, "NUL byte in text")
    checked.raise_if_any()
    return checked


# ---------------------------------------------------------------- value parsers (expressions)


def _money_shape(column: str) -> pl.Expr:
    """Written as dollars with up to two decimals (of any size)."""
    return pl.col(column).is_null() | pl.col(column).str.contains(_MONEY)


def _money_ok(column: str) -> pl.Expr:
    """An amount `_cents` converts exactly: the shape of dollars and at most MAX_MONEY_DIGITS digits."""
    return _money_shape(column) & ~pl.col(column).fill_null("").str.contains(_MONEY_BIG)


def _negative(checked: _Checked, column: str) -> pl.Expr:
    """A valid amount written with a minus sign (text) or below zero (a typed column)."""
    if column in checked.amounts:  # every value valid: the sign alone
        return pl.col(column).fill_null("").str.starts_with("-")
    if _is_text(checked, column):
        return _money_ok(column) & pl.col(column).fill_null("").str.starts_with("-")
    return pl.col(column) < 0


def _flag_money(checked: _Checked, column: str) -> None:
    """Flag text that is not dollars with up to two decimals, or too large to be an amount."""
    if not _is_text(checked, column):  # integers or two-decimal Decimals (`read_table`): only the size
        checked.flag(
            pl.col(column).cast(pl.Float64).abs() >= 10**MAX_MONEY_DIGITS,
            column,
            f"more than {MAX_MONEY_DIGITS} digits before the point (at most 999,999,999.99)",
        )
        return
    # one pass of one pattern when every value is valid (as nearly always), not two and then a third in `_negative`
    if checked.frame.select((pl.col(column).is_null() | pl.col(column).str.contains(_MONEY_FITS)).all()).item():
        checked.amounts.add(column)
        return
    checked.flag(~_money_shape(column), column, "not an amount in dollars with up to two decimals")
    checked.flag(
        _money_shape(column) & ~_money_ok(column),
        column,
        f"more than {MAX_MONEY_DIGITS} digits before the point (at most 999,999,999.99)",
    )


def _date(column: str) -> pl.Expr:
    return iso_date(pl.col(column), strict=False)


def _date_ok(column: str) -> pl.Expr:
    return pl.col(column).is_null() | (
        pl.col(column).str.contains(r"^\d{4}-\d{2}-\d{2}( 00:00:00(\.0+)?)?$") & _date(column).is_not_null()
    )


# A sale's timestamp lies in these years (inclusive): a year-9999 or year-1 timestamp is a corrupt
# export, and the batch's date arithmetic (cycles, windows) must not overflow on one.
FIRST_YEAR, LAST_YEAR = 1970, 2099


def _timestamp_parts(column: str, offsets: bool) -> tuple[pl.Expr, pl.Expr, pl.Expr]:
    """(the wall-clock time as written, as text for `_parse_wall`; its offset in minutes east of UTC or
    null; whether it is `Z`).

    `offsets=False` when no row can carry one (the regular expressions cost a pass each).
    """
    text = pl.col(column).str.replace(" ", "T", literal=True)
    if not offsets:
        return text, pl.lit(None, pl.Int32), pl.lit(False)
    suffix = text.str.extract(OFFSET_PATTERN, 1)
    zulu = suffix.str.to_uppercase() == "Z"
    digits = suffix.str.replace(":", "", literal=True)
    minutes = digits.str.slice(1, 2).cast(pl.Int32, strict=False) * 60 + digits.str.slice(3, 2).cast(
        pl.Int32, strict=False
    ).fill_null(0)
    offset = pl.when(zulu).then(pl.lit(0, pl.Int32)).when(suffix.str.starts_with("-")).then(-minutes).otherwise(minutes)
    return text.str.replace(OFFSET_PATTERN, ""), offset, zulu.fill_null(False)


def _parse_wall(text: pl.Series) -> pl.Series:
    """`engine.values.wall_clock` of `text`, parsing each value once when one form fits them all.

    wall_clock tries its three forms on every value (a coalesce evaluates each); the first
    (seconds, fraction optional) is nearly always the only one needed: 3x less parsing.
    """
    parsed = text.str.to_datetime("%Y-%m-%dT%H:%M:%S%.f", strict=False, time_unit="us")
    if parsed.null_count() != text.null_count():  # another form (no seconds) or a bad value: all forms
        parsed = text.to_frame().select(wall_clock(pl.col(text.name))).to_series()
    return parsed


_FIXED_OFFSET = re.compile(r"[+-][0-9]{2}:[0-9]{2}")  # `_fixed_form`'s, after the 19 characters of the time


def _fixed_form(frame: pl.DataFrame) -> pl.DataFrame | None:
    """`__wall`, `__offset` and `__zulu` (as `_timestamp_parts` and `_parse_wall` give them) when
    every `timestamp` is written ``YYYY-MM-DDTHH:MM:SS+HH:MM`` (or ``-HH:MM``), as POS exports
    write them; else None (the general path).

    Read at fixed positions, no regular expression: 1.3M lines, 0.19 s of CPU instead of 1.1 s. The
    offsets are few (a zone's one or two): each distinct one is read once, in Python, and mapped to
    its rows (0.3 s of CPU for the form's and the minutes' slices of every row: 0.1 s).
    """
    t = pl.col("timestamp")
    if not frame.select((t.str.len_bytes() == 25).fill_null(True).all()).item():
        return None
    offsets = frame.select(t.str.slice(19).alias("__tail"))["__tail"]
    minutes = {}
    for tail in offsets.drop_nulls().unique():
        if not _FIXED_OFFSET.fullmatch(tail):  # '+-1:00' and the like: the general path
            return None
        size = int(tail[1:3]) * 60 + int(tail[4:6])
        minutes[tail] = -size if tail[0] == "-" else size
    parts = frame.select(
        t.str.slice(0, 19).str.to_datetime("%Y-%m-%dT%H:%M:%S", strict=False, time_unit="us").alias("__wall"),
        offsets.replace_strict(minutes, default=None, return_dtype=pl.Int32).alias("__offset"),
        pl.lit(False).alias("__zulu"),
    )
    given = frame["timestamp"].null_count()
    if parts["__wall"].null_count() != given or parts["__offset"].null_count() != given:
        return None  # a value not of the form after all (letters in the digits): the general path names it
    return parts


def _may_carry_offsets(frame: pl.DataFrame, column: str) -> bool:
    """Whether any value has a character an offset needs after its date and hour."""
    return bool(frame.select(pl.col(column).str.slice(13).str.contains(r"[Zz+-]").any()).item())


def _to_store_local(shifts: dict[str, int]) -> pl.Expr:
    """`__ts`: store-local wall clock of each row, from `__wall`, `__offset` (minutes) and `__zone`.

    A row with an offset is an instant, converted to its zone's wall clock (DST-correct,
    by polars/chrono-tz); one zone at a time, as `convert_time_zone` takes one zone.
    """
    utc = (pl.col("__wall") - pl.duration(minutes=pl.col("__offset"))).dt.replace_time_zone("UTC")
    converted = [
        pl.when(pl.col("__zone") == z).then(utc.dt.convert_time_zone(z).dt.replace_time_zone(None)) for z in shifts
    ]
    return (
        pl.when(pl.col("__offset").is_null() | (pl.col("__offset").abs() > 14 * 60))
        .then(pl.col("__wall"))
        .otherwise(pl.coalesce(converted))
        .alias("__ts")
    )


def _number(column: str, dtype: pl.DataType = pl.Float64) -> pl.Expr:
    return pl.col(column).cast(dtype, strict=False)


def _bool_ok(column: str) -> pl.Expr:
    return pl.col(column).fill_null("").str.to_lowercase().is_in(list(TRUE_TEXT | FALSE_TEXT))


def _duplicates(checked: _Checked, *keys: str) -> None:
    checked.flag(
        pl.struct(keys).is_duplicated() & ~pl.struct(keys).is_first_distinct(),
        keys[-1],
        f"duplicate {'+'.join(keys)} in this file",
    )


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
    sql = sa.text(
        f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)}) "
        f"ON CONFLICT ({key}) {action}"
    )
    conn.execute(sql, frame.to_dicts())


def _assign_keys(conn: sa.Connection, frame: pl.DataFrame, natural: str, key: str, table: str) -> pl.DataFrame:
    """Keep the key of rows already in `table`; allocate new keys for the others."""
    existing = read_frame(conn, f"SELECT {natural}, {key} FROM {table}", schema={natural: pl.String, key: pl.Int64})
    frame = frame.join(existing, on=natural, how="left")
    new = frame[key].is_null()
    n_new = int(new.sum())
    if n_new:
        first = allocate_keys(conn, table, n_new)
        frame = frame.with_columns(
            pl.when(new).then(pl.lit(first - 1) + new.cum_sum()).otherwise(pl.col(key)).alias(key)
        )
    return frame


def _load_stores(conn: sa.Connection, checked: _Checked) -> int:
    checked.require_values("store_id")
    _duplicates(checked, "store_id")
    zones = checked.frame["timezone"].drop_nulls().unique()
    known = pl.Series([z for z in zones if is_zone(z)], dtype=pl.String)
    checked.flag(
        pl.col("timezone").is_not_null() & ~pl.col("timezone").is_in(known.implode()),
        "timezone",
        "not an IANA time zone name (e.g. America/New_York)",
    )
    checked.raise_if_any()
    _upsert(conn, "stores", "store_id", checked.frame.drop(_ROW))
    return checked.frame.height


def _load_customers(conn: sa.Connection, checked: _Checked) -> int:
    f = checked.frame
    checked.require_values("customer_id")
    _duplicates(checked, "customer_id")
    checked.flag(
        pl.col("card_number").is_not_null() & ~pl.col("card_number").str.contains(r"^[0-9]{8,19}$"),
        "card_number",
        "card number must be 8 to 19 digits",
    )
    checked.flag(
        pl.col("card_number").is_not_null() & pl.col("card_number").is_duplicated(),
        "card_number",
        "duplicate card_number in this file",
    )
    hs = _number("household_size", pl.Int64)
    checked.flag(
        pl.col("household_size").is_not_null() & (hs.is_null() | (hs < 1) | (hs > 20)),
        "household_size",
        "must be a whole number from 1 to 20",
    )
    checked.flag(~_bool_ok("opted_out"), "opted_out", "must be true or false")
    checked.flag(~_date_ok("joined_on"), "joined_on", "not an ISO date (YYYY-MM-DD)")
    taken = read_frame(
        conn,
        "SELECT card_number, customer_id AS owner FROM customers WHERE card_number IS NOT NULL",
        schema={"card_number": pl.String, "owner": pl.String},
    )
    clash = f.join(taken, on="card_number", how="inner").filter(pl.col("owner") != pl.col("customer_id"))
    checked.flag(pl.col(_ROW).is_in(clash[_ROW].implode()), "card_number", "card_number belongs to another customer")
    checked.raise_if_any()
    rows = f.drop(_ROW).with_columns(
        hs.alias("household_size"), truthy("opted_out").cast(pl.Int64).alias("opted_out"), _date("joined_on")
    )
    rows = _assign_keys(conn, rows, "customer_id", "customer_key", "customers")
    _upsert(conn, "customers", "customer_id", rows)
    return f.height


def _load_products(conn: sa.Connection, checked: _Checked) -> int:
    f = checked.frame
    checked.require_values("sku", "category", "brand_type")
    _duplicates(checked, "sku")
    checked.flag(
        pl.col("brand_type").is_not_null() & ~pl.col("brand_type").str.to_lowercase().is_in(["national", "store"]),
        "brand_type",
        "must be 'national' or 'store'",
    )
    for money in ("regular_price", "unit_cost"):
        _flag_money(checked, money)
        checked.flag(_money_ok(money) & pl.col(money).str.starts_with("-"), money, "must not be negative")
    checked.flag(
        pl.col("manufacturer_name").is_not_null() & pl.col("manufacturer_id").is_null(),
        "manufacturer_id",
        "required when manufacturer_name is given",
    )
    checked.raise_if_any()
    makers = (
        f.filter(pl.col("manufacturer_id").is_not_null())
        .group_by("manufacturer_id")
        .agg(pl.col("manufacturer_name").drop_nulls().first().alias("name"))
        .sort("manufacturer_id")
    )
    _upsert(conn, "manufacturers", "manufacturer_id", makers)
    rows = f.select(
        "sku",
        "description",
        "category",
        "department",
        "brand",
        pl.col("brand_type").str.to_lowercase(),
        "manufacturer_id",
        "size",
        cents("regular_price").alias("regular_price_cents"),
        cents("unit_cost").alias("unit_cost_cents"),
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
    checked.flag(
        pl.col("kind").is_not_null() & ~pl.col("kind").is_in(["amount_off", "percent_off", "price"]),
        "kind",
        "must be amount_off, percent_off or price",
    )
    pct = _number("value")
    checked.flag(
        (pl.col("kind") != "percent_off") & ~_money_shape("value"),
        "value",
        "not an amount in dollars with up to two decimals",
    )
    checked.flag(
        (pl.col("kind") != "percent_off") & _money_shape("value") & ~_money_ok("value"),
        "value",
        f"more than {MAX_MONEY_DIGITS} digits before the point (at most 999,999,999.99)",
    )
    checked.flag(
        (pl.col("kind") == "percent_off") & (pct.is_null() | (pct <= 0) | (pct > 100)),
        "value",
        "percent_off value must be a percentage in (0, 100]",
    )
    checked.flag(_money_ok("value") & pl.col("value").str.starts_with("-"), "value", "must not be negative")
    for column in ("starts_on", "ends_on"):
        checked.flag(~_date_ok(column), column, "not an ISO date (YYYY-MM-DD)")
    checked.flag(
        _date_ok("starts_on") & _date_ok("ends_on") & (_date("ends_on") < _date("starts_on")),
        "ends_on",
        "ends before starts_on",
    )
    share = _number("funded_share")
    checked.flag(
        pl.col("funded_share").is_not_null() & (share.is_null() | (share < 0) | (share > 1)),
        "funded_share",
        "must be a number from 0 to 1",
    )
    checked.flag(
        ~_money_shape("budget") | pl.col("budget").fill_null("").str.starts_with("-"),
        "budget",
        "not a non-negative amount in dollars",
    )
    checked.flag(
        _money_shape("budget") & ~_money_ok("budget"),
        "budget",
        f"more than {MAX_MONEY_DIGITS} digits before the point (at most 999,999,999.99)",
    )
    limit = _number("max_per_customer", pl.Int64)
    checked.flag(
        pl.col("max_per_customer").is_not_null() & (limit.is_null() | (limit < 1)),
        "max_per_customer",
        "must be a whole number >= 1",
    )
    checked.flag(
        pl.col("sku").is_null() & pl.col("category").is_null() & pl.col("brand").is_null(),
        "sku",
        "a deal needs a sku, a category or a brand",
    )
    checked.raise_if_any()
    is_pct = pl.col("kind") == "percent_off"
    rows = f.select(
        "deal_id",
        "manufacturer_id",
        "sku",
        "category",
        "brand",
        "kind",
        pl.when(is_pct).then(None).otherwise(cents("value")).alias("value_cents"),
        pl.when(is_pct).then((pct * 100).round().cast(pl.Int64)).otherwise(None).alias("percent_bp"),
        share.fill_null(1.0).alias("funded_share"),
        _date("starts_on"),
        _date("ends_on"),
        cents("budget").alias("budget_cents"),
        limit.alias("max_per_customer"),
        "target_cells",
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

    stores: pl.DataFrame  # store_id, timezone (null: the chain's)
    products: pl.DataFrame  # sku, product_key
    customers: pl.DataFrame  # customer_id, customer_key
    basket_order: tuple[str, ...] = ("basket_id", "store_id")  # the baskets' unique index's columns (`_unique_order`)


def _unique_order(db: Gateway) -> tuple[str, ...]:
    """The columns of the baskets' unique index on (store_id, basket_id), in its order: schema.sql's
    (basket_id, store_id), or an older database's (store_id, basket_id). A file's baskets are inserted
    in that order (`_prepare_transactions`), meeting the index at one end."""
    if db.sqlite:
        sql = (
            "SELECT ii.name AS name FROM pragma_index_list('baskets') il, pragma_index_info(il.name) ii "
            "WHERE il.\"unique\" = 1 AND il.origin = 'u' ORDER BY il.name, ii.seqno"
        )
    else:
        sql = (
            "SELECT a.attname AS name FROM pg_index i CROSS JOIN LATERAL unnest(i.indkey) WITH ORDINALITY k(attnum, n) "
            "JOIN pg_attribute a ON a.attrelid = i.indrelid AND a.attnum = k.attnum "
            "WHERE i.indrelid = 'baskets'::regclass AND i.indisunique AND NOT i.indisprimary ORDER BY i.indexrelid, k.n"
        )
    names = tuple(db.read(sql, {"name": pl.String})["name"].to_list()[:2])
    return names if sorted(names) == ["basket_id", "store_id"] else _References.basket_order


# what `_References` holds, in the order `_ReferencesAhead` reads it (the stores first: a file's timestamps need them)
_REFERENCE_QUERIES = (
    ("stores", "SELECT store_id, timezone FROM stores", {"store_id": pl.String, "timezone": pl.String}),
    ("products", "SELECT sku, product_key FROM products", {"sku": pl.String, "product_key": pl.Int64}),
    (
        "customers",
        "SELECT customer_id, customer_key FROM customers",
        {"customer_id": pl.String, "customer_key": pl.Int64},
    ),
)


class _ReferencesAhead:
    """`_References` while a worker reads them (`read`): each frame is waited for where a file's checks
    first need it, so the first file's reading, numbering and timestamps go ahead meanwhile (the
    real panel on PostgreSQL: the first file's checks began ~0.07 s after the import, when all three
    were read)."""

    def __init__(self) -> None:
        names = [name for name, _, _ in _REFERENCE_QUERIES]
        self._frames: dict[str, Future] = {name: Future() for name in (*names, "basket_order")}

    def read(self, db: Gateway) -> None:
        # through ADBC, as Arrow (one session, one snapshot): 1M customers through SQLAlchemy's rows were
        # ~3 s before the first line could be read
        try:
            with db.reading():
                for name, sql, schema in _REFERENCE_QUERIES:
                    self._frames[name].set_result(db.read(sql, schema))
                self._frames["basket_order"].set_result(_unique_order(db))
        except BaseException as exc:
            for frame in self._frames.values():
                if not frame.done():
                    frame.set_exception(exc)
            raise

    @property
    def stores(self) -> pl.DataFrame:
        return self._frames["stores"].result()

    @property
    def products(self) -> pl.DataFrame:
        return self._frames["products"].result()

    @property
    def customers(self) -> pl.DataFrame:
        return self._frames["customers"].result()

    @property
    def basket_order(self) -> tuple[str, ...]:
        return self._frames["basket_order"].result()


def _check_timestamps(checked: _Checked, refs: _References, chain_zone: str) -> None:
    """Parse `timestamp` once into `__ts`, the store-local wall clock; flag what cannot be.

    Each row's zone is its store's, else `chain_zone`. A row with an offset whose offset
    differs from its zone's at that instant by more than the zone's DST shift is flagged
    with the zone that was expected: the store's zone (or the chain's) is not set right.
    `Z` names an instant in UTC, as exporters write them whatever the store's zone: it is
    converted and never judged (a Parquet column of zoned datetimes is read as `Z`).
    """
    fixed = None if isinstance(checked.frame.schema["timestamp"], pl.Datetime) else _fixed_form(checked.frame)
    if fixed is not None:
        frame = checked.frame.with_columns(fixed)
    else:
        if isinstance(checked.frame.schema["timestamp"], pl.Datetime):  # a naive Parquet datetime: the wall clock
            wall, offset, zulu = pl.col("timestamp"), pl.lit(None, pl.Int32), pl.lit(False)
        else:
            wall, offset, zulu = _timestamp_parts("timestamp", _may_carry_offsets(checked.frame, "timestamp"))
        frame = checked.frame.with_columns(wall.alias("__wall"), offset.alias("__offset"), zulu.alias("__zulu"))
        if frame.schema["__wall"] == pl.String:
            frame = frame.with_columns(_parse_wall(frame["__wall"]))
    checked.flag(
        pl.col("timestamp").is_not_null() & pl.col("__wall").is_null(),
        "timestamp",
        "not an ISO timestamp (YYYY-MM-DDTHH:MM:SS, store-local, or with an offset: -05:00, Z)",
    )
    checked.flag(pl.col("__offset").abs() > 14 * 60, "timestamp", "offset beyond -12:00..+14:00")
    year = pl.col("__wall").dt.year()
    checked.flag(
        (year < FIRST_YEAR) | (year > LAST_YEAR),
        "timestamp",
        f"outside the years {FIRST_YEAR}-{LAST_YEAR} a sale can have",
    )
    has_offset = (
        pl.col("__offset").is_not_null() & pl.col("__wall").is_not_null() & (pl.col("__offset").abs() <= 14 * 60)
    )
    if not frame.select(has_offset.any()).item():  # store-local already: no zone needed (a join of every row)
        checked.frame = frame.with_columns(pl.col("__wall").alias("__ts"))
        return
    if refs.stores["timezone"].fill_null(chain_zone).eq(chain_zone).all():  # one zone (a store not known too): no join
        frame = frame.with_columns(pl.lit(chain_zone, pl.String).alias("__zone"))
    else:
        frame = frame.join(
            refs.stores.select("store_id", pl.col("timezone").alias("__zone")),
            on="store_id",
            how="left",
            maintain_order="left",
        ).with_columns(pl.col("__zone").fill_null(chain_zone))
    timed = frame.filter(has_offset)
    first, last = timed.select(
        pl.col("__wall").dt.year().min().alias("first"), pl.col("__wall").dt.year().max().alias("last")
    ).row(0)
    shifts = {z: int(dst_shift(z, first - 1, last + 1).total_seconds() // 60) for z in sorted(timed["__zone"].unique())}
    frame = frame.with_columns(_to_store_local(shifts))
    # the zone's own offset at that instant: its wall clock minus the instant's UTC wall clock
    expected = (pl.col("__ts") - (pl.col("__wall") - pl.duration(minutes=pl.col("__offset")))).dt.total_minutes()
    disagree = ~pl.col("__zulu") & (
        (pl.col("__offset") - expected).abs()
        > pl.col("__zone").replace_strict(shifts, default=0, return_dtype=pl.Int64)
    )
    for zone, shift in shifts.items():
        allowed = f"more than its DST shift of {shift} min" if shift else "at all (it has no DST)"
        checked.flag(
            disagree & (pl.col("__zone") == zone),
            "timestamp",
            f"offset disagrees with the store's time zone {zone} {allowed}; {ZONE_HINT}",
        )
    checked.frame = frame


def _timestamps_by_basket(checked: _Checked, refs: _References, chain_zone: str) -> bool:
    """`_check_timestamps` of each basket's first row, its `__ts` copied to the basket's other rows,
    when every basket is a run of rows (`_number_baskets`) written with one timestamp, as POS exports
    write them, and no check fails; else False, nothing done (the general path names every row).

    A timestamp is parsed, judged and converted to the store's wall clock once a basket, not once
    a line: the real panel's 120k-line files have ~9 lines a basket (the timestamps were a fifth of
    the per-file check's CPU).
    """
    f = checked.frame
    if "__first" not in f.columns:
        return False
    t = pl.col("timestamp")
    if f.select((~pl.col("__first") & t.ne_missing(t.shift(1))).any()).item():
        return False
    heads = _Checked(checked.name, f.select(_ROW, "store_id", "timestamp").filter(f["__first"]))
    _check_timestamps(heads, refs, chain_zone)
    if heads.errors():
        return False
    checked.frame = f.with_columns(heads.frame["__ts"].gather(f["__b"]))
    return True


def _prepare_transactions(
    checked: _Checked, refs: _References, chain_zone: str = "UTC"
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Validate a transactions file; (lines, baskets) ready to write. Pure: no database.

    lines (validated; the quantity and money converted once, for the lines and their checksums):
    store_id, basket_id, customer_key, ts (store-local), day, product_key, quantity, amount_cents,
    discount_cents, __row (the file's row, for errors found while writing), __b (the line's basket
    as a number, `_number_baskets`), line_no (its number in the basket, file order); in the file's
    order. baskets: store_id, basket_id, customer_key, ts, day, __row (its first row), __b,
    line_count and line_sum (`_checksums` of its lines), and when each basket is one run of rows,
    __start (the run's first index in lines); in the order of the baskets' unique index (`_unique_order`:
    basket_id, store_id, or an older database's store_id, basket_id), in which the insert meets its
    indexes at one end.
    """
    checked.frame = _number_baskets(checked.frame)
    if not _timestamps_by_basket(checked, refs, chain_zone):
        _check_timestamps(checked, refs, chain_zone)
    # the quantity parsed once, for its check and the lines
    checked.frame = _with_keys(checked.frame, refs).with_columns(_number("quantity").alias("__qty"))
    f = checked.frame
    checked.require_values("basket_id", "store_id", "timestamp", "sku", "quantity", "amount")
    _unknown(checked, "store_id", refs.stores["store_id"], "store (import stores first)")
    # a value the join found no key for is unknown: the join is the check (no second pass of is_in)
    for column, key, what in (
        ("sku", "product_key", "sku (import products first)"),
        ("customer_id", "customer_key", "customer (import customers first)"),
    ):
        checked.flag(pl.col(column).is_not_null() & pl.col(key).is_null(), column, f"unknown {what}")
    qty = pl.col("__qty")
    checked.flag(
        pl.col("quantity").is_not_null() & (qty.is_null() | qty.is_nan() | (qty == 0) | (qty.abs() > 10_000)),
        "quantity",
        "must be a non-zero number of units (negative for a return)",
    )
    _flag_money(checked, "amount")
    _flag_money(checked, "discount")
    checked.flag(_negative(checked, "discount"), "discount", "must not be negative")
    checked.flag(
        (qty > 0) & _negative(checked, "amount"),
        "amount",
        "negative amount on a sale (returns have a negative quantity)",
    )
    checked.raise_if_any()
    basket = ["store_id", "basket_id"]
    # compared as store-local times: one line with an offset and one without may agree
    if _baskets_disagree(f):  # the windows name the rows (only when some basket disagrees)
        conflict = pl.any_horizontal(
            pl.col("customer_id").n_unique().over(basket) > 1, pl.col("__ts").n_unique().over(basket) > 1
        )
        checked.flag(conflict, "basket_id", "lines of one basket disagree on customer_id or timestamp")
        checked.raise_if_any()

    # the lines at once (their checksums hash them: the values are converted once)
    lines = f.select(
        "store_id",
        "basket_id",
        "customer_key",
        pl.col("__ts").alias("ts"),
        pl.col("__ts").dt.date().alias("day"),
        "product_key",
        pl.col("__qty").alias("quantity"),
        cents("amount").alias("amount_cents"),
        cents("discount").fill_null(0).alias("discount_cents"),
        pl.col(_ROW).alias("__row"),
        "__b",
        "line_no",
    )
    heads = pl.col("__ts").alias("ts"), pl.col("__ts").dt.date().alias("day")
    if "__first" in f.columns:  # one run of rows a basket: its first row holds what the basket needs
        baskets = (
            f.lazy()
            .with_row_index("__start")
            .filter(pl.col("__first"))
            .select(
                *basket, "customer_key", *heads, pl.col(_ROW).alias("__row"), "__b", pl.col("__start").cast(pl.Int64)
            )
        )
        sums = _checksums(lines.select(pl.col("__b").set_sorted(), *_LINE), ["__b"])  # runs: sorted groups
    else:
        baskets = (
            f.lazy()
            .group_by("__b")
            .agg(pl.col(*basket, "customer_key").first(), pl.col("__ts").first(), pl.col(_ROW).min().alias("__row"))
            .select(*basket, "customer_key", *heads, "__row", "__b")
        )
        sums = _checksums(lines.select("__b", *_LINE), ["__b"])
    baskets = baskets.collect().join(sums, on="__b", how="left", maintain_order="left")
    return lines, baskets.sort(list(refs.basket_order))


def _number_baskets(f: pl.DataFrame) -> pl.DataFrame:
    """`f` with `__b`, each row's basket (store_id, basket_id) as 0, 1, ... in the order baskets first
    appear, `line_no`, the row's number in its basket (1, 2, ... in file order), and `__first`.

    POS exports write a basket's lines together: when every basket is one run of rows, runs number
    them (`__first`: whether the row starts its basket), 10x cheaper than grouping by two text columns;
    else a join numbers them (and there is no `__first`).
    """
    starts = pl.col("store_id").ne_missing(pl.col("store_id").shift(1)) | pl.col("basket_id").ne_missing(
        pl.col("basket_id").shift(1)
    )
    runs = f.with_columns(starts.alias("__first")).with_columns(
        (pl.col("__first").cum_sum().cast(pl.Int64) - 1).alias("__b")
    )
    heads = runs.select("store_id", "basket_id").filter(runs["__first"])  # not a filter of every column
    if heads.height == heads.select(pl.struct("store_id", "basket_id").n_unique()).item():
        at = pl.int_range(pl.len(), dtype=pl.Int64)
        head_at = pl.when(pl.col("__first")).then(at).forward_fill()
        return runs.with_columns((at - head_at + 1).cast(pl.Int32).alias("line_no"))
    ids = f.select("store_id", "basket_id").unique(maintain_order=True).with_row_index("__b")
    return f.join(
        ids.with_columns(pl.col("__b").cast(pl.Int64)), on=["store_id", "basket_id"], how="left", maintain_order="left"
    ).with_columns((pl.int_range(pl.len()).over("__b") + 1).cast(pl.Int32).alias("line_no"))


def _with_keys(f: pl.DataFrame, refs: _References) -> pl.DataFrame:
    """`f` (numbered, `_number_baskets`) with product_key and customer_key, null where unknown.

    When every basket is a run of rows agreeing on customer_id, only the runs' first rows are
    looked up among the customers and their keys copied to the run: a lookup per basket, not per
    line (13.9M lines against 1M customers: the join was ~3 s of CPU). Else a join of every line.
    """
    # joins of the one key column, not of `f`: a join gathers every column of its left side (a copy of the file)
    products = _lookup(f.select("sku"), refs.products, "sku", "product_key")
    if "__first" in f.columns:
        differs = ~pl.col("__first") & pl.col("customer_id").ne_missing(pl.col("customer_id").shift(1))
        if not f.select(differs.any()).item():
            heads = f.select("customer_id").filter(f["__first"])  # in basket order: row i is basket i
            keys = _lookup(heads, refs.customers, "customer_id", "customer_key")
            return f.with_columns(products, keys.gather(f["__b"]))
    return f.with_columns(products, _lookup(f.select("customer_id"), refs.customers, "customer_id", "customer_key"))


def _lookup(values: pl.DataFrame, table: pl.DataFrame, on: str, key: str) -> pl.Series:
    """`table`'s `key` for each row of `values` (one column, `on`), null where not found; in `values`' order."""
    # a join of the one column (`on` is unique in `table`: the database's UNIQUE): half the CPU of
    # replace_strict's mapping (the real panel's 120k-line file against 92k skus: 5.6 ms, not 9.7)
    found = values.join(table.select(on, key), on=on, how="left", maintain_order="left")
    return found.get_column(key).cast(pl.Int64)


def _baskets_disagree(f: pl.DataFrame) -> bool:
    """Whether the lines of some basket (`__b`, `_number_baskets`) differ in customer_id or `__ts`."""
    if "__first" in f.columns:  # runs: a row disagreeing with the row before it in its run
        differs = pl.col("customer_id").ne_missing(pl.col("customer_id").shift(1)) | pl.col("__ts").ne_missing(
            pl.col("__ts").shift(1)
        )
        return bool(f.select((~pl.col("__first") & differs).any()).item())
    agree = f.group_by("__b").agg(
        pl.col("customer_id").n_unique().alias("__n_customers"), pl.col("__ts").n_unique().alias("__n_ts")
    )
    return bool(agree.filter((pl.col("__n_customers") > 1) | (pl.col("__n_ts") > 1)).height)


@dataclass(frozen=True)
class _Written:
    """What one transactions file added: line items in all, of them to baskets already present,
    and lines of baskets the checkout recorded that were left as the checkout recorded them."""

    added: int = 0
    appended: int = 0
    left_out: int = 0
    import_id: int | None = None  # the imports row's
    compacted: Compacted | None = None  # the import's compaction, when the file's transaction did it

    def describe(self) -> str:
        text = f"{self.added:,} line items added ({self.appended:,} to baskets already present)"
        if self.left_out:
            text += (
                f"; {self.left_out:,} lines of baskets recorded by the checkout left out "
                "(the checkout's record of a basket is kept as it is)"
            )
        return text


@dataclass(frozen=True)
class _Compaction:
    """The compaction of an import's files, done by the transaction of its last file (`import_files`):
    the part files of `imports` (its files before) and that file's lines, one new file a bucket
    (`engine.history_store.compact_in`). The buckets' files are written while the database inserts the
    file's baskets, and the file's commit is the compaction's: an import of 11 files does not write
    its last one as a file of every bucket to split it in a transaction of its own."""

    imports: list[int]
    merge_lines: int


_LINE = ["product_key", "quantity", "amount_cents", "discount_cents"]  # a line's identity within its basket


def _refuse_disagreeing(name: str, clash: pl.DataFrame) -> None:
    """InputError for file baskets whose customer or timestamp differs from the basket already present.

    `clash`: __row, store_id, basket_id, customer_key, ts (the file's) and old_customer_key, old_ts.
    """
    errors = []
    for row, store, basket, ck, ts, old_ck, old_ts in (
        clash.sort("__row")
        .select("__row", "store_id", "basket_id", "customer_key", "ts", "old_customer_key", "old_ts")
        .iter_rows()
    ):
        if ck != old_ck:
            errors.append(
                f"{name}:{row}: column 'customer_id': basket {basket} of store {store} is already "
                f"present with another customer (customer key {old_ck}, got {ck})"
            )
        if ts != old_ts:
            errors.append(
                f"{name}:{row}: column 'timestamp': basket {basket} of store {store} is already "
                f"present at {old_ts} store-local time (got {ts})"
            )
    if errors:
        shown = errors[:MAX_REPORTED_ERRORS]
        more = f"{len(errors)} errors in all; " if len(errors) > len(shown) else ""
        raise InputError("\n".join([*shown, f"{name}: {more}nothing was imported from this file"]))


def _present(bulk, baskets: pl.DataFrame, where: str, source: str = "baskets b") -> pl.DataFrame:
    """Baskets of `baskets` already in the database among those `where` selects (`b`: baskets)."""
    # ts is read as text (SQLite's ISO text, PostgreSQL's timestamp cast) and parsed as store-local below
    ts = "CAST(b.ts AS TEXT)" if bulk.sqlite else "to_char(b.ts, 'YYYY-MM-DD\"T\"HH24:MI:SS.US')"
    present = bulk.read(
        "SELECT b.store_id, b.basket_id, b.basket_key, b.customer_key AS old_customer_key, "
        f"{ts} AS old_ts, b.source, b.line_count, b.line_sum FROM {source} WHERE {where}",
        {
            "store_id": pl.String,
            "basket_id": pl.String,
            "basket_key": pl.Int64,
            "old_customer_key": pl.Int64,
            "old_ts": pl.String,
            "source": pl.String,
            "line_count": pl.Int32,
            "line_sum": pl.Int64,
        },
    )
    if present.height == 0:  # a new week's or month's file: no polars work on the writer's path (`_in_background`)
        return present.with_columns(pl.lit(None, pl.Datetime("us")).alias("old_ts"))
    present = present.with_columns(store_local(present["old_ts"]).alias("old_ts"))
    return present.join(baskets.select("store_id", "basket_id"), on=["store_id", "basket_id"], how="semi")


# `_present_in_days`: the baskets of the file's days are read whole while they are at most this many times
# the file's baskets (and this many at the least), else the file's keys are looked up. A basket read costs
# ~3 us, a key looked up ~1 us (the 1M chain, SQLite): at 4, a file of 1.5M baskets read 4.6M (~8 s) where
# its keys took 1.4 s; at 1 a re-import of a daily or monthly file still reads its own days
_PRESENT_READ = 1
_PRESENT_FLOOR = 10_000


def _present_in_days(bulk, baskets: pl.DataFrame) -> pl.DataFrame:
    """`_present` for a file's `baskets`: among the baskets of its days when those are few (a daily or
    monthly export: one read, no key sent), else by the file's keys (store_id, basket_id) sent to a
    temporary table and joined on the unique key. Exports split by household or store span every
    day: reading every basket of those days made each file of an import slower than the one before
    (the 1M chain's 50 files of 1.5M baskets: the eighth read 11M baskets, ~40 s)."""
    days = "day >= '%s' AND day <= '%s'" % (baskets["day"].min(), baskets["day"].max())
    cap = max(_PRESENT_READ * baskets.height, _PRESENT_FLOOR)
    ((n,),) = bulk.execute(f"SELECT COUNT(*) FROM (SELECT 1 FROM baskets WHERE {days} LIMIT {cap + 1}) c")
    if n <= cap:
        return _present(bulk, baskets, days)
    bulk.append("lw_file_baskets", baskets.select("store_id", "basket_id"), temporary=True)
    if not bulk.sqlite:  # the planner's row count of the temporary table: index lookups, not a scan of baskets
        bulk.execute("ANALYZE lw_file_baskets")
    try:
        # CROSS JOIN: SQLite loops over the keys (its planner keeps that order), each looked up in the unique index
        return _present(
            bulk,
            baskets,
            "b.store_id = k.store_id AND b.basket_id = k.basket_id",
            "lw_file_baskets k CROSS JOIN baskets b",
        )
    finally:
        bulk.execute("DELETE FROM lw_file_baskets")


# ---------------------------------------------------------------- a basket's line checksum

_P = 2_147_483_647  # 2**31 - 1, a prime: every product below stays under 2**63
_K = ((1_000_003, 7), (999_983, 11))


def _mod(x: pl.Expr) -> pl.Expr:
    return x % _P  # polars' % floors, as Python's: in [0, P) for negative x too (tested)


def _line_hashes() -> list[pl.Expr]:
    """Two independent 31-bit hashes of each line's (product_key, quantity, amount_cents, discount_cents).

    Integer arithmetic only (no library hash), so the checksums stored in `baskets` stay valid
    across polars versions; `line_checksum` is the same in Python.
    """
    q = _mod((pl.col("quantity") * 1000).round().cast(pl.Int64))
    parts = (q, _mod(pl.col("amount_cents")), _mod(pl.col("discount_cents")))
    out = []
    for k, c in _K:
        v = _mod(pl.col("product_key"))
        for part in parts:
            v = _mod(v * k + part)
        out.append(_mod(v * v + c))
    return out


def _checksums(frame: pl.DataFrame | pl.LazyFrame, by: list[str]) -> pl.DataFrame:
    """Per group of `by`: line_count (Int32) and line_sum (Int64), an order-free checksum of its lines."""
    h1, h2 = _line_hashes()
    # hashes first, then plain sums per group: 3x faster than hashing inside the aggregation; lazy, so
    # that the two hashes' common terms are computed once (2M lines: 0.12 s of CPU, eager 0.25 s)
    return (
        frame.lazy()
        .select(*by, h1.alias("__h1"), h2.alias("__h2"))
        .group_by(by)
        .agg(pl.len().cast(pl.Int32).alias("line_count"), pl.col("__h1").sum(), pl.col("__h2").sum())
        .select(*by, "line_count", ((pl.col("__h1") % _P) * _P + pl.col("__h2") % _P).alias("line_sum"))
        .collect()
    )


def line_checksum(lines: Iterable[tuple[int, float, int, int]]) -> tuple[int, int]:
    """(line_count, line_sum) of a basket's lines (product_key, quantity, amount_cents, discount_cents).

    What the checkout stores with a basket it records; the same as the import computes.
    """
    sums, n = [0, 0], 0
    for product_key, quantity, amount, discount in lines:
        n += 1
        for i, (k, c) in enumerate(_K):
            v = product_key % _P
            for part in (round(quantity * 1000), amount, discount):
                v = (v * k + part % _P) % _P
            sums[i] += (v * v + c) % _P
    return n, (sums[0] % _P) * _P + sums[1] % _P


_HELD = {
    "basket_key": pl.Int64,
    "line_no": pl.Int32,
    "product_key": pl.Int64,
    "quantity": pl.Float64,
    "amount_cents": pl.Int64,
    "discount_cents": pl.Int64,
}


def _read_held(bulk, store: HistoryStore, baskets: pl.DataFrame) -> pl.DataFrame:
    """The lines history holds for `baskets` (basket_key, customer_key, day): _HELD.

    Imported baskets' lines are in the Parquet part files of their bucket; the checkout's (and
    those of a database from before the Parquet history) in basket_lines, which is small.
    """
    if baskets.height == 0:
        return pl.DataFrame(schema=_HELD)
    keys = baskets["basket_key"]
    cols = "SELECT basket_key, line_no, product_key, quantity, amount_cents, discount_cents FROM basket_lines"
    if keys.len() <= 2000:
        in_db = bulk.read(f"{cols} WHERE basket_key IN ({', '.join(str(int(k)) for k in keys)})", _HELD)
    else:
        in_db = bulk.read(f"{cols} WHERE basket_key >= {int(keys.min())} AND basket_key <= {int(keys.max())}", _HELD)
    in_parts = held_lines(bulk, store, baskets).select(list(_HELD))
    held = pl.concat([in_db, in_parts])
    return held.join(keys.to_frame("basket_key"), on="basket_key", how="semi")


def _lines_to_append(
    bulk, store: HistoryStore, lines: pl.DataFrame, present: pl.DataFrame
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(the file's lines of present baskets that the basket does not hold yet, with basket_key and
    line_no; the new line_count and line_sum of the import's baskets whose lines were read).

    A basket whose lines in the file have the count and checksum stored with it holds them all
    already (a re-import): its held lines are not read. The others (split baskets, baskets
    without a stored checksum) are compared as multisets of (product_key, quantity,
    amount_cents, discount_cents): the k-th copy of a line in the file is new when the basket
    holds fewer than k copies of it, so a re-import of either part of a split basket adds nothing.
    """
    basket = ["store_id", "basket_id"]
    theirs = _checksums(lines, basket).join(
        present.select(
            *basket, "basket_key", "source", pl.col("line_count").alias("__n_db"), pl.col("line_sum").alias("__s_db")
        ),
        on=basket,
        how="inner",
    )
    differ = theirs.filter(
        pl.col("line_count").ne_missing(pl.col("__n_db")) | pl.col("line_sum").ne_missing(pl.col("__s_db"))
    )
    where = lines.group_by(basket).agg(pl.col("customer_key", "day").first())
    held = _read_held(
        bulk, store, differ.join(where, on=basket, how="inner").select("basket_key", "customer_key", "day")
    )
    incoming = lines.join(differ.select(*basket, "basket_key", "source"), on=basket, how="inner")
    # counts per distinct line, not a window numbering the copies: 10x faster
    wanted = incoming.group_by("basket_key", *_LINE).agg(
        pl.len().alias("__n"), pl.col("customer_key", "day", "source", "__row").first()
    )
    have = held.group_by("basket_key", *_LINE).agg(pl.len().alias("__have"))
    new = (
        wanted.join(have, on=["basket_key", *_LINE], how="left")
        .with_columns((pl.col("__n") - pl.col("__have").fill_null(0)).alias("__more"))
        .filter(pl.col("__more") > 0)
        .with_columns(pl.int_ranges(0, pl.col("__more")).alias("__copy"))
        .explode("__copy")
        .sort("__row", "__copy")
    )
    last = held.group_by("basket_key").agg(pl.col("line_no").max().alias("__last"))
    new = new.join(last, on="basket_key", how="left").with_columns(
        (pl.col("__last").fill_null(0) + pl.int_range(1, pl.len() + 1).over("basket_key"))
        .cast(pl.Int32)
        .alias("line_no")
    )
    ours = differ.filter(pl.col("source") == "import").select("basket_key")
    after = pl.concat(
        [held.select("basket_key", *_LINE), new.filter(pl.col("source") == "import").select("basket_key", *_LINE)]
    )
    counts = _checksums(after.join(ours, on="basket_key", how="semi"), ["basket_key"])
    return new, counts


def _store_checksums(bulk, counts: pl.DataFrame) -> None:
    """Set baskets.line_count and line_sum from `counts` (basket_key, line_count, line_sum)."""
    if counts.height == 0:
        return
    bulk.append("lw_line_counts", counts.select("basket_key", "line_count", "line_sum"), temporary=True)
    bulk.execute(
        "UPDATE baskets SET line_count = c.line_count, line_sum = c.line_sum FROM lw_line_counts c "
        "WHERE baskets.basket_key = c.basket_key"
    )
    bulk.execute("DELETE FROM lw_line_counts")


@dataclass(frozen=True)
class _Source:
    """The imported file as the `imports` row records it."""

    path: Path
    sha256: str
    rows_read: int


def _write_transactions(
    db: Gateway,
    source: _Source,
    lines: pl.DataFrame,
    baskets: pl.DataFrame,
    held: dict[str, pl.DataFrame] | None = None,
    mixed: bool = False,
    compaction: _Compaction | None = None,
) -> _Written:
    """Add the baskets not yet present and the lines present baskets lack, in one bulk transaction.

    A present basket (same store_id and basket_id) must have the file's customer and
    store-local timestamp, else `InputError` naming the file's row. Lines go to baskets the
    import wrote; a basket the checkout recorded is kept as recorded (its other lines counted).
    Each basket the import writes to keeps its line count and checksum (schema.sql).

    The lines go to the history store's Parquet part files (`engine.history_store`), written
    before the commit; the transaction adds the baskets, the files' manifest rows and the
    `imports` row together, so its commit is the one commit point of the import. `held`: the part
    files' lines are put in it by file name (`engine.history_store.write_parts`' `held`); `mixed`:
    one part file of every bucket, for the import's compaction to split (`write_parts`' `mixed`);
    `compaction` (a file with baskets): the transaction compacts the import's files too, the file's
    lines going straight into the buckets' new files (`_Compaction`).
    """
    store = db.history_store()  # before the bulk session: on SQLite the two must not overlap
    swap = None
    with db.bulk() as bulk:
        lock(bulk)
        import_id = bulk.allocate_keys("imports", 1)
        written = _Written()
        if baskets.height:  # else a header-only file: nothing to look up (the day range would be empty)
            written, swap = _add_lines(
                db, bulk, store, import_id, source.path.name, lines, baskets, held, mixed, compaction
            )
        _record_import(bulk, import_id, source, written)
        fault_point("before-commit")
    compacted = swap.finish(store) if swap is not None else None  # the replaced files deleted, once committed
    return dataclasses.replace(written, import_id=import_id, compacted=compacted)


def _add_lines(
    db: Gateway,
    bulk,
    store: HistoryStore,
    import_id: int,
    name: str,
    lines: pl.DataFrame,
    baskets: pl.DataFrame,
    held: dict[str, pl.DataFrame] | None = None,
    mixed: bool = False,
    compaction: _Compaction | None = None,
) -> tuple[_Written, Swap | None]:
    """`_write_transactions`' work inside its transaction (the baskets of a non-empty file); the
    compaction's swap when `compaction` is given (recorded, its replaced files not yet deleted).

    `lines` (`_prepare_transactions`) are ordered for the part files while the baskets' insert runs;
    when some baskets are present already, their lines are compared first.
    """
    basket = ["store_id", "basket_id"]
    columns = list(PART_SCHEMA)
    present = _present_in_days(bulk, baskets)
    if present.height:
        _refuse_disagreeing(
            name,
            baskets.join(present, on=basket, how="inner").filter(
                pl.col("customer_key").ne_missing(pl.col("old_customer_key")) | (pl.col("ts") != pl.col("old_ts"))
            ),
        )
    fault_point("before-write")
    # the files the compaction merges, listed before the baskets' insert takes the connection
    listed = listed_parts(bulk, store, compaction.imports) if compaction is not None else None
    appended = pl.DataFrame(schema=PART_SCHEMA)
    counts = None
    left_out = 0
    n_baskets = baskets.height
    if present.height:
        extra, counts = _lines_to_append(bulk, store, lines, present)
        appended = extra.filter(pl.col("source") == "import").select(columns)
        left_out = extra.height - appended.height
        baskets = baskets.join(present, on=basket, how="anti", maintain_order="left")
    new_lines = pl.DataFrame(schema=PART_SCHEMA)
    inserting = None
    ordered = False
    if baskets.height:
        # keys in the order of the baskets' unique index, as `_prepare_transactions` sorts them: the
        # inserts then meet the primary key's index and the unique one each at one end (1.5M baskets on
        # SQLite: 8.9 s instead of 12.9 s)
        first = bulk.allocate_keys("baskets", baskets.height)
        baskets = baskets.with_columns(pl.int_range(first, first + pl.len(), dtype=pl.Int64).alias("basket_key"))
        # about as many baskets as the table holds (`first - 1` keys given out before): the indexes are built again
        rebuild = baskets.height >= first - 1
        rows = baskets
        if bulk.sqlite:  # as the ADBC driver writes them, as text: its own conversion was 40 % of this insert
            rows = baskets.with_columns(
                pl.col("ts").dt.to_string("%Y-%m-%dT%H:%M:%S%.6f"), pl.col("day").dt.to_string("%Y-%m-%d")
            )
        rows = rows.select(
            "basket_key",
            *basket,
            "customer_key",
            "ts",
            "day",
            pl.lit("import").alias("source"),
            pl.lit(None, pl.Int32).alias("lane"),
            pl.lit(0, pl.Int32).alias("voided"),
            "line_count",
            "line_sum",
        )
        # the database inserts the baskets (its server's or SQLite's work, the GIL released) while this
        # thread orders the lines and writes the Parquet files: the transaction commits after both
        # the file's stores and customers were checked against the references (`_prepare_transactions`)
        inserting = _in_background(
            functools.partial(bulk.append, rebuild_indexes=rebuild, references_checked=True), "baskets", rows
        )
        try:
            if "__start" in baskets.columns and appended.height == 0:
                new_lines = _in_part_order(store, lines, baskets)
                ordered = True
            else:
                # each line's basket_key by its basket's number (`__b`): a gather, not a join on two text columns
                key_of = pl.Series("basket_key", [None] * n_baskets, dtype=pl.Int64).scatter(
                    baskets["__b"], baskets["basket_key"]
                )
                new_lines = lines.with_columns(key_of.gather(lines["__b"]))
                new_lines = new_lines.filter(pl.col("basket_key").is_not_null()).select(columns)
        except BaseException:
            _settle(inserting)
            raise
    if counts is not None and inserting is None:
        _store_checksums(bulk, counts)
    try:
        added = pl.concat([appended, new_lines])
        if compaction is None:
            parts, swap = write_parts(store, added, f"i{import_id:09d}", import_id, ordered, held, mixed), None
        else:  # the import's files and this one's lines, one new file a bucket (written as the baskets go in)
            # the lines as one more file of every bucket (MIXED), named for no file
            pending = (manifest_row(f"(import {import_id})", MIXED, import_id, added), added) if added.height else None
            swap = write_swap(store, listed, 1, held, compaction.merge_lines, pending)
    except BaseException:
        _settle(inserting)
        raise
    if inserting is not None:
        try:
            inserting.result()
        except MissingReference as exc:  # removed since the references were read: the file names it
            raise _removed(name, baskets, exc) from exc
        except Exception as exc:
            _explain_collision(db, name, baskets, exc)
            raise
        except BaseException:  # Ctrl-C while waiting: the thread must be done with the connection first
            _settle(inserting)
            raise
    if counts is not None and inserting is not None:
        _store_checksums(bulk, counts)
    fault_point("after-baskets")
    if swap is None:
        record_parts(bulk, parts)
    else:
        swap.record(bulk)
        fault_point("before-compact-commit")
    return _Written(appended.height + new_lines.height, appended.height, left_out), swap


def _in_part_order(store: HistoryStore, lines: pl.DataFrame, baskets: pl.DataFrame) -> pl.DataFrame:
    """The lines of `baskets` (PART_SCHEMA) in the part files' order: by bucket, the anonymous last,
    then customer_key, day, basket_key, line_no.

    For a file whose baskets are runs of rows (`_number_baskets`; `__start`: where the run starts
    in `lines`, line_count its length): one gather of whole runs, the baskets sorted, instead of a
    sort of every line (2M lines: 0.3 s of CPU, not 0.9 s).
    """
    order = (
        baskets.select("__start", "line_count", "basket_key", "customer_key", "day")
        .with_columns(bucket_of(store.buckets))
        .sort("__bucket", "customer_key", "day", "basket_key", nulls_last=True)
    )
    counts = order["line_count"].cast(pl.Int64).to_numpy()
    ends = np.cumsum(counts)
    # each line's index in `lines`: its run's start plus its place in the run; numpy's repeat, not
    # polars' int_ranges and repeat_by exploded (lists of 2M values: a third more CPU)
    at = np.arange(ends[-1] if ends.size else 0, dtype=np.int64) + np.repeat(
        order["__start"].to_numpy() - (ends - counts), counts
    )
    keys = pl.Series("basket_key", np.repeat(order["basket_key"].to_numpy(), counts))
    carried = [c for c in PART_SCHEMA if c != "basket_key"]  # not the text columns: a gather copies what it takes
    return lines.select(carried)[pl.Series(at)].with_columns(keys).select(list(PART_SCHEMA))


def _settle(pending: Future | None) -> None:
    """Wait for `pending` to finish, whatever it raises (the transaction is being given up)."""
    if pending is not None:
        with contextlib.suppress(BaseException):
            pending.result()


_BACKGROUND = threading.local()  # `_in_background`'s thread, one a calling thread


def _in_background(function, *args) -> Future:  # noqa: ANN001
    """`function(*args)` in a thread of the calling thread's own (started once: a thread started for each
    file of an import waited ~2-4 ms for a core while the next files were checked); its Future.

    The writer's path between its statements is kept short for the same reason: its small polars
    operations share polars' thread pool with the files being checked, and wait behind them.
    """
    pool = getattr(_BACKGROUND, "pool", None)
    if pool is None:
        pool = _BACKGROUND.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="listwise-bulk")
    return pool.submit(function, *args)


def _record_import(bulk, import_id: int, source: _Source, written: _Written) -> None:
    """The `imports` row of a transactions file, in the import's own transaction."""
    at = utc_now().isoformat(sep=" ")
    bulk.run(
        "INSERT INTO imports (import_id, kind, file_name, sha256, rows_read, rows_added, imported_at) "
        f"VALUES (:i, 'transactions', :f, :s, :r, :a, {':t' if bulk.sqlite else 'CAST(:t AS TIMESTAMP)'})",
        i=import_id,
        f=str(source.path),
        s=source.sha256,
        r=source.rows_read,
        a=written.added,
        t=at,
    )


def _removed(name: str, baskets: pl.DataFrame, exc: MissingReference) -> InputError:
    """The file's first row naming a store or customer that left the database during the import."""
    column, what = {"customer_key": ("customer_id", "customer"), "store_id": ("store_id", "store")}.get(
        exc.column, (exc.column, exc.column)
    )
    rows = baskets.filter(pl.col(exc.column).is_in(pl.Series(exc.values).implode()))["__row"]
    if rows.len() == 0:  # not a key of this file's baskets: say what the database said
        return InputError(f"{name}: {exc}; nothing was imported from this file")
    return _refuse(
        name, int(rows.min()), column, f"unknown {what} (removed from the database while this file was imported)"
    )


def _explain_collision(db: Gateway, name: str, baskets: pl.DataFrame, exc: Exception) -> None:
    """A new basket met one already present on another day (its timestamp differs): say which.

    Runs only when the insert failed: the lookup by key then costs nothing in the usual case.
    """
    with db.bulk(write=False) as bulk:  # a second session: the writer's transaction has failed
        for store, group in baskets.group_by("store_id"):
            ids = group["basket_id"].to_list()
            for i in range(0, len(ids), 1000):
                quoted = ", ".join("'" + b.replace("'", "''") + "'" for b in ids[i : i + 1000])
                escaped = str(store[0]).replace("'", "''")
                present = _present(bulk, group, f"store_id = '{escaped}' AND basket_id IN ({quoted})")
                clash = group.join(present, on=["store_id", "basket_id"], how="inner")
                if clash.height:
                    _refuse_disagreeing(name, clash)


# ---------------------------------------------------------------- entry points

_HELD_LINES = 2_000_000  # `import_files`: lines of part files held for the compaction (~110 MB)
_AHEAD_LINES = 2_000_000  # `import_files`: two files are prepared at once while they hold at most this many lines


def _small(paths: Sequence[Path]) -> bool:
    """Whether `paths` hold at most _AHEAD_LINES lines together: a Parquet file's count from its footer,
    a CSV file's guessed from its size (a line item's row is ~50 bytes or more)."""
    lines = 0
    for path in paths:
        try:
            if path.suffix.lower() == ".parquet":
                lines += pq.ParquetFile(path).metadata.num_rows
            else:
                lines += path.stat().st_size // 50
        except Exception:  # noqa: BLE001 - unreadable: its own read names the error; not ahead of it
            return False
    return lines <= _AHEAD_LINES


_DIMENSIONS = {
    "stores": _load_stores,
    "customers": _load_customers,
    "products": _load_products,
    "deals": _load_deals,
    "tips": _load_tips,
}


def _record(db: Gateway, kind: str, path: Path, rows_read: int, added: int, what: str = "") -> str:
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO imports (import_id, kind, file_name, sha256, rows_read, rows_added, "
                "imported_at) VALUES (:i, :k, :f, :s, :r, :a, :t)"
            ),
            {
                "i": allocate_keys(conn, "imports", 1),
                "k": kind,
                "f": str(path),
                "s": hashlib.sha256(path.read_bytes()).hexdigest(),
                "r": rows_read,
                "a": added,
                "t": utc_now(),
            },
        )
    return f"{path}: {rows_read:,} rows read, {what or f'{added:,} rows imported'}"


def import_file(url: str | Gateway, kind: str, path: Path, timezone: str = "UTC") -> str:
    """Import one file whole or not at all; returns a one-line report."""
    return import_files(url, kind, [path], timezone=timezone)[0]


def import_files(
    url: str | Gateway,
    kind: str,
    paths: Iterable[Path],
    progress: Progress | None = None,
    timezone: str = "UTC",
    max_parts: int = DEFAULT_MAX_PARTS,
    merge_lines: int = DEFAULT_MERGE_LINES,
) -> list[str]:
    """Import each file (directories are searched for CSV and Parquet files) in turn.

    Each file is its own transaction; the first file with an error stops the import with
    an `InputError` naming file, row and column (files before it stay imported).
    Transactions are pipelined: the next file (two when they are small) is read and validated in
    worker threads while the current one is written (polars and the ADBC driver both release the GIL).

    `timezone` is the chain's zone (`Settings.timezone`): the zone of stores without their own.
    `url`: the database, or the command's `engine.db.Gateway` to it. Transactions: a bucket of the
    history holding more than `max_parts` open part files afterwards is compacted, no merge reading more than
    `merge_lines` lines (`engine.history_store.compact`).
    """
    if kind not in KINDS:
        raise InputError(f"unknown import kind {kind!r} (one of {', '.join(KINDS)})")
    if not is_zone(timezone):
        raise InputError(f"setting 'timezone': not an IANA time zone name (got {timezone!r})")
    files = _expand(paths)
    report = []
    # a transactions import's bulk sessions (its files', its compaction's) keep one SQLite connection (`Gateway.keeping`)
    with Gateway.using(url) as db, db.keeping():
        db.require()
        if kind == "transactions":
            db.history_store().require_root()  # before any file is read: the lines need a directory

            def prepare(path: Path):
                checked = read_table(path, kind)
                digest = hashlib.sha256(path.read_bytes()).hexdigest()
                prepared = _prepare_transactions(checked, references, timezone)
                reading.result()  # its session over (the writer's may then use the connection); its error, if any
                return _Source(path, digest, checked.frame.height), prepared

            imports = []
            # the lines of this import's part files, for its compaction to merge without reading them back
            # (while they are few: at most _HELD_LINES, ~56 bytes a line); while they are, each file's
            # lines go to one part file of every bucket (`write_parts`' `mixed`), which the compaction splits
            held: dict[str, pl.DataFrame] | None = {} if max_parts and len(files) > 1 else None
            split = False  # whether a committed file of this import is a file of every bucket
            in_held = 0  # lines in `held`
            try:
                with ThreadPoolExecutor(max_workers=2) as pool:
                    # the references (1M customers: ~0.5 s) are read while the first file is read and its
                    # timestamps checked (`_ReferencesAhead`); nothing else uses `db` until the first file is prepared
                    references = _ReferencesAhead()
                    reading = pool.submit(references.read, db)
                    ahead: deque[Future] = deque()  # the next files' preparations, in file order

                    def top_up(current: int) -> None:
                        # while file `current` is written the next two are prepared when they are small (a
                        # file's checks keep about one core busy, its write less: the real panel's 11 files
                        # were 1.52 s on SQLite with one ahead, 1.43 s with two); a large file alone, so that
                        # no more than two large files' frames are held at once
                        while len(ahead) < 2 and (after := current + 1 + len(ahead)) < len(files):
                            if ahead and not _small(files[after - 1 : after + 1]):
                                return
                            ahead.append(pool.submit(prepare, files[after]))

                    for i, path in enumerate(files):
                        if not ahead:
                            ahead.append(pool.submit(prepare, path))
                        pending = ahead.popleft()
                        top_up(i)
                        source, (lines, baskets) = pending.result()
                        pending = None
                        # the MIXED files' lines stay at most _HELD_LINES: the compaction holds them all at once
                        mixed = held is not None and in_held + source.rows_read <= _HELD_LINES
                        # the last file of an import whose files are held: its transaction compacts them all (a
                        # header-only one leaves it to the compaction below)
                        compaction = None
                        if mixed and max_parts and imports and baskets.height and i == len(files) - 1:
                            compaction = _Compaction(list(imports), merge_lines)
                        written = _write_transactions(db, source, lines, baskets, held, mixed, compaction)
                        # the file's frames let go now (13.9M lines: ~2 GB), not when the next file's
                        # replace them or, for the last, after the compaction; its Future holds them too
                        lines = baskets = None
                        in_held = sum(part.height for part in held.values()) if held is not None else 0
                        if in_held > _HELD_LINES:
                            held = None  # the compaction reads the files
                        imports.append(written.import_id)
                        split = split or mixed
                        fault_point("after-commit")
                        report.append(f"{path}: {source.rows_read:,} rows read, {written.describe()}")
                        if progress:
                            progress(f"import {kind}", i + 1, len(files))
            except Exception:
                # the files committed before the one refused stay imported: their files of every bucket are
                # split now (readers would read each of them whole, for every partition, until the next import)
                if split:
                    with contextlib.suppress(Exception):
                        compact(db, max_parts=1, imports=imports, held=held, merge_lines=merge_lines)
                raise
            # one file a bucket for the files of this import, not one each (unless the last file's transaction did it)
            if max_parts and len(imports) > 1 and written.compacted is None:
                compact(db, max_parts=1, imports=imports, held=held, merge_lines=merge_lines)
            if max_parts and crowded(db, max_parts, merge_lines):
                compact(db, max_parts=max_parts, merge_lines=merge_lines)
        else:
            for i, path in enumerate(files):
                checked = read_table(path, kind)
                with db.begin(immediate=True) as conn:
                    added = _DIMENSIONS[kind](conn, checked)
                report.append(_record(db, kind, path, checked.frame.height, added))
                if progress:
                    progress(f"import {kind}", i + 1, len(files))
    return report
