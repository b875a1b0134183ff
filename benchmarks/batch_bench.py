"""Batch benchmark: profile + offers for every qualifying list of a large chain (no PDFs).

Generates a chain (default 100,000 card holders x 52 weeks, Parquet) unless --data points at
one, builds the frames straight from the files (`engine.history.history_from_files`, no
database), then times the batch's pure part as `engine.batch` runs it: qualifying customers,
hold-out draw, `engine.profiles.profile_frames`, `coupons.build_offers`, tips. Prints each
step's seconds and the peak memory (max RSS of this process). Target on the 2-core machine:
<= 120 s and <= 8 GiB.

The profile and customer value run through the batch's partitioned stages (engine.stages):
`--partitions N --executor local|dask [--scheduler ADDRESS] [--workers W]`, as `listwise batch run`
takes them; `--repeat R` runs that step R times and prints every run and the median, split into
its parts (partition files, globals, partitions, value reduction), wall and CPU seconds (this
process and its local workers).

    .venv/bin/python benchmarks/batch_bench.py --customers 100000 --weeks 52 --dir /tmp/batch-bench
    .venv/bin/python benchmarks/batch_bench.py --data /tmp/batch-bench/data --lean --partitions 16 --repeat 3
"""

from __future__ import annotations

import argparse
import datetime as dt
import resource
import statistics
import tempfile
import time
from pathlib import Path

import polars as pl


