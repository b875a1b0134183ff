"""One batch per period, never rewritten once done: killed, racing, overlapping and cancelled runs.

Issue 13: a killed batch's period used to be skipped by `batch run` without a date, and two
overlapping runs of one period rewrote a finished batch (its printed codes turned 'unknown').
Each claim runs on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

import engine.batch as batch_module
from engine.batch import _start_batch, cancel_batch, run_batch
from engine.checkout import scan
from engine.checkout_api import CheckoutRefused
from engine.cli import main
from engine.config import Settings
from engine.db import bulk_session, connect
from engine.errors import NothingToDo, StateError
from engine.ingest import import_files

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PERIOD = dt.date(2025, 6, 16)  # the sample's purchases go on three weeks past it
SECRET = "test-secret"


@pytest.fixture
def url(db_url):
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(db_url, kind, paths)
    return db_url


def settings(url: str) -> Settings:
    return Settings(database_url=url, secret=SECRET)


def lists(url: str) -> pl.DataFrame:
    with bulk_session(url, write=False) as db:
        return db.read(
            "SELECT batch_id, list_id, code FROM lists ORDER BY list_id",
            {"batch_id": pl.Int64, "list_id": pl.Int64, "code": pl.String},
        )


def batches(url: str) -> list[tuple]:
    with bulk_session(url, write=False) as db:
        return db.read(
            "SELECT period_start, status FROM batches ORDER BY period_start",
            {"period_start": pl.Date, "status": pl.String},
        ).rows()


def last_day(url: str) -> dt.date:
    engine = connect(url)
    with engine.connect() as conn:
        value = conn.execute(sa.text("SELECT MAX(day) FROM baskets")).scalar()
    engine.dispose()
    return value if isinstance(value, dt.date) else dt.date.fromisoformat(str(value)[:10])


@pytest.mark.slow
def test_run_without_a_date_redoes_a_killed_period_before_moving_on(url, tmp_path):
    first = run_batch(settings(url), PERIOD, out_dir=tmp_path)
    second = PERIOD + dt.timedelta(days=14)
    engine = connect(url)
    _start_batch(engine, settings(url), second, second + dt.timedelta(days=14))  # then killed: 'running'
    engine.dispose()
    redone = run_batch(settings(url), out_dir=tmp_path)
    assert redone["period_start"] == second.isoformat() and redone["lists"] > 0
    assert batches(url) == [(PERIOD, "done"), (second, "done")]
    assert lists(url).filter(pl.col("batch_id") == first["batch_id"]).height == first["lists"]


@pytest.mark.slow
def test_a_racing_run_never_rewrites_the_batch_another_run_finished(url, tmp_path, monkeypatch):
    """Run A computes while run B, started later, completes the period: A writes nothing."""
    real_plan = batch_module.finish_order
    state = {"inside": False, "b": None}

    def plan_while_b_finishes(*args, **kwargs):
        if not state["inside"]:
            state["inside"] = True
            state["b"] = run_batch(settings(url), PERIOD, out_dir=tmp_path / "b")  # B takes over, finishes
        return real_plan(*args, **kwargs)

    monkeypatch.setattr(batch_module, "finish_order", plan_while_b_finishes)
    a = run_batch(settings(url), PERIOD, out_dir=tmp_path / "a")
    assert a == state["b"]  # A returns what B wrote, and wrote nothing itself
    written = lists(url)
    assert written.height == a["lists"] and written["batch_id"].unique().to_list() == [a["batch_id"]]
    monkeypatch.setattr(batch_module, "finish_order", real_plan)
    assert run_batch(settings(url), PERIOD, out_dir=tmp_path) == a
    assert lists(url).equals(written)  # same list ids, same codes
    assert batches(url) == [(PERIOD, "done")]


@pytest.mark.slow
def test_a_claim_landing_while_the_default_period_is_read_is_taken_over_not_skipped(url, tmp_path, monkeypatch):
    """Run B reads which period comes next while run A claims it (`_start_batch`, a 'running' row).
    B must take A's period over, never move on to the one after it: read in two statements, a claim
    landing between them made A's period look done and B wrote a second batch (tests/faults' race)."""
    run_batch(settings(url), PERIOD, out_dir=tmp_path)
    second = PERIOD + dt.timedelta(days=14)
    real_read = batch_module.Gateway.read_small
    claimed = []

    def read_then_a_claims(self, sql, schema):
        found = real_read(self, sql, schema)
        if "FROM batches" in sql and not claimed:  # run A's claim commits right after B's first read
            engine = connect(url)
            claimed.append(_start_batch(engine, settings(url), second, second + dt.timedelta(days=14)))
            engine.dispose()
        return found

    monkeypatch.setattr(batch_module.Gateway, "read_small", read_then_a_claims)
    engine = connect(url)
    try:
        assert batch_module.default_period_start(engine, settings(url)) == second
    finally:
        engine.dispose()
    assert claimed and batches(url) == [(PERIOD, "done"), (second, "running")]


@pytest.mark.slow
def test_nothing_to_do_when_no_purchase_came_since_the_last_batch(url, tmp_path, capsys, monkeypatch):
    after = last_day(url) + dt.timedelta(days=1)
    run_batch(settings(url), after, out_dir=tmp_path)
    with pytest.raises(NothingToDo, match=f"the batch of {after} is done and no purchase was recorded"):
        run_batch(settings(url), out_dir=tmp_path)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", SECRET)
    capsys.readouterr()
    assert main(["-q", "--database", url, "batch", "run", "--no-print"]) == 0
    assert "nothing to do" in capsys.readouterr().out


def test_an_overlapping_period_is_refused(url, tmp_path):
    run_batch(settings(url), PERIOD, out_dir=tmp_path)
    with pytest.raises(StateError, match="overlaps the batch of 2025-06-16 to 2025-06-29"):
        run_batch(settings(url), PERIOD + dt.timedelta(days=7), out_dir=tmp_path)
    assert batches(url) == [(PERIOD, "done")]


def test_a_stale_history_is_warned_about(url, tmp_path, capsys):
    late = last_day(url) + dt.timedelta(days=30)
    run_batch(settings(url), late, out_dir=tmp_path)
    err = capsys.readouterr().err
    assert f"warning: the purchase history ends {last_day(url)}, 30 days before the period starts" in err


@pytest.mark.slow
def test_cancel_withdraws_the_lists_and_the_period_is_redone_with_new_codes(url, tmp_path):
    first = run_batch(settings(url), PERIOD, out_dir=tmp_path)
    old = lists(url)
    report = cancel_batch(settings(url), first["batch_id"])
    assert report.startswith(f"batch {first['batch_id']} (2025-06-16) cancelled: {first['lists']:,} lists")
    assert lists(url).height == 0 and batches(url) == [(PERIOD, "cancelled")]
    engine = connect(url)
    with pytest.raises(CheckoutRefused, match="unknown"):
        scan(engine, SECRET.encode(), old["code"][0])
    engine.dispose()
    again = run_batch(settings(url), out_dir=tmp_path)
    assert again["period_start"] == PERIOD.isoformat() and again["lists"] == first["lists"]
    assert set(lists(url)["list_id"]).isdisjoint(old["list_id"])


def test_cancel_is_refused_once_an_offer_was_redeemed(url, tmp_path):
    first = run_batch(settings(url), PERIOD, out_dir=tmp_path)
    engine = connect(url)
    with engine.begin() as conn:
        offer = conn.execute(sa.text("SELECT MIN(offer_id) FROM offers")).scalar()
        conn.execute(
            sa.text(
                "INSERT INTO redemptions (redemption_id, offer_id, use_no, store_id, basket_id, "
                "redeemed_on, discount_cents, voided, created_at) VALUES "
                "(1, :o, 1, 'S01', 'B1', :d, 50, 0, :t)"
            ),
            {"o": offer, "d": PERIOD, "t": dt.datetime(2025, 6, 17, 10)},
        )
    engine.dispose()
    with pytest.raises(StateError, match=f"batch {first['batch_id']} cannot be cancelled: 1 of its offers"):
        cancel_batch(settings(url), first["batch_id"])
    assert lists(url).height == first["lists"]
