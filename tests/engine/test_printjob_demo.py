"""End to end: the real batch over the committed sample chain, printed and scanned."""

import csv
from pathlib import Path

import pytest

from tests.printing.scan import decode_pages

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"


@pytest.mark.slow
def test_every_barcode_of_a_demo_batch_decodes_to_its_lists_code(tmp_path):
    pytest.importorskip("engine.batch")
    from engine.batch import run_batch
    from engine.config import resolve_secret
    from engine.db import connect, init_schema
    from engine.demo import demo_settings
    from engine.ingest import import_files
    from engine.printjob import print_batch

    settings = demo_settings(tmp_path)
    init_schema(connect(settings.database_url))
    resolve_secret(settings, create=True)
    for kind, paths in (
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("transactions", [SAMPLE / "transactions"]),
    ):
        import_files(settings.database_url, kind, paths)
    run_batch(settings)
    summary = print_batch(settings)
    target = Path(summary["dir"])
    with (target / "manifest.csv").open(encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert summary["lists"] == len(rows) > 0
    for store in summary["stores"]:
        expected = [[r["list_code"]] for r in rows if r["merged_file"] == store["file"] for _ in range(int(r["pages"]))]
        assert decode_pages(str(target / store["file"]), dpi=200) == expected
