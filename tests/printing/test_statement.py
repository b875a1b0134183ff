"""The settlement statement (printing.statement): one page, the total, any script, same bytes."""

from __future__ import annotations

import datetime as dt
import hashlib

import pypdf

from coupons.money import dollars
from printing.statement import MAX_ROWS, Statement, StatementRow, write_statement


def _statement(n_offers: int, name: str | None = "Acme Foods") -> Statement:
    rows = tuple(StatementRow(f"D-{i:03d}", i + 1, 101 * (i + 1), 76 * (i + 1)) for i in range(n_offers))
    total = StatementRow(
        "TOTAL",
        sum(r.redemptions for r in rows),
        sum(r.discount_cents for r in rows),
        sum(r.amount_due_cents for r in rows),
    )
    return Statement("Fresh Fields Market", "M1", name, dt.date(2025, 3, 3), dt.date(2025, 3, 16), rows, total)


def _text(path) -> str:
    reader = pypdf.PdfReader(path)
    assert len(reader.pages) == 1
    return reader.pages[0].extract_text()


def test_many_offers_fold_into_one_row_and_the_total_is_printed(tmp_path):
    s = _statement(MAX_ROWS + 12)
    write_statement(s, tmp_path / "s.pdf")
    text = _text(tmp_path / "s.pdf")
    folded = s.rows[MAX_ROWS:]
    assert "12 other offers" in text and f"D-{MAX_ROWS - 1:03d}" in text and f"D-{MAX_ROWS:03d}" not in text
    assert dollars(sum(r.amount_due_cents for r in folded)) in text
    assert dollars(s.total.amount_due_cents) in text and f"{s.total.redemptions:,}" in text
    assert "M1 (Acme Foods)" in text and "2025-03-03 to 2025-03-16" in text


def test_a_manufacturer_name_in_another_script_prints_with_embedded_fonts(tmp_path):
    write_statement(_statement(3, name="北京食品 Ltd"), tmp_path / "s.pdf", page_size="a4")
    reader = pypdf.PdfReader(tmp_path / "s.pdf")
    fonts = {f["/BaseFont"] for f in reader.pages[0]["/Resources"]["/Font"].values()}
    assert not any("Helvetica" in f for f in fonts)  # nothing left to the viewer
    assert round(float(reader.pages[0].mediabox.width)) == 595  # A4
    assert "北京食品" in reader.pages[0].extract_text()


def test_same_statement_same_bytes(tmp_path):
    write_statement(_statement(5), tmp_path / "a.pdf")
    write_statement(_statement(5), tmp_path / "b.pdf")
    assert (
        hashlib.sha256((tmp_path / "a.pdf").read_bytes()).digest()
        == hashlib.sha256((tmp_path / "b.pdf").read_bytes()).digest()
    )
