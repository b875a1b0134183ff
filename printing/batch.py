"""Print a batch: one PDF per list, one merged PDF per store, and the print shop's manifest.

``print_batch(settings)`` reads the batch's active lists with their offers, products,
customers, stores and tips, and writes under ``<out_dir>/<period-start>/``:

* ``lists/<code>.pdf``: each list on its own, fonts embedded (`PrintSettings.list_files`);
* ``print/store-<store_id>.pdf``: every list of a store, ordered by the customer's postal
  code (then customer id), fonts embedded once for the whole file;
* ``manifest.csv``: one row per printed list: list_code, customer_id, store_id, pages, file,
  sha256 (of the list's own PDF), merged_file, merged_first_page (1-based);
* ``print/stores.csv``: one row per merged file: store_id, lists, pages, file, sha256;
* ``html/<code>.html``: each printed list as a self-contained web page (`printing.digital`,
  `PrintSettings.html_files`), and ``mail/<code>.eml``: the same list as an e-mail message for
  each customer with an address (`PrintSettings.email_files`), written, not sent. Opted-out
  customers get neither, as they get no paper list; the manifest names both files.

A list with no offer and no reward is not printed, nor is the list of a customer who opted
out; a batch with nothing left to print (no lists, or none of them printable) writes no file
and its summary's message says so. Every frame read has an explicit schema, so a batch of
any mix of offer kinds (rewards only: no category, product or date) prints. A list without a store (the batch does not set one) goes with the customer's home
store: the store of most of their baskets. Stores are rendered in parallel processes,
largest first (`PrintSettings.workers`); the output is byte-for-byte the same whatever the
number of workers (reportlab's invariant mode), so the checksums are reproducible.
"""

from __future__ import annotations

import csv
import dataclasses
import datetime as dt
import hashlib
import io
import multiprocessing as mp
import os
import re
import time
from pathlib import Path
from typing import Callable

import polars as pl
import sqlalchemy as sa

from engine.config import Settings
from engine.db import bulk_session, connect, require_schema
from engine.errors import StateError
from printing.digital import email_sender, list_email, list_html
from printing.document import ListDocument, NeedLine, OfferLine, RewardLine
from printing.reasons import plain_reason
from printing.fonts import load_fonts
from printing.layout import LayoutOptions, draw_list, new_canvas

__all__ = ["print_batch", "read_documents", "render_store", "MANIFEST_COLUMNS"]

Progress = Callable[[str, int, int], None]
MANIFEST_COLUMNS = ("list_code", "customer_id", "store_id", "pages", "file", "sha256",
                    "merged_file", "merged_first_page", "html_file", "email_file")
_NO_STORE = "none"
_MIN_PARALLEL = 200          # fewer lists than this: render in this process (a pool costs ~0.1 s)


def _find_batch(engine: sa.Engine, batch_id: int | None) -> tuple[int, dt.date]:
    with engine.connect() as conn:
        if batch_id is None:
            row = conn.execute(sa.text("SELECT batch_id, period_start FROM batches WHERE status = 'done' "
                                       "ORDER BY period_start DESC LIMIT 1")).first()
            if row is None:
                raise StateError("no finished batch to print: run 'listwise batch run' first")
        else:
            row = conn.execute(sa.text("SELECT batch_id, period_start, status FROM batches WHERE batch_id = :b"),
                               {"b": batch_id}).first()
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
_HOME_SQL = """
SELECT b.customer_key, b.store_id, COUNT(*) AS n
FROM baskets b WHERE b.customer_key IN (SELECT customer_key FROM lists WHERE batch_id = {b})
GROUP BY b.customer_key, b.store_id
"""


