"""One list on paper: pages drawn with reportlab's canvas (not platypus: ~2x faster here).

Page 1, from the top (US Letter; A4 keeps the same distances from the top-left corner):

* the chain's name and the customer's store (the return address), and on the right the
  list code as a Code 128 barcode with the code beneath it, the card masked to its last four
  digits and the page number;
* the mailing address in the window of a #10 envelope when the sheet is folded in three:
  7/8 in from the left edge, 2 in to 3 in from the top (the window of a standard #10 window
  envelope is 4 1/2 x 1 1/8 in, 7/8 in from the left and 1/2 in from the bottom); the list
  period sits to its right, outside the window;
* from the first fold (11/3 in) down: the shopping list grouped by department in the store's
  aisle order (`PrintSettings.aisle_order`; departments not named follow A-Z, "Other" last):
  in each department the specials first, each with a tick box, description, usual price,
  your price, saving (×N: on N visits), "likely around" and valid-through, and beneath it why
  the customer got it in plain words; then the needs (`NeedLine`), with a tick box, the usual
  price and "likely around"; then the reward coupons and the tip;
* at the foot of every page: the legend of the ×N marks (when the list has one), the chain's
  terms (`PrintSettings.terms`) and how to opt out (`PrintSettings.opt_out`).

A list that does not fit flows onto more pages; every page carries the barcode, so any page
scans. Descriptions wrap to two lines and are shortened with an ellipsis beyond that. The tip
never starts a page of its own: it is shortened to the room left on the last page, or left
out when not even its title and two lines fit (paper economy: no sheet for a tip alone).
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

from reportlab.lib.pagesizes import A4, LETTER
from reportlab.pdfgen.canvas import Canvas

from printing.barcode import MODULE_PT, draw_code128, symbol_width
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine, mask_card
from printing.fonts import FontSet
from printing.reasons import plain_reason, uses_legend

__all__ = [
    "LayoutOptions",
    "PAGE_SIZES",
    "draw_list",
    "paginate",
    "ordered_offers",
    "ordered_lines",
    "money",
    "new_canvas",
    "terms_line",
    "period_text",
    "day_text",
]

_INCH = 72.0
_MARGIN = 36.0
_FOLD = 11 * _INCH / 3  # first fold of a tri-folded Letter sheet
_ADDRESS_X = 0.875 * _INCH
_ADDRESS_TOP = 2.0 * _INCH
_BAR_HEIGHT = 40.0
_ROW = 11.0  # leading of an offer line (9 pt text)
_SIZE = 9.0
_DEPT_H = 15.0
_HEAD_H = 14.0
_GREY = (0.88, 0.88, 0.88)
_REASON = 7.0  # size of the "why this offer" line
_REASON_ROW = 8.5
_GAP = 8.0  # between a description and its reason on the same line
_BOX = 7.0  # side of a tick box
_TEXT_X = _MARGIN + 18  # descriptions start right of the tick box
_FOOT = 22.0  # room above the footer line for the terms
_TIP_MIN_LINES = 2  # a tip shortened below this many lines is left out
PAGE_SIZES = {"letter": LETTER, "a4": A4}  # (width, height) in points, by name


@dataclass(frozen=True)
class LayoutOptions:
    """How lists are laid out (engine composes them from its settings: `engine.printjob.layout_options`)."""

    page_size: tuple[float, float] = LETTER
    aisle_order: tuple[str, ...] = ()
    module_pt: float = MODULE_PT
    terms: str = ""  # {valid_from} and {valid_to} are replaced by the list's period
    opt_out: str = ""
    html_files: bool = False  # printing.render also writes html/<code>.html
    email_files: bool = False  # ... and mail/<code>.eml for customers with an e-mail
    email_from: str = ""


def new_canvas(target, options: LayoutOptions, font: str = "LW-Sans") -> Canvas:  # noqa: ANN001 - path or file
    """A canvas for lists: deterministic output (same input, same bytes, same sha256).

    Its initial font is `font` (registered by `printing.fonts.load_fonts`), so that no
    unembedded Helvetica is referenced by the file.
    """
    return Canvas(
        target, pagesize=options.page_size, invariant=1, pageCompression=1, initialFontName=font, initialFontSize=9
    )


def money(cents: int | None) -> str:
    """'$3.49' from 349; '' for None."""
    if cents is None:
        return ""
    return f"${cents // 100:,}.{cents % 100:02d}"


def _day(d: dt.date | None) -> str:
    return f"{d:%b} {d.day}" if d else ""


day_text = _day


def terms_line(doc: ListDocument, options: LayoutOptions) -> str:
    """The legend of the ×N marks (when the list has any) and the chain's terms, for `doc`."""
    legend = uses_legend({o.max_uses for o in doc.offers} | {r.max_uses for r in doc.rewards})
    try:
        terms = options.terms.format(valid_from=_day(doc.valid_from), valid_to=_day(doc.valid_to))
    except (KeyError, IndexError, ValueError):
        terms = options.terms  # a chain's text with other braces prints as written
    return "   ".join(x for x in (legend, terms) if x)


