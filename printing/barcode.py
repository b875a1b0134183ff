"""Code 128 as vector bars: python-barcode for the symbology, reportlab rectangles for the ink.

python-barcode only gives the module pattern (``'1101001…'``, one character per module,
start, check and stop symbols included; an all-digit code of even length is packed two
digits a symbol in subset C). Each run of dark modules becomes one filled rectangle, so the
bars stay sharp at any print resolution and no raster image is embedded.

Module width. A bar edge that falls between two printer dots is rounded one way or the
other, so bars and spaces of the same nominal width come out a dot apart. Measured here
(pypdfium2 render → zxing-cpp, three symbols a page at sub-dot offsets; "b" = Gaussian blur
of 0.8 px), symbols decoded out of 3:

    module   left edge   150 dpi  150b   200 dpi  200b   300 dpi
    0.72 pt  anywhere      2       1       3       2       3
    0.96 pt  anywhere      3       2       3       3       3
    0.72 pt  snapped       0       0       3       3       3
    0.96 pt  snapped       3       3       3       3       3
    1.08 pt  snapped       3       3       3       3       3
    1.44 pt  snapped       3       3       3       3       3

The default, `MODULE_PT` = 1.44 pt (a 20-mil module), is a whole number of dots at 150,
200, 300 and 600 dpi, and the symbol's left edge is snapped to a 1.44 pt grid (whole dots at
150, 200 and 300 dpi), so every bar edge lands on a dot boundary there and a cheap 150 dpi fax
or a blurred scan still decodes. An 18-digit list code is 134 modules: 193 pt (2.7 in) of
bars plus two 10-module quiet zones. `PrintSettings.barcode_module_pt` changes it.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from barcode import Code128
from reportlab.pdfgen.canvas import Canvas

__all__ = ["modules", "bar_runs", "draw_code128", "symbol_width", "MODULE_PT", "QUIET_MODULES"]

MODULE_PT = 1.44  # 20 mil: 4 dots at 200 dpi, 6 at 300, 3 at 150
QUIET_MODULES = 10  # ISO/IEC 15417 asks for at least 10 modules each side
_GRID_PT = 1.44  # whole dots at 150, 200, 300 and 600 dpi (3, 4, 6, 12)


def modules(code: str) -> str:
    """The module pattern of `code` in Code 128, ``'1'`` dark and ``'0'`` light.

    Examples
    --------
    >>> len(modules("012345678912345678"))   # start + 9 digit pairs + check + stop
    134
    """
    return Code128(code).build()[0]


def bar_runs(pattern: str) -> list[tuple[int, int]]:
    """(first module, width in modules) of each dark bar of a module pattern."""
    return [(m.start(), m.end() - m.start()) for m in re.finditer("1+", pattern)]


def symbol_width(code: str, module_pt: float = MODULE_PT) -> float:
    """Width of the symbol with its two quiet zones, in points."""
    return (len(modules(code)) + 2 * QUIET_MODULES) * module_pt


def _snap(value: float) -> float:
    return round(value / _GRID_PT) * _GRID_PT


@dataclass(frozen=True)
class _Placed:
    left: float
    width: float


def draw_code128(
    canvas: Canvas,
    code: str,
    x: float,
    y: float,
    *,
    height: float = 40.0,
    module_pt: float = MODULE_PT,
    font: str = "Helvetica",
    font_size: float = 9.0,
    human_readable: bool = True,
) -> _Placed:
    """Draw `code` with its quiet zones, bottom-left corner of the zone at (`x`, `y`).

    Parameters
    ----------
    canvas
        The reportlab canvas to draw on.
    code
        The text to encode (an 18-digit list code in practice).
    x, y
        Bottom-left corner of the whole symbol, left quiet zone included; `x` is snapped to
        a 1.44 pt grid so the bar edges fall on whole dots at 150, 200 and 300 dpi.
    height
        Height of the bars in points.
    module_pt
        Width of one module in points; keep it a whole number of printer dots.
    font, font_size
        Font of the human-readable code printed beneath the bars.

    Returns
    -------
    The left edge and the width (points) of the symbol drawn, quiet zones included.
    """
    pattern = modules(code)
    left = _snap(x)
    bars_left = left + QUIET_MODULES * module_pt
    text_h = font_size + 2 if human_readable else 0.0
    bar_bottom = y + text_h
    canvas.saveState()
    canvas.setFillColorRGB(0, 0, 0)
    path = canvas.beginPath()
    for start, width in bar_runs(pattern):
        path.rect(bars_left + start * module_pt, bar_bottom, width * module_pt, height)
    canvas.drawPath(path, stroke=0, fill=1)
    if human_readable:
        canvas.setFont(font, font_size)
        spaced = " ".join(code[i : i + 4] for i in range(0, len(code), 4))  # easier to key in
        canvas.drawCentredString(bars_left + len(pattern) * module_pt / 2, y + 1, spaced)
    canvas.restoreState()
    return _Placed(left, (len(pattern) + 2 * QUIET_MODULES) * module_pt)