_S, _I, _D = pl.String, pl.Int64, pl.Date
_SCHEMAS = {     # every column typed, so that one with no values is never mistyped (issue 10)
    "lists": {"list_id": _I, "code": _S, "customer_key": _I, "store_id": _S, "valid_from": _D, "valid_to": _D,
              "tip_id": _I, "customer_id": _S, "card_number": _S, "first_name": _S, "last_name": _S,
              "address_line1": _S, "address_line2": _S, "city": _S, "state": _S, "postal_code": _S,
              "opted_out": pl.Boolean, "email": _S},
    "offers": {"list_id": _I, "line_no": _I, "kind": _S, "category": _S, "discount_cents": _I,
               "min_spend_cents": _I, "max_uses": _I, "valid_to": _D, "expected_on": _D, "description": _S,
               "size": _S, "department": _S, "regular_price_cents": _I, "reason": _S, "volume_tier": _S,
               "brand": _S, "brand_type": _S, "maker": _S},
    "needs": {"list_id": _I, "line_no": _I, "category": _S, "expected_on": _D, "interval_days": _I,
              "description": _S, "size": _S, "department": _S, "regular_price_cents": _I},
    "home": {"customer_key": _I, "store_id": _S, "n": _I},
    "stores": {"store_id": _S, "name": _S, "address": _S, "city": _S, "state": _S, "postal_code": _S},
    "tips": {"tip_id": _I, "title": _S, "body": _S},
}


def _read(url: str, batch_id: int) -> dict[str, pl.DataFrame]:
    b = int(batch_id)
    sql = {"lists": _LISTS_SQL.format(b=b), "offers": _OFFERS_SQL.format(b=b), "home": _HOME_SQL.format(b=b),
           "needs": _NEEDS_SQL.format(b=b),
           "stores": "SELECT store_id, name, address, city, state, postal_code FROM stores",
           "tips": "SELECT tip_id, title, body FROM tips"}
    with bulk_session(url, write=False) as db:
        return {name: db.read(sql[name], schema) for name, schema in _SCHEMAS.items()}


def _text(col: str) -> pl.Expr:
    return pl.col(col).cast(pl.String).fill_null("").str.strip_chars()


def _city_line(prefix: str = "") -> pl.Expr:
    """'City, ST 12345' from the city, state and postal_code columns (empty parts left out)."""
    city, state, postal = _text(f"{prefix}city"), _text(f"{prefix}state"), _text(f"{prefix}postal_code")
    st_zip = pl.concat_str([state, postal], separator=" ").str.strip_chars()
    return (pl.when(city != "").then(pl.concat_str([city, st_zip], separator=", ")).otherwise(st_zip)
            .str.strip_chars(", "))


def _described(frame: pl.DataFrame) -> pl.DataFrame:
    """`frame` with description (the product's, size added unless it is in it; else the category)
    and department (else the category) ready to print."""
    has_size = (_text("size") != "") & ~_text("description").str.to_lowercase().str.contains(
        _text("size").str.to_lowercase(), literal=True)
    description = pl.when(has_size).then(
        pl.concat_str([_text("description"), _text("size")], separator=" ")).otherwise(_text("description"))
    return frame.with_columns(
        description=pl.when(_text("description") != "").then(description)
        .otherwise(_text("category").str.to_titlecase()),
        department=pl.coalesce(pl.col("department"), pl.col("category").str.to_titlecase()),
    )


def _prepare(frames: dict[str, pl.DataFrame], chain_name: str) -> tuple[pl.DataFrame, pl.DataFrame]:
    """Lists (one row each, addresses and store lines composed) and offers, print-ready."""
    home = (frames["home"].sort(["customer_key", "n", "store_id"], descending=[False, True, False])
            .group_by("customer_key", maintain_order=True).first()
            .select("customer_key", pl.col("store_id").alias("home_store")))
    stores = frames["stores"].select(
        "store_id",
        store_name=pl.when(_text("name") != "").then(_text("name")).otherwise(pl.lit(chain_name)),
        store_street=_text("address"), store_city=_city_line(),
    )
    name = pl.concat_str([_text("first_name"), _text("last_name")], separator=" ").str.strip_chars()
    lists = (
        frames["lists"]
        .join(home, on="customer_key", how="left")
        .with_columns(store_id=pl.coalesce("store_id", "home_store"))
        .join(stores, on="store_id", how="left")
        .join(frames["tips"], on="tip_id", how="left")
        .with_columns(
            name_line=name, street=_text("address_line1"), street2=_text("address_line2"),
            city_line=_city_line(), postal_code=_text("postal_code"),
            opted_out=pl.col("opted_out").fill_null(False),
        )
        .sort(["store_id", "postal_code", "customer_id"], nulls_last=True)
    )
    offers = _described(frames["offers"]).sort("list_id", "line_no")
    return lists, offers