def ordered_lines(doc: ListDocument, aisle_order: tuple[str, ...]) -> list[tuple[str, list[OfferLine | NeedLine]]]:
    """The specials and the needs of `doc` grouped by department (`ordered_offers`' order);
    within a department the specials first, then the needs, each in the order they came."""
    return ordered_offers(tuple(doc.offers) + tuple(doc.needs), aisle_order)


def ordered_offers(offers: tuple, aisle_order: tuple[str, ...]) -> list[tuple[str, list]]:
    """Offers grouped by department: aisle order first, other departments A-Z, 'Other' last.

    Within a department, lines keep the order they came in (the batch's line numbers).
    """
    rank = {d.casefold(): i for i, d in enumerate(aisle_order)}
    groups: dict[str, list[OfferLine]] = {}
    for offer in offers:
        groups.setdefault(offer.department or "Other", []).append(offer)

    def key(name: str) -> tuple:
        return (rank.get(name.casefold(), len(rank)), name == "Other", name.casefold())

    return [(name, groups[name]) for name in sorted(groups, key=key)]


@dataclass(frozen=True)
class _Item:
    kind: str  # 'dept', 'offer', 'need', 'rewards', 'reward', 'tip'
    height: float
    payload: object = None


def _columns(width: float) -> dict[str, float]:
    """Right edges of the numeric columns and the description width, for a content width."""
    right = _MARGIN + width
    cols = {"valid": right, "around": right - 62, "save": right - 134, "yours": right - 196, "usual": right - 250}
    cols["desc_w"] = cols["usual"] - 50 - _TEXT_X
    return cols


def _tip_height(n_lines: int) -> float:
    return 20 + 12 + n_lines * _ROW + 8


def _items(doc: ListDocument, fonts: FontSet, options: LayoutOptions, width: float) -> list[_Item]:
    """Everything printed below the fold, in order; the tip (if any) last."""
    desc_w = _columns(width)["desc_w"]
    items: list[_Item] = []
    for dept, lines in ordered_lines(doc, options.aisle_order):
        items.append(_Item("dept", _DEPT_H, dept))
        for line in lines:
            text = fonts.wrap(line.description or "", _SIZE, desc_w, max_lines=2) or [""]
            if isinstance(line, NeedLine):
                items.append(_Item("need", len(text) * _ROW + 3, (line, text)))
            else:
                # the reason goes beside a one-line description when both fit, else on a line of its own
                inline = (
                    bool(line.reason)
                    and len(text) == 1
                    and (fonts.width(text[0], _SIZE) + _GAP + fonts.width(line.reason, _REASON) <= desc_w)
                )
                extra = _REASON_ROW if line.reason and not inline else 0.0
                items.append(_Item("offer", len(text) * _ROW + extra + 3, (line, text, inline)))
    if doc.rewards:
        items.append(_Item("rewards", _DEPT_H + 4))
        items.extend(_Item("reward", _ROW + 4 + _REASON_ROW, r) for r in doc.rewards)
    if doc.tip_title or doc.tip_body:
        body = fonts.wrap(doc.tip_body or "", _SIZE, width - 16, max_lines=6)
        items.append(_Item("tip", _tip_height(len(body)), (doc.tip_title or "", body)))
    return items


