import fnmatch
import hashlib
import tomllib
from pathlib import Path

import pytest

from printing.exceptions import FontError
from printing.fonts import ELLIPSIS, FACES, FONT_DIR, FONT_FILES, PLACEHOLDER, load_fonts

ROOT = Path(__file__).resolve().parents[2]


def test_every_bundled_font_file_has_the_sha256_of_the_table():
    on_disk = {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in FONT_DIR.glob("*.tt[fc]")}
    assert on_disk == FONT_FILES
    assert {file for _, file in FACES} == set(FONT_FILES)


def test_the_fonts_ship_with_their_licences_and_stay_small():
    licences = {"OFL.txt": "SIL OPEN FONT LICENSE Version 1.1", "LICENSE-Symbola.txt": "free for any use"}
    for name, words in licences.items():
        assert words in (FONT_DIR / name).read_text(encoding="utf-8")
    assert "Reserved Font Name 'Source'" in (FONT_DIR / "OFL.txt").read_text(encoding="utf-8")  # Noto Sans CJK's
    assert sum((FONT_DIR / f).stat().st_size for f in FONT_FILES) < 25 * 2**20


def test_the_package_data_takes_every_font_and_licence_file():
    data = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["tool"]["setuptools"]["package-data"]
    patterns = data.get("printing", []) + data.get("*", [])
    files = [p.relative_to(ROOT / "printing").as_posix() for p in FONT_DIR.iterdir() if p.is_file()]
    assert len(files) >= len(FONT_FILES) + 3  # the fonts, two licences, the README
    assert [f for f in files if not any(fnmatch.fnmatch(f, pat) for pat in patterns)] == []


def test_a_missing_or_unreadable_font_is_a_font_error(tmp_path):
    with pytest.raises(FontError, match="nope.ttf not found"):
        load_fonts(str(tmp_path / "nope.ttf"))
    junk = tmp_path / "junk.ttf"
    junk.write_bytes(b"not a font at all")
    with pytest.raises(FontError, match="junk.ttf"):
        load_fonts(str(junk))
    assert issubclass(FontError, ValueError)


def test_latin_with_accents_stays_in_the_primary_face(fonts):
    assert fonts.runs("Zoë Ångström, Núñez") == [("LW-Sans", "Zoë Ångström, Núñez")]


@pytest.mark.parametrize(
    "text, face",
    [
        ("王静", "LW-CJK"),
        ("فاطمة", "LW-Arabic"),
        ("🥑", "LW-Emoji"),
        ("김민준", "LW-CJK"),
        ("さくら", "LW-CJK"),
        ("Ελένη", "LW-Sans"),
        ("♻", "LW-Symbols"),
    ],
)
def test_each_script_goes_to_a_face_that_has_it(fonts, text, face):
    assert [f for f, _ in fonts.runs(text)] == [face]


def test_arabic_is_shaped_into_presentation_forms(fonts):
    ((_, shaped),) = fonts.runs("فاطمة")
    assert all(0xFE70 <= ord(ch) <= 0xFEFF for ch in shaped)


def test_a_character_no_face_has_prints_as_the_placeholder(fonts):
    text = "".join(s for _, s in fonts.runs("A\U000f0001B"))
    assert text == f"A{PLACEHOLDER}B"


def test_joiners_and_variation_selectors_are_dropped(fonts):
    text = "".join(s for _, s in fonts.runs("👩\u200d👧\ufe0f"))
    assert "\u200d" not in text and "\ufe0f" not in text


@pytest.mark.parametrize(
    "text",
    [
        "Extra long organic heirloom tomato medley with basil, oregano and a splash of balsamic vinegar",
        "王小明的超级长的商品描述没有空格需要按字换行王小明的超级长的商品描述",
        "Supercalifragilisticexpialidociousandevenlongerwordwithoutanyspace",
    ],
)
def test_wrapped_lines_fit_and_the_last_is_shortened(fonts, text):
    lines = fonts.wrap(text, 9, 120, max_lines=2)
    assert 1 <= len(lines) <= 2
    assert all(fonts.width(line, 9) <= 120 + 1e-6 for line in lines)
    assert lines[-1].endswith(ELLIPSIS)


def test_short_text_is_not_wrapped(fonts):
    assert fonts.wrap("Milk 1 gal", 9, 120) == ["Milk 1 gal"]
    assert fonts.shorten("Milk", 9, 120) == "Milk"
