"""The same list on a screen: self-contained HTML whose barcode scans, and a parseable .eml."""

import dataclasses
import email
import email.policy
import re
import shutil
import subprocess
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image, ImageDraw

from printing.digital import barcode_svg, email_sender, list_email, list_html, list_text
from printing.document import NeedLine
from printing.layout import LayoutOptions
from tests.printing.conftest import START, make_doc, offer

OPTIONS = LayoutOptions(terms="Valid {valid_from} to {valid_to}.", opt_out="Stop: tell a cashier.")
SVG = "{http://www.w3.org/2000/svg}"


def _doc(**changes):
    reasoned = tuple(dataclasses.replace(offer(i), reason=f"reason {i}") for i in range(4))
    doc = make_doc(offers=reasoned, name="فاطمة Johnson")
    changes = {
        "needs": (NeedLine("Produce", "Bananas <ripe> & sweet", 79, START, "BANANAS"),),
        "email": "fatima@example.com",
        **changes,
    }
    return dataclasses.replace(doc, **changes)


def _raster(svg: str, scale: int = 3) -> Image.Image:
    """The SVG's rectangles painted with PIL (an independent renderer of the symbol)."""
    root = ET.fromstring(svg)
    _, _, w, h = (float(v) for v in root.get("viewBox").split())
    image = Image.new("L", (int(w * scale), int(h * scale)), 255)
    draw = ImageDraw.Draw(image)
    for rect in root.iter(f"{SVG}rect"):
        if rect.get("fill") == "#fff":
            continue
        x, y = float(rect.get("x", 0)), float(rect.get("y", 0))
        draw.rectangle(
            [
                x * scale,
                y * scale,
                (x + float(rect.get("width"))) * scale - 1,
                (y + float(rect.get("height"))) * scale - 1,
            ],
            fill=0,
        )
    return image


def test_the_inline_svg_barcode_decodes_to_the_list_code():
    doc = _doc()
    svg = re.search(r"<svg.*?</svg>", list_html(doc, OPTIONS), re.DOTALL).group(0)
    assert svg == barcode_svg(doc.code)
    assert [r.text for r in zxingcpp.read_barcodes(_raster(svg))] == [doc.code]


def test_the_page_is_self_contained_and_escapes_what_it_shows():
    page = list_html(_doc(), OPTIONS)
    assert not re.search(r"""(src|href)\s*=|@import|url\(""", page)  # nothing fetched from elsewhere
    assert "Bananas &lt;ripe&gt; &amp; sweet" in page and "<ripe>" not in page
    assert "reason 0" in page and "reason 3" in page and "likely around Mar 3" in page
    assert "Valid Mar 3 to Mar 16." in page and "Stop: tell a cashier." in page
    assert "×2: on two visits" in page and "فاطمة Johnson" in page


def test_the_email_parses_as_multipart_text_and_html_addressed_to_the_customer():
    doc = _doc()
    raw = list_email(doc, OPTIONS, email_sender("Fresh Fields Market"))
    assert b"\r\n" in raw and all(b < 128 for b in raw)  # RFC 5322 on the wire: CRLF, 7-bit
    msg = email.message_from_bytes(raw, policy=email.policy.default)
    assert msg.get_content_type() == "multipart/alternative"
    assert msg["To"].addresses[0].addr_spec == "fatima@example.com"
    assert msg["To"].addresses[0].display_name == "فاطمة Johnson"
    assert msg["From"].addresses[0].addr_spec == "lists@localhost"
    assert msg["Message-ID"] == f"<list-{doc.code}@localhost>"
    text = msg.get_body(("plain",)).get_content().replace("\r\n", "\n")  # the wire's CRLF, back
    html = msg.get_body(("html",)).get_content().replace("\r\n", "\n")
    assert text == list_text(doc, OPTIONS) and html == list_html(doc, OPTIONS)
    assert doc.code in text and "[ ] Bananas <ripe> & sweet ($0.79), likely around Mar 3" in text
    assert list_email(doc, OPTIONS, "x@y.z") == list_email(doc, OPTIONS, "x@y.z")  # same list, same bytes


@pytest.mark.parametrize("address", [None, "", "not an address"])
def test_no_email_address_no_message(address):
    assert list_email(_doc(email=address), OPTIONS, "x@y.z") is None


_CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


@pytest.mark.skipif(_CHROMIUM is None, reason="headless Chromium not installed (apt-get install chromium)")
def test_the_barcode_decodes_from_a_screenshot_of_the_page(tmp_path):
    doc = _doc()
    page = tmp_path / "list.html"
    page.write_text(list_html(doc, OPTIONS), encoding="utf-8")
    shot = tmp_path / "shot.png"
    subprocess.run(
        [
            _CHROMIUM,
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
            f"--user-data-dir={tmp_path / 'profile'}",
            "--window-size=480,900",
            f"--screenshot={shot}",
            page.as_uri(),
        ],
        check=True,
        capture_output=True,
        timeout=120,
    )
    found = [r.text for r in zxingcpp.read_barcodes(Image.open(shot).convert("L"))]
    assert found == [doc.code]