def _documents(lists: pl.DataFrame, offers: pl.DataFrame, chain_name: str,
               needs: pl.DataFrame | None = None) -> list[ListDocument]:
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
    for o in offers.iter_rows(named=True):          # object construction: no frame equivalent
        if o["kind"] == "reward":
            rewards.setdefault(o["list_id"], []).append(
                RewardLine(int(o["discount_cents"]), o["min_spend_cents"], int(o["max_uses"]), o["valid_to"]))
            continue
        need = need_rows.get(o["list_id"], {}).get(o["category"])
        if need is not None:
            covered.setdefault(o["list_id"], set()).add(o["category"])
        expected = o["expected_on"] or (need["expected_on"] if need else None)
        lines.setdefault(o["list_id"], []).append(OfferLine(
            department=o["department"], description=o["description"],
            usual_price_cents=o["regular_price_cents"], discount_cents=int(o["discount_cents"]),
            max_uses=int(o["max_uses"]), valid_to=o["valid_to"], expected_on=expected,
            kind=o["kind"], reason=plain_reason(
                o["kind"], o["reason"], category=o["category"], volume_tier=o["volume_tier"],
                brand_type=o["brand_type"], brand=o["brand"], maker=o["maker"],
                interval_days=need["interval_days"] if need else None, expected_on=o["expected_on"])))
    need_lines: dict[int, list[NeedLine]] = {}
    for list_id, by_category in need_rows.items():
        done = covered.get(list_id, set())
        need_lines[list_id] = [NeedLine(n["department"], n["description"], n["regular_price_cents"], n["expected_on"],
                                        n["category"]) for c, n in by_category.items() if c not in done]
    docs = []
    for r in lists.iter_rows(named=True):
        address = tuple(x for x in (r["name_line"], r["street"], r["street2"], r["city_line"]) if x)
        store = tuple(x for x in (r["store_name"], r["store_street"], r["store_city"]) if x)
        docs.append(ListDocument(
            list_id=int(r["list_id"]), code=str(r["code"]), chain_name=chain_name, store_id=r["store_id"],
            store_lines=store, customer_id=str(r["customer_id"]), address_lines=address,
            postal_code=r["postal_code"], card_number=r["card_number"],
            valid_from=r["valid_from"], valid_to=r["valid_to"],
            offers=tuple(lines.get(r["list_id"], ())), rewards=tuple(rewards.get(r["list_id"], ())),
            tip_title=r["title"], tip_body=r["body"], needs=tuple(need_lines.get(r["list_id"], ())),
            email=(r["email"] or "").strip() or None,
            extra={"opted_out": bool(r["opted_out"])},
        ))
    return docs


def read_documents(settings: Settings, batch_id: int | None = None) -> tuple[int, dt.date, list[ListDocument]]:
    """The batch's id, period start and every active list as a `ListDocument`.

    Ordered by store, then postal code, then customer id: the print shop's order.
    """
    engine = connect(settings.database_url)
    require_schema(engine)
    batch_id, start = _find_batch(engine, batch_id)
    engine.dispose()                 # no SQLAlchemy connection while ADBC reads (engine/db.py)
    frames = _read(settings.database_url, batch_id)
    lists, offers = _prepare(frames, settings.chain_name)
    needs = _described(frames["needs"])
    return batch_id, start, _documents(lists, offers, settings.chain_name, needs)


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or "_"


_COUNTER = None


def _init_worker(counter) -> None:  # noqa: ANN001 - a multiprocessing Value
    global _COUNTER
    _COUNTER = counter


