"""`listwise demo`: a small synthetic chain, end to end, in a fresh SQLite database.

Generates the chain (fixtures/), imports it, then runs every stage: profiles and customer
value, the biweekly batch with its printed lists, a manufacturer extract and settlement.
Returns the lines to print: where each result is.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import importlib.util
import shutil
from pathlib import Path
from typing import Callable, Iterator

from engine.config import Settings, load_settings, resolve_secret
from engine.db import connect, init_schema
from engine.ingest import import_files

__all__ = ["run_demo", "demo_settings"]

Progress = Callable[[str, int, int], None] | None


def demo_settings(directory: Path) -> Settings:
    """Settings for a demo in `directory`: its own database, secret and batch folder."""
    base = load_settings()
    return dataclasses.replace(
        base, database_url=f"sqlite:///{directory / 'listwise.db'}", secret="",
        secret_file=str(directory / "listwise.secret"),
        batch=dataclasses.replace(base.batch, out_dir=str(directory / "batches")))


def _has(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def run_demo(directory: Path, customers: int = 2000, weeks: int = 26, seed: int = 0,
             progress: Progress = None) -> Iterator[str]:
    """Run the demo into `directory` (emptied first); yields report lines as it goes."""
    from fixtures.generator import generate

    directory = Path(directory).resolve()
    if directory.exists():
        shutil.rmtree(directory)
    data = directory / "data"
    directory.mkdir(parents=True)
    summary = generate(data, customers=customers, weeks=weeks, seed=seed, fmt="parquet",
                       progress=(lambda d, t: progress("generate", d, t)) if progress else None)
    yield f"generated {customers:,} customers x {weeks} weeks into {data}"

    settings = demo_settings(directory)
    init_schema(connect(settings.database_url))
    resolve_secret(settings, create=True)
    for kind, paths in (("stores", [data / "stores.csv"]), ("customers", [data / "customers.csv"]),
                        ("products", [data / "products.csv"]), ("transactions", [data / "transactions"]),
                        ("deals", [data / "deals"])):
        import_files(settings.database_url, kind, paths, progress=progress)
    tips = Path(__file__).resolve().parent.parent / "coupons" / "tips.csv"
    if tips.exists():
        import_files(settings.database_url, "tips", [tips])
    yield f"imported into {settings.database_url}"

    last_day = dt.date.fromisoformat(str(summary.get("last_day", summary.get("end", "")))[:10]) \
        if summary.get("last_day") or summary.get("end") else None
    as_of = (last_day + dt.timedelta(days=1)) if last_day else dt.date.today()

    if _has("engine.profiles"):
        from engine.profiles import write_customers, write_profile
        write_profile(settings, as_of, settings.cycles.window_days, directory / "profile.parquet", progress=progress)
        write_customers(settings, as_of, directory / "customers.parquet", progress=progress)
        yield f"profiles as of {as_of}: {directory / 'profile.parquet'}, {directory / 'customers.parquet'}"

    if _has("engine.batch"):
        from engine.batch import run_batch
        result = run_batch(settings, progress=progress)
        yield f"batch: {result.get('lists', '?')} lists; files under {settings.batch.out_dir}"
        if _has("printing.batch"):
            from printing.batch import print_batch
            printed = print_batch(settings, progress=progress)
            yield f"printed: {printed}"

    if _has("engine.extracts"):
        from engine.extracts import demo_extracts
        for line in demo_extracts(settings, directory):
            yield line
