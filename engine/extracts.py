"""Manufacturer extracts and settlement: what a funding manufacturer receives, anonymised.

`write_extract` (``listwise extract``) writes, for one manufacturer and one period
[date_from, date_to] (both days included), Parquet and CSV copies of:

* ``offer_results`` — per funded offer (its deal, or ``<kind>:<category>`` for a funded
  campaign) and per cell (``brand_cell:volume_tier`` recorded on the offer, plus the offer's
  ``all`` row): households and lists carrying it, offer lines, redemptions, redeeming
  households, redemption rate (redeeming households / households), discount paid and the
  manufacturer's funded part.
* ``lift`` — per batch and category of the manufacturer's funded offers: the randomised
  hold-out comparison. Every qualifying household of a batch is treated (has a list) or held
  out (has none) at random, so the difference of the two groups over the batch period is the
  programme's effect on the category (intention to treat: treated households without this
  manufacturer's offer count too). Category purchase rate (share of households buying it) with
  a Wald interval for a difference of proportions, and units per household with a Welch
  (normal) interval; `ExtractSettings.confidence` sets the level.
* ``category_cells`` and ``category_weekly`` — for the manufacturer's categories, the buyers
  in the period by cell (brand loyalty x volume, from their own purchases in the period, with
  the thresholds of `CycleSettings`): households, unit shares of national brands, store brand
  and this manufacturer, repeat rate, median cycle length; the weekly table week by week
  (weeks start on Monday) with the repeat rate of a week's buyers who bought in an earlier week.
* ``household_panel`` (only with ``panel=True``): one row per household and week with a
  pseudonym (`engine.anonymise.pseudonyms`), units and spend; opted-out customers left out.

and ``manifest.json``: files, row counts, sha256, period, the minimum group size, the rows
withheld per table and a format version.

Never written: names, addresses, card numbers, e-mails, customer ids or keys, basket ids,
timestamps (days and weeks only). Every aggregate row describes at least
`ExtractSettings.min_group` households (never below 10), and complementary suppression keeps a
withheld row from being recomputed from its set's total (`engine.anonymise.suppress`). The
panel is per household by nature; it carries only the pseudonym.

`write_settlement` (``listwise settle``) lists every redemption in the period of an offer the
manufacturer funds, voided redemptions excluded: ``settlement.csv`` (one line per
redemption), ``settlement_totals.csv`` (per deal and a TOTAL line), ``settlement.pdf`` (a
one-page statement) and ``settlement.json``. The amount due on a line is
``round_half_up(discount_cents x funded_share)`` with the share taken to millionths, in
integer arithmetic; totals are sums of the lines, so they agree to the cent.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import statistics
import time
from pathlib import Path
from typing import Callable, Iterator

import polars as pl
import sqlalchemy as sa

from engine.anonymise import effective_min_group, pseudonym_key, pseudonyms, suppress
from engine.config import Settings, resolve_secret
from engine.db import allocate_keys, bulk_session, connect, is_sqlite, require_schema, utc_now
from engine.errors import InputError, StateError

__all__ = ["write_extract", "write_settlement", "demo_extracts", "holdout_lift", "offer_results",
           "category_insight", "household_panel", "settlement_lines", "amount_due", "FORMAT_VERSION"]

FORMAT_VERSION = 1
Progress = Callable[[str, int, int], None] | None

_OFFER_SCHEMA = {"offer_id": pl.Int64, "list_id": pl.Int64, "customer_key": pl.Int64, "batch_id": pl.Int64,
                 "kind": pl.String, "category": pl.String, "deal_id": pl.String, "funded_share": pl.Float64,
                 "discount_cents": pl.Int64, "valid_from": pl.Date, "valid_to": pl.Date,
                 "brand_cell": pl.String, "volume_tier": pl.String}
_REDEMPTION_SCHEMA = {"redemption_id": pl.Int64, "offer_id": pl.Int64, "deal_id": pl.String, "kind": pl.String,
                      "category": pl.String, "sku": pl.String, "redeemed_on": pl.Date, "store_id": pl.String,
                      "discount_cents": pl.Int64, "funded_share": pl.Float64, "voided": pl.Int64}
_MEMBER_SCHEMA = {"batch_id": pl.Int64, "customer_key": pl.Int64, "grp": pl.String,
                  "period_start": pl.Date, "period_end": pl.Date}


# ----------------------------------------------------------------------------------------------
# pure computations
# ----------------------------------------------------------------------------------------------

def _offer_label() -> pl.Expr:
    return pl.coalesce(pl.col("deal_id"), pl.col("kind") + pl.lit(":") + pl.col("category").fill_null("basket"))


def amount_due() -> pl.Expr:
    """Funded part of a redemption: round half up of discount_cents x funded_share, exactly.

    The share is taken to millionths and the product computed in integers, so the same
    redemption always gives the same cent on every machine.
    """
    ppm = (pl.col("funded_share") * 1_000_000).round(0).cast(pl.Int64)
    return ((pl.col("discount_cents") * ppm + 500_000) // 1_000_000).alias("amount_due_cents")


def offer_results(offers: pl.DataFrame, redemptions: pl.DataFrame, min_group: int) -> tuple[pl.DataFrame, int]:
    """Per funded offer x cell: reach and redemptions, small groups withheld.

    Parameters
    ----------
    offers
        Columns of `_OFFER_SCHEMA`: the manufacturer's offers valid in the period.
    redemptions
        Columns of `_REDEMPTION_SCHEMA`, not voided, in the period.

    Returns
    -------
    (polars.DataFrame, int)
        offer, kind, category, cell ('all' or 'brand_cell:volume_tier'), households, lists,
        offer_lines, redemptions, redeeming_households, redemption_rate, discount_paid_cents,
        funded_cents; sorted by offer, category, cell. And the number of rows withheld.
    """
    lines = offers.with_columns(
        _offer_label().alias("offer"),
        (pl.col("brand_cell").fill_null("unknown") + ":" + pl.col("volume_tier").fill_null("unknown")).alias("cell"))
    used = (redemptions.with_columns(amount_due())
            .group_by("offer_id").agg(uses=pl.len(), paid=pl.col("discount_cents").sum(),
                                      funded=pl.col("amount_due_cents").sum()))
    lines = lines.join(used, on="offer_id", how="left").with_columns(
        pl.col("uses", "paid", "funded").fill_null(0))
    metrics = dict(
        households=pl.col("customer_key").n_unique(), lists=pl.col("list_id").n_unique(), offer_lines=pl.len(),
        redemptions=pl.col("uses").sum(),
        redeeming_households=pl.col("customer_key").filter(pl.col("uses") > 0).n_unique(),
        discount_paid_cents=pl.col("paid").sum(), funded_cents=pl.col("funded").sum())
    keys = ["offer", "kind", "category"]
    per_cell = lines.group_by(*keys, "cell").agg(**metrics)
    per_offer = lines.group_by(keys).agg(**metrics).with_columns(pl.lit("all").alias("cell"))
    table = (pl.concat([per_offer.select(per_cell.columns), per_cell])
             .with_columns(pl.col(c).cast(pl.Int64) for c in metrics)
             .with_columns((pl.col("redeeming_households") / pl.col("households")).round(4).alias("redemption_rate"),
                           (pl.col("cell") == "all").alias("_total"))
             .sort(*keys, pl.col("cell") != "all", "cell"))
    kept, withheld = suppress(table, min_group, group=tuple(keys), is_total="_total")
    columns = [*keys, "cell", "households", "lists", "offer_lines", "redemptions", "redeeming_households",
               "redemption_rate", "discount_paid_cents", "funded_cents"]
    return kept.select(columns), withheld


def holdout_lift(outcomes: pl.DataFrame, confidence: float = 0.95) -> pl.DataFrame:
    """Treated minus hold-out: category purchase rate and units per household, with intervals.

    `coupons.lift.holdout_lift` per period_start x category: the rate with Newcombe's hybrid
    score interval, units with a Welch (normal) interval. Columns: period_start, category,
    households, treated_households, holdout_households, treated_rate, holdout_rate, rate_lift,
    rate_ci_low, rate_ci_high, treated_units, holdout_units (per household), units_lift,
    units_ci_low, units_ci_high; sorted by period_start, category.
    """
    from coupons.lift import holdout_lift as lift

    return lift(outcomes, confidence, by=("period_start", "category"), means=("units",)).drop(
        "treated_buyers", "holdout_buyers")


def _lift_outcomes(members: pl.DataFrame, offers: pl.DataFrame, history: pl.DataFrame,
                   date_from: dt.date, date_to: dt.date) -> pl.DataFrame:
    """Members x the categories of the manufacturer's offers in their batch, with what they bought."""
    cats = offers.filter(pl.col("category").is_not_null()).select("batch_id", "category").unique()
    rows = members.join(cats, on="batch_id", how="inner").with_columns(
        pl.max_horizontal(pl.col("period_start"), pl.lit(date_from)).alias("_start"),
        pl.min_horizontal(pl.col("period_end"), pl.lit(date_to + dt.timedelta(days=1))).alias("_end"))
    bought = (history.filter(pl.col("quantity") > 0)
              .select("customer_key", "category", "day", "quantity")
              .join(rows.select("batch_id", "customer_key", "category", "_start", "_end"),
                    on=["customer_key", "category"], how="inner")
              .filter((pl.col("day") >= pl.col("_start")) & (pl.col("day") < pl.col("_end")))
              .group_by("batch_id", "customer_key", "category").agg(units=pl.col("quantity").sum()))
    return (rows.join(bought, on=["batch_id", "customer_key", "category"], how="left")
            .select("period_start", "category", "grp", bought=pl.col("units").is_not_null(),
                    units=pl.col("units").fill_null(0.0)))


