"""Settings' category patterns resolved against the imported catalogue; `settings check` flags misses."""

import dataclasses

from engine.categories import resolve_categories
from engine.cli import main
from engine.config import Campaign, Settings
from engine.history import read_products
from engine.ingest import import_file
from tests.coupons.test_categories import CATALOGUE

PRODUCTS = "sku,category,department,brand_type\n" + "".join(
    f"P{i},{c},{d},national\n" for i, (c, d) in enumerate(CATALOGUE.iter_rows())
)


def test_campaign_patterns_become_one_campaign_per_matched_category():
    settings = dataclasses.replace(
        Settings(), campaigns=(Campaign("ANALGESIC*"), Campaign("VEGETABLES*", name="veg"), Campaign("NOTHING*"))
    )
    resolved, matches = resolve_categories(settings, CATALOGUE)
    assert [(c.category, c.name) for c in resolved.campaigns] == [
        ("ANALGESICS", ""),
        ("VEGETABLES - ALL OTHERS", "veg: VEGETABLES - ALL OTHERS"),
        ("VEGETABLES SALAD", "veg: VEGETABLES SALAD"),
    ]
    assert resolved.offers.household_groups["pet"] == ["CAT FOOD", "DOG FOODS"]
    assert [m.unmatched for m in matches if m.what == "campaign"] == [(), (), ("NOTHING*",)]


def test_settings_check_lists_matches_and_fails_on_a_pattern_that_matches_nothing(
    db_url, tmp_path, capsys, monkeypatch
):
    monkeypatch.chdir(tmp_path)
    assert main(["-q", "--database", db_url, "init"]) == 0
    (tmp_path / "products.csv").write_text(PRODUCTS)
    import_file(db_url, "products", tmp_path / "products.csv")
    assert read_products(db_url).height == CATALOGUE.height
    capsys.readouterr()
    assert main(["--database", db_url, "settings", "check"]) == 0
    out = capsys.readouterr().out
    assert "household group 'baby' (BABY FOOD*; DIAPER*): BABY FOODS, DIAPERS & DISPOSABLES" in out
    assert "campaign 'ANALGESIC* to store' (ANALGESIC*): ANALGESICS" in out

    (tmp_path / "listwise.toml").write_text('[offers.household_groups]\npet = ["DOG FOOD*", "BIRD SEED*"]\n')
    assert main(["--database", db_url, "settings", "check"]) == 1
    captured = capsys.readouterr()
    assert captured.err.strip() == (
        "warning: household group 'pet': pattern 'BIRD SEED*' matches no category of the catalogue"
    )
    assert "household group 'pet' (DOG FOOD*; BIRD SEED*): DOG FOODS" in captured.out


def test_settings_check_on_an_empty_catalogue_is_an_error(sqlite_url, tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    main(["-q", "--database", sqlite_url, "init"])
    capsys.readouterr()
    assert main(["--database", sqlite_url, "settings", "check"]) == 1
    assert capsys.readouterr().err.startswith("error: the catalogue is empty")
