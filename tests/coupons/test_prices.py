"""Shelf prices and unit costs from history where the catalogue is silent (coupons.prices), by hand."""

import datetime as dt

import numpy as np
import polars as pl
from polars.testing import assert_frame_equal

from coupons.prices import complete_prices, history_prices, price_counts, prices_from_counts

START = dt.date(2025, 7, 7)


def catalogue() -> pl.DataFrame:
    rows = [  # product_key, brand_type, price, cost
        (1, "national", None, None),  # priced by its lines
        (2, "store", None, None),  # priced by its lines, store-brand margin
        (3, "national", 500, None),  # the catalogue's price wins over its lines
        (4, "national", None, None),  # never sold: no price at all
        (5, "store", 800, 600),  # the catalogue says everything
        (6, None, None, None),  # unknown brand type: the national (lower) margin
    ]
    return pl.DataFrame(
        rows,
        schema={
            "product_key": pl.Int64,
            "brand_type": pl.String,
            "regular_price_cents": pl.Int64,
            "unit_cost_cents": pl.Int64,
        },
        orient="row",
    )


def lines() -> pl.DataFrame:
    d = START - dt.timedelta(days=3)
    rows = [  # product_key, day, quantity, amount_cents, discount_cents
        (1, d, 1.0, 120, 0),
        (1, d, 2.0, 360, 40),
        (1, d, 1.0, 300, 30),  # per unit 120, 200, 330 -> median 200
        (1, START - dt.timedelta(days=31), 1.0, 9_999, 0),  # before the 30-day window
        (1, START - dt.timedelta(days=30), 1.0, 200, None),  # first day of the window (null = 0)
        (1, START, 1.0, 9_999, 0),  # the period itself: not history
        (1, d, -1.0, -120, 0),  # a return
        (1, d, 1.0, 0, 0),  # given away: says nothing
        (2, d, 3.0, 900, 0),
        (2, d, 1.0, 250, 50),  # 300, 300
        (3, d, 1.0, 100, 0),
        (6, d, 1.0, 1000, 0),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "product_key": pl.Int64,
            "day": pl.Date,
            "quantity": pl.Float64,
            "amount_cents": pl.Int64,
            "discount_cents": pl.Int64,
        },
        orient="row",
    )


def test_history_price_is_the_median_per_unit_paid_plus_discount_inside_the_window():
    prices = history_prices(lines(), START, 30)
    got = dict(zip(prices["product_key"], prices["history_price_cents"]))
    # product 1: 120, 200, 330 and 200 (first day of the window) -> median 200
    assert got == {1: 200, 2: 300, 3: 100, 6: 1000}
    assert dict(zip(prices["product_key"], prices["price_lines"]))[1] == 4


def test_missing_prices_come_from_history_and_costs_from_the_brand_type_margin():
    done = complete_prices(catalogue(), lines(), START, 30, margin_share_national=0.25, margin_share_store=0.35)
    rows = {r["product_key"]: r for r in done.iter_rows(named=True)}
    assert (rows[1]["regular_price_cents"], rows[1]["unit_cost_cents"], rows[1]["price_source"]) == (
        200,
        150,
        "history",
    )
    assert (rows[2]["regular_price_cents"], rows[2]["unit_cost_cents"], rows[2]["price_source"]) == (
        300,
        195,
        "history",
    )
    assert (rows[3]["regular_price_cents"], rows[3]["unit_cost_cents"], rows[3]["price_source"]) == (
        500,
        375,
        "catalogue",
    )
    assert (rows[4]["regular_price_cents"], rows[4]["unit_cost_cents"], rows[4]["price_source"]) == (None, None, "none")
    assert (rows[5]["regular_price_cents"], rows[5]["unit_cost_cents"], rows[5]["price_source"]) == (
        800,
        600,
        "catalogue",
    )
    assert (rows[6]["regular_price_cents"], rows[6]["unit_cost_cents"]) == (1000, 750)
    # same rows in the same order, the catalogue's columns first
    assert done["product_key"].to_list() == catalogue()["product_key"].to_list()
    assert done.columns == [*catalogue().columns, "price_source"]


def test_a_shorter_window_forgets_older_lines():
    prices = history_prices(lines(), START, 10)
    assert dict(zip(prices["product_key"], prices["history_price_cents"]))[1] == 200  # 120, 200, 330 only
    assert history_prices(lines(), START, 2).height == 0


def test_prices_from_counts_summed_over_parts_are_the_medians_of_every_line():
    """Counts of any split of the lines, summed, give the medians of the whole, to the bit: odd and
    even line counts, weighed quantities (prices that are not whole cents), a median between two prices."""
    rng = np.random.default_rng(3)
    n = 20_000
    history = pl.DataFrame(
        {
            "product_key": rng.integers(0, 300, n),
            "day": [START - dt.timedelta(days=1)] * n,
            "quantity": rng.choice([1.0, 2.0, 3.0, 0.37, 1.25, 0.0, -1.0], n),
            "amount_cents": rng.integers(-50, 900, n),
            "discount_cents": rng.integers(0, 100, n),
        }
    )
    whole = history_prices(history, START, 30)
    unit = (pl.col("amount_cents") + pl.col("discount_cents")) / pl.col("quantity")
    direct = (
        history.filter(pl.col("quantity") > 0, unit > 0)
        .group_by("product_key")
        .agg(unit.median().round().cast(pl.Int64).alias("history_price_cents"), pl.len().alias("price_lines"))
        .sort("product_key")
    )
    assert_frame_equal(whole, direct, check_exact=True)
    assert (whole["price_lines"] % 2 == 0).any() and (whole["price_lines"] % 2 == 1).any()
    parts = [history[i::3] for i in range(3)]
    summed = prices_from_counts(pl.concat([price_counts(p, START, 30) for p in parts]))
    assert_frame_equal(summed, whole, check_exact=True)


def test_median_of_an_even_count_is_between_the_two_middle_prices():
    """Hand-worked: product 9 has lines at 100, 100, 300, 500 cents a unit -> median 200; a lone line is its price."""
    counts = pl.DataFrame(
        {"product_key": [9, 9, 9, 7], "unit_price": [100.0, 300.0, 500.0, 250.0], "lines": [2, 1, 1, 1]}
    )
    got = prices_from_counts(counts)
    assert got.rows() == [(7, 250, 1), (9, 200, 4)]
