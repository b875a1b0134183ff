"""A generated chain with planted truth (fixed seed), shared by the cycles tests."""

from __future__ import annotations

import datetime as dt

import polars as pl
import pytest

from engine.history import history_from_files
from engine.sample_chain import generate

WEEKS = 52


@pytest.fixture(scope="session")
def chain(tmp_path_factory):
    """(history, products, customers, pairs truth, households truth) of 1500 customers x 52 weeks."""
    out = tmp_path_factory.mktemp("chain")
    generate(out, customers=1500, weeks=WEEKS, seed=3, fmt="parquet")
    history, products, customers = history_from_files(out)
    ids = customers.select("customer_key", "customer_id")
    pairs = pl.read_parquet(out / "truth" / "pairs.parquet").join(ids, on="customer_id")
    households = pl.read_parquet(out / "truth" / "households.parquet").join(ids, on="customer_id")
    return history, products, customers, pairs, households


@pytest.fixture(scope="session")
def end_of_history(chain) -> dt.date:
    return chain[0]["day"].max() + dt.timedelta(days=1)