def _customer_cells(lines: pl.DataFrame, weeks: float, settings: Settings) -> pl.DataFrame:
    """Per customer x category in the period: cell, purchase days, median cycle, first week."""
    c = settings.cycles
    per = (lines.group_by("customer_key", "category")
           .agg(purchase_days=pl.col("day").n_unique(),
                units=pl.col("quantity").sum(),
                store_units=pl.col("quantity").filter(pl.col("brand_type") == "store").sum(),
                cycle_days=pl.col("day").unique().sort().diff().dt.total_days().median(),
                first_week=pl.col("week_start").min()))
    units_per_week = pl.col("units") / weeks
    lo = units_per_week.quantile(c.volume_cuts[0], interpolation="linear").over("category")
    hi = units_per_week.quantile(c.volume_cuts[1], interpolation="linear").over("category")
    share = pl.col("store_units") / pl.col("units")
    brand = (pl.when(pl.col("purchase_days") < c.min_occasions).then(pl.lit("unclassified"))
             .when(share <= c.national_max_store_share).then(pl.lit("national"))
             .when(share >= c.store_min_store_share).then(pl.lit("store"))
             .otherwise(pl.lit("switcher")))
    tier = (pl.when(units_per_week <= lo).then(pl.lit("low"))
            .when(units_per_week <= hi).then(pl.lit("mid")).otherwise(pl.lit("high")))
    return per.with_columns((brand + ":" + tier).alias("cell"))


