"""The fault suite's chain: the sample imported and its first batch done, copied for each case.

Building it takes an import and a batch (~20 s under load), so it is built once per database
kind and module, and each case works on a copy (a file copy on SQLite, ``CREATE DATABASE ...
TEMPLATE`` on PostgreSQL). `cli` runs the real ``listwise`` command in its own process.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import pytest
import sqlalchemy as sa

from engine.batch import run_batch
from engine.config import Settings
from engine.db import Gateway, connect
from engine.ingest import import_files
from tests.conftest import fresh_database

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "fixtures" / "sample"
FIRST_PERIOD = dt.date(2025, 6, 16)  # the sample's purchases go on three weeks past it
SECRET = "fault-suite-secret"


def cli(
    url: str, *args: str, cwd: Path, fault: str | None = None, wait: bool = True, env: dict | None = None
) -> subprocess.CompletedProcess | subprocess.Popen:
    """``listwise -q --database URL ARGS`` in a new process (this tree's code); LISTWISE_FAULT=`fault`."""
    (cwd / ".scratch").mkdir(exist_ok=True)  # the test's own: another test's killed run is not this one's to sweep
    environ = {
        **os.environ,
        "PYTHONPATH": str(ROOT),
        "LISTWISE_SECRET": SECRET,
        "LISTWISE_SCRATCH": str(cwd / ".scratch"),
        **(env or {}),
    }
    environ.pop("LISTWISE_FAULT", None)
    if fault:
        environ["LISTWISE_FAULT"] = fault
    cmd = [sys.executable, "-m", "engine.cli", "-q", "--database", url, *args]
    if not wait:
        return subprocess.Popen(cmd, env=environ, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(cmd, env=environ, cwd=cwd, capture_output=True, text=True, timeout=300)


def copy_database(request, url: str, directory: Path) -> str:
    """A copy of the database at `url` (nothing may be connected to it meanwhile)."""
    u = sa.engine.make_url(url)
    with Gateway(url) as db:
        history = db.history_store().root  # the Parquet history is copied with the database
    if u.get_backend_name() == "sqlite":
        target = directory / f"copy-{uuid.uuid4().hex[:8]}.db"
        for suffix in ("", "-wal", "-shm"):
            if Path(u.database + suffix).exists():
                shutil.copy(u.database + suffix, str(target) + suffix)
        if history.is_dir():
            shutil.copytree(history, target.with_suffix(".history"))
        return f"sqlite:///{target}"
    name = f"lw_{uuid.uuid4().hex[:12]}"
    admin = connect(request.getfixturevalue("pg_server")).execution_options(isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} TEMPLATE {u.database}")
    admin.dispose()
    copy = u.set(database=name).render_as_string(hide_password=False)
    if history is not None and history.is_dir():
        shutil.copytree(history, directory / f"{name}.history")
        engine = connect(copy)
        with engine.begin() as conn:
            conn.execute(sa.text("UPDATE history_store SET path = :p"), {"p": str(directory / f"{name}.history")})
        engine.dispose()
    return copy


# Every row a batch writes, its run's bookkeeping (token, times, the summary's seconds) aside.
_BATCH_TABLES = {
    "batches": "SELECT batch_id, CAST(period_start AS TEXT), CAST(period_end AS TEXT), status FROM batches "
    "ORDER BY batch_id",
    "batch_members": "SELECT * FROM batch_members ORDER BY batch_id, customer_key",
    "lists": "SELECT * FROM lists ORDER BY list_id",
    "offers": "SELECT * FROM offers ORDER BY offer_id",
    "list_needs": "SELECT * FROM list_needs ORDER BY list_id, line_no",
    "tips": "SELECT * FROM tips ORDER BY tip_id",
    "sequences": "SELECT name, next_value FROM sequences ORDER BY name",
}


def dump_batches(url: str) -> dict[str, list]:
    """What the batches wrote, in a stable order (summaries without their timings)."""
    engine = connect(url)
    with engine.connect() as conn:
        out = {name: [tuple(r) for r in conn.execute(sa.text(sql))] for name, sql in _BATCH_TABLES.items()}
        summaries = []
        for (text,) in conn.execute(sa.text("SELECT summary_json FROM batches ORDER BY batch_id")):
            summary = json.loads(text) if text else None
            if summary:
                summary.pop("seconds", None)
            summaries.append(summary)
        out["summaries"] = summaries
    engine.dispose()
    return out


@pytest.fixture(scope="session", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def batched_chain(request, tmp_path_factory):
    """(kind, URL) of the sample chain with the batch of FIRST_PERIOD done: copy it, never change it.

    Session-scoped: the kill and race modules share it (and `second_batch`)."""
    directory = tmp_path_factory.mktemp("chain")
    url = fresh_database(request, directory, request.param)
    for kind, paths in [
        ("stores", [SAMPLE / "stores.csv"]),
        ("customers", [SAMPLE / "customers.csv"]),
        ("products", [SAMPLE / "products.csv"]),
        ("deals", [SAMPLE / "deals"]),
        ("transactions", [SAMPLE / "transactions"]),
    ]:
        import_files(url, kind, paths)
    engine = connect(url)
    from engine.chain_key import bind_secret

    bind_secret(engine, SECRET.encode())
    engine.dispose()
    run_batch(Settings(database_url=url, secret=SECRET), FIRST_PERIOD, out_dir=directory / "batches")
    return request.param, url


SECOND_PERIOD = "2025-06-30"
RUN = ("batch", "run", "--no-print", "--no-report")


@pytest.fixture(scope="session")
def second_batch(request, batched_chain, tmp_path_factory):
    """(kind, chain URL, dump after an uninterrupted plain `batch run`: the second period's batch)."""
    kind, url = batched_chain
    tmp = tmp_path_factory.mktemp("reference")
    copy = copy_database(request, url, tmp)
    done = cli(copy, *RUN, "--out", str(tmp / "out"), cwd=tmp)
    assert done.returncode == 0, done.stderr
    expected = dump_batches(copy)
    assert [b[1:] for b in expected["batches"]] == [
        (FIRST_PERIOD.isoformat(), SECOND_PERIOD, "done"),
        (SECOND_PERIOD, "2025-07-14", "done"),
    ]
    assert len(expected["lists"]) > 100 and len(expected["offers"]) > 1000  # a real batch, not an empty one
    return kind, url, expected


# hypothesis profiles of the property tests (test_import_properties.py): `faults` (default) is small and
# derandomised, so CI runs the same examples every time in well under a minute; `faults-explore`
# (HYPOTHESIS_PROFILE=faults-explore) searches many random examples. No example database is kept.
from hypothesis import HealthCheck  # noqa: E402 - grouped with its profiles
from hypothesis import settings as _hypothesis  # noqa: E402

_QUIET = [HealthCheck.function_scoped_fixture, HealthCheck.too_slow, HealthCheck.data_too_large]
_hypothesis.register_profile(
    "faults", max_examples=25, deadline=None, derandomize=True, database=None, suppress_health_check=_QUIET
)
_hypothesis.register_profile(
    "faults-explore", max_examples=400, deadline=None, database=None, suppress_health_check=_QUIET
)
_hypothesis.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "faults"))
