"""The hold-out: a deterministic random share of qualifying customers who get no list.

A customer's draw is a 64-bit hash (splitmix64) of (customer_key, period_start): uniform,
the same on every re-run of the period, independent of who else qualifies, and different
from one period to the next. The customer is held out when draw / 2**64 < share.
"""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl

__all__ = ["holdout_draw", "assign_groups"]

_M = np.uint64(0xFFFFFFFFFFFFFFFF)


def _splitmix64(x: np.ndarray) -> np.ndarray:
    with np.errstate(over="ignore"):
        x = x + np.uint64(0x9E3779B97F4A7C15)
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def holdout_draw(customer_keys: pl.Series, period_start: dt.date) -> pl.Series:
    """Uniform [0, 1) draw per customer for `period_start` (Float64, same order)."""
    keys = customer_keys.cast(pl.Int64).to_numpy().astype(np.uint64)
    with np.errstate(over="ignore"):
        mixed = _splitmix64(_splitmix64(keys) ^ np.uint64(period_start.toordinal()))
    return pl.Series("draw", (mixed >> np.uint64(11)).astype(np.float64) / float(1 << 53))


def assign_groups(members: pl.DataFrame, period_start: dt.date, share: float) -> pl.DataFrame:
    """`members` (with customer_key) plus grp: 'holdout' for a `share` of them, else 'treated'."""
    draw = holdout_draw(members["customer_key"], period_start)
    return members.with_columns(pl.when(draw < share).then(pl.lit("holdout")).otherwise(pl.lit("treated")).alias("grp"))
