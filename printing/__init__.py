"""printing: barcoded PDF lists, their HTML and e-mail twins, and the print-shop files of a batch.

Owns the page layout, the vector Code 128 barcode, font embedding, merged per-store
print files and their manifest, the plain words of each offer's reason, and the same list
as a self-contained web page and an RFC 5322 message (written, not sent).
"""

from printing.batch import print_batch, read_documents
from printing.digital import barcode_svg, list_email, list_html, list_text
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine, mask_card
from printing.fonts import load_fonts
from printing.layout import LayoutOptions, draw_list
from printing.reasons import plain_reason, uses_legend

__all__ = ["print_batch", "read_documents", "ListDocument", "NeedLine", "OfferLine", "RewardLine", "mask_card",
           "load_fonts", "LayoutOptions", "draw_list", "barcode_svg", "list_email", "list_html", "list_text",
           "plain_reason", "uses_legend"]
