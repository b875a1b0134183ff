"""Make the TrueType files under printing/fontfiles/ from Debian's font packages.

Not run by the project: its output is committed, and `printing.fonts.FONT_FILES` pins each
file's sha256 (tests/printing/test_fonts.py checks them). Run it again only to change a font;
the same inputs and fontTools version give the same bytes.

    apt-get download fonts-noto-core fonts-noto-cjk fonts-symbola       # Debian 12 (bookworm)
    python -m venv /tmp/ft && /tmp/ft/bin/pip install fonttools==4.68.0
    /tmp/ft/bin/python tools/make_fonts.py DIR_OF_THE_DEBS

What it does, per file (inputs are checked against the sha256 below first):

* NotoSans-Regular.ttf, NotoSansArabic-Regular.ttf, NotoSansSymbols-Regular.ttf: from
  fonts-noto-core 20201225-1 (TrueType, SIL OFL 1.1), every glyph and table kept but the
  hinting (TrueType instructions), which reportlab copies into every PDF and which only
  serves screens at small pixel sizes: a one-page list as its own PDF is 14.2 KiB instead of
  19.5 KiB (benchmarks/print_bench.py's lists).
* NotoSansCJK-SC-subset.ttf: Noto Sans CJK SC from fonts-noto-cjk 1:20220127+repack1-1 (SIL OFL
  1.1). Debian ships it as CFF outlines, which reportlab cannot embed, so its outlines are
  converted to TrueType quadratics (fontTools cu2qu, at most 1 unit of the 1000-unit em off the
  original curve: invisible at any print size) after subsetting to the scripts a name or a
  product is written in: Han (the URO block, Extension A and the compatibility ideographs),
  kana, Bopomofo, Hangul syllables and jamo, CJK punctuation and full-width forms, and ASCII
  (so that a space between two Han words stays in the run). The whole collection is 19 MB
  of CFF for 65,535 glyphs; the subset is ~10 MB of TrueType. Han takes the SC (simplified
  Chinese) forms; Hangul and kana are the same in every region's face.
* Symbola-subset.ttf: Symbola 9.17 from fonts-symbola 2.60-1.1 (George Douros: "free for any
  use; may be opened, edited, modified, regenerated, packaged and redistributed"), subset to
  the symbol and pictograph blocks, monochrome emoji included. Debian has no monochrome Noto
  Emoji (fonts-noto-color-emoji is colour bitmaps, which a PDF cannot take as text).

Every file is modified (OFL 1.1 allows it; Noto has no Reserved Font Name, Noto Sans CJK's is
'Source', which its name does not use). The subsets drop hinting and layout tables (reportlab
uses neither); every name record stays, the licence ones included, and the version string
says the file was modified.
"""

from __future__ import annotations

import argparse
import hashlib
import subprocess
import sys
import tempfile
from pathlib import Path

from fontTools import subset
from fontTools.pens.cu2quPen import Cu2QuPen
from fontTools.pens.ttGlyphPen import TTGlyphPen
from fontTools.ttLib import TTCollection, TTFont, newTable

OUT = Path(__file__).resolve().parents[1] / "printing" / "fontfiles"

# (package file name prefix, path inside the package, sha256 of that file)
INPUTS = {
    "sans": (
        "fonts-noto-core_",
        "usr/share/fonts/truetype/noto/NotoSans-Regular.ttf",
        "89c3c497f618fdaa0b2d1e98fef93582f28c71debd2c4a8cdf41f190ced2909d",
    ),
    "arabic": (
        "fonts-noto-core_",
        "usr/share/fonts/truetype/noto/NotoSansArabic-Regular.ttf",
        "504d7407d86875acf7d04dfaa0fd7524d0b8797723bc4aa18022f29db25b0b6e",
    ),
    "symbols": (
        "fonts-noto-core_",
        "usr/share/fonts/truetype/noto/NotoSansSymbols-Regular.ttf",
        "24b615ceb7d50a2c09060664ca9e24a160c9beb6bfca0563e8359369a4bc0993",
    ),
    "cjk": (
        "fonts-noto-cjk_",
        "usr/share/fonts/opentype/noto/NotoSansCJK-Regular.ttc",
        "b76b0433203017ca80401b2ee0dd69350349871c4b19d504c34dbdd80541690a",
    ),
    "symbola": (
        "fonts-symbola_",
        "usr/share/fonts/truetype/ancient-scripts/Symbola_hint.ttf",
        "af8bd8cc9c808272034651cb5ebf6c38370ae536fe631eb89462f127f11e793f",
    ),
}
_CJK_SC = 2  # the collection's faces: JP, KR, SC, TC, HK, then the Mono ones
CJK_RANGES = (
    (0x0020, 0x007E),
    (0x1100, 0x11FF),
    (0x3000, 0x303F),
    (0x3040, 0x30FF),
    (0x3100, 0x312F),
    (0x3130, 0x318F),
    (0x31F0, 0x31FF),
    (0x3200, 0x32FF),
    (0x3400, 0x4DBF),
    (0x4E00, 0x9FFF),
    (0xAC00, 0xD7A3),
    (0xF900, 0xFAFF),
    (0xFF00, 0xFFEF),
)
SYMBOL_RANGES = ((0x2000, 0x2BFF), (0x1F000, 0x1FAFF))
MAX_ERR = 1.0  # font units (of 1000 per em) between a cubic curve and its quadratic replacement


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _unicodes(ranges: tuple[tuple[int, int], ...]) -> set[int]:
    return {cp for lo, hi in ranges for cp in range(lo, hi + 1)}


