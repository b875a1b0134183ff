"""Fonts that print any name: embedded TrueType faces with per-character fallback.

No single free TrueType face covers Latin, Arabic, Chinese, Korean and emoji, so a string is
cut into runs, each set in the first face of `FACES` that has all its characters. The files
ship inside the package (``printing/fontfiles/``, with their licences and where they come
from in README.md); `FONT_FILES` pins each file's sha256:

    face        file                           covers                                  licence
    Sans        NotoSans-Regular.ttf           Latin, Greek, Cyrillic, Vietnamese      OFL 1.1
    Arabic      NotoSansArabic-Regular.ttf     Arabic                                  OFL 1.1
    CJK         NotoSansCJK-SC-subset.ttf      Han (SC forms), kana, Hangul            OFL 1.1
    Symbols     NotoSansSymbols-Regular.ttf    symbols, arrows                         OFL 1.1
    Emoji       Symbola-subset.ttf             emoji (Unicode 9), in one colour        free for any use

All are glyph-outline TrueType without hinting (reportlab does not embed CFF/OpenType
outlines: the CJK face is Debian's Noto Sans CJK with its outlines converted,
`tools/make_fonts.py`). reportlab
embeds each face once per PDF document and only the glyphs used (subsets of 256), so a
merged print file carries the fonts once.

A character no face has (an emoji newer than the font, a private-use code point) prints as
`PLACEHOLDER`, never as a missing-glyph box or an exception; joiners and variation selectors
are dropped. Arabic is shaped into presentation forms (arabic-reshaper) and put in visual
order (python-bidi) before it is cut into runs, since reportlab's canvas does neither.
"""

from __future__ import annotations

import functools
import unicodedata
from dataclasses import dataclass
from pathlib import Path

from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen.canvas import Canvas

from printing.exceptions import FontError

__all__ = ["FontSet", "load_fonts", "PLACEHOLDER", "FACES", "FONT_DIR", "FONT_FILES"]

PLACEHOLDER = "?"
ELLIPSIS = "…"
_DROP = {0x200D, 0xFE0E, 0xFE0F, 0x200B, 0x2060}  # ZWJ, variation selectors, zero widths

FONT_DIR = Path(__file__).resolve().parent / "fontfiles"
# every file of FONT_DIR and its sha256, as tools/make_fonts.py printed it (tests/printing/test_fonts.py)
FONT_FILES = {
    "NotoSans-Regular.ttf": "5d4280610d04dfa0230c4ae76b2c6ffa6983c8cda396a1af7cff3e42e1a1b9fb",
    "NotoSansArabic-Regular.ttf": "20f433d98dce05a149d7f3651c2dfee54962587dc428de744baa9ff590487833",
    "NotoSansCJK-SC-subset.ttf": "b35f595f285caeb37daa6c88e33951c19509ae04bf0cf27847f8c0b351202b9f",
    "NotoSansSymbols-Regular.ttf": "8324ba2da785605fea78a29f0114eadd9cb199cd43536e9d581bfadf60a95b95",
    "Symbola-subset.ttf": "6d22290df1528bf8a1a12385d6c584b9209fe7812752acd850b068d3339535c3",
}

# (reportlab name, file in FONT_DIR); the first is the primary face
FACES: tuple[tuple[str, str], ...] = (
    ("LW-Sans", "NotoSans-Regular.ttf"),
    ("LW-Arabic", "NotoSansArabic-Regular.ttf"),
    ("LW-CJK", "NotoSansCJK-SC-subset.ttf"),
    ("LW-Symbols", "NotoSansSymbols-Regular.ttf"),
    ("LW-Emoji", "Symbola-subset.ttf"),
)


def _is_rtl(text: str) -> bool:
    return any(unicodedata.bidirectional(ch) in ("R", "AL") for ch in text)


