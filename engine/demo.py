"""`listwise demo`: a small synthetic chain, end to end, in a fresh SQLite database.

Generates the chain (engine.sample_chain), imports it, then runs every stage: profiles and customer
value, the biweekly batch with its printed lists, a manufacturer extract and settlement.
Returns the lines to print: where each result is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import json
import shutil
from collections.abc import Iterator
from pathlib import Path

from engine.chain_key import bind_secret
from engine.config import Settings, load_settings, resolve_secret
from engine.db import Gateway, init_schema
from engine.errors import StateError
from engine.ingest import import_files
from engine.progress import Progress, labelled

__all__ = ["run_demo", "demo_settings", "simulate_period", "list_outcomes", "demo_extracts"]


def demo_settings(directory: Path) -> Settings:
    """Settings for a demo in `directory`: its own database, secret and batch folder."""
    base = load_settings()
    return dataclasses.replace(
        base,
        database_url=f"sqlite:///{directory / 'listwise.db'}",
        secret="",
        secret_file=str(directory / "listwise.secret"),
        batch=dataclasses.replace(base.batch, out_dir=str(directory / "batches")),
    )


# Written into a demo's directory: the top-level names the demo made there, one a line. A
# later demo removes those and nothing else; a non-empty directory without it is refused.
MARKER = ".listwise-demo"
_MADE = (
    "data",
    "listwise.db",
    "listwise.db-wal",
    "listwise.db-shm",
    "listwise.db-journal",
    "listwise.secret",
    "batches",
    "profile.parquet",
    "customers.parquet",
)


def _claim(directory: Path) -> set[str]:
    """Make `directory` ready for a demo; the names that were there before (kept).

    A missing or empty directory is used; one a previous demo made has what that demo made
    removed (its MARKER lists it), the rest kept; any other non-empty directory is refused.
    """
    if directory.exists() and not directory.is_dir():
        raise StateError(f"{directory} is not a directory")
    marker = directory / MARKER
    if directory.exists() and any(directory.iterdir()) and not marker.exists():
        raise StateError(
            f"{directory} is not empty and no demo made it: the demo would mix its files with "
            "yours; choose a new or empty --dir"
        )
    if marker.exists():
        for name in marker.read_text().splitlines():
            path = directory / name.strip()
            if not name.strip() or path.parent != directory or name.strip() in (".", "..", MARKER):
                continue  # only plain names inside the directory
            if path.is_dir() and not path.is_symlink():
                shutil.rmtree(path)
            elif path.exists() or path.is_symlink():
                path.unlink()
    directory.mkdir(parents=True, exist_ok=True)
    return {p.name for p in directory.iterdir()} - {MARKER}


def _mark(directory: Path, kept: set[str], names: set[str]) -> None:
    (directory / MARKER).write_text("".join(f"{n}\n" for n in sorted(names - kept - {MARKER})))


def run_demo(
    directory: Path, customers: int = 2000, weeks: int = 26, seed: int = 0, progress: Progress | None = None
) -> Iterator[str]:
    """Run the demo into `directory`; yields report lines as it goes.

    `directory` must be new, empty, or a previous demo's: then what that demo made is
    replaced and anything else there is left alone (see `MARKER`).
    """
    directory = Path(directory).resolve()
    kept = _claim(directory)
    _mark(directory, kept, set(_MADE))  # before anything is made: a killed demo is still known
    try:
        yield from _run_demo(directory, customers, weeks, seed, progress)
    finally:
        _mark(directory, kept, set(_MADE) | {p.name for p in directory.iterdir()})


def _run_demo(directory: Path, customers: int, weeks: int, seed: int, progress: Progress | None) -> Iterator[str]:
    from engine.sample_chain import generate

    data = directory / "data"
    summary = generate(
        data, customers=customers, weeks=weeks, seed=seed, fmt="parquet", progress=labelled(progress, "generate")
    )
    yield f"generated {customers:,} customers x {weeks} weeks into {data}"

    settings = demo_settings(directory)
    with Gateway(settings.database_url) as db:  # the demo's one way into its database
        yield from _run_stages(directory, settings, db, summary, seed, progress)


def _run_stages(
    directory: Path, settings: Settings, db: Gateway, summary: dict, seed: int, progress: Progress | None
) -> Iterator[str]:
    data = directory / "data"
    init_schema(db.engine)
    bind_secret(db.engine, resolve_secret(settings, create=True))
    for kind, paths in (
        ("stores", [data / "stores.csv"]),
        ("customers", [data / "customers.csv"]),
        ("products", [data / "products.csv"]),
        ("transactions", [data / "transactions"]),
        ("deals", [data / "deals"]),
    ):
        import_files(db, kind, paths, progress=progress)
    tips = Path(__file__).resolve().parent.parent / "coupons" / "tips.csv"
    if tips.exists():
        import_files(db, "tips", [tips])
    yield f"imported into {settings.database_url}"

    from engine.profiles import write_customers, write_profile

    as_of = dt.date.fromisoformat(summary["last_day"]) + dt.timedelta(days=1)
    write_profile(
        settings, as_of, settings.cycles.window_days, directory / "profile.parquet", progress=progress, gateway=db
    )
    write_customers(settings, as_of, directory / "customers.parquet", progress=progress, gateway=db)
    yield f"profiles as of {as_of}: {directory / 'profile.parquet'}, {directory / 'customers.parquet'}"

    from engine.batch import format_summary, run_batch
    from engine.printjob import print_batch

    batch = run_batch(settings, progress=progress, gateway=db)
    yield format_summary(batch)
    printed = print_batch(settings, batch_id=batch["batch_id"], progress=progress)
    per_list = ", ".join(f"{k} page{'s' if k != '1' else ''}: {v:,}" for k, v in printed["pages_per_list"].items())
    yield (
        f"printed {printed['lists']:,} lists on {printed['pages']:,} pages ({per_list}; "
        f"{printed['email_files']:,} e-mails written, not sent); print-shop files and manifest under {printed['dir']}"
    )

    shopped = simulate_period(settings, batch["batch_id"], seed=seed, gateway=db)
    yield (
        f"checkout: {shopped['baskets']:,} baskets of the period through the checkout library, "
        f"{shopped['redemptions']:,} offers redeemed"
    )
    outcome = list_outcomes(settings, batch["batch_id"], gateway=db)
    (Path(printed["dir"]) / "outcomes.json").write_text(json.dumps(outcome, indent=2) + "\n", encoding="utf-8")
    yield (
        f"lists in the simulated fortnight: {outcome['needs_bought_share']:.1%} of {outcome['needs_lines']:,} "
        f"needs lines bought (their category), {outcome['specials_bought_share']:.1%} of "
        f"{outcome['specials']:,} specials bought (the product; {outcome['specials_category_bought_share']:.1%} "
        f"their category)"
    )

    yield from demo_extracts(settings, directory)

    from engine.report import write_report

    report = write_report(settings, directory / "report", batch["batch_id"], gateway=db)
    yield (
        f"report of batch {report['batch_id']} with the results of its fortnight: {report['html']} "
        f"and {report['pdf']} ({report['pages']} pages)"
    )


def list_outcomes(settings: Settings, batch_id: int, gateway: Gateway | None = None) -> dict:
    """What the batch's customers bought in the period, line by line of their lists.

    Returns needs_lines, needs_bought_share (the line's category bought by the list's customer
    in the period), specials (offers but rewards), specials_bought_share (the offered product
    bought) and specials_category_bought_share (its category bought), from the period's history.
    `gateway`: the command's database (`engine.db.Gateway`); None: one from the settings.
    """
    import polars as pl

    b = int(batch_id)
    i, s = pl.Int64, pl.String
    with Gateway.using(gateway or settings.database_url) as g, g.reading() as db:
        start, end = _period(db, b)
        needs = db.read(
            f"SELECT l.customer_key, n.category FROM list_needs n JOIN lists l ON l.list_id = n.list_id "
            f"WHERE l.batch_id = {b}",
            {"customer_key": i, "category": s},
        )
        specials = db.read(
            f"SELECT l.customer_key, o.product_key, o.category FROM offers o "
            f"JOIN lists l ON l.list_id = o.list_id WHERE l.batch_id = {b} AND o.kind <> 'reward'",
            {"customer_key": i, "product_key": i, "category": s},
        )
        # the period's lines: history's one read (the Parquet parts and the checkout's baskets)
        bought = (
            db.history(end, start)
            .filter(pl.col("quantity") > 0)
            .select("customer_key", "product_key", "category")
            .unique()
        )

    def share(lines: pl.DataFrame, on: list[str]) -> float:
        if not lines.height:
            return 0.0
        hit = lines.join(bought.select(on).unique(), on=on, how="semi").height
        return round(hit / lines.height, 4)

    return {
        "batch_id": b,
        "needs_lines": needs.height,
        "needs_bought_share": share(needs, ["customer_key", "category"]),
        "specials": specials.height,
        "specials_bought_share": share(specials, ["customer_key", "product_key"]),
        "specials_category_bought_share": share(specials, ["customer_key", "category"]),
    }


def demo_extracts(settings: Settings, directory: str | Path) -> Iterator[str]:
    """The demo's extract and settlement, of the manufacturer with most funded offers.

    The period runs from four weeks before the first offer (the demo's history ends where its
    batch begins, so the category insight needs those weeks) to the last offer's end; files go
    under ``<directory>/extracts/<manufacturer>/``. Yields report lines.
    """
    import time

    import polars as pl

    from engine.db import bulk_session
    from engine.extracts import write_extract, write_settlement
    from engine.values import dollars

    with bulk_session(settings.database_url, write=False) as db:
        top = db.read(
            "SELECT funder, COUNT(*) AS n, MIN(valid_from) AS first_day, MAX(valid_to) AS last_day "
            "FROM offers WHERE funder <> 'retailer' GROUP BY funder ORDER BY n DESC, funder",
            {"funder": pl.String, "n": pl.Int64, "first_day": pl.Date, "last_day": pl.Date},
        )
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
    yield (
        f"extract for {maker} ({first} to {last}, groups of {manifest['min_group']}+ households): "
        + ", ".join(f"{t} {n} rows" for t, n in rows.items())
        + f" ({seconds:.1f} s); {target}"
    )
    summary = write_settlement(settings, maker, first, last, target)
    yield (
        f"settlement for {maker}: {summary['redemptions']} redemptions, "
        f"{dollars(summary['amount_due_cents'])} due; {target / 'settlement.pdf'}"
    )


def simulate_period(
    settings: Settings, batch_id: int, seed: int = 0, lift: float = 0.15, gateway: Gateway | None = None
) -> dict:
    """The fortnight after the batch, shopped through the real checkout (demo only).

    Every member of the batch, treated or hold-out, shops once in the period with
    probability 0.7, buying each of up to 10 products from their last 8 weeks with
    probability 0.4; treated customers scan their list and also buy each offered product
    with probability 0.35 + `lift` (hold-out customers 0.35 on the same products they were
    not offered). That plants a measurable lift for the manufacturer extract. `gateway`: the
    command's database (`engine.db.Gateway`); None: one from the settings.
    """
    with Gateway.using(gateway or settings.database_url) as db:
        return _simulate_period(settings, db, batch_id, seed, lift)


def _period(db: Gateway, batch_id: int) -> tuple[dt.date, dt.date]:
    """(period_start, period_end) of a batch; `StateError` when there is no such batch."""
    row = db.batch(batch_id)
    if row is None:
        raise StateError(f"no batch {batch_id}")
    return row["period_start"], row["period_end"]


def _simulate_period(settings: Settings, g: Gateway, batch_id: int, seed: int, lift: float) -> dict:
    import numpy as np
    import polars as pl

    from engine.checkout import checkout
    from engine.codes import make_code

    secret = resolve_secret(settings)
    start, _ = _period(g, batch_id)
    with g.reading() as db:
        members = db.read(
            f"SELECT m.customer_key, m.grp, l.list_id, c.card_number FROM batch_members m "
            f"JOIN customers c ON c.customer_key = m.customer_key "
            f"LEFT JOIN lists l ON l.batch_id = m.batch_id AND l.customer_key = m.customer_key "
            f"WHERE m.batch_id = {int(batch_id)} ORDER BY m.customer_key",
            {"customer_key": pl.Int64, "grp": pl.String, "list_id": pl.Int64, "card_number": pl.String},
        )
        offered = db.read(
            f"SELECT l.customer_key, p.sku, p.regular_price_cents FROM offers o "
            f"JOIN lists l ON l.list_id = o.list_id JOIN products p ON p.product_key = o.product_key "
            f"WHERE l.batch_id = {int(batch_id)}",
            {"customer_key": pl.Int64, "sku": pl.String, "regular_price_cents": pl.Int64},
        )
        history = db.history(end=start, start=start - dt.timedelta(weeks=8))
    usual = (
        history.filter(pl.col("quantity") > 0)
        .group_by("customer_key", "sku")
        .agg(pl.col("regular_price_cents").first(), pl.len().alias("n"))
        .sort(["customer_key", "n", "sku"], descending=[False, True, False])
        .group_by("customer_key", maintain_order=True)
        .head(10)
    )
    rng = np.random.default_rng([seed, batch_id])
    members = members.with_columns(
        pl.col("customer_key").cast(pl.Int64),
        pl.Series("shops", rng.random(members.height) < 0.7),
        pl.Series("day", rng.integers(0, 14, members.height)),
    )
    treated = members.filter(pl.col("grp") == "treated").select("customer_key")
    # hold-out customers get the offers they would have had, bought at the untreated rate
    wanted = pl.concat(
        [
            usual.select("customer_key", "sku", "regular_price_cents", pl.lit(0.4).alias("p")),
            offered.with_columns(pl.col("customer_key").cast(pl.Int64), pl.col("regular_price_cents").cast(pl.Int64))
            .join(treated, on="customer_key", how="inner")
            .select("customer_key", "sku", "regular_price_cents", pl.lit(0.35 + lift).alias("p")),
        ]
    ).unique(["customer_key", "sku"], keep="last", maintain_order=True)
    wanted = wanted.filter(pl.Series(rng.random(wanted.height)) < pl.col("p"))
    engine = g.engine
    baskets = redeemed = 0
    by_customer = {k: g for (k,), g in wanted.group_by("customer_key")}
    for key, grp, list_id, card, shops, day in members.iter_rows():
        items = by_customer.get(key)
        if not shops or items is None:
            continue
        request = {
            "store_id": "S01",
            "lane": 1 + baskets % 6,
            "basket_id": f"DEMO-{batch_id}-{key}",
            "timestamp": f"{start + dt.timedelta(days=int(day))}T11:00:00",
            "codes": [make_code(int(list_id), secret)] if grp == "treated" and list_id is not None else [],
            "card_number": card if grp == "holdout" else None,
            "items": [
                {"sku": sku, "quantity": 1, "amount_cents": int(price)}
                for sku, price in items.select("sku", "regular_price_cents").iter_rows()
            ],
        }
        # the simulated lanes shop in the (past) period: the server's clock is the basket's time
        answer = checkout(
            engine,
            secret,
            request,
            settings.checkout,
            now=dt.datetime.fromisoformat(request["timestamp"]),
            timezone=settings.timezone,
        )
        baskets += 1
        redeemed += sum(1 for line in answer["lines"] if line.get("offer_id"))
    return {"baskets": baskets, "redemptions": redeemed}
