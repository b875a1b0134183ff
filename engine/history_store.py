"""Line-item history: customer-bucketed Parquet part files, committed by a manifest in the database.

Layout. ``<root>/bucket=NN/<name>.parquet`` holds card holders' lines with customer_key % B == NN
(B = the store's buckets, fixed when the database is created, schema.sql: history_store);
``<root>/bucket=anon/`` the lines of baskets without a customer. Each file holds PART_SCHEMA's
columns sorted by customer_key, day, basket_key, line_no (history's order: a read is a cheap stable
sort; a customer predicate prunes row groups, the manifest's day range prunes files).
``<root>/bucket=mixed/`` holds an import's files of every bucket (manifest bucket MIXED, -1): an
import of several files writes one file of its card holders' lines a transaction (the anonymous
ones go to bucket=anon as ever), sorted by bucket, then history's order, and its compaction splits
them into the buckets' own files (`compact`); one a kill left is split by the next import or
``listwise history compact``. Readers of some buckets read such a file too and keep only their
customers' lines (`card_holders`).
root: the `[history] path` recorded at ``listwise init``, else a directory beside the SQLite
file (``listwise.db`` -> ``listwise.history/``); a relative path is relative to the SQLite file's
directory.

One commit point. An import writes its part files (one per bucket it touches, named by its
import id and a random tag; written under a temporary name, synced, renamed) *before* its
database transaction commits; that transaction inserts the baskets, the `imports` row and the
files' manifest rows (`history_parts`) together. A kill before the commit leaves files no
manifest row names: readers never see them (they read only what the manifest names) and
`compact` deletes them. The database is the one source of truth; no second log to reconcile.

Writers of the store (imports, `compact`) hold the store's lock (`lock`: SQLite's write lock,
PostgreSQL's row lock on history_store) from before they write a file until they commit, so a
file not named by the manifest while one holds the lock belongs to a writer that died.

Reads. `part_paths` lists a partition's committed files (a Dask worker reads them by path; `part_files`
with each file's bucket);
`read_parts` scans them with polars (day predicate pushed down). The checkout's baskets are not
here: they stay in the database table basket_lines (OLTP: one small transaction per basket),
and `engine.db.Gateway.history` reads them alongside the parts.
"""

from __future__ import annotations

import datetime as dt
import os
import secrets
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import polars as pl
from sqlalchemy.engine import make_url

from engine.config import HistorySettings
from engine.errors import CodeError, StateError
from engine.faults import fault_point

if TYPE_CHECKING:
    from engine.db import BulkSession, Gateway

__all__ = [
    "HistoryStore",
    "DEFAULT_BUCKETS",
    "ANON",
    "MIXED",
    "PART_SCHEMA",
    "MANIFEST_SCHEMA",
    "partition_buckets",
    "bucket_of",
    "lock",
    "write_parts",
    "record_parts",
    "manifest_row",
    "manifest",
    "part_files",
    "part_paths",
    "card_holders",
    "read_parts",
    "scan_parts",
    "held_lines",
    "compact",
    "compact_in",
    "listed_parts",
    "write_swap",
    "Listed",
    "Swap",
    "crowded",
    "Compacted",
    "DEFAULT_MAX_PARTS",
    "DEFAULT_MERGE_LINES",
    "every_line",
    "to_history",
]

# the settings' defaults ([history]: buckets, max_parts, and merge_lines, the most lines one merge of
# `compact` reads, ~0.8 GiB at its peak with four merging at once; a file of half as many is settled, `_merge_plan`)
DEFAULT_BUCKETS = HistorySettings.buckets
DEFAULT_MAX_PARTS = HistorySettings.max_parts
DEFAULT_MERGE_LINES = HistorySettings.merge_lines
ANON = "anon"
# history_parts.bucket of a file holding lines of every bucket (an import transaction's, `write_parts`' `mixed`)
MIXED = -1
_TRANSIENT = ".arrow"  # a MIXED file's suffix: Arrow IPC (`_write_file`)
MAX_BUCKETS = 4096

PART_SCHEMA = {
    "basket_key": pl.Int64,
    "line_no": pl.Int32,
    "customer_key": pl.Int64,
    "day": pl.Date,
    "product_key": pl.Int64,
    "quantity": pl.Float64,
    "amount_cents": pl.Int64,
    "discount_cents": pl.Int64,
}
# a part file's row order: history's own (`to_history`), so that reading is a cheap stable sort
_SORT = ["customer_key", "day", "basket_key", "line_no"]

MANIFEST_SCHEMA = {
    "file_name": pl.String,
    "bucket": pl.Int64,
    "import_id": pl.Int64,
    "line_count": pl.Int64,
    "first_day": pl.Date,
    "last_day": pl.Date,
    "first_basket": pl.Int64,
    "last_basket": pl.Int64,
}


