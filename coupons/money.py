"""Money as people read it: integer cents written as dollars.

A leaf (imports nothing of ours) in a pure package, so that engine/ (reports, the batch
summary, the settlement) and printing/ (the settlement statement) write amounts one way:
engine may import coupons and printing, printing may import coupons, and coupons imports
neither, so no import can go round in a circle.
"""

from __future__ import annotations

__all__ = ["dollars"]


def dollars(cents: int | None, none: str = "") -> str:
    """'$1,234.56' from 123456 cents; the sign before the dollar sign; `none` for None.

    Integer arithmetic only, so no amount is ever off by a cent through a float.

    Examples
    --------
    >>> dollars(123456), dollars(5), dollars(-75), dollars(0), dollars(None, "no limit")
    ('$1,234.56', '$0.05', '-$0.75', '$0.00', 'no limit')
    """
    if cents is None:
        return none
    whole, part = divmod(abs(int(cents)), 100)
    return f"{'-' if cents < 0 else ''}${whole:,}.{part:02d}"
