"""The batch on a real SQLite database holding the committed sample chain (fixtures/sample).

Claims of issue 4: only qualifying customers get lists, the hold-out gets none, both stable;
cycle offers fall on categories bought in the period (share reported against a most-frequent
baseline); campaign depth grows with volume and store-loyal buyers get none; budgets hold;
re-running changes nothing; a killed batch completes on re-run; the summary reconciles with
the offers table to the cent.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from pathlib import Path

import polars as pl
import pytest
import sqlalchemy as sa

from engine import batch as batch_module
from engine.batch import run_batch as _run_batch
from engine.codes import parse_code
from engine.config import BatchSettings, Settings
from engine.db import Gateway, bulk_session, connect, init_schema

SAMPLE = Path(__file__).resolve().parents[2] / "fixtures" / "sample"
PERIOD = dt.date(2025, 6, 16)  # 3 weeks of real purchases left after it in the sample
SECRET = "test-secret"


def PROFILER(history, products, customers, settings, as_of, window_days):  # noqa: N802, ANN001
    """The cycles package's profiles (engine.profiles), as the batch runs by default."""
    from engine.profiles import profile_frames

    return profile_frames(history, products, customers, settings, as_of, window_days)


def BASELINE(history, products, customers, settings, as_of, window_days):  # noqa: N802, ANN001
    """The most-frequent baseline of coupons.baseline."""
    from coupons.baseline import baseline_profile, baseline_value

    return (
        baseline_profile(history, products, as_of, window_days, settings.cycles),
        baseline_value(history, customers, as_of, settings.value, settings.batch.qualifying_weeks),
    )


def run_batch(settings, period_start=None, out_dir=None, progress=None):  # noqa: ANN001
    return _run_batch(settings, period_start, out_dir, progress, profiler=PROFILER)


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """The sample chain imported once into a SQLite file; tests copy it."""
    from engine.ingest import import_files

    path = tmp_path_factory.mktemp("chain") / "chain.db"
    url = f"sqlite:///{path}"
    engine = connect(url)
    init_schema(engine)
    engine.dispose()
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(url, kind, paths)
    return path


def chain(template: Path, tmp_path: Path, name: str = "lw.db") -> str:
    path = tmp_path / name
    shutil.copy(template, path)
    if template.with_suffix(".history").is_dir():  # the Parquet history beside it
        shutil.copytree(template.with_suffix(".history"), path.with_suffix(".history"))
    return f"sqlite:///{path}"


def settings_for(url: str, **batch) -> Settings:
    return Settings(database_url=url, secret=SECRET, batch=dataclasses.replace(BatchSettings(), **batch))


def read(url: str, sql: str) -> pl.DataFrame:
    with bulk_session(url, write=False) as db:
        return db.read(sql)


def history(url: str, end: dt.date, start: dt.date) -> pl.DataFrame:
    """Card holders' lines with day in [start, end): history's own read (Parquet parts and checkout)."""
    with Gateway(url) as db:
        return db.history(end, start)


def offers_of(url: str, period: dt.date = PERIOD) -> pl.DataFrame:
    return read(
        url,
        "SELECT l.customer_key, l.code, o.* FROM offers o JOIN lists l ON l.list_id = o.list_id "
        f"JOIN batches b ON b.batch_id = l.batch_id WHERE b.period_start = '{period}' "
        "ORDER BY l.customer_key, o.line_no",
    )


@pytest.fixture(scope="module")
def done(template, tmp_path_factory):
    """(url, summary, out_dir) of one batch of PERIOD on the sample chain."""
    tmp = tmp_path_factory.mktemp("done")
    url = chain(template, tmp)
    summary = run_batch(settings_for(url), PERIOD, out_dir=tmp / "batches")
    return url, summary, tmp / "batches"


