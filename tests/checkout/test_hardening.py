"""The service under attack and under load (issue 13): guessing, odd bytes, a held write lock, the access log."""

from __future__ import annotations

import json
import logging
import threading
import time

import httpx
import pytest

from engine.config import CheckoutSettings, Settings, validate_settings
from engine.errors import ConfigError
from tests.checkout.conftest import CARD, basket

EMPTY = {"checkouts": 0, "redemptions": 0, "baskets": 0, "basket_lines": 0}


def _bad(code: str, n: int = 1) -> str:
    """`code` with its last check digit moved by `n`: fails the keyed check."""
    return code[:-1] + str((int(code[-1]) + n) % 10)


# ---------------------------------------------------------------- guessing

LIMITED = CheckoutSettings(max_failed_checks_per_lane=3, max_failed_checks_per_key=5, failed_checks_window_seconds=600)


@pytest.mark.parametrize("server_settings", [LIMITED])
def test_failed_checks_are_limited_per_lane_then_per_key(server, chain):
    good = chain.codes["1"]
    for n in range(1, 4):
        r = server.post("/v1/scan", {"code": _bad(good, n), "lane": 1})
        assert (r.status_code, r.json()["error"]) == (400, "bad_check")
    r = server.post("/v1/scan", {"code": good, "lane": 1})  # even a good code: the lane waits
    assert (r.status_code, r.json()["error"]) == (429, "too_many_failed_checks")
    assert 1 <= int(r.headers["Retry-After"]) <= 600 // 3 + 1
    assert server.post("/v1/scan", {"code": good, "lane": 2}).status_code == 200  # another lane goes on
    # through checkout, two failures on lane 2 use up the key's five
    for n in (1, 2):
        r = server.post("/v1/checkout", basket(f"G{n}", codes=[_bad(good, n)], lane=2))
        assert (r.status_code, r.json()["error"]) == (400, "bad_check")
    r = server.post("/v1/checkout", basket("G3", codes=[good], lane=7))
    assert (r.status_code, r.json()["error"]) == (429, "too_many_failed_checks") and "Retry-After" in r.headers
    # a card-only basket needs no code check and goes through; the other store's key is its own
    assert server.post("/v1/checkout", basket("C1", card_number=CARD, lane=1)).status_code == 200
    other = server.post("/v1/scan", {"code": good, "lane": 1}, key=server.other_key)
    assert other.status_code == 200
    assert chain.written() == {"checkouts": 1, "redemptions": 3, "baskets": 1, "basket_lines": 3}


def test_a_failed_code_check_writes_no_basket(server, chain):
    for i in range(5):
        r = server.post("/v1/checkout", basket(f"X{i}", codes=[f"{i:018d}"]))
        assert (r.status_code, r.json()["error"]) == (400, "bad_check")
    assert chain.written() == EMPTY


# ---------------------------------------------------------------- odd bytes


@pytest.mark.parametrize("code", ["²" * 18, "٠٠٠٠٠٠٠٠٠١١٩٧١٨٧٣٥", "000000000１19718735"])
def test_unicode_digits_in_a_code_are_a_bad_check_not_a_crash(server, chain, code):
    for path, body in (("/v1/scan", {"code": code}), ("/v1/checkout", basket(codes=[code]))):
        r = server.post(path, body)
        assert (r.status_code, r.json()["error"]) == (400, "bad_check"), path
        assert set(r.json()) == {"error", "detail"}
    assert chain.written() == EMPTY


@pytest.mark.parametrize(
    "field, value",
    [
        ("card_number", CARD + "\x00"),
        ("card_number", "\x00" + CARD),
        ("basket_id", "B\x001"),
        ("store_id", "S1\x00"),
        ("codes", ["0000000001\x0019718735"]),
    ],
)
def test_nul_bytes_are_refused_and_never_logged_with_the_card(server, chain, caplog, field, value):
    caplog.set_level(logging.DEBUG)
    r = server.post("/v1/checkout", basket(**{field: value}))
    assert (r.status_code, r.json()["error"]) == (422, "invalid_request")
    assert "control characters" in r.json()["detail"] and CARD not in r.text
    assert chain.written() == EMPTY
    assert CARD not in caplog.text and "Zebedee" not in caplog.text


def test_an_unexpected_error_is_json_and_logs_no_values(server, chain, caplog, monkeypatch):
    caplog.set_level(logging.DEBUG)

    def boom(*_args, **_kw):
        raise RuntimeError(f"card {CARD} of Alice Zebedee")

    monkeypatch.setattr("engine.checkout.checkout", boom)
    r = server.post("/v1/checkout", basket(card_number=CARD))
    assert (r.status_code, r.json()["error"]) == (500, "internal")
    assert "RuntimeError" in caplog.text
    assert CARD not in caplog.text and "Zebedee" not in caplog.text and CARD not in r.text


