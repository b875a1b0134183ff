"""Import benchmark: `listwise import transactions` into the history, and the batch's read of it.

Two chains: a generated one of about N line items (--lines), and, with --real WORK, the real
panel (The Complete Journey, the `bench` extra; converted as benchmarks/real_chain.py does, 1.3M
lines before the cutoff). For each database (SQLite; PostgreSQL with --postgres URL, or
``--postgres auto`` for a throw-away cluster as the tests start) it prints the median of
--repeat runs of: the import into a fresh database (validated lines/s), the re-import of the
same files (adds nothing), and the batch's history read (`Gateway.history` over the window
`engine.history.history_start` gives, as `listwise batch run` reads it), with this process's CPU
seconds beside the wall clock (on a shared machine the CPU time moves less than the wall clock).

The script uses only entry points every version has, so the same file measures an older tree:

    .venv/bin/python benchmarks/import_bench.py --lines 2000000 --real /tmp/tcj --postgres auto
    PYTHONPATH=/path/to/older/tree .venv/bin/python benchmarks/import_bench.py ...  # the same, before
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from engine.config import Settings
from engine.db import Gateway, connect, init_schema
from engine.history import history_start
from engine.ingest import import_files

REAL_CUTOFF = dt.date(2017, 9, 1)
REAL_ZONE = "America/New_York"


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def _fresh(url: str, work: Path, label: str, pg_admin: str | None) -> str:
    """A new, initialised database for one run (SQLite: a file in `work`; PostgreSQL: a new database)."""
    history = work / f"{label}.history"
    shutil.rmtree(history, ignore_errors=True)
    if url.startswith("sqlite"):
        for suffix in ("", "-wal", "-shm"):
            Path(f"{work / label}.db{suffix}").unlink(missing_ok=True)
        url = f"sqlite:///{work / label}.db"
        history = None  # beside the file
    else:
        import sqlalchemy as sa

        admin = connect(pg_admin).execution_options(isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {label}")
            conn.exec_driver_sql(f"CREATE DATABASE {label}")
        admin.dispose()
        url = sa.engine.make_url(pg_admin).set(database=label).render_as_string(hide_password=False)
    engine = connect(url)
    try:
        init_schema(engine, history_path=str(history) if history else None)
    except TypeError:  # a tree from before the Parquet history
        init_schema(engine)
    engine.dispose()
    return url


def _run(url: str, data: Path, parts: list[Path], zone: str, as_of: dt.date) -> tuple[float, ...]:
    """(import s, re-import s, history read s, history lines, import CPU s, read CPU s) into the fresh
    database `url`. CPU: this process's, every thread (not the PostgreSQL server's)."""
    for kind in ("stores", "customers", "products"):
        import_files(url, kind, [data / f"{kind}.csv"], timezone=zone)
    t0, c0 = time.perf_counter(), time.process_time()
    import_files(url, "transactions", parts, timezone=zone)
    first, first_cpu = time.perf_counter() - t0, time.process_time() - c0
    t0 = time.perf_counter()
    import_files(url, "transactions", parts, timezone=zone)  # a re-import adds nothing
    again = time.perf_counter() - t0
    with Gateway(url) as db:
        products = db.products()
        t0, c0 = time.perf_counter(), time.process_time()
        history = db.history(as_of, history_start(Settings(), as_of), products=products)
        read, read_cpu = time.perf_counter() - t0, time.process_time() - c0
    return first, again, read, history.height, first_cpu, read_cpu


def _chain(label: str, data: Path, parts: list[Path], zone: str, as_of: dt.date, targets, args) -> None:  # noqa: ANN001
    total = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in parts)
    print(f"{label}: {total:,} line items in {len(parts)} files; history read as of {as_of}")
    for backend, url, admin in targets:
        runs = [_run(_fresh(url, args.work, f"bench_{label}_{backend}", admin), data, parts, zone, as_of)]
        runs += [
            _run(_fresh(url, args.work, f"bench_{label}_{backend}", admin), data, parts, zone, as_of)
            for _ in range(args.repeat - 1)
        ]
        first, again, read, _, first_cpu, read_cpu = (statistics.median(r[i] for r in runs) for i in range(6))
        print(
            f"  {backend}: import {first:.2f} s = {total / first:,.0f} lines/s (CPU {first_cpu:.2f} s); "
            f"re-import {again:.2f} s; history read {read:.3f} s (CPU {read_cpu:.3f} s; {runs[0][3]:,} lines)  "
            f"[medians of {len(runs)}: import {', '.join(f'{r[0]:.2f}' for r in runs)}; "
            f"read {', '.join(f'{r[2]:.3f}' for r in runs)}]"
        )


def _generated(args) -> tuple[Path, list[Path], dt.date]:  # noqa: ANN001
    data = args.work / f"generated-{args.lines}"
    # ~600 line items per household per year (the generator's texture); card-less baskets add ~12 %.
    customers = max(100, int(args.lines / (600 * args.weeks / 52) / 1.12))
    start = dt.date(2025, 1, 6)
    if not (data / "products.csv").exists():
        from engine.sample_chain import generate

        t0 = time.perf_counter()
        # parts of 5,000 households, as a chain exports in several files: the import pipelines them
        generate(
            data,
            customers=customers,
            weeks=args.weeks,
            seed=args.seed,
            fmt="parquet",
            chunk_customers=5000,
            start=start,
        )
        print(f"generated {customers:,} customers x {args.weeks} weeks in {time.perf_counter() - t0:.1f} s")
    return data, sorted((data / "transactions").glob("*.parquet")), start + dt.timedelta(weeks=args.weeks)


def _real(work: Path, cutoff: dt.date) -> tuple[Path, list[Path]]:
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from real_chain import convert

    data, _ = convert(work, cutoff, REAL_ZONE, False, 14)
    return data, sorted((data / "transactions").glob("*.parquet"))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=2_000_000, help="line items of the generated chain (0: none)")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--repeat", type=int, default=3, help="runs per figure; the median is printed")
    parser.add_argument("--real", type=Path, default=None, help="also the real panel, converted under this directory")
    parser.add_argument(
        "--real-cutoff",
        type=dt.date.fromisoformat,
        default=REAL_CUTOFF,
        help="the panel's history before this day (2017-09-01: 966k lines; 2017-12-01: 1.3M, speed only)",
    )
    parser.add_argument("--work", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument(
        "--postgres", default=None, help="also PostgreSQL: a server URL (databases are created on it) or 'auto'"
    )
    args = parser.parse_args(argv)
    own_work = args.work is None  # a temporary one: removed at the end (the databases and histories: ~60 MB)
    args.work = args.work or Path(tempfile.mkdtemp(prefix="listwise-import-bench-"))
    args.work.mkdir(parents=True, exist_ok=True)

    cluster = None
    targets = [("sqlite", "sqlite://", None)]
    if args.postgres == "auto":
        sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
        from tests.conftest import _Cluster

        cluster = _Cluster()
        signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))  # the cluster is stopped below on a kill too
        targets.append(("postgres", cluster.url, cluster.url))
    elif args.postgres:
        targets.append(("postgres", args.postgres, args.postgres))
    try:
        if args.lines:
            data, parts, as_of = _generated(args)
            _chain("generated", data, parts, "UTC", as_of, targets, args)
        if args.real:
            data, parts = _real(args.real, args.real_cutoff)
            _chain("real", data, parts, REAL_ZONE, args.real_cutoff, targets, args)
    finally:
        if cluster is not None:
            cluster.stop()
        if own_work:
            shutil.rmtree(args.work, ignore_errors=True)
    print(f"peak RSS {_peak_rss_mib():,.0f} MiB")
    return 0


if __name__ == "__main__":
    sys.exit(main())