def _content_top(page_no: int, page_h: float) -> float:
    """y of the top of the offers area on a page (reportlab's y grows upwards)."""
    return page_h - (_FOLD + 6 if page_no == 1 else _MARGIN + _BAR_HEIGHT + 40)


def paginate(doc: ListDocument, fonts: FontSet, options: LayoutOptions) -> list[list[_Item]]:
    """The items of `doc` split into pages; a department heading never ends a page.

    The tip never opens a page: it goes in the room left on the last page, shortened to the
    lines that fit, or is left out when fewer than its title and two lines would.
    """
    page_w, page_h = options.page_size
    width = page_w - 2 * _MARGIN
    items = _items(doc, fonts, options, width)
    tip = items.pop() if items and items[-1].kind == "tip" else None
    bottom = _MARGIN + 14 + _FOOT  # room for the terms and the footer line
    pages: list[list[_Item]] = [[]]
    y = _content_top(1, page_h) - _HEAD_H
    for i, item in enumerate(items):
        need = item.height
        if item.kind in ("dept", "rewards") and i + 1 < len(items):
            need += items[i + 1].height  # keep a heading with its first line
        if y - need < bottom and pages[-1]:
            pages.append([])
            y = _content_top(len(pages), page_h) - _HEAD_H
        pages[-1].append(item)
        y -= item.height
    if tip is not None:
        title, body = tip.payload
        room = y - bottom
        if tip.height <= room or not pages[-1]:
            pages[-1].append(tip)
        else:
            fit = int((room - _tip_height(0)) // _ROW)
            if fit >= min(_TIP_MIN_LINES, len(body)) and fit >= 1:
                short = fonts.wrap(doc.tip_body or "", _SIZE, width - 16, max_lines=fit)
                pages[-1].append(_Item("tip", _tip_height(len(short)), (title, short)))
    return pages


def _header(c: Canvas, doc: ListDocument, fonts: FontSet, options: LayoutOptions, page_no: int, n_pages: int) -> None:
    page_w, page_h = options.page_size
    right = page_w - _MARGIN
    # barcode, top right, on every page: quiet zones inside the margin
    sym_w = symbol_width(doc.code, options.module_pt)
    bar_y = page_h - _MARGIN - _BAR_HEIGHT - 11
    draw_code128(
        c,
        doc.code,
        right - sym_w,
        bar_y,
        height=_BAR_HEIGHT,
        module_pt=options.module_pt,
        font=fonts.primary,
        font_size=9,
    )
    card = mask_card(doc.card_number)
    info = f"Card {card}   ·   " if card else ""
    fonts.draw(c, right, bar_y - 11, f"{info}Page {page_no} of {n_pages}", 8, align="right")
    # chain and store, top left
    c.setFillColorRGB(0.1, 0.35, 0.2)
    fonts.draw(c, _MARGIN, page_h - _MARGIN - 16, fonts.shorten(doc.chain_name, 18, page_w - sym_w - 90), 18)
    c.setFillColorRGB(0, 0, 0)
    y = page_h - _MARGIN - 30
    for line in doc.store_lines[:3]:
        fonts.draw(c, _MARGIN, y, fonts.shorten(line, 8, page_w - sym_w - 90), 8)
        y -= 10
    if page_no == 1:
        _address(c, doc, fonts, options)
    else:
        fonts.draw(c, _MARGIN, y - 10, f"Your list {_period(doc)} (continued)", 10)


def _period(doc: ListDocument) -> str:
    same_year = doc.valid_from.year == doc.valid_to.year
    start = _day(doc.valid_from) + ("" if same_year else f", {doc.valid_from.year}")
    return f"{start} – {_day(doc.valid_to)}, {doc.valid_to.year}"


def _address(c: Canvas, doc: ListDocument, fonts: FontSet, options: LayoutOptions) -> None:
    page_w, page_h = options.page_size
    y = page_h - _ADDRESS_TOP - 11
    for line in doc.address_lines[:5]:
        fonts.draw(c, _ADDRESS_X, y, fonts.shorten(line, 10, 3.9 * _INCH), 10)
        y -= 12.5
    x = _ADDRESS_X + 4.1 * _INCH
    y = page_h - _ADDRESS_TOP - 11
    fonts.draw(c, x, y, "Your list for", 9)
    fonts.draw(c, x, y - 16, _period(doc), 13)
    n = len(doc.offers) + sum(r.max_uses for r in doc.rewards)
    k = len(doc.offers) + len(doc.needs)
    items = f"{k} item{'s' if k != 1 else ''} to buy, " if k else ""
    fonts.draw(c, x, y - 32, f"{items}{n} special{'s' if n != 1 else ''} chosen for you", 9)
    fonts.draw(c, x, y - 44, "Show this list or your card at the checkout.", 8)
    c.setStrokeColorRGB(0.75, 0.75, 0.75)
    c.setLineWidth(0.4)
    c.setDash(2, 3)
    c.line(_MARGIN, page_h - _FOLD, page_w - _MARGIN, page_h - _FOLD)  # fold mark
    c.setDash()


def _table_head(c: Canvas, fonts: FontSet, cols: dict[str, float], y: float) -> None:
    c.setFillColorRGB(0.35, 0.35, 0.35)
    fonts.draw(c, _TEXT_X, y, "Item", 7.5)
    for key, label in (
        ("usual", "Usual"),
        ("yours", "Your price"),
        ("save", "You save"),
        ("around", "Likely around"),
        ("valid", "Valid through"),
    ):
        fonts.draw(c, cols[key], y, label, 7.5, align="right")
    c.setFillColorRGB(0, 0, 0)


def _box(c: Canvas, base: float) -> None:
    c.setStrokeColorRGB(0.3, 0.3, 0.3)
    c.setLineWidth(0.6)
    c.rect(_MARGIN + 6, base - 0.5, _BOX, _BOX, stroke=1, fill=0)


def _offer(
    c: Canvas,
    fonts: FontSet,
    cols: dict[str, float],
    y: float,
    offer: OfferLine,
    lines: list[str],
    inline: bool = False,
) -> None:
    base = y - _SIZE
    _box(c, base)
    for i, line in enumerate(lines):
        fonts.draw(c, _TEXT_X, base - i * _ROW, line, _SIZE)
    fonts.draw(c, cols["usual"], base, money(offer.usual_price_cents), _SIZE, align="right")
    fonts.draw(c, cols["yours"], base, money(offer.your_price_cents), _SIZE, align="right")
    uses = f" ×{offer.max_uses}" if offer.max_uses > 1 else ""
    fonts.draw(c, cols["save"], base, money(offer.discount_cents) + uses, _SIZE, align="right")
    if offer.expected_on:
        fonts.draw(c, cols["around"], base, _day(offer.expected_on), _SIZE, align="right")
    fonts.draw(c, cols["valid"], base, _day(offer.valid_to), _SIZE, align="right")
    if offer.reason:
        c.setFillColorRGB(0.1, 0.35, 0.2)
        if inline:
            fonts.draw(c, _TEXT_X + fonts.width(lines[0], _SIZE) + _GAP, base, offer.reason, _REASON)
        else:
            fonts.draw(
                c,
                _TEXT_X + 4,
                base - len(lines) * _ROW + 1.5,
                fonts.shorten(offer.reason, _REASON, cols["around"] - _TEXT_X - 50),
                _REASON,
            )
        c.setFillColorRGB(0, 0, 0)


def _need(c: Canvas, fonts: FontSet, cols: dict[str, float], y: float, need: NeedLine, lines: list[str]) -> None:
    base = y - _SIZE
    _box(c, base)
    for i, line in enumerate(lines):
        fonts.draw(c, _TEXT_X, base - i * _ROW, line, _SIZE)
    fonts.draw(c, cols["usual"], base, money(need.usual_price_cents), _SIZE, align="right")
    fonts.draw(c, cols["around"], base, _day(need.expected_on), _SIZE, align="right")


def _reward(r: RewardLine) -> str:
    uses = f"{r.max_uses} coupons" if r.max_uses > 1 else "1 coupon"
    spend = f" on a basket of {money(r.min_spend_cents)} or more" if r.min_spend_cents else ""
    return f"{money(r.discount_cents)} off{spend} · {uses}, one a visit · valid through {_day(r.valid_to)}"


period_text = _period


def draw_list(c: Canvas, doc: ListDocument, fonts: FontSet, options: LayoutOptions) -> int:
    """Draw `doc` on `c`, one or more pages (each ended with showPage); returns the page count."""
    page_w, page_h = options.page_size
    width = page_w - 2 * _MARGIN
    cols = _columns(width)
    pages = paginate(doc, fonts, options)
    terms = terms_line(doc, options)
    for page_no, items in enumerate(pages, start=1):
        _header(c, doc, fonts, options, page_no, len(pages))
        y = _content_top(page_no, page_h)
        if any(item.kind in ("offer", "need") for item in items):
            _table_head(c, fonts, cols, y - 9)
            y -= _HEAD_H
        for item in items:
            if item.kind in ("dept", "rewards"):
                c.setFillColorRGB(*_GREY)
                c.rect(_MARGIN, y - _DEPT_H + 2, width, _DEPT_H - 3, stroke=0, fill=1)
                c.setFillColorRGB(0, 0, 0)
                label = "Reward coupons" if item.kind == "rewards" else str(item.payload)
                fonts.draw(c, _MARGIN + 4, y - 10.5, label, 10)
            elif item.kind == "offer":
                _offer(c, fonts, cols, y - 1, *item.payload)
            elif item.kind == "need":
                _need(c, fonts, cols, y - 1, *item.payload)
            elif item.kind == "reward":
                fonts.draw(
                    c, _MARGIN + 6, y - _SIZE - 2, fonts.shorten(_reward(item.payload), _SIZE, width - 12), _SIZE
                )
                c.setFillColorRGB(0.1, 0.35, 0.2)
                fonts.draw(c, _MARGIN + 10, y - _SIZE - 2 - _ROW + 1.5, plain_reason("reward"), _REASON)
                c.setFillColorRGB(0, 0, 0)
            elif item.kind == "tip":
                title, body = item.payload
                c.setStrokeColorRGB(0.1, 0.35, 0.2)
                c.setLineWidth(0.8)
                c.roundRect(_MARGIN, y - item.height + 6, width, item.height - 8, 4, stroke=1, fill=0)
                fonts.draw(c, _MARGIN + 8, y - 18, fonts.shorten(title, 11, width - 16), 11)
                for i, line in enumerate(body):
                    fonts.draw(c, _MARGIN + 8, y - 32 - i * _ROW, line, _SIZE)
            y -= item.height
        c.setFillColorRGB(0.4, 0.4, 0.4)
        if terms:
            fonts.draw(c, _MARGIN, _MARGIN + 8, fonts.shorten(terms, 7, width), 7)
        right = f"{doc.chain_name} · list {doc.code} · page {page_no} of {len(pages)}"
        fonts.draw(c, _MARGIN + width, _MARGIN - 4, right, 7, align="right")
        if options.opt_out:
            fonts.draw(
                c, _MARGIN, _MARGIN - 4, fonts.shorten(options.opt_out, 7, width - fonts.width(right, 7) - 12), 7
            )
        c.setFillColorRGB(0, 0, 0)
        c.showPage()
    return len(pages)
