"""Anonymisation for manufacturer extracts: pseudonyms and small-group suppression.

Pure functions (frames in, frames out) used by `coupons.results` and `engine.extracts`:

* **Pseudonyms.** A household's pseudonym is HMAC-SHA256 of its customer id under a key
  derived from the chain's secret and the manufacturer's id (HMAC(secret, "listwise-extract-key:"
  + manufacturer_id), an HKDF-Expand with one block). The same household gets the same
  pseudonym in every extract of one manufacturer, a different one for every other
  manufacturer, and nobody without the secret can go back from a pseudonym to the id or link
  two manufacturers' panels.
* **Suppression.** A row describing fewer households than the minimum group is withheld
  (primary suppression). Rows that add up to a published total are then checked group by
  group: while the withheld rows of a group hold together fewer households than the
  minimum (so that total minus the published rows would pin them down), the smallest
  published row of the group is withheld as well (complementary suppression).
"""

from __future__ import annotations

import hashlib
import hmac

import polars as pl

__all__ = ["FLOOR_GROUP", "pseudonym_key", "pseudonyms", "suppress"]

FLOOR_GROUP = 10  # no setting may lower the minimum group below this (engine.extracts enforces it)
_PSEUDONYM_CHARS = 20  # hex characters kept (80 bits): no collision among millions of households


def pseudonym_key(secret: bytes, manufacturer_id: str) -> bytes:
    """The per-manufacturer key: HMAC-SHA256(secret, "listwise-extract-key:" + manufacturer_id)."""
    return hmac.new(secret, b"listwise-extract-key:" + manufacturer_id.encode("utf-8"), hashlib.sha256).digest()


def pseudonyms(customer_ids: pl.Series, key: bytes) -> pl.Series:
    """'h' + the first 20 hex digits of HMAC-SHA256(key, customer_id), one per id.

    Parameters
    ----------
    customer_ids
        The chain's customer ids (String).
    key
        `pseudonym_key(secret, manufacturer_id)`.

    Returns
    -------
    polars.Series
        String series named ``pseudonym``, in the order of `customer_ids`.

    Examples
    --------
    >>> k = pseudonym_key(b"secret", "M001")
    >>> pseudonyms(pl.Series(["C1"]), k)[0] == pseudonyms(pl.Series(["C1"]), k)[0]
    True
    """
    # HMAC has no polars expression: one call per distinct id, mapped back with a join-free replace.
    distinct = customer_ids.cast(pl.String).unique().drop_nulls().to_list()
    table = {c: "h" + hmac.new(key, c.encode("utf-8"), hashlib.sha256).hexdigest()[:_PSEUDONYM_CHARS] for c in distinct}
    return customer_ids.cast(pl.String).replace_strict(table, default=None, return_dtype=pl.String).alias("pseudonym")


def suppress(
    frame: pl.DataFrame,
    min_group: int,
    *,
    count: str = "households",
    group: tuple[str, ...] = (),
    is_total: str | None = None,
) -> tuple[pl.DataFrame, int]:
    """Rows safe to publish, and how many were withheld.

    Parameters
    ----------
    frame
        One row per published group; `count` holds its number of households.
    min_group
        Smallest number of households a published row may describe.
    count
        Column with the households of the row.
    group
        Columns naming a set of rows that add up to a published total row of the same
        set (the row whose `is_total` is true). Empty: rows are independent, only primary
        suppression applies.
    is_total
        Boolean column marking each set's total row.

    Returns
    -------
    (polars.DataFrame, int)
        The kept rows in their original order (without helper columns) and the number of
        rows withheld. Every kept row has ``count >= min_group``, and within a set the
        withheld detail rows hold together either nothing or at least `min_group` households,
        so that no withheld row can be computed back from the total.
    """
    withheld = pl.col(count) < min_group
    work = frame.with_row_index("_row").with_columns(withheld.alias("_out"))
    if group and is_total:
        detail = ~pl.col(is_total)
        for _ in range(work.height + 1):  # each pass withholds at least one more row or stops
            by = list(group)
            hidden_sum = (pl.when(detail & pl.col("_out")).then(pl.col(count)).otherwise(0)).sum().over(by)
            total_out = (pl.when(pl.col(is_total)).then(pl.col("_out")).otherwise(False)).any().over(by)
            exposed = (hidden_sum > 0) & (hidden_sum < min_group) & ~total_out
            # smallest still-published detail row of an exposed set (ties: the first row)
            order = pl.col(count).cast(pl.Int64) * (work.height + 1) + pl.col("_row").cast(pl.Int64)
            rank = pl.when(detail & ~pl.col("_out")).then(order).otherwise(None).rank("ordinal").over(by)
            candidates = exposed & detail & ~pl.col("_out") & (rank == 1)
            # a set with nothing left to withhold but its total: withhold the total
            nothing_left = exposed & ~(detail & ~pl.col("_out")).any().over(by) & pl.col(is_total)
            step = work.with_columns((pl.col("_out") | candidates | nothing_left).alias("_new"))
            if step["_new"].sum() == work["_out"].sum():
                break
            work = step.with_columns(pl.col("_new").alias("_out")).drop("_new")
    kept = work.filter(~pl.col("_out")).drop("_row", "_out")
    return kept, frame.height - kept.height
