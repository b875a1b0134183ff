"""Rasterise PDF pages and decode their barcodes, as a scanner at the till would."""

from __future__ import annotations

import pypdfium2 as pdfium
import zxingcpp
from PIL import ImageFilter


def decode_pages(pdf: bytes | str, dpi: int = 200, blur: float = 0.0) -> list[list[str]]:
    """The texts of the barcodes found on each page, rendered at `dpi` (grey, optional blur)."""
    document = pdfium.PdfDocument(pdf)
    found = []
    for page in document:
        image = page.render(scale=dpi / 72).to_pil().convert("L")
        if blur:
            image = image.filter(ImageFilter.GaussianBlur(blur))
        found.append([r.text for r in zxingcpp.read_barcodes(image)])
    document.close()
    return found
