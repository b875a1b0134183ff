"""The report (engine/report.py): hand-worked frames, and the sample chain's report end to end.

End to end: the committed sample chain (fixtures/sample), one batch, its fortnight shopped
through the real checkout (`engine.demo.simulate_period`, which plants a lift of 0.15 in the
purchase probability of offered products), then `write_report`: every section title is in the
HTML, the HTML fetches nothing, every PDF page has ink, the CSVs agree with the database.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest

from engine.report import (
    SECTIONS,
    batch_trend_frame,
    budget_frame,
    calibration_frame,
    campaign_frame,
    day_error_frame,
    funder_frame,
    lift_outcomes_frame,
    offers_frame,
    redemption_frame,
    write_report,
)

D = dt.date


# ------------------------------------------------------------------------------------------
# hand-worked frames
# ------------------------------------------------------------------------------------------


def _offers(rows: list[dict]) -> pl.DataFrame:
    base = {
        "offer_id": 0,
        "customer_key": 1,
        "batch_id": 1,
        "kind": "cycle",
        "category": "TEA",
        "deal_id": None,
        "funder": "retailer",
        "funded_share": 0.0,
        "discount_cents": 100,
        "max_uses": 1,
        "valid_from": D(2025, 3, 3),
        "valid_to": D(2025, 3, 16),
        "expected_on": None,
        "p_buy": None,
        "brand_cell": "national",
        "volume_tier": "high",
    }
    schema = {
        "offer_id": pl.Int64,
        "customer_key": pl.Int64,
        "batch_id": pl.Int64,
        "kind": pl.String,
        "category": pl.String,
        "deal_id": pl.String,
        "funder": pl.String,
        "funded_share": pl.Float64,
        "discount_cents": pl.Int64,
        "max_uses": pl.Int64,
        "valid_from": pl.Date,
        "valid_to": pl.Date,
        "expected_on": pl.Date,
        "p_buy": pl.Float64,
        "brand_cell": pl.String,
        "volume_tier": pl.String,
    }
    return pl.DataFrame([{**base, **r} for r in rows], schema=schema)


def _redemptions(rows: list[tuple[int, int, int]]) -> pl.DataFrame:
    return pl.DataFrame(
        rows, schema={"offer_id": pl.Int64, "discount_cents": pl.Int64, "voided": pl.Int64}, orient="row"
    )


def test_budget_lines_by_hand():
    deals = pl.DataFrame({"deal_id": ["D1", "D2"], "manufacturer_id": ["M1", "M2"], "budget_cents": [1000, None]})
    offers = _offers(
        [
            # D1: two expired offers of $1 (one used for 100), one still valid of 2 uses x 150, p_buy 0.5
            {"offer_id": 1, "deal_id": "D1", "funder": "M1", "funded_share": 1.0, "p_buy": 0.4},
            {"offer_id": 2, "deal_id": "D1", "funder": "M1", "funded_share": 1.0, "p_buy": None},
            {
                "offer_id": 3,
                "deal_id": "D1",
                "funder": "M1",
                "funded_share": 1.0,
                "discount_cents": 150,
                "max_uses": 2,
                "p_buy": 0.5,
                "valid_to": D(2025, 3, 30),
            },
            # retailer offer of 200 at half funded share? retailer pays all of a retailer offer
            {"offer_id": 4, "discount_cents": 200, "p_buy": 0.25},
            {"offer_id": 5, "deal_id": "D1", "funder": "M1", "funded_share": 0.75, "discount_cents": 80, "p_buy": 0.5},
        ]
    )
    red = _redemptions([(1, 100, 0), (3, 150, 0), (3, 150, 1), (4, 200, 0)])
    deal_offers = offers.filter(pl.col("deal_id").is_not_null())
    chain_offers = offers.filter(pl.col("offer_id").is_in([4, 5]))
    got = budget_frame(deals, deal_offers, chain_offers, red, D(2025, 3, 17), 5000)
    rows = {r["line"]: r for r in got.iter_rows(named=True)}
    assert got["line"].to_list() == ["chain", "D1", "D2"]
    # D1: committed 100 + 100 + 300 + 80 = 580; expected 40 + 100 (no p_buy: face) + 150 + 40 = 330;
    # redeemed 100 + 150 = 250 (the voided one not); released: offer 1 0, offer 2 100, offer 5 80
    # (offer 3 still valid) = 180; outstanding 580 - 250 - 180 = 150
    assert {
        k: rows["D1"][k]
        for k in (
            "budget_cents",
            "committed_cents",
            "expected_cents",
            "redeemed_cents",
            "released_cents",
            "outstanding_cents",
        )
    } == {
        "budget_cents": 1000,
        "committed_cents": 580,
        "expected_cents": 330,
        "redeemed_cents": 250,
        "released_cents": 180,
        "outstanding_cents": 150,
    }
    assert rows["D2"]["committed_cents"] == 0 and rows["D2"]["budget_cents"] is None
    # chain: offer 4 all retailer (200, expected 50, redeemed 200, released 0), offer 5 a quarter of 80 = 20
    # (expected 10, released 20)
    assert {
        k: rows["chain"][k]
        for k in ("budget_cents", "committed_cents", "expected_cents", "redeemed_cents", "released_cents")
    } == {
        "budget_cents": 5000,
        "committed_cents": 220,
        "expected_cents": 60,
        "redeemed_cents": 200,
        "released_cents": 20,
    }


def test_redemption_rate_and_funders_by_hand():
    offers = _offers(
        [
            {"offer_id": 1, "kind": "deal", "funder": "M1", "funded_share": 0.75, "discount_cents": 101},
            {"offer_id": 2, "kind": "deal", "funder": "M1", "funded_share": 0.75, "discount_cents": 101},
            {
                "offer_id": 3,
                "kind": "deal",
                "funder": "M1",
                "funded_share": 0.75,
                "brand_cell": "store",
                "volume_tier": "low",
                "discount_cents": 101,
            },
            {"offer_id": 4, "kind": "cycle", "brand_cell": None, "volume_tier": None},
        ]
    )
    red = _redemptions([(1, 101, 0), (2, 101, 1), (3, 101, 0), (4, 100, 0), (4, 100, 0)])
    rates = redemption_frame(offers, red, 0.95)
    deal = {r["cell"]: r for r in rates.filter(pl.col("kind") == "deal").iter_rows(named=True)}
    assert (deal["all"]["offers"], deal["all"]["redeemed_offers"]) == (3, 2)
    assert (deal["national:high"]["offers"], deal["national:high"]["redeemed_offers"]) == (2, 1)
    assert rates.filter(pl.col("kind") == "cycle")["cell"].to_list() == ["all", "none:none"]
    assert all(r["ci_low"] <= r["redemption_rate"] <= r["ci_high"] for r in rates.iter_rows(named=True))
    funders = funder_frame(offers, red)
    # M1: two redemptions of 101 at 0.75 -> 75.75 rounds half up to 76 each; retailer: 2 x 100
    assert funders.rows() == [("retailer", 2, 200, 0, 200), ("M1", 2, 202, 152, 50)]


def test_lift_outcomes_by_hand():
    members = pl.DataFrame({"customer_key": [1, 2, 3], "grp": ["treated", "treated", "holdout"]})
    offers = _offers(
        [
            {"offer_id": 1, "customer_key": 1, "category": "TEA"},
            {"offer_id": 2, "customer_key": 2, "funder": "M1", "category": "COFFEE"},
            {"offer_id": 3, "customer_key": 2, "funder": "retailer", "category": None},
        ]
    )
    lines = pl.DataFrame(
        {
            "customer_key": [1, 1, 3, 3, 2],
            "category": ["TEA", "COFFEE", "TEA", "TEA", "MILK"],
            "quantity": [1.0, 1.0, 2.0, -1.0, 1.0],
            "amount_cents": [300, 500, 600, -300, 99],
        }
    )
    got = lift_outcomes_frame(members, offers, lines).sort("funder", "grp")
    # retailer's categories {TEA}, M1's {COFFEE}; every member gets a row per funder
    assert got.height == 6
    tea = got.filter(pl.col("funder") == "retailer")
    assert sorted(tea.select("bought", "spend_cents").rows()) == [(False, 0.0), (True, 300.0), (True, 300.0)]
    coffee = got.filter(pl.col("funder") == "M1")
    assert sorted(coffee.select("bought", "spend_cents").rows()) == [(False, 0.0), (False, 0.0), (True, 500.0)]


def test_calibration_and_day_error_by_hand():
    offers = _offers(
        [
            {"offer_id": 1, "customer_key": 1, "p_buy": 0.05, "expected_on": D(2025, 3, 5)},
            {"offer_id": 2, "customer_key": 2, "p_buy": 0.08},
            {"offer_id": 3, "customer_key": 3, "p_buy": 0.95, "expected_on": D(2025, 3, 10)},
            {"offer_id": 4, "customer_key": 4, "p_buy": 1.0},
            {"offer_id": 5, "customer_key": 5, "p_buy": None},
        ]
    )
    lines = pl.DataFrame(
        {
            "customer_key": [1, 3, 3, 4, 2],
            "category": ["TEA", "TEA", "TEA", "TEA", "TEA"],
            "day": [D(2025, 3, 8), D(2025, 3, 9), D(2025, 3, 12), D(2025, 3, 20), D(2025, 3, 1)],
            "quantity": [1.0, 1.0, 1.0, 1.0, 1.0],
        }
    )
    cal = calibration_frame(offers, lines, 10, 0.95)
    # bin 0: offers 1 (bought on the 8th) and 2 (bought before the validity): 1 of 2;
    # bin 9: offer 3 bought, offer 4 bought after the validity (p_buy 1.0 goes to the top bin): 1 of 2
    assert cal.select("bin", "offers", "bought_share").rows() == [(0, 2, 0.5), (9, 2, 0.5)]
    assert cal["mean_p_buy"].to_list() == pytest.approx([0.065, 0.975])
    err = day_error_frame(offers, lines)
    assert err.rows() == [(-1, 1), (3, 1)]  # offer 3: first day the 9th vs 10th; offer 1: 8th vs 5th


def test_trend_offers_and_campaign_grid_by_hand():
    summaries = [
        {"period_start": "2025-03-03", "qualifying_customers": 100, "holdout_customers": 10, "lists": 90},
        {"period_start": "2025-03-17", "qualifying_customers": 120, "holdout_customers": 12, "lists": 108},
    ]
    trend = batch_trend_frame(summaries)
    assert trend.filter(pl.col("measure") == "lists")["customers"].to_list() == [90, 108]
    offers = _offers(
        [
            {"offer_id": 1, "customer_key": 1, "max_uses": 2, "funded_share": 0.5, "discount_cents": 75},
            {"offer_id": 2, "customer_key": 1},
        ]
    )
    got = offers_frame(offers).row(0, named=True)
    assert (got["offers"], got["households"], got["face_value_cents"], got["retailer_cost_cents"]) == (2, 1, 250, 175)
    grid = {c: dict.fromkeys(("low", "mid", "high"), 0) for c in ("national", "store", "switcher")}
    summary = {
        "campaigns": {
            "TEA to store": {
                "category": "TEA",
                "qualifying_customers": {**grid, "national": {"low": 5, "mid": 6, "high": 7}},
                "offers": grid,
                "discount_by_tier_cents": {"high": 60},
            }
        }
    }
    frame = campaign_frame(summary)
    assert frame.height == 9
    assert frame.filter(pl.col("brand_cell") == "national")["qualifying_customers"].to_list() == [5, 6, 7]
    assert frame.filter(pl.col("volume_tier") == "high")["depth_cents"].to_list() == [60, 60, 60]
    assert campaign_frame({"campaigns": {}}).height == 0


# ------------------------------------------------------------------------------------------
# the sample chain, end to end
# ------------------------------------------------------------------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PERIOD = D(2025, 6, 16)
SECRET = "test-secret"


def _import_sample(url: str, directory: Path) -> None:
    """The sample chain, only its purchases before the period (the simulation shops the period)."""
    from engine.ingest import import_files

    before = directory / "transactions-before.csv"
    pl.read_csv(SAMPLE / "transactions" / "part-00000.csv", infer_schema=False).filter(
        pl.col("timestamp").str.slice(0, 10) < PERIOD.isoformat()
    ).write_csv(before)
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [before]),
    ]:
        import_files(url, kind, paths)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def reported(request, tmp_path_factory) -> dict:
    """The sample chain: a batch, before its fortnight (report 'before'), then shopped (report 'after')."""
    from engine.batch import run_batch
    from engine.config import BatchSettings, Settings
    from engine.demo import simulate_period
    from tests.conftest import fresh_database

    tmp = tmp_path_factory.mktemp(f"report-{request.param}")
    url = fresh_database(request, tmp, request.param, name="chain.db")
    # only purchases before the period: the batch's fortnight is then shopped by the simulation
    _import_sample(url, tmp)
    settings = Settings(
        database_url=url, secret=SECRET, batch=dataclasses.replace(BatchSettings(), out_dir=str(tmp / "batches"))
    )
    summary = run_batch(settings, PERIOD)
    before = write_report(settings, tmp / "before")
    shopped = simulate_period(settings, summary["batch_id"], seed=1)
    after = write_report(settings, tmp / "after")
    return {
        "url": url,
        "settings": settings,
        "summary": summary,
        "before": before,
        "after": after,
        "shopped": shopped,
        "dir": tmp,
    }


def test_report_has_every_section_and_fetches_nothing(reported):
    text = Path(reported["after"]["html"]).read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert text.count("<svg") >= len(SECTIONS)
    # self-contained: no script, no external reference of any kind
    assert "<script" not in text.lower()
    assert not re.search(r"""(src|href)\s*=\s*["']?(https?:|//)""", text)
    assert "No data" not in text, "the shopped period fills every chart"


