"""printing.render: documents in, print-shop files and manifests out, with no database."""

import csv
import dataclasses
import hashlib

import pypdf
import pytest

import printing.render
from printing.layout import LayoutOptions
from printing.render import MANIFEST_COLUMNS, STORE_COLUMNS, render_documents
from tests.printing.conftest import make_doc
from tests.printing.scan import decode_pages


def _docs():
    """Five lists: two of S01, one of S02 (two pages), one without a store, one with an e-mail."""
    docs = [make_doc(1), make_doc(2, postal_code="02140"), make_doc(3, n_offers=45), make_doc(4), make_doc(5)]
    docs[2] = dataclasses.replace(docs[2], store_id="S02")
    docs[3] = dataclasses.replace(docs[3], store_id=None)
    docs[4] = dataclasses.replace(docs[4], email="ana@example.org")
    return docs


def _rows(path):
    with path.open(encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def rendered(tmp_path_factory):
    target = tmp_path_factory.mktemp("render") / "out"
    options = LayoutOptions(html_files=True, email_files=True, email_from="Fresh Fields <lists@example.org>")
    return target, render_documents(_docs(), target, options, workers=1)


def test_each_document_is_one_manifest_row_in_its_stores_merged_file(rendered):
    target, done = rendered
    rows = _rows(target / "manifest.csv")
    assert list(rows[0]) == list(MANIFEST_COLUMNS)
    by_code = {d.code: d for d in _docs()}
    assert sorted(r["list_code"] for r in rows) == sorted(by_code)
    assert {r["list_code"]: r["store_id"] for r in rows} == {c: d.store_id or "none" for c, d in by_code.items()}
    docs = _docs()  # S01 keeps the order given (lists 1, 2, 5); the store-less list goes to "none"
    assert [(r["list_code"], r["store_id"], r["merged_first_page"]) for r in rows] == [
        (docs[0].code, "S01", "1"),
        (docs[1].code, "S01", "2"),
        (docs[4].code, "S01", "3"),
        (docs[2].code, "S02", "1"),
        (docs[3].code, "none", "1"),
    ]
    assert (done["lists"], done["pages"], done["pages_per_list"]) == (5, 6, {"1": 4, "2": 1})
    stores = _rows(target / "print" / "stores.csv")
    assert list(stores[0]) == list(STORE_COLUMNS)
    assert {s["store_id"]: int(s["lists"]) for s in stores} == {"S01": 3, "S02": 1, "none": 1}


def test_checksums_pages_and_barcodes_match_the_files(rendered):
    target, done = rendered
    for row in _rows(target / "manifest.csv"):
        data = (target / row["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == row["sha256"]
        assert len(pypdf.PdfReader(target / row["file"]).pages) == int(row["pages"])
        assert decode_pages(str(target / row["file"])) == [[row["list_code"]]] * int(row["pages"])
    for store in done["stores"]:
        data = (target / store["file"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == store["sha256"] and len(data) == store["bytes"]


def test_web_pages_for_every_list_and_a_message_only_with_an_address(rendered):
    target, done = rendered
    rows = _rows(target / "manifest.csv")
    assert all((target / r["html_file"]).is_file() for r in rows)
    assert [r["list_code"] for r in rows if r["email_file"]] == [_docs()[4].code]
    assert (done["html_files"], done["email_files"]) == (5, 1)


def test_two_processes_write_the_same_bytes_as_one(rendered, tmp_path, monkeypatch):
    _, done = rendered
    monkeypatch.setattr(printing.render, "_MIN_PARALLEL", 0)
    calls = []
    again = render_documents(
        _docs(),
        tmp_path,
        LayoutOptions(html_files=True, email_files=True, email_from="Fresh Fields <lists@example.org>"),
        workers=2,
        progress=lambda *call: calls.append(call),
    )
    assert [s["sha256"] for s in again["stores"]] == [s["sha256"] for s in done["stores"]]
    # each count reported once, rising, ending at the total (a poll finding nothing new says nothing)
    counts = [d for _, d, _ in calls]
    assert counts and counts == sorted(set(counts)) and counts[-1] == len(_docs())
    assert {(label, total) for label, _, total in calls} == {("print", len(_docs()))}


def test_no_documents_write_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(printing.render, "_MIN_PARALLEL", 0)
    done = render_documents([], tmp_path / "out", LayoutOptions(), workers=2)
    assert (done["lists"], done["manifest"], done["stores"]) == (0, None, [])
    assert not (tmp_path / "out").exists()
