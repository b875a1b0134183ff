import pytest

from printing.fonts import ELLIPSIS, PLACEHOLDER


def test_latin_with_accents_stays_in_the_primary_face(fonts):
    assert fonts.runs("Zoë Ångström, Núñez") == [("LW-Sans", "Zoë Ångström, Núñez")]


@pytest.mark.parametrize("text, face", [("王静", "LW-CJK"), ("فاطمة", "LW-Arabic"), ("🥑", "LW-Emoji")])
def test_each_script_goes_to_a_face_that_has_it(fonts, text, face):
    assert [f for f, _ in fonts.runs(text)] == [face]


def test_arabic_is_shaped_into_presentation_forms(fonts):
    (_, shaped), = fonts.runs("فاطمة")
    assert all(0xFE70 <= ord(ch) <= 0xFEFF for ch in shaped)


def test_a_character_no_face_has_prints_as_the_placeholder(fonts):
    text = "".join(s for _, s in fonts.runs("A\U000F0001B"))
    assert text == f"A{PLACEHOLDER}B"


def test_joiners_and_variation_selectors_are_dropped(fonts):
    text = "".join(s for _, s in fonts.runs("👩\u200d👧\ufe0f"))
    assert "\u200d" not in text and "\ufe0f" not in text


@pytest.mark.parametrize("text", [
    "Extra long organic heirloom tomato medley with basil, oregano and a splash of balsamic vinegar",
    "王小明的超级长的商品描述没有空格需要按字换行王小明的超级长的商品描述",
    "Supercalifragilisticexpialidociousandevenlongerwordwithoutanyspace",
])
def test_wrapped_lines_fit_and_the_last_is_shortened(fonts, text):
    lines = fonts.wrap(text, 9, 120, max_lines=2)
    assert 1 <= len(lines) <= 2
    assert all(fonts.width(line, 9) <= 120 + 1e-6 for line in lines)
    assert lines[-1].endswith(ELLIPSIS)


def test_short_text_is_not_wrapped(fonts):
    assert fonts.wrap("Milk 1 gal", 9, 120) == ["Milk 1 gal"]
    assert fonts.shorten("Milk", 9, 120) == "Milk"