def test_only_qualifying_customers_get_lists_and_the_holdout_none(done):
    url, summary, _ = done
    start = PERIOD - dt.timedelta(weeks=8)
    cards = read(url, "SELECT customer_key FROM customers WHERE card_number IS NOT NULL AND opted_out = 0")
    spend = (
        history(url, PERIOD, start)
        .join(cards, on="customer_key")
        .group_by("customer_key")
        .agg(pl.col("amount_cents").sum().alias("s"))
    )
    qualifying = set(spend.filter(pl.col("s") // 8 >= 2500)["customer_key"].to_list())
    members = read(url, "SELECT customer_key, grp FROM batch_members")
    lists = set(read(url, "SELECT customer_key FROM lists")["customer_key"].to_list())
    holdout = set(members.filter(pl.col("grp") == "holdout")["customer_key"].to_list())
    assert set(members["customer_key"].to_list()) == qualifying
    assert lists == qualifying - holdout and not lists & holdout
    assert 0 < len(holdout) < 0.15 * len(qualifying)
    assert summary["qualifying_customers"] == len(qualifying) and summary["lists"] == len(lists)


def test_codes_name_their_lists_under_the_secret(done):
    url, _, _ = done
    lists = read(url, "SELECT list_id, code FROM lists")
    assert all(parse_code(c, SECRET.encode()) == i for i, c in lists.iter_rows())


def test_rerun_changes_nothing_and_a_fresh_database_draws_the_same_holdout(done, template, tmp_path):
    url, summary, out = done
    before = offers_of(url)
    members = read(url, "SELECT customer_key, grp FROM batch_members ORDER BY customer_key")
    again = run_batch(settings_for(url), PERIOD, out_dir=out)
    assert again == summary
    assert offers_of(url).equals(before)
    other = chain(template, tmp_path)
    run_batch(settings_for(other), PERIOD, out_dir=tmp_path / "b")
    assert read(other, "SELECT customer_key, grp FROM batch_members ORDER BY customer_key").equals(members)
    cols = ["customer_key", "line_no", "kind", "product_key", "discount_cents", "max_uses", "deal_id"]
    assert offers_of(other).select(cols).equals(before.select(cols))


def test_each_list_records_its_customers_home_store(done):
    url, _, _ = done
    baskets = read(url, "SELECT customer_key, store_id FROM baskets WHERE customer_key IS NOT NULL")
    counts: dict[int, dict[str, int]] = {}
    for key, store in baskets.iter_rows():
        counts.setdefault(key, {})[store] = counts.setdefault(key, {}).get(store, 0) + 1
    lists = read(url, "SELECT customer_key, store_id FROM lists")
    assert lists.height > 0 and lists["store_id"].null_count() == 0
    assert len({s for _, s in lists.iter_rows()}) > 1  # the sample has several stores
    for key, store in lists.iter_rows():  # most baskets, a tie to the lowest store id
        assert store == min(counts[key], key=lambda s: (-counts[key][s], s))


def test_the_home_store_has_most_baskets_and_a_tie_goes_to_the_lowest_store_id(db_url):
    from engine.batch import home_stores

    engine = connect(db_url)
    md = sa.MetaData()
    md.reflect(engine)
    t = md.tables
    plan = [(1, "S2"), (1, "S2"), (1, "S1"), (1, "S2"), (2, "S2"), (2, "S1"), (2, "S1"), (2, "S2"), (None, "S2")]
    with engine.begin() as conn:
        conn.execute(t["stores"].insert(), [{"store_id": "S1"}, {"store_id": "S2"}])
        conn.execute(t["customers"].insert(), [{"customer_key": k, "customer_id": f"C{k}"} for k in (1, 2, 3)])
        conn.execute(
            t["baskets"].insert(),
            [
                {
                    "basket_key": i,
                    "store_id": store,
                    "basket_id": f"B{i}",
                    "customer_key": key,
                    "ts": dt.datetime(2025, 3, 1 + i, 9),
                    "day": dt.date(2025, 3, 1 + i),
                }
                for i, (key, store) in enumerate(plan, start=1)
            ],
        )
    engine.dispose()
    with bulk_session(db_url, write=False) as db:
        everyone = home_stores(db)
        one = home_stores(db, "SELECT customer_key FROM customers WHERE customer_id = 'C1'")
        in_pairs = home_stores(db, chunk_rows=2)  # SQLite: counted 2 baskets at a time, summed as it goes
    # 1: three baskets in S2, one in S1; 2: two each, S1 first; 3: no basket, no row
    assert everyone.sort("customer_key").rows() == [(1, "S2"), (2, "S1")]
    assert one.rows() == [(1, "S2")]
    assert in_pairs.sort("customer_key").rows() == [(1, "S2"), (2, "S1")]


def _cycle_hit_shares(url: str) -> tuple[float, float, int]:
    """(share of cycle offers bought in the period, share on a planted pair, offers)."""
    end = PERIOD + dt.timedelta(days=14)
    bought = (
        history(url, end, PERIOD)
        .filter(pl.col("quantity") > 0)
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(True).alias("hit"))
    )
    keys = read(url, "SELECT customer_key, customer_id FROM customers")
    planted = (
        pl.read_parquet(SAMPLE / "truth" / "pairs.parquet")
        .select("customer_id", "category")
        .join(keys, on="customer_id")
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(True).alias("planted"))
    )
    cycle = offers_of(url).filter(pl.col("kind") == "cycle").select("customer_key", "category")
    rows = cycle.join(bought, on=["customer_key", "category"], how="left").join(
        planted, on=["customer_key", "category"], how="left"
    )
    return rows["hit"].fill_null(False).mean(), rows["planted"].fill_null(False).mean(), rows.height


