"""Features of the next-window ranker from integer-coded purchase occasions.

A purchase occasion is a distinct (customer, category, day) with a line of positive quantity
(as in `cycles.occasions`). The line items are turned once into one sorted int64 array of
packed keys (customer_key | category code | day): one sort, no string work per line. Every
feature of a cutoff is then a segment sum over that array (numpy `add.reduceat` over the runs
of one pair, or one customer), so a cutoff costs a few passes over its occasions whatever the
number of customers, and the training cutoffs of a sample are slices of the same arrays.

Customer features (trips, i.e. distinct days with a purchase) come from a customer x day
bitmap and its running sum: any window's count is a difference of two columns.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np
import polars as pl

from cycles.occasions import DAY_BITS, OccasionKeys

__all__ = ["DAY_BITS", "Occasions", "code_occasions", "occasions_of", "customer_features", "pair_features"]
_F = np.float32


@dataclass(frozen=True)
class Occasions:
    """Purchase occasions sorted by pair then day.

    pair: int64, customer code << cat_bits | category code; day: int32 days since 1970;
    customer_keys: int64 customer_key of each customer code (codes are 0..n-1 when the keys had to
    be re-coded, else the key itself and customer_keys is None); categories: cat (UInt32 code,
    in sorted name order), category (String)."""

    pair: np.ndarray
    day: np.ndarray
    cat_bits: int
    categories: pl.DataFrame
    customer_keys: np.ndarray | None

    def customer(self, pair: np.ndarray) -> np.ndarray:
        """customer_key of packed pair codes."""
        code = pair >> self.cat_bits
        return code if self.customer_keys is None else self.customer_keys[code]

    def cat(self, pair: np.ndarray) -> np.ndarray:
        return (pair & ((1 << self.cat_bits) - 1)).astype(np.uint32)

    def between(self, lo: int, hi: int) -> Occasions:
        """The occasions with lo <= day < hi (same codes)."""
        keep = (self.day >= lo) & (self.day < hi)
        if keep.all():
            return self
        return Occasions(self.pair[keep], self.day[keep], self.cat_bits, self.categories, self.customer_keys)

    def split(self, n: int) -> list[Occasions]:
        """At most n parts of about equal size, each a run of whole customers (views, no copies): every
        feature of a pair depends on its customer's occasions only, so the parts' features are the
        rows of the whole's."""
        size = self.pair.size
        if n <= 1 or size == 0:
            return [self]
        cust = self.pair >> self.cat_bits
        cuts = np.searchsorted(cust, cust[np.linspace(0, size - 1, n + 1).astype(np.int64)[1:-1]], side="left")
        cuts = np.unique(np.r_[0, cuts, size])
        return [
            Occasions(self.pair[lo:hi], self.day[lo:hi], self.cat_bits, self.categories, self.customer_keys)
            for lo, hi in zip(cuts[:-1], cuts[1:], strict=True)
            if hi > lo
        ]


