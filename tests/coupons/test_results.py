"""What a manufacturer is told (coupons.results): hand-worked tables, exact dues, lift coverage."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from coupons.results import (
    amount_due,
    category_insight,
    category_lift,
    lift_results,
    settlement_lines,
    settlement_totals,
)

D = dt.date


@pytest.mark.parametrize(
    ("discount", "share", "due"),
    [(75, 0.5, 38), (101, 0.75, 76), (125, 0.333, 42), (99, 1.0, 99), (100, 0.0, 0), (15, 0.3, 5), (10, 0.15, 2)],
)
def test_amount_due_rounds_half_up_exactly(discount, share, due):
    frame = pl.DataFrame({"discount_cents": [discount], "funded_share": [share]})
    assert frame.select(amount_due())["amount_due_cents"][0] == due


def _outcomes(rng, n_t, n_h, p_t, p_h):
    grp = ["treated"] * n_t + ["holdout"] * n_h
    p = np.array([p_t] * n_t + [p_h] * n_h)
    bought = rng.random(n_t + n_h) < p
    units = np.where(bought, rng.integers(1, 3, n_t + n_h), 0).astype(float)
    return pl.DataFrame(
        {"period_start": dt.date(2025, 3, 3), "category": "X", "grp": grp, "bought": bought, "units": units}
    )


def test_lift_interval_covers_the_planted_effect_about_95_times_in_100():
    rng = np.random.default_rng(7)
    runs = [category_lift(_outcomes(rng, 600, 300, 0.55, 0.35)).row(0, named=True) for _ in range(400)]
    rate = np.mean([r["rate_ci_low"] <= 0.20 <= r["rate_ci_high"] for r in runs])
    units = np.mean([r["units_ci_low"] <= 0.30 <= r["units_ci_high"] for r in runs])
    assert 0.92 <= rate <= 0.98 and 0.92 <= units <= 0.98


def test_lift_is_zero_on_average_without_an_effect():
    rng = np.random.default_rng(3)
    lifts = [category_lift(_outcomes(rng, 500, 500, 0.4, 0.4))["rate_lift"][0] for _ in range(200)]
    assert abs(np.mean(lifts)) < 0.01


def test_lift_counts_only_the_batch_days_inside_the_period_and_withholds_a_small_hold_out():
    # batch 3/3..3/17 (exclusive); the period asked for ends on 3/9: a purchase on 3/12 is outside
    members = pl.DataFrame(
        {
            "batch_id": 1,
            "customer_key": [1, 2, 3, 4],
            "grp": ["treated"] * 3 + ["holdout"],
            "period_start": D(2025, 3, 3),
            "period_end": D(2025, 3, 17),
        }
    )
    offers = pl.DataFrame({"batch_id": [1], "category": ["TEA"]})
    history = pl.DataFrame(
        {
            "customer_key": [1, 2, 4, 3],
            "category": "TEA",
            "quantity": [2.0, 1.0, 1.0, 5.0],
            "day": [D(2025, 3, 4), D(2025, 3, 12), D(2025, 3, 5), D(2025, 2, 20)],
        }
    )
    lift, withheld = lift_results(members, offers, history, D(2025, 3, 3), D(2025, 3, 9), 0.95, min_group=1)
    row = lift.row(0, named=True)
    assert withheld == 0 and (row["treated_households"], row["holdout_households"]) == (3, 1)
    assert row["treated_rate"] == pytest.approx(1 / 3) and row["holdout_rate"] == 1.0
    assert row["treated_units"] == pytest.approx(2 / 3) and row["units_lift"] == pytest.approx(2 / 3 - 1)
    lift, withheld = lift_results(members, offers, history, D(2025, 3, 3), D(2025, 3, 9), 0.95, min_group=2)
    assert lift.height == 0 and withheld == 1  # one hold-out household: too small to publish


def _tea_history() -> pl.DataFrame:
    """Three TEA buyers over four weeks (2025-02-17 .. 03-16); M1 makes the national brand.

    c1: store brand on 3 days (1 + 1 + 2 units): cell store, 1 unit a week;
    c2: national once in the period: unclassified, 0.25 a week;
    c3: 3 national units in the lookback, 1 store unit in the period: share 0.25, switcher, 1 a week.
    Units a week [0.25, 1, 1]: linear tertile cuts 0.75 and 1.0, so c2 is low, c1 and c3 mid.
    """
    rows = [
        (1, D(2025, 2, 17), 1.0, "store", None),
        (1, D(2025, 3, 4), 1.0, "store", None),
        (1, D(2025, 3, 11), 2.0, "store", None),
        (2, D(2025, 3, 5), 1.0, "national", "M1"),
        (3, D(2025, 2, 18), 3.0, "national", "M1"),
        (3, D(2025, 3, 12), 1.0, "store", None),
    ]
    return pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Int64,
            "day": pl.Date,
            "quantity": pl.Float64,
            "brand_type": pl.String,
            "manufacturer_id": pl.String,
        },
        orient="row",
    ).with_columns(pl.lit("TEA").alias("category"))


def test_category_insight_by_cell_worked_by_hand():
    cells, weekly, withheld = category_insight(
        _tea_history(), "M1", ["TEA"], D(2025, 3, 3), D(2025, 3, 16), min_group=1
    )
    assert withheld == {"category_cells": 0, "category_weekly": 0}
    rows = {r["cell"]: r for r in cells.to_dicts()}
    assert list(rows) == ["all", "store:mid", "switcher:mid", "unclassified:low"]
    everyone = rows["all"]
    assert (everyone["households"], everyone["units"]) == (3, 5.0)  # units of the period only
    shares = ("national_share", "store_brand_share", "manufacturer_share")
    assert tuple(everyone[c] for c in shares) == (0.2, 0.8, 0.2)
    assert everyone["repeat_rate"] == 0.3333  # c1 alone bought on two days
    assert everyone["median_cycle_days"] == 16.5  # c1 median(15, 7) = 11, c3 22
    assert rows["store:mid"]["units"] == 3.0 and rows["switcher:mid"]["median_cycle_days"] == 22.0
    weeks = {(r["week_start"], r["cell"]): r for r in weekly.to_dicts()}
    first, second = weeks[(D(2025, 3, 3), "all")], weeks[(D(2025, 3, 10), "all")]
    assert (first["households"], first["units"], first["repeat_rate"]) == (2, 2.0, 0.5)  # c2 new that week
    assert (second["households"], second["units"], second["repeat_rate"]) == (2, 3.0, 1.0)


def test_category_insight_withholds_cells_of_one_household_but_not_the_total_of_three():
    cells, weekly, withheld = category_insight(
        _tea_history(), "M1", ["TEA"], D(2025, 3, 3), D(2025, 3, 16), min_group=2
    )
    assert cells["cell"].to_list() == ["all"] and withheld["category_cells"] == 3
    assert weekly["cell"].to_list() == ["all", "all"] and withheld["category_weekly"] == 4


def test_settlement_totals_are_sums_of_the_lines_and_a_total_row():
    redemptions = pl.DataFrame(
        {
            "redemption_id": [3, 1, 2, 4],
            "offer_id": [10, 10, 11, 10],
            "deal_id": ["D1", "D1", None, "D1"],
            "kind": ["deal", "deal", "conversion", "deal"],
            "category": "TEA",
            "sku": "T1",
            "redeemed_on": [D(2025, 3, 5), D(2025, 3, 5), D(2025, 3, 4), D(2025, 3, 6)],
            "store_id": "S1",
            "discount_cents": [75, 75, 75, 75],
            "funded_share": [0.5, 0.5, 1.0, 0.5],
            "voided": [0, 0, 0, 1],
        }
    )
    lines = settlement_lines(redemptions)
    assert lines["redemption_id"].to_list() == [2, 1, 3] and lines["line_no"].to_list() == [1, 2, 3]
    totals = settlement_totals(lines)
    assert totals.rows() == [("D1", 2, 150, 76), ("conversion:TEA", 1, 75, 75), ("TOTAL", 3, 225, 151)]
    empty = settlement_totals(lines.clear())
    assert empty.rows() == [("TOTAL", 0, 0, 0)] and empty.schema == totals.schema
