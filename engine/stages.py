"""The batch's per-customer stages spread over customer partitions, on this machine or a Dask cluster.

Partition p of n is the customers with customer_key % n == p (whole buckets of the history's 64;
`engine.config.HISTORY_BUCKETS`). Three steps:

1. **globals**, once, in this process: a customer sample defined by customer_key alone
   (`cycles.profile.sample_customers`, ``[scale] sample_customers``: whole key strata, customer_key
   % 64 = 0, 1, 2, ... until the size is reached; every customer of a smaller chain) fits the
   ranker, the purchase-cycle priors and the volume cut points (`StageGlobals`). Only the first
   strata's lines are read, of the partitions (the store's buckets) that hold them;
2. **partition stage**, per partition, anywhere: `partition_stage` is a pure function of the
   partition's history and the globals: its profile rows and its customers' `cycles.value.value_parts`;
3. **reduction**, here: the profile is the concatenation; the customer value frame is
   `cycles.value.score_value` over every partition's parts (RFM, ABC and CLV compare customers:
   exact, on one small row per customer).

So 1, 4, 16 or 64 partitions, and either executor, give the same frames (tests/engine/test_stages.py).

Executors (``[scale] executor``, ``--executor``): ``local`` runs the partitions in a process pool
(spawned processes, ``[scale] workers`` at once) — one partition runs in this process; ``dask``
submits each partition to the dask.distributed scheduler at ``[scale] scheduler``. A remote
stage is sent by path: with a database (`run_store`) the worker reads the history store's own
committed part files of its partition (`StoreSource`: paths, plus its checkout lines and the
catalogue, small); a frame without a database (`run_stages`: benchmarks) is written to scratch
Parquet files first (`partition_sources`). The globals (the ranker's trees, a few small frames)
travel pickled, scattered once.
"""

from __future__ import annotations

import datetime as dt
import math
import multiprocessing
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor, ThreadPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import polars as pl
from threadpoolctl import threadpool_limits

from coupons.prices import price_counts
from coupons.qualify import window_spend
from cycles.occasions import left_join, occasion_keys
from cycles.profile import SAMPLE_STRATA, ProfileGlobals, customer_profile, profile_globals, sample_customers
from cycles.ranker import NextWindowRanker
from cycles.value import score_value, value_parts
from engine.config import EXECUTORS, HISTORY_BUCKETS, Settings, partitions_of
from engine.errors import ConfigError, EngineError, InputError, StateError
from engine.faults import fault_point  # tests/faults: LISTWISE_FAULT=stage-partition kills a partition's stage
from engine.progress import Progress
from engine.scratch import scratch as scratch_dir

if TYPE_CHECKING:
    from engine.db import Gateway

__all__ = [
    "StageGlobals",
    "fit_globals",
    "partition_stage",
    "run_stages",
    "run_partitioned",
    "partition_sources",
    "History",
    "StoreSource",
    "store_sources",
    "run_store",
    "TotalsWindow",
    "partition_totals",
    "store_totals",
    "partition_value",
    "store_value",
    "run_store_then",
]


class HistoryMoved(StateError):
    """A part file a partition was sent is gone: a compaction swapped it after it was listed. The
    driver lists the store again and reruns (`_fresh`); the files are never read half-swapped."""


def _read_parts(paths: tuple[str, ...], *args: Any, **kwargs: Any) -> pl.DataFrame:
    from engine.history_store import read_parts

    try:
        return read_parts(list(paths), *args, **kwargs)
    except FileNotFoundError as exc:
        raise HistoryMoved(f"a history part file was replaced while it was read ({exc.filename or exc})") from None


@dataclass(frozen=True)
class StoreSource:
    """One partition's history as the history store holds it, for a worker to read by path.

    `paths`: the store's committed part files of the partition (`engine.history_store.part_files`),
    `path_buckets` the bucket of each, `buckets` the store's bucket count; `checkout`: its checkout
    lines (`Gateway.db_lines`, PART_SCHEMA: small, they travel pickled); `products`: the catalogue
    `to_history` joins; days in [start, end); `keys`: only these customers (the batch's qualifying
    ones), None = all; `partition`: (p, n), whose customers a file of every bucket (MIXED) is read for.
    """

    paths: tuple[str, ...]
    path_buckets: tuple[int, ...]
    buckets: int
    checkout: pl.DataFrame
    products: pl.DataFrame
    end: dt.date
    start: dt.date | None
    keys: pl.Series | None = None
    partition: tuple[int, int] | None = None

    def strata_history(
        self, strata: Sequence[int], end: dt.date, start: dt.date, columns: Sequence[str] | None = None
    ) -> pl.DataFrame:
        """The history frame (HISTORY_COLUMNS or `columns`, total order) of the partition's customers of
        `strata` (customer_key % SAMPLE_STRATA in it; only `keys` when set) with a day in [start, end)
        and in the source's own days: the globals' sample (`fit_globals`).

        Only the part files that can hold them are read: bucket b of B holds customers of stratum s
        only if b ≡ s (mod gcd(B, SAMPLE_STRATA)); with the default 64 buckets, stratum s is bucket s.
        A file of every bucket (MIXED) may hold them.
        """
        from engine.history_store import MIXED

        end, start = min(end, self.end), max(start, self.start) if self.start else start
        step = math.gcd(self.buckets, SAMPLE_STRATA)
        residues = {s % step for s in strata}
        paths = tuple(path for path, b in zip(self.paths, self.path_buckets) if b == MIXED or b % step in residues)
        of_strata = (pl.col("customer_key") % SAMPLE_STRATA).is_in(list(strata))
        held = self.checkout.filter((pl.col("day") < end) & (pl.col("day") >= start) & of_strata)
        return self._frame(paths, end, start, self.keys, held, columns, where=of_strata)

    def lines(self, start: dt.date, columns: list[str]) -> pl.DataFrame:
        """`columns` of the partition's lines with day in [start, end) (its customers restricted by
        `keys`), files and checkout lines together, unsorted: what a sum over lines needs."""
        start = max(start, self.start) if self.start else start
        held = self.checkout.filter((pl.col("day") < self.end) & (pl.col("day") >= start))
        if self.keys is not None:
            held = held.filter(pl.col("customer_key").is_in(self.keys.implode()))
        parts = _read_parts(self.paths, self.end, start, self.keys, columns=columns, where=self._mixed(self.paths))
        return pl.concat([parts, held.select(columns)])

    def history(self, customers: pl.Series | None = None, columns: Sequence[str] | None = None) -> pl.DataFrame:
        """The partition's history frame (HISTORY_COLUMNS, total order); `customers`: only theirs;
        `columns`: only these of HISTORY_COLUMNS (only what they need is read and joined)."""
        keys = self.keys if customers is None else customers
        if customers is not None and self.keys is not None:
            keys = customers.filter(customers.is_in(self.keys.implode()))
        return self._frame(self.paths, self.end, self.start, keys, self.checkout, columns)

    def _frame(
        self,
        paths: tuple[str, ...],
        end: dt.date,
        start: dt.date | None,
        keys: pl.Series | None,
        held: pl.DataFrame,
        columns: Sequence[str] | None,
        where: pl.Expr | None = None,
    ) -> pl.DataFrame:
        """The history frame of `paths`' lines and the checkout lines `held` (of `keys` only, when
        given; the files read for days in [start, end) and `where`), in `columns` (None: all)."""
        from engine.history_store import line_columns, to_history

        read = None if columns is None else line_columns(columns)
        mixed = self._mixed(paths)
        if mixed is not None:
            where = mixed if where is None else where & mixed
        parts = _read_parts(paths, end, start, keys, columns=read, where=where)
        if keys is not None:
            held = held.filter(pl.col("customer_key").is_in(keys.implode()))
        if read is not None:
            held = held.select(read)
        return to_history(pl.concat([parts, held]) if held.height else parts, self.products, columns)

    def _mixed(self, paths: tuple[str, ...]) -> pl.Expr | None:
        """The filter a read of `paths` needs when one is a file of every bucket (MIXED): the partition's
        card holders (it holds other partitions' lines too); None when none is."""
        from engine.history_store import MIXED, card_holders

        mixed = {path for path, b in zip(self.paths, self.path_buckets) if b == MIXED}
        return card_holders(self.partition) if mixed.intersection(paths) else None


