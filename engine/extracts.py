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
  Newcombe's hybrid score interval for a difference of proportions (`coupons.lift`), and units
  per household with a Welch (normal) interval; `ExtractSettings.confidence` sets the level.
* ``category_cells`` and ``category_weekly`` — for the manufacturer's categories, the buyers
  in the period by cell (brand loyalty x volume read off their own purchases over the profile's
  lookback, `cycles.brand_volume.observed_cells`, with the thresholds of `CycleSettings`; the
  cells of ``offer_results`` are the profile's, as targeted, so a household may sit in
  different cells in the two tables): households, unit shares of national brands, store brand
  and this manufacturer, repeat rate, median cycle length; the weekly table week by week
  (weeks start on Monday) with the repeat rate of a week's buyers who bought in an earlier week.
* ``household_panel`` (only with ``panel=True``): one row per household and week with a
  pseudonym (`coupons.anonymise.pseudonyms`), units and spend; opted-out customers left out.

and ``manifest.json``: files, row counts, sha256, period, the minimum group size, the rows
withheld per table and a format version.

Never written: names, addresses, card numbers, e-mails, customer ids or keys, basket ids,
timestamps (days and weeks only). Every aggregate row describes at least
`ExtractSettings.min_group` households (never below 10), and complementary suppression keeps a
withheld row from being recomputed from its set's total (`coupons.anonymise.suppress`). The
panel is per household by nature; it carries only the pseudonym.

`write_settlement` (``listwise settle``) lists every redemption in the period of an offer the
manufacturer funds, voided redemptions excluded: ``settlement.csv`` (one line per
redemption), ``settlement_totals.csv`` (per deal and a TOTAL line), ``settlement.pdf`` (a
one-page statement) and ``settlement.json``. The amount due on a line is
``round_half_up(discount_cents x funded_share)`` with the share taken to millionths, in
integer arithmetic; totals are sums of the lines, so they agree to the cent.

The figures are computed by `coupons.results` (pure: frames in, frames out) and the statement
is drawn by `printing.statement`; this module reads the database, writes the files and the
manifest, and records each extract and settlement in the ``extracts`` table.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from coupons.anonymise import FLOOR_GROUP, pseudonym_key
from coupons.results import (
    category_insight,
    household_panel,
    lift_results,
    offer_results,
    settlement_lines,
    settlement_totals,
)
from engine.config import Settings, resolve_secret
from engine.db import allocate_keys, bulk_session, connect, is_sqlite, require_schema, utc_now
from engine.errors import ConfigError, InputError
from engine.progress import Progress
from printing.statement import Statement, StatementRow, write_statement

__all__ = ["write_extract", "write_settlement", "effective_min_group", "FORMAT_VERSION"]

FORMAT_VERSION = 1

_OFFER_SCHEMA = {
    "offer_id": pl.Int64,
    "list_id": pl.Int64,
    "customer_key": pl.Int64,
    "batch_id": pl.Int64,
    "kind": pl.String,
    "category": pl.String,
    "deal_id": pl.String,
    "funded_share": pl.Float64,
    "discount_cents": pl.Int64,
    "valid_from": pl.Date,
    "valid_to": pl.Date,
    "brand_cell": pl.String,
    "volume_tier": pl.String,
}
_REDEMPTION_SCHEMA = {
    "redemption_id": pl.Int64,
    "offer_id": pl.Int64,
    "deal_id": pl.String,
    "kind": pl.String,
    "category": pl.String,
    "sku": pl.String,
    "redeemed_on": pl.Date,
    "store_id": pl.String,
    "discount_cents": pl.Int64,
    "funded_share": pl.Float64,
    "voided": pl.Int64,
}
_MEMBER_SCHEMA = {
    "batch_id": pl.Int64,
    "customer_key": pl.Int64,
    "grp": pl.String,
    "period_start": pl.Date,
    "period_end": pl.Date,
}