def test_cycle_offers_fall_on_categories_bought_in_the_period(done, template, tmp_path, capsys):
    url, _, _ = done
    share, planted, n = _cycle_hit_shares(url)
    base_url = chain(template, tmp_path)
    _run_batch(settings_for(base_url), PERIOD, tmp_path / "b", profiler=BASELINE)
    base_share, base_planted, base_n = _cycle_hit_shares(base_url)
    with capsys.disabled():
        print(
            f"\ncycle offers bought in the period: {share:.1%} of {n} (most-frequent baseline {base_share:.1%} "
            f"of {base_n}); on planted pairs: {planted:.1%} (baseline {base_planted:.1%})"
        )
    assert share > 0.5
    # Measured, not asserted: on the 200-customer sample the cycles profile (56.8 % of 1,795 offers)
    # does not beat the baseline (59.8 % of 1,473); the baseline makes fewer, safer offers. With the
    # ranker more pairs pass min_p_buy (its isotonic map, fitted on one fortnight of 200 households,
    # has a block at p ~0.44 bought 39 % of the time here); at equal numbers of pairs the ranker's
    # and the renewal model's top p_buy_in_window are bought equally often (README).
    assert base_share > 0
    assert planted > 0.95


def test_conversion_depth_grows_with_volume_and_store_loyal_get_none(done):
    url, summary, _ = done
    conv = offers_of(url).filter(pl.col("kind") == "conversion", pl.col("category") == "ANALGESICS")
    assert conv.height > 0
    assert not (conv["brand_cell"] == "store").any()
    depth = read(url, "SELECT product_key, regular_price_cents FROM products")
    conv = conv.join(depth.cast(pl.Int64), on="product_key").with_columns(
        (pl.col("discount_cents") / pl.col("regular_price_cents")).alias("depth")
    )
    by_tier = dict(conv.group_by("volume_tier").agg(pl.col("depth").mean()).iter_rows())
    assert by_tier["high"] > by_tier.get("mid", 0) > by_tier.get("low", 0) > 0
    assert by_tier["high"] == pytest.approx(0.40, abs=0.01)
    grid = summary["campaigns"]["ANALGESICS to store"]
    assert sum(grid["offers"]["store"].values()) == 0
    assert sum(sum(v.values()) for v in grid["offers"].values()) == conv.height


