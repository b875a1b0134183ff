"""A small chain with a batch, offers, redemptions and a planted lift, on SQLite and PostgreSQL.

Built once per database with SQLAlchemy Core, then extracted once per manufacturer; the tests
check claims against the truth the builder returns.

Truth planted: 900 customers with distinctive names, addresses, cards and e-mails; one batch
(2025-03-03 .. 2025-03-16) with 600 treated and 300 hold-out households; in the period,
treated households buy COFFEE with probability 0.55, hold-out ones with 0.35 (lift 0.20 in
purchase rate), 1 or 2 units each (lift 0.30 units per household). Offers: every treated
household carries M1's COFFEE deal (funded 75 %) in a cell drawn so that one cell is small;
half carry M2's TEA conversion campaign (funded 50 %, 75 cents: 37.5 is rounded half up).
Redemptions are in the period; one is voided.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import string
import uuid
from pathlib import Path

import numpy as np
import pytest
import sqlalchemy as sa

from engine.config import ExtractSettings, Settings
from engine.db import connect

PERIOD_START = dt.date(2025, 3, 3)
PERIOD_END = dt.date(2025, 3, 17)  # exclusive
LAST_DAY = PERIOD_END - dt.timedelta(days=1)
P_TREATED, P_HOLDOUT = 0.55, 0.35
TRUE_RATE_LIFT = P_TREATED - P_HOLDOUT
TRUE_UNITS_LIFT = (P_TREATED - P_HOLDOUT) * 1.5
CELLS = (
    ("national", "high", 0.35),
    ("national", "mid", 0.27),
    ("switcher", "low", 0.20),
    ("store", "low", 0.13),
    ("unclassified", "low", 0.05),
)
SECRET = "extract-test-secret"


def _word(rng: np.random.Generator, n: int = 9) -> str:
    letters = rng.choice(list(string.ascii_lowercase), size=n)
    return "".join(letters).capitalize()


def build_chain(url: str, seed: int = 0, n_customers: int = 900, n_treated: int = 600) -> dict:
    """Fill an initialised database; returns the truth (personal data, ids, expected dues)."""
    rng = np.random.default_rng(seed)
    engine = connect(url)
    meta = sa.MetaData()
    meta.reflect(engine)
    t = meta.tables
    customers, personal = [], []
    for k in range(1, n_customers + 1):
        first, last = _word(rng), _word(rng, 10)
        row = {
            "customer_key": k,
            "customer_id": f"KX{uuid.UUID(int=int(rng.integers(2**62))).hex[-12:]}",
            "card_number": "9" + "".join(str(d) for d in rng.integers(0, 10, 15)),
            "first_name": first,
            "last_name": last,
            "address_line1": f"{k} {_word(rng)} Lane",
            "address_line2": f"Suite {_word(rng, 7)}",
            "city": _word(rng, 8),
            "state": "ZQ",
            "postal_code": f"Z{k:05d}Q",
            "email": f"{first}.{last}@{_word(rng, 6).lower()}.test",
            "household_size": int(rng.integers(1, 6)),
            "opted_out": int(k % 97 == 0),
            "joined_on": dt.date(2020, 1, 1),
        }
        customers.append(row)
        personal += [
            row[c]
            for c in (
                "customer_id",
                "card_number",
                "first_name",
                "last_name",
                "address_line1",
                "address_line2",
                "city",
                "postal_code",
                "email",
            )
        ]
    products = [
        (1, "SKU-C1", "COFFEE", "national", "M1", 500),
        (2, "SKU-C2", "COFFEE", "national", "M2", 450),
        (3, "SKU-C3", "COFFEE", "store", None, 300),
        (4, "SKU-T1", "TEA", "national", "M2", 300),
        (5, "SKU-T2", "TEA", "store", None, 200),
    ]
    keys = np.arange(1, n_customers + 1)
    treated = set(rng.choice(keys, size=n_treated, replace=False).tolist())
    baskets, lines, lists, offers, redemptions = [], [], [], [], []
    basket_ids: list[str] = []
    offer_id = 0
    list_of: dict[int, int] = {}
    for k in keys.tolist():
        grp = "treated" if k in treated else "holdout"
        if grp == "treated":
            list_of[k] = 10_000 + k
            lists.append(
                {
                    "list_id": 10_000 + k,
                    "batch_id": 1,
                    "customer_key": k,
                    "store_id": None,
                    "code": f"L{k:07d}",
                    "valid_from": PERIOD_START,
                    "valid_to": LAST_DAY,
                    "status": "active",
                }
            )

        def basket(day: dt.date, items: list[tuple[int, float]]) -> tuple[str, str]:
            bkey = len(baskets) + 1
            store = "S01" if rng.random() < 0.5 else "S02"
            bid = f"TKT{uuid.UUID(int=int(rng.integers(2**62))).hex[-14:]}"
            baskets.append(
                {
                    "basket_key": bkey,
                    "store_id": store,
                    "basket_id": bid,
                    "customer_key": k,
                    "ts": dt.datetime.combine(day, dt.time(10, 30)),
                    "day": day,
                    "source": "import",
                    "voided": 0,
                }
            )
            basket_ids.append(bid)
            for no, (pk, qty) in enumerate(items, start=1):
                price = products[pk - 1][5]
                lines.append(
                    {
                        "basket_key": bkey,
                        "line_no": no,
                        "customer_key": k,
                        "day": day,
                        "product_key": pk,
                        "quantity": qty,
                        "amount_cents": int(price * qty),
                        "discount_cents": 0,
                    }
                )
            return store, bid

        # before the period: a brand habit (cells and cycles come from the lookback)
        habit = [[0.6, 0.4, 0.0], [0.0, 0.0, 1.0], [0.35, 0.15, 0.5]][int(rng.integers(0, 3))]
        for _ in range(int(rng.integers(0, 5))):
            basket(
                PERIOD_START - dt.timedelta(days=int(rng.integers(1, 60))),
                [(int(rng.choice([1, 2, 3], p=habit)), float(rng.integers(1, 4)))],
            )
        p = P_TREATED if grp == "treated" else P_HOLDOUT
        coffee_day = None
        if rng.random() < p:
            coffee_day = PERIOD_START + dt.timedelta(days=int(rng.integers(0, 14)))
            pk = int(rng.choice([1, 2, 3], p=[0.5, 0.2, 0.3]))
            store, bid = basket(coffee_day, [(pk, float(rng.integers(1, 3)))])
        if rng.random() < 0.4:  # TEA, same in both groups; some buy twice (repeat, cycle)
            for _ in range(1 + int(rng.random() < 0.5)):
                basket(PERIOD_START + dt.timedelta(days=int(rng.integers(0, 14))), [(int(rng.choice([4, 5])), 1.0)])
        if grp != "treated":
            continue
        cell = CELLS[int(rng.choice(len(CELLS), p=[c[2] for c in CELLS]))]
        offer_id += 1
        offers.append(
            {
                "offer_id": offer_id,
                "list_id": list_of[k],
                "line_no": 1,
                "kind": "deal",
                "product_key": 1,
                "category": "COFFEE",
                "deal_id": "D-M1-COFFEE",
                "funder": "M1",
                "funded_share": 0.75,
                "discount_cents": 101,
                "max_uses": 1,
                "valid_from": PERIOD_START,
                "valid_to": LAST_DAY,
                "brand_cell": cell[0],
                "volume_tier": cell[1],
                "reason": "deal",
            }
        )
        if coffee_day is not None and rng.random() < 0.6:
            redemptions.append(
                {
                    "redemption_id": len(redemptions) + 1,
                    "offer_id": offer_id,
                    "use_no": 1,
                    "store_id": store,
                    "basket_id": bid,
                    "redeemed_on": coffee_day,
                    "discount_cents": 101,
                    "voided": 0,
                    "created_at": dt.datetime(2025, 3, 20),
                }
            )
        if rng.random() < 0.5:
            offer_id += 1
            offers.append(
                {
                    "offer_id": offer_id,
                    "list_id": list_of[k],
                    "line_no": 2,
                    "kind": "conversion",
                    "product_key": 4,
                    "category": "TEA",
                    "deal_id": None,
                    "funder": "M2",
                    "funded_share": 0.5,
                    "discount_cents": 75,
                    "max_uses": 1,
                    "valid_from": PERIOD_START,
                    "valid_to": LAST_DAY,
                    "brand_cell": "store",
                    "volume_tier": "mid",
                    "reason": "campaign",
                }
            )
            if rng.random() < 0.3:
                day = PERIOD_START + dt.timedelta(days=int(rng.integers(0, 14)))
                store, bid = basket(day, [(4, 1.0)])
                redemptions.append(
                    {
                        "redemption_id": len(redemptions) + 1,
                        "offer_id": offer_id,
                        "use_no": 1,
                        "store_id": store,
                        "basket_id": bid,
                        "redeemed_on": day,
                        "discount_cents": 75,
                        "voided": 0,
                        "created_at": dt.datetime(2025, 3, 20),
                    }
                )
        offer_id += 1  # a retailer-funded offer: never in a manufacturer's settlement
        offers.append(
            {
                "offer_id": offer_id,
                "list_id": list_of[k],
                "line_no": 3,
                "kind": "cycle",
                "product_key": 5,
                "category": "TEA",
                "deal_id": None,
                "funder": "retailer",
                "funded_share": 0.0,
                "discount_cents": 20,
                "max_uses": 1,
                "valid_from": PERIOD_START,
                "valid_to": LAST_DAY,
                "brand_cell": "store",
                "volume_tier": "low",
                "reason": "cycle",
            }
        )
    # a voided redemption of an M1 offer: must not be settled
    first_m1 = next(r for r in redemptions if r["discount_cents"] == 101)
    redemptions.append(
        {
            **first_m1,
            "redemption_id": len(redemptions) + 1,
            "use_no": 2,
            "basket_id": "VOIDTKT-1",
            "discount_cents": 101,
            "voided": 1,
        }
    )
    with engine.begin() as conn:
        conn.execute(
            t["stores"].insert(),
            [
                {"store_id": "S01", "name": "Store One", "address": "1 High St"},
                {"store_id": "S02", "name": "Store Two", "address": "2 High St"},
            ],
        )
        conn.execute(
            t["manufacturers"].insert(),
            [
                {"manufacturer_id": "M1", "name": "Acme Foods"},
                {"manufacturer_id": "M2", "name": "Brightway"},
                {"manufacturer_id": "M3", "name": "Idle Co"},
            ],
        )
        conn.execute(
            t["products"].insert(),
            [
                {
                    "product_key": pk,
                    "sku": sku,
                    "description": sku,
                    "category": cat,
                    "department": "GROCERY",
                    "brand": mid or "House",
                    "brand_type": bt,
                    "manufacturer_id": mid,
                    "size": "1",
                    "regular_price_cents": price,
                    "unit_cost_cents": price // 2,
                }
                for pk, sku, cat, bt, mid, price in products
            ],
        )
        conn.execute(
            t["deals"].insert(),
            [
                {
                    "deal_id": "D-M1-COFFEE",
                    "manufacturer_id": "M1",
                    "category": "COFFEE",
                    "kind": "amount_off",
                    "value_cents": 101,
                    "funded_share": 0.75,
                    "starts_on": PERIOD_START,
                    "ends_on": LAST_DAY,
                }
            ],
        )
        conn.execute(t["customers"].insert(), customers)
        conn.execute(t["baskets"].insert(), baskets)
        conn.execute(t["basket_lines"].insert(), lines)
        conn.execute(
            t["batches"].insert(),
            [
                {
                    "batch_id": 1,
                    "period_start": PERIOD_START,
                    "period_end": PERIOD_END,
                    "status": "done",
                    "started_at": dt.datetime(2025, 3, 1),
                }
            ],
        )
        conn.execute(
            t["batch_members"].insert(),
            [
                {
                    "batch_id": 1,
                    "customer_key": k,
                    "grp": "treated" if k in treated else "holdout",
                    "avg_weekly_spend_cents": 5000,
                }
                for k in keys.tolist()
            ],
        )
        conn.execute(t["lists"].insert(), lists)
        conn.execute(t["offers"].insert(), offers)
        conn.execute(t["redemptions"].insert(), redemptions)
    engine.dispose()
    share = {101: 0.75, 75: 0.5}
    due = {"M1": 0, "M2": 0}
    for r in redemptions:
        if not r["voided"]:
            maker = "M1" if r["discount_cents"] == 101 else "M2"
            # independent reference: half up in exact decimal arithmetic
            from decimal import ROUND_HALF_UP, Decimal

            due[maker] += int(
                (Decimal(r["discount_cents"]) * Decimal(str(share[r["discount_cents"]]))).quantize(
                    Decimal(1), rounding=ROUND_HALF_UP
                )
            )
    return {
        "personal": personal,
        "basket_ids": basket_ids + ["VOIDTKT-1"],
        "due": due,
        "redemptions": redemptions,
        "n_treated": n_treated,
        "n_holdout": n_customers - n_treated,
    }


def _fresh_database(request, tmp_path: Path, kind: str) -> str:
    from tests.conftest import fresh_database

    return fresh_database(request, tmp_path, kind, name="chain.db")


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chain(request, tmp_path_factory) -> dict:
    """The built chain, its settings and the outputs: extracts of M1 and M2 (with panel), settlements."""
    from engine.extracts import write_extract, write_settlement

    tmp = tmp_path_factory.mktemp(f"extracts-{request.param}")
    url = _fresh_database(request, tmp, request.param)
    truth = build_chain(url)
    settings = dataclasses.replace(Settings(), database_url=url, secret=SECRET, extracts=ExtractSettings())
    out = {}
    for maker in ("M1", "M2"):
        out[maker] = tmp / "out" / maker
        write_extract(settings, maker, PERIOD_START, LAST_DAY, out[maker], panel=True)
        write_settlement(settings, maker, PERIOD_START, LAST_DAY, out[maker])
    return {"url": url, "settings": settings, "truth": truth, "out": out, "tmp": tmp}
