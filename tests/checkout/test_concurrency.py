"""Lanes racing for the same offers, against a real server process (`listwise serve`)."""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor

import pytest
import sqlalchemy as sa

from engine.db import connect
from tests.checkout.conftest import basket, server_process_for

LANES = 50
ITEMS = [
    {"sku": "COFFEE-1", "quantity": 1, "amount_cents": 499},
    {"sku": "MILK-1", "quantity": 3, "amount_cents": 567},
    {"sku": "TEA-1", "quantity": 1, "amount_cents": 350},
    {"sku": "BREAD-1", "quantity": 10, "amount_cents": 2590},
]


def _race(server, bodies: list[dict]) -> list:
    start = threading.Barrier(len(bodies))

    def lane(body: dict):
        start.wait()
        return server.post("/v1/checkout", body)

    with ThreadPoolExecutor(len(bodies)) as pool:
        return list(pool.map(lane, bodies))


def _redemptions(url: str) -> dict[int, tuple[int, int]]:
    engine = connect(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT offer_id, count(*), sum(discount_cents) FROM redemptions WHERE voided = 0 GROUP BY offer_id"
            )
        ).all()
    engine.dispose()
    return {int(o): (int(n), int(c)) for o, n, c in rows}


def test_fifty_lanes_on_one_list_redeem_each_offer_within_its_limit(server_process, chain):
    bodies = [basket(f"lane-{i}", codes=[chain.codes["1"]], items=ITEMS, lane=i) for i in range(LANES)]
    responses = _race(server_process, bodies)
    assert [r.status_code for r in responses] == [200] * LANES
    # coffee 1 use, milk 2 uses, tea 1 use, reward 1 use — however the lanes interleave
    assert _redemptions(chain.url) == {101: (1, 125), 102: (2, 100), 103: (1, 40), 104: (1, 300)}
    given = {}
    for r in responses:
        for line in r.json()["lines"]:
            given[line["offer_id"]] = given.get(line["offer_id"], 0) + line["uses"]
    assert given == {101: 1, 102: 2, 103: 1, 104: 1}
    assert sum(r.json()["total_discount_cents"] for r in responses) == 565
    assert chain.count("baskets") == LANES and chain.count("basket_lines") == LANES * len(ITEMS)


@pytest.mark.slow
def test_lanes_on_two_server_processes_share_the_limits(chain, tmp_path):
    with server_process_for(chain, tmp_path, workers=2) as server:
        bodies = [basket(f"lane-{i}", codes=[chain.codes["1"]], items=ITEMS, lane=i) for i in range(LANES)]
        responses = _race(server, bodies)
    assert [r.status_code for r in responses] == [200] * LANES
    assert _redemptions(chain.url) == {101: (1, 125), 102: (2, 100), 103: (1, 40), 104: (1, 300)}


def test_parallel_retries_of_one_basket_record_it_once(server_process, chain):
    body = basket("retry", codes=[chain.codes["1"]], items=ITEMS)
    responses = _race(server_process, [body] * 20)
    assert {r.status_code for r in responses} == {200}
    assert len({r.text for r in responses}) == 1
    assert chain.written() == {"checkouts": 1, "redemptions": 5, "baskets": 1, "basket_lines": 4}


def test_parallel_different_bodies_under_one_basket_id_one_wins(server_process, chain):
    bodies = [
        basket("same", codes=[chain.codes["1"]], items=[{**ITEMS[0], "amount_cents": 400 + i}]) for i in range(10)
    ]
    responses = _race(server_process, bodies)
    codes = sorted(r.status_code for r in responses)
    assert codes == [200] + [409] * 9
    assert {r.json()["error"] for r in responses if r.status_code == 409} == {"conflict"}
    assert chain.written() == {"checkouts": 1, "redemptions": 1, "baskets": 1, "basket_lines": 1}
