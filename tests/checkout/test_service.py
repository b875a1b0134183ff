"""The checkout service over real HTTP on loopback, against SQLite and PostgreSQL."""

from __future__ import annotations

import datetime as dt
import json

import httpx
import pytest

from engine.codes import make_code
from engine.config import CheckoutSettings
from tests.checkout.conftest import AT, CARD, SECRET, basket


def _expected_first_basket() -> dict:
    # coffee 499 - 125; milk x3 at 567: two uses of 50; bread untouched; spend 1016 < 3000: no reward
    return {(1, 101): 125, (2, 102): 100}


def _by_line(response: dict) -> dict:
    return {(line["line_no"], line["offer_id"]): line["discount_cents"] for line in response["lines"]}


# ---------------------------------------------------------------- health and keys


def test_health_needs_no_key(server):
    assert httpx.get(server.base + "/v1/health").json() == {"status": "ok"}


def test_openapi_documents_the_three_endpoints(server):
    paths = httpx.get(server.base + "/openapi.json").json()["paths"]
    assert {"/v1/scan", "/v1/checkout", "/v1/void", "/v1/health"} <= set(paths)
    assert httpx.get(server.base + "/docs").status_code == 200


@pytest.mark.parametrize("key", [None, "lw_not-a-key"])
def test_missing_or_unknown_key_is_unauthorized(server, chain, key):
    r = server.post("/v1/scan", {"code": chain.codes["1"]}, key=key)
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")


def test_revoked_key_is_unauthorized(server, chain):
    from engine.db import connect
    from engine.keys import revoke_key

    assert server.post("/v1/scan", {"code": chain.codes["1"], "at": AT}).status_code == 200
    assert revoke_key(connect(chain.url), server.key) == "S1"
    r = server.post("/v1/scan", {"code": chain.codes["1"], "at": AT})
    assert (r.status_code, r.json()["error"]) == (401, "unauthorized")


def test_a_key_acts_for_its_own_store_only(server, chain):
    r = server.post("/v1/checkout", basket(codes=[chain.codes["1"]]), key=server.other_key)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")
    assert chain.written() == {"checkouts": 0, "redemptions": 0, "baskets": 0, "basket_lines": 0}


# ---------------------------------------------------------------- scan


def test_scan_returns_the_list_and_its_offers(server, chain):
    r = server.post("/v1/scan", {"code": chain.codes["1"], "at": AT})
    assert r.status_code == 200
    body = r.json()
    assert (body["list_id"], body["customer_id"], body["valid_from"], body["valid_to"]) == (
        1,
        "C1",
        "2025-03-03",
        "2025-03-16",
    )
    offers = {o["offer_id"]: o for o in body["offers"]}
    assert list(offers) == [101, 102, 103, 104]
    assert {k: offers[101][k] for k in ("sku", "description", "kind", "discount_cents", "max_uses", "redeemed")} == {
        "sku": "COFFEE-1",
        "description": "Coffee 500g",
        "kind": "cycle",
        "discount_cents": 125,
        "max_uses": 1,
        "redeemed": 0,
    }
    assert (offers[101]["sku"], offers[101]["discount_cents"], offers[101]["redeemed"]) == ("COFFEE-1", 125, 0)
    assert (offers[104]["kind"], offers[104]["sku"], offers[104]["min_spend_cents"]) == ("reward", None, 3000)


def test_no_response_carries_name_address_or_card(server, chain):
    texts = [
        server.post("/v1/scan", {"code": chain.codes["1"], "at": AT}).text,
        server.post("/v1/checkout", basket(card_number=CARD)).text,
        server.post("/v1/checkout", basket("B2", card_number="4000000000009999")).text,
    ]
    for text in texts:
        for personal in ("Alice", "Zebedee", "Quince", CARD, "4000000000009999"):
            assert personal not in text
    assert "************9999" in texts[2]


@pytest.mark.parametrize(
    "list_id, at, error, status",
    [
        ("2", AT, "expired", 410),
        ("3", AT, "revoked", 410),
        ("4", AT, "not_yet_valid", 409),
        ("1", "2025-03-17T00:00:01", "expired", 410),  # valid_to is inclusive: the 16th, not the 17th
        ("1", "2025-03-02T23:59:59", "not_yet_valid", 409),
    ],
)
def test_scan_refuses_a_list_outside_its_validity(server, chain, clock, list_id, at, error, status):
    clock.set(at + "+00:00")  # the server's clock says so too (S1 keeps UTC)
    r = server.post("/v1/scan", {"code": chain.codes[list_id], "at": at})
    assert (r.status_code, r.json()["error"]) == (status, error)


