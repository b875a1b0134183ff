"""Anonymisation of the extracts (coupons.anonymise): pseudonyms and small-group suppression."""

from __future__ import annotations

import numpy as np
import polars as pl

from coupons.anonymise import pseudonym_key, pseudonyms, suppress


def test_pseudonym_depends_on_secret_and_manufacturer_and_hides_the_id():
    ids = pl.Series(["C0000001", "C0000002", "C0000001"])
    a = pseudonyms(ids, pseudonym_key(b"secret", "M1"))
    assert a[0] == a[2] != a[1]
    assert a[0] != pseudonyms(ids, pseudonym_key(b"secret", "M2"))[0]
    assert a[0] != pseudonyms(ids, pseudonym_key(b"other secret", "M1"))[0]
    assert "0000001" not in a[0] and len(a[0]) == 21


def _table(rows):
    return pl.DataFrame(rows, schema=["g", "cell", "households"], orient="row").with_columns(
        (pl.col("cell") == "all").alias("total")
    )


def test_one_small_cell_takes_the_next_smallest_with_it():
    kept, out = suppress(
        _table([("a", "all", 200), ("a", "x", 40), ("a", "y", 70), ("a", "z", 90)]), 50, group=("g",), is_total="total"
    )
    assert kept["cell"].to_list() == ["all", "z"] and out == 2


def test_withheld_cells_that_already_hide_enough_need_no_complement():
    kept, out = suppress(
        _table([("a", "all", 200), ("a", "x", 30), ("a", "y", 30), ("a", "z", 140)]), 50, group=("g",), is_total="total"
    )
    assert kept["cell"].to_list() == ["all", "z"] and out == 2  # x + y = 60 >= 50: not recoverable


def test_a_small_total_goes_with_all_its_cells_and_other_sets_are_untouched():
    kept, out = suppress(
        _table([("a", "all", 45), ("a", "x", 20), ("a", "y", 25), ("b", "all", 120), ("b", "x", 60), ("b", "y", 60)]),
        50,
        group=("g",),
        is_total="total",
    )
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
