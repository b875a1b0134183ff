"""The needs section end to end on the sample chain, on SQLite and PostgreSQL (issue 16).

The batch stores each list's needs (list_needs); the sample holds three weeks of real purchases
after PERIOD, so what the customers then bought is the truth the needs are measured against:
p_buy_in_window is calibrated, so the share of needs lines bought in the period is close to
their mean p_buy. Printing the batch: every special says why, no page holds only a tip, and
each printed list has its HTML page (whose barcode scans) and, with an e-mail, its .eml;
a customer who opted out gets neither.
"""

from __future__ import annotations

import csv
import datetime as dt
import email
import email.policy
import re
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa
import zxingcpp

from engine.batch import run_batch
from engine.config import PrintSettings, Settings
from engine.db import Gateway, bulk_session, connect
from engine.ingest import import_files
from engine.printjob import layout_options, print_batch, read_documents
from printing.fonts import load_fonts
from printing.layout import paginate
from tests.printing.test_digital import _raster

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PERIOD = dt.date(2025, 6, 16)
END = PERIOD + dt.timedelta(days=14)

_NEEDS = """
SELECT n.list_id, n.line_no, n.category, n.p_buy, n.expected_on, l.customer_key
FROM list_needs n JOIN lists l ON l.list_id = n.list_id ORDER BY n.list_id, n.line_no
"""


def _bought(url: str, needs: pl.DataFrame) -> pl.DataFrame:
    """`needs` with bought: the lines of the need's category its customer bought in the period
    (history's read: the Parquet parts and the checkout's baskets)."""
    with Gateway(url) as db:
        lines = db.history(END, PERIOD).filter(pl.col("quantity") > 0)
    counts = lines.group_by("customer_key", "category").agg(pl.len().alias("bought"))
    return (
        needs.join(counts, on=["customer_key", "category"], how="left", maintain_order="left")
        .with_columns(pl.col("bought").fill_null(0).cast(pl.Int64))
        .drop("customer_key")
    )


@pytest.mark.slow
def test_needs_are_stored_calibrated_and_printed_with_reasons_html_and_email(db_url, tmp_path):
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(db_url, kind, paths)
    printing = PrintSettings(workers=1, needs_min_p_buy=0.5, needs_max_lines=10)
    settings = Settings(database_url=db_url, secret="needs-test", printing=printing)
    summary = run_batch(settings, PERIOD, out_dir=tmp_path)

    with bulk_session(db_url, write=False) as db:
        needs = db.read(
            _NEEDS,
            {
                "list_id": pl.Int64,
                "line_no": pl.Int64,
                "category": pl.String,
                "p_buy": pl.Float64,
                "expected_on": pl.Date,
                "customer_key": pl.Int64,
            },
        )
        lists = db.read(
            "SELECT list_id, code, customer_key FROM lists",
            {"list_id": pl.Int64, "code": pl.String, "customer_key": pl.Int64},
        )
    needs = _bought(db_url, needs)
    per_list = needs.group_by("list_id").agg(pl.len().alias("n"), pl.col("line_no").max().alias("last"))
    assert summary["needs"]["lines"] == needs.height > 0
    assert per_list.height >= 0.95 * lists.height  # (nearly) every list has a needs section
    assert (per_list["n"] <= 10).all() and (per_list["n"] == per_list["last"]).all()  # lines 1..n
    assert needs["p_buy"].min() >= 0.5
    assert needs["expected_on"].min() >= PERIOD and needs["expected_on"].max() < END
    # calibration against what was really bought in the period
    share = (needs["bought"] > 0).mean()
    assert share == pytest.approx(needs["p_buy"].mean(), abs=0.1)

    # one customer with a list opts out before printing: no paper, no page, no e-mail
    quitter = lists.sort("list_id")["customer_key"][0]
    quit_code = lists.sort("list_id")["code"][0]
    engine = connect(db_url)
    with engine.begin() as conn:
        conn.execute(sa.text("UPDATE customers SET opted_out = 1 WHERE customer_key = :k"), {"k": int(quitter)})
    engine.dispose()

    printed = print_batch(settings, out_dir=tmp_path)
    target = Path(printed["dir"])
    with (target / "manifest.csv").open(encoding="utf-8") as fh:
        rows = {r["list_code"]: r for r in csv.DictReader(fh)}
    _, _, docs = read_documents(settings)
    fonts, options = load_fonts(), layout_options(settings)
    shown = [d for d in docs if d.printable and not d.extra["opted_out"]]
    assert set(rows) == {d.code for d in shown} and quit_code not in rows
    assert not (target / "html" / f"{quit_code}.html").exists() and not (target / "mail" / f"{quit_code}.eml").exists()
    assert sum(int(k) * v for k, v in printed["pages_per_list"].items()) == printed["pages"]
    for doc in shown:
        assert all(line.reason for line in doc.offers)  # every special says why
        pages = paginate(doc, fonts, options)
        assert not [p for p in pages if all(item.kind == "tip" for item in p)]
        assert int(rows[doc.code]["pages"]) == len(pages)
        page = (target / rows[doc.code]["html_file"]).read_text(encoding="utf-8")
        svg = re.search(r"<svg.*?</svg>", page, re.DOTALL).group(0)
        assert [r.text for r in zxingcpp.read_barcodes(_raster(svg))] == [doc.code]
        if doc.email:
            msg = email.message_from_bytes(
                (target / rows[doc.code]["email_file"]).read_bytes(), policy=email.policy.default
            )
            assert msg["To"].addresses[0].addr_spec == doc.email
            assert doc.code in msg.get_body(("plain",)).get_content()
        else:
            assert rows[doc.code]["email_file"] == ""
    assert printed["email_files"] == sum(1 for d in shown if d.email) > 0


def test_needs_settings_refused_by_coupons_are_one_config_error():
    """Settings built in code skip validate_settings; the batch still turns coupons' refusal into ours."""
    from engine.batch import _needs
    from engine.errors import ConfigError

    profile = pl.DataFrame(schema={"customer_key": pl.Int64, "category": pl.String, "p_buy_in_window": pl.Float64})
    with pytest.raises(ConfigError, match=r"^printing: needs min_p_buy must be in \[0, 1\], got 1.5$"):
        _needs(profile, pl.Series([1]), PERIOD, END, Settings(printing=PrintSettings(needs_min_p_buy=1.5)))