@dataclass(eq=False)  # hashed by identity: `_runs` caches per instance
class FontSet:
    """Registered faces and the code points each one covers.

    Build it with `load_fonts`; `names[0]` is the primary face.
    """

    names: tuple[str, ...]
    covers: tuple[frozenset[int], ...]

    @property
    def primary(self) -> str:
        return self.names[0]

    def _face_of(self, cp: int) -> int:
        for i, cover in enumerate(self.covers):
            if cp in cover:
                return i
        return -1

    def runs(self, text: str) -> list[tuple[str, str]]:
        """`text` as (face name, substring) runs, in visual order, unprintables replaced.

        Examples
        --------
        >>> fonts = load_fonts()
        >>> fonts.runs("Zoë 李")
        [('LW-Sans', 'Zoë '), ('LW-CJK', '李')]
        """
        if text.isascii():
            return [(self.names[0], text)] if text else []
        return self._runs(text)

    @functools.lru_cache(maxsize=65536)  # noqa: B019 - one FontSet per process, bounded
    def _runs(self, text: str) -> list[tuple[str, str]]:
        text = unicodedata.normalize("NFC", text)
        if _is_rtl(text):
            import arabic_reshaper
            from bidi import get_display

            text = get_display(arabic_reshaper.reshape(text))
        out: list[tuple[str, str]] = []
        current, buf = -2, []
        for ch in text:
            cp = ord(ch)
            if cp in _DROP:
                continue
            face = self._face_of(cp)
            if face < 0:
                ch, face = PLACEHOLDER, 0
            if 0 <= current != face and cp in self.covers[current] and unicodedata.category(ch)[0] in "PZ":
                face = current  # spaces and punctuation stay in the run
            if face != current and buf:
                out.append((self.names[current], "".join(buf)))
                buf = []
            current = face
            buf.append(ch)
        if buf:
            out.append((self.names[current], "".join(buf)))
        return out

    @functools.lru_cache(maxsize=65536)  # noqa: B019
    def _width1(self, text: str) -> float:
        return sum(pdfmetrics.stringWidth(s, face, 1.0) for face, s in self.runs(text))

    def width(self, text: str, size: float) -> float:
        """Width of `text` at `size` points, as `draw` sets it."""
        return self._width1(text) * size

    def _encoded(self, canvas: Canvas, text: str) -> list[tuple[str, str]]:
        """(PDF font resource, escaped string) runs of `text` in `canvas`'s document.

        reportlab assigns each character a code in a 256-glyph subset the first time a
        document uses it, and that code never changes within the document, so the encoded
        runs are cached per document: the labels, prices and dates of thousands of lists
        are encoded once. This replaces `drawString`, whose text-object machinery took most
        of the drawing time: one-page lists on one canvas went from 81 to 270 lists/s on one
        core here (benchmarks/print_bench.py).
        """
        doc = canvas._doc
        cache = doc.__dict__.setdefault("_listwise_text", {})
        hit = cache.get(text)
        if hit is None:
            hit = []
            for face_name, s in self.runs(text):
                font = pdfmetrics.getFont(face_name)
                for subset, chunk in font.splitString(s, doc):
                    hit.append((font.getSubsetInternalName(subset, doc), canvas._escape(chunk)))
            cache[text] = hit
        return hit

    def draw(self, canvas: Canvas, x: float, y: float, text: str, size: float, *, align: str = "left") -> float:
        """Draw `text` with its baseline at `y` in the current fill colour; returns its width.

        `align` 'left' starts at `x`, 'right' ends at `x`, 'centre' centres on `x`.
        """
        if not text:
            return 0.0
        width = self._width1(text) * size
        if align != "left":
            x -= width if align == "right" else width / 2
        ops = " ".join(f"{name} {size:g} Tf ({esc}) Tj" for name, esc in self._encoded(canvas, text))
        canvas._code.append(f"BT 1 0 0 1 {x:.2f} {y:.2f} Tm {ops} ET")
        return width

    def _prefix_fitting(self, text: str, size: float, max_width: float, suffix: str = "") -> int:
        """Length of the longest prefix of `text` that fits in `max_width` with `suffix`."""
        lo, hi = 0, len(text)
        while lo < hi:
            mid = (lo + hi + 1) // 2
            if self.width(text[:mid].rstrip() + suffix, size) <= max_width:
                lo = mid
            else:
                hi = mid - 1
        return lo

    def shorten(self, text: str, size: float, max_width: float) -> str:
        """`text`, cut at the end with an ellipsis so that it fits in `max_width`."""
        if self.width(text, size) <= max_width:
            return text
        return text[: self._prefix_fitting(text, size, max_width, ELLIPSIS)].rstrip() + ELLIPSIS

    def wrap(self, text: str, size: float, max_width: float, max_lines: int = 2) -> list[str]:
        """`text` broken into at most `max_lines` lines of `max_width`; the last one shortened.

        Breaks at spaces; a word wider than a line (a Chinese phrase has no spaces) is broken
        between characters.
        """
        words, lines, line, i = text.split(), [], "", 0
        while i < len(words):
            candidate = f"{line} {words[i]}" if line else words[i]
            if self.width(candidate, size) <= max_width:
                line, i = candidate, i + 1
                continue
            if line:
                sep = " "
            else:  # one word wider than the line
                cut = max(1, self._prefix_fitting(words[i], size, max_width))
                line, words[i], sep = words[i][:cut], words[i][cut:], ""
            lines.append(line)
            line = ""
            if len(lines) == max_lines:
                lines[-1] = self.shorten(lines[-1] + sep + " ".join(words[i:]), size, max_width)
                return lines
        if line:
            lines.append(line)
        return lines


def _register(name: str, path: Path) -> frozenset[int]:
    """Register the face in `path` with reportlab as `name`; returns the code points it covers."""
    if not path.exists():
        raise FontError(f"font file {path} not found")
    try:
        face = TTFont(name, str(path), subfontIndex=0) if path.suffix == ".ttc" else TTFont(name, str(path))
    except Exception as exc:
        raise FontError(f"font file {path}: {exc}") from exc
    pdfmetrics.registerFont(face)
    return frozenset(cp for cp in face.face.charToGlyph if cp >= 0x20)


@functools.lru_cache(maxsize=4)
def load_fonts(font_path: str = "") -> FontSet:
    """Register the faces with reportlab once per process and return them.

    Parameters
    ----------
    font_path
        A TrueType file to use as the primary face instead of Noto Sans; Noto Sans follows it
        for what it lacks, then the other fallbacks.

    Raises
    ------
    FontError
        A font file is missing or unreadable.
    """
    faces = [(name, FONT_DIR / file) for name, file in FACES]
    if font_path:
        faces.insert(0, ("LW-Custom", Path(font_path)))
    return FontSet(tuple(name for name, _ in faces), tuple(_register(name, path) for name, path in faces))
