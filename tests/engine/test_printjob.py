"""engine.printjob on a hand-made batch: what is printed, where, in which order, and that it scans."""

import csv
import datetime as dt
import hashlib
from pathlib import Path

import pypdf
import pytest
import sqlalchemy as sa

import printing.render
from engine.cli import main
from engine.codes import make_code
from engine.config import PrintSettings, Settings
from engine.db import connect, init_schema
from engine.errors import ConfigError, StateError
from engine.printjob import layout_options, print_batch
from printing.render import MANIFEST_COLUMNS
from tests.printing.conftest import _PRODUCTS, END, NAMES, SECRET, START
from tests.printing.scan import decode_pages


@pytest.fixture(scope="module")
def batch_db(tmp_path_factory):
    """A small SQLite database holding one finished batch, written row by row.

    12 customers over stores S01 and S02: list 1..12; list 5 has 45 offers (two pages),
    list 6 has none (not printed), customer 7 opted out (not printed), list 8 has no store, as
    a batch made before the batch recorded it (its baskets are in S02, its home store).
    """
    path = tmp_path_factory.mktemp("printdb") / "print.db"
    url = f"sqlite:///{path}"
    engine = connect(url)
    init_schema(engine)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables
    products = [
        dict(
            product_key=i + 1,
            sku=f"SKU{i + 1}",
            description=desc,
            category=dept.upper(),
            department=dept,
            brand="B",
            brand_type="national",
            regular_price_cents=price,
        )
        for i, (dept, desc, price, _d, _k) in enumerate(_PRODUCTS)
    ]
    products.append(
        dict(
            product_key=99,
            sku="SKU99",
            category="VEGETABLES",
            department="Produce",
            description="Extra long organic heirloom tomato medley with basil, oregano and "
            "a splash of balsamic vinegar, family pack of twelve",
            brand="B",
            brand_type="store",
            regular_price_cents=699,
            size="2 lb",
        )
    )
    customers, lists, offers, baskets = [], [], [], []
    offer_id = 1
    for i, (first, last) in enumerate(NAMES, start=1):
        store = "S01" if i % 2 else "S02"
        customers.append(
            dict(
                customer_key=i,
                customer_id=f"C{i:04d}",
                card_number=f"60000000000{i:05d}",
                first_name=first,
                last_name=last,
                address_line1=f"{i} Main St",
                city="Springfield",
                state="IL",
                postal_code=f"62{(37 * i) % 100:03d}",
                opted_out=int(i == 7),
            )
        )
        lists.append(
            dict(
                list_id=i,
                batch_id=1,
                customer_key=i,
                store_id=None if i == 8 else store,
                code=make_code(i, SECRET),
                valid_from=START,
                valid_to=END,
                status="active",
                tip_id=1 if i % 3 else None,
            )
        )
        n = {5: 45, 6: 0}.get(i, 3 + i % 4)
        for line in range(n):
            product = 99 if line == 1 else (line + i) % len(_PRODUCTS) + 1
            offers.append(
                dict(
                    offer_id=offer_id,
                    list_id=i,
                    line_no=line + 1,
                    kind="cycle",
                    product_key=product,
                    category="X",
                    funder="retailer",
                    discount_cents=25 + line,
                    min_spend_cents=None,
                    max_uses=1,
                    valid_from=START,
                    valid_to=END,
                    expected_on=START + dt.timedelta(days=line % 12),
                )
            )
            offer_id += 1
        if i % 4 == 0 and n:
            offers.append(
                dict(
                    offer_id=offer_id,
                    list_id=i,
                    line_no=n + 1,
                    kind="reward",
                    product_key=None,
                    category=None,
                    funder="retailer",
                    discount_cents=1000,
                    min_spend_cents=5000,
                    max_uses=3,
                    valid_from=START,
                    valid_to=END,
                    expected_on=None,
                )
            )
            offer_id += 1
    for k in range(3):
        baskets.append(
            dict(
                basket_key=k + 1,
                store_id="S02" if k else "S01",
                basket_id=f"B{k}",
                customer_key=8,
                ts=dt.datetime(2025, 2, 1 + k, 10),
                day=dt.date(2025, 2, 1 + k),
            )
        )
    with engine.begin() as conn:
        conn.execute(
            t["stores"].insert(),
            [
                dict(
                    store_id="S01",
                    name="Fresh Fields Springfield",
                    address="100 Main St",
                    city="Springfield",
                    state="IL",
                    postal_code="62701",
                ),
                dict(
                    store_id="S02",
                    name="Fresh Fields Riverton",
                    address="117 Oak Ave",
                    city="Riverton",
                    state="IL",
                    postal_code="62561",
                ),
            ],
        )
        conn.execute(t["customers"].insert(), customers)
        conn.execute(t["products"].insert(), products)
        conn.execute(
            t["tips"].insert(),
            [
                dict(
                    tip_id=1,
                    category=None,
                    title="Plan two dinners ahead",
                    body="Cook once, eat twice: double a recipe and freeze half.",
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
        conn.execute(t["lists"].insert(), lists)
        conn.execute(t["offers"].insert(), offers)
        conn.execute(t["baskets"].insert(), baskets)
    engine.dispose()
    return url


@pytest.fixture(scope="module")
def printed(batch_db, tmp_path_factory):
    out = tmp_path_factory.mktemp("batches")
    mp = pytest.MonkeyPatch()
    mp.setattr(printing.render, "_MIN_PARALLEL", 0)  # two worker processes even for 10 lists
    calls = []
    settings = Settings(database_url=batch_db, secret="x", printing=PrintSettings(workers=2))
    summary = print_batch(settings, out_dir=out, progress=lambda *a: calls.append(a))
    mp.undo()
    target = Path(summary["dir"])
    with (target / "manifest.csv").open(encoding="utf-8") as fh:
        manifest = list(csv.DictReader(fh))
    return summary, target, manifest, calls


def _db_lists(url):
    engine = connect(url)
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text(
                "SELECT l.code, c.customer_id, c.opted_out, COUNT(o.offer_id) AS n FROM lists l "
                "JOIN customers c USING (customer_key) LEFT JOIN offers o ON o.list_id = l.list_id "
                "WHERE l.batch_id = 1 GROUP BY l.code, c.customer_id, c.opted_out"
            )
        ).all()
    engine.dispose()
    return rows


def test_every_list_with_offers_is_printed_once_and_no_other(printed, batch_db):
    summary, _, manifest, _ = printed
    expected = {r.code for r in _db_lists(batch_db) if r.n and not r.opted_out}
    assert [row["list_code"] for row in manifest if row["list_code"] in expected] == [r["list_code"] for r in manifest]
    assert {row["list_code"] for row in manifest} == expected and len(manifest) == len(expected)
    assert summary["lists"] == len(expected) and summary["skipped_empty"] == 1 and summary["skipped_opted_out"] == 1
    assert list(manifest[0]) == list(MANIFEST_COLUMNS)


def test_checksums_and_page_counts_match_the_files(printed):
    _, target, manifest, _ = printed
    for row in manifest:
        data = (target / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert len(pypdf.PdfReader(target / row["file"]).pages) == int(row["pages"])
    assert len(list((target / "lists").glob("*.pdf"))) == len(manifest)


def test_merged_files_hold_each_stores_lists_in_postal_order(printed, batch_db):
    summary, target, manifest, _ = printed
    engine = connect(batch_db)
    with engine.connect() as conn:
        postal = dict(conn.execute(sa.text("SELECT customer_id, postal_code FROM customers")).all())
    engine.dispose()
    for store in summary["stores"]:
        rows = [r for r in manifest if r["store_id"] == store["store_id"]]
        assert [postal[r["customer_id"]] for r in rows] == sorted(postal[r["customer_id"]] for r in rows)
        reader = pypdf.PdfReader(target / store["file"])
        assert len(reader.pages) == store["pages"] == sum(int(r["pages"]) for r in rows)
        assert hashlib.sha256((target / store["file"]).read_bytes()).hexdigest() == store["sha256"]
        starts = [int(r["merged_first_page"]) for r in rows]
        assert starts[0] == 1 and all(b - a == int(r["pages"]) for a, b, r in zip(starts, starts[1:], rows))


def test_a_list_without_a_store_goes_to_the_customers_home_store(printed):
    _, _, manifest, _ = printed
    assert {r["customer_id"]: r["store_id"] for r in manifest}["C0008"] == "S02"


def test_every_barcode_of_the_batch_decodes_to_its_lists_code(printed):
    summary, target, manifest, _ = printed
    for store in summary["stores"]:
        rows = [r for r in manifest if r["store_id"] == store["store_id"]]
        expected = [[r["list_code"]] for r in rows for _ in range(int(r["pages"]))]
        assert decode_pages(str(target / store["file"]), dpi=200) == expected


def test_barcodes_decode_from_a_degraded_scan(printed):
    _, target, manifest, _ = printed
    for row in manifest:
        assert decode_pages(str(target / row["file"]), dpi=150, blur=0.8) == [[row["list_code"]]] * int(row["pages"])


def test_progress_reaches_the_total(printed):
    summary, _, _, calls = printed
    assert calls and calls[-1] == ("print", summary["lists"], summary["lists"])


def test_one_process_prints_the_same_bytes_as_two(printed, batch_db, tmp_path):
    summary, _, _, _ = printed
    again = print_batch(
        Settings(database_url=batch_db, secret="x", printing=PrintSettings(workers=1)), out_dir=tmp_path
    )
    assert [s["sha256"] for s in again["stores"]] == [s["sha256"] for s in summary["stores"]]


def test_an_unknown_batch_is_a_state_error(batch_db, tmp_path):
    with pytest.raises(StateError, match="batch 99 not found"):
        print_batch(Settings(database_url=batch_db, secret="x"), batch_id=99, out_dir=tmp_path)


def test_a_font_printing_cannot_read_is_a_config_error_and_one_cli_line(batch_db, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "broken.ttf"
    bad.write_bytes(b"not a font")
    settings = Settings(database_url=batch_db, secret="x", printing=PrintSettings(workers=1, font_path=str(bad)))
    with pytest.raises(ConfigError, match=r"font file .*broken\.ttf"):
        print_batch(settings, out_dir=tmp_path / "out")
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", "x")
    (tmp_path / "listwise.toml").write_text(f'[printing]\nfont_path = "{tmp_path / "missing.ttf"}"\n')
    assert (
        main(
            [
                "-q",
                "--database",
                batch_db,
                "--config",
                str(tmp_path / "listwise.toml"),
                "batch",
                "print",
                "--out",
                str(tmp_path / "out"),
            ]
        )
        == 1
    )
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "missing.ttf not found" in err and "Traceback" not in err


def test_an_unknown_page_size_is_a_config_error():
    with pytest.raises(ConfigError, match="printing.page_size: expected one of letter, a4, got 'legal'"):
        layout_options(Settings(database_url="sqlite://", printing=PrintSettings(page_size="legal")))
