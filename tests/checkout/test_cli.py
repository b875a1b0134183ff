"""`listwise keys` and `listwise checkout --file` (no server)."""

from __future__ import annotations

import json

import pytest

from engine.checkout import store_for_key
from engine.cli import main
from engine.db import connect
from tests.checkout.conftest import NOW, SECRET, basket


@pytest.fixture
def env(chain, monkeypatch, tmp_path):
    monkeypatch.setattr("engine.checkout.server_now", lambda: NOW)     # the clock validity is judged by
    monkeypatch.setenv("LISTWISE_SECRET", SECRET.decode())
    monkeypatch.setenv("LISTWISE_DATABASE_URL", chain.url)
    monkeypatch.chdir(tmp_path)
    return chain


def test_keys_create_prints_a_key_that_acts_for_its_store(env, capsys):
    assert main(["keys", "create", "--store", "S2"]) == 0
    key = capsys.readouterr().out.strip()
    assert key.startswith("lw_") and store_for_key(connect(env.url), key) == "S2"
    assert main(["keys", "revoke", key]) == 0
    assert store_for_key(connect(env.url), key) is None


def test_only_a_hash_of_the_key_is_stored(env, capsys):
    import sqlalchemy as sa
    main(["keys", "create", "--store", "S1"])
    key = capsys.readouterr().out.strip()
    with connect(env.url).connect() as conn:
        stored = conn.execute(sa.text("SELECT key_sha256 FROM api_keys")).scalar()
    assert key not in stored and len(stored) == 64


@pytest.mark.parametrize("argv, message", [
    (["keys", "create", "--store", "S9"], "store 'S9' is not known"),
    (["keys", "revoke", "lw_nothing"], "no such API key"),
])
def test_key_errors_are_one_stderr_line(env, capsys, argv, message):
    assert main(argv) == 1
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def test_checkout_from_a_file_is_the_same_as_over_http(env, capsys, tmp_path):
    path = tmp_path / "basket.json"
    path.write_text(json.dumps(basket(codes=[env.codes["1"]])))
    assert main(["checkout", "--file", str(path)]) == 0
    body = json.loads(capsys.readouterr().out)
    assert (body["total_discount_cents"], body["customer_id"]) == (225, "C1")
    assert main(["checkout", "--file", str(path)]) == 0                  # a retry: same answer
    assert json.loads(capsys.readouterr().out) == body
    assert env.written() == {"checkouts": 1, "redemptions": 3, "baskets": 1, "basket_lines": 3}


def test_checkout_of_a_bad_file_writes_nothing(env, capsys, tmp_path):
    path = tmp_path / "basket.json"
    path.write_text(json.dumps(basket(items=[{"sku": "COFFEE-1", "quantity": -2, "amount_cents": 499}])))
    assert main(["checkout", "--file", str(path)]) == 1
    assert "items.0.quantity" in capsys.readouterr().err
    assert main(["checkout", "--file", str(tmp_path / "missing.json")]) == 1
    assert env.written()["checkouts"] == 0
