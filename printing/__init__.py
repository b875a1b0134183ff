"""printing: barcoded PDF lists and the print-shop files of a batch.

Owns the page layout, the vector Code 128 barcode, font embedding, merged per-store
print files and their manifest.
"""

from printing.batch import print_batch, read_documents
from printing.document import ListDocument, OfferLine, RewardLine, mask_card
from printing.fonts import load_fonts
from printing.layout import LayoutOptions, draw_list

__all__ = ["print_batch", "read_documents", "ListDocument", "OfferLine", "RewardLine", "mask_card",
           "load_fonts", "LayoutOptions", "draw_list"]
