"""Rotating the list-code key: lists printed before still scan, forged codes still fail.

engine.chain_key.rotate_secret and ``listwise keys rotate`` (README, "Rotating the list-code
key"). The chain is tests/checkout's: lists 1..5 signed with its SECRET, valid in March 2025.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import stat

import pytest
import sqlalchemy as sa
from fastapi.testclient import TestClient

from engine.chain_key import bind_secret, fingerprint, retired_keys, rotate_secret, verify_secret
from engine.checkout import CheckoutRefused, scan
from engine.cli import main
from engine.codes import make_code, parse_code
from engine.config import Settings
from engine.db import connect, utc_now
from engine.errors import CodeError, ConfigError
from tests.checkout.conftest import NOW, SECRET, _keys, build_chain
from tests.faults.conftest import cli

NEW = b"the-new-list-code-key"
NEWER = b"and-the-one-after-it"


@pytest.fixture
def chain(db_url):
    chain = build_chain(db_url)
    engine = connect(db_url)
    bind_secret(engine, SECRET)
    engine.dispose()
    return chain


def _engine(url: str) -> sa.Engine:
    return connect(url)


def test_a_list_printed_before_the_rotation_still_scans_after_it_and_forgeries_fail(chain):
    engine = _engine(chain.url)
    done = rotate_secret(engine, SECRET, NEW)
    assert done == {
        "fingerprint": fingerprint(NEW),
        "previous": fingerprint(SECRET),
        "last_list_id": 5,
        "valid_to": "2025-03-30",
        "dropped": [],
    }
    verify_secret(engine, NEW)  # what the service, checkout and lists do first
    assert scan(engine, NEW, chain.codes["1"], now=NOW)["list_id"] == 1  # printed under the old key
    assert parse_code(make_code(5, NEW), NEW) == 5  # the new key signs too
    for forged in (
        make_code(1, b"someone-elses-key"),
        chain.codes["1"][:-1] + str(9 - int(chain.codes["1"][-1])),
        make_code(6, SECRET),
    ):  # the retired key cannot sign a list after the rotation
        with pytest.raises(CheckoutRefused, match="bad_check|fails its check") as refused:
            scan(engine, NEW, forged, now=NOW)
        assert refused.value.reason == "bad_check"
    with pytest.raises(ConfigError, match="not the one this database was initialised with"):
        verify_secret(engine, SECRET)  # the old key no longer acts as the current one
    with engine.connect() as conn:  # the database holds no key, only a wrapped one
        meta = dict(conn.execute(sa.text("SELECT name, value FROM chain_meta")).all())
    assert SECRET.decode() not in str(meta) and SECRET.hex() not in str(meta)
    engine.dispose()


def test_a_second_rotation_rewraps_the_retired_keys_whose_lists_are_live(chain):
    engine = _engine(chain.url)
    live_until = utc_now().date() + dt.timedelta(days=10)
    with engine.begin() as conn:  # list 5 is valid for ten more days
        conn.execute(sa.text("UPDATE lists SET valid_to = :d WHERE list_id = 5"), {"d": live_until})
    rotate_secret(engine, SECRET, NEW)
    old_of_new = make_code(7, NEW)  # a list signed between the two rotations
    with engine.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO lists (list_id, batch_id, customer_key, code, valid_from, valid_to) "
                "VALUES (7, 4, 2, :c, :f, :t)"
            ),
            {"c": old_of_new, "f": dt.date(2024, 1, 1), "t": dt.date(2024, 1, 14)},
        )
    done = rotate_secret(engine, NEW, NEWER)
    assert done["previous"] == fingerprint(NEW) and done["dropped"] == []
    verify_secret(engine, NEWER)
    assert [r["fingerprint"] for r in retired_keys(engine, NEWER)] == [fingerprint(SECRET), fingerprint(NEW)]
    assert parse_code(chain.codes["5"], NEWER) == 5 and parse_code(old_of_new, NEWER) == 7
    with engine.begin() as conn:  # tamper: a retired entry no longer unwraps
        name = f"retired_key:{fingerprint(SECRET)}"
        value = conn.execute(sa.text("SELECT value FROM chain_meta WHERE name = :n"), {"n": name}).scalar()
        conn.execute(
            sa.text("UPDATE chain_meta SET value = :v WHERE name = :n"),
            {"n": name, "v": value.replace('"wrapped": "', '"wrapped": "00', 1)},
        )
    with pytest.raises(ConfigError, match="does not unwrap"):
        verify_secret(engine, NEWER)
    engine.dispose()


def test_a_retired_key_whose_lists_all_expired_is_dropped_at_the_next_rotation(chain):
    engine = _engine(chain.url)
    rotate_secret(engine, SECRET, NEW)  # lists 1..5 ended 2025-03-30, long before today
    verify_secret(engine, NEW)
    assert parse_code(chain.codes["1"], NEW) == 1
    done = rotate_secret(engine, NEW, NEWER)
    assert done["dropped"] == [fingerprint(SECRET)]
    verify_secret(engine, NEWER)
    with pytest.raises(CodeError, match="fails its check"):
        parse_code(chain.codes["1"], NEWER)
    with pytest.raises(ConfigError, match="is a retired one"):
        rotate_secret(engine, NEWER, NEW)
    engine.dispose()


def test_the_service_started_with_the_new_key_scans_an_old_list(chain):
    from engine.server import create_app

    key, _ = _keys(chain.url)
    engine = _engine(chain.url)
    rotate_secret(engine, SECRET, NEW)
    engine.dispose()
    app = create_app(Settings(database_url=chain.url, secret=NEW.decode()), clock=lambda: NOW)
    with TestClient(app) as client:
        ok = client.post("/v1/scan", json={"code": chain.codes["1"]}, headers={"X-API-Key": key})
        forged = client.post("/v1/scan", json={"code": make_code(1, b"forged")}, headers={"X-API-Key": key})
    assert ok.status_code == 200 and ok.json()["list_id"] == 1
    assert forged.status_code == 400 and forged.json()["error"] == "bad_check"
    with pytest.raises(ConfigError):  # a service still holding the old key refuses to start
        create_app(Settings(database_url=chain.url, secret=SECRET.decode()), clock=lambda: NOW)


def test_cli_rotates_the_secret_file_and_keeps_the_old_key_private(chain, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTWISE_SECRET", raising=False)
    (tmp_path / "listwise.secret").write_text(SECRET.decode() + "\n")
    os.chmod(tmp_path / "listwise.secret", 0o600)
    assert main(["-q", "--database", chain.url, "keys", "rotate"]) == 0
    out = capsys.readouterr()
    new = (tmp_path / "listwise.secret").read_text().strip().encode()
    assert new != SECRET and len(new) == 64
    assert f"fingerprint {fingerprint(SECRET)} -> {fingerprint(new)}" in out.out
    assert "restart the checkout service" in out.err
    retired = tmp_path / f"listwise.secret.{fingerprint(SECRET)}.retired"
    assert retired.read_text().strip().encode() == SECRET
    for path in (tmp_path / "listwise.secret", retired):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not (tmp_path / "listwise.secret.new").exists()
    # a process holding the new key accepts the old printed code, and refuses a forged one
    assert main(["-q", "--database", chain.url, "lists", "revoke", chain.codes["1"]]) == 0
    assert "list 1 of customer C1 revoked" in capsys.readouterr().out
    assert main(["-q", "--database", chain.url, "lists", "revoke", make_code(2, b"forged")]) == 1
    assert "fails its check" in capsys.readouterr().err


def test_cli_with_the_secret_in_the_environment_takes_the_new_one_from_the_environment(
    chain, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", SECRET.decode())
    monkeypatch.delenv("LISTWISE_NEW_SECRET", raising=False)
    assert main(["-q", "--database", chain.url, "keys", "rotate"]) == 1
    assert "give the new key in LISTWISE_NEW_SECRET" in capsys.readouterr().err
    monkeypatch.setenv("LISTWISE_NEW_SECRET", NEW.decode())
    assert main(["-q", "--database", chain.url, "keys", "rotate"]) == 0
    assert "set LISTWISE_SECRET to the new key" in capsys.readouterr().err
    assert main(["-q", "--database", chain.url, "lists", "revoke", chain.codes["1"]]) == 1  # old key: refused
    assert "not the one this database was initialised with" in capsys.readouterr().err
    monkeypatch.setenv("LISTWISE_SECRET", NEW.decode())
    assert main(["-q", "--database", chain.url, "lists", "revoke", chain.codes["1"]]) == 0


@pytest.mark.slow
def test_a_rotation_killed_between_the_database_and_the_file_finishes_when_run_again(chain, tmp_path):
    (tmp_path / "listwise.secret").write_text(SECRET.decode() + "\n")
    env = {"LISTWISE_SECRET": ""}
    killed = cli(chain.url, "keys", "rotate", cwd=tmp_path, fault="rotate-after-commit", env=env)
    assert killed.returncode == -signal.SIGKILL, killed.stderr
    assert (tmp_path / "listwise.secret").read_text().strip() == SECRET.decode()  # the file not yet replaced
    refused = cli(chain.url, "lists", "revoke", chain.codes["1"], cwd=tmp_path, env=env)
    assert refused.returncode == 1 and "an interrupted rotation finishes when run again" in refused.stderr
    again = cli(chain.url, "keys", "rotate", cwd=tmp_path, env=env)
    assert again.returncode == 0 and "finished the interrupted rotation" in again.stdout, again.stderr
    revoked = cli(chain.url, "lists", "revoke", chain.codes["1"], cwd=tmp_path, env=env)
    assert revoked.returncode == 0, revoked.stderr
    assert (tmp_path / f"listwise.secret.{fingerprint(SECRET)}.retired").read_text().strip() == SECRET.decode()


@pytest.mark.slow  # two batch runs: ~30 s under load
def test_a_batch_computed_under_a_key_rotated_meanwhile_writes_nothing_and_reruns_under_the_new_one(
    request, batched_chain, tmp_path, monkeypatch
):
    import polars as pl

    import engine.batch as batch_module
    from engine.batch import run_batch
    from engine.db import bulk_session
    from engine.errors import StateError
    from tests.faults.conftest import SECOND_PERIOD, copy_database
    from tests.faults.conftest import SECRET as OLD

    _, base = batched_chain
    url = copy_database(request, base, tmp_path)
    real_plan = batch_module.finish_order

    def plan_while_the_key_rotates(*args, **kwargs):
        engine = connect(url)
        rotate_secret(engine, OLD.encode(), NEW)
        engine.dispose()
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(batch_module, "finish_order", plan_while_the_key_rotates)
    with pytest.raises(StateError, match="the list-code key was rotated while this batch ran"):
        run_batch(Settings(database_url=url, secret=OLD), out_dir=tmp_path)
    monkeypatch.setattr(batch_module, "finish_order", real_plan)
    with pytest.raises(ConfigError):  # the old key is refused before anything is computed
        run_batch(Settings(database_url=url, secret=OLD), out_dir=tmp_path)
    summary = run_batch(Settings(database_url=url, secret=NEW.decode()), out_dir=tmp_path)
    assert summary["period_start"] == SECOND_PERIOD and summary["lists"] > 0
    with bulk_session(url, write=False) as db:
        lists = db.read(
            "SELECT batch_id, list_id, code FROM lists ORDER BY list_id",
            {"batch_id": pl.Int64, "list_id": pl.Int64, "code": pl.String},
        )
    engine = connect(url)
    verify_secret(engine, NEW)
    engine.dispose()
    # the first batch's codes (old key) and the second's (new key) all check under the new key
    assert [parse_code(c, NEW) for c in lists["code"]] == lists["list_id"].to_list()
    first = lists.filter(pl.col("batch_id") == lists["batch_id"].min())
    assert all(c == make_code(i, OLD.encode()) for i, c in first.select("list_id", "code").iter_rows())
    second = lists.filter(pl.col("batch_id") == summary["batch_id"])
    assert all(c == make_code(i, NEW) for i, c in second.select("list_id", "code").iter_rows())