def render_store(store_id: str, docs: list[ListDocument], target: Path, options: LayoutOptions,
                 font_path: str = "", list_files: bool = True) -> dict:
    """Render one store's lists: the merged file and (with `list_files`) one file per list.

    Returns the store's row of ``print/stores.csv`` with its manifest rows under "rows".
    """
    fonts = load_fonts(font_path)
    merged_rel = Path("print") / f"store-{_safe(store_id)}.pdf"
    merged = new_canvas(str(target / merged_rel), options, fonts.primary)
    rows, page = [], 1
    for i, doc in enumerate(docs):
        first = page
        pages = draw_list(merged, doc, fonts, options)
        page += pages
        file_rel, digest = "", ""
        if list_files:
            buf = io.BytesIO()
            own = new_canvas(buf, options, fonts.primary)
            draw_list(own, doc, fonts, options)
            own.save()
            data = buf.getvalue()
            file_rel = str(Path("lists") / f"{doc.code}.pdf")
            (target / file_rel).write_bytes(data)
            digest = hashlib.sha256(data).hexdigest()
        html_rel = email_rel = ""
        if options.html_files:
            html_rel = str(Path("html") / f"{doc.code}.html")
            (target / html_rel).write_text(list_html(doc, options), encoding="utf-8")
        if options.email_files:
            message = list_email(doc, options, options.email_from)
            if message is not None:
                email_rel = str(Path("mail") / f"{doc.code}.eml")
                (target / email_rel).write_bytes(message)
        rows.append({"list_code": doc.code, "customer_id": doc.customer_id, "store_id": store_id,
                     "pages": pages, "file": file_rel, "sha256": digest,
                     "merged_file": str(merged_rel), "merged_first_page": first,
                     "html_file": html_rel, "email_file": email_rel})
        if _COUNTER is not None and (i + 1) % 50 == 0:
            with _COUNTER.get_lock():
                _COUNTER.value += 50
    merged.save()
    if _COUNTER is not None:
        with _COUNTER.get_lock():
            _COUNTER.value += len(docs) % 50
    data = (target / merged_rel).read_bytes()
    return {"store_id": store_id, "lists": len(docs), "pages": page - 1, "file": str(merged_rel),
            "sha256": hashlib.sha256(data).hexdigest(), "bytes": len(data), "rows": rows}


def _render_job(job: tuple) -> dict:
    return render_store(*job)


def render_documents(docs: list[ListDocument], target: Path, options: LayoutOptions, *, font_path: str = "",
                     list_files: bool = True, workers: int = 0,
                     progress: Progress | None = None) -> list[dict]:
    """Render printable `docs` grouped by store into `target`; returns the stores' results.

    `docs` must already be in print order. Stores go to `workers` processes (0 = one per
    core), largest first; a small batch is rendered in this process.
    """
    (target / "print").mkdir(parents=True, exist_ok=True)
    if list_files:
        (target / "lists").mkdir(parents=True, exist_ok=True)
    by_store: dict[str, list[ListDocument]] = {}
    for doc in docs:
        by_store.setdefault(doc.store_id or _NO_STORE, []).append(doc)
    jobs = sorted(((s, d, target, options, font_path, list_files) for s, d in by_store.items()),
                  key=lambda job: -len(job[1]))
    if not jobs:
        return []
    if options.html_files:
        (target / "html").mkdir(parents=True, exist_ok=True)
    if options.email_files:
        (target / "mail").mkdir(parents=True, exist_ok=True)
    workers = workers or os.cpu_count() or 1
    total = len(docs)
    if workers == 1 or len(jobs) == 1 or total < _MIN_PARALLEL:
        results, done = [], 0
        for job in jobs:
            results.append(_render_job(job))
            done += len(job[1])
            if progress:
                progress("print", done, total)
    else:
        load_fonts(font_path)                         # parse the fonts once, before forking
        ctx = mp.get_context("fork")
        counter = ctx.Value("q", 0)
        with ctx.Pool(min(workers, len(jobs)), initializer=_init_worker, initargs=(counter,)) as pool:
            pending = pool.map_async(_render_job, jobs, chunksize=1)
            while not pending.ready():
                pending.wait(0.5)
                if progress:
                    progress("print", min(counter.value, total), total)
            results = pending.get()
        if progress:
            progress("print", total, total)
    return sorted(results, key=lambda r: r["store_id"])