# ---------------------------------------------------------------- a held write lock


@pytest.fixture
def held_write_lock(chain):
    """Another process's writer (an import, a batch) holding the database's write lock."""
    import sqlite3

    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(chain.url)
    if url.get_backend_name() == "sqlite":
        conn = sqlite3.connect(url.database, isolation_level=None)
        hold = lambda: conn.execute("BEGIN IMMEDIATE")
    else:
        conn = psycopg.connect(chain.url, autocommit=False)
        # the row every checkout's basket key is drawn from (engine.db.allocate_keys)
        hold = lambda: conn.execute("SELECT * FROM sequences WHERE name = 'baskets' FOR UPDATE")
    yield hold
    conn.rollback()
    conn.close()


@pytest.mark.parametrize("server_settings", [CheckoutSettings(lock_wait_seconds=2)])
def test_a_held_write_lock_answers_503_json_and_health_does_not_wait(server, chain, held_write_lock):
    assert server.post("/v1/checkout", basket("B0")).status_code == 200  # sequences exist, pool warm
    held_write_lock()
    answer: dict = {}

    def lane() -> None:
        started = time.monotonic()
        answer["r"] = server.post("/v1/checkout", basket("B1", codes=[chain.codes["1"]]))
        answer["seconds"] = time.monotonic() - started

    worker = threading.Thread(target=lane)
    worker.start()
    time.sleep(0.5)  # the lane is waiting for the lock now
    started = time.monotonic()
    health = httpx.get(server.base + "/v1/health", timeout=5)
    assert health.status_code == 200 and time.monotonic() - started < 0.5
    worker.join(20)
    r = answer["r"]
    assert (r.status_code, r.json()["error"]) == (503, "busy") and int(r.headers["Retry-After"]) >= 1
    assert 1.5 <= answer["seconds"] < 10
    assert chain.count("checkouts", "basket_id = 'B1'") == 0


# ---------------------------------------------------------------- the access log


def test_one_json_access_line_per_request_without_personal_data(server, chain, caplog):
    caplog.set_level(logging.INFO, logger="listwise.access")
    server.post("/v1/checkout", basket("B1", card_number=CARD, codes=[chain.codes["1"]], lane=4))
    server.post("/v1/scan", {"code": _bad(chain.codes["1"]), "lane": 4})
    server.post("/v1/scan", {"code": chain.codes["1"]}, key="lw_wrong")
    lines = [json.loads(r.getMessage()) for r in caplog.records if r.name == "listwise.access"]
    assert [(x["path"], x["status"], x["outcome"]) for x in lines] == [
        ("/v1/checkout", 200, "ok"),
        ("/v1/scan", 400, "bad_check"),
        ("/v1/scan", 401, "unauthorized"),
    ]
    key_id = chain.count("api_keys", "store_id = 'S1'")  # S1's key was made first: id 1
    assert [(x["key_id"], x["store"], x["lane"]) for x in lines] == [
        (key_id, "S1", 4),
        (key_id, "S1", 4),
        (None, None, None),
    ]
    assert all(isinstance(x["latency_ms"], float) and x["latency_ms"] >= 0 for x in lines)
    text = caplog.text
    for secret in (CARD, CARD[-4:] + '"', chain.codes["1"], "Alice", "Zebedee", "Quince", server.key):
        assert secret not in text


# ---------------------------------------------------------------- settings


@pytest.mark.parametrize(
    "change, key",
    [
        ({"clock_tolerance_minutes": -1}, "clock_tolerance_minutes"),
        ({"clock_tolerance_minutes": 2000}, "clock_tolerance_minutes"),
        ({"max_failed_checks_per_key": 0}, "max_failed_checks_per_key"),
        ({"max_failed_checks_per_lane": 0}, "max_failed_checks_per_lane"),
        ({"failed_checks_window_seconds": 0.5}, "failed_checks_window_seconds"),
        ({"lock_wait_seconds": 0}, "lock_wait_seconds"),
    ],
)
def test_checkout_settings_out_of_range_are_refused_naming_the_key(change, key):
    with pytest.raises(ConfigError, match=rf"checkout\.{key} must be"):
        validate_settings(Settings(checkout=CheckoutSettings(**change)))


def test_the_default_checkout_settings_are_valid_and_refuse_far_baskets():
    settings = validate_settings(Settings())
    assert settings.checkout.max_clock_skew_minutes == 24 * 60
    assert 0 < settings.checkout.clock_tolerance_minutes <= 60
