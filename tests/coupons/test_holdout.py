"""The hold-out draw: deterministic, of the right size, independent of who else qualifies."""

import datetime as dt

import polars as pl

from coupons.holdout import assign_groups, holdout_draw


def test_same_period_same_draw_and_independent_of_others():
    keys = pl.Series(range(1, 20_001), dtype=pl.Int64)
    day = dt.date(2025, 7, 7)
    full = holdout_draw(keys, day)
    part = holdout_draw(keys.filter(keys % 3 == 0), day)
    assert full.filter(keys % 3 == 0).to_list() == part.to_list()
    assert holdout_draw(keys, day).to_list() == full.to_list()


def test_share_is_close_to_the_setting_and_changes_between_periods():
    members = pl.DataFrame({"customer_key": pl.Series(range(1, 40_001), dtype=pl.Int64)})
    a = assign_groups(members, dt.date(2025, 7, 7), 0.05)
    b = assign_groups(members, dt.date(2025, 7, 21), 0.05)
    share = (a["grp"] == "holdout").mean()
    assert abs(share - 0.05) < 3 * (0.05 * 0.95 / 40_000) ** 0.5
    overlap = ((a["grp"] == "holdout") & (b["grp"] == "holdout")).sum()
    assert overlap < 0.01 * 40_000  # about 0.25 % expected: independent draws


def test_draw_is_uniform():
    draw = holdout_draw(pl.Series(range(1, 100_001), dtype=pl.Int64), dt.date(2025, 1, 6))
    assert draw.min() >= 0 and draw.max() < 1
    hist = (draw * 10).floor().value_counts()["count"]
    assert hist.min() > 9_500 and hist.max() < 10_500
