"""Print a batch: engine reads its lists, decides what is printed, and printing renders it.

`read_documents` finds the batch, reads its active lists with their offers, needs, products,
customers, stores and tips, and makes one `printing.ListDocument` per list, in the print
shop's order (store, then the customer's postal code, then customer id). Each list goes to its
store, ``lists.store_id``, which the batch sets to the customer's home store
(`engine.batch.home_stores`); a list written without one (a batch made before the batch
recorded it) gets the same rule here.

`print_batch` leaves out the lists that are not printed — a list with nothing on it (no
need, no offer, no reward), the list of a customer who opted out — and has
`printing.render_documents` write, under ``<out_dir>/<period-start>/``, one PDF per list, one
merged PDF per store, each list as a web page and (with an address) an e-mail message, and
the manifests (see `printing.render`). A batch with nothing left to print writes no file, and
its summary's message says so. Every frame read has an explicit schema, so a batch of any mix
of offer kinds (rewards only: no category, product or date) prints.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import time
from collections.abc import Callable
from pathlib import Path

import polars as pl
import sqlalchemy as sa

from engine.batch import home_stores
from engine.config import Settings
from engine.db import bulk_session, connect, require_schema
from engine.errors import ConfigError, StateError, printing_errors
from printing.digital import email_sender
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine
from printing.layout import PAGE_SIZES, LayoutOptions
from printing.reasons import plain_reason
from printing.render import render_documents

__all__ = ["print_batch", "read_documents", "layout_options"]

Progress = Callable[[str, int, int], None]


def _find_batch(engine: sa.Engine, batch_id: int | None) -> tuple[int, dt.date]:
    with engine.connect() as conn:
        if batch_id is None:
            row = conn.execute(
                sa.text(
                    "SELECT batch_id, period_start FROM batches WHERE status = 'done' "
                    "ORDER BY period_start DESC LIMIT 1"
                )
            ).first()
            if row is None:
                raise StateError("no finished batch to print: run 'listwise batch run' first")
        else:
            row = conn.execute(
                sa.text("SELECT batch_id, period_start, status FROM batches WHERE batch_id = :b"), {"b": batch_id}
            ).first()
            if row is None:
                raise StateError(f"batch {batch_id} not found")
            if row[2] != "done":
                raise StateError(f"batch {batch_id} is {row[2]!r}, not 'done': nothing to print yet")
    start = row[1] if isinstance(row[1], dt.date) else dt.date.fromisoformat(str(row[1])[:10])
    return int(row[0]), start


_LISTS_SQL = """
SELECT l.list_id, l.code, l.customer_key, l.store_id, l.valid_from, l.valid_to, l.tip_id,
       c.customer_id, c.card_number, c.first_name, c.last_name, c.address_line1, c.address_line2,
       c.city, c.state, c.postal_code, c.opted_out, c.email
FROM lists l JOIN customers c ON c.customer_key = l.customer_key
WHERE l.batch_id = {b} AND l.status = 'active'
"""
_OFFERS_SQL = """
SELECT o.list_id, o.line_no, o.kind, o.category, o.discount_cents, o.min_spend_cents, o.max_uses,
       o.valid_to, o.expected_on, p.description, p.size, p.department, p.regular_price_cents,
       o.reason, o.volume_tier, p.brand, p.brand_type, m.name AS maker
FROM offers o JOIN lists l ON l.list_id = o.list_id
LEFT JOIN products p ON p.product_key = o.product_key
LEFT JOIN deals d ON d.deal_id = o.deal_id
LEFT JOIN manufacturers m ON m.manufacturer_id = COALESCE(d.manufacturer_id, p.manufacturer_id)
WHERE l.batch_id = {b} AND l.status = 'active'
"""
_NEEDS_SQL = """
SELECT n.list_id, n.line_no, n.category, n.expected_on, n.interval_days, p.description, p.size, p.department,
       p.regular_price_cents
