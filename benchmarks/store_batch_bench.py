"""The whole batch on an imported chain: `listwise batch run` with its stages over the history store.

Runs `engine.batch.run_batch` on an existing database (imported with `listwise import`: the history
in its Parquet store), with --partitions / --executor as the command takes them, and prints each
step's seconds as the batch records them (read — the sums over lines the partitions add up —,
qualify, profile, offers, write), the wall clock, the CPU seconds of this process and its local
workers, and the peak memory of the whole process tree (the sum of every process's RSS, sampled
every 0.2 s: what the machine must hold at once). `--repeat R` cancels the batch (`batch cancel`)
and runs it again, R times; medians are printed. The database is changed: use a copy you can lose.

    .venv/bin/python benchmarks/store_batch_bench.py --database sqlite:////data/chain/listwise.db --partitions 64
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import datetime as dt
import resource
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

import psutil

from engine.batch import cancel_batch, run_batch
from engine.config import Settings, load_settings


class _PeakMemory:
    """The largest sum of RSS over this process and its descendants, sampled in a thread; `mark(label)`
    closes an interval, so each progress step gets its own peak, split into this process and the rest."""

    def __init__(self, every: float = 0.2) -> None:
        self.peak, self._every, self._stop = 0, every, threading.Event()
        self._since = (0, 0)  # (tree, this process) peaks since the last mark
        self.steps: list[tuple[str, int, int]] = []
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        me = psutil.Process()
        while not self._stop.is_set():
            own = total = 0
            for p in [me, *me.children(recursive=True)]:
                with contextlib.suppress(psutil.Error):  # a worker that ended meanwhile
                    rss = p.memory_info().rss
                    total += rss
                    own = rss if p.pid == me.pid else own
            self.peak = max(self.peak, total)
            self._since = (max(self._since[0], total), max(self._since[1], own))
            self._stop.wait(self._every)

    def mark(self, label: str) -> None:
        self.steps.append((label, *self._since))
        self._since = (0, 0)

    def __enter__(self) -> _PeakMemory:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


class _Progress:
    """Plain progress lines with the clock, each step's peak memory noted."""

    def __init__(self, peak: _PeakMemory) -> None:
        self.peak = peak

    def __call__(self, label: str, done: int, total: int) -> None:
        print(f"  {time.strftime('%H:%M:%S')} {label} {done}/{total}", file=sys.stderr, flush=True)
        if done == total or label == "batch":
            self.peak.mark(f"{label} {done}/{total}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database", required=True, help="database URL of an imported chain (it is changed)")
    parser.add_argument("--period-start", type=dt.date.fromisoformat, default=None, help="default: the next period")
    parser.add_argument("--partitions", type=int, default=16)
    parser.add_argument("--executor", choices=["local", "dask"], default="local")
    parser.add_argument("--scheduler", default="")
    parser.add_argument("--workers", type=int, default=0, help="local executor: processes (0 = one per core)")
    parser.add_argument("--p-buy-model", choices=["ranker", "renewal"], default=None, help="default: the settings'")
    parser.add_argument("--repeat", type=int, default=1)
    parser.add_argument(
        "--secret-file", type=Path, default=None, help="the chain's key (default: listwise.secret beside a SQLite file)"
    )
    parser.add_argument(
        "--out", type=Path, default=None, help="batch files (default: a temporary directory, removed at the end)"
    )
    args = parser.parse_args(argv)

    base = load_settings()
    scale = dataclasses.replace(
        base.scale, partitions=args.partitions, executor=args.executor, scheduler=args.scheduler, workers=args.workers
    )
    cycles = base.cycles if args.p_buy_model is None else dataclasses.replace(base.cycles, p_buy_model=args.p_buy_model)
    secret_file = args.secret_file
    if secret_file is None and args.database.startswith("sqlite:///"):
        secret_file = Path(args.database.removeprefix("sqlite:///")).parent / "listwise.secret"
    settings = dataclasses.replace(base, database_url=args.database, scale=scale, cycles=cycles)
    if secret_file is not None:
        settings = dataclasses.replace(settings, secret="", secret_file=str(secret_file))
    if args.out is None:  # the batch's files are not the benchmark's: removed at the end, as a failed run leaves them
        with tempfile.TemporaryDirectory(prefix="listwise-store-batch-") as out:
            return _measure(args, settings, Path(out))
    return _measure(args, settings, args.out)


def _measure(args: argparse.Namespace, settings: Settings, out: Path) -> int:
    runs: list[dict] = []
    for i in range(args.repeat):
        t0, c0 = time.perf_counter(), _cpu()
        with _PeakMemory() as peak:
            summary = run_batch(settings, args.period_start, out_dir=out, progress=_Progress(peak))
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        steps = {k: round(v, 1) for k, v in summary["seconds"].items()}
        steps["write and the rest"] = round(wall - sum(summary["seconds"].values()), 1)  # the write is not recorded
        runs.append({"wall": wall, "cpu": cpu, "peak": peak.peak / 1024**3, **steps})
        print(
            f"run {i + 1}: {wall:.1f} s wall, {cpu:.1f} CPU s, peak {peak.peak / 1024**3:.2f} GiB (process tree); "
            f"steps {steps}; qualifying {summary['qualifying_customers']:,}, lists {summary['lists']:,}, "
            f"offers {summary['offers']:,}",
            flush=True,
        )
        for label, tree, own in peak.steps:
            print(f"  peak up to '{label}': {tree / 1024**3:.2f} GiB, of which this process {own / 1024**3:.2f} GiB")
        if i + 1 < args.repeat:
            print(f"  {cancel_batch(settings, summary['batch_id'])}", file=sys.stderr)
    if args.repeat > 1:
        for key in runs[0]:
            print(f"median {key}: {statistics.median(r[key] for r in runs):.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
