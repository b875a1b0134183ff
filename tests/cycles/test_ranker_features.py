"""The ranker's integer-coded features against hand-worked cases."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from cycles.ranker_features import code_occasions, customer_features, pair_features

EPOCH = dt.date(1970, 1, 1)
C = (dt.date(2025, 1, 10) - EPOCH).days  # cutoff: 2025-01-10


def _lines(rows: list[tuple[int, int, str, int]], quantity: float = 1.0) -> pl.LazyFrame:
    """(customer_key, day of January 2025, category, product_key) -> line items."""
    return pl.DataFrame(
        {
            "customer_key": [r[0] for r in rows],
            "day": [dt.date(2025, 1, r[1]) for r in rows],
            "category": [r[2] for r in rows],
            "product_key": [r[3] for r in rows],
            "quantity": [quantity] * len(rows),
        }
    ).lazy()


# customer 7: trips on the 1st, 2nd, 5th and 9th; A on the 1st and 5th (two products on the 5th: one
# occasion), B on the 2nd and 9th. Customer 3: one trip, the 3rd, both categories.
ROWS = [
    (7, 1, "A", 10),
    (7, 2, "B", 11),
    (7, 5, "A", 10),
    (7, 5, "A", 12),
    (7, 9, "B", 11),
    (3, 3, "A", 10),
    (3, 3, "B", 11),
]


def test_occasions_are_distinct_days_sorted_by_customer_category_day():
    occ = code_occasions(_lines(ROWS), None, C)
    assert occ.categories["category"].to_list() == ["A", "B"]
    got = list(
        zip(
            occ.customer(occ.pair).tolist(),
            occ.categories["category"].gather(occ.cat(occ.pair)).to_list(),
            [EPOCH + dt.timedelta(days=int(d)) for d in occ.day],
        )
    )
    assert got == [
        (3, "A", dt.date(2025, 1, 3)),
        (3, "B", dt.date(2025, 1, 3)),
        (7, "A", dt.date(2025, 1, 1)),
        (7, "A", dt.date(2025, 1, 5)),
        (7, "B", dt.date(2025, 1, 2)),
        (7, "B", dt.date(2025, 1, 9)),
    ]


def test_returns_and_days_outside_the_range_are_not_occasions():
    occ = code_occasions(
        pl.concat([_lines(ROWS), _lines([(7, 8, "A", 10)], quantity=-1.0)]), (dt.date(2025, 1, 2) - EPOCH).days, C
    )
    assert occ.day.min() == (dt.date(2025, 1, 2) - EPOCH).days
    assert occ.pair.size == 5


def test_keys_that_do_not_pack_are_recoded_in_key_order():
    rows = [(-5, 1, "A", 10), (2**60, 2, "A", 10), (4, 3, "B", 11)]
    occ = code_occasions(_lines(rows), None, C)
    assert occ.customer(occ.pair).tolist() == [-5, 4, 2**60]


def test_pair_counts_recency_weights_and_gaps():
    occ = code_occasions(_lines(ROWS), None, C)
    f = pair_features(occ, C, lookback=30, recent=14, window=7, half_lives=(7.0,), last_trips=(2, 3))
    # pairs in order: (3, A), (3, B), (7, A), (7, B)
    assert f["n_occ"].tolist() == [1, 1, 2, 2]
    assert f["n_window"].tolist() == [1, 1, 1, 1]  # the last 7 days: the 3rd to the 9th
    assert f["rw_7"][2] == pytest.approx(0.5 ** (9 / 7) + 0.5 ** (5 / 7), rel=1e-6)
    assert f["interval_sum_days"].tolist() == [0, 0, 4, 7]
    assert f["interval_logsum"][3] == pytest.approx(np.log(7))
    # customer 7's trips after A's last purchase (the 5th): the 9th; after B's (the 9th): none
    assert f["trips_since"].tolist() == [0, 0, 1, 0]
    # customer 7's last 2 trips are the 5th and 9th: A once, B once; last 3 add the 2nd (B)
    assert f["n_last2"].tolist() == [1, 1, 1, 1]
    assert f["n_last3"].tolist() == [1, 1, 1, 2]  # customer 3 has one trip: all of it counts


def test_customer_trips_and_categories():
    occ = code_occasions(_lines(ROWS), None, C)
    f = pair_features(occ, C, lookback=30, recent=7, window=7, half_lives=())
    cf = customer_features(occ, f["pair"], C, 30, 7, f["n_recent"], f["n_4w"])
    assert cf["cust_days_all"].tolist() == [1, 1, 4, 4]
    assert cf["cust_days_recent"].tolist() == [1, 1, 2, 2]  # the 3rd to the 9th: 3rd; 5th and 9th
    assert cf["cust_cats_recent"].tolist() == [2, 2, 2, 2]
    f = pair_features(occ, C, lookback=30, recent=5, window=7, half_lives=())
    cf = customer_features(occ, f["pair"], C, 30, 5, f["n_recent"], f["n_4w"])
    assert cf["cust_days_recent"].tolist() == [0, 0, 2, 2]  # the 5th to the 9th
    assert cf["cust_cats_recent"].tolist() == [0, 0, 2, 2]
    assert [EPOCH + dt.timedelta(days=int(d)) for d in cf["first_d"]][2] == dt.date(2025, 1, 1)
    assert [EPOCH + dt.timedelta(days=int(d)) for d in cf["cust_last"]][2] == dt.date(2025, 1, 9)