def test_summary_reconciles_with_the_offers_table_to_the_cent(done):
    url, summary, out = done
    o = offers_of(url).with_columns(pl.col("funded_share").cast(pl.Float64))
    face = (o["discount_cents"] * o["max_uses"]).sum()
    assert summary["offers"] == o.height and summary["face_value_cents"] == face
    assert sum(summary["discount_cost_by_funder_cents"].values()) == face
    assert summary["offers_by_kind"] == {k: int((o["kind"] == k).sum()) for k in summary["offers_by_kind"]}
    face_ = (pl.col("discount_cents") * pl.col("max_uses")).cast(pl.Float64)
    for deal, d in summary["deal_budgets"].items():
        mine = o.filter(pl.col("deal_id") == deal)
        used = mine.select(face_.sum()).item()
        # no redemption history, no model of use: the charge is the face value (coupons.budgets)
        assert d["face_value_cents"] == d["expected_cents"] == d["this_batch_cents"] == (used or 0)
        assert d["offers"] == mine.height
        assert d["budget_cents"] is None or d["committed_before_cents"] + d["this_batch_cents"] <= d["budget_cents"]
    import json

    assert json.loads((out / PERIOD.isoformat() / "summary.json").read_text()) == summary


@pytest.mark.parametrize(
    "chain_budget, caps, deal_budget", [(5_000, {"VIP": 300, "major": 200}, 500), (40_000, {"ordinary": 0}, 0)]
)
def test_budgets_hold_in_the_database_under_tight_settings(template, tmp_path, chain_budget, caps, deal_budget):
    url = chain(template, tmp_path)
    with bulk_session(url) as db:
        db.execute(f"UPDATE deals SET budget_cents = {deal_budget}")
    s = settings_for(url, chain_budget_cents=chain_budget)
    s = dataclasses.replace(s, offers=dataclasses.replace(s.offers, list_cap_cents={**s.offers.list_cap_cents, **caps}))
    summary = run_batch(s, PERIOD, out_dir=tmp_path / "b")
    o = offers_of(url).with_columns(pl.col("funded_share").cast(pl.Float64))
    from coupons.budgets import budget_charges

    # the chain budget is charged the retailer's expected cost plus margin (coupons.budgets), not face value
    chain_charge = budget_charges(o, retailer=True)
    assert chain_charge["committed_cents"].item() == summary["chain_budget"]["committed_cents"] <= chain_budget
    assert summary["chain_budget"]["expected_cents"] <= summary["chain_budget"]["committed_cents"]
    charged = budget_charges(o.filter(pl.col("deal_id").is_not_null()), ["deal_id"])
    assert (charged["committed_cents"] <= deal_budget).all()
    assert all(d["this_batch_cents"] <= deal_budget for d in summary["deal_budgets"].values())
    # a second period: the first period's lists expired with nothing redeemed, so all they held returns
    second = run_batch(s, PERIOD + dt.timedelta(days=14), out_dir=tmp_path / "b")
    for deal, d in second["deal_budgets"].items():
        first = summary["deal_budgets"][deal]
        assert d["committed_before_cents"] == 0 and d["released_before_cents"] == first["face_value_cents"]
        assert d["this_batch_cents"] <= deal_budget


def test_a_batch_killed_mid_write_completes_on_rerun(template, tmp_path, monkeypatch):
    clean = chain(template, tmp_path, "clean.db")
    run_batch(settings_for(clean), PERIOD, out_dir=tmp_path / "a")
    url = chain(template, tmp_path, "killed.db")
    real_make_code = batch_module.make_code

    def killed(*_args, **_kwargs):
        raise KeyboardInterrupt  # as a kill in the middle of the write transaction

    monkeypatch.setattr(batch_module, "make_code", killed)
    with pytest.raises(KeyboardInterrupt):
        run_batch(settings_for(url), PERIOD, out_dir=tmp_path / "b")
    state = read(url, "SELECT status FROM batches")["status"].to_list()
    assert state == ["failed"]
    assert read(url, "SELECT COUNT(*) AS n FROM lists")["n"][0] == 0
    monkeypatch.setattr(batch_module, "make_code", real_make_code)
    summary = run_batch(settings_for(url), PERIOD, out_dir=tmp_path / "b")
    assert read(url, "SELECT status FROM batches")["status"].to_list() == ["done"]
    cols = ["customer_key", "line_no", "kind", "product_key", "discount_cents", "max_uses", "deal_id", "reason"]
    assert offers_of(url).select(cols).equals(offers_of(clean).select(cols))
    assert summary["lists"] == read(url, "SELECT COUNT(*) AS n FROM lists")["n"][0]