def test_scan_accepts_the_last_day_of_validity(server, chain, clock):
    clock.set("2025-03-16T23:59:00Z")
    assert server.post("/v1/scan", {"code": chain.codes["1"], "at": "2025-03-16T23:59:00"}).status_code == 200


def test_forged_and_altered_codes_fail_the_check(server, chain):
    good = chain.codes["1"]
    altered = good[:-1] + str((int(good[-1]) + 1) % 10)  # one check digit changed
    other_id = f"{2:010d}" + good[10:]  # another list id, this list's check
    forged = make_code(1, b"someone-elses-secret")
    for code in (altered, other_id, forged, "12345", "abc"):
        r = server.post("/v1/scan", {"code": code, "at": AT})
        assert (r.status_code, r.json()["error"]) == (400, "bad_check"), code


def test_bad_check_is_answered_without_a_database(tmp_path):
    from engine.checkout import scan
    from engine.checkout_api import CheckoutRefused
    from engine.db import connect

    unreachable = connect(f"sqlite:///{tmp_path}/no/such/dir/x.db")  # any look-up would raise
    with pytest.raises(CheckoutRefused) as refused:
        scan(unreachable, SECRET, make_code(1, b"forged"))
    assert refused.value.reason == "bad_check"


def test_a_well_signed_code_of_no_list_is_unknown(server):
    r = server.post("/v1/scan", {"code": make_code(999, SECRET), "at": AT})
    assert (r.status_code, r.json()["error"]) == (404, "unknown")


# ---------------------------------------------------------------- checkout


def test_checkout_applies_each_offer_within_its_limit(server, chain):
    r = server.post("/v1/checkout", basket(codes=[chain.codes["1"]]))
    assert r.status_code == 200, r.text
    body = r.json()
    assert _by_line(body) == _expected_first_basket()
    assert body["total_discount_cents"] == 225
    assert (body["customer_id"], body["list_ids"], body["refused"]) == ("C1", [1], [])
    assert chain.written() == {"checkouts": 1, "redemptions": 3, "baskets": 1, "basket_lines": 3}
    scanned = {
        o["offer_id"]: o["redeemed"]
        for o in server.post("/v1/scan", {"code": chain.codes["1"], "at": AT}).json()["offers"]
    }
    assert scanned == {101: 1, 102: 2, 103: 0, 104: 0}


def test_offers_are_used_once_across_baskets(server, chain):
    server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    second = server.post("/v1/checkout", basket("B2", codes=[chain.codes["1"]])).json()
    assert (second["lines"], second["total_discount_cents"]) == ([], 0)
    assert chain.count("redemptions") == 3 and chain.count("baskets") == 2


def test_category_offer_and_reward_on_the_basket_total(server, chain):
    items = [
        {"sku": "TEA-2", "quantity": 2, "amount_cents": 900},
        {"sku": "BREAD-1", "quantity": 10, "amount_cents": 2590},
    ]
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], items=items)).json()
    # tea: one use of 40 (max 1); spend 3490 - 40 = 3450 >= 3000: reward 300
    assert _by_line(body) == {(1, 103): 40, (None, 104): 300}
    assert body["total_discount_cents"] == 340


def test_reward_needs_the_minimum_spend(server, chain):
    items = [{"sku": "BREAD-1", "quantity": 1, "amount_cents": 2999}]
    assert server.post("/v1/checkout", basket(codes=[chain.codes["1"]], items=items)).json()["lines"] == []


def test_a_discount_never_exceeds_the_line(server, chain):
    items = [{"sku": "COFFEE-1", "quantity": 1, "amount_cents": 80}]
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], items=items)).json()
    assert _by_line(body) == {(1, 101): 80}


def test_card_finds_the_current_list(server, chain):
    body = server.post("/v1/checkout", basket(card_number=CARD)).json()
    assert (body["customer_id"], body["list_ids"]) == ("C1", [1])
    assert _by_line(body) == _expected_first_basket()


