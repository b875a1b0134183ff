"""Why this offer, in plain words (printing.reasons)."""

import pytest

from printing.reasons import plain_reason, uses_legend


@pytest.mark.parametrize(
    ("kind", "stored", "extra", "plain"),
    [
        ("cycle", "likely needed around Mar 5", {"interval_days": 12}, "you buy it about every 12 days"),
        ("cycle", "likely needed around Mar 5", {}, "you buy it regularly"),
        (
            "conversion",
            "ANALGESICS to store: 40% off, national buyer, high volume",
            {"category": "ANALGESICS", "volume_tier": "high", "brand_type": "store"},
            "for heavy buyers of analgesics: try our brand",
        ),
        (
            "conversion",
            "x",
            {"category": "COFFEE", "volume_tier": "low", "brand_type": "national", "brand": "Bean Co"},
            "for buyers of coffee: try Bean Co",
        ),
        ("household", "household: pet", {"category": "DOG FOOD DRY"}, "for your dog"),
        ("household", "household: pet", {"category": "CAT LITTER"}, "for your cat"),
        ("household", "household: baby", {"category": "DIAPERS"}, "for your baby"),
        ("deal", "manufacturer deal D1", {"maker": "Cedar Foods Inc."}, "a special from Cedar Foods Inc."),
        ("reward", "reward: VIP customer, 72% of wallet", {}, "thank you for shopping with us"),
        ("mystery", "a reason the chain wrote", {}, "a reason the chain wrote"),
    ],
)
def test_each_kind_says_why_without_jargon(kind, stored, extra, plain):
    assert plain_reason(kind, stored, **extra) == plain


def test_no_stored_jargon_leaks_into_the_plain_words():
    for kind in ("cycle", "conversion", "household", "deal", "reward"):
        text = plain_reason(kind, "X: 40% off, national buyer, high volume", category="X", volume_tier="mid")
        assert text and "%" not in text and "volume" not in text


def test_the_legend_explains_every_multiple_use_mark():
    assert uses_legend({1}) == ""
    assert uses_legend({3, 1, 2}) == "×2: on two visits · ×3: on three visits"
    assert uses_legend({12}) == "×12: on 12 visits"