def _shares(manufacturer_id: str) -> dict[str, pl.Expr]:
    units = pl.col("quantity").sum()
    return dict(
        units=units,
        national_share=(pl.col("quantity").filter(pl.col("brand_type") == "national").sum() / units).round(4),
        store_brand_share=(pl.col("quantity").filter(pl.col("brand_type") == "store").sum() / units).round(4),
        manufacturer_share=(pl.col("quantity").filter(pl.col("manufacturer_id") == manufacturer_id).sum()
                            / units).round(4))


def category_insight(history: pl.DataFrame, manufacturer_id: str, categories: list[str], date_from: dt.date,
                     date_to: dt.date, settings: Settings, min_group: int
                     ) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, int]]:
    """Buyers of the manufacturer's categories by cell, for the period and week by week.

    Parameters
    ----------
    history
        Line items up to `date_to` (included), reaching back `CycleSettings.lookback_weeks`
        before it where available: a household's cell and cycle come from that whole window,
        the figures below from the period [date_from, date_to] only.

    Returns
    -------
    (cells, weekly, withheld)
        cells: category, cell ('all' or 'brand_cell:volume_tier'), households (buyers in the
        period), units, national_share, store_brand_share, manufacturer_share (of units
        bought in the period), repeat_rate (share of the period's buyers who bought on two or
        more days of it), median_cycle_days (median over households of their median days
        between purchase days in the window).
        weekly: category, week_start (Monday), cell, households (buyers that week), units, the
        three shares, repeat_rate (share of the week's buyers who had bought the category in an
        earlier week of the window), median_cycle_days (of those buyers). Withheld: rows per table.
    """
    window = (history.filter(pl.col("category").is_in(categories) & (pl.col("quantity") > 0)
                             & (pl.col("day") <= date_to))
              .with_columns(pl.col("day").dt.truncate("1w").alias("week_start")))
    first_day = window["day"].min() if window.height else date_from
    weeks = max(((date_to - min(first_day, date_from)).days + 1) / 7, 1 / 7)
    who = _customer_cells(window, weeks, settings)
    lines = window.filter(pl.col("day") >= date_from)
    in_period = lines.group_by("customer_key", "category").agg(period_days=pl.col("day").n_unique())
    who = who.join(in_period, on=["customer_key", "category"], how="inner")
    lines = lines.join(who.select("customer_key", "category", "cell", "cycle_days", "first_week"),
                       on=["customer_key", "category"], how="left")
    cell_metrics = dict(households=pl.col("customer_key").n_unique().cast(pl.Int64), **_shares(manufacturer_id))
    cell_rows = pl.concat([
        lines.group_by("category").agg(**cell_metrics).with_columns(pl.lit("all").alias("cell")),
        lines.group_by("category", "cell").agg(**cell_metrics)], how="diagonal")
    habits = pl.concat([
        who.group_by("category").agg(
            repeat_rate=(pl.col("period_days") >= 2).mean().round(4),
            median_cycle_days=pl.col("cycle_days").median()).with_columns(pl.lit("all").alias("cell")),
        who.group_by("category", "cell").agg(
            repeat_rate=(pl.col("period_days") >= 2).mean().round(4),
            median_cycle_days=pl.col("cycle_days").median())], how="diagonal")
    cells = (cell_rows.join(habits, on=["category", "cell"], how="left")
             .with_columns((pl.col("cell") == "all").alias("_total"))
             .sort("category", pl.col("cell") != "all", "cell"))
    cells, cells_out = suppress(cells, min_group, group=("category",), is_total="_total")

    buyer = lines.select("customer_key", "category", "week_start", "cell", "cycle_days", "first_week").unique()
    week_habits = dict(repeat_rate=(pl.col("first_week") < pl.col("week_start")).mean().round(4),
                       median_cycle_days=pl.col("cycle_days").median())
    weekly = (pl.concat([
        lines.group_by("category", "week_start").agg(**cell_metrics).with_columns(pl.lit("all").alias("cell")),
        lines.group_by("category", "week_start", "cell").agg(**cell_metrics)], how="diagonal")
        .join(pl.concat([
            buyer.group_by("category", "week_start").agg(**week_habits).with_columns(pl.lit("all").alias("cell")),
            buyer.group_by("category", "week_start", "cell").agg(**week_habits)], how="diagonal"),
            on=["category", "week_start", "cell"], how="left")
        .with_columns((pl.col("cell") == "all").alias("_total"))
        .sort("category", "week_start", pl.col("cell") != "all", "cell"))
    weekly, weekly_out = suppress(weekly, min_group, group=("category", "week_start"), is_total="_total")
    order = ["households", "units", "national_share", "store_brand_share", "manufacturer_share", "repeat_rate",
             "median_cycle_days"]
    return (cells.select("category", "cell", *order), weekly.select("category", "week_start", "cell", *order),
            {"category_cells": cells_out, "category_weekly": weekly_out})


