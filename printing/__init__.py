"""printing: renders the lists it is given as barcoded PDFs, their HTML and e-mail twins, and print-shop files.

Owns the page layout, the vector Code 128 barcode, the bundled fonts and their embedding, the
merged per-store print files and their manifest, the plain words of each offer's reason, and
the same list as a self-contained web page and an RFC 5322 message (written, not sent). It
reads no database and decides nothing about who gets a list: `engine.printjob` builds the
`ListDocument`s of a batch and calls `render_documents`. Imports nothing of engine.
"""

from printing.digital import barcode_svg, list_email, list_html, list_text
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine, mask_card
from printing.exceptions import FontError, PrintingError
from printing.fonts import load_fonts
from printing.layout import PAGE_SIZES, LayoutOptions, draw_list
from printing.reasons import plain_reason, uses_legend
from printing.render import MANIFEST_COLUMNS, render_documents

__all__ = [
    "render_documents",
    "MANIFEST_COLUMNS",
    "ListDocument",
    "NeedLine",
    "OfferLine",
    "RewardLine",
    "mask_card",
    "load_fonts",
    "LayoutOptions",
    "PAGE_SIZES",
    "draw_list",
    "barcode_svg",
    "list_email",
    "list_html",
    "list_text",
    "plain_reason",
    "uses_legend",
    "PrintingError",
    "FontError",
]