@dataclass(frozen=True)
class HistoryStore:
    """Where a database's Parquet history lives (`root`, None: not set) and its bucket count."""

    root: Path | None
    buckets: int

    @classmethod
    def locate(cls, url: str, recorded: str | None, buckets: int) -> HistoryStore:
        """The store of the database at `url` from its history_store row (`recorded` path, `buckets`)."""
        u = make_url(url)
        file = u.database if u.get_backend_name() == "sqlite" else None
        on_disk = file not in (None, "", ":memory:") and not str(file).startswith("file:")
        if recorded:
            root = Path(recorded)
            if not root.is_absolute() and on_disk:
                root = Path(file).resolve().parent / root
        elif on_disk:
            root = Path(file).resolve().with_suffix(".history")
        else:
            root = None
        return cls(root, int(buckets))

    def require_root(self) -> Path:
        """The directory, or `StateError` when none is set (PostgreSQL without `history.path`)."""
        if self.root is None:
            raise StateError(
                "no history directory is set for this database: set 'path' in [history] and run 'listwise init'"
            )
        return self.root

    def path(self, file_name: str) -> Path:
        return self.require_root() / file_name


def bucket_of(buckets: int) -> pl.Expr:
    """A line's bucket: customer_key % buckets, null for a line without customer (the anon bucket)."""
    return (pl.col("customer_key") % buckets).cast(pl.Int64).alias("__bucket")


def partition_buckets(buckets: int, partition: tuple[int, int] | None) -> list[int]:
    """The buckets of partition (p, n): b with b % n == p, i.e. the customers with customer_key % n == p.

    `StateError` unless n divides `buckets` and 0 <= p < n. None: every bucket.
    """
    if partition is None:
        return list(range(buckets))
    p, n = partition
    if n < 1 or buckets % n or not 0 <= p < n:
        raise StateError(f"partition {p} of {n}: n must divide the history's {buckets} buckets and 0 <= p < n")
    return [b for b in range(buckets) if b % n == p]


def _directory(bucket: int | None) -> str:
    if bucket == MIXED:
        return "bucket=mixed"
    return f"bucket={ANON if bucket is None else f'{bucket:02d}'}"


# ---------------------------------------------------------------- writing


def lock(bulk: BulkSession) -> tuple[int, str | None]:
    """Take the store's writer lock inside `bulk`'s transaction; (buckets, recorded path).

    SQLite: a write transaction (BEGIN IMMEDIATE) holds the database's one write lock already.
    PostgreSQL: the history_store row, locked until the transaction ends.
    """
    rows = bulk.execute("SELECT buckets, path FROM history_store" + ("" if bulk.sqlite else " FOR UPDATE"))
    if not rows:
        raise StateError("the database has no history store: run 'listwise init'")
    return int(rows[0][0]), rows[0][1]


def _write_file(path: Path, frame: pl.DataFrame) -> None:
    """`frame` to `path` whole or not at all: a temporary name, synced, then renamed.

    A ``.arrow`` path (a file the import's own compaction replaces, `write_parts`' MIXED, read whole
    by it) is written as Arrow IPC, uncompressed: its columns as they are in memory (an import of 11
    files of 120k lines: ~0.1 s of CPU less than as Parquet, even uncompressed and without statistics).
    """
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    if path.suffix == _TRANSIENT:
        frame.write_ipc(tmp, compression="uncompressed")
    else:
        frame.write_parquet(tmp, compression="lz4", statistics=True, row_group_size=256 * 1024)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)


def scan_parts(paths: Sequence[str]) -> pl.LazyFrame:
    """The part files `paths` (PART_SCHEMA) as one scan, their lines in the order of `paths`: Parquet
    files, and Arrow IPC ones (``.arrow``: files of every bucket an import has not split yet)."""
    runs: list[tuple[bool, list[str]]] = []  # consecutive paths of one format
    for path in paths:
        ipc = str(path).endswith(_TRANSIENT)
        if runs and runs[-1][0] == ipc:
            runs[-1][1].append(str(path))
        else:
            runs.append((ipc, [str(path)]))
    scans = [
        pl.scan_ipc(group, hive_partitioning=False) if ipc else pl.scan_parquet(group, hive_partitioning=False)
        for ipc, group in runs
    ]
    return scans[0] if len(scans) == 1 else pl.concat(scans, how="vertical")