FROM list_needs n JOIN lists l ON l.list_id = n.list_id
LEFT JOIN products p ON p.product_key = n.product_key
WHERE l.batch_id = {b} AND l.status = 'active'
"""

_S, _I, _D = pl.String, pl.Int64, pl.Date
_SCHEMAS = {  # every column typed, so that one with no values is never mistyped (issue 10)
    "lists": {
        "list_id": _I,
        "code": _S,
        "customer_key": _I,
        "store_id": _S,
        "valid_from": _D,
        "valid_to": _D,
        "tip_id": _I,
        "customer_id": _S,
        "card_number": _S,
        "first_name": _S,
        "last_name": _S,
        "address_line1": _S,
        "address_line2": _S,
        "city": _S,
        "state": _S,
        "postal_code": _S,
        "opted_out": pl.Boolean,
        "email": _S,
    },
    "offers": {
        "list_id": _I,
        "line_no": _I,
        "kind": _S,
        "category": _S,
        "discount_cents": _I,
        "min_spend_cents": _I,
        "max_uses": _I,
        "valid_to": _D,
        "expected_on": _D,
        "description": _S,
        "size": _S,
        "department": _S,
        "regular_price_cents": _I,
        "reason": _S,
        "volume_tier": _S,
        "brand": _S,
        "brand_type": _S,
        "maker": _S,
    },
    "needs": {
        "list_id": _I,
        "line_no": _I,
        "category": _S,
        "expected_on": _D,
        "interval_days": _I,
        "description": _S,
        "size": _S,
        "department": _S,
        "regular_price_cents": _I,
    },
    "stores": {"store_id": _S, "name": _S, "address": _S, "city": _S, "state": _S, "postal_code": _S},
    "tips": {"tip_id": _I, "title": _S, "body": _S},
}


def _read(url: str, batch_id: int) -> dict[str, pl.DataFrame]:
    b = int(batch_id)
    sql = {
        "lists": _LISTS_SQL.format(b=b),
        "offers": _OFFERS_SQL.format(b=b),
        "needs": _NEEDS_SQL.format(b=b),
        "stores": "SELECT store_id, name, address, city, state, postal_code FROM stores",
        "tips": "SELECT tip_id, title, body FROM tips",
    }
    with bulk_session(url, write=False) as db:
        frames = {name: db.read(sql[name], schema) for name, schema in _SCHEMAS.items()}
        if frames["lists"]["store_id"].null_count():  # written before the batch recorded the store
            frames["home"] = home_stores(
                db, f"SELECT customer_key FROM lists WHERE batch_id = {b} AND store_id IS NULL"
            )
    return frames


def _text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).fill_null("").str.strip_chars()


def _city_line(prefix: str = "") -> pl.Expr:
    """'City, ST 12345' from the city, state and postal_code columns (empty parts left out)."""
    city, state, postal = _text(f"{prefix}city"), _text(f"{prefix}state"), _text(f"{prefix}postal_code")
    st_zip = pl.concat_str([state, postal], separator=" ").str.strip_chars()
    return (
        pl.when(city != "").then(pl.concat_str([city, st_zip], separator=", ")).otherwise(st_zip).str.strip_chars(", ")
    )


def _described(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with description (the product's, size added unless it is in it; else the category)
    and department (else the category) ready to print."""
    has_size = (_text("size") != "") & ~_text("description").str.to_lowercase().str.contains(
        _text("size").str.to_lowercase(), literal=True
    )
    description = (
        pl.when(has_size)
        .then(pl.concat_str([_text("description"), _text("size")], separator=" "))
        .otherwise(_text("description"))
    )
    return frame.with_columns(
        description=pl.when(_text("description") != "")
        .then(description)
        .otherwise(_text("category").str.to_titlecase()),
        department=pl.coalesce(pl.col("department"), pl.col("category").str.to_titlecase()),
    )


