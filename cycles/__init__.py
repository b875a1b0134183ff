"""cycles: pure models of customer behaviour (polars frames in, frames out).

Owns purchase-cycle estimation (next purchase and its probability in a window),
brand-loyalty x volume cells, and customer value (RFM, ABC, CLV, lifecycle, share of
wallet, average weekly spend). Touches no disk and no database.
"""

__all__: list[str] = []
