"""cycles.occasions.left_join: side by side when the keys line up, the join otherwise, the same frame."""

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from cycles.occasions import left_join

ON = ["customer_key", "category"]
LEFT = pl.DataFrame({"customer_key": [1, 1, 2, 3], "category": ["A", "B", "A", "C"], "x": [1.0, 2.0, 3.0, 4.0]})


def _join(left, right):
    return left.join(right, on=ON, how="left", maintain_order="left")


@pytest.mark.parametrize(
    "right",
    [
        # the same keys row for row: put beside
        pl.DataFrame({"customer_key": [1, 1, 2, 3], "category": ["A", "B", "A", "C"], "y": [10, 20, 30, 40]}),
        # the same keys in another order
        pl.DataFrame({"customer_key": [3, 1, 1, 2], "category": ["C", "B", "A", "A"], "y": [40, 20, 10, 30]}),
        # as many rows, one key different (a pair the left lacks)
        pl.DataFrame({"customer_key": [1, 1, 2, 4], "category": ["A", "B", "A", "C"], "y": [10, 20, 30, 40]}),
        # fewer rows, more rows
        pl.DataFrame({"customer_key": [1, 3], "category": ["B", "C"], "y": [20, 40]}),
        pl.DataFrame({"customer_key": [1, 1, 2, 3, 5], "category": ["A", "B", "A", "C", "Z"], "y": [1, 2, 3, 4, 5]}),
    ],
)
def test_the_same_frame_as_the_join(right):
    got = left_join(LEFT, right, ON)
    assert_frame_equal(got, _join(LEFT, right))


def test_null_keys_are_joined_not_matched():
    left = LEFT.with_columns(pl.Series("category", ["A", None, "A", "C"]))
    right = left.select(ON).with_columns(pl.Series("y", [10, 20, 30, 40]))
    got = left_join(left, right, ON)
    assert got["y"].to_list() == [10, None, 30, 40]  # a null key matches nothing, as in the join
    assert_frame_equal(got, _join(left, right))


def test_keys_of_another_type_are_joined():
    # equal values, another integer type: the join's (it casts the keys), not the right frame's columns
    right = LEFT.select(ON).with_columns(pl.col("customer_key").cast(pl.Int32), pl.Series("y", [1, 2, 3, 4]))
    got = left_join(LEFT, right, ON)
    assert got.schema["customer_key"] == pl.Int64
    assert_frame_equal(got, _join(LEFT, right))


def test_a_column_both_frames_have_is_the_joins_right_copy():
    right = LEFT.select(ON).with_columns(pl.Series("x", [10.0, 20.0, 30.0, 40.0]))
    got = left_join(LEFT, right, ON)
    assert got.columns == ["customer_key", "category", "x", "x_right"]
    assert_frame_equal(got, _join(LEFT, right))