def _dehint(font: TTFont) -> None:
    """Drop the TrueType instructions and nothing else (every glyph, every layout feature)."""
    options = subset.Options()
    options.hinting = False
    options.layout_features = ["*"]
    options.name_IDs, options.name_languages = ["*"], ["*"]
    options.glyph_names = options.legacy_kern = options.notdef_outline = True
    options.drop_tables = []
    sub = subset.Subsetter(options)
    sub.populate(glyphs=font.getGlyphOrder(), unicodes=font.getBestCmap().keys())
    sub.subset(font)


def _subset(font: TTFont, ranges: tuple[tuple[int, int], ...]) -> None:
    options = subset.Options()
    options.layout_features = []  # reportlab neither shapes nor positions with GSUB/GPOS
    options.name_IDs, options.name_languages = ["*"], ["*"]
    options.hinting = False
    options.desubroutinize = True
    options.notdef_outline = True
    options.glyph_names = False
    sub = subset.Subsetter(options)
    sub.populate(unicodes=_unicodes(ranges))
    sub.subset(font)
    for tag in ("GSUB", "GPOS", "GDEF", "BASE", "VORG", "vhea", "vmtx", "DSIG"):
        if tag in font:
            del font[tag]


def _cff_to_glyf(font: TTFont) -> None:
    """Replace the CFF outlines by TrueType ones (as fontTools' otf2ttf snippet does)."""
    order = font.getGlyphOrder()
    glyphs = font.getGlyphSet()
    glyf = newTable("glyf")
    glyf.glyphOrder, glyf.glyphs = order, {}
    for name in order:
        pen = TTGlyphPen(glyphs)
        glyphs[name].draw(Cu2QuPen(pen, MAX_ERR, reverse_direction=True))
        glyf[name] = pen.glyph()
    font["loca"] = newTable("loca")
    font["glyf"] = glyf
    del font["CFF "]
    maxp = newTable("maxp")
    maxp.tableVersion = 0x00010000
    maxp.numGlyphs = len(order)
    for field in (
        "maxZones",
        "maxTwilightPoints",
        "maxStorage",
        "maxFunctionDefs",
        "maxInstructionDefs",
        "maxStackElements",
        "maxSizeOfInstructions",
        "maxComponentElements",
        "maxPoints",
        "maxContours",
        "maxCompositePoints",
        "maxCompositeContours",
        "maxComponentDepth",
    ):
        setattr(maxp, field, 0)
    maxp.maxZones = 1
    font["maxp"] = maxp
    font["head"].glyphDataFormat = 0
    post = font["post"]
    post.formatType, post.extraNames, post.mapping = 3.0, [], {}
    font.sfntVersion = "\x00\x01\x00\x00"


def _mark_modified(font: TTFont, how: str) -> None:
    name = font["name"]
    version = name.getDebugName(5)
    for record in list(name.names):
        if record.nameID == 5:
            name.setName(
                f"{version}; {how} (listwise tools/make_fonts.py)",
                5,
                record.platformID,
                record.platEncID,
                record.langID,
            )


def _save(font: TTFont, out: Path) -> None:
    font.recalcTimestamp = False  # the same inputs give the same bytes
    font.save(out)


def make(debs: Path, out: Path = OUT) -> dict[str, str]:
    """Write the fonts to `out`; returns {file name: sha256}."""
    out.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for prefix in sorted({p for p, _, _ in INPUTS.values()}):
            deb = next(iter(sorted(debs.glob(f"{prefix}*.deb"))), None)
            if deb is None:
                raise SystemExit(f"{debs}: no {prefix}*.deb (apt-get download {prefix.rstrip('_')})")
            subprocess.run(["dpkg-deb", "-x", str(deb), str(root)], check=True)
        src = {}
        for key, (_, rel, digest) in INPUTS.items():
            path = root / rel
            if _sha256(path) != digest:
                raise SystemExit(f"{rel}: sha256 {_sha256(path)}, expected {digest} (another package version?)")
            src[key] = path
        for key, name in (
            ("sans", "NotoSans-Regular.ttf"),
            ("arabic", "NotoSansArabic-Regular.ttf"),
            ("symbols", "NotoSansSymbols-Regular.ttf"),
        ):
            font = TTFont(str(src[key]))
            _dehint(font)
            _mark_modified(font, "hinting removed")
            _save(font, out / name)
        cjk = TTCollection(str(src["cjk"])).fonts[_CJK_SC]
        _subset(cjk, CJK_RANGES)
        _cff_to_glyf(cjk)
        _mark_modified(cjk, "subset, outlines converted to TrueType")
        _save(cjk, out / "NotoSansCJK-SC-subset.ttf")
        symbola = TTFont(str(src["symbola"]))
        _subset(symbola, SYMBOL_RANGES)
        _mark_modified(symbola, "subset to symbols and pictographs")
        _save(symbola, out / "Symbola-subset.ttf")
    return {p.name: _sha256(p) for p in sorted(out.glob("*.ttf"))}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("debs", type=Path, help="directory holding the downloaded .deb files")
    parser.add_argument("--out", type=Path, default=OUT)
    args = parser.parse_args(argv)
    for name, digest in make(args.debs, args.out).items():
        print(f'    "{name}": "{digest}",   # {(args.out / name).stat().st_size:,} bytes')
    return 0


if __name__ == "__main__":
    sys.exit(main())
