"""The plain data one printed list needs, so that the layout is testable without a database.

`engine.printjob` builds `ListDocument`s from the rows of lists, offers, products, customers,
stores and tips; `printing.layout` draws them. Money is integer cents, days are dates.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass, field

__all__ = ["OfferLine", "NeedLine", "RewardLine", "ListDocument", "mask_card"]


@dataclass(frozen=True)
class OfferLine:
    """One product offer as printed.

    Attributes
    ----------
    department
        Groups the lines; ``None`` prints under "Other" at the end.
    description
        Product description (size included), or the category for a category-wide offer.
    usual_price_cents
        The shelf price; ``None`` when the offer names no product.
    discount_cents
        Saving per use.
    max_uses
        Uses allowed ("x2" is printed beside the saving when above 1).
    valid_to
        Last day the offer can be used (inclusive).
    expected_on
        Cycle offers: the day the customer likely needs the product again; else ``None``.
    kind
        'cycle', 'conversion', 'deal' or 'household' (the offers.kind of schema.sql).
    reason
        Why this offer, in plain words (`printing.reasons.plain_reason`); '' prints none.
    """

    department: str | None
    description: str
    usual_price_cents: int | None
    discount_cents: int
    max_uses: int
    valid_to: dt.date
    expected_on: dt.date | None = None
    kind: str = "cycle"
    reason: str = ""

    @property
    def your_price_cents(self) -> int | None:
        if self.usual_price_cents is None:
            return None
        return max(0, self.usual_price_cents - self.discount_cents)


@dataclass(frozen=True)
class NeedLine:
    """A line of the needs section: what the customer likely buys in the period, at full price.

    Attributes
    ----------
    department
        Groups the line with the offers; ``None`` prints under "Other".
    description
        The customer's usual product (size included), or the category.
    usual_price_cents
        Its shelf price, ``None`` when unknown.
    expected_on
        The day the customer likely needs it ("likely around").
    category
        The profile's category (a special of the same category stands in for the line).
    """

    department: str | None
    description: str
    usual_price_cents: int | None
    expected_on: dt.date
    category: str = ""


@dataclass(frozen=True)
class RewardLine:
    """A reward coupon on the whole basket: `discount_cents` off a basket of `min_spend_cents`."""

    discount_cents: int
    min_spend_cents: int | None
    max_uses: int
    valid_to: dt.date


@dataclass(frozen=True)
class ListDocument:
    """Everything printed on one customer's list.

    `address_lines` are the mailing address as it goes in the envelope window (name line
    first); `card_number` is the full number, masked when drawn (`mask_card`).
    """

    list_id: int
    code: str
    chain_name: str
    store_id: str | None
    store_lines: tuple[str, ...]  # store name, street, "city, ST 12345"
    customer_id: str
    address_lines: tuple[str, ...]
    postal_code: str
    card_number: str | None
    valid_from: dt.date
    valid_to: dt.date
    offers: tuple[OfferLine, ...] = ()
    rewards: tuple[RewardLine, ...] = ()
    tip_title: str | None = None
    tip_body: str | None = None
    needs: tuple[NeedLine, ...] = ()  # needs not already carried by a special of the same category
    email: str | None = None  # the customer's own address, for the .eml of their own list
    extra: dict = field(default_factory=dict, compare=False, hash=False)

    @property
    def printable(self) -> bool:
        """A list with nothing on it — no need, no offer, no reward — is not printed (and is counted)."""
        return bool(self.offers or self.rewards or self.needs)


def mask_card(card_number: str | None) -> str:
    """The card number as printed: only its last four digits.

    Examples
    --------
    >>> mask_card("6012 3456 7890 1234")
    '•••• 1234'
    >>> mask_card(None)
    ''
    """
    if not card_number:
        return ""
    digits = "".join(ch for ch in str(card_number) if ch.isalnum())
    return f"•••• {digits[-4:]}"