def test_refused_codes_are_listed_and_the_rest_applies(server, chain):
    bad = chain.codes["1"][:-1] + str((int(chain.codes["1"][-1]) + 3) % 10)
    body = server.post("/v1/checkout", basket(codes=[chain.codes["2"], chain.codes["5"], chain.codes["1"]]))
    refused = {r["code"]: r["error"] for r in body.json()["refused"]}
    assert refused == {chain.codes["2"]: "expired", chain.codes["1"]: "other_customer"}
    assert (body.json()["customer_id"], _by_line(body.json())) == ("C2", {(1, 501): 100})
    # a code failing its keyed check refuses the whole basket: a guess never leaves a basket behind
    before = chain.written()
    r = server.post("/v1/checkout", basket("B2", codes=[bad, chain.codes["5"]]))
    assert (r.status_code, r.json()["error"]) == (400, "bad_check") and "codes.0" in r.json()["detail"]
    assert chain.written() == before


def test_validity_is_judged_at_the_server_clock_in_the_store_zone(server, chain, clock):
    clock.set("2025-03-20T09:00:00Z")
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-20T09:00:00")).json()
    assert body["refused"] == [{"code": chain.codes["1"], "error": "expired"}]
    assert body["lines"] == []


def test_an_expired_list_does_not_redeem_by_backdating(server, chain, clock):
    # list 1 ended on the 16th; on the 17th at 09:00 a lane sends a basket dated the 16th, 20:00
    clock.set("2025-03-17T09:00:00Z")
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-16T20:00:00")).json()
    assert body["refused"] == [{"code": chain.codes["1"], "error": "expired"}]
    assert (body["lines"], chain.count("redemptions")) == ([], 0)
    assert chain.count("baskets", "day = '2025-03-16'") == 1  # the basket itself keeps its day
    r = server.post("/v1/scan", {"code": chain.codes["1"], "at": "2025-03-16T20:00:00"})
    assert (r.status_code, r.json()["error"]) == (410, "expired")


def test_a_lane_clock_within_the_tolerance_still_redeems_on_the_last_evening(server, chain, clock):
    # server: 00:10 on the 17th; the lane's clock says 23:58 on the 16th (12 minutes, tolerance 15)
    clock.set("2025-03-17T00:10:00Z")
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-16T23:58:00")).json()
    assert body["refused"] == [] and body["total_discount_cents"] > 0
    clock.set("2025-03-17T00:20:00Z")  # 22 minutes: beyond it
    body = server.post("/v1/checkout", basket("B2", codes=[chain.codes["1"]], timestamp="2025-03-16T23:58:00"))
    assert body.json()["refused"] == [{"code": chain.codes["1"], "error": "expired"}]


def test_unknown_skus_get_no_discount_and_stay_out_of_history(server, chain):
    items = [
        {"sku": "COFFEE-1", "quantity": 1, "amount_cents": 499},
        {"sku": "NEW-ITEM", "quantity": 1, "amount_cents": 100},
    ]
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]], items=items)).json()
    assert body["unknown_skus"] == ["NEW-ITEM"] and _by_line(body) == {(1, 101): 125}
    assert chain.count("basket_lines") == 1


# ---------------------------------------------------------------- idempotency and void


def test_a_retry_returns_the_same_answer_and_writes_nothing(server, chain):
    body = basket(codes=[chain.codes["1"]])
    first = server.post("/v1/checkout", body)
    before = chain.written()
    reordered = json.loads(json.dumps(dict(reversed(list(body.items())))))
    again = server.post("/v1/checkout", reordered)
    assert (again.status_code, again.json()) == (200, first.json())
    assert chain.written() == before


def test_same_basket_id_with_another_body_is_refused(server, chain):
    server.post("/v1/checkout", basket(codes=[chain.codes["1"]]))
    before = chain.written()
    changed = basket(codes=[chain.codes["1"]])
    changed["items"][0]["amount_cents"] = 498
    r = server.post("/v1/checkout", changed)
    assert (r.status_code, r.json()["error"]) == (409, "conflict")
    assert chain.written() == before


def test_void_releases_the_offers_and_leaves_history(server, chain):
    server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    r = server.post("/v1/void", {"store_id": "S1", "basket_id": "B1"})
    assert r.status_code == 200
    assert (r.json()["released_redemptions"], r.json()["released_discount_cents"]) == (3, 225)
    assert chain.count("redemptions", "voided = 0") == 0 and chain.count("baskets", "voided = 1") == 1
    # released: a later basket gets the offers again
    assert (
        _by_line(server.post("/v1/checkout", basket("B2", codes=[chain.codes["1"]])).json()) == _expected_first_basket()
    )
    # a repeated void changes nothing; a retry of the voided basket is refused
    assert server.post("/v1/void", {"store_id": "S1", "basket_id": "B1"}).json()["already_voided"] is True
    r = server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    assert (r.status_code, r.json()["error"]) == (409, "voided")


