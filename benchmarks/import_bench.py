"""Import benchmark: generate a synthetic chain of about N line items and import it.

Prints rows/s and peak memory of `listwise import transactions` into SQLite (and, with
--postgres URL, into PostgreSQL). Target on a 2-core machine: 10M line items imported
into SQLite, validated, in <= 30 s.

    .venv/bin/python benchmarks/import_bench.py --lines 10000000
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

from engine.db import connect, init_schema
from engine.ingest import import_files


def _peak_rss_mib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--lines", type=int, default=10_000_000, help="line items to aim for")
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--postgres", default=None, help="also import into this PostgreSQL URL (an empty database)")
    args = parser.parse_args(argv)

    work = args.dir or Path(tempfile.mkdtemp(prefix="listwise-import-bench-"))
    data = work / "data"
    # ~600 line items per household per year (the generator's texture); card-less baskets add ~12 %.
    customers = max(100, int(args.lines / (600 * args.weeks / 52) / 1.12))
    if not (data / "products.csv").exists():
        from engine.sample_chain import generate

        t0 = time.perf_counter()
        # parts of 5,000 households, as a chain exports in several files: the import pipelines them
        generate(data, customers=customers, weeks=args.weeks, seed=args.seed, fmt="parquet", chunk_customers=5000)
        print(f"generated {customers:,} customers x {args.weeks} weeks in {time.perf_counter() - t0:.1f} s")
    parts = sorted((data / "transactions").glob("*.parquet"))
    total = sum(pl.scan_parquet(p).select(pl.len()).collect().item() for p in parts)
    print(f"transactions: {total:,} line items in {len(parts)} files")

    targets = [f"sqlite:///{work / 'bench.db'}"] + ([args.postgres] if args.postgres else [])
    for url in targets:
        if url.startswith("sqlite"):
            for suffix in ("", "-wal", "-shm"):
                Path(str(work / "bench.db") + suffix).unlink(missing_ok=True)
        init_schema(connect(url))
        for kind in ("stores", "customers", "products"):
            import_files(url, kind, [data / f"{kind}.csv"])
        t0 = time.perf_counter()
        import_files(url, "transactions", parts)
        first = time.perf_counter() - t0
        t0 = time.perf_counter()
        import_files(url, "transactions", parts)  # a re-import adds nothing
        again = time.perf_counter() - t0
        backend = url.split(":", 1)[0]
        print(
            f"{backend}: {total:,} line items in {first:.1f} s = {total / first:,.0f} rows/s "
            f"(re-import of the same files: {again:.1f} s, nothing added); peak RSS {_peak_rss_mib():,.0f} MiB"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