def code_occasions(lines: pl.LazyFrame, lo: int | None, hi: int) -> Occasions:
    """Occasions of line items (customer_key, day, product_key, category, quantity) with lo <= day < hi
    (days since 1970; lo None: from the first line).

    Categories are coded through product_key (a group-by over an integer key, then an integer
    join), so no string is hashed per line."""
    day = pl.col("day").cast(pl.Int32)
    keep = (pl.col("quantity") > 0) & (day < hi) & (True if lo is None else day >= lo)
    lines = lines.filter(keep)
    products = lines.group_by("product_key").agg(pl.col("category").first()).collect()
    categories = (
        products.select(pl.col("category").unique().sort())
        .with_row_index("cat")
        .with_columns(pl.col("cat").cast(pl.UInt32))
    )
    lut = products.join(categories, on="category").select("product_key", pl.col("cat").cast(pl.Int64))
    cat_bits = max(1, int(categories.height).bit_length())
    bounds = (
        lines.select(
            pl.col("customer_key").min().alias("k0"), pl.col("customer_key").max().alias("k1"), day.min().alias("d0")
        )
        .collect()
        .row(0)
    )
    k0, k1, d0 = bounds
    if d0 is None:
        return Occasions(np.zeros(0, np.int64), np.zeros(0, np.int32), cat_bits, categories, None)
    customer_keys = None
    cust = pl.col("customer_key")
    if k0 < 0 or k1 >= 1 << (62 - DAY_BITS - cat_bits):
        # keys that do not pack: code customers 0..n-1 (sorted by key, so the order is the keys')
        customer_keys = lines.select(pl.col("customer_key").unique().sort()).collect()["customer_key"].to_numpy()
        cust = pl.col("_code")
    frame = lines.select("customer_key", "product_key", (day - d0).alias("d"))
    if customer_keys is not None:
        codes = pl.DataFrame({"customer_key": customer_keys, "_code": np.arange(customer_keys.size, dtype=np.int64)})
        frame = frame.join(codes.lazy(), on="customer_key")
    key = (
        frame.join(lut.lazy(), on="product_key", how="inner")
        .select(
            (
                cust.cast(pl.Int64) * (1 << (cat_bits + DAY_BITS))
                + pl.col("cat") * (1 << DAY_BITS)
                + pl.col("d").cast(pl.Int64)
            ).alias("key")
        )
        .collect(engine="streaming")["key"]
        .sort()
    )  # streaming: no full copy of the lines' columns
    # same-day repeats are one occasion; the pair and day halves of the keys in the same pass
    # (polars' threads: a third of the time of the numpy passes on 60 M keys)
    occ = (
        key.to_frame()
        .lazy()
        .filter(pl.col("key").diff().fill_null(1) != 0)
        .select(
            (pl.col("key") // (1 << DAY_BITS)).alias("pair"),
            ((pl.col("key") % (1 << DAY_BITS)).cast(pl.Int32) + d0).alias("day"),
        )
        .collect()
    )
    return Occasions(occ["pair"].to_numpy(), occ["day"].to_numpy(), cat_bits, categories, customer_keys)


def occasions_of(keys: OccasionKeys) -> Occasions:
    """`cycles.occasions.occasion_keys` as Occasions, without sorting the lines again: the keys are
    already in pair, day order (customer_key << cat_bits | category code, the codes in sorted name
    order as `code_occasions`' are; categories with no occasion keep their code)."""
    categories = keys.codes.select(pl.col("cat_code").cast(pl.UInt32).alias("cat"), "category").unique().sort("cat")
    if keys.first_day is None or keys.key.size == 0:
        return Occasions(np.zeros(0, np.int64), np.zeros(0, np.int32), keys.cat_bits, categories, None)
    d0 = (keys.first_day - dt.date(1970, 1, 1)).days
    day = (keys.key & ((1 << DAY_BITS) - 1)).astype(np.int32) + np.int32(d0)
    return Occasions(keys.key >> DAY_BITS, day, keys.cat_bits, categories, None)


def _starts(sorted_ids: np.ndarray) -> np.ndarray:
    if sorted_ids.size == 0:
        return np.zeros(0, np.int64)
    return np.flatnonzero(np.r_[True, sorted_ids[1:] != sorted_ids[:-1]])


def _segment_sum(values: np.ndarray, starts: np.ndarray) -> np.ndarray:
    if starts.size == 0:
        return np.zeros(0, values.dtype)
    return np.add.reduceat(values, starts)


def _trips(o: Occasions, c: int, lookback: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """(customer index of each occasion, customers x (lookback + 1) running count of trips, where
    column j counts the trips on days c - lookback .. c - lookback + j - 1, the start of each customer's
    occasions) for occasions in the lookback. Occasions sorted by pair are sorted by customer."""
    cust = o.pair >> o.cat_bits
    st = _starts(cust)
    idx = np.repeat(np.arange(st.size), np.diff(np.r_[st, cust.size]))
    trips = np.zeros((st.size, lookback + 1), np.int32)
    if cust.size:
        trips[idx, o.day - (c - lookback) + 1] = 1
    return idx, np.cumsum(trips, axis=1, dtype=np.int32, out=trips), st


def pair_features(
    occ: Occasions,
    c: int,
    lookback: int,
    recent: int,
    window: int,
    half_lives: tuple[float, ...],
    last_trips: tuple[int, ...] = (),
    logsum: bool = True,
) -> dict[str, np.ndarray]:
    """Per pair with an occasion in [c - lookback, c), in pair order: the pair code `pair`, `first_pd`,
    `last_d`, `n_occ`, `n_recent` (last `recent` days), `n_4w`, `n_window`, `rw_<h>` (sum of 0.5^(age/h)
    over occasions, h in half_lives), `n_intervals`, `interval_sum_days`, `interval_logsum` (only with
    `logsum`: the renewal priors' fit needs it, the ranker's features do not); with
    `last_trips`: `trips_since` (the customer's trips after the pair's last purchase) and `n_last<k>`
    (the pair's occasions among the customer's last k trips, k in last_trips)."""
    o = occ.between(c - lookback, c)
    pair, day = o.pair, o.day
    st = _starts(pair)
    n = pair.size
    age = (c - day).astype(np.intp)  # 1 .. lookback
    # per-occasion weights are gathers from tables over the lookback's ages (no exp2 or compare per
    # occasion; the same float32 values)
    ages = np.arange(lookback + 1, dtype=_F)

    def weighted(table: np.ndarray) -> np.ndarray:
        return _segment_sum(table.astype(_F)[age], st)

    out = {"pair": pair[st], "first_pd": day[st], "last_d": day[np.r_[st[1:], n] - 1] if n else day[:0]}
    out["n_occ"] = np.diff(np.r_[st, n]).astype(_F)
    out["n_recent"] = weighted(ages <= recent)
    out["n_4w"] = weighted(ages <= 28)
    out["n_window"] = weighted(ages <= window)
    for h in half_lives:
        out[f"rw_{h:g}"] = weighted(np.exp2(-ages / _F(h)))
    out["n_intervals"] = out["n_occ"].astype(np.float64) - 1
    out["interval_sum_days"] = (out["last_d"] - out["first_pd"]).astype(np.float64)
    if logsum:
        gap = np.zeros(n, np.float64)
        if n:
            same = np.r_[False, pair[1:] == pair[:-1]]
            gap[same] = np.log(np.arange(1, lookback + 1, dtype=np.float64))[np.diff(day)[same[1:]] - 1]
        out["interval_logsum"] = _segment_sum(gap, st)
    if last_trips:
        idx, cum, _ = _trips(o, c, lookback)
        total = cum[:, lookback]
        last_col = out["last_d"] - (c - lookback) + 1
        idx_pair = idx[st]
        out["trips_since"] = (total[idx_pair] - cum[idx_pair, last_col]).astype(_F)
        for k in last_trips:
            # column of the customer's k-th last trip: the columns with at least k trips after them
            # (0: fewer than k trips, all count)
            kth = (cum <= (total - k)[:, None]).sum(axis=1)
            out[f"n_last{k}"] = _segment_sum((day - (c - lookback) + 1 >= kth[idx]).astype(_F), st)
    return out


def customer_features(
    occ: Occasions, pair: np.ndarray, c: int, lookback: int, recent: int, n_recent: np.ndarray, n_4w: np.ndarray
) -> dict[str, np.ndarray]:
    """Per pair (the `pair` codes of `pair_features` at c, sorted), its customer's features at c:
    first_d, cust_last (first and last trip in the lookback), cust_days_all, cust_days_recent,
    cust_days_4w (trips = distinct days with a purchase), cust_cats_recent, cust_cats_4w (the
    customer's categories with a purchase in the last `recent` / 28 days)."""
    o = occ.between(c - lookback, c)
    cust_of_pair = pair >> occ.cat_bits
    pst = _starts(cust_of_pair)
    idx_pair = np.repeat(np.arange(pst.size), np.diff(np.r_[pst, pair.size]))
    cust = o.pair >> o.cat_bits
    st = _starts(cust)
    # a customers x days bitmap of trips (uint8: a quarter of the memory traffic of a running count)
    days = np.zeros((st.size, lookback), np.uint8)
    if cust.size:
        idx = np.cumsum(np.r_[True, cust[1:] != cust[:-1]]) - 1
        days[idx, o.day - (c - lookback)] = 1

    def count_since(n_days: int) -> np.ndarray:
        return days[:, max(lookback - n_days, 0) :].sum(axis=1, dtype=np.int32).astype(_F)

    cust = {
        "first_d": np.minimum.reduceat(o.day, st) if st.size else o.day[:0],
        "cust_last": np.maximum.reduceat(o.day, st) if st.size else o.day[:0],
        "cust_days_all": count_since(lookback),
        "cust_days_recent": count_since(recent),
        "cust_days_4w": count_since(28),
        "cust_cats_recent": np.bincount(idx_pair, weights=n_recent > 0, minlength=pst.size).astype(_F),
        "cust_cats_4w": np.bincount(idx_pair, weights=n_4w > 0, minlength=pst.size).astype(_F),
    }
    return {name: values[idx_pair] for name, values in cust.items()}


def _customer_matrix(pair: np.ndarray, cat_bits: int, n_cat: int, value: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(customers x categories float32 matrix of `value`, each row scaled to unit length; customer index
    of each pair). Pairs are sorted, so by customer."""
    st = _starts(pair >> cat_bits)
    idx = np.repeat(np.arange(st.size), np.diff(np.r_[st, pair.size]))
    m = np.zeros((st.size, n_cat), _F)
    m[idx, (pair & ((1 << cat_bits) - 1))] = value
    m /= np.maximum(np.linalg.norm(m, axis=1, keepdims=True), _F(1e-9))
    return m, idx


def neighbour_components(pair: np.ndarray, cat_bits: int, n_cat: int, value: np.ndarray, rank: int) -> np.ndarray:
    """(rank x categories) leading right singular vectors of the customers' normalised `value` rows:
    the directions along which customers' baskets vary together."""
    m, _ = _customer_matrix(pair, cat_bits, n_cat, value)
    if m.shape[0] == 0:
        return np.zeros((0, n_cat), _F)
    # the right singular vectors of m are the eigenvectors of the categories x categories Gram matrix
    # m'm: one small product instead of an SVD of the customers x categories matrix (10x less work)
    m = m.astype(np.float64)
    eigval, eigvec = np.linalg.eigh(m.T @ m)
    return eigvec[:, np.argsort(-eigval, kind="stable")[:rank]].T.astype(_F)


def neighbour_scores(pair: np.ndarray, cat_bits: int, components: np.ndarray, value: np.ndarray) -> np.ndarray:
    """Per pair: the low-rank reconstruction of its customer's normalised `value` row at its category
    (customers who buy alike smooth each other's frequencies; a neighbour-blended frequency in the
    spirit of TIFU-KNN, Hu et al. 2020, through a truncated SVD instead of explicit neighbours).
    `components` is (rank x categories) in this frame's category codes."""
    m, idx = _customer_matrix(pair, cat_bits, components.shape[1], value)
    fitted = (m @ components.T) @ components
    return fitted[idx, (pair & ((1 << cat_bits) - 1))]
