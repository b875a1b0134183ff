"""printing: barcoded PDF lists and the print-shop files of a batch.

Owns the page layout, the vector Code 128 barcode, font embedding, merged per-store
print files and their manifest.
"""

__all__: list[str] = []