def household_panel(history: pl.DataFrame, customers: pl.DataFrame, redemptions_by_customer: pl.DataFrame,
                    manufacturer_id: str, categories: list[str], key: bytes) -> pl.DataFrame:
    """One row per household and week in the manufacturer's categories, under a pseudonym.

    Returns
    -------
    polars.DataFrame
        pseudonym, week_start (Monday), category_units, manufacturer_units, store_brand_units,
        manufacturer_spend_cents, redemptions (of this manufacturer's offers that week).
        Opted-out customers are left out. Sorted by pseudonym, week_start.
    """
    allowed = customers.filter(~pl.col("opted_out")).select("customer_key", "customer_id")
    lines = (history.filter(pl.col("category").is_in(categories))
             .with_columns(pl.col("day").dt.truncate("1w").alias("week_start")))
    mine = pl.col("manufacturer_id") == manufacturer_id
    weekly = (lines.group_by("customer_key", "week_start")
              .agg(category_units=pl.col("quantity").sum(),
                   manufacturer_units=pl.col("quantity").filter(mine).sum(),
                   store_brand_units=pl.col("quantity").filter(pl.col("brand_type") == "store").sum(),
                   manufacturer_spend_cents=pl.col("amount_cents").filter(mine).sum().cast(pl.Int64)))
    used = (redemptions_by_customer.with_columns(pl.col("redeemed_on").dt.truncate("1w").alias("week_start"))
            .group_by("customer_key", "week_start").agg(redemptions=pl.len().cast(pl.Int64)))
    panel = (weekly.join(used, on=["customer_key", "week_start"], how="full", coalesce=True)
             .with_columns(pl.col("category_units", "manufacturer_units", "store_brand_units").fill_null(0.0),
                           pl.col("manufacturer_spend_cents", "redemptions").fill_null(0))
             .join(allowed, on="customer_key", how="inner"))
    return (panel.with_columns(pseudonyms(panel["customer_id"], key))
            .select("pseudonym", "week_start", "category_units", "manufacturer_units", "store_brand_units",
                    "manufacturer_spend_cents", "redemptions")
            .sort("pseudonym", "week_start"))