def test_void_of_an_unknown_basket_or_another_store(server, chain):
    r = server.post("/v1/void", {"store_id": "S1", "basket_id": "nope"})
    assert (r.status_code, r.json()["error"]) == (404, "unknown_basket")
    r = server.post("/v1/void", {"store_id": "S1", "basket_id": "nope"}, key=server.other_key)
    assert (r.status_code, r.json()["error"]) == (403, "forbidden")


def test_the_basket_joins_history_and_a_void_takes_it_out(server_process, chain):
    # A server process of its own: this process reads history through ADBC, which must not
    # share a SQLite file with the service's pooled connections in one process (engine/db.py).
    from engine.history import read_history

    server = server_process
    server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    history = read_history(chain.url, end=dt.date(2025, 3, 6))
    assert history["customer_key"].to_list() == [1, 1, 1]
    assert sorted(zip(history["sku"], history["amount_cents"], history["discount_cents"])) == [
        ("BREAD-1", 259, 0),
        ("COFFEE-1", 374, 125),
        ("MILK-1", 467, 100),
    ]
    assert set(history["day"]) == {dt.date(2025, 3, 5)}
    server.post("/v1/void", {"store_id": "S1", "basket_id": "B1"})
    assert read_history(chain.url, end=dt.date(2025, 3, 6)).height == 0


# ---------------------------------------------------------------- bad bodies: 4xx, nothing written


def _raw(server, content: bytes, **headers) -> httpx.Response:
    return httpx.post(
        server.base + "/v1/checkout",
        content=content,
        timeout=30,
        headers={"X-API-Key": server.key, "content-type": "application/json", **headers},
    )


def _item(**change) -> list[dict]:
    return [{"sku": "COFFEE-1", "quantity": 1, "amount_cents": 499, **change}]


BAD_BODIES = [
    (basket(surprise=1), "invalid_request"),
    (basket(items=_item(colour="red")), "invalid_request"),
    (basket(items=_item(quantity=-1)), "invalid_request"),
    (basket(items=_item(quantity=0)), "invalid_request"),
    (basket(items=_item(quantity=1e9)), "invalid_request"),
    (basket(items=_item(amount_cents=-499)), "invalid_request"),
    (basket(items=_item(amount_cents=10**12)), "invalid_request"),
    (basket(items=_item(amount_cents=4.99)), "invalid_request"),
    (basket(items=_item(amount_cents="499")), "invalid_request"),
    (basket(items=[]), "invalid_request"),
    (basket(timestamp="2025-03-05T10:15:00+01:00"), "invalid_request"),
    (basket(timestamp="yesterday"), "invalid_request"),
    (basket(timestamp=1741169700), "invalid_request"),
    (basket(basket_id=""), "invalid_request"),
    (basket(codes=["1"] * 21), "invalid_request"),
    (basket(items=_item() * 501), "too_many_items"),
    (basket(store_id="S9"), "forbidden"),
]
RAW_BODIES = [
    (b'{"store_id": "S1", ', 400, "malformed_json"),
    (b"\xff\xfe", 400, "malformed_json"),
    (b"[]", 422, "invalid_request"),
    (b'{"padding": "' + b"x" * (256 * 1024) + b'"}', 413, "too_large"),
]


def test_bad_bodies_are_refused_with_a_reason_and_nothing_is_written(server, chain):
    # One server for the whole table (each case its own server would double the suite's time).
    wrong = []
    for body, error in BAD_BODIES:
        r = server.post("/v1/checkout", body)
        if not (400 <= r.status_code < 500 and r.json()["error"] == error and r.json()["detail"]):
            wrong.append((json.dumps(body)[:120], r.status_code, r.text[:200]))
    for content, status, error in RAW_BODIES:
        r = _raw(server, content)
        if (r.status_code, r.json()["error"]) != (status, error):
            wrong.append((content[:40], r.status_code, r.text[:200]))
    assert wrong == []
    assert chain.written() == {"checkouts": 0, "redemptions": 0, "baskets": 0, "basket_lines": 0}


def test_oversized_chunked_body_is_refused(server, chain):
    def chunks():
        for _ in range(300):
            yield b"x" * 1024

    r = httpx.post(
        server.base + "/v1/checkout",
        content=chunks(),
        timeout=30,
        headers={"X-API-Key": server.key, "content-type": "application/json"},
    )
    assert (r.status_code, r.json()["error"]) == (413, "too_large")


