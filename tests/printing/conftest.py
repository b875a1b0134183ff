"""Hand-made lists for the printing tests."""

from __future__ import annotations

import datetime as dt

import pytest

from engine.codes import make_code
from printing.document import ListDocument, OfferLine, RewardLine
from printing.fonts import load_fonts

SECRET = b"printing-tests"
START = dt.date(2025, 3, 3)
END = dt.date(2025, 3, 16)

_PRODUCTS = [
    ("Dairy", "Store Brand 2% Reduced Fat Milk 1 gal", 389, 39, "cycle"),
    ("Dairy", "Greek Yogurt Plain 32 oz", 549, 110, "conversion"),
    ("Produce", "Organic Bananas per lb", 79, 8, "cycle"),
    ("Bakery", "Whole Wheat Sandwich Bread 20 oz", 329, 50, "deal"),
    ("Pet", "Premium Dry Dog Food Chicken & Rice 15 lb", 2499, 375, "household"),
    ("Grocery", "Ground Coffee Medium Roast 12 oz", 899, 90, "cycle"),
    ("Health", "Pain Relief Ibuprofen 200 mg 100 ct", 1099, 440, "conversion"),
]


def offer(i: int, *, department: str | None = None, description: str | None = None) -> OfferLine:
    dept, desc, price, disc, kind = _PRODUCTS[i % len(_PRODUCTS)]
    return OfferLine(
        department=department or dept,
        description=description or desc,
        usual_price_cents=price,
        discount_cents=disc,
        max_uses=1 + (i % 3 == 2),
        valid_to=END,
        expected_on=START + dt.timedelta(days=2 + i % 10) if kind == "cycle" else None,
        kind=kind,
    )


def make_doc(
    list_id: int = 42,
    n_offers: int = 7,
    *,
    name: str = "Maria Gonzalez",
    offers: tuple[OfferLine, ...] | None = None,
    rewards: int = 1,
    tip: bool = True,
    postal_code: str = "02139",
) -> ListDocument:
    return ListDocument(
        list_id=list_id,
        code=make_code(list_id, SECRET),
        chain_name="Fresh Fields Market",
        store_id="S01",
        store_lines=("Fresh Fields Market — Central Square", "590 Main Street", "Cambridge, MA 02139"),
        customer_id=f"C{list_id:06d}",
        address_lines=(name, "12 Elm Street", "Apt 3", f"Cambridge, MA {postal_code}"),
        postal_code=postal_code,
        card_number="6012345678901234",
        valid_from=START,
        valid_to=END,
        offers=offers if offers is not None else tuple(offer(i) for i in range(n_offers)),
        rewards=tuple(RewardLine(1000, 5000, 3, END) for _ in range(rewards)),
        tip_title="Tip: a quick weeknight chili" if tip else None,
        tip_body=(
            "Brown a pound of ground beef with an onion, add two cans of beans, a can of "
            "tomatoes and a spoon of chili powder; simmer twenty minutes."
        )
        if tip
        else None,
    )


@pytest.fixture(scope="session")
def fonts():
    return load_fonts()


NAMES = [
    ("María José", "Núñez"),
    ("静", "王"),
    ("فاطمة", "Johnson"),
    ("Zoë", "Ångström 🥑"),
    ("Олег", "Петров"),
    ("Ngọc Ánh", "Trần"),
    ("Sam", "Lee"),
    ("Priya", "Patel"),
    ("Jean-François", "Lefèvre"),
    ("Anna", "Kowalska"),
    ("Ben", "Okafor"),
    ("Lena", "Schmidt"),
]