def effective_min_group(min_group: int) -> int:
    """The minimum group actually used: `min_group`, refused below `coupons.anonymise.FLOOR_GROUP`.

    Raises
    ------
    ConfigError
        When `min_group` is below the floor of 10 households.
    """
    if int(min_group) < FLOOR_GROUP:
        raise ConfigError(f"extracts.min_group: must be at least {FLOOR_GROUP} households, got {min_group!r}")
    return int(min_group)


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
            known = conn.execute(
                sa.text("SELECT 1 FROM manufacturers WHERE manufacturer_id = :m"), {"m": manufacturer_id}
            ).first()
    finally:
        engine.dispose()  # no SQLAlchemy SQLite connection while ADBC reads (engine/db.py)
    if known is None:
        raise InputError(f"manufacturer {manufacturer_id!r} is not in the manufacturers table")
    return url


def _read_redemptions(db, manufacturer_id: str, date_from: dt.date, date_to: dt.date) -> pl.DataFrame:  # noqa: ANN001
    return db.read(
        "SELECT r.redemption_id, r.offer_id, o.deal_id, o.kind, o.category, p.sku, r.redeemed_on, r.store_id, "
        "r.discount_cents, o.funded_share, r.voided FROM redemptions r "
        "JOIN offers o ON o.offer_id = r.offer_id LEFT JOIN products p ON p.product_key = o.product_key "
        f"WHERE o.funder = {_q(manufacturer_id)} AND r.redeemed_on >= '{date_from}' "
        f"AND r.redeemed_on <= '{date_to}'",
        _REDEMPTION_SCHEMA,
    )


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
        entries.append(
            {
                "name": path.name,
                "table": name,
                "rows": frame.height,
                "bytes": len(data),
                "sha256": hashlib.sha256(data).hexdigest(),
            }
        )
    return entries


def _record(
    url: str,
    manufacturer_id: str,
    kind: str,
    date_from: dt.date,
    date_to: dt.date,
    out_dir: Path,
    manifest_bytes: bytes,
) -> None:
    engine = connect(url)
    try:
        with engine.begin() as conn:
            extract_id = allocate_keys(conn, "extracts", 1)
            now = utc_now()
            conn.execute(
                sa.text(
                    "INSERT INTO extracts (extract_id, manufacturer_id, kind, period_from, period_to, out_dir, "
                    "manifest_sha256, created_at) VALUES (:i, :m, :k, :f, :t, :o, :s, :c)"
                ),
                {
                    "i": extract_id,
                    "m": manufacturer_id,
                    "k": kind,
                    "f": date_from.isoformat() if is_sqlite(engine) else date_from,
                    "t": date_to.isoformat() if is_sqlite(engine) else date_to,
                    "o": str(out_dir),
                    "s": hashlib.sha256(manifest_bytes).hexdigest(),
                    "c": now.isoformat(sep=" ") if is_sqlite(engine) else now,
                },
            )
    finally:
        engine.dispose()


