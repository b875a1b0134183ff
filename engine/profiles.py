"""`listwise profile` and `listwise customers`: cycles/ run on the database's history.

`profile_frames` is the pure stage the batch calls too (frames in, frames out, keyed by
customer_key); `write_profile` / `write_customers` read the database through the command's
`engine.db.Gateway` (from `engine.history.history_start`, the lookback every command
shares), map customer_key to customer_id and write Parquet or CSV by extension.

Scale: `engine.stages.run_stages` computes both frames per customer partition (customer_key % n,
``[scale] partitions``) on the executor of ``[scale] executor``, from global quantities fitted
once on a customer sample; the frames do not depend on the partitioning (see engine.stages).

p_buy_in_window: with `cycles.p_buy_model = "ranker"` (the default) it is the calibrated
probability of cycles.ranker.NextWindowRanker, fitted once on the customer sample and applied
to every partition; its renewal priors are the profile's priors. Thin histories keep the
renewal probability (see cycles.ranker).
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import polars as pl

from engine.config import Settings
from engine.db import Gateway
from engine.errors import InputError, cycles_errors
from engine.history import history_start
from engine.progress import Progress
from engine.stages import run_stages, run_store, store_value

__all__ = [
    "profile_frames",
    "profile_frame",
    "store_profile_frames",
    "write_profile",
    "write_customers",
    "history_start",
]


@cycles_errors()
def profile_frames(
    history: pl.DataFrame,
    products: pl.DataFrame | None,
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    progress: Progress | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(profile, value) frames keyed by customer_key, from history before `as_of`.

    Parameters
    ----------
    history
        engine.history line items; lines on or after `as_of` or before the lookback are ignored.
    products
        Unused today (history carries the product attributes); part of the batch's call.
    customers
        `engine.db.Gateway.customers` frame: every customer in it gets a value row, and
        household_size feeds share of wallet. None = customers present in history.
    window_days
        Window of p_buy_in_window; None = settings.cycles.window_days.

    Returns
    -------
    (polars.DataFrame, polars.DataFrame)
        The profile (cycles.profile.PROFILE_COLUMNS) and the customer value frame
        (cycles.value.VALUE_COLUMNS), both sorted by customer_key.
    """
    profile, value = run_stages(history, customers, settings, as_of, window_days, progress)
    return profile, value


@cycles_errors()
def store_profile_frames(
    db: Gateway,
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    progress: Progress | None = None,
    keys: pl.Series | None = None,
    with_value: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """`profile_frames` of the history in `db`'s store: each partition's stage reads the store's own
    part files by path (`engine.stages.run_store`); `keys`: only these customers (the batch's
    qualifying ones). The same frames as `profile_frames` of `db.history` for the same customers."""
    start = history_start(settings, as_of)
    return run_store(db, customers, settings, as_of, start, window_days, progress, with_value, keys)


@cycles_errors()
def profile_frame(
    history: pl.DataFrame,
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    progress: Progress | None = None,
) -> pl.DataFrame:
    """The profile alone (see `profile_frames`)."""
    return run_stages(history, None, settings, as_of, window_days, progress, with_value=False)[0]


def _check_out(out: Path) -> None:
    if out.suffix.lower() not in {".parquet", ".csv"}:
        raise InputError(f"{out}: output file must end in .parquet or .csv")


def _write(frame: pl.DataFrame, out: Path) -> None:
    suffix = out.suffix.lower()
    out.parent.mkdir(parents=True, exist_ok=True)
    frame.write_parquet(out) if suffix == ".parquet" else frame.write_csv(out)


def _with_ids(frame: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    ids = customers.select("customer_key", "customer_id")
    return frame.join(ids, on="customer_key", how="left", maintain_order="left").select(
        "customer_id", *[c for c in frame.columns if c != "customer_key"]
    )


@cycles_errors()
def write_profile(
    settings: Settings,
    as_of: dt.date,
    window_days: int | None,
    out: str | Path,
    progress: Progress | None = None,
    gateway: Gateway | None = None,
) -> int:
    """Write the profile (customer_id instead of customer_key) to `out`; returns its rows.

    `gateway`: the command's database (`engine.db.Gateway`); None: one from the settings.
    """
    out = Path(out)
    _check_out(out)
    with Gateway.using(gateway or settings.database_url) as db:
        db.require()  # before reading: an uninitialised database is a one-line error
        customers = db.customers()
        # the partitions read the store's part files themselves: history is never loaded whole here
        profile = store_profile_frames(db, None, settings, as_of, window_days, progress, with_value=False)[0]
    _write(_with_ids(profile, customers), out)
    return profile.height


@cycles_errors()
def write_customers(
    settings: Settings,
    as_of: dt.date,
    out: str | Path,
    progress: Progress | None = None,
    gateway: Gateway | None = None,
) -> int:
    """Write the customer value frame (customer_id instead of customer_key) to `out`; returns its rows.

    `gateway`: the command's database (`engine.db.Gateway`); None: one from the settings.
    """
    out = Path(out)
    _check_out(out)
    with Gateway.using(gateway or settings.database_url) as db:
        db.require()  # before reading: an uninitialised database is a one-line error
        customers = db.customers()
        # partition by partition (settings' scale): history is never loaded whole here
        value = store_value(db, customers, settings, as_of, progress)
    _write(_with_ids(value, customers), out)
    return value.height
