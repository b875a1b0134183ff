import csv
import hashlib
from pathlib import Path

import pypdf
import pytest
import sqlalchemy as sa

from engine.config import PrintSettings, Settings
from engine.db import connect
from engine.errors import StateError
from printing.batch import MANIFEST_COLUMNS, print_batch
from tests.printing.scan import decode_pages


@pytest.fixture(scope="module")
def printed(batch_db, tmp_path_factory):
    import printing.batch
    out = tmp_path_factory.mktemp("batches")
    mp = pytest.MonkeyPatch()
    mp.setattr(printing.batch, "_MIN_PARALLEL", 0)      # two worker processes even for 10 lists
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
        rows = conn.execute(sa.text(
            "SELECT l.code, c.customer_id, c.opted_out, COUNT(o.offer_id) AS n FROM lists l "
            "JOIN customers c USING (customer_key) LEFT JOIN offers o ON o.list_id = l.list_id "
            "WHERE l.batch_id = 1 GROUP BY l.code, c.customer_id, c.opted_out")).all()
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
    again = print_batch(Settings(database_url=batch_db, secret="x", printing=PrintSettings(workers=1)),
                        out_dir=tmp_path)
    assert [s["sha256"] for s in again["stores"]] == [s["sha256"] for s in summary["stores"]]


def test_an_unknown_batch_is_a_state_error(batch_db, tmp_path):
    with pytest.raises(StateError, match="batch 99 not found"):
        print_batch(Settings(database_url=batch_db, secret="x"), batch_id=99, out_dir=tmp_path)