def print_batch(settings: Settings, batch_id: int | None = None, out_dir: str | Path | None = None,
                progress: Progress | None = None) -> dict:
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
    A summary: batch_id, period_start, dir, lists (printed), pages, skipped_empty,
    skipped_opted_out, stores (one dict per merged file), manifest, seconds, message (one
    line for the terminal). A batch with no printable list writes no file at all: its
    manifest is None and its message says why.
    """
    t0 = time.perf_counter()
    options = LayoutOptions.from_settings(settings.printing)
    options = dataclasses.replace(options, email_from=email_sender(settings.chain_name, options.email_from))
    batch_id, start, docs = read_documents(settings, batch_id)
    target = Path(out_dir or settings.batch.out_dir) / start.isoformat()
    opted_out = sum(1 for d in docs if d.extra.get("opted_out"))
    empty = sum(1 for d in docs if not d.printable and not d.extra.get("opted_out"))
    printable = [d for d in docs if d.printable and not d.extra.get("opted_out")]
    if not printable:         # nothing to print: no files at all, and a message that says why
        return {
            "batch_id": batch_id, "period_start": start.isoformat(), "dir": str(target), "lists": 0, "pages": 0,
            "pages_per_list": {}, "html_files": 0, "email_files": 0,
            "skipped_empty": empty, "skipped_opted_out": opted_out, "stores": [], "manifest": None,
            "seconds": round(time.perf_counter() - t0, 2),
            "message": (f"batch {batch_id} ({start.isoformat()}): nothing to print: "
                        + (f"{len(docs):,} lists, {empty:,} without offers, {opted_out:,} opted out"
                           if docs else "it has no lists")),
        }
    results = render_documents(printable, target, options, font_path=settings.printing.font_path,
                               list_files=settings.printing.list_files, workers=settings.printing.workers,
                               progress=progress)
    rows = sorted((row for r in results for row in r.pop("rows")),
                  key=lambda row: (row["store_id"], row["merged_first_page"]))
    manifest = target / "manifest.csv"
    with manifest.open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=MANIFEST_COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    with (target / "print" / "stores.csv").open("w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=("store_id", "lists", "pages", "file", "sha256"),
                                extrasaction="ignore")
        writer.writeheader()
        writer.writerows(results)
    pages = sum(r["pages"] for r in results)
    per_list: dict[int, int] = {}
    for row in rows:
        per_list[int(row["pages"])] = per_list.get(int(row["pages"]), 0) + 1
    return {
        "batch_id": batch_id, "period_start": start.isoformat(), "dir": str(target),
        "lists": len(printable), "pages": pages,
        "pages_per_list": {str(k): per_list[k] for k in sorted(per_list)},
        "html_files": sum(1 for row in rows if row["html_file"]),
        "email_files": sum(1 for row in rows if row["email_file"]),
        "skipped_empty": empty, "skipped_opted_out": opted_out,
        "stores": results, "manifest": str(manifest), "seconds": round(time.perf_counter() - t0, 2),
        "message": f"batch {batch_id} ({start.isoformat()}): printed {len(printable):,} lists on {pages:,} pages "
                   f"(pages per list: " + ", ".join(f"{k}: {v:,}" for k, v in sorted(per_list.items()))
                   + f"; {sum(1 for row in rows if row['html_file']):,} HTML pages, "
                   f"{sum(1 for row in rows if row['email_file']):,} e-mails written, not sent) under {target}"
                   + (f"; not printed: {empty:,} empty lists" if empty else "")
                   + (f", {opted_out:,} opted out" if opted_out else ""),
    }
