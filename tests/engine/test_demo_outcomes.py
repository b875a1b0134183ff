"""The demo's measure of a list against the period's purchases (engine.demo.list_outcomes), hand-worked."""

import datetime as dt

import sqlalchemy as sa

from engine.config import Settings
from engine.db import connect
from engine.demo import list_outcomes

START, END = dt.date(2025, 3, 3), dt.date(2025, 3, 17)


def test_shares_of_needs_and_specials_bought_in_the_period(db_url):
    engine = connect(db_url)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables
    day = START + dt.timedelta(days=2)
    with engine.begin() as conn:
        conn.execute(t["stores"].insert(), [{"store_id": "S1"}])
        conn.execute(
            t["products"].insert(),
            [
                {"product_key": k, "sku": f"P{k}", "category": c, "brand_type": "store"}
                for k, c in [(1, "MILK"), (2, "MILK"), (3, "EGGS"), (4, "BREAD")]
            ],
        )
        conn.execute(
            t["customers"].insert(), [{"customer_key": k, "customer_id": f"C{k}", "opted_out": 0} for k in (1, 2)]
        )
        conn.execute(
            t["batches"].insert(),
            [
                {
                    "batch_id": 1,
                    "period_start": START,
                    "period_end": END,
                    "status": "done",
                    "started_at": dt.datetime(2025, 3, 1),
                }
            ],
        )
        conn.execute(
            t["lists"].insert(),
            [
                {
                    "list_id": k,
                    "batch_id": 1,
                    "customer_key": k,
                    "code": f"L{k}",
                    "valid_from": START,
                    "valid_to": END - dt.timedelta(days=1),
                }
                for k in (1, 2)
            ],
        )
        # needs: customer 1 MILK (bought, another product), EGGS (bought before the period only);
        #        customer 2 BREAD (bought), MILK (customer 1 bought it, not 2)      -> 2 of 4
        conn.execute(
            t["list_needs"].insert(),
            [
                {"list_id": 1, "line_no": 1, "category": "MILK", "product_key": 1, "p_buy": 0.9, "expected_on": day},
                {"list_id": 1, "line_no": 2, "category": "EGGS", "product_key": 3, "p_buy": 0.8, "expected_on": day},
                {"list_id": 2, "line_no": 1, "category": "BREAD", "product_key": 4, "p_buy": 0.7, "expected_on": day},
                {"list_id": 2, "line_no": 2, "category": "MILK", "product_key": 1, "p_buy": 0.6, "expected_on": day},
            ],
        )
        # specials: customer 1 product 1 (not bought: 2 was, same category), customer 2 product 4 (bought),
        #           customer 2 product 3 (returned only: not a purchase); the reward is not a special
        offer = {"funder": "retailer", "discount_cents": 10, "valid_from": START, "valid_to": END}
        conn.execute(
            t["offers"].insert(),
            [
                {
                    **offer,
                    "offer_id": 1,
                    "list_id": 1,
                    "line_no": 1,
                    "kind": "cycle",
                    "product_key": 1,
                    "category": "MILK",
                },
                {
                    **offer,
                    "offer_id": 2,
                    "list_id": 2,
                    "line_no": 1,
                    "kind": "cycle",
                    "product_key": 4,
                    "category": "BREAD",
                },
                {
                    **offer,
                    "offer_id": 3,
                    "list_id": 2,
                    "line_no": 2,
                    "kind": "deal",
                    "product_key": 3,
                    "category": "EGGS",
                },
                {
                    **offer,
                    "offer_id": 4,
                    "list_id": 2,
                    "line_no": 3,
                    "kind": "reward",
                    "product_key": None,
                    "category": None,
                },
            ],
        )
        conn.execute(
            t["baskets"].insert(),
            [
                {
                    "basket_key": 1,
                    "store_id": "S1",
                    "basket_id": "B1",
                    "customer_key": 1,
                    "ts": dt.datetime(2025, 3, 5, 9),
                    "day": day,
                },
                {
                    "basket_key": 2,
                    "store_id": "S1",
                    "basket_id": "B2",
                    "customer_key": 1,
                    "ts": dt.datetime(2025, 3, 1, 9),
                    "day": dt.date(2025, 3, 1),
                },
                {
                    "basket_key": 3,
                    "store_id": "S1",
                    "basket_id": "B3",
                    "customer_key": 2,
                    "ts": dt.datetime(2025, 3, 16, 9),
                    "day": dt.date(2025, 3, 16),
                },
                {
                    "basket_key": 4,
                    "store_id": "S1",
                    "basket_id": "B4",
                    "customer_key": 2,
                    "ts": dt.datetime(2025, 3, 17, 9),
                    "day": END,
                },
            ],
        )
        line = {"amount_cents": 100}
        conn.execute(
            t["basket_lines"].insert(),
            [
                {**line, "basket_key": 1, "line_no": 1, "customer_key": 1, "day": day, "product_key": 2, "quantity": 1},
                {
                    **line,
                    "basket_key": 2,
                    "line_no": 1,
                    "customer_key": 1,
                    "day": dt.date(2025, 3, 1),
                    "product_key": 3,
                    "quantity": 1,
                },
                {
                    **line,
                    "basket_key": 3,
                    "line_no": 1,
                    "customer_key": 2,
                    "day": dt.date(2025, 3, 16),
                    "product_key": 4,
                    "quantity": 2,
                },
                {
                    **line,
                    "basket_key": 3,
                    "line_no": 2,
                    "customer_key": 2,
                    "day": dt.date(2025, 3, 16),
                    "product_key": 3,
                    "quantity": -1,
                },
                {**line, "basket_key": 4, "line_no": 1, "customer_key": 2, "day": END, "product_key": 1, "quantity": 1},
            ],
        )
    engine.dispose()
    got = list_outcomes(Settings(database_url=db_url), 1)
    assert got == {
        "batch_id": 1,
        "needs_lines": 4,
        "needs_bought_share": 0.5,
        "specials": 3,
        "specials_bought_share": round(1 / 3, 4),
        "specials_category_bought_share": round(2 / 3, 4),
    }
