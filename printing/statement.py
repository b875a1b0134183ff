"""The settlement statement: one page telling a manufacturer what it owes for a period.

`write_statement` renders a `Statement` it is given (engine/extracts.py builds it from the
settlement lines): a heading, the rule the amounts follow, one row per offer (at most
`MAX_ROWS`; the rest folded into one "N other offers" row) and the total. Text is set in the
embedded faces of `printing.fonts`, so a manufacturer's or an offer's name in any script
prints; the file is deterministic (same statement, same bytes).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass
from pathlib import Path

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfgen.canvas import Canvas

from coupons.money import dollars
from printing.fonts import load_fonts

__all__ = ["StatementRow", "Statement", "write_statement", "MAX_ROWS"]

MAX_ROWS = 30  # offers shown one by one; more are folded into one row
_LEFT = 50.0
_NAME_WIDTH = 190.0  # the offer column: clear of the "Redemptions" heading
_RIGHT = (310.0, 410.0, 510.0)  # right edges of redemptions, discount, due


@dataclass(frozen=True)
class StatementRow:
    """One offer's (or the total's) sums, in integer cents."""

    offer: str
    redemptions: int
    discount_cents: int
    amount_due_cents: int


@dataclass(frozen=True)
class Statement:
    """What the statement shows; `rows` per offer in print order, `total` their sums."""

    chain_name: str
    manufacturer_id: str
    manufacturer_name: str | None
    date_from: dt.date
    date_to: dt.date
    rows: tuple[StatementRow, ...]
    total: StatementRow


def _shown(rows: tuple[StatementRow, ...]) -> list[StatementRow]:
    """The first `MAX_ROWS` rows, and the others folded into one."""
    shown, folded = list(rows[:MAX_ROWS]), rows[MAX_ROWS:]
    if folded:
        shown.append(
            StatementRow(
                f"{len(folded)} other offers",
                sum(r.redemptions for r in folded),
                sum(r.discount_cents for r in folded),
                sum(r.amount_due_cents for r in folded),
            )
        )
    return shown


def write_statement(statement: Statement, path: str | Path, *, page_size: str = "letter", font_path: str = "") -> None:
    """Write `statement` as a one-page PDF at `path`.

    Parameters
    ----------
    page_size
        'a4' or 'letter' (`PrintSettings.page_size`; anything else prints on letter).
    font_path
        `PrintSettings.font_path`: the primary face instead of Noto Sans.
    """
    fonts = load_fonts(font_path)
    size = A4 if page_size.lower() == "a4" else LETTER
    width, height = size
    s = statement
    pdf = Canvas(str(path), pagesize=size, invariant=1, initialFontName=fonts.primary, initialFontSize=10)
    pdf.setTitle(f"Settlement {s.manufacturer_id} {s.date_from} to {s.date_to}")
    y = height - 60
    fonts.draw(
        pdf, _LEFT, y, fonts.shorten(f"{s.chain_name}: settlement of funded discounts", 15, width - 2 * _LEFT), 15
    )
    y -= 22
    name = f" ({s.manufacturer_name})" if s.manufacturer_name else ""
    lines = [
        fonts.shorten(f"Manufacturer: {s.manufacturer_id}{name}", 10, width - 2 * _LEFT),
        f"Period: {s.date_from} to {s.date_to} (both days included)",
        *fonts.wrap(
            "Voided redemptions excluded. Amount due per redemption: discount x funded share, "
            "rounded half up to the cent; totals are sums of the lines in settlement.csv.",
            10,
            width - 2 * _LEFT,
            max_lines=3,
        ),
    ]
    for text in lines:
        fonts.draw(pdf, _LEFT, y, text, 10)
        y -= 14
    y -= 10
    fonts.draw(pdf, _LEFT, y, "Offer", 10)
    for x, head in zip(_RIGHT, ("Redemptions", "Discount", "Due")):
        fonts.draw(pdf, x, y, head, 10, align="right")
    pdf.line(_LEFT, y - 4, width - _LEFT, y - 4)
    y -= 18
    for r in _shown(s.rows):
        fonts.draw(pdf, _LEFT, y, fonts.shorten(r.offer, 10, _NAME_WIDTH), 10)
        for x, text in zip(_RIGHT, (f"{r.redemptions:,}", dollars(r.discount_cents), dollars(r.amount_due_cents))):
            fonts.draw(pdf, x, y, text, 10, align="right")
        y -= 13
    pdf.line(_LEFT, y + 4, width - _LEFT, y + 4)
    y -= 10
    fonts.draw(pdf, _LEFT, y, "Total", 11)
    t = s.total
    for x, text in zip(_RIGHT, (f"{t.redemptions:,}", dollars(t.discount_cents), dollars(t.amount_due_cents))):
        fonts.draw(pdf, x, y, text, 11, align="right")
    pdf.showPage()
    pdf.save()
