"""engine/values.py: the conversions every part of engine/ shares, on hand-worked values."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from engine.values import as_date, cents, day_text, dollars, iso_date, local_timestamp, mask_card, store_local, truthy


def test_dollars_text_becomes_exact_cents():
    frame = pl.DataFrame({"p": ["3.49", "-2", "0.5", "999999999.99", "0.07", None]})
    assert frame.select(cents("p"))["p"].to_list() == [349, -200, 50, 99_999_999_999, 7, None]


@pytest.mark.parametrize(
    ("amount", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (349, "$3.49"),
        (123456789, "$1,234,567.89"),
        (-5, "-$0.05"),
        (-150000, "-$1,500.00"),
        (2**53 + 1, "$90,071,992,547,409.93"),
    ],
)
def test_cents_print_as_dollars_without_rounding(amount, text):
    assert dollars(amount) == text


def test_no_amount_prints_as_asked():
    assert dollars(None) == "" and dollars(None, none="no limit") == "no limit"


@pytest.mark.parametrize(
    "value",
    [
        "2025-03-05",
        "2025-03-05 00:00:00",
        "2025-03-05T10:15:00.000000",
        dt.date(2025, 3, 5),
        dt.datetime(2025, 3, 5, 23, 59),
    ],
)
def test_every_driver_form_of_a_day_is_that_day(value):
    assert as_date(value) == dt.date(2025, 3, 5) and day_text(value) == "2025-03-05"


def test_no_day_stays_none_and_a_bad_one_is_refused():
    assert as_date(None) is None and day_text(None) is None
    with pytest.raises(ValueError):
        as_date("2025-13-01")


def test_a_text_column_of_days_converts_strictly_or_leniently():
    text = pl.Series("d", ["2025-03-05", "2025-03-06 00:00:00", None])
    assert iso_date(text).to_list() == [dt.date(2025, 3, 5), dt.date(2025, 3, 6), None]
    bad = pl.DataFrame({"d": ["2025-02-30", "2025-03-01"]})
    assert bad.select(iso_date(pl.col("d"), strict=False))["d"].to_list() == [None, dt.date(2025, 3, 1)]
    with pytest.raises(pl.exceptions.PolarsError):
        iso_date(bad["d"])


def test_a_timestamp_keeps_the_wall_clock_as_written():
    frame = pl.DataFrame({"ts": ["2025-01-05T06:53:26-05:00", "2025-01-05 06:53", "2025-01-05T06:53:26.5Z", "x"]})
    assert frame.select(local_timestamp("ts"))["ts"].to_list() == [
        dt.datetime(2025, 1, 5, 6, 53, 26),
        dt.datetime(2025, 1, 5, 6, 53),
        dt.datetime(2025, 1, 5, 6, 53, 26, 500000),
        None,
    ]


def test_a_stored_ts_reads_back_the_same_from_either_database():
    sqlite_text = pl.Series("ts", ["2025-01-05T06:53:26.000000", "2025-01-05 06:53:26"])
    postgres = pl.Series("ts", [dt.datetime(2025, 1, 5, 6, 53, 26)] * 2, dtype=pl.Datetime("ms"))
    assert (
        store_local(sqlite_text).to_list()
        == store_local(postgres).to_list()
        == [dt.datetime(2025, 1, 5, 6, 53, 26)] * 2
    )
    assert store_local(postgres).dtype == pl.Datetime("us")


def test_yes_true_and_one_are_true_anything_else_false():
    frame = pl.DataFrame({"f": ["TRUE", "yes", "1", "t", "Y", "false", "0", "", "maybe", None]})
    assert frame.select(truthy("f"))["f"].to_list() == [True] * 5 + [False] * 5


@pytest.mark.parametrize(
    ("card", "masked"),
    [("4000123412341234", "************1234"), ("1234", "1234"), ("12", "12"), ("", None), (None, None)],
)
def test_a_card_shows_its_last_four_digits_only(card, masked):
    assert mask_card(card) == masked