def settlement_lines(redemptions: pl.DataFrame) -> pl.DataFrame:
    """One line per redemption (voided ones dropped) with its amount due.

    Returns
    -------
    polars.DataFrame
        line_no, redemption_id, offer_id, deal_id, offer (deal or kind:category), sku,
        redeemed_on, store_id, discount_cents, funded_share, amount_due_cents; sorted by
        redeemed_on, redemption_id.
    """
    return (redemptions.filter(pl.col("voided") == 0)
            .sort("redeemed_on", "redemption_id")
            .with_columns(amount_due(), _offer_label().alias("offer"))
            .with_row_index("line_no", offset=1)
            .select(pl.col("line_no").cast(pl.Int64), "redemption_id", "offer_id", "deal_id", "offer", "sku",
                    "redeemed_on", "store_id", "discount_cents", "funded_share", "amount_due_cents"))


# ----------------------------------------------------------------------------------------------
# reading and writing
# ----------------------------------------------------------------------------------------------

def _q(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


def _check_request(settings: Settings, manufacturer_id: str, date_from: dt.date, date_to: dt.date) -> str:
    if date_from > date_to:
        raise InputError(f"period: --from {date_from} is after --to {date_to}")
    url = settings.database_url
    engine = connect(url)
    try:
        require_schema(engine)
        with engine.connect() as conn:
            known = conn.execute(sa.text("SELECT 1 FROM manufacturers WHERE manufacturer_id = :m"),
                                 {"m": manufacturer_id}).first()
    finally:
        engine.dispose()      # no SQLAlchemy SQLite connection while ADBC reads (engine/db.py)
    if known is None:
        raise InputError(f"manufacturer {manufacturer_id!r} is not in the manufacturers table")
    return url


def _read_redemptions(db, manufacturer_id: str, date_from: dt.date, date_to: dt.date) -> pl.DataFrame:  # noqa: ANN001
    return db.read(
        "SELECT r.redemption_id, r.offer_id, o.deal_id, o.kind, o.category, p.sku, r.redeemed_on, r.store_id, "
        "r.discount_cents, o.funded_share, r.voided FROM redemptions r "
        "JOIN offers o ON o.offer_id = r.offer_id LEFT JOIN products p ON p.product_key = o.product_key "
        f"WHERE o.funder = {_q(manufacturer_id)} AND r.redeemed_on >= '{date_from}' "
        f"AND r.redeemed_on <= '{date_to}'", _REDEMPTION_SCHEMA)


def _write_table(frame: pl.DataFrame, out_dir: Path, name: str) -> list[dict]:
    """`name`.parquet (uncompressed: its bytes can be audited) and `name`.csv; their manifest entries."""
    floats = [c for c, t in frame.schema.items() if t in (pl.Float32, pl.Float64)]
    frame = frame.with_columns(pl.col(floats).round(6)) if floats else frame
    entries = []
    for suffix in ("parquet", "csv"):
        path = out_dir / f"{name}.{suffix}"
        if suffix == "parquet":
            frame.write_parquet(path, compression="uncompressed", statistics=False)
        else:
            frame.write_csv(path)
        data = path.read_bytes()
        entries.append({"name": path.name, "table": name, "rows": frame.height, "bytes": len(data),
                        "sha256": hashlib.sha256(data).hexdigest()})
    return entries


def _record(url: str, manufacturer_id: str, kind: str, date_from: dt.date, date_to: dt.date, out_dir: Path,
            manifest_bytes: bytes) -> None:
    engine = connect(url)
    try:
        with engine.begin() as conn:
            extract_id = allocate_keys(conn, "extracts", 1)
            now = utc_now()
            conn.execute(sa.text(
                "INSERT INTO extracts (extract_id, manufacturer_id, kind, period_from, period_to, out_dir, "
                "manifest_sha256, created_at) VALUES (:i, :m, :k, :f, :t, :o, :s, :c)"),
                {"i": extract_id, "m": manufacturer_id, "k": kind,
                 "f": date_from.isoformat() if is_sqlite(engine) else date_from,
                 "t": date_to.isoformat() if is_sqlite(engine) else date_to, "o": str(out_dir),
                 "s": hashlib.sha256(manifest_bytes).hexdigest(),
                 "c": now.isoformat(sep=" ") if is_sqlite(engine) else now})
    finally:
        engine.dispose()


def write_extract(settings: Settings, manufacturer_id: str, date_from: dt.date, date_to: dt.date,
                  out_dir: str | Path, progress: Progress = None, panel: bool = False) -> dict:
    """Write one manufacturer's anonymised extract for [date_from, date_to]; returns the manifest.

    Parameters
    ----------
    settings
        Effective settings (database, secret for the panel, extracts.min_group, cycles).
    manufacturer_id
        The funder, as in the manufacturers table.
    date_from, date_to
        First and last day of the period (both included).
    out_dir
        Created when missing; the files of the module docstring go there.
    progress
        ``progress(label, done, total)`` after each step.
    panel
        Also write the pseudonymous household panel.

    Returns
    -------
    dict
        The manifest (also written as ``manifest.json``).
    """
    from engine.history import read_customers, read_history, read_products

    min_group = effective_min_group(settings.extracts.min_group)
    url = _check_request(settings, manufacturer_id, date_from, date_to)
    key = pseudonym_key(resolve_secret(settings), manufacturer_id) if panel else b""
    steps = 6 if panel else 5
    tell = (lambda done: progress("extract", done, steps)) if progress else (lambda done: None)
    mid = _q(manufacturer_id)
    with bulk_session(url, write=False) as db:
        offers = db.read(
            "SELECT o.offer_id, o.list_id, l.customer_key, l.batch_id, o.kind, o.category, o.deal_id, "
            "o.funded_share, o.discount_cents, o.valid_from, o.valid_to, o.brand_cell, o.volume_tier "
            f"FROM offers o JOIN lists l ON l.list_id = o.list_id WHERE o.funder = {mid} "
            f"AND o.valid_from <= '{date_to}' AND o.valid_to >= '{date_from}'", _OFFER_SCHEMA)
        redemptions = _read_redemptions(db, manufacturer_id, date_from, date_to).filter(pl.col("voided") == 0)
        members = db.read(
            "SELECT m.batch_id, m.customer_key, m.grp, b.period_start, b.period_end FROM batch_members m "
            "JOIN batches b ON b.batch_id = m.batch_id WHERE b.status = 'done' "
            f"AND b.period_start <= '{date_to}' AND b.period_end > '{date_from}'", _MEMBER_SCHEMA)
        redeemers = db.read(
            "SELECT l.customer_key, r.redeemed_on FROM redemptions r JOIN offers o ON o.offer_id = r.offer_id "
            f"JOIN lists l ON l.list_id = o.list_id WHERE o.funder = {mid} AND r.voided = 0 "
            f"AND r.redeemed_on >= '{date_from}' AND r.redeemed_on <= '{date_to}'",
            {"customer_key": pl.Int64, "redeemed_on": pl.Date}) if panel else None
    tell(1)
    products = read_products(url)
    categories = sorted(products.filter(pl.col("manufacturer_id") == manufacturer_id)["category"].unique().to_list())
    # cells and cycles need the profile's lookback; every published figure is of the period only
    lookback_start = min(date_from, date_to + dt.timedelta(days=1) - dt.timedelta(weeks=settings.cycles.lookback_weeks))
    window = read_history(url, date_to + dt.timedelta(days=1), lookback_start, products=products)
    history = window.filter(pl.col("day") >= date_from)
    tell(2)

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    withheld: dict[str, int] = {}
    files: list[dict] = []
    results, withheld["offer_results"] = offer_results(offers, redemptions, min_group)
    files += _write_table(results, out, "offer_results")
    lift = holdout_lift(_lift_outcomes(members, offers, history, date_from, date_to),
                        settings.extracts.confidence)
    lift, withheld["lift"] = suppress(lift.with_columns(
        pl.min_horizontal("treated_households", "holdout_households").alias("_smaller")), min_group,
        count="_smaller")
    files += _write_table(lift.drop("_smaller"), out, "lift")
    tell(3)
    cells, weekly, out_rows = category_insight(window, manufacturer_id, categories, date_from, date_to,
                                               settings, min_group)
    withheld.update(out_rows)
    files += _write_table(cells, out, "category_cells")
    files += _write_table(weekly, out, "category_weekly")
    tell(4)
    if panel:
        customers = read_customers(url)
        files += _write_table(household_panel(history, customers, redeemers, manufacturer_id, categories, key),
                              out, "household_panel")
        tell(5)
    manifest = {
        "format_version": FORMAT_VERSION, "kind": "extract", "chain": settings.chain_name,
        "manufacturer_id": manufacturer_id, "period": {"from": date_from.isoformat(), "to": date_to.isoformat()},
        "min_group": min_group, "confidence": settings.extracts.confidence, "categories": categories,
        "created_on": dt.date.today().isoformat(), "files": files, "withheld_rows": withheld,
        "panel": panel, "pseudonym": "HMAC-SHA256 under a per-manufacturer key" if panel else None,
    }
    data = json.dumps(manifest, indent=2).encode("utf-8")
    (out / "manifest.json").write_bytes(data)
    _record(url, manufacturer_id, "extract", date_from, date_to, out, data)
    tell(steps)
    return manifest


def _dollars(cents: int) -> str:
    sign = "-" if cents < 0 else ""
    return f"{sign}${abs(cents) // 100:,}.{abs(cents) % 100:02d}"


def _statement_pdf(path: Path, settings: Settings, manufacturer: tuple[str, str | None], date_from: dt.date,
                   date_to: dt.date, totals: pl.DataFrame, grand: dict) -> None:
    """A one-page statement: per-offer totals (at most 30 rows, the rest folded) and the amount due."""
    from reportlab.lib.pagesizes import A4, letter
    from reportlab.pdfgen import canvas

    size = A4 if settings.printing.page_size == "a4" else letter
    width, height = size
    pdf = canvas.Canvas(str(path), pagesize=size, invariant=1)
    pdf.setTitle(f"Settlement {manufacturer[0]} {date_from} to {date_to}")
    y = height - 60
    pdf.setFont("Helvetica-Bold", 15)
    pdf.drawString(50, y, f"{settings.chain_name}: settlement of funded discounts")
    y -= 22
    pdf.setFont("Helvetica", 10)
    name = f" ({manufacturer[1]})" if manufacturer[1] else ""
    for text in (f"Manufacturer: {manufacturer[0]}{name}", f"Period: {date_from} to {date_to} (both days included)",
                 "Voided redemptions excluded. Amount due per redemption: discount x funded share, "
                 "rounded half up to the cent;", "totals are sums of the lines in settlement.csv."):
        pdf.drawString(50, y, text)
        y -= 14
    y -= 10
    cols = (50, 250, 340, 440, 540)
    pdf.setFont("Helvetica-Bold", 10)
    pdf.drawString(cols[0], y, "Offer")
    for x, head in ((cols[1] + 60, "Redemptions"), (cols[2] + 70, "Discount"), (cols[3] + 70, "Due")):
        pdf.drawRightString(x, y, head)
    y -= 14
    pdf.setFont("Helvetica", 10)
    rows = totals.to_dicts()
    shown, folded = rows[:30], rows[30:]
    if folded:
        shown.append({"offer": f"{len(folded)} other offers",
                      "redemptions": sum(r["redemptions"] for r in folded),
                      "discount_cents": sum(r["discount_cents"] for r in folded),
                      "amount_due_cents": sum(r["amount_due_cents"] for r in folded)})
    for r in shown:
        pdf.drawString(cols[0], y, str(r["offer"])[:36])
        pdf.drawRightString(cols[1] + 60, y, f"{r['redemptions']:,}")
        pdf.drawRightString(cols[2] + 70, y, _dollars(r["discount_cents"]))
        pdf.drawRightString(cols[3] + 70, y, _dollars(r["amount_due_cents"]))
        y -= 13
    pdf.line(50, y + 4, width - 50, y + 4)
    y -= 10
    pdf.setFont("Helvetica-Bold", 11)
    pdf.drawString(cols[0], y, "Total")
    pdf.drawRightString(cols[1] + 60, y, f"{grand['redemptions']:,}")
    pdf.drawRightString(cols[2] + 70, y, _dollars(grand["discount_cents"]))
    pdf.drawRightString(cols[3] + 70, y, _dollars(grand["amount_due_cents"]))
    pdf.showPage()
    pdf.save()


def write_settlement(settings: Settings, manufacturer_id: str, date_from: dt.date, date_to: dt.date,
                     out_dir: str | Path) -> dict:
    """Settle one manufacturer's funded redemptions of [date_from, date_to]; returns the summary.

    Returns
    -------
    dict
        manufacturer_id, period, redemptions, discount_cents, amount_due_cents, files (name,
        rows, sha256); also written as ``settlement.json``.
    """
    url = _check_request(settings, manufacturer_id, date_from, date_to)
    with bulk_session(url, write=False) as db:
        lines = settlement_lines(_read_redemptions(db, manufacturer_id, date_from, date_to))
        names = db.read(f"SELECT name FROM manufacturers WHERE manufacturer_id = {_q(manufacturer_id)}",
                        {"name": pl.String})
    maker_name = names["name"][0] if names.height else None
    totals = (lines.group_by("offer").agg(redemptions=pl.len().cast(pl.Int64),
                                          discount_cents=pl.col("discount_cents").sum().cast(pl.Int64),
                                          amount_due_cents=pl.col("amount_due_cents").sum().cast(pl.Int64))
              .sort("offer"))
    grand = {"redemptions": lines.height, "discount_cents": int(lines["discount_cents"].sum()),
             "amount_due_cents": int(lines["amount_due_cents"].sum())}
    with_total = pl.concat([totals, pl.DataFrame({"offer": ["TOTAL"], **{k: [v] for k, v in grand.items()}},
                                                 schema=totals.schema)])
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, frame in (("settlement.csv", lines), ("settlement_totals.csv", with_total)):
        frame.write_csv(out / name)
        files.append((name, frame.height))
    _statement_pdf(out / "settlement.pdf", settings, (manufacturer_id, maker_name), date_from, date_to, totals, grand)
    files.append(("settlement.pdf", 1))
    summary = {
        "format_version": FORMAT_VERSION, "kind": "settlement", "manufacturer_id": manufacturer_id,
        "period": {"from": date_from.isoformat(), "to": date_to.isoformat()}, **grand,
        "rounding": "per line: round half up of discount_cents x funded_share (share to millionths); "
                    "totals are sums of lines",
        "files": [{"name": n, "rows": rows, "sha256": hashlib.sha256((out / n).read_bytes()).hexdigest()}
                  for n, rows in files],
    }
    data = json.dumps(summary, indent=2).encode("utf-8")
    (out / "settlement.json").write_bytes(data)
    _record(url, manufacturer_id, "settlement", date_from, date_to, out, data)
    return summary


def demo_extracts(settings: Settings, directory: str | Path) -> Iterator[str]:
    """The demo's last step: extract and settlement of the manufacturer with most funded offers.

    The period runs from four weeks before the first offer (the demo's history ends where its
    batch begins, so the category insight needs those weeks) to the last offer's end; files go
    under ``<directory>/extracts/<manufacturer>/``. Yields report lines.
    """
    with bulk_session(settings.database_url, write=False) as db:
        top = db.read("SELECT funder, COUNT(*) AS n, MIN(valid_from) AS first_day, MAX(valid_to) AS last_day "
                      "FROM offers WHERE funder <> 'retailer' GROUP BY funder ORDER BY n DESC, funder",
                      {"funder": pl.String, "n": pl.Int64, "first_day": pl.Date, "last_day": pl.Date})
    if top.height == 0:
        yield "extracts: no manufacturer-funded offers in the demo batch; nothing to extract"
        return
    maker = str(top["funder"][0])
    first = top["first_day"][0] - dt.timedelta(weeks=4)
    last = top["last_day"][0]
    target = Path(directory) / "extracts" / maker
    started = time.perf_counter()
    manifest = write_extract(settings, maker, first, last, target, panel=True)
    seconds = time.perf_counter() - started
    rows = {f["table"]: f["rows"] for f in manifest["files"]}
    yield (f"extract for {maker} ({first} to {last}, groups of {manifest['min_group']}+ households): "
           + ", ".join(f"{t} {n} rows" for t, n in rows.items()) + f" ({seconds:.1f} s); {target}")
    summary = write_settlement(settings, maker, first, last, target)
    yield (f"settlement for {maker}: {summary['redemptions']} redemptions, "
           f"{_dollars(summary['amount_due_cents'])} due; {target / 'settlement.pdf'}")
