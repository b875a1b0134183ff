"""Extracts and settlement on real databases: no personal data, small groups withheld, exact dues."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import polars as pl
import pytest

from tests.extracts.conftest import LAST_DAY, PERIOD_START, TRUE_RATE_LIFT, TRUE_UNITS_LIFT

AGGREGATES = ("offer_results", "lift", "category_cells", "category_weekly")


def _files(chain: dict) -> list[Path]:
    return sorted(p for d in chain["out"].values() for p in d.iterdir() if p.is_file())


def test_no_personal_data_or_raw_id_in_any_byte_of_any_file(chain):
    needles = [n for n in chain["truth"]["personal"] + chain["truth"]["basket_ids"] if n]
    files = _files(chain)
    assert {p.suffix for p in files} >= {".parquet", ".csv", ".json", ".pdf"}
    for path in files:
        data = path.read_bytes().lower()
        # Parquet is written uncompressed; decode it too so that no encoding could hide a value.
        texts = [data]
        if path.suffix == ".parquet":
            texts.append(pl.read_parquet(path).write_csv().encode().lower())
        for needle in needles:
            n = needle.encode().lower()
            assert not any(n in t for t in texts), f"{needle!r} found in {path.name}"


def test_no_output_column_names_a_customer_basket_or_timestamp(chain):
    for path in _files(chain):
        if path.suffix == ".parquet" or path.name.endswith(".csv"):
            columns = pl.read_parquet(path).columns if path.suffix == ".parquet" else pl.read_csv(path).columns
            assert not {"customer_key", "customer_id", "basket_id", "basket_key", "ts", "card_number"} & set(columns)


def test_every_aggregate_row_counts_at_least_the_minimum_of_households(chain):
    m = chain["settings"].extracts.min_group
    for maker, out in chain["out"].items():
        manifest = json.loads((out / "manifest.json").read_text())
        assert manifest["min_group"] == m == 50
        for table in AGGREGATES:
            frame = pl.read_parquet(out / f"{table}.parquet")
            assert frame["households"].min() is None or frame["households"].min() >= m, (maker, table)
            if table == "lift":
                assert frame.height == 0 or frame["holdout_households"].min() >= m


def test_a_small_cell_is_withheld_with_a_complement_so_the_total_does_not_give_it_away(chain):
    m = chain["settings"].extracts.min_group
    results = pl.read_parquet(chain["out"]["M1"] / "offer_results.parquet")
    total = results.filter(pl.col("cell") == "all")
    cells = results.filter(pl.col("cell") != "all")
    assert total.height == 1 and total["households"][0] == chain["truth"]["n_treated"]
    assert "unclassified:low" not in cells["cell"].to_list()  # ~30 households: primary
    hidden = total["households"][0] - cells["households"].sum()
    assert hidden >= m  # complementary: remainder >= m
    manifest = json.loads((chain["out"]["M1"] / "manifest.json").read_text())
    assert manifest["withheld_rows"]["offer_results"] >= 2


def test_manifest_lists_every_file_with_rows_and_sha256(chain):
    import hashlib

    out = chain["out"]["M1"]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["format_version"] == 1
    assert manifest["period"] == {"from": PERIOD_START.isoformat(), "to": LAST_DAY.isoformat()}
    names = {f["name"] for f in manifest["files"]}
    assert {f"{t}.{s}" for t in (*AGGREGATES, "household_panel") for s in ("parquet", "csv")} == names
    for entry in manifest["files"]:
        data = (out / entry["name"]).read_bytes()
        assert hashlib.sha256(data).hexdigest() == entry["sha256"]
        if entry["name"].endswith(".parquet"):
            assert pl.read_parquet(out / entry["name"]).height == entry["rows"]


def test_pseudonyms_are_stable_for_one_manufacturer_and_differ_across_manufacturers(chain, tmp_path):
    from engine.extracts import write_extract

    again = tmp_path / "again"
    write_extract(chain["settings"], "M1", PERIOD_START, LAST_DAY, again, panel=True)
    first = pl.read_parquet(chain["out"]["M1"] / "household_panel.parquet")
    second = pl.read_parquet(again / "household_panel.parquet")
    other = pl.read_parquet(chain["out"]["M2"] / "household_panel.parquet")
    assert first.height > 100
    assert first["pseudonym"].to_list() == second["pseudonym"].to_list()
    assert first["pseudonym"].n_unique() > 100
    assert not set(first["pseudonym"]) & set(other["pseudonym"])
    # same households in both panels (same categories bought), under different names
    assert (
        first["pseudonym"].n_unique() == other.filter(pl.col("category_units") > 0)["pseudonym"].n_unique()
        or other["pseudonym"].n_unique() > 100
    )


def test_settlement_totals_equal_the_funded_share_of_redemptions_to_the_cent(chain):
    for maker in ("M1", "M2"):
        out = chain["out"][maker]
        lines = pl.read_csv(out / "settlement.csv")
        summary = json.loads((out / "settlement.json").read_text())
        assert summary["amount_due_cents"] == chain["truth"]["due"][maker] == lines["amount_due_cents"].sum()
        with open(out / "settlement_totals.csv", newline="") as fh:
            total = [r for r in csv.DictReader(fh) if r["offer"] == "TOTAL"][0]
        assert int(total["amount_due_cents"]) == chain["truth"]["due"][maker]
        live = [
            r
            for r in chain["truth"]["redemptions"]
            if not r["voided"] and r["discount_cents"] == (101 if maker == "M1" else 75)
        ]
        assert lines.height == summary["redemptions"] == len(live)


def test_settlement_excludes_voided_redemptions_and_retailer_offers(chain):
    voided = [r["redemption_id"] for r in chain["truth"]["redemptions"] if r["voided"]]
    lines = pl.read_csv(chain["out"]["M1"] / "settlement.csv")
    assert voided and not set(voided) & set(lines["redemption_id"].to_list())
    assert set(lines["sku"]) == {"SKU-C1"}
    assert set(pl.read_csv(chain["out"]["M2"] / "settlement.csv")["sku"]) == {"SKU-T1"}


def test_settlement_statement_is_one_page_with_the_total(chain):
    from pypdf import PdfReader

    from coupons.money import dollars

    reader = PdfReader(chain["out"]["M1"] / "settlement.pdf")
    assert len(reader.pages) == 1
    assert dollars(chain["truth"]["due"]["M1"]) in reader.pages[0].extract_text()


def test_lift_interval_covers_the_planted_effect(chain):
    lift = pl.read_parquet(chain["out"]["M1"] / "lift.parquet").filter(pl.col("category") == "COFFEE")
    assert lift.height == 1
    row = lift.row(0, named=True)
    assert row["treated_households"] == chain["truth"]["n_treated"]
    assert row["holdout_households"] == chain["truth"]["n_holdout"]
    assert row["rate_ci_low"] <= TRUE_RATE_LIFT <= row["rate_ci_high"]
    assert row["rate_ci_low"] > 0  # and the effect is detected
    assert row["units_ci_low"] <= TRUE_UNITS_LIFT <= row["units_ci_high"]


def test_category_insight_covers_the_manufacturers_categories_week_by_week(chain):
    cells = pl.read_parquet(chain["out"]["M2"] / "category_cells.parquet")
    weekly = pl.read_parquet(chain["out"]["M2"] / "category_weekly.parquet")
    assert set(cells["category"]) == {"COFFEE", "TEA"}
    assert weekly["week_start"].dt.weekday().unique().to_list() == [1]  # Mondays
    shares = cells.filter(pl.col("cell") == "all")
    assert ((shares["national_share"] + shares["store_brand_share"] - 1).abs() < 1e-3).all()
    tea = shares.filter(pl.col("category") == "TEA").row(0, named=True)
    assert 0 < tea["manufacturer_share"] < 1 and 0 < tea["repeat_rate"] < 1


def test_min_group_floor_is_ten():
    from engine.errors import ConfigError
    from engine.extracts import effective_min_group

    assert effective_min_group(10) == 10
    with pytest.raises(ConfigError, match="at least 10"):
        effective_min_group(5)


def test_min_group_below_ten_is_refused(chain, tmp_path):
    import dataclasses

    from engine.config import ExtractSettings
    from engine.errors import ConfigError
    from engine.extracts import write_extract

    settings = dataclasses.replace(chain["settings"], extracts=ExtractSettings(min_group=9))
    with pytest.raises(ConfigError, match="at least 10"):
        write_extract(settings, "M1", PERIOD_START, LAST_DAY, tmp_path)


def test_a_manufacturer_without_offers_or_products_gets_empty_tables_and_zero_due(chain, tmp_path):
    from engine.extracts import write_extract, write_settlement

    manifest = write_extract(chain["settings"], "M3", PERIOD_START, LAST_DAY, tmp_path, panel=True)
    assert all(f["rows"] == 0 for f in manifest["files"])
    assert pl.read_parquet(tmp_path / "offer_results.parquet").columns[:4] == ["offer", "kind", "category", "cell"]
    assert write_settlement(chain["settings"], "M3", PERIOD_START, LAST_DAY, tmp_path)["amount_due_cents"] == 0


def test_each_extract_and_settlement_is_recorded_with_its_manifest_hash(chain):
    import hashlib

    import sqlalchemy as sa

    from engine.db import connect

    engine = connect(chain["url"])
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT manufacturer_id, kind, manifest_sha256, out_dir FROM extracts WHERE manufacturer_id = 'M2'")
        ).all()
    engine.dispose()
    expected = {
        ("extract", hashlib.sha256((chain["out"]["M2"] / "manifest.json").read_bytes()).hexdigest()),
        ("settlement", hashlib.sha256((chain["out"]["M2"] / "settlement.json").read_bytes()).hexdigest()),
    }
    assert {(r.kind, r.manifest_sha256) for r in rows} >= expected


def test_the_demo_step_extracts_and_settles_the_manufacturer_with_most_funded_offers(chain, tmp_path):
    from coupons.money import dollars
    from engine.demo import demo_extracts

    extract, settlement = list(demo_extracts(chain["settings"], tmp_path))
    assert extract.startswith("extract for M1 (2025-02-03 to 2025-03-16, groups of 50+ households)")
    assert f"{dollars(chain['truth']['due']['M1'])} due" in settlement
    assert (tmp_path / "extracts" / "M1" / "settlement.pdf").exists()