def _peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def _cpu_seconds() -> float:
    """User + system CPU seconds of this process and its finished children (the local workers)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Marks:
    """A progress callback that notes when each step of engine.stages ended."""

    def __init__(self) -> None:
        self.ends: dict[str, float] = {}

    def __call__(self, label: str, done: int, total: int) -> None:
        if done == total:
            self.ends[label] = time.perf_counter()

    def parts(self, t0: float) -> str:
        out, last = [], t0
        for label, end in sorted(self.ends.items(), key=lambda kv: kv[1]):
            out.append(f"{label} {end - last:.1f} s")
            last = end
        return ", ".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--customers", type=int, default=100_000)
    parser.add_argument("--weeks", type=int, default=52)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--dir", type=Path, default=None, help="work directory (default: a temporary one)")
    parser.add_argument("--data", type=Path, default=None, help="an already generated chain (skips generation)")
    parser.add_argument("--baseline", action="store_true", help="profile with coupons.baseline instead of cycles")
    parser.add_argument(
        "--max-customers",
        type=int,
        default=None,
        help="with --lean: only the first N customers of the chain (a slice of a larger run)",
    )
    parser.add_argument(
        "--lean",
        action="store_true",
        help="read history lazily with typed columns (history_from_files holds every "
        "column as text while it builds the frame: > 17 GiB at 100k x 52 weeks)",
    )
    parser.add_argument("--partitions", type=int, default=1, help="customer partitions of the stages (divides 64)")
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    parser.add_argument("--scheduler", default="", help="dask scheduler address (--executor dask)")
    parser.add_argument("--workers", type=int, default=0, help="local executor: processes (0 = one per core)")
    parser.add_argument("--repeat", type=int, default=1, help="run profile + customer value this many times")
    parser.add_argument("--no-offers", action="store_true", help="stop after profile + customer value")
    parser.add_argument(
        "--from-files",
        action="store_true",
        help="profile + customer value of every card holder from per-partition Parquet files (written once, "
        "a transactions part at a time, as the history store holds them): no whole history in this process",
    )
    parser.add_argument(
        "--stage-cpu",
        type=int,
        default=0,
        help="with --from-files: fit the globals once, then time partition_stage of the first N partitions "
        "one after the other in this process (CPU seconds: the work, not the pool's scheduling)",
    )
    parser.add_argument("--p-buy-model", choices=["ranker", "renewal"], default="ranker", help="[cycles] p_buy_model")
    args = parser.parse_args(argv)

    from coupons import assign_groups, build_offers, choose_tips, qualifying_customers, starter_tips
    from engine.batch import deal_budgets
    from engine.config import CycleSettings, ScaleSettings, Settings, validate_settings
    from engine.history import history_from_files

    data = args.data
    if data is None:
        from engine.sample_chain import generate

        data = (args.dir or Path(tempfile.mkdtemp(prefix="listwise-batch-bench-"))) / "data"
        t = time.perf_counter()
        generate(data, customers=args.customers, weeks=args.weeks, seed=args.seed, fmt="parquet")
        print(f"generate: {time.perf_counter() - t:.1f} s (not counted)")
    scale = ScaleSettings(
        executor=args.executor, scheduler=args.scheduler, partitions=args.partitions, workers=args.workers
    )
    settings = validate_settings(Settings(scale=scale, cycles=CycleSettings(p_buy_model=args.p_buy_model)))
    if args.from_files:
        return _from_files(args, data, settings)
    t0 = time.perf_counter()
    history, products, customers = _lean_history(data, args.max_customers) if args.lean else history_from_files(data)
    t_read = time.perf_counter()
    start = history["day"].max() + dt.timedelta(days=7 - history["day"].max().weekday())
    end = start + dt.timedelta(days=settings.batch.period_days)
    b = settings.batch
    qualifying = qualifying_customers(customers, history, start, b.threshold_cents, b.qualifying_weeks)
    groups = assign_groups(qualifying, start, b.holdout_share)
    treated = groups.filter(pl.col("grp") == "treated")["customer_key"]
    keys = qualifying["customer_key"].implode()
    history = history.filter(pl.col("customer_key").is_in(keys))
    customers = customers.filter(pl.col("customer_key").is_in(keys))
    t_qual = time.perf_counter()
    if args.baseline:
        from coupons.baseline import baseline_profile, baseline_value

        profile = baseline_profile(history, products, start, b.period_days, settings.cycles)
        value = baseline_value(history, customers, start, settings.value, b.qualifying_weeks)
    else:
        from engine.profiles import profile_frames

        runs = []
        for _ in range(max(1, args.repeat)):
            marks = _Marks()
            t, cpu = time.perf_counter(), _cpu_seconds()
            profile, value = profile_frames(history, products, customers, settings, start, b.period_days, marks)
            runs.append((time.perf_counter() - t, marks.parts(t), _cpu_seconds() - cpu))
            print(f"profile + customer value: {runs[-1][0]:.1f} s, {runs[-1][2]:.1f} CPU s ({runs[-1][1]})", flush=True)
        median = statistics.median(r[0] for r in runs)
        print(
            f"profile + customer value, median of {len(runs)}: {median:.1f} s, "
            f"{statistics.median(r[2] for r in runs):.1f} CPU s (this process and its local workers), "
            f"({customers.height:,} customers, {history.height:,} lines, {args.partitions} partitions, "
            f"{args.executor}); peak RSS of this process {_peak_rss_gib():.2f} GiB",
            flush=True,
        )
        if args.no_offers:
            return 0
    profile = profile.with_columns(pl.col(c).cast(pl.String) for c in ("category", "brand_cell", "volume_tier"))
    t_prof = time.perf_counter()
    deals = _read_deals(data)
    budgets = deal_budgets(
        deals,
        pl.DataFrame(schema={"deal_id": pl.String, "face_cents": pl.Int64, "redeemed_cents": pl.Int64}),
        pl.DataFrame(
            schema={
                "deal_id": pl.String,
                "kind": pl.String,
                "p_buy": pl.Float64,
                "discount_cents": pl.Int64,
                "max_uses": pl.Int32,
                "redeemed_cents": pl.Int64,
            }
        ),
        None,
    )
    offers = build_offers(profile, value, products, deals, budgets, treated, settings.plan_rules(), start, end)
    tips = choose_tips(offers, treated, starter_tips())
    t_off = time.perf_counter()
    print(
        f"chain: {customers.height:,} qualifying of {args.max_customers or args.customers:,} customers x {args.weeks} weeks, {history.height:,} line items of qualifying "
        f"customers; period {start}"
    )
    print(
        f"qualifying {qualifying.height:,}, lists {treated.len():,}, offers {offers.height:,} "
        f"({', '.join(f'{k} {v}' for k, v in offers['kind'].value_counts().sort('kind').iter_rows())}), "
        f"tips {tips['tip_id'].is_not_null().sum():,}"
    )
    print(
        f"read files {t_read - t0:.1f} s | qualify+holdout {t_qual - t_read:.1f} s | profile {t_prof - t_qual:.1f} s"
        f" | offers {t_off - t_prof:.1f} s"
    )
    print(
        f"profile + offers: {t_off - t_qual:.1f} s (target <= 120 s); all from files: {t_off - t0:.1f} s; "
        f"peak memory {_peak_rss_gib():.2f} GiB (target <= 8)"
    )
    return 0


def _from_files(args: argparse.Namespace, data: Path, settings) -> int:  # noqa: ANN001
    """Profile + customer value of every card holder through `engine.stages.run_partitioned` on partition files."""
    from engine.stages import run_partitioned

    n = args.partitions
    _, products, customers = _small_frames(data)
    if args.max_customers:
        customers = customers.filter(pl.col("customer_key") <= args.max_customers)
    root = (args.dir or data.parent) / f"partitions-{n}-{args.max_customers or 'all'}"
    t = time.perf_counter()
    if not (root / "done").exists():
        root.mkdir(parents=True, exist_ok=True)
        for i, f in enumerate(sorted((data / "transactions").glob("*.parquet"))):
            lines = _lean_lines([f], products, customers).with_columns((pl.col("customer_key") % n).alias("_p"))
            for (p,), part in lines.partition_by("_p", as_dict=True, include_key=False).items():
                (root / f"p{p:02d}").mkdir(exist_ok=True)
                part.write_parquet(root / f"p{p:02d}" / f"chunk-{i:05d}.parquet")
        (root / "done").touch()
        print(f"partition files written in {time.perf_counter() - t:.1f} s (the history store's job; not counted)")
    sources = [sorted(str(f) for f in (root / f"p{p:02d}").glob("*.parquet")) for p in range(n)]
    last = pl.scan_parquet([f for s in sources for f in s]).select(pl.col("day").max()).collect().item()
    start = last + dt.timedelta(days=7 - last.weekday())
    lines = pl.scan_parquet([f for s in sources for f in s]).select(pl.len()).collect().item()
    if args.stage_cpu:
        from engine.stages import fit_globals, partition_stage

        g = fit_globals(sources, settings, start, settings.batch.period_days)
        cpu = time.process_time()
        for p in range(min(args.stage_cpu, n)):
            partition_stage(sources[p], None, g)
        print(
            f"partition_stage of {min(args.stage_cpu, n)} partitions: {time.process_time() - cpu:.1f} CPU s", flush=True
        )
        return 0
    runs = []
    for _ in range(max(1, args.repeat)):
        marks = _Marks()
        t, cpu = time.perf_counter(), _cpu_seconds()
        profile, value = run_partitioned(sources, customers, settings, start, settings.batch.period_days, marks)
        runs.append((time.perf_counter() - t, _cpu_seconds() - cpu))
        print(f"profile + customer value: {runs[-1][0]:.1f} s, {runs[-1][1]:.1f} CPU s ({marks.parts(t)})", flush=True)
    print(
        f"profile + customer value, median of {len(runs)}: {statistics.median(r[0] for r in runs):.1f} s, "
        f"{statistics.median(r[1] for r in runs):.1f} CPU s; {customers.height:,} card holders, {lines:,} lines, "
        f"{profile.height:,} profile rows, {value.height:,} value rows; {n} partitions, {args.executor} "
        f"(workers {args.workers or 'one per core'}), p_buy_model {args.p_buy_model}; peak RSS of this process "
        f"{_peak_rss_gib():.2f} GiB",
        flush=True,
    )
    return 0


def _lean_history(data: Path, max_customers: int | None = None) -> tuple[pl.DataFrame, pl.DataFrame, pl.DataFrame]:
    """(history, products, customers) as `history_from_files` makes them, read lazily with typed columns.

    basket_key is a hash of (store_id, basket_id) here: unique in practice, not the database's key.
    """
    _, products, customers = _small_frames(data)
    if max_customers:
        customers = customers.filter(pl.col("customer_key") <= max_customers)
    lines = _lean_lines(sorted((data / "transactions").glob("*.parquet")), products, customers)
    return lines, products, customers


def _lean_lines(files: list[Path], products: pl.DataFrame, customers: pl.DataFrame) -> pl.DataFrame:
    """The history columns of the card holders' lines in `files` (generator Parquet parts)."""
    from engine.db import PRODUCT_ATTRIBUTES
    from engine.history import HISTORY_COLUMNS

    attrs = products.select("product_key", *PRODUCT_ATTRIBUTES)
    text = ["sku", "category", "department", "brand", "brand_type", "manufacturer_id"]
    return (
        pl.scan_parquet(files)
        .filter(pl.col("customer_id").is_not_null())
        .join(customers.lazy().select("customer_id", "customer_key"), on="customer_id", how="inner")
        .join(attrs.lazy(), on="sku", how="inner")
        .select(
            pl.col("customer_key"),
            pl.struct("store_id", "basket_id").hash().reinterpret(signed=True).alias("basket_key"),
            pl.col("timestamp").dt.date().alias("day"),
            "product_key",
            *text,  # String: the cycles code joins them with String frames
            pl.col("quantity").cast(pl.Float64),
            _money("amount").alias("amount_cents"),
            _money("discount").fill_null(0).alias("discount_cents"),
            "regular_price_cents",
            "unit_cost_cents",
        )
        .select(HISTORY_COLUMNS)
        .collect(engine="streaming")
        .sort("customer_key", "day", "basket_key")
    )