# A partition's history: the frame itself (in this process), the Parquet files holding it (by path:
# scratch files of a frame), or the history store's own part files (`StoreSource`).
History = pl.DataFrame | list[str] | StoreSource


@dataclass(frozen=True)
class StageGlobals:
    """What every partition's stage shares: fitted once on the sample, small, picklable."""

    profile: ProfileGlobals
    ranker: NextWindowRanker | None
    settings: Settings
    as_of: dt.date
    window_days: int
    profile_start: dt.date  # first day of the profile's lookback
    value_start: dt.date  # first day of the customer value's lookback
    with_value: bool = True  # the stage computes the customers' value parts too


def _window(settings: Settings, as_of: dt.date, window_days: int | None) -> tuple[int, dt.date, dt.date]:
    window_days = window_days or settings.cycles.window_days
    if window_days <= 0:
        raise InputError(f"window_days must be > 0, got {window_days}")
    profile_start = as_of - dt.timedelta(weeks=settings.cycles.lookback_weeks)
    value_start = as_of - dt.timedelta(weeks=settings.value.rfm_lookback_weeks)
    return window_days, profile_start, value_start


# the history columns the stages read (cycles.profile, cycles.ranker, cycles.value): Parquet paths of a
# frame decode only these (the text columns sku, brand, department... were 85 % of a partition's read);
# a `StoreSource` reads its part files' eight columns and joins the catalogue, then keeps these
_STAGE_COLUMNS = (
    "customer_key",
    "day",
    "product_key",
    "category",
    "brand_type",
    "quantity",
    "amount_cents",
    "unit_cost_cents",
    "regular_price_cents",
)


def _slice(frame: pl.DataFrame, n: int, p: int) -> pl.DataFrame:
    """The rows of partition p of n (customer_key % n == p)."""
    return frame.filter(pl.col("customer_key") % n == p)


def _customer_parts(customers: pl.DataFrame | None, n: int) -> list[pl.DataFrame | None]:
    """Each partition's customers (every one gets a value row); None: those its history holds."""
    return [None] * n if customers is None else [_slice(customers, n, p) for p in range(n)]


def _lazy(history: History) -> pl.LazyFrame:
    if isinstance(history, StoreSource):
        # only the stage's columns read and joined: 2 of the catalogue's 6 text columns (a 100k
        # partition's frame: 0.6 -> 0.3 CPU s)
        frame = history.history(columns=_STAGE_COLUMNS).lazy()
    else:
        frame = history.lazy() if isinstance(history, pl.DataFrame) else pl.scan_parquet(history)
    names = frame.collect_schema().names()
    return frame.select([c for c in _STAGE_COLUMNS if c in names])


def _compact(result: Any) -> Any:
    """`result` (a frame, a series, or a tuple of them) without the spare capacity polars' unique and
    group-by leave in their output: a partition's 6,500 unique keys held the buffer of the 4.5M it
    was taken from, 2 GiB over 64 partitions kept in the driver (measured at 420k card holders)."""
    if isinstance(result, tuple):
        return tuple(_compact(r) for r in result)
    if isinstance(result, (pl.DataFrame, pl.Series)):
        return result.shrink_to_fit()
    return result