def _sync_dirs(paths: list[Path]) -> None:
    for directory in {p.parent for p in paths}:
        fd = os.open(directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def write_parts(
    store: HistoryStore,
    lines: pl.DataFrame,
    prefix: str,
    import_id: int | None,
    ordered: bool = False,
    held: dict[str, pl.DataFrame] | None = None,
    mixed: bool = False,
) -> pl.DataFrame:
    """Write `lines` (PART_SCHEMA's columns) as one part file per bucket; their manifest rows.

    `mixed`: the card holders' lines as one file of every bucket instead (``bucket=mixed/``, manifest
    bucket MIXED), in the same order (by bucket, then history's), the anonymous ones in their bucket's
    file as ever (so a MIXED file always holds card holders' lines): for an import whose compaction
    splits it (`compact`).
    An import of 11 files of 120k lines: 11 files written instead of 715 (each `write_parquet` of a
    small file costs ~0.8 ms of CPU whatever its size).

    `ordered`: the caller gives `lines` by bucket (`bucket_of`, the anonymous bucket last) and
    history's order in each (customer_key, day, basket_key, line_no), so they are not sorted again
    (a sort of 2M lines: 0.9 s of CPU); each bucket's file is then a slice of `lines`.

    Named ``bucket=NN/<prefix>-<random tag>.parquet``: unique, so a re-run after a kill never
    meets its predecessor's orphans. Returns MANIFEST_SCHEMA rows (not yet recorded: `record_parts`).
    `held`: each file's lines are put in it by file_name too (for `compact`'s `held`).
    """
    if lines.height == 0:
        return pl.DataFrame(schema=MANIFEST_SCHEMA)
    root = store.require_root()
    tag = secrets.token_hex(4)
    frame = lines.select(list(PART_SCHEMA)).with_columns(bucket_of(store.buckets))
    if not ordered:
        frame = frame.sort(["__bucket", *_SORT], nulls_last=True)
    runs = frame.select(pl.col("__bucket").rle()).unnest("__bucket")
    if runs["value"].n_unique() != runs.height:  # two slices of one bucket would write one file name twice
        raise CodeError(f"write_parts: lines of a bucket are not together (ordered={ordered})")
    starts = [0, *runs["len"].cum_sum().to_list()[:-1]]
    body = frame.drop("__bucket")  # once: a drop of each slice was 0.25 ms (an 11-file import: 704 slices)
    if mixed:  # the card holders' lines in one file; the anonymous ones (the last run) in their own bucket's
        anon = runs.filter(pl.col("value").is_null())["len"].sum()
        if anon and runs["value"][-1] is not None:
            raise CodeError("write_parts: the anonymous lines are not last")
        cards = body.height - anon
        groups = [(MIXED, body.slice(0, cards))] if cards else []
        if anon:
            groups.append((None, body.slice(cards)))
    else:
        groups = [
            (bucket, body.slice(start, n))
            for bucket, start, n in zip(runs["value"].to_list(), starts, runs["len"].to_list())
        ]

    def write(item: tuple[int | None, pl.DataFrame]) -> dict:
        bucket, part = item
        name = f"{_directory(bucket)}/{prefix}-{tag}{_TRANSIENT if bucket == MIXED else '.parquet'}"
        _write_file(root / name, part)
        _sync_dirs([root / name])  # here, not after the pool: 65 directory syncs one after another were 0.3 s
        return manifest_row(name, bucket, import_id, part)

    # polars' writer releases the GIL: a few files at once
    with ThreadPoolExecutor(max_workers=4) as pool:
        rows = list(pool.map(write, groups))
    if held is not None:
        held.update((row["file_name"], part) for row, (_, part) in zip(rows, groups))
    fault_point("after-parquet")
    return pl.DataFrame(rows, schema=MANIFEST_SCHEMA)


def manifest_row(file_name: str, bucket: int | None, import_id: int | None, lines: pl.DataFrame) -> dict:
    """The MANIFEST_SCHEMA row of a part file holding `lines` (PART_SCHEMA)."""
    days, keys = lines["day"], lines["basket_key"]
    return {
        "file_name": file_name,
        "bucket": bucket,
        "import_id": import_id,
        "line_count": lines.height,
        "first_day": days.min(),
        "last_day": days.max(),
        "first_basket": keys.min(),
        "last_basket": keys.max(),
    }


def record_parts(bulk: BulkSession, parts: pl.DataFrame) -> None:
    """Insert manifest rows inside `bulk`'s transaction (the commit makes the files part of history)."""
    if parts.height:
        bulk.append("history_parts", parts.select(list(MANIFEST_SCHEMA)))


# ---------------------------------------------------------------- reading


def manifest(
    reader: Gateway | BulkSession,
    buckets: list[int] | None = None,
    end: dt.date | None = None,
    start: dt.date | None = None,
    anon: bool = False,
) -> pl.DataFrame:
    """Committed part files (MANIFEST_SCHEMA) of `buckets` (None: all card holders' buckets; `anon`:
    the anonymous bucket too) whose days meet [start, end), by file_name. Files of every bucket
    (MIXED) are among them: their readers keep only the lines they want (`card_holders`)."""
    where = []
    if buckets is not None:
        listed = f"bucket IN ({', '.join(str(int(b)) for b in buckets)}) OR " if buckets else ""
        where.append(f"({listed}bucket = {MIXED})")
    if not anon:
        where.append("bucket IS NOT NULL")
    if end is not None:
        where.append(f"first_day < '{end.isoformat()}'")
    if start is not None:
        where.append(f"last_day >= '{start.isoformat()}'")
    clause = f" WHERE {' AND '.join(where)}" if where else ""
    sql = f"SELECT {', '.join(MANIFEST_SCHEMA)} FROM history_parts{clause} ORDER BY file_name"
    return reader.read(sql, MANIFEST_SCHEMA)


def part_files(
    db: Gateway,
    partition: tuple[int, int] | None = None,
    end: dt.date | None = None,
    start: dt.date | None = None,
) -> list[tuple[str, int]]:
    """`part_paths`' files with the bucket of each: (absolute path, bucket), by first day (then name).

    In time order: a chain's imports of its weeks or months, merged in stretches of time
    (`_merge_plan`), are then each customer's lines in history's order once stably sorted by
    customer (`_in_history_order`'s cheap path; by name, the compacted files came in no order).
    A reader of some customers only (those with customer_key % m == s) skips the files of buckets
    that cannot hold them (`engine.stages.StoreSource.strata_history`); a file of bucket MIXED may
    hold anyone's lines.
    """
    store = db.history_store()
    files = manifest(db, partition_buckets(store.buckets, partition), end, start).sort(
        "first_day", "last_day", "file_name"
    )
    return [(str(store.path(f)), int(b)) for f, b in files.select("file_name", "bucket").iter_rows()]


def part_paths(
    db: Gateway,
    partition: tuple[int, int] | None = None,
    end: dt.date | None = None,
    start: dt.date | None = None,
) -> list[str]:
    """Absolute paths of the committed part files of partition (p, n) (None: all card holders') that
    may hold days in [start, end): what a worker reads with `read_parts` (with `card_holders`' filter
    when one of them is a file of every bucket, MIXED: it holds other partitions' lines too).

    The partition's checkout lines are not in them: `engine.db.Gateway.db_lines` reads those.
    """
    return [path for path, _ in part_files(db, partition, end, start)]


def card_holders(partition: tuple[int, int] | None) -> pl.Expr:
    """The lines of partition (p, n)'s customers (customer_key % n == p; None: every card holder's):
    what a reader of a file of every bucket (MIXED) keeps."""
    if partition is None:
        return pl.col("customer_key").is_not_null()
    p, n = partition
    return (pl.col("customer_key") % n) == p


def read_parts(
    paths: list[str],
    end: dt.date | None = None,
    start: dt.date | None = None,
    customers: pl.Series | None = None,
    columns: list[str] | None = None,
    where: pl.Expr | None = None,
) -> pl.DataFrame:
    """The lines with day in [start, end) of the part files `paths` (PART_SCHEMA, in file order).

    `customers`: only these customer_keys' lines (files are sorted by customer: row groups that
    cannot hold them are skipped). `columns`: only these columns. `where`: only the lines it holds
    for (an expression of PART_SCHEMA's columns, applied as the files are read).
    """
    columns = columns or list(PART_SCHEMA)
    if not paths:
        return pl.DataFrame(schema={c: PART_SCHEMA[c] for c in columns})
    scan = scan_parts(paths)
    if end is not None:
        scan = scan.filter(pl.col("day") < end)
    if start is not None:
        scan = scan.filter(pl.col("day") >= start)
    if customers is not None:
        scan = scan.filter(pl.col("customer_key").is_in(customers.implode()))
    if where is not None:
        scan = scan.filter(where)
    return scan.select(columns).collect()


def to_history(lines: pl.DataFrame, products: pl.DataFrame, columns: Sequence[str] | None = None) -> pl.DataFrame:
    """History's frame of `lines` (PART_SCHEMA: `read_parts`' and `Gateway.db_lines`' together):
    HISTORY_COLUMNS (`columns`: only these), sorted by customer_key, day, basket_key, line_no (a
    total order: the same frame whichever files and partitions the lines came from). `lines` need
    only the order's columns and those of `columns` that are not the product's."""
    from engine.db import with_products

    return with_products(_in_history_order(lines), products, sort=False, columns=columns)


def line_columns(columns: Sequence[str]) -> list[str]:
    """The PART_SCHEMA columns `to_history(..., columns=columns)` reads of the lines: the order's, the
    lines' own among `columns`, and product_key when a product's attribute is among them."""
    from engine.db import PRODUCT_ATTRIBUTES

    joined = any(c in PRODUCT_ATTRIBUTES for c in columns)
    return [c for c in PART_SCHEMA if c in _SORT or c in columns or (joined and c == "product_key")]


def _in_history_order(lines: pl.DataFrame) -> pl.DataFrame:
    """`lines` sorted by customer_key, day, basket_key, line_no.

    Part files are written in that order and customers do not share a bucket, so a stable sort
    by customer alone usually orders them (one file a bucket, checkout lines not interleaved):
    checked, and else the full sort. 1.3M lines: 0.05 s instead of 0.35 s (CPU).
    """
    by_customer = lines.sort("customer_key", maintain_order=True)
    prev = [pl.col(c).shift(1) for c in _SORT]
    col = [pl.col(c) for c in _SORT]
    # row i comes after row i-1: a later customer, or the same one and (day, basket, line) not smaller
    # (ne_missing: two anonymous lines are the same "customer"; `!=` of nulls is null, which `all` skipped)
    after = col[0].ne_missing(prev[0]) | (
        (col[1] > prev[1]) | ((col[1] == prev[1]) & ((col[2] > prev[2]) | ((col[2] == prev[2]) & (col[3] > prev[3]))))
    )
    if by_customer.height < 2 or by_customer.select(after.slice(1).all()).item():
        return by_customer
    return lines.sort(_SORT)


def held_lines(bulk: BulkSession, store: HistoryStore, baskets: pl.DataFrame) -> pl.DataFrame:
    """The lines the part files hold for `baskets` (basket_key, customer_key, day): PART_SCHEMA.

    Only the files of the baskets' buckets whose day and basket-key ranges can hold them are read.
    """
    if baskets.height == 0:
        return pl.DataFrame(schema=PART_SCHEMA)
    wanted = baskets.select("basket_key", "customer_key", "day").with_columns(bucket_of(store.buckets))
    files = manifest(bulk, None, anon=True).filter(
        (pl.col("first_day") <= wanted["day"].max())
        & (pl.col("last_day") >= wanted["day"].min())
        & (pl.col("first_basket") <= wanted["basket_key"].max())
        & (pl.col("last_basket") >= wanted["basket_key"].min())
    )
    files = pl.concat(
        [
            files.join(
                wanted.select("__bucket").unique(), left_on="bucket", right_on="__bucket", how="semi", nulls_equal=True
            ),
            files.filter(pl.col("bucket") == MIXED),
        ]
    ).sort("file_name")
    if files.height == 0:
        return pl.DataFrame(schema=PART_SCHEMA)
    keys = wanted["basket_key"]
    lines = (
        scan_parts([str(store.path(f)) for f in files["file_name"]])
        .filter(pl.col("basket_key").is_between(keys.min(), keys.max()))
        .collect()
    )
    return lines.join(wanted.select("basket_key"), on="basket_key", how="semi").select(list(PART_SCHEMA))


# ---------------------------------------------------------------- compaction


@dataclass(frozen=True)
class Compacted:
    """What `compact` did: buckets rewritten, part files before and after, orphan files removed."""

    buckets: int = 0
    files_before: int = 0
    files_after: int = 0
    orphans: int = 0

    def describe(self) -> str:
        return (
            f"history compacted: {self.buckets} buckets, {self.files_before} part files into {self.files_after}; "
            f"{self.orphans} orphan files removed"
        )


def crowded(db: Gateway, max_parts: int, merge_lines: int = DEFAULT_MERGE_LINES) -> bool:
    """Whether a bucket holds more than `max_parts` open part files (`_merge_plan`: under `merge_lines` // 2
    lines), or a file of every bucket (MIXED) is still to be split."""
    found = db.read_small(
        "SELECT COUNT(*) AS n FROM (SELECT bucket FROM history_parts GROUP BY bucket "
        f"HAVING SUM(CASE WHEN line_count < {int(merge_lines) // 2} THEN 1 ELSE 0 END) > {int(max_parts)} "
        f"OR bucket = {MIXED}) c",
        {"n": pl.Int64},
    )
    return bool(found["n"][0])


def _merge_plan(sizes: Sequence[int], max_parts: int, merge_lines: int) -> list[list[int]]:
    """Which of a bucket's files to merge: groups of indices into `sizes` (the files' line counts, in time
    order: `compact`'s), each to become one file; [] when no more than `max_parts` of them are open.

    Size tiers. A file of at least `merge_lines` // 2 lines is settled: never merged again, so no merge
    reads more than `merge_lines` lines (~190 bytes a line at the merge's peak) and a bucket's history
    is not rewritten whole as it grows (the 1M chain's 49th file rewrote every bucket's 10.6M lines:
    19.7 GB). The others are open; when more than `max_parts` are, merges bring them down to half of
    `max_parts` (at least 1).

    Each merge is a run of open files next to each other in time: for a chain importing its weeks or
    months in turn, a stretch of time, so a bucket's files keep to their own days and its readers'
    stable sort by customer is history's order (`_in_history_order`; merging the smallest files
    wherever they lay left a month's file between two merged ones: the real panel imported month by
    month then read back by the full sort, 0.39 s instead of 0.25). Runs are chosen one at a time
    (`_best_run`), each the one rewriting the fewest lines for each open file it takes away (lines of
    a run already chosen cost nothing again: runs grow), of no more files than bring the open ones to
    the target (one more when they settle), never across a settled file (its days would be spanned)
    unless no other is left. Small new files thus merge among themselves before a larger older one is
    rewritten, and a line is rewritten about log(merge_lines / its file's lines) times. Each open
    file is under half of `merge_lines`, so two neighbouring open runs fit together: the target is
    always reached.
    """
    settled = merge_lines // 2
    if sum(n < settled for n in sizes) <= max_parts:
        return []
    target = max(1, max_parts // 2)
    runs = [[i] for i in range(len(sizes))]  # in time order; a run of more than one file is a merge chosen
    lines = list(sizes)
    while (left := sum(n < settled for n in lines)) > target:
        need = left - target
        # windows of open runs between settled ones (a merge across a settled file would span its days);
        # when none is left, across them (isolated open files: never seen in practice, but never stuck)
        for across in (False, True):
            best = _best_run(runs, lines, need, settled, merge_lines, across)
            if best is not None:
                break
        if best is None:  # cannot happen (two neighbouring open runs always fit), but never loop
            break
        chosen, total = best
        runs[chosen[0]], lines[chosen[0]] = [i for r in chosen for i in runs[r]], total
        for r in reversed(chosen[1:]):
            del runs[r], lines[r]
    return [sorted(run) for run in runs if len(run) > 1]


def _best_run(
    runs: list[list[int]], lines: list[int], need: int, settled: int, merge_lines: int, across: bool
) -> tuple[list[int], int] | None:
    """`_merge_plan`'s next merge: (the runs to merge, their lines), or None.

    From each open run, the longest window of neighbouring open runs (`across`: skipping settled ones,
    else stopping at them) of at most `merge_lines` lines and `need` + 1 runs; of those, the one
    rewriting the fewest lines for each open run it takes away (a run already chosen costs nothing
    again), then the one taking away the most, then the oldest. Whole arrays (numpy): an import of
    2,000 files a bucket is planned in milliseconds, not by a loop over every window (~1 min).
    """
    size = np.asarray(lines, dtype=np.int64)
    at = np.flatnonzero(size < settled) if across else np.arange(size.size)
    size = size[at]
    cost = np.where([len(runs[r]) == 1 for r in at], size, 0)
    is_open = size < settled
    n = size.size
    start = np.arange(n)
    total_to = np.concatenate([[0], np.cumsum(size)])
    cost_to = np.concatenate([[0], np.cumsum(cost)])
    # each window's end (exclusive): the first settled run after its start, `need` + 1 runs, `merge_lines` lines
    settled_at = np.where(is_open, n, start)
    first_settled = np.minimum.accumulate(settled_at[::-1])[::-1]
    by_lines = np.searchsorted(total_to, total_to[:-1] + merge_lines, side="right") - 1
    end = np.minimum(np.minimum(first_settled, start + need + 1), by_lines)
    total = total_to[end] - total_to[start]
    gain = (end - start) - (total < settled)  # open runs taken away
    valid = is_open & (end - start >= 2)
    if not valid.any():
        return None
    ratio = np.where(valid, (cost_to[end] - cost_to[start]) / np.maximum(gain, 1), np.inf)
    best = int(np.lexsort((start, -gain, ratio))[0])
    return [int(r) for r in at[best : end[best]]], int(total[best])


def compact(
    db: Gateway,
    max_parts: int = 1,
    imports: list[int] | None = None,
    held: dict[str, pl.DataFrame] | None = None,
    merge_lines: int = DEFAULT_MERGE_LINES,
) -> Compacted:
    """Merge the open part files of each bucket holding more than `max_parts` of them, the smallest first
    (`_merge_plan`: size tiers; files of `merge_lines` // 2 lines or more are settled and kept), in one
    transaction; split the files of every bucket (MIXED) into their buckets' files: one new file a
    bucket, merged with some of the bucket's own files only when those and it would be more than
    `max_parts` open files.

    `imports`: only the part files these imports wrote are merged (an import of many files
    leaves one file a bucket, not one per file, without rewriting older history). `held`: the
    lines of part files the caller still holds (`write_parts`' `held`), by file_name: a merge
    whose files are all there is made from them, not read back (an import of 11 files: 704
    small files, ~0.25 s of CPU). A MIXED file is read (or taken from `held`) once, whatever the
    number of buckets it holds.

    The new files are written under the store's lock, then one transaction swaps the manifest
    rows (old out, new in); the old files are deleted after it commits. Files no manifest row
    names (a killed writer's) are deleted too. A reader that listed the old files just before
    the swap retries with the new ones (`engine.db.Gateway.history`).
    """
    store = db.history_store()  # before the bulk session: on SQLite the two must not overlap
    with db.bulk() as bulk:
        lock(bulk)
        swap = compact_in(bulk, store, max_parts, imports, held, merge_lines)
        swap.record(bulk)
        fault_point("before-compact-commit")
    return swap.finish(store)


@dataclass
class Swap:
    """A compaction's files written (`compact_in`), for its transaction to swap in (`record`) and, once it
    has committed, the files they replace to be deleted (`finish`)."""

    replaced: list[str]  # manifest file names taken out
    new_rows: list[dict]  # MANIFEST_SCHEMA rows put in
    orphans: list[Path]  # files no manifest row named when the lock was taken
    buckets: int  # buckets rewritten

    def record(self, bulk: BulkSession) -> None:
        """The manifest swap, inside the transaction that holds the store's lock."""
        for i in range(0, len(self.replaced), 1000):  # one statement, not one a bucket
            quoted = ", ".join("'" + f.replace("'", "''") + "'" for f in self.replaced[i : i + 1000])
            bulk.execute(f"DELETE FROM history_parts WHERE file_name IN ({quoted})")
        if self.new_rows:
            record_parts(bulk, pl.DataFrame(self.new_rows, schema=MANIFEST_SCHEMA))

    def finish(self, store: HistoryStore) -> Compacted:
        """Delete the replaced files and the orphans (after the commit)."""
        paths = [*map(store.path, self.replaced), *self.orphans]
        with ThreadPoolExecutor(max_workers=8) as pool:  # ~1.5 ms each here: 715 files one by one were 1 s
            list(pool.map(lambda path: path.unlink(missing_ok=True), paths))
        return Compacted(self.buckets, len(self.replaced), len(self.new_rows), len(self.orphans))


def compact_in(
    bulk: BulkSession,
    store: HistoryStore,
    max_parts: int = 1,
    imports: list[int] | None = None,
    held: dict[str, pl.DataFrame] | None = None,
    merge_lines: int = DEFAULT_MERGE_LINES,
    pending: tuple[dict, pl.DataFrame] | None = None,
) -> Swap:
    """`compact`'s files, written inside `bulk`'s transaction, which holds the store's lock (`lock`).

    `pending`: (manifest row, lines) of lines not in any file yet, PART_SCHEMA, taken as one more file
    of every bucket (MIXED) of that row's place in time: an import's last file, whose transaction
    is then the compaction's too (`engine.ingest.import_files`): its lines go straight into the
    buckets' new files. The swap is not recorded yet (`Swap.record`).
    """
    return write_swap(store, listed_parts(bulk, store, imports), max_parts, held, merge_lines, pending)


@dataclass(frozen=True)
class Listed:
    """What a compaction merges (`listed_parts`): the manifest rows, and the files no row names."""

    files: pl.DataFrame
    orphans: list[Path]


def listed_parts(bulk: BulkSession, store: HistoryStore, imports: list[int] | None = None) -> Listed:
    """`compact_in`'s reading of the database (the transaction holds the store's lock): the part files
    (of `imports` only, when given) and the orphans. The rest (`write_swap`) touches no connection."""
    files = manifest(bulk, None, anon=True)
    named = {str(store.path(f)) for f in files["file_name"]}
    orphans = _orphans(store, named)
    if imports is not None:
        files = files.filter(pl.col("import_id").is_in(imports))
    return Listed(files, orphans)


def write_swap(
    store: HistoryStore,
    listed: Listed,
    max_parts: int = 1,
    held: dict[str, pl.DataFrame] | None = None,
    merge_lines: int = DEFAULT_MERGE_LINES,
    pending: tuple[dict, pl.DataFrame] | None = None,
) -> Swap:
    """`compact_in`'s merges of the files `listed`, written; no database (a thread may be using the
    transaction's connection meanwhile, as the import's baskets insert does)."""
    files, orphans = listed.files, listed.orphans
    mixed = files.filter(pl.col("bucket") == MIXED)
    files = files.filter(pl.col("bucket").ne_missing(MIXED))
    # each bucket's files by one split, not a filter of the manifest a bucket
    of_bucket = {key[0]: group for key, group in files.partition_by("bucket", as_dict=True).items()}
    # each MIXED slice with its file's place in that order: merged in its place in time, not after the
    # bucket's own files (an import whose held lines ran out has its first files MIXED, its later ones not)
    spread: dict[int | None, list[tuple[tuple, pl.DataFrame]]] = {}
    for i, row in enumerate(mixed.iter_rows(named=True)):
        for bucket, parts in _split_mixed(store, mixed.slice(i, 1), held).items():
            spread.setdefault(bucket, []).extend((_in_time(row), part) for part in parts)
    if pending is not None and pending[1].height:
        for bucket, part in _by_bucket(store, pending[1]).items():
            spread.setdefault(bucket, []).append((_in_time(pending[0]), part))
    # the merges: (bucket, the bucket's files to merge, whether the MIXED files' slices go in it); a
    # bucket's slices are one more file of it, merged like the others (`_merge_plan`) or written alone
    jobs: list[tuple[int | None, list[dict], bool]] = []
    for bucket in sorted({*of_bucket, *spread}, key=lambda b: (b is None, b)):
        rows = list(of_bucket[bucket].iter_rows(named=True)) if bucket in of_bucket else []
        # (place in time, lines, manifest row; None: the MIXED files' slices, one candidate file), in time
        # order (`_in_time`): the merges' stretches (`_merge_plan`) and the order their lines are put
        # together in, so that a bucket's lines are usually in history's order already (`_in_history_order`)
        items = [(_in_time(row), row["line_count"], row) for row in rows]
        if bucket in spread:
            slices = spread[bucket]
            items.append((min(key for key, _ in slices), sum(part.height for _, part in slices), None))
        items.sort(key=lambda item: item[0])
        groups = _merge_plan([n for _, n, _ in items], max_parts, merge_lines)
        for group in groups:
            members = [items[i][2] for i in group]
            jobs.append((bucket, [row for row in members if row is not None], None in members))
        if bucket in spread and not any(items[i][2] is None for group in groups for i in group):
            jobs.append((bucket, [], True))

    def merge(job: tuple[int | None, list[dict], bool]) -> dict:
        bucket, rows, with_spread = job
        names = [row["file_name"] for row in rows]
        if held is not None and all(f in held for f in names):
            blocks = [(_in_time(row), held[row["file_name"]]) for row in rows]  # the files' lines, in file order
        else:  # read back at once: one block, in file order
            paths = [str(store.path(f)) for f in names]
            blocks = [(_in_time(rows[0]), scan_parts(paths).collect())] if rows else []
        blocks = sorted([*blocks, *(spread[bucket] if with_spread else [])], key=lambda block: block[0])
        lines = pl.concat([frame for _, frame in blocks]).select(list(PART_SCHEMA))
        # the lines read let go once sorted (`blocks` and `lines` share them): the write holds one copy
        blocks = None  # type: ignore[assignment]
        # files (and slices) in time order: a stable sort by customer is usually history's order
        # (checked; else the full sort)
        part = _in_history_order(lines)
        lines = None  # type: ignore[assignment]
        name = f"{_directory(bucket)}/c{secrets.token_hex(6)}.parquet"
        _write_file(store.path(name), part)
        _sync_dirs([store.path(name)])
        return manifest_row(name, bucket, None, part)

    # merges at once, as `write_parts` writes them (polars releases the GIL): 65 buckets one after
    # another were 2.4 s of an 11-file import; each reads at most `merge_lines` lines (and the slices)
    with ThreadPoolExecutor(max_workers=4) as pool:
        new_rows = list(pool.map(merge, jobs))
    replaced = [row["file_name"] for _, rows, _ in jobs for row in rows] + mixed["file_name"].to_list()
    return Swap(replaced, new_rows, orphans, len({bucket for bucket, _, _ in jobs}))


def _in_time(row: dict) -> tuple:
    """A manifest row's place in time (`compact`'s order): by first and last day, then as written. Not
    the order written alone: a compaction's file (no import) is written after the imports it merged but
    before those after them, which hold days after its own."""
    return (row["first_day"], row["last_day"], row["import_id"] is not None, row["import_id"] or 0, row["file_name"])


def _split_mixed(
    store: HistoryStore, mixed: pl.DataFrame, held: dict[str, pl.DataFrame] | None
) -> dict[int | None, list[pl.DataFrame]]:
    """The lines of the MIXED files `mixed` (manifest rows, in the order to merge) by bucket (None: the
    anonymous one): each bucket's slices in that order. Each file read once (or taken from `held`)."""
    spread: dict[int | None, list[pl.DataFrame]] = {}
    for name in mixed["file_name"]:
        lines = held[name] if held is not None and name in held else scan_parts([str(store.path(name))]).collect()
        for bucket, part in _by_bucket(store, lines).items():
            spread.setdefault(bucket, []).append(part)
    return spread


def _by_bucket(store: HistoryStore, lines: pl.DataFrame) -> dict[int | None, pl.DataFrame]:
    """`lines` (PART_SCHEMA) by bucket (None: the anonymous one), each bucket's in their order: slices
    when they come by bucket (as `write_parts` writes a MIXED file), else a split."""
    lines = lines.select(list(PART_SCHEMA))
    runs = lines.select(bucket_of(store.buckets).rle()).unnest("__bucket")
    if runs["value"].n_unique() == runs.height:  # by bucket: slices
        starts = [0, *runs["len"].cum_sum().to_list()[:-1]]
        return {
            bucket: lines.slice(at, n) for bucket, at, n in zip(runs["value"].to_list(), starts, runs["len"].to_list())
        }
    keyed = lines.with_columns(bucket_of(store.buckets))
    split = keyed.partition_by("__bucket", as_dict=True, maintain_order=True)
    return {bucket: part.drop("__bucket") for (bucket,), part in split.items()}


def _orphans(store: HistoryStore, named: set[str]) -> list[Path]:
    """Files under the store's bucket directories that no manifest row names (written by a killed writer)."""
    if store.root is None or not store.root.is_dir():
        return []
    return [
        p
        for p in store.root.glob("bucket=*/*")
        if p.is_file() and (p.suffix in (".parquet", _TRANSIENT, ".tmp")) and str(p) not in named
    ]


def every_line(db: Gateway) -> pl.DataFrame:
    """Every line history holds: the committed part files' (the anonymous bucket's too) and
    basket_lines' (the checkout's), PART_SCHEMA, by basket_key and line_no.

    For checks and tests of the import; the batch reads `engine.db.Gateway.history`.
    """
    store = db.history_store()
    with db.reading():
        files = manifest(db, None, anon=True)
        in_db = db.read(f"SELECT {', '.join(PART_SCHEMA)} FROM basket_lines", PART_SCHEMA)
    parts = read_parts([str(store.path(f)) for f in files["file_name"]])
    return pl.concat([parts, in_db]).sort("basket_key", "line_no")