def _money(column: str) -> pl.Expr:
    """Parquet money is Decimal(12, 2) (CSV: text): integer cents either way."""
    return (pl.col(column).cast(pl.Decimal(14, 2)) * 100).cast(pl.Int64)


def _small_frames(data: Path):  # noqa: ANN202
    """products and customers as history_from_files builds them, without reading transactions."""
    import shutil
    import tempfile

    tmp = Path(tempfile.mkdtemp())
    try:
        for name in ("products.csv", "customers.csv"):
            shutil.copy(data / name, tmp / name)
        (tmp / "transactions.csv").write_text("basket_id,customer_id,store_id,timestamp,sku,quantity,amount,discount\n")
        from engine.history import history_from_files

        return history_from_files(tmp)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _read_deals(data: Path) -> pl.DataFrame:
    """The deals files as the ``deals`` table holds them (cents, basis points)."""
    from engine.values import cents as _cents

    files = sorted((data / "deals").glob("*.csv")) if (data / "deals").is_dir() else []
    if not files:
        from tests.coupons.conftest import DEAL_SCHEMA

        return pl.DataFrame(schema=DEAL_SCHEMA)
    raw = pl.concat([pl.read_csv(f, infer_schema=False) for f in files], how="diagonal")
    raw = raw.with_columns(
        pl.lit(None, pl.String).alias(c)
        for c in ("sku", "category", "brand", "budget", "max_per_customer", "target_cells", "funded_share")
        if c not in raw.columns
    )
    pct = pl.col("kind") == "percent_off"
    return raw.select(
        "deal_id",
        "manufacturer_id",
        pl.col("sku").replace("", None),
        pl.col("category").replace("", None),
        pl.col("brand").replace("", None),
        "kind",
        pl.when(pct).then(None).otherwise(_cents("value")).alias("value_cents"),
        pl.when(pct).then((pl.col("value").cast(pl.Float64) * 100).round().cast(pl.Int64)).alias("percent_bp"),
        pl.col("funded_share").cast(pl.Float64).fill_null(1.0),
        pl.col("starts_on").str.to_date(),
        pl.col("ends_on").str.to_date(),
        _cents("budget").alias("budget_cents"),
        pl.col("max_per_customer").cast(pl.Int64),
        pl.col("target_cells").replace("", None),
    )


if __name__ == "__main__":
    raise SystemExit(main())