def _strata_lines(histories: Sequence[History], strata: range, end: dt.date, start: dt.date) -> list[pl.DataFrame]:
    """The lines with a day in [start, end) of the customers of `strata` (customer_key % SAMPLE_STRATA
    in it), of every history that can hold them, read at once (`_STAGE_COLUMNS`).

    `histories[p]` holds partition p of n = len(histories) (customer_key % n == p): it can hold
    stratum s only if p ≡ s (mod gcd(SAMPLE_STRATA, n)); the others are not read. A store
    partition reads only the part files of the buckets that can hold them (`StoreSource.strata_history`).
    """
    step = math.gcd(SAMPLE_STRATA, len(histories))
    in_window = (pl.col("day") < end) & (pl.col("day") >= start)
    queries = []
    for p, history in enumerate(histories):
        mine = [s for s in strata if s % step == p % step]
        if not mine:
            continue
        if isinstance(history, StoreSource):
            queries.append(history.strata_history(mine, end, start, _STAGE_COLUMNS).lazy())
        else:
            queries.append(_lazy(history).filter(in_window & (pl.col("customer_key") % SAMPLE_STRATA).is_in(mine)))
    # every history's files at once (`pl.collect_all`: one query after the other left cores idle); a store
    # partition's few bucket files are read as its query is made (`strata_history` is eager)
    return pl.collect_all(queries)


def _sample_lines(histories: Sequence[History], size: int, end: dt.date, start: dt.date) -> pl.DataFrame:
    """The lines with a day in [start, end) of `sample_customers(every customer with one, size)`, in
    `_STAGE_COLUMNS`, sorted by customer_key and day (stable: each customer's lines in his history's order).

    The sample is whole strata 0, 1, 2, ... in order: stratum 0's lines are read, then as many strata
    more as its customer count says are needed (a tenth more: strata differ by a few per cent), and
    again until `size` customers are held or every stratum is read; `sample_customers` of the strata
    read is then the sample of every customer. Before, every partition's keys and then every
    partition's lines were read; at 100k customers and 5,000 sampled it is strata 0..3 in two
    rounds: 4 of 16 partitions' files, or the files of 4 of the store's 64 buckets.
    """
    read: list[pl.DataFrame] = []
    done, ahead, held = 0, 1, 0
    while done < SAMPLE_STRATA and held < size:
        strata = range(done, min(SAMPLE_STRATA, done + ahead))
        read.extend(_strata_lines(histories, strata, end, start))
        done = strata.stop
        held = pl.concat([f.select("customer_key") for f in read])["customer_key"].n_unique()
        ahead = SAMPLE_STRATA if held == 0 else math.ceil((size - held) / (held / done) * 1.1)
    lines = pl.concat(read, how="vertical_relaxed")
    keys = sample_customers(lines["customer_key"], size)
    return lines.filter(pl.col("customer_key").is_in(keys.implode())).sort("customer_key", "day", maintain_order=True)


# numpy's BLAS in one thread while the stages run: its few products are small (a partition's
# customers x categories by the ranker's components), and OpenBLAS's idle threads spin for a while
# after each one, on cores that LightGBM's threads, the ranker's own and the other workers need
# (measured at 100k: the globals 1.5 CPU s, each partition's stage 0.1 CPU s, 4 %, less)
_ONE_BLAS_THREAD = threadpool_limits.wrap(limits=1, user_api="blas")


