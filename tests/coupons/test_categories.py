"""Category patterns: a chain's own names (plurals, punctuation, case) are matched, and misses are seen."""

import polars as pl

from coupons.categories import match_categories, pattern_regex
from coupons.household import household_groups
from coupons.rules import DEFAULT_CAMPAIGNS, OfferRules

# A real-shaped catalogue: the names a chain's export uses, not the generator's.
CATALOGUE = pl.DataFrame(
    {
        "category": [
            "DOG FOODS",
            "CAT FOOD",
            "BABY FOODS",
            "DIAPERS & DISPOSABLES",
            "VEGETABLES - ALL OTHERS",
            "VEGETABLES SALAD",
            "FROZEN VEGETABLES",
            "HOT DOGS",
            "cold cereal",
            "ANALGESICS",
        ],
        "department": ["PET", "PET", "BABY", "BABY", "PRODUCE", "PRODUCE", "GROCERY", "MEAT", "GROCERY", "DRUG GM"],
    }
)


def matched(*patterns: str) -> list[str]:
    return match_categories(patterns, CATALOGUE)["category"].to_list()


def test_wildcards_match_plurals_and_punctuation_not_substrings_elsewhere():
    assert matched("DOG FOOD*") == ["DOG FOODS"]  # not HOT DOGS
    assert matched("*DIAPER*") == ["DIAPERS & DISPOSABLES"]
    assert matched("VEGETABLES*") == ["VEGETABLES - ALL OTHERS", "VEGETABLES SALAD"]  # not FROZEN VEGETABLES
    assert matched("*VEGETABLES*") == ["FROZEN VEGETABLES", "VEGETABLES - ALL OTHERS", "VEGETABLES SALAD"]


def test_matching_ignores_case_and_blanks_and_an_exact_name_matches_only_itself():
    assert matched("  Cold Cereal ") == ["cold cereal"]
    assert matched("dog food") == []  # no wildcard: the exact name only
    assert matched("CAT FOO?") == ["CAT FOOD"]


def test_regex_characters_in_a_pattern_are_literal():
    assert pattern_regex("A+B (X)*") == r"(?i)^A\+B\ \(X\).*$"
    assert matched("DIAPERS & DISPOSABLES") == ["DIAPERS & DISPOSABLES"]
    assert matched("DIAPERS . DISPOSABLES") == []


def test_a_department_pattern_matches_all_its_categories():
    assert matched("dept:pet") == ["CAT FOOD", "DOG FOODS"]
    assert matched("DEPT:drug*") == ["ANALGESICS"]


def test_a_pattern_that_matches_nothing_has_no_row():
    found = match_categories(["DOG FOOD*", "BIRD SEED*"], CATALOGUE)
    assert found["pattern"].to_list() == ["DOG FOOD*"]


def test_default_household_groups_find_the_real_shaped_names():
    profile = pl.DataFrame(
        {
            "customer_key": [1, 1, 2, 2, 3],
            "category": ["DOG FOODS", "CAT FOOD", "DIAPERS & DISPOSABLES", "BABY FOODS", "VEGETABLES - ALL OTHERS"],
            "purchase_days": [3, 1, 2, 2, 9],
            "volume_tier": ["mid", "low", "mid", "mid", "high"],
        }
    )
    groups = household_groups(profile, OfferRules())
    assert groups.rows() == [(1, "pet"), (2, "baby"), (3, "vegetables")]
    assert DEFAULT_CAMPAIGNS[0].category == "ANALGESIC*"