def _prepare(frames: dict[str, pl.DataFrame], chain_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lists (one row each, addresses and store lines composed) and offers, print-ready."""
    lists = frames["lists"]
    if "home" in frames:
        lists = (
            lists.join(frames["home"].rename({"store_id": "home_store"}), on="customer_key", how="left")
            .with_columns(store_id=pl.coalesce("store_id", "home_store"))
            .drop("home_store")
        )
    stores = frames["stores"].select(
        "store_id",
        store_name=pl.when(_text("name") != "").then(_text("name")).otherwise(pl.lit(chain_name)),
        store_street=_text("address"),
        store_city=_city_line(),
    )
    name = pl.concat_str([_text("first_name"), _text("last_name")], separator=" ").str.strip_chars()
    lists = (
        lists.join(stores, on="store_id", how="left")
        .join(frames["tips"], on="tip_id", how="left")
        .with_columns(
            name_line=name,
            street=_text("address_line1"),
            street2=_text("address_line2"),
            city_line=_city_line(),
            postal_code=_text("postal_code"),
            opted_out=pl.col("opted_out").fill_null(False),
        )
        .sort(["store_id", "postal_code", "customer_id"], nulls_last=True)
    )
    offers = _described(frames["offers"]).sort("list_id", "line_no")
    return lists, offers


def _documents(
    lists: pl.DataFrame, offers: pl.DataFrame, chain_name: str, needs: pl.DataFrame | None = None
) -> list[ListDocument]:
    """One `ListDocument` per list row (the Python objects the canvas draws from).

    A need whose category has a special on the same list is carried by the special's line
    (which takes the need's "likely around" day when it has none), so no category prints twice.
    """
    need_rows: dict[int, dict[str, dict]] = {}
    if needs is not None:
        for n in needs.sort("list_id", "line_no").iter_rows(named=True):
            need_rows.setdefault(n["list_id"], {}).setdefault(n["category"], n)
    lines: dict[int, list[OfferLine]] = {}
    rewards: dict[int, list[RewardLine]] = {}
    covered: dict[int, set[str]] = {}
    for o in offers.iter_rows(named=True):  # object construction: no frame equivalent
        if o["kind"] == "reward":
            rewards.setdefault(o["list_id"], []).append(
                RewardLine(int(o["discount_cents"]), o["min_spend_cents"], int(o["max_uses"]), o["valid_to"])
            )
            continue
        need = need_rows.get(o["list_id"], {}).get(o["category"])
        if need is not None:
            covered.setdefault(o["list_id"], set()).add(o["category"])
        expected = o["expected_on"] or (need["expected_on"] if need else None)
        lines.setdefault(o["list_id"], []).append(
            OfferLine(
                department=o["department"],
                description=o["description"],
                usual_price_cents=o["regular_price_cents"],
                discount_cents=int(o["discount_cents"]),
                max_uses=int(o["max_uses"]),
                valid_to=o["valid_to"],
                expected_on=expected,
                kind=o["kind"],
                reason=plain_reason(
                    o["kind"],
                    o["reason"],
                    category=o["category"],
                    volume_tier=o["volume_tier"],
                    brand_type=o["brand_type"],
                    brand=o["brand"],
                    maker=o["maker"],
                    interval_days=need["interval_days"] if need else None,
                    expected_on=o["expected_on"],
                ),
            )
        )
    need_lines: dict[int, list[NeedLine]] = {}
    for list_id, by_category in need_rows.items():
        done = covered.get(list_id, set())
        need_lines[list_id] = [
            NeedLine(n["department"], n["description"], n["regular_price_cents"], n["expected_on"], n["category"])
            for c, n in by_category.items()
            if c not in done
        ]
    docs = []
    for r in lists.iter_rows(named=True):
        address = tuple(x for x in (r["name_line"], r["street"], r["street2"], r["city_line"]) if x)
        store = tuple(x for x in (r["store_name"], r["store_street"], r["store_city"]) if x)
        docs.append(
            ListDocument(
                list_id=int(r["list_id"]),
                code=str(r["code"]),
                chain_name=chain_name,
                store_id=r["store_id"],
                store_lines=store,
                customer_id=str(r["customer_id"]),
                address_lines=address,
                postal_code=r["postal_code"],
                card_number=r["card_number"],
                valid_from=r["valid_from"],
                valid_to=r["valid_to"],
                offers=tuple(lines.get(r["list_id"], ())),
                rewards=tuple(rewards.get(r["list_id"], ())),
                tip_title=r["title"],
                tip_body=r["body"],
                needs=tuple(need_lines.get(r["list_id"], ())),
                email=(r["email"] or "").strip() or None,
                extra={"opted_out": bool(r["opted_out"])},
            )
        )
    return docs


def read_documents(settings: Settings, batch_id: int | None = None) -> tuple[int, dt.date, list[ListDocument]]:
    """The batch's id, period start and every active list as a `ListDocument`.

    Ordered by store, then postal code, then customer id: the print shop's order. Whether
    the customer opted out is in ``extra["opted_out"]``.
    """
    engine = connect(settings.database_url)
    try:
        require_schema(engine)
        batch_id, start = _find_batch(engine, batch_id)
    finally:
        engine.dispose()  # no SQLAlchemy connection while ADBC reads (engine/db.py)
    frames = _read(settings.database_url, batch_id)
    lists, offers = _prepare(frames, settings.chain_name)
    needs = _described(frames["needs"])
    return batch_id, start, _documents(lists, offers, settings.chain_name, needs)


def layout_options(settings: Settings) -> LayoutOptions:
    """The page layout from the `printing` settings (and the chain's name as the e-mails' sender)."""
    p = settings.printing
    size = PAGE_SIZES.get(p.page_size.lower())
    if size is None:
        raise ConfigError(f"printing.page_size: expected one of {', '.join(PAGE_SIZES)}, got {p.page_size!r}")
    options = LayoutOptions(
        size,
        tuple(p.aisle_order),
        float(p.barcode_module_pt),
        terms=p.terms,
        opt_out=p.opt_out,
        html_files=p.html_files,
        email_files=p.email_files,
    )
    return dataclasses.replace(options, email_from=email_sender(settings.chain_name, p.email_from))


@printing_errors()
def print_batch(
    settings: Settings, batch_id: int | None = None, out_dir: str | Path | None = None, progress: Progress | None = None
) -> dict:
    """Print a batch's lists: per-list PDFs, merged per-store PDFs and the manifest.

    Parameters
    ----------
    settings
        `database_url`, `chain_name`, `batch.out_dir` and the `printing` section are used.
    batch_id
        The batch to print; ``None`` = the latest finished one.
    out_dir
        Base directory of batch files (default `BatchSettings.out_dir`); files go to
        ``<out_dir>/<period-start>/``.
    progress
        Called as ``progress("print", lists_done, lists_total)``.

    Returns
    -------
    A summary: batch_id, period_start, dir, lists (printed), pages, pages_per_list,
    html_files, email_files, skipped_empty, skipped_opted_out, stores (one dict per merged
    file), manifest, seconds, message (one line for the terminal). A batch with no printable
    list writes no file at all: its manifest is None and its message says why.
    """
    t0 = time.perf_counter()
    options = layout_options(settings)
    batch_id, start, docs = read_documents(settings, batch_id)
    target = Path(out_dir or settings.batch.out_dir) / start.isoformat()
    opted_out = sum(1 for d in docs if d.extra.get("opted_out"))
    empty = sum(1 for d in docs if not d.printable and not d.extra.get("opted_out"))
    printable = [d for d in docs if d.printable and not d.extra.get("opted_out")]
    head = {
        "batch_id": batch_id,
        "period_start": start.isoformat(),
        "dir": str(target),
        "skipped_empty": empty,
        "skipped_opted_out": opted_out,
    }
    if not printable:  # nothing to print: no files at all, and a message that says why
        return {
            **head,
            "lists": 0,
            "pages": 0,
            "pages_per_list": {},
            "html_files": 0,
            "email_files": 0,
            "stores": [],
            "manifest": None,
            "seconds": round(time.perf_counter() - t0, 2),
            "message": (
                f"batch {batch_id} ({start.isoformat()}): nothing to print: "
                + (
                    f"{len(docs):,} lists, {empty:,} without offers, {opted_out:,} opted out"
                    if docs
                    else "it has no lists"
                )
            ),
        }
    p = settings.printing
    done = render_documents(
        printable, target, options, font_path=p.font_path, list_files=p.list_files, workers=p.workers, progress=progress
    )
    per_list = done["pages_per_list"]
    return {
        **head,
        **done,
        "seconds": round(time.perf_counter() - t0, 2),
        "message": f"batch {batch_id} ({start.isoformat()}): printed {done['lists']:,} lists on "
        f"{done['pages']:,} pages (pages per list: "
        + ", ".join(f"{k}: {v:,}" for k, v in per_list.items())
        + f"; {done['html_files']:,} HTML pages, {done['email_files']:,} e-mails written, not sent) "
        f"under {target}"
        + (f"; not printed: {empty:,} empty lists" if empty else "")
        + (f", {opted_out:,} opted out" if opted_out else ""),
    }
