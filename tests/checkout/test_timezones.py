"""The checkout API takes timestamps with an offset or Z and keeps the store's wall clock.

The chain's zone is America/New_York; store S1 has its own, America/Los_Angeles; S2 has none.
Hand-worked: DST began on 9 March 2025, so on 5 March Los Angeles is UTC-8 and on 16-17
March it is UTC-7 (New York UTC-4). List 1 (C1's) is valid 2025-03-03..2025-03-16.
"""

from __future__ import annotations

import datetime as dt

import pytest
import sqlalchemy as sa

from engine.config import Settings
from engine.db import connect
from tests.checkout.conftest import SECRET, basket, serve_in_thread


@pytest.fixture
def zoned_server(chain, clock):
    """The real app (uvicorn in a thread, as the `server` fixture) of a chain in New York time."""
    engine = connect(chain.url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE stores SET timezone = 'America/Los_Angeles' WHERE store_id = 'S1'"))
    engine.dispose()
    clock.set("2025-03-05T18:15:00Z")  # 10:15 in Los Angeles, 13:15 in New York
    yield from serve_in_thread(
        chain, Settings(database_url=chain.url, secret=SECRET.decode(), timezone="America/New_York"), clock
    )


def stored(chain, basket_id: str) -> tuple[dt.datetime, str]:
    engine = connect(chain.url)
    with engine.connect() as conn:
        ts, day = conn.execute(sa.text("SELECT ts, day FROM baskets WHERE basket_id = :b"), {"b": basket_id}).one()
    engine.dispose()
    ts = ts if isinstance(ts, dt.datetime) else dt.datetime.fromisoformat(str(ts))
    return ts, str(day)


def test_an_offset_is_converted_to_the_store_own_zone(zoned_server, chain):
    r = zoned_server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-05T18:15:00Z"))
    assert r.status_code == 200
    assert r.json()["total_discount_cents"] > 0
    assert stored(chain, "B1") == (dt.datetime(2025, 3, 5, 10, 15), "2025-03-05")


def test_a_store_without_a_zone_takes_the_chain_zone(zoned_server, chain):
    body = basket(store_id="S2", timestamp="2025-03-05T10:15:00.250-05:00")
    assert zoned_server.post("/v1/checkout", body, key=zoned_server.other_key).status_code == 200
    assert stored(chain, "B1") == (dt.datetime(2025, 3, 5, 10, 15, 0, 250000), "2025-03-05")


def test_a_retry_written_in_local_time_is_the_same_request(zoned_server, chain):
    first = zoned_server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-05T10:15:00-08:00"))
    before = chain.written()
    again = zoned_server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-05 10:15:00"))
    assert (first.status_code, again.status_code) == (200, 200)
    assert again.json() == first.json()
    assert chain.written() == before


def test_validity_is_judged_on_the_store_local_day_across_dst(zoned_server, chain, clock):
    clock.set("2025-03-17T06:00:00Z")
    # 06:00 UTC on the 17th is 23:00 PDT on the 16th in Los Angeles: the list's last day
    r = zoned_server.post(
        "/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-17T06:00:00+00:00".replace("+00:00", "Z"))
    )
    assert r.status_code == 200 and r.json()["refused"] == [] and r.json()["total_discount_cents"] > 0
    assert stored(chain, "B1") == (dt.datetime(2025, 3, 16, 23, 0), "2025-03-16")


def test_scan_judges_at_the_scanning_store_local_day(zoned_server, chain, clock):
    at = "2025-03-17T06:00:00Z"
    clock.set(at)
    assert zoned_server.post("/v1/scan", {"code": chain.codes["1"], "at": at}).status_code == 200  # LA: 16th
    r = zoned_server.post("/v1/scan", {"code": chain.codes["1"], "at": at}, key=zoned_server.other_key)
    assert (r.status_code, r.json()["error"]) == (410, "expired")  # NY: 17th, 02:00


@pytest.mark.parametrize("timestamp", ["2025-03-05T10:15:00+01:00", "2025-03-05T10:15:00-05:00"])
def test_an_offset_the_store_zone_cannot_have_is_refused_naming_the_zone(zoned_server, chain, timestamp):
    r = zoned_server.post("/v1/checkout", basket(timestamp=timestamp))
    assert r.status_code == 422 and r.json()["error"] == "invalid_request"
    assert "America/Los_Angeles" in r.json()["detail"] and "timezone" in r.json()["detail"]
    assert chain.written() == {"checkouts": 0, "redemptions": 0, "baskets": 0, "basket_lines": 0}


def test_naive_timestamps_stay_as_written(zoned_server, chain, clock):
    clock.set("2025-03-09T10:30:00Z")
    assert zoned_server.post("/v1/checkout", basket(timestamp="2025-03-09T02:30:00")).status_code == 200
    assert stored(chain, "B1") == (dt.datetime(2025, 3, 9, 2, 30), "2025-03-09")


def test_the_server_clock_is_read_in_the_store_zone(zoned_server, chain, clock):
    # 06:30 UTC on the 17th: still the 16th, 23:30 (PDT) in Los Angeles, so list 1 is valid
    # for S1's lanes without any timestamp from them; in UTC it would already have expired.
    clock.set("2025-03-17T06:30:00Z")
    assert zoned_server.post("/v1/scan", {"code": chain.codes["1"]}).status_code == 200
    body = zoned_server.post("/v1/checkout", basket(codes=[chain.codes["1"]], timestamp="2025-03-16T23:30:00"))
    assert body.json()["refused"] == [] and body.json()["total_discount_cents"] > 0
