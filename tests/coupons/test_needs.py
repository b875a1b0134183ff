"""The needs section (coupons.needs), on hand-worked profiles."""

import datetime as dt

import polars as pl
import pytest

from coupons.needs import NEEDS_SCHEMA, select_needs

START, END = dt.date(2025, 3, 3), dt.date(2025, 3, 17)  # [start, end): last day Mar 16


def _profile(rows):
    return pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Int64,
            "category": pl.String,
            "p_buy_in_window": pl.Float64,
            "next_expected_on": pl.Date,
            "interval_median_days": pl.Float64,
            "usual_product_key": pl.Int64,
        },
        orient="row",
    )


PROFILE = _profile(
    [
        (1, "MILK", 0.95, dt.date(2025, 3, 5), 6.6, 11),
        (1, "EGGS", 0.60, dt.date(2025, 3, 9), 12.0, 12),
        (1, "BREAD", 0.60, dt.date(2025, 3, 4), 7.0, None),  # ties EGGS: the earlier day goes first
        (1, "SALT", 0.20, dt.date(2025, 3, 8), 120.0, 13),  # below the floor
        (1, "COFFEE", 0.70, dt.date(2025, 2, 20), 21.0, 14),  # overdue: brought to the first day
        (1, "RICE", 0.55, dt.date(2025, 4, 1), 30.0, 15),  # after the period: brought to the last day
        (2, "MILK", 0.90, dt.date(2025, 3, 6), None, 11),  # customer 2 is not treated
        (3, "TEA", None, None, None, 16),  # no probability: never a need
    ]
)


def test_top_categories_above_the_floor_best_first_up_to_the_count():
    needs = select_needs(PROFILE, pl.Series([1, 3]), START, END, min_p_buy=0.5, max_lines=4)
    assert needs.schema == pl.Schema(NEEDS_SCHEMA)
    assert needs["category"].to_list() == ["MILK", "COFFEE", "BREAD", "EGGS"]
    assert needs["line_no"].to_list() == [1, 2, 3, 4]
    assert needs["customer_key"].to_list() == [1, 1, 1, 1]


def test_expected_days_are_brought_inside_the_period_and_intervals_rounded():
    needs = select_needs(PROFILE, pl.Series([1]), START, END, min_p_buy=0.5, max_lines=10)
    day = dict(zip(needs["category"], needs["expected_on"]))
    assert day == {
        "MILK": dt.date(2025, 3, 5),
        "COFFEE": START,
        "BREAD": dt.date(2025, 3, 4),
        "EGGS": dt.date(2025, 3, 9),
        "RICE": dt.date(2025, 3, 16),
    }
    assert dict(zip(needs["category"], needs["interval_days"]))["MILK"] == 7
    assert dict(zip(needs["category"], needs["product_key"]))["BREAD"] is None  # printed as the category


def test_only_treated_customers_and_a_zero_count_gives_no_section():
    assert select_needs(PROFILE, pl.Series([2]), START, END, min_p_buy=0.95).height == 0
    assert select_needs(PROFILE, pl.Series([1, 2]), START, END, max_lines=0).height == 0
    assert select_needs(PROFILE, pl.Series([2]), START, END, min_p_buy=0.9)["category"].to_list() == ["MILK"]


@pytest.mark.parametrize("kwargs", [{"min_p_buy": 1.5}, {"min_p_buy": -0.1}, {"max_lines": -1}])
def test_settings_out_of_range_are_refused(kwargs):
    with pytest.raises(ValueError, match="needs"):
        select_needs(PROFILE, pl.Series([1]), START, END, **kwargs)
