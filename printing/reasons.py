"""Why this offer, in plain words: the stored reason of an offer as the customer reads it.

The batch stores a reason per offer for the chain (``offers.reason``: "likely needed around
Mar 5", "Analgesics to store: 40% off, national buyer, high volume", "household: pet",
"manufacturer deal D1", "reward: VIP customer, 72% of wallet"). Those words are for the
analyst; the list says the same thing to the customer without the jargon, one short phrase per
offer kind, and never nothing: an offer of an unknown kind still prints its stored reason.
"""

from __future__ import annotations

import datetime as dt
import re

__all__ = ["plain_reason", "uses_legend"]

_VOLUME = {"high": "heavy buyers", "mid": "regular buyers", "low": "buyers"}
_NUMBERS = {2: "two", 3: "three", 4: "four", 5: "five", 6: "six", 7: "seven", 8: "eight", 9: "nine", 10: "ten"}


def _day(d: dt.date | None) -> str:
    return f"{d:%b} {d.day}" if d else ""


def _household(reason: str, category: str) -> str:
    group = reason.split(":", 1)[1].strip().lower() if ":" in reason else ""
    cat = category.lower()
    if group == "pet":
        for animal in ("dog", "cat", "bird", "fish"):
            if animal in cat:
                return f"for your {animal}"
        return "for your pet"
    if group == "baby":
        return "for your baby"
    if re.fullmatch(r"[a-z][a-z ]{0,23}", group):  # a group's name, not some other text
        return f"for a household that buys {group}"
    return "for your household"


def plain_reason(
    kind: str,
    reason: str | None = None,
    *,
    category: str | None = None,
    volume_tier: str | None = None,
    brand_type: str | None = None,
    brand: str | None = None,
    maker: str | None = None,
    interval_days: int | None = None,
    expected_on: dt.date | None = None,
) -> str:
    """One short phrase saying why the customer got this offer.

    Parameters
    ----------
    kind
        The offer's kind (cycle, conversion, deal, household, reward).
    reason
        The stored reason (``offers.reason``); printed as it is for an unknown kind.
    category, volume_tier, brand_type, brand, maker
        The offer's category, the customer's volume tier there, the offered product's brand
        type and brand, the manufacturer funding a deal.
    interval_days
        Cycle offers: the customer's usual days between two purchases, when known.
    expected_on
        Cycle offers: the day the customer likely needs it.

    Examples
    --------
    >>> plain_reason("cycle", "likely needed around Mar 5", interval_days=12)
    'you buy it about every 12 days'
    >>> plain_reason("conversion", "x", category="ANALGESICS", volume_tier="high", brand_type="store")
    'for heavy buyers of analgesics: try our brand'
    >>> plain_reason("household", "household: pet", category="DOG FOOD DRY")
    'for your dog'
    >>> plain_reason("reward", "reward: VIP customer, 72% of wallet")
    'thank you for shopping with us'
    """
    reason = (reason or "").strip()
    cat = (category or "").strip().lower()
    if kind == "cycle":
        if interval_days and interval_days > 1:
            return f"you buy it about every {interval_days} days"
        if interval_days == 1:
            return "you buy it almost every day"
        return "you buy it regularly"
    if kind == "conversion":
        who = _VOLUME.get(volume_tier or "", "buyers")
        what = "our brand" if brand_type == "store" else (brand.strip() if brand and brand.strip() else "this brand")
        return f"for {who} of {cat}: try {what}" if cat else f"try {what}"
    if kind == "household":
        return _household(reason, cat)
    if kind == "deal":
        return f"a special from {maker.strip()}" if maker and maker.strip() else "a special from the maker"
    if kind == "reward":
        return "thank you for shopping with us"
    return reason


def uses_legend(uses: set[int] | frozenset[int]) -> str:
    """The legend of the '×N' marks on a list: '×3: on three visits' (empty when none is above 1).

    Examples
    --------
    >>> uses_legend({1, 3, 2})
    '×2: on two visits · ×3: on three visits'
    """
    return " · ".join(f"×{n}: on {_NUMBERS.get(n, str(n))} visits" for n in sorted(uses) if n > 1)
