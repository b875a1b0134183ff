import dataclasses
import io

import pypdf
import pytest

from printing.document import mask_card
from printing.layout import LayoutOptions, draw_list, new_canvas, ordered_offers, paginate
from tests.printing.conftest import make_doc, offer
from tests.printing.scan import decode_pages

OPTIONS = LayoutOptions()


def render(doc, fonts, options=OPTIONS) -> tuple[int, bytes]:
    buf = io.BytesIO()
    c = new_canvas(buf, options)
    pages = draw_list(c, doc, fonts, options)
    c.save()
    return pages, buf.getvalue()


def text_of(pdf: bytes) -> str:
    return "\n".join(page.extract_text() for page in pypdf.PdfReader(io.BytesIO(pdf)).pages)


@pytest.mark.parametrize(
    "name", ["María José Núñez", "王静", "Zoë Ångström-李小龍 🥑", "Олег Петров", "김민준 Kim", "さくら 山田"]
)
def test_a_name_in_any_script_prints_with_embedded_fonts(fonts, name):
    pages, pdf = render(make_doc(name=name), fonts)
    assert pages == 1
    assert b"/FontFile2" in pdf  # TrueType embedded, not a viewer's font
    assert b"/Helvetica" not in pdf
    words = [w for w in name.split() if w != "🥑"]
    assert all(w in text_of(pdf) for w in words)


def test_arabic_and_unknown_characters_do_not_crash(fonts):
    pages, _ = render(make_doc(name="فاطمة Johnson \U000f0001 \U0001fae9"), fonts)
    assert pages == 1


def test_the_card_is_masked_to_its_last_four_digits(fonts):
    doc = make_doc()
    text = text_of(render(doc, fonts)[1])
    assert "1234" in text and doc.card_number not in text.replace(" ", "")
    assert mask_card("6012 3456 7890 1234") == "•••• 1234"


def test_long_descriptions_wrap_to_two_lines_and_are_shortened(fonts):
    long = "Extra long organic heirloom tomato medley " * 6
    doc = make_doc(offers=(offer(0, description=long), offer(1)))
    items = [i for page in paginate(doc, fonts, OPTIONS) for i in page if i.kind == "offer"]
    lines = items[0].payload[1]
    assert len(lines) == 2 and lines[1].endswith("…")
    assert items[1].payload[1] == [offer(1).description]
    assert render(doc, fonts)[0] == 1


def test_offers_follow_the_stores_aisle_order_then_a_to_z(fonts):
    doc = make_doc(n_offers=7)
    order = [d for d, _ in ordered_offers(doc.offers, ("Produce", "Pet"))]
    assert order == ["Produce", "Pet", "Bakery", "Dairy", "Grocery", "Health"]
    no_dept = dataclasses.replace(offer(0), department=None)
    assert [d for d, _ in ordered_offers((no_dept, offer(2)), ())] == ["Produce", "Other"]


def test_a_long_list_flows_onto_a_second_page_with_the_barcode_on_each(fonts):
    doc = make_doc(n_offers=45)
    pages, pdf = render(doc, fonts)
    assert pages == 2
    assert decode_pages(pdf, dpi=200) == [[doc.code], [doc.code]]
    assert "Page 2 of 2" in text_of(pdf)


def test_a4_pages_fit_the_same_list(fonts):
    options = LayoutOptions(page_size=(595.27, 841.89))
    doc = make_doc(n_offers=12)
    pages, pdf = render(doc, fonts, options)
    assert pages == 1 and decode_pages(pdf) == [[doc.code]]


def test_a_list_with_no_offers_is_not_printable():
    assert not make_doc(n_offers=0, rewards=0).printable
    assert make_doc(n_offers=0, rewards=1).printable


def test_the_same_list_gives_the_same_bytes(fonts):
    assert render(make_doc(), fonts)[1] == render(make_doc(), fonts)[1]