def test_before_the_period_is_shopped_the_results_say_so(reported):
    before = reported["before"]
    assert before["results_batch_id"] is None
    text = Path(before["html"]).read_text(encoding="utf-8")
    for title in SECTIONS:
        assert f"<h2>{title}</h2>" in text
    assert text.count("No data: no results batch") == 5  # redemption, funders, lift, calibration, day error


def test_pdf_pages_are_not_blank(reported):
    import pypdfium2 as pdfium

    pdf = pdfium.PdfDocument(reported["after"]["pdf"])
    assert len(pdf) == len(SECTIONS) == reported["after"]["pages"]
    for i in range(len(pdf)):
        image = pdf[i].render(scale=0.5).to_pil().convert("L")
        histogram = image.histogram()
        dark = sum(histogram[:200]) / sum(histogram)
        assert dark > 0.01, f"page {i + 1} is blank"
        text = pdf[i].get_textpage().get_text_range()
        assert SECTIONS[i] in text


def test_tables_agree_with_the_database(reported):
    from engine.db import bulk_session

    out = Path(reported["after"]["html"]).parent
    with bulk_session(reported["url"], write=False) as db:
        used = db.read("SELECT COUNT(*) AS n, SUM(discount_cents) AS d FROM redemptions WHERE voided = 0")
        offers = db.read("SELECT COUNT(*) AS n FROM offers")
    funders = pl.read_csv(out / "discount_by_funder.csv")
    assert funders["redemptions"].sum() == int(used["n"][0]) == reported["shopped"]["redemptions"]
    assert funders["discount_cents"].sum() == int(used["d"][0])
    assert (funders["funder_cents"] + funders["retailer_cents"] == funders["discount_cents"]).all()
    by_kind = pl.read_csv(out / "offers_by_kind_cell.csv")
    assert by_kind["offers"].sum() == int(offers["n"][0]) == reported["summary"]["offers"]
    rates = pl.read_csv(out / "redemption_rate.csv").filter(pl.col("cell") == "all")
    assert rates["offers"].sum() == int(offers["n"][0])
    budget = pl.read_csv(out / "budget_use.csv")
    # the fortnight is over: every offer has expired, nothing is outstanding, and value was released
    assert (budget["outstanding_cents"] == 0).all()
    assert budget["released_cents"].sum() > 0
    assert (budget["redeemed_cents"] + budget["released_cents"] == budget["committed_cents"]).all()
    # what the batch charged each line (expected redemptions + margin), as its summary says
    deals = reported["summary"]["deal_budgets"]
    charged = dict(budget.select("line", "charged_cents").iter_rows())
    assert charged["chain"] == reported["summary"]["chain_budget"]["committed_cents"]
    assert {d: charged[d] for d in deals} == {d: v["this_batch_cents"] for d, v in deals.items()}
    assert (budget["charged_cents"] <= budget["committed_cents"]).all()  # never above face value


