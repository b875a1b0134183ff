"""`listwise profile` and `listwise customers` on a real database (SQLite, then PostgreSQL)."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl
import pytest

from engine.cli import main
from engine.config import Settings
from engine.history import history_from_files
from engine.profiles import profile_frames

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
AS_OF = dt.date(2025, 6, 2)


@pytest.fixture
def imported(db_url, tmp_path, monkeypatch) -> str:
    monkeypatch.chdir(tmp_path)
    for kind in ("stores", "customers", "products"):
        assert main(["-q", "--database", db_url, "import", kind, str(SAMPLE / f"{kind}.csv")]) == 0
    assert main(["-q", "--database", db_url, "import", "transactions", str(SAMPLE / "transactions")]) == 0
    return db_url


def test_profile_and_customers_write_the_contract_columns(imported, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "--database",
                imported,
                "profile",
                "--as-of",
                AS_OF.isoformat(),
                "--out",
                str(tmp_path / "profile.parquet"),
            ]
        )
        == 0
    )
    assert (
        main(
            [
                "-q",
                "--database",
                imported,
                "customers",
                "--as-of",
                AS_OF.isoformat(),
                "--out",
                str(tmp_path / "customers.csv"),
            ]
        )
        == 0
    )
    profile = pl.read_parquet(tmp_path / "profile.parquet")
    value = pl.read_csv(tmp_path / "customers.csv")
    assert {
        "customer_id",
        "category",
        "purchase_days",
        "last_purchase_on",
        "interval_median_days",
        "next_expected_on",
        "p_buy_in_window",
        "brand_cell",
        "volume_tier",
    } <= set(profile.columns)
    assert profile["last_purchase_on"].max() < AS_OF  # only history before the as-of date
    assert profile["p_buy_in_window"].is_between(0, 1).all()
    assert set(profile["brand_cell"]) <= {"national", "store", "switcher", "unclassified"}
    customers = pl.read_csv(SAMPLE / "customers.csv")
    assert value.height == customers.height and value["customer_id"].is_unique().all()
    assert {
        "rfm_score",
        "rfm_segment",
        "abc_class",
        "value_tier",
        "clv_cents",
        "lifecycle_stage",
        "share_of_wallet",
        "avg_weekly_spend_cents",
    } <= set(value.columns)
    assert "rows written" in capsys.readouterr().out


@pytest.mark.parametrize("db_url", ["sqlite"], indirect=True)
def test_database_and_files_give_the_same_profile(imported, tmp_path):
    assert (
        main(
            [
                "-q",
                "--database",
                imported,
                "profile",
                "--as-of",
                AS_OF.isoformat(),
                "--window-days",
                "7",
                "--out",
                str(tmp_path / "profile.parquet"),
            ]
        )
        == 0
    )
    from_db = pl.read_parquet(tmp_path / "profile.parquet")
    history, products, customers = history_from_files(SAMPLE)
    profile, _ = profile_frames(history, products, customers, Settings(), AS_OF, 7)
    from_files = (
        profile.join(customers.select("customer_key", "customer_id"), on="customer_key")
        .select(from_db.columns)
        .sort("customer_id", "category")
    )
    assert from_db.sort("customer_id", "category").equals(from_files)


def test_bad_output_extension_is_one_error_line(imported, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "--database",
                imported,
                "profile",
                "--as-of",
                AS_OF.isoformat(),
                "--out",
                str(tmp_path / "profile.txt"),
            ]
        )
        == 1
    )
    assert capsys.readouterr().err.startswith("error: ")


def test_profile_of_an_empty_database_says_so(sqlite_url, tmp_path, capsys):
    assert (
        main(
            [
                "-q",
                "--database",
                sqlite_url,
                "customers",
                "--as-of",
                AS_OF.isoformat(),
                "--out",
                str(tmp_path / "c.csv"),
            ]
        )
        == 1
    )
    assert "no purchase history" in capsys.readouterr().err
