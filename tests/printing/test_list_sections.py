"""The printed list as a shopping list: needs with tick boxes, why each special, terms, and no
sheet wasted on a tip (issue 16)."""

import dataclasses
import datetime as dt
import io

import pypdfium2 as pdfium
import pytest

from printing.document import NeedLine
from printing.layout import LayoutOptions, draw_list, new_canvas, paginate
from tests.printing.conftest import START, make_doc, offer

OPTIONS = LayoutOptions(terms="Valid {valid_from} to {valid_to}; not for cash.", opt_out="Stop: tell a cashier.")


def _pdf_text(doc, fonts, options=OPTIONS) -> list[str]:
    buf = io.BytesIO()
    c = new_canvas(buf, options, fonts.primary)
    draw_list(c, doc, fonts, options)
    c.save()
    pdf = pdfium.PdfDocument(buf.getvalue())
    texts = [page.get_textpage().get_text_range() for page in pdf]
    pdf.close()
    return texts


def _needs(n: int) -> tuple[NeedLine, ...]:
    return tuple(
        NeedLine("Produce", f"Need number {i}", 100 + i, START + dt.timedelta(days=i % 14), f"CAT{i}") for i in range(n)
    )


def test_needs_print_with_their_day_and_specials_with_why(fonts):
    reasoned = tuple(dataclasses.replace(offer(i), reason=f"because reason {i}") for i in range(3))
    doc = dataclasses.replace(make_doc(offers=reasoned), needs=_needs(2))
    text = " ".join(_pdf_text(doc, fonts))
    for i in range(3):
        assert f"because reason {i}" in text
    assert "Need number 0" in text and "Need number 1" in text
    assert "Likely around" in text and "5 items to buy" in text


def test_every_page_carries_the_terms_the_legend_and_the_opt_out(fonts):
    doc = make_doc(n_offers=45)  # offers with x2 and a reward x3: two pages
    pages = _pdf_text(doc, fonts)
    assert len(pages) == 2
    for text in pages:
        assert "Valid Mar 3 to Mar 16; not for cash." in text
        assert "×2: on two visits" in text and "×3: on three visits" in text
        assert "Stop: tell a cashier." in text


def _tip_pages(pages):
    return [p for p in pages if p and all(item.kind == "tip" for item in p)]


@pytest.mark.parametrize("n_offers", range(14, 30))
def test_no_page_holds_only_the_tip_whatever_the_length(fonts, n_offers):
    doc = make_doc(n_offers=n_offers, rewards=0)
    without_tip = paginate(dataclasses.replace(doc, tip_title=None, tip_body=None), fonts, OPTIONS)
    pages = paginate(doc, fonts, OPTIONS)
    assert not _tip_pages(pages)
    assert len(pages) == len(without_tip)  # the tip never costs a sheet


def test_a_tip_that_does_not_fit_is_shortened_or_left_out(fonts):
    long_tip = " ".join(["Stir the pot and taste as you go."] * 30)  # more than six lines
    outcomes = set()
    for n in range(14, 30):
        doc = dataclasses.replace(make_doc(n_offers=n, rewards=0), tip_body=long_tip)
        tips = [item for page in paginate(doc, fonts, OPTIONS) for item in page if item.kind == "tip"]
        if not tips:
            outcomes.add("dropped")
        elif len(tips[0].payload[1]) < 6:
            assert tips[0].payload[1][-1].endswith("…")
            outcomes.add("shortened")
        else:
            outcomes.add("whole")
    assert outcomes == {"dropped", "shortened", "whole"}


def test_a_list_of_needs_only_with_a_reward_is_one_page(fonts):
    doc = dataclasses.replace(make_doc(offers=()), needs=_needs(10))
    assert len(paginate(doc, fonts, OPTIONS)) == 1