def test_charged_frame_sums_the_batches_and_skips_summaries_without_the_model():
    from engine.report import charged_frame

    old = {"deal_budgets": {"D1": {"this_batch_cents": 900}}, "chain_budget": {"retailer_cost_cents": 5}}
    new = {
        "deal_budgets": {
            "D1": {"this_batch_cents": 300, "expected_cents": 250},
            "D2": {"this_batch_cents": 0, "expected_cents": 0},
        },
        "chain_budget": {"committed_cents": 4200, "expected_cents": 4000},
    }
    assert dict(charged_frame([old, new, new]).iter_rows()) == {"D1": 600, "D2": 0, "chain": 4200}
    assert charged_frame([old]).height == 0


def test_planted_lift_is_seen_for_the_retailer(reported):
    lift = pl.read_csv(Path(reported["after"]["html"]).parent / "lift.csv")
    retailer = lift.filter(pl.col("funder") == "retailer").row(0, named=True)
    # simulate_period: offered products bought with 0.35 + 0.15 by the treated, 0.35 by the hold-out
    assert retailer["rate_ci_low"] <= retailer["rate_lift"] <= retailer["rate_ci_high"]
    assert retailer["rate_lift"] > 0 and retailer["spend_cents_lift"] > 0
    assert retailer["holdout_households"] == reported["summary"]["holdout_customers"]


def test_cli_writes_the_report(reported, capsys):
    from engine.cli import main

    out = reported["dir"] / "cli"
    assert main(["--database", reported["url"], "-q", "report", "--out", str(out)]) == 0
    assert (out / "report.html").exists() and (out / "report.pdf").exists()
    assert str(out / "report.html") in capsys.readouterr().out
    assert main(["--database", reported["url"], "-q", "report", "--batch", "999", "--out", str(out)]) == 1
    assert "batch 999" in capsys.readouterr().err
