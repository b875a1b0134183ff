"""engine.printjob never crashes on a batch with any mix of offer kinds, including none (issue 10).

Each batch is written row by row into a fresh SQLite file and a PostgreSQL database, then
printed: a batch whose offers are only rewards (no product, category or date in any offer
row, which was read back as integers and crashed the print), a batch of lists without any
offer, and a batch without lists. What prints is scanned as the till would.
"""

from __future__ import annotations

import csv
import datetime as dt
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.cli import main
from engine.codes import make_code
from engine.config import PrintSettings, Settings
from engine.db import connect
from engine.printjob import print_batch
from tests.printing.scan import decode_pages

SECRET = b"offer-mixes"
START, END = dt.date(2025, 3, 3), dt.date(2025, 3, 16)


def _finished_batch(url: str, n_lists: int, rewards: int, cycle_offers: int = 0) -> None:
    """Batch 1 (done) with `n_lists` lists, each with `rewards` rewards and `cycle_offers` cycle offers."""
    engine = connect(url)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables
    customers, lists, offers = [], [], []
    for i in range(1, n_lists + 1):
        customers.append(
            dict(
                customer_key=i,
                customer_id=f"C{i:03d}",
                card_number=f"6000{i:012d}",
                first_name="Ana",
                last_name=f"Lee {i}",
                postal_code=f"0{2100 + i}",
                opted_out=0,
            )
        )
        lists.append(
            dict(
                list_id=i,
                batch_id=1,
                customer_key=i,
                store_id="S01",
                code=make_code(i, SECRET),
                valid_from=START,
                valid_to=END,
                status="active",
                tip_id=None,
            )
        )
        for n in range(rewards):
            offers.append(
                dict(
                    offer_id=len(offers) + 1,
                    list_id=i,
                    line_no=n + 1,
                    kind="reward",
                    product_key=None,
                    category=None,
                    funder="retailer",
                    discount_cents=500 + 100 * n,
                    min_spend_cents=4000 + 1000 * n,
                    max_uses=2,
                    valid_from=START,
                    valid_to=END,
                    expected_on=None,
                )
            )
        for n in range(cycle_offers):
            offers.append(
                dict(
                    offer_id=len(offers) + 1,
                    list_id=i,
                    line_no=rewards + n + 1,
                    kind="cycle",
                    product_key=1,
                    category="DAIRY",
                    funder="retailer",
                    discount_cents=40,
                    min_spend_cents=None,
                    max_uses=1,
                    valid_from=START,
                    valid_to=END,
                    expected_on=START + dt.timedelta(days=3),
                )
            )
    with engine.begin() as conn:
        conn.execute(
            t["stores"].insert(),
            [dict(store_id="S01", name="Fresh Fields", city="Springfield", state="IL", postal_code="62701")],
        )
        conn.execute(
            t["products"].insert(),
            [
                dict(
                    product_key=1,
                    sku="SKU1",
                    description="Milk 1 gal",
                    category="DAIRY",
                    department="Dairy",
                    brand="B",
                    brand_type="store",
                    regular_price_cents=389,
                )
            ],
        )
        conn.execute(
            t["batches"].insert(),
            [
                dict(
                    batch_id=1,
                    period_start=START,
                    period_end=END + dt.timedelta(1),
                    status="done",
                    started_at=dt.datetime(2025, 3, 1),
                )
            ],
        )
        if customers:
            conn.execute(t["customers"].insert(), customers)
            conn.execute(t["lists"].insert(), lists)
        if offers:
            conn.execute(t["offers"].insert(), offers)
    engine.dispose()


def _settings(url: str) -> Settings:
    return Settings(database_url=url, secret="x", printing=PrintSettings(workers=1))


def _manifest(summary: dict) -> list[dict]:
    with Path(summary["manifest"]).open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.mark.parametrize(("rewards", "cycle_offers"), [(1, 0), (2, 0), (1, 2)], ids=["reward", "rewards", "mixed"])
def test_a_batch_of_rewards_prints_and_every_barcode_scans(db_url, tmp_path, rewards, cycle_offers):
    _finished_batch(db_url, n_lists=3, rewards=rewards, cycle_offers=cycle_offers)
    summary = print_batch(_settings(db_url), out_dir=tmp_path)
    rows = _manifest(summary)
    assert summary["lists"] == len(rows) == 3 and summary["skipped_empty"] == 0
    assert [r["list_code"] for r in rows] == [make_code(i, SECRET) for i in (1, 2, 3)]  # postal order
    target = Path(summary["dir"])
    (store,) = summary["stores"]
    assert decode_pages(str(target / store["file"])) == [[r["list_code"]] for r in rows for _ in range(int(r["pages"]))]
    for row in rows:
        assert decode_pages(str(target / row["file"])) == [[row["list_code"]]] * int(row["pages"])
    assert summary["message"].startswith("batch 1 (2025-03-03): printed 3 lists")


def test_lists_without_offers_print_nothing_and_say_so(db_url, tmp_path):
    _finished_batch(db_url, n_lists=4, rewards=0)
    summary = print_batch(_settings(db_url), out_dir=tmp_path / "out")
    assert (summary["lists"], summary["pages"], summary["skipped_empty"], summary["stores"]) == (0, 0, 4, [])
    assert summary["manifest"] is None and not (tmp_path / "out").exists()
    assert summary["message"] == "batch 1 (2025-03-03): nothing to print: 4 lists, 4 without offers, 0 opted out"


def test_a_batch_without_lists_prints_nothing_and_says_so(db_url, tmp_path):
    _finished_batch(db_url, n_lists=0, rewards=0)
    summary = print_batch(_settings(db_url), out_dir=tmp_path / "out")
    assert (summary["lists"], summary["skipped_empty"], summary["skipped_opted_out"]) == (0, 0, 0)
    assert summary["manifest"] is None and not (tmp_path / "out").exists()
    assert summary["message"] == "batch 1 (2025-03-03): nothing to print: it has no lists"


def test_several_workers_print_an_empty_batch(sqlite_url, tmp_path, monkeypatch):
    import printing.render

    monkeypatch.setattr(printing.render, "_MIN_PARALLEL", 0)  # the pool path, with no store to render
    _finished_batch(sqlite_url, n_lists=0, rewards=0)
    settings = Settings(database_url=sqlite_url, secret="x", printing=PrintSettings(workers=2))
    assert print_batch(settings, out_dir=tmp_path)["lists"] == 0
    assert printing.render.render_documents([], tmp_path, None, workers=2)["lists"] == 0


def test_cli_batch_print_of_an_empty_batch_is_one_line_and_exit_0(sqlite_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", "x")
    _finished_batch(sqlite_url, n_lists=0, rewards=0)
    assert main(["-q", "--database", sqlite_url, "batch", "print", "--out", str(tmp_path / "out")]) == 0
    out = capsys.readouterr().out
    assert out == "batch 1 (2025-03-03): nothing to print: it has no lists\n"
    assert not (tmp_path / "out").exists()
