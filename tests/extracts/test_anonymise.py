"""Pure pieces: pseudonyms, suppression, amount due, the hold-out interval."""

from __future__ import annotations

import datetime as dt

import numpy as np
import polars as pl
import pytest

from engine.anonymise import effective_min_group, pseudonym_key, pseudonyms, suppress
from engine.errors import ConfigError
from engine.extracts import amount_due, holdout_lift


def test_pseudonym_depends_on_secret_and_manufacturer_and_hides_the_id():
    ids = pl.Series(["C0000001", "C0000002", "C0000001"])
    a = pseudonyms(ids, pseudonym_key(b"secret", "M1"))
    assert a[0] == a[2] != a[1]
    assert a[0] != pseudonyms(ids, pseudonym_key(b"secret", "M2"))[0]
    assert a[0] != pseudonyms(ids, pseudonym_key(b"other secret", "M1"))[0]
    assert "0000001" not in a[0] and len(a[0]) == 21


def test_min_group_floor_is_ten():
    assert effective_min_group(10) == 10
    with pytest.raises(ConfigError, match="at least 10"):
        effective_min_group(5)


def _table(rows):
    return pl.DataFrame(rows, schema=["g", "cell", "households"], orient="row").with_columns(
        (pl.col("cell") == "all").alias("total"))


def test_one_small_cell_takes_the_next_smallest_with_it():
    kept, out = suppress(_table([("a", "all", 200), ("a", "x", 40), ("a", "y", 70), ("a", "z", 90)]), 50,
                         group=("g",), is_total="total")
    assert kept["cell"].to_list() == ["all", "z"] and out == 2


def test_withheld_cells_that_already_hide_enough_need_no_complement():
    kept, out = suppress(_table([("a", "all", 200), ("a", "x", 30), ("a", "y", 30), ("a", "z", 140)]), 50,
                         group=("g",), is_total="total")
    assert kept["cell"].to_list() == ["all", "z"] and out == 2     # x + y = 60 >= 50: not recoverable


def test_a_small_total_goes_with_all_its_cells_and_other_sets_are_untouched():
    kept, out = suppress(_table([("a", "all", 45), ("a", "x", 20), ("a", "y", 25),
                                 ("b", "all", 120), ("b", "x", 60), ("b", "y", 60)]), 50,
                         group=("g",), is_total="total")
    assert kept["g"].to_list() == ["b", "b", "b"] and out == 3


def test_a_set_whose_detail_is_all_too_small_hides_its_total():
    # 'all' is 60 but detail rows sum to 45 (households in two cells): the total alone would
    # reveal nothing, but nothing remains to hide alongside a lone withheld cell
    kept, _ = suppress(_table([("a", "all", 60), ("a", "x", 45)]), 50, group=("g",), is_total="total")
    assert kept.height == 0


def test_every_kept_row_meets_the_minimum_on_random_tables():
    rng = np.random.default_rng(1)
    for _ in range(50):
        cells = rng.integers(1, 150, size=int(rng.integers(2, 8)))
        rows = [("a", "all", int(cells.sum()))] + [("a", f"c{i}", int(c)) for i, c in enumerate(cells)]
        kept, _ = suppress(_table(rows), 50, group=("g",), is_total="total")
        assert kept["households"].min() is None or kept["households"].min() >= 50
        if kept.filter(pl.col("total")).height:
            hidden = int(cells.sum()) - kept.filter(~pl.col("total"))["households"].sum()
            assert hidden == 0 or hidden >= 50


@pytest.mark.parametrize(("discount", "share", "due"), [
    (75, 0.5, 38), (101, 0.75, 76), (125, 0.333, 42), (99, 1.0, 99), (100, 0.0, 0), (15, 0.3, 5), (10, 0.15, 2)])
def test_amount_due_rounds_half_up_exactly(discount, share, due):
    frame = pl.DataFrame({"discount_cents": [discount], "funded_share": [share]})
    assert frame.select(amount_due())["amount_due_cents"][0] == due


def _outcomes(rng, n_t, n_h, p_t, p_h):
    grp = ["treated"] * n_t + ["holdout"] * n_h
    p = np.array([p_t] * n_t + [p_h] * n_h)
    bought = rng.random(n_t + n_h) < p
    units = np.where(bought, rng.integers(1, 3, n_t + n_h), 0).astype(float)
    return pl.DataFrame({"period_start": dt.date(2025, 3, 3), "category": "X", "grp": grp,
                         "bought": bought, "units": units})


def test_lift_interval_covers_the_planted_effect_about_95_times_in_100():
    rng = np.random.default_rng(7)
    runs = [holdout_lift(_outcomes(rng, 600, 300, 0.55, 0.35)).row(0, named=True) for _ in range(400)]
    rate = np.mean([r["rate_ci_low"] <= 0.20 <= r["rate_ci_high"] for r in runs])
    units = np.mean([r["units_ci_low"] <= 0.30 <= r["units_ci_high"] for r in runs])
    assert 0.92 <= rate <= 0.98 and 0.92 <= units <= 0.98


def test_lift_is_zero_on_average_without_an_effect():
    rng = np.random.default_rng(3)
    lifts = [holdout_lift(_outcomes(rng, 500, 500, 0.4, 0.4))["rate_lift"][0] for _ in range(200)]
    assert abs(np.mean(lifts)) < 0.01
