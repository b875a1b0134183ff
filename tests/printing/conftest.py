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
    return OfferLine(department=department or dept, description=description or desc,
                     usual_price_cents=price, discount_cents=disc, max_uses=1 + (i % 3 == 2),
                     valid_to=END, expected_on=START + dt.timedelta(days=2 + i % 10) if kind == "cycle" else None,
                     kind=kind)


def make_doc(list_id: int = 42, n_offers: int = 7, *, name: str = "Maria Gonzalez",
             offers: tuple[OfferLine, ...] | None = None, rewards: int = 1,
             tip: bool = True, postal_code: str = "02139") -> ListDocument:
    return ListDocument(
        list_id=list_id, code=make_code(list_id, SECRET), chain_name="Fresh Fields Market",
        store_id="S01", store_lines=("Fresh Fields Market — Central Square", "590 Main Street",
                                     "Cambridge, MA 02139"),
        customer_id=f"C{list_id:06d}",
        address_lines=(name, "12 Elm Street", "Apt 3", f"Cambridge, MA {postal_code}"),
        postal_code=postal_code, card_number="6012345678901234",
        valid_from=START, valid_to=END,
        offers=offers if offers is not None else tuple(offer(i) for i in range(n_offers)),
        rewards=tuple(RewardLine(1000, 5000, 3, END) for _ in range(rewards)),
        tip_title="Tip: a quick weeknight chili" if tip else None,
        tip_body=("Brown a pound of ground beef with an onion, add two cans of beans, a can of "
                  "tomatoes and a spoon of chili powder; simmer twenty minutes.") if tip else None,
    )


@pytest.fixture(scope="session")
def fonts():
    return load_fonts()


NAMES = [("María José", "Núñez"), ("静", "王"), ("فاطمة", "Johnson"), ("Zoë", "Ångström 🥑"),
         ("Олег", "Петров"), ("Ngọc Ánh", "Trần"), ("Sam", "Lee"), ("Priya", "Patel"),
         ("Jean-François", "Lefèvre"), ("Anna", "Kowalska"), ("Ben", "Okafor"), ("Lena", "Schmidt")]


@pytest.fixture(scope="session")
def batch_db(tmp_path_factory):
    """A small SQLite database holding one finished batch, written row by row.

    12 customers over stores S01 and S02: list 1..12; list 5 has 45 offers (two pages),
    list 6 has none (not printed), customer 7 opted out (not printed), list 8 has no store
    (its baskets are in S02, its home store).
    """
    import sqlalchemy as sa

    from engine.db import connect, init_schema

    path = tmp_path_factory.mktemp("printdb") / "print.db"
    url = f"sqlite:///{path}"
    engine = connect(url)
    init_schema(engine)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables
    products = [dict(product_key=i + 1, sku=f"SKU{i + 1}", description=desc, category=dept.upper(),
                     department=dept, brand="B", brand_type="national", regular_price_cents=price)
                for i, (dept, desc, price, _d, _k) in enumerate(_PRODUCTS)]
    products.append(dict(product_key=99, sku="SKU99", category="VEGETABLES", department="Produce",
                         description="Extra long organic heirloom tomato medley with basil, oregano and "
                                     "a splash of balsamic vinegar, family pack of twelve", brand="B",
                         brand_type="store", regular_price_cents=699, size="2 lb"))
    customers, lists, offers, baskets = [], [], [], []
    offer_id = 1
    for i, (first, last) in enumerate(NAMES, start=1):
        store = "S01" if i % 2 else "S02"
        customers.append(dict(customer_key=i, customer_id=f"C{i:04d}", card_number=f"60000000000{i:05d}",
                              first_name=first, last_name=last, address_line1=f"{i} Main St",
                              city="Springfield", state="IL", postal_code=f"62{(37 * i) % 100:03d}",
                              opted_out=int(i == 7)))
        lists.append(dict(list_id=i, batch_id=1, customer_key=i, store_id=None if i == 8 else store,
                          code=make_code(i, SECRET), valid_from=START, valid_to=END, status="active",
                          tip_id=1 if i % 3 else None))
        n = {5: 45, 6: 0}.get(i, 3 + i % 4)
        for line in range(n):
            product = 99 if line == 1 else (line + i) % len(_PRODUCTS) + 1
            offers.append(dict(offer_id=offer_id, list_id=i, line_no=line + 1, kind="cycle",
                               product_key=product, category="X", funder="retailer", discount_cents=25 + line,
                               min_spend_cents=None, max_uses=1, valid_from=START, valid_to=END,
                               expected_on=START + dt.timedelta(days=line % 12)))
            offer_id += 1
        if i % 4 == 0 and n:
            offers.append(dict(offer_id=offer_id, list_id=i, line_no=n + 1, kind="reward", product_key=None,
                               category=None, funder="retailer", discount_cents=1000, min_spend_cents=5000,
                               max_uses=3, valid_from=START, valid_to=END, expected_on=None))
            offer_id += 1
    for k in range(3):
        baskets.append(dict(basket_key=k + 1, store_id="S02" if k else "S01", basket_id=f"B{k}", customer_key=8,
                            ts=dt.datetime(2025, 2, 1 + k, 10), day=dt.date(2025, 2, 1 + k)))
    with engine.begin() as conn:
        conn.execute(t["stores"].insert(), [
            dict(store_id="S01", name="Fresh Fields Springfield", address="100 Main St", city="Springfield",
                 state="IL", postal_code="62701"),
            dict(store_id="S02", name="Fresh Fields Riverton", address="117 Oak Ave", city="Riverton",
                 state="IL", postal_code="62561")])
        conn.execute(t["customers"].insert(), customers)
        conn.execute(t["products"].insert(), products)
        conn.execute(t["tips"].insert(), [dict(tip_id=1, category=None, title="Plan two dinners ahead",
                                               body="Cook once, eat twice: double a recipe and freeze half.")])
        conn.execute(t["batches"].insert(), [dict(batch_id=1, period_start=START, period_end=END + dt.timedelta(1),
                                                  status="done", started_at=dt.datetime(2025, 3, 1))])
        conn.execute(t["lists"].insert(), lists)
        conn.execute(t["offers"].insert(), offers)
        conn.execute(t["baskets"].insert(), baskets)
    engine.dispose()
    return url