def write_extract(
    settings: Settings,
    manufacturer_id: str,
    date_from: dt.date,
    date_to: dt.date,
    out_dir: str | Path,
    progress: Progress | None = None,
    panel: bool = False,
) -> dict:
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
            f"AND o.valid_from <= '{date_to}' AND o.valid_to >= '{date_from}'",
            _OFFER_SCHEMA,
        )
        redemptions = _read_redemptions(db, manufacturer_id, date_from, date_to).filter(pl.col("voided") == 0)
        members = db.read(
            "SELECT m.batch_id, m.customer_key, m.grp, b.period_start, b.period_end FROM batch_members m "
            "JOIN batches b ON b.batch_id = m.batch_id WHERE b.status = 'done' "
            f"AND b.period_start <= '{date_to}' AND b.period_end > '{date_from}'",
            _MEMBER_SCHEMA,
        )
        redeemers = (
            db.read(
                "SELECT l.customer_key, r.redeemed_on FROM redemptions r JOIN offers o ON o.offer_id = r.offer_id "
                f"JOIN lists l ON l.list_id = o.list_id WHERE o.funder = {mid} AND r.voided = 0 "
                f"AND r.redeemed_on >= '{date_from}' AND r.redeemed_on <= '{date_to}'",
                {"customer_key": pl.Int64, "redeemed_on": pl.Date},
            )
            if panel
            else None
        )
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
    lift, withheld["lift"] = lift_results(
        members, offers, history, date_from, date_to, settings.extracts.confidence, min_group
    )
    files += _write_table(lift, out, "lift")
    tell(3)
    c = settings.cycles
    cells, weekly, out_rows = category_insight(
        window,
        manufacturer_id,
        categories,
        date_from,
        date_to,
        min_group,
        min_occasions=c.min_occasions,
        national_max_store_share=c.national_max_store_share,
        store_min_store_share=c.store_min_store_share,
        volume_cuts=c.volume_cuts,
    )
    withheld.update(out_rows)
    files += _write_table(cells, out, "category_cells")
    files += _write_table(weekly, out, "category_weekly")
    tell(4)
    if panel:
        customers = read_customers(url)
        files += _write_table(
            household_panel(history, customers, redeemers, manufacturer_id, categories, key), out, "household_panel"
        )
        tell(5)
    manifest = {
        "format_version": FORMAT_VERSION,
        "kind": "extract",
        "chain": settings.chain_name,
        "manufacturer_id": manufacturer_id,
        "period": {"from": date_from.isoformat(), "to": date_to.isoformat()},
        "min_group": min_group,
        "confidence": settings.extracts.confidence,
        "categories": categories,
        "created_on": dt.date.today().isoformat(),
        "files": files,
        "withheld_rows": withheld,
        "panel": panel,
        "pseudonym": "HMAC-SHA256 under a per-manufacturer key" if panel else None,
    }
    data = json.dumps(manifest, indent=2).encode("utf-8")
    (out / "manifest.json").write_bytes(data)
    _record(url, manufacturer_id, "extract", date_from, date_to, out, data)
    tell(steps)
    return manifest


def write_settlement(
    settings: Settings, manufacturer_id: str, date_from: dt.date, date_to: dt.date, out_dir: str | Path
) -> dict:
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
        names = db.read(
            f"SELECT name FROM manufacturers WHERE manufacturer_id = {_q(manufacturer_id)}", {"name": pl.String}
        )
    maker_name = names["name"][0] if names.height else None
    with_total = settlement_totals(lines)
    rows = [StatementRow(**r) for r in with_total.to_dicts()]
    grand = {
        "redemptions": rows[-1].redemptions,
        "discount_cents": rows[-1].discount_cents,
        "amount_due_cents": rows[-1].amount_due_cents,
    }
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    files = []
    for name, frame in (("settlement.csv", lines), ("settlement_totals.csv", with_total)):
        frame.write_csv(out / name)
        files.append((name, frame.height))
    statement = Statement(
        settings.chain_name, manufacturer_id, maker_name, date_from, date_to, rows=tuple(rows[:-1]), total=rows[-1]
    )
    write_statement(
        statement, out / "settlement.pdf", page_size=settings.printing.page_size, font_path=settings.printing.font_path
    )
    files.append(("settlement.pdf", 1))
    summary = {
        "format_version": FORMAT_VERSION,
        "kind": "settlement",
        "manufacturer_id": manufacturer_id,
        "period": {"from": date_from.isoformat(), "to": date_to.isoformat()},
        **grand,
        "rounding": "per line: round half up of discount_cents x funded_share (share to millionths); "
        "totals are sums of lines",
        "files": [
            {"name": n, "rows": rows, "sha256": hashlib.sha256((out / n).read_bytes()).hexdigest()} for n, rows in files
        ],
    }
    data = json.dumps(summary, indent=2).encode("utf-8")
    (out / "settlement.json").write_bytes(data)
    _record(url, manufacturer_id, "settlement", date_from, date_to, out, data)
    return summary
