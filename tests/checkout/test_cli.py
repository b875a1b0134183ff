"""`listwise keys` and `listwise checkout --file` (no server)."""

from __future__ import annotations

import json

import pytest

from engine.cli import main
from engine.db import connect
from engine.keys import store_for_key
from tests.checkout.conftest import NOW, SECRET, basket


@pytest.fixture
def env(chain, monkeypatch, tmp_path):
    monkeypatch.setattr("engine.checkout.server_now", lambda: NOW)  # the clock validity is judged by
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


@pytest.mark.parametrize(
    "argv, message",
    [
        (["keys", "create", "--store", "S9"], "store 'S9' is not known"),
        (["keys", "revoke", "lw_nothing"], "no such API key"),
    ],
)
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
    assert main(["checkout", "--file", str(path)]) == 0  # a retry: same answer
    assert json.loads(capsys.readouterr().out) == body
    assert env.written() == {"checkouts": 1, "redemptions": 3, "baskets": 1, "basket_lines": 3}


def test_checkout_of_a_bad_file_writes_nothing(env, capsys, tmp_path):
    path = tmp_path / "basket.json"
    path.write_text(json.dumps(basket(items=[{"sku": "COFFEE-1", "quantity": -2, "amount_cents": 499}])))
    assert main(["checkout", "--file", str(path)]) == 1
    assert "items.0.quantity" in capsys.readouterr().err
    assert main(["checkout", "--file", str(tmp_path / "missing.json")]) == 1
    assert env.written()["checkouts"] == 0


# ---------------------------------------------------------------- lists and keys at the service desk


def test_keys_list_shows_ids_and_stores_never_the_keys(env, capsys):
    assert main(["keys", "create", "--store", "S1"]) == 0
    assert main(["keys", "create", "--store", "S2"]) == 0
    first, second = capsys.readouterr().out.split()
    assert main(["keys", "revoke", second]) == 0
    capsys.readouterr()
    assert main(["keys", "list"]) == 0
    out = capsys.readouterr().out
    rows = [line.split() for line in out.splitlines()[1:]]
    assert [(r[0], r[1], r[-1] != "-") for r in rows] == [("1", "S1", False), ("2", "S2", True)]
    assert first not in out and second not in out and "lw_" not in out


def test_lists_show_gives_the_offers_state_with_the_card_masked(env, capsys):
    from engine.checkout import checkout

    checkout(connect(env.url), SECRET, basket(codes=[env.codes["1"]]))
    assert main(["lists", "show", "C1", "--json"]) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["card"], shown["current_list_id"]) == ("************1234", 1)
    offers = {o["offer_id"]: (o["redeemed"], o["left"]) for lst in shown["lists"] for o in lst["offers"]}
    assert offers == {101: (1, 0), 102: (2, 0), 103: (0, 1), 104: (0, 1), 201: (0, 1), 301: (0, 1), 401: (0, 1)}
    assert main(["lists", "show", "C1"]) == 0
    text = capsys.readouterr().out
    assert "1234" in text and "4000123412341234" not in text and "Alice" not in text and "Zebedee" not in text
    assert main(["lists", "show", "NOBODY"]) == 1 and "NOBODY" in capsys.readouterr().err


def test_lists_revoke_makes_the_checkout_refuse_the_code(env, capsys):
    from engine.checkout import scan
    from engine.checkout_api import CheckoutRefused

    assert main(["lists", "revoke", env.codes["5"]]) == 0
    assert "list 5 of customer C2 revoked" in capsys.readouterr().out
    with pytest.raises(CheckoutRefused, match="revoked"):
        scan(connect(env.url), SECRET, env.codes["5"])
    assert main(["lists", "revoke", env.codes["5"][:-1] + "0" if env.codes["5"][-1] != "0" else "1"]) == 1
    assert "fails its check" in capsys.readouterr().err


def test_lists_reprint_gives_a_new_code_and_refuses_the_old(env, capsys):
    from engine.checkout import checkout, scan
    from engine.checkout_api import CheckoutRefused

    engine = connect(env.url)
    first = checkout(
        engine,
        SECRET,
        basket("B1", codes=[env.codes["1"]], items=[{"sku": "MILK-1", "quantity": 1, "amount_cents": 189}]),
    )
    assert first["total_discount_cents"] == 50  # one of offer 102's two uses
    assert main(["lists", "reprint", "C1"]) == 0
    new_code = capsys.readouterr().out.strip()
    assert new_code != env.codes["1"] and len(new_code) == 18
    with pytest.raises(CheckoutRefused, match="unknown"):
        scan(engine, SECRET, env.codes["1"])
    again = checkout(engine, SECRET, basket("B2", codes=[env.codes["1"]]))
    assert again["refused"] == [{"code": env.codes["1"], "error": "unknown"}] and again["lines"] == []
    scanned = scan(engine, SECRET, new_code)
    assert {o["offer_id"]: o["redeemed"] for o in scanned["offers"]} == {101: 0, 102: 1, 103: 0, 104: 0}
    third = checkout(
        engine, SECRET, basket("B3", codes=[new_code], items=[{"sku": "MILK-1", "quantity": 3, "amount_cents": 567}])
    )
    assert third["total_discount_cents"] == 50  # the one use left, not two
    assert main(["lists", "reprint", "C2"]) == 0  # another customer: unaffected
    capsys.readouterr()
    assert main(["lists", "reprint", "NOBODY"]) == 1
