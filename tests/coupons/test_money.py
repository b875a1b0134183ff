"""Dollars from integer cents (coupons.money), one way for reports, summaries and statements."""

from __future__ import annotations

import pytest

from coupons.money import dollars


@pytest.mark.parametrize(
    ("cents", "text"),
    [
        (0, "$0.00"),
        (5, "$0.05"),
        (99, "$0.99"),
        (100, "$1.00"),
        (123456, "$1,234.56"),
        (-75, "-$0.75"),
        (-123456, "-$1,234.56"),
        (2**53 + 1, "$90,071,992,547,409.93"),
    ],
)
def test_dollars_from_cents(cents, text):
    assert dollars(cents) == text
