import io

import pytest
from reportlab.pdfgen.canvas import Canvas

from engine.codes import make_code
from printing.barcode import MODULE_PT, QUIET_MODULES, bar_runs, draw_code128, modules, symbol_width
from tests.printing.scan import decode_pages

CODE = make_code(4242, b"k")


def test_an_18_digit_code_packs_into_subset_c():
    # start C + 9 digit pairs + check (11 modules each) + stop (13)
    assert len(modules(CODE)) == 11 * 11 + 13


def test_bars_are_runs_of_dark_modules():
    assert bar_runs("0110010111") == [(1, 2), (5, 1), (7, 3)]
    assert bar_runs("1100011") == [(0, 2), (5, 2)]


def test_default_module_is_whole_dots_at_common_resolutions():
    for dpi in (150, 200, 300, 600):
        dots = MODULE_PT * dpi / 72
        assert dots == pytest.approx(round(dots))


def test_symbol_includes_ten_module_quiet_zones():
    assert symbol_width(CODE) == pytest.approx((134 + 2 * QUIET_MODULES) * MODULE_PT)


def test_bars_are_vectors_not_images():
    buf = io.BytesIO()
    c = Canvas(buf, pageCompression=0)
    draw_code128(c, CODE, 72, 600)
    c.save()
    assert b"/Subtype /Image" not in buf.getvalue() and b"/XObject" not in buf.getvalue()
    assert buf.getvalue().count(b" re") == len(bar_runs(modules(CODE)))


@pytest.mark.parametrize("module_pt", [1.08, 1.44])
def test_vector_symbol_decodes_at_200_and_150_dpi(module_pt):
    buf = io.BytesIO()
    c = Canvas(buf)
    draw_code128(c, CODE, 72.3, 600, module_pt=module_pt)  # off-grid x: snapped
    c.save()
    assert decode_pages(buf.getvalue(), dpi=200) == [[CODE]]
    assert decode_pages(buf.getvalue(), dpi=150, blur=0.8) == [[CODE]]