@_ONE_BLAS_THREAD
def fit_globals(
    histories: Sequence[History],
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    with_value: bool = True,
    pool: ProcessPoolExecutor | None = None,
) -> StageGlobals:
    """The ranker, purchase-cycle priors and volume cut points, fitted on the customer sample.

    `histories`: every partition's history in partition order (frames, Parquet paths or the store's
    `StoreSource`); only the lines of the first key strata are read (`_sample_lines`), and of a
    history only if its partition can hold them. `pool`: the local workers (`_local_pool`), idle
    until the partitions: the categories' prior fits go to them (the same fits, so the same priors).
    """
    # the compiled survival and prior fit (numba, ~0.5 CPU s to load) load in a thread while polars
    # reads the files
    loading = ThreadPoolExecutor(max_workers=1)
    loading.submit(_load_compiled)
    loading.shutdown(wait=False)
    model = settings.cycles.p_buy_model
    if model not in {"ranker", "renewal"}:
        raise ConfigError(f"cycles.p_buy_model must be 'ranker' or 'renewal', got {model!r}")
    window_days, profile_start, value_start = _window(settings, as_of, window_days)
    sample = _sample_lines(histories, settings.scale.sample_customers, as_of, profile_start)
    ranker = None
    map_fn = None if pool is None else _pool_map(pool, _workers(settings, len(histories)))
    if model == "ranker" and sample.height:
        cpus = os.cpu_count() or 1
        # the renewal priors' category fits (twice: at the first training cutoff and at the end) go
        # to the idle workers too
        ranker = NextWindowRanker(
            window_days=window_days, lookback_days=7 * settings.cycles.lookback_weeks, n_jobs=cpus, map_fn=map_fn
        ).fit(sample, observed_until=as_of)
        # every partition passes its own lines, so the globals travel without the sample's (~100 MB at
        # 5,000 customers); each partition's predict gets this machine's cores shared among the local
        # workers, a Dask worker scores in one thread (n_jobs changes no score: tests/cycles/test_ranker.py)
        local = settings.scale.executor == "local"
        ranker = ranker.without_history(max(1, cpus // _workers(settings, len(histories))) if local else 1)
    globals_ = profile_globals(
        sample,
        as_of,
        window_days,
        params=settings.cycles,
        priors=None if ranker is None else ranker.renewal_priors_,
        map_fn=map_fn,
    )
    return StageGlobals(globals_, ranker, settings, as_of, window_days, profile_start, value_start, with_value)


@_ONE_BLAS_THREAD
def partition_stage(
    history: History, customers: pl.DataFrame | None, g: StageGlobals
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(profile rows, `value_parts`) of one partition: a pure function of its history and the globals.

    `history`: the partition's line items (a frame, or the Parquet files a worker reads itself);
    `customers`: the partition's customers (every one gets a value row), None = those in history.
    """
    fault_point("stage-partition")
    frame = _lazy(history).filter(pl.col("day") < g.as_of).collect()
    s = g.settings
    part = frame.filter(pl.col("day") >= g.profile_start)
    ranker = g.ranker is not None and part.height > 0
    # the profile and the ranker read the same occasions: the lines are sorted once for both
    occasions = occasion_keys(part) if ranker else None
    profile = customer_profile(
        part,
        g.as_of,
        g.window_days,
        params=s.cycles,
        globals_=g.profile,
        extra_columns=("p_active",) if ranker else (),
        occasions=occasions,
    )
    if ranker:
        # the profile's renewal figures are the ranker's renewal features (same priors and lookback)
        ranked = g.ranker.predict(g.as_of, g.window_days, history=part, renewal=profile, occasions=occasions)
        p = ranked.select("customer_key", "category", pl.col("p_buy_in_window").alias("_p_ranker"))
        profile = (
            left_join(profile, p, ["customer_key", "category"])
            .with_columns(pl.coalesce("_p_ranker", "p_buy_in_window").alias("p_buy_in_window"))
            .drop("_p_ranker", "p_active")
        )
    if not g.with_value:
        return profile, None
    parts = value_parts(
        frame.filter(pl.col("day") >= g.value_start),
        g.as_of,
        customers,
        qualifying_weeks=s.batch.qualifying_weeks,
        params=s.value,
    )
    return profile, parts


def _stage_at(args: tuple[History, pl.DataFrame | None, StageGlobals, str]) -> tuple[str, str | None]:
    """A local worker's partition: its frames go back as uncompressed Arrow IPC files in the run's
    scratch directory `out` (paths returned), not pickled through the pool's pipe: at 100k customers
    the profile is ~750 MB, and pickling it there and back cost 3x the CPU of a file's write and read."""
    history, customers, g, out = args
    profile, parts = partition_stage(history, customers, g)
    path = Path(out) / f"{uuid.uuid4().hex}"
    profile.write_ipc(f"{path}.profile.arrow", compression="uncompressed")
    if parts is None:
        return f"{path}.profile.arrow", None
    parts.write_ipc(f"{path}.value.arrow", compression="uncompressed")
    return f"{path}.profile.arrow", f"{path}.value.arrow"


def _read_stage(paths: tuple[str, str | None]) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """A worker's frames, read and their files removed at once (a mapped file lives on until its frame
    is dropped): the scratch directory never holds more than the partitions in flight."""
    frames = [None if path is None else pl.read_ipc(path) for path in paths]
    for path in paths:
        if path is not None:
            Path(path).unlink(missing_ok=True)
    return frames[0], frames[1]


def _workers(settings: Settings, n: int) -> int:
    return max(1, min(n, settings.scale.workers or os.cpu_count() or 1))


def _load_compiled() -> None:
    import numpy as np

    from cycles import _forest
    from cycles._betaprime import survivals
    from cycles._gammagamma import fit_gamma_gamma

    survivals(np.ones((1, 1)), np.ones(1), np.ones(1), np.ones(1))
    fit_gamma_gamma(np.ones(1), np.ones(1), np.zeros(1))
    _forest.load()


def _map_chunk(fn: Callable[..., Any], items: list[Any]) -> list[Any]:
    return [fn(item) for item in items]


def _pool_map(pool: ProcessPoolExecutor, workers: int) -> Callable[..., Iterator[Any]]:
    """A ``map`` shared by the pool's workers and this process, results in order: the items go out in
    a few chunks a worker (hundreds of small fits: one task each would cost more in pickling than they
    take), and this process takes back, from the end, the chunks no worker has started (a worker
    still starting, or a machine busy with other work, leaves this process fitting alone as before)."""

    def map_fn(fn: Callable[..., Any], items: Iterable[Any]) -> Iterator[Any]:
        items = list(items)
        size = max(1, len(items) // (4 * workers))
        chunks = [items[i : i + size] for i in range(0, len(items), size)]
        futures = [pool.submit(_map_chunk, fn, chunk) for chunk in chunks]

        def results() -> Iterator[Any]:  # runs at the first result asked for
            done: dict[int, list[Any]] = {}
            try:
                for i in reversed(range(len(chunks))):
                    if not futures[i].cancel():  # chunks go to the workers in order: the earlier ones have too
                        break
                    done[i] = _map_chunk(fn, chunks[i])
                for i, future in enumerate(futures):
                    yield from done[i] if i in done else future.result()
            finally:  # a fit that failed here or there: the chunks no worker has started are not fitted
                for future in futures:
                    future.cancel()

        return results()

    return map_fn


def _warm() -> int:
    """A local worker's first task, sent as the pool starts: its imports, and the renewal model's
    compiled survival and prior fit loaded (numba: ~0.5 CPU s a process), while the driver fits the
    globals. Returns the size of the worker's polars thread pool."""
    _load_compiled()
    return pl.thread_pool_size()


@contextmanager
def _local_pool(settings: Settings, n: int) -> Iterator[ProcessPoolExecutor | None]:
    """The local executor's process pool for n partitions, its workers started at once (`_warm`: each
    imports while this process fits the globals, ~1.4 CPU s a worker that was serial before the
    partitions); None for one partition (it runs here) or the dask executor."""
    if settings.scale.executor == "dask" or n == 1:
        yield None
        return
    # spawn: a forked polars (its thread pool) can deadlock; each process reads its own Parquet files
    workers = _workers(settings, n)
    pool = ProcessPoolExecutor(
        max_workers=workers,
        mp_context=multiprocessing.get_context("spawn"),
        initializer=_worker_start,
        initargs=(os.getpid(),),
    )
    try:
        # each worker's polars gets its share of the cores (read by polars at import, from the
        # environment the process is spawned with): threads beyond it only wait and spin
        with _environ(POLARS_MAX_THREADS=str(max(1, (os.cpu_count() or 1) // workers))):
            for _ in range(workers):  # submit spawns a process for each task no idle worker takes: all now
                pool.submit(_warm)
        yield pool
    except BaseException as exc:
        # an error, Ctrl-C: the workers' tasks are of no use now (the pool's shutdown would wait for
        # the running ones to end)
        _stop(pool)
        if isinstance(exc, BrokenProcessPool):  # the stages say in which step; here: during the globals' fits
            raise StateError(
                "a partition's process died (killed, or out of memory) while the globals were fitted; "
                "nothing was written: run the command again"
            ) from None
        raise
    pool.shutdown()


def _stop(pool: ProcessPoolExecutor) -> None:
    """The pool's workers ended now, their queued tasks dropped."""
    processes = list((getattr(pool, "_processes", None) or {}).values())  # not public: None = nothing to kill
    pool.shutdown(wait=False, cancel_futures=True)
    for process in processes:
        process.kill()
    for process in processes:
        process.join(10)


_PARENT_POLL_S = 0.5


def _worker_start(parent: int) -> None:
    """A local worker's start: Ctrl-C (a terminal sends it to the whole process group) ends the
    worker at once and quietly, as the signal's default (Python's KeyboardInterrupt printed a
    traceback from each idle worker; ignoring it left the command waiting for a running stage, its
    main thread woken only by a result), and the command reports it in one line; and the worker ends
    when the command's process is gone (kill -9, the OOM killer: idle workers waited on the pool's
    queue for ever)."""
    signal.signal(signal.SIGINT, signal.SIG_DFL)

    def watch() -> None:
        while os.getppid() == parent:
            time.sleep(_PARENT_POLL_S)
        os._exit(1)

    threading.Thread(target=watch, name="listwise-parent-watch", daemon=True).start()


@contextmanager
def _environ(**values: str) -> Iterator[None]:
    """`values` set in this process's environment (those it does not set already), then removed."""
    added = {k: v for k, v in values.items() if k not in os.environ}
    os.environ.update(added)
    try:
        yield
    finally:
        for k in added:
            os.environ.pop(k, None)


def _run_local(
    tasks: list[tuple[History, pl.DataFrame | None]],
    g: StageGlobals,
    progress: Progress | None,
    pool: ProcessPoolExecutor | None = None,
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    if len(tasks) == 1 or pool is None:
        out = [partition_stage(h, c, g) for h, c in tasks]
        if progress:
            progress("profile partitions", len(tasks), len(tasks))
        return out
    results: list[tuple[pl.DataFrame, pl.DataFrame]] = []
    with scratch_dir("stages") as scratch:
        try:
            for i, paths in enumerate(pool.map(_stage_at, [(h, c, g, str(scratch)) for h, c in tasks])):
                results.append(_read_stage(paths))
                if progress:
                    progress("profile partitions", i + 1, len(tasks))
        except BrokenProcessPool:
            raise StateError(
                f"a partition's process died (killed, or out of memory) after {len(results)} of {len(tasks)} "
                "partitions; nothing was written: run the command again (more --partitions need less memory each)"
            ) from None
    return results


def _run_dask(
    tasks: list[tuple[History, pl.DataFrame | None]], g: StageGlobals, progress: Progress | None
) -> list[tuple[pl.DataFrame, pl.DataFrame]]:
    return _on_dask(g.settings, partition_stage, tasks, g, progress, "profile partitions")


def _client(settings: Settings) -> Any:
    """A dask.distributed Client of `settings.scale.scheduler` (a one-line error when there is none)."""
    address = settings.scale.scheduler
    if not address:
        raise ConfigError("executor 'dask' needs a scheduler address: --scheduler tcp://HOST:8786 or [scale] scheduler")
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("executor 'dask' needs dask.distributed: pip install 'listwise[dask]'") from None
    try:
        return Client(address, timeout="10s", set_as_default=False)
    except (OSError, TimeoutError) as exc:
        raise StateError(f"cannot reach the dask scheduler at {address}: {exc}") from None


def _gather(futures: list[Any], progress: Progress | None, label: str, keep: bool = True) -> Any:
    """The futures' results in order (a list; `keep` False: an iterator, each released once taken);
    a lost worker or a failed task is a one-line `StateError`."""
    results = _each(futures, progress, label)
    return list(results) if keep else results


def _each(futures: list[Any], progress: Progress | None, label: str) -> Iterator[Any]:
    for i, future in enumerate(futures):
        try:
            result = future.result()
        except EngineError:
            raise
        except Exception as exc:  # noqa: BLE001 - a worker lost (KilledWorker), a cancelled future...
            raise StateError(
                f"partition {i} of {len(futures)} failed on the dask cluster ({type(exc).__name__}: "
                f"{str(exc).splitlines()[0] if str(exc) else ''}); nothing was written: run the command again"
            ) from None
        futures[i] = None  # the cluster may release it once taken
        if progress:
            progress(label, i + 1, len(futures))
        yield result


def _on_dask(
    settings: Settings, fn: Callable[..., Any], calls: list[tuple], shared: Any, progress: Progress | None, label: str
) -> list[Any]:
    """`fn(*call, shared)` for every call, on the Dask scheduler of `settings.scale`; results in order.

    `shared` (the globals) is scattered to every worker once; a call carries paths, not frames."""
    slug = label.replace(" ", "-")
    run = uuid.uuid4().hex  # a rerun (`_fresh`) must not meet the failed tasks' keys the scheduler still holds
    with _client(settings) as client:
        scattered = client.scatter(shared, broadcast=True)
        futures = [
            client.submit(fn, *call, scattered, pure=False, key=f"listwise-{slug}-{i}-{run}")
            for i, call in enumerate(calls)
        ]
        return _gather(futures, progress, label)


def run_stages(
    history: pl.DataFrame,
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    progress: Progress | None = None,
    with_value: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """(profile, value) of every customer: globals once, the partitions' stages, the reduction.

    `history`: the line items before `as_of` (engine.history columns); `customers`: every customer
    that gets a value row (None = those in history). Partitions and executor from ``settings.scale``.
    `with_value` False: the profile alone (value None).
    """
    n = partitions_of(settings)
    executor = settings.scale.executor
    if executor not in EXECUTORS:
        raise ConfigError(f"scale.executor must be 'local' or 'dask', got {executor!r}")
    if n < 1 or HISTORY_BUCKETS % n:
        raise ConfigError(f"partitions must divide {HISTORY_BUCKETS} (1, 2, 4, ... 64), got {n}")
    with partition_sources(history, n, on_disk=executor == "dask" or n > 1) as sources:
        if progress and (executor == "dask" or n > 1):
            progress("partition files", 1, 1)
        return run_partitioned(sources, customers, settings, as_of, window_days, progress, with_value)


def run_partitioned(
    sources: Sequence[History],
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    window_days: int | None = None,
    progress: Progress | None = None,
    with_value: bool = True,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """`run_stages` on histories already split: `sources[p]` holds partition p of len(sources).

    The entry point for history already on disk per partition (the history store's part files):
    nothing but the sample's lines and the results pass through this process.
    """
    n = len(sources)
    parts = _customer_parts(customers, n)
    tasks = list(zip(sources, parts))
    with _local_pool(settings, n) as pool:
        g = fit_globals(sources, settings, as_of, window_days, with_value, pool)
        if progress:
            progress("profile globals", 1, 1)
        if settings.scale.executor == "dask":
            results = _run_dask(tasks, g, progress)
        else:
            results = _run_local(tasks, g, progress, pool)
    # each partition's rows are sorted by customer_key, category and a customer is in one partition
    # only: a stable sort on the integer key gives the same order as sorting on both (a third of the CPU);
    # in a thread (polars lets go of the GIL) while the value's models are fitted here
    with ThreadPoolExecutor(max_workers=1) as thread:
        profile = thread.submit(lambda: pl.concat([r[0] for r in results]).sort("customer_key", maintain_order=True))
        if not with_value:
            return profile.result(), None
        value = score_value(pl.concat([r[1] for r in results], how="vertical_relaxed"), as_of, settings.value)
        if progress:
            progress("customer value", 1, 1)
        return profile.result(), value


@contextmanager
def partition_sources(history: pl.DataFrame, n: int, on_disk: bool) -> Iterator[list[Any]]:
    """Each partition's history: the frames themselves, or (`on_disk`) Parquet paths a worker reads.

    For a frame without a database (benchmarks): the partitions are written to a scratch directory
    (`engine.scratch`: ``LISTWISE_SCRATCH`` or the system's temporary directory; on a cluster, a
    directory every worker mounts), removed on exit (or by the next run, when this one is killed).
    """
    if not on_disk:
        yield [history] if n == 1 else [history.filter(pl.col("customer_key") % n == p) for p in range(n)]
        return
    with scratch_dir("partitions") as root:
        parts = history.with_columns((pl.col("customer_key") % n).alias("_p")).partition_by(
            "_p", as_dict=True, include_key=False, maintain_order=True
        )
        paths = []
        for p in range(n):
            path = root / f"part-{p:02d}-of-{n:02d}.parquet"
            # scratch files, read once: lz4 writes 3x faster than zstd
            parts.get((p,), history.clear()).write_parquet(path, compression="lz4", statistics=False)
            paths.append([str(path)])
        yield paths


def _fresh(run: Callable[[], Any], tries: int = 3) -> Any:
    """`run()` (which lists the store's part files itself), again when a compaction replaced a file
    it had listed (`HistoryMoved`): at most `tries` times."""
    for _ in range(tries - 1):
        try:
            return run()
        except HistoryMoved:
            continue
    return run()


def store_sources(
    db: Gateway, n: int, end: dt.date, start: dt.date | None, keys: pl.Series | None = None
) -> list[StoreSource]:
    """Partition p of n's `StoreSource` for every p: the store's committed part files, the checkout
    lines and the catalogue, read in one transaction. `ConfigError` unless n divides the store's buckets."""
    from engine.history_store import part_files

    buckets = db.history_store().buckets
    if n < 1 or buckets % n:
        raise ConfigError(
            f"scale.partitions ({n}) must divide the history store's {buckets} buckets "
            "(history.buckets, fixed at 'listwise init')"
        )
    with db.reading():
        products = db.products()
        sources = []
        for p in range(n):
            files = part_files(db, (p, n), end, start)
            sources.append(
                StoreSource(
                    tuple(path for path, _ in files),
                    tuple(b for _, b in files),
                    buckets,
                    db.db_lines(end, start, (p, n)),
                    products,
                    end,
                    start,
                    None if keys is None else keys.filter(keys % n == p),
                    (p, n),
                )
            )
        return sources


def run_store(
    db: Gateway,
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    start: dt.date | None,
    window_days: int | None = None,
    progress: Progress | None = None,
    with_value: bool = True,
    keys: pl.Series | None = None,
) -> tuple[pl.DataFrame, pl.DataFrame | None]:
    """`run_stages` on the database's history store: each partition reads its own part files by path
    (no copy of history is written or held here); the globals' sample reads only the sample's lines.

    `start`: the first day of history to read (`engine.history.history_start`); `keys`: only these
    customers (None: every card holder with history).
    """
    n = partitions_of(settings)
    if settings.scale.executor not in EXECUTORS:
        raise ConfigError(f"scale.executor must be 'local' or 'dask', got {settings.scale.executor!r}")

    def run() -> tuple[pl.DataFrame, pl.DataFrame | None]:
        sources = store_sources(db, n, as_of, start, keys)
        if not any(s.paths or s.checkout.height for s in sources):
            raise StateError(f"no purchase history before {as_of} (import transactions first)")
        if progress:
            progress("partition files", 1, 1)
        return run_partitioned(sources, customers, settings, as_of, window_days, progress, with_value)

    return _fresh(run)


def _in_turn(
    settings: Settings, fn: Callable[..., Any], calls: list[tuple], shared: Any, progress: Progress | None, label: str
) -> list[Any]:
    """`fn(*call, shared)` for every call: on the Dask cluster (`_on_dask`), or here one after the other
    (a light stage: polars reads and sums a partition with every core; no process pool to start)."""
    if settings.scale.executor == "dask":
        return _on_dask(settings, fn, calls, shared, progress, label)
    results = []
    for i, call in enumerate(calls):
        results.append(_compact(fn(*call, shared)))
        if progress:
            progress(label, i + 1, len(calls))
    return results


@dataclass(frozen=True)
class TotalsWindow:
    """The windows of the batch's sums over lines: spend in the `spend_weeks` weeks before `as_of`
    (who qualifies), per-unit prices in the `price_days` days before it (the catalogue's missing prices)."""

    as_of: dt.date
    spend_weeks: int
    price_days: int

    @property
    def start(self) -> dt.date:
        return min(self.as_of - dt.timedelta(weeks=self.spend_weeks), self.as_of - dt.timedelta(days=self.price_days))


_TOTAL_COLUMNS = ["customer_key", "day", "product_key", "quantity", "amount_cents", "discount_cents"]


def partition_totals(history: History, w: TotalsWindow) -> tuple[pl.DataFrame, pl.DataFrame]:
    """(`coupons.qualify.window_spend`, `coupons.prices.price_counts`) of one partition's lines.

    Both add up: the spends of the partitions concatenated and their price counts summed are the
    whole history's (customers do not share a partition), so the batch never holds every line.
    """
    if isinstance(history, StoreSource):
        lines = history.lines(w.start, _TOTAL_COLUMNS)
    else:  # a frame, or Parquet paths of one (`_lazy` keeps only the profile's columns)
        frame = history.lazy() if isinstance(history, pl.DataFrame) else pl.scan_parquet(history)
        lines = frame.filter((pl.col("day") >= w.start) & (pl.col("day") < w.as_of)).select(_TOTAL_COLUMNS).collect()
    return window_spend(lines, w.as_of, w.spend_weeks), price_counts(lines, w.as_of, w.price_days)


def store_totals(
    db: Gateway, settings: Settings, w: TotalsWindow, progress: Progress | None = None
) -> tuple[pl.DataFrame, pl.DataFrame]:
    """The whole history's (window_spend, price_counts), summed over the store's partitions.

    Each partition reads only the columns a sum needs, of its own part files: in this process one
    after the other (polars reads a file with every core), or on the Dask cluster by path.
    """
    n = partitions_of(settings)

    def run() -> list[tuple[pl.DataFrame, pl.DataFrame]]:
        calls = [(source,) for source in store_sources(db, n, w.as_of, w.start)]
        return _in_turn(settings, partition_totals, calls, w, progress, "line totals")

    results = _fresh(run)
    spend = pl.concat([r[0] for r in results]).sort("customer_key")
    counts = pl.concat([r[1] for r in results])
    return spend, counts


def partition_value(history: History, customers: pl.DataFrame | None, job: tuple[Settings, dt.date]) -> pl.DataFrame:
    """`cycles.value.value_parts` of one partition: its lines in the value's lookback, its customers."""
    settings, as_of = job
    start = as_of - dt.timedelta(weeks=settings.value.rfm_lookback_weeks)
    frame = _lazy(history).filter((pl.col("day") < as_of) & (pl.col("day") >= start)).collect()
    return value_parts(frame, as_of, customers, qualifying_weeks=settings.batch.qualifying_weeks, params=settings.value)


def store_value(
    db: Gateway, customers: pl.DataFrame | None, settings: Settings, as_of: dt.date, progress: Progress | None = None
) -> pl.DataFrame:
    """The customer value frame of the store's history (`cycles.value.customer_value`), partition by
    partition: no global of the profile is needed, so no sample; each partition's `value_parts` (one
    small row a customer) in this process one after the other, or on Dask by path, then `score_value`
    compares every customer (RFM, ABC, CLV). `customers`: every one gets a row (None: those with lines)."""
    n = partitions_of(settings)
    start = as_of - dt.timedelta(weeks=settings.value.rfm_lookback_weeks)
    parts = _customer_parts(customers, n)

    def run() -> list[pl.DataFrame]:
        sources = store_sources(db, n, as_of, start)
        if not any(s.paths or s.checkout.height for s in sources):
            raise StateError(f"no purchase history before {as_of} (import transactions first)")
        calls = list(zip(sources, parts))
        return _in_turn(settings, partition_value, calls, (settings, as_of), progress, "customer value partitions")

    results = _fresh(run)
    return score_value(pl.concat(results, how="vertical_relaxed"), as_of, settings.value)


# A second stage after the profile (`run_store_then`): then(profile rows, value rows, *args, job) of one
# partition, returning a tuple of frames. It runs where the partition's profile is (a local worker
# reads it from its scratch file, a Dask worker holds it in memory), so the profile never comes back.
Then = Callable[..., tuple[pl.DataFrame, ...]]


def _to_files(frames: tuple[pl.DataFrame, ...], out: str) -> tuple[str, ...]:
    stem = Path(out) / uuid.uuid4().hex
    paths = []
    for i, frame in enumerate(frames):
        frame.write_ipc(f"{stem}.{i}.arrow", compression="uncompressed")
        paths.append(f"{stem}.{i}.arrow")
    return tuple(paths)


def _from_files(paths: tuple[str, ...]) -> tuple[pl.DataFrame, ...]:
    frames = tuple(pl.read_ipc(path) for path in paths)
    for path in paths:
        Path(path).unlink(missing_ok=True)
    return frames


def _then_at(args: tuple[str, pl.DataFrame, Then, tuple, Any, str]) -> tuple[str, ...]:
    """A local worker's second stage: the partition's profile from the scratch file phase one wrote
    (removed once read), its customers' value rows, `then`; the frames go back as files."""
    profile_path, value, then, extra, job, out = args
    (profile,) = _from_files((profile_path,))
    return _to_files(then(profile, value, *extra, job), out)


def _then_of(stage: tuple[pl.DataFrame, pl.DataFrame | None], value: pl.DataFrame, then: Then, *rest: Any) -> Any:
    """A Dask worker's second stage on the profile its first stage holds (`stage`: a future's result)."""
    return then(stage[0], value, *rest)


def _value_of(stage: tuple[pl.DataFrame, pl.DataFrame | None]) -> pl.DataFrame | None:
    return stage[1]


def _then_local(
    tasks: list[tuple[History, pl.DataFrame | None]],
    g: StageGlobals,
    then: Then,
    extra: list[tuple],
    job: Any,
    progress: Progress | None,
    label: str,
    prepare: Callable[[pl.DataFrame], pl.DataFrame],
    scratch: str,
    pool: ProcessPoolExecutor | None = None,
) -> tuple[pl.DataFrame, list[tuple[pl.LazyFrame, ...]]]:
    n, s = len(tasks), g.settings
    if n == 1:
        profile, parts = partition_stage(tasks[0][0], tasks[0][1], g)
        if progress:
            progress("profile partitions", 1, 1)
        value = score_value(parts, g.as_of, s.value)
        out = then(profile, prepare(value), *extra[0], job)
        if progress:
            progress(label, 1, 1)
        return value, [tuple(frame.lazy() for frame in out)]
    results: list[tuple[pl.LazyFrame, ...]] = []
    step = "profile"
    try:
        profiles, parts = [], []
        for i, (profile_path, value_path) in enumerate(pool.map(_stage_at, [(*t, g, scratch) for t in tasks])):
            profiles.append(profile_path)
            parts.append(_from_files((value_path,))[0])
            if progress:
                progress("profile partitions", i + 1, n)
        value = score_value(pl.concat(parts, how="vertical_relaxed"), g.as_of, s.value)
        del parts
        if progress:
            progress("customer value", 1, 1)
        step = label
        ready = prepare(value)
        calls = [(path, _slice(ready, n, p), then, extra[p], job, scratch) for p, path in enumerate(profiles)]
        del ready
        for i, paths in enumerate(pool.map(_then_at, calls)):
            results.append(tuple(pl.scan_ipc(path) for path in paths))
            if progress:
                progress(label, i + 1, n)
    except BrokenProcessPool:
        raise StateError(
            f"a partition's process died (killed, or out of memory) in the {step} step; "
            "nothing was written: run the command again (more --partitions need less memory each)"
        ) from None
    return value, results


def _then_dask(
    tasks: list[tuple[History, pl.DataFrame | None]],
    g: StageGlobals,
    then: Then,
    extra: list[tuple],
    job: Any,
    progress: Progress | None,
    label: str,
    prepare: Callable[[pl.DataFrame], pl.DataFrame],
    scratch: str,
) -> tuple[pl.DataFrame, list[tuple[pl.LazyFrame, ...]]]:
    n, run = len(tasks), uuid.uuid4().hex
    slug = label.replace(" ", "-")
    with _client(g.settings) as client:
        shared = client.scatter(g, broadcast=True)
        stages = [
            client.submit(partition_stage, h, c, shared, pure=False, key=f"listwise-profile-{i}-{run}")
            for i, (h, c) in enumerate(tasks)
        ]
        parts = _gather(
            [client.submit(_value_of, f, pure=False, key=f"listwise-value-{i}-{run}") for i, f in enumerate(stages)],
            progress,
            "profile partitions",
        )
        value = score_value(pl.concat(parts, how="vertical_relaxed"), g.as_of, g.settings.value)
        if progress:
            progress("customer value", 1, 1)
        job_ = client.scatter(job, broadcast=True)
        ready = prepare(value)
        # each second stage depends on its partition's first: the scheduler runs it where that profile is
        seconds = [
            client.submit(
                _then_of, f, _slice(ready, n, p), then, *extra[p], job_, pure=False, key=f"listwise-{slug}-{p}-{run}"
            )
            for p, f in enumerate(stages)
        ]
        # each partition's frames, as they come, to this machine's scratch files: only what the caller
        # reads of them is ever in memory (the batch: a few columns of the offers, then one partition)
        results = []
        for frames in _gather(seconds, progress, label, keep=False):
            results.append(tuple(pl.scan_ipc(path) for path in _to_files(frames, scratch)))
        return value, results


def run_store_then(
    db: Gateway,
    customers: pl.DataFrame | None,
    settings: Settings,
    as_of: dt.date,
    start: dt.date | None,
    then: Then,
    job: Any,
    extra: list[tuple] | None = None,
    window_days: int | None = None,
    progress: Progress | None = None,
    keys: pl.Series | None = None,
    label: str = "offers partitions",
    prepare: Callable[[pl.DataFrame], pl.DataFrame] | None = None,
    scratch: str | Path | None = None,
) -> tuple[pl.DataFrame, list[tuple[pl.LazyFrame, ...]]]:
    """The customer value frame, and ``then(profile_p, value_p, *extra[p], job)`` of every partition p.

    `run_store`'s stages, but the profile rows stay with their partition: a second stage `then`
    (importable, pure) turns each partition's profile and value rows into what the caller keeps
    (the batch: its shortlisted offers, needs and tallies), so no process holds the whole profile.
    `extra[p]`: partition p's own arguments (small); `job`: shared by all (sent once to Dask);
    `prepare`: what the value frame needs of every customer before it is split (here: a rank among
    all customers), applied to the whole frame; `value_p` are its rows.

    Each partition's frames come back as lazy scans of Arrow IPC files in `scratch` (a directory the
    caller removes when it has read them; required unless one partition runs here, in memory): the
    caller reads the columns it needs of all of them, and the rest one partition at a time.
    """
    n = partitions_of(settings)
    if settings.scale.executor not in EXECUTORS:
        raise ConfigError(f"scale.executor must be 'local' or 'dask', got {settings.scale.executor!r}")
    extra = extra or [()] * n

    if scratch is None and (n > 1 or settings.scale.executor == "dask"):
        raise ValueError("run_store_then needs a scratch directory for more than one partition")

    def run() -> tuple[pl.DataFrame, list[tuple[pl.LazyFrame, ...]]]:
        sources = store_sources(db, n, as_of, start, keys)
        if not any(s.paths or s.checkout.height for s in sources):
            raise StateError(f"no purchase history before {as_of} (import transactions first)")
        if progress:
            progress("partition files", 1, 1)
        tasks = list(zip(sources, _customer_parts(customers, n)))
        with _local_pool(settings, n) as pool:
            g = fit_globals(sources, settings, as_of, window_days, True, pool)
            if progress:
                progress("profile globals", 1, 1)
            args = (tasks, g, then, extra, job, progress, label, prepare or (lambda v: v), str(scratch))
            if settings.scale.executor == "dask":
                return _then_dask(*args)
            return _then_local(*args, pool)

    return _fresh(run)