def test_a_basket_far_from_the_server_clock_is_refused_by_default(server, chain, clock):
    clock.set("2025-03-07T10:16:00Z")  # the basket (the 5th, 10:15) is 48 h old
    r = server.post("/v1/checkout", basket(codes=[chain.codes["1"]]))
    assert (r.status_code, r.json()["error"]) == (422, "clock_skew")
    assert chain.written() == {"checkouts": 0, "redemptions": 0, "baskets": 0, "basket_lines": 0}
    clock.set("2025-03-06T10:00:00Z")  # 23 h 45 min: a store-and-forward lane's basket
    assert server.post("/v1/checkout", basket(codes=[chain.codes["1"]])).status_code == 200


@pytest.mark.parametrize("server_settings", [CheckoutSettings(max_clock_skew_minutes=0)])
def test_without_the_skew_rule_a_far_basket_is_recorded_but_judged_now(server, chain, clock):
    clock.set("2025-03-20T10:00:00Z")
    body = server.post("/v1/checkout", basket(codes=[chain.codes["1"]])).json()
    assert body["refused"] == [{"code": chain.codes["1"], "error": "expired"}]
    assert chain.count("baskets", "day = '2025-03-05'") == 1


def test_clock_skew_setting_refuses_far_baskets(chain):
    from engine.checkout import checkout
    from engine.checkout_api import CheckoutRefused
    from engine.config import CheckoutSettings
    from engine.db import connect

    engine = connect(chain.url)
    strict = CheckoutSettings(max_clock_skew_minutes=30)
    with pytest.raises(CheckoutRefused) as refused:
        checkout(engine, SECRET, basket(), strict, now=dt.datetime(2025, 3, 5, 12, 0))
    assert refused.value.reason == "clock_skew"
    assert checkout(engine, SECRET, basket(), strict, now=dt.datetime(2025, 3, 5, 10, 30))["basket_id"] == "B1"


def test_a_basket_already_imported_is_not_checked_out_again(server, chain):
    import sqlalchemy as sa

    from engine.db import connect

    engine = connect(chain.url)
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO baskets (basket_key, store_id, basket_id, ts, day) "
                "VALUES (900, 'S1', 'B1', '2025-03-05T10:15:00.000000', '2025-03-05')"
            )
        )
    engine.dispose()
    r = server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    assert (r.status_code, r.json()["error"]) == (409, "basket_exists")
    assert chain.written() == {"checkouts": 0, "redemptions": 0, "baskets": 1, "basket_lines": 0}


def test_a_basket_without_list_or_card_joins_history_without_a_customer(server, chain):
    body = server.post("/v1/checkout", basket("anon")).json()
    assert (body["customer_id"], body["lines"], body["total_discount_cents"]) == (None, [], 0)
    assert chain.count("basket_lines", "customer_key IS NULL") == 3
    assert chain.count("baskets", "source = 'checkout' AND lane = 3") == 1


def test_sqlite_wal_is_checkpointed_in_the_background_and_the_thread_stops(sqlite_url):
    import threading

    import uvicorn

    from engine.config import CheckoutSettings, Settings
    from engine.server import create_app
    from tests.checkout.conftest import _wait_ready, free_port

    settings = Settings(
        database_url=sqlite_url, secret=SECRET.decode(), checkout=CheckoutSettings(wal_checkpoint_seconds=0.2)
    )
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(create_app(settings), host="127.0.0.1", port=port, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    _wait_ready(f"http://127.0.0.1:{port}")
    assert "listwise-wal-checkpoint" in {t.name for t in threading.enumerate()}
    server.should_exit = True
    thread.join(10)
    assert "listwise-wal-checkpoint" not in {t.name for t in threading.enumerate()}


def test_the_next_profile_sees_the_checked_out_basket(server_process, chain, tmp_path):
    import polars as pl

    from engine.config import Settings
    from engine.profiles import write_profile

    server_process.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
    out = tmp_path / "profile.csv"
    write_profile(Settings(database_url=chain.url, secret=SECRET.decode()), dt.date(2025, 3, 6), None, out)
    profile = pl.read_csv(out, try_parse_dates=True)
    seen = profile.filter(pl.col("customer_id") == "C1")
    assert set(seen["category"]) == {"COFFEE", "MILK", "BREAD"}
    assert set(seen["last_purchase_on"]) == {dt.date(2025, 3, 5)}