def test_a_batch_left_running_is_redone(template, tmp_path):
    url = chain(template, tmp_path)
    engine = connect(url)
    from engine.batch import _start_batch

    _start_batch(engine, settings_for(url), PERIOD, PERIOD + dt.timedelta(days=14))  # killed right after
    engine.dispose()
    summary = run_batch(settings_for(url), PERIOD, out_dir=tmp_path / "b")
    assert summary["batch_id"] == 1 and summary["lists"] > 0
    assert read(url, "SELECT status FROM batches")["status"].to_list() == ["done"]


def test_default_period_follows_the_last_batch(done, tmp_path):
    url, _, _ = done
    nxt = run_batch(settings_for(url), None, out_dir=tmp_path / "b")
    assert nxt["period_start"] == (PERIOD + dt.timedelta(days=14)).isoformat()


def test_cli_batch_run_prints_the_summary(template, tmp_path, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", SECRET)
    url = chain(template, tmp_path)
    assert main(["-q", "--database", url, "batch", "run", "--period-start", str(PERIOD), "--no-print"]) == 0
    out = capsys.readouterr().out
    summary = json.loads((tmp_path / "batches" / str(PERIOD) / "summary.json").read_text())
    # short: headline, kinds with the funnel's drops, at most five budget lines, where the files are
    assert f"qualifying customers {summary['qualifying_customers']:,}" in out
    assert "offers by kind" in out and "candidates dropped:" in out
    budget_rows = [line for line in out.splitlines() if line.startswith("  ") and "expected $" in line]
    assert 1 <= len(budget_rows) <= 5 and len(out.splitlines()) <= 15
    largest = max(summary["deal_budgets"].items(), key=lambda kv: kv[1]["this_batch_cents"])
    assert any(line.split()[0] in (largest[0], "chain") for line in budget_rows[:1])
    assert f"{Path('batches') / str(PERIOD)}/" in out
    report = tmp_path / "batches" / str(PERIOD) / "report"
    assert "report: batches/2025-06-16/report/report.html" in out and (report / "report.pdf").stat().st_size > 0
    fresh = chain(template, tmp_path, "fresh.db")
    assert main(["-q", "--database", fresh, "batch", "print"]) == 1
    assert "no finished batch" in capsys.readouterr().err


def test_cli_batch_run_json_prints_one_json_document_only(template, tmp_path, capsys, monkeypatch):
    from engine.cli import main

    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LISTWISE_SECRET", SECRET)
    url = chain(template, tmp_path)
    # with printing, whose own report line must not reach stdout
    assert main(["--database", url, "batch", "run", "--period-start", str(PERIOD), "--json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == json.loads((tmp_path / "batches" / str(PERIOD) / "summary.json").read_text())
    assert printed["deal_budgets"] and "budget_model" in printed
    # nothing to do is JSON too
    from engine.errors import NothingToDo

    def nothing(*args, **kwargs):  # noqa: ANN002, ANN003
        raise NothingToDo("no purchase was recorded since the last batch")

    monkeypatch.setattr(batch_module, "run_batch", nothing)
    assert main(["-q", "--database", url, "batch", "run", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["status"] == "nothing to do"


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def unpriced(request, tmp_path):
    """URL of the sample chain imported with a catalogue without regular_price and unit_cost."""
    from engine.ingest import import_files
    from tests.conftest import fresh_database

    url = fresh_database(request, tmp_path, request.param)
    products = tmp_path / "products.csv"
    pl.read_csv(SAMPLE / "products.csv", infer_schema=False).drop("regular_price", "unit_cost").write_csv(products)
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [products]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(url, kind, paths)
    return url


def test_a_catalogue_without_prices_or_costs_still_makes_cycle_offers_and_says_what_it_dropped(unpriced, tmp_path):
    import statistics

    from engine.batch import format_summary

    url = unpriced
    assert read(url, "SELECT COUNT(*) AS n FROM products WHERE regular_price_cents IS NOT NULL")["n"][0] == 0
    s = settings_for(url)
    summary = run_batch(s, PERIOD, out_dir=tmp_path / "b")
    n_products = read(url, "SELECT COUNT(*) AS n FROM products")["n"][0]
    assert summary["prices"]["catalogue"] == 0 and summary["prices"]["history"] > 0
    assert sum(summary["prices"].values()) == n_products
    o = offers_of(url)
    with_cycle = o.filter(pl.col("kind") == "cycle")["customer_key"].n_unique()
    assert summary["offers_by_kind"]["cycle"] > 0 and with_cycle >= 0.9 * summary["lists"]
    # each cycle offer is 10 % of the median per-unit price (paid + discount) of the product's lines
    # in the 91 days before the period, worked out here line by line
    start = PERIOD - dt.timedelta(days=s.offers.price_lookback_days)
    lines = (
        history(url, PERIOD, start)
        .filter(pl.col("quantity") > 0)
        .select("product_key", "quantity", "amount_cents", "discount_cents")
    )
    unit: dict[int, list[float]] = {}
    for key, qty, amount, discount in lines.iter_rows():
        price = (int(amount) + int(discount or 0)) / float(qty)
        if price > 0:
            unit.setdefault(int(key), []).append(price)
    for row in o.filter(pl.col("kind") == "cycle").head(200).iter_rows(named=True):
        median = statistics.median(unit[int(row["product_key"])])
        assert abs(int(row["discount_cents"]) - round(median) * s.offers.cycle_depth) <= 0.5  # either rounding
    # the funnel: every kind reconciles, what was selected is what the offers table holds
    funnel = summary["offer_funnel"]
    for kind, f in funnel.items():
        assert f["candidates"] == f["selected"] + sum(f["dropped"].values()), kind
        assert f["selected"] == int((o["kind"] == kind).sum()), kind
    assert funnel["cycle"]["dropped"]["below probability floor"] > 0
    for name, c in summary["campaigns"].items():
        total = sum(sum(row.values()) for row in c["candidates"].values())
        assert total == sum(sum(row.values()) for row in c["offers"].values()) + sum(c["dropped"].values()), name
    text = format_summary(summary)
    assert "candidates dropped" in text and "below probability floor" in text and "from history" in text


def test_a_needs_setting_out_of_range_is_a_config_error_not_a_name_error():
    from engine.config import PrintSettings
    from engine.errors import ConfigError

    settings = Settings(database_url="sqlite://", printing=PrintSettings(needs_min_p_buy=2.0))
    with pytest.raises(ConfigError, match=r"printing: needs min_p_buy must be in \[0, 1\], got 2.0"):
        batch_module._needs(pl.DataFrame(), pl.Series([1]), PERIOD, PERIOD + dt.timedelta(days=14), settings)


def test_pair_counts_folded_chunk_by_chunk_are_the_counts_of_all_pairs():
    import numpy as np

    from engine.batch import _fold_counts

    rng = np.random.default_rng(3)
    pairs = pl.DataFrame(
        {"customer_key": rng.integers(0, 50, 5_000), "store_id": rng.choice(["S1", "S2", "S3"], 5_000)}
    )
    whole = pairs.group_by("customer_key", "store_id").len("n").cast({"n": pl.Int64})
    folded = _fold_counts(iter(pairs.iter_slices(97)), every=3)  # 52 chunks: folded 17 times on the way
    key = ["customer_key", "store_id"]
    assert folded.sort(key).equals(whole.sort(key))


def test_take_gathers_column_by_column_and_releases_the_source():
    import numpy as np

    from engine.batch import _take

    rng = np.random.default_rng(5)
    frame = pl.DataFrame(
        {
            "customer_key": rng.integers(0, 100, 1_000),
            "kind": rng.choice(["cycle", "deal", None], 1_000),
            "p_buy": rng.random(1_000),
        }
    )
    rows = pl.Series(rng.permutation(1_000)[:400], dtype=pl.UInt32)
    expected = frame[rows]
    taken = _take(frame, rows)
    assert taken.equals(expected) and taken.schema == expected.schema
    assert frame.width == 0  # every source column was handed over, none kept alive beside the copy
