"""Partition-independent stages on local processes and a real Dask cluster (issue 14, parts 2 and 3).

The truth is the one-partition, in-process run: the profile, the customer value frame, and the
batch's lists, offers and needs must be the same, to the bit, for 1, 4, 16 (and 64) customer
partitions on the local process pool and on a `LocalCluster(n_workers=2, threads_per_worker=1)`.
The chain is the generator's (engine.sample_chain): 300 card holders x 20 weeks.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from pathlib import Path

import polars as pl
import pytest
from polars.testing import assert_frame_equal

from engine.batch import run_batch
from engine.cli import main
from engine.config import ScaleSettings, Settings
from engine.db import Gateway
from engine.ingest import import_files
from engine.profiles import profile_frames
from engine.sample_chain.generator import generate
from tests.conftest import fresh_database
from tests.faults.conftest import copy_database, dump_batches

AS_OF = dt.date(2025, 5, 19)  # the 20 weeks from 2025-01-06 end on 2025-05-25: a week of purchases after it
SECRET = "stage-secret"


@pytest.fixture(scope="module")
def chain_dir(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("generated")
    generate(out, customers=300, weeks=20, seed=5)
    return out


def _load(url: str, chain: Path) -> None:
    for kind, paths in [
        ("stores", [chain / "stores.csv"]),
        ("customers", [chain / "customers.csv"]),
        ("products", [chain / "products.csv"]),
        ("deals", [chain / "deals"]),
        ("transactions", [chain / "transactions"]),
    ]:
        import_files(url, kind, paths)


@pytest.fixture(scope="module", params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def chain_url(request, chain_dir, tmp_path_factory) -> str:
    """The generated chain imported into a database of each kind: copy it, never change it."""
    url = fresh_database(request, tmp_path_factory.mktemp("db"), request.param)
    _load(url, chain_dir)
    return url


@pytest.fixture(scope="module")
def inputs(chain_dir, tmp_path_factory) -> tuple[pl.DataFrame, pl.DataFrame]:
    url = fresh_database(None, tmp_path_factory.mktemp("frames"), "sqlite")
    _load(url, chain_dir)
    with Gateway.using(url) as db, db.reading():
        return db.history(end=AS_OF, start=AS_OF - dt.timedelta(weeks=52)), db.customers()


@pytest.fixture(scope="module")
def cluster():
    """A real dask.distributed cluster of two single-threaded worker processes."""
    distributed = pytest.importorskip("distributed")
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, dashboard_address=None, processes=True) as c:
        yield c.scheduler_address


def _frames(inputs, **scale) -> tuple[pl.DataFrame, pl.DataFrame]:
    history, customers = inputs
    return profile_frames(history, None, customers, Settings(scale=ScaleSettings(**scale)), AS_OF, 14)


@pytest.fixture(scope="module")
def one_partition(inputs) -> tuple[pl.DataFrame, pl.DataFrame]:
    return _frames(inputs)


@pytest.mark.slow
@pytest.mark.parametrize("partitions", [4, 16, 64])
def test_profile_and_value_do_not_depend_on_the_partition_count(inputs, one_partition, partitions):
    profile, value = _frames(inputs, partitions=partitions, workers=2)
    assert profile.height > 10_000 and value.height == 300  # every card holder valued, a real profile
    assert_frame_equal(profile, one_partition[0], check_exact=True)
    assert_frame_equal(value, one_partition[1], check_exact=True)


@pytest.mark.slow
def test_the_same_on_a_dask_cluster(inputs, one_partition, cluster):
    profile, value = _frames(inputs, partitions=4, executor="dask", scheduler=cluster)
    assert_frame_equal(profile, one_partition[0], check_exact=True)
    assert_frame_equal(value, one_partition[1], check_exact=True)


@pytest.mark.slow
def test_a_sample_smaller_than_the_chain_is_the_same_for_every_partitioning(inputs):
    """With 100 of the 300 customers fitting the globals, the answers move (another sample) but not with n."""
    one = _frames(inputs, sample_customers=100)
    four = _frames(inputs, sample_customers=100, partitions=4, workers=2)
    assert_frame_equal(four[0], one[0], check_exact=True)
    assert_frame_equal(four[1], one[1], check_exact=True)


@pytest.mark.slow
def test_the_batch_writes_the_same_lists_and_offers_for_any_partitioning_and_executor(
    request, chain_url, cluster, tmp_path
):
    """1, 4 and 16 local partitions and 4 on the Dask cluster: the same batch rows, codes and summary."""
    dumps = {}
    for name, scale in [
        ("1", ScaleSettings()),
        ("4", ScaleSettings(partitions=4, workers=2)),
        ("16", ScaleSettings(partitions=16, workers=2)),
        ("dask-4", ScaleSettings(partitions=4, executor="dask", scheduler=cluster)),
    ]:
        url = copy_database(request, chain_url, tmp_path)
        settings = Settings(database_url=url, secret=SECRET, scale=scale)
        summary = run_batch(settings, AS_OF, out_dir=tmp_path / name)
        assert summary["lists"] > 100 and summary["offers"] > 500, name  # a real batch
        dumps[name] = dump_batches(url)
    assert dumps["4"] == dumps["1"]
    assert dumps["16"] == dumps["1"]
    assert dumps["dask-4"] == dumps["1"]


@pytest.mark.slow
def test_partitions_read_the_stores_own_part_files_and_give_the_same_frames(chain_url, cluster, monkeypatch):
    """1, 4 and 16 local partitions and 4 on Dask reading the store's part files by path (no scratch copy)
    give, to the bit, what one in-process run on `Gateway.history`'s frame gives, for a customer subset too."""
    import engine.stages as stages
    from engine.profiles import store_profile_frames

    def no_scratch(*args, **kwargs):
        raise AssertionError("a scratch copy of history was written")

    with Gateway.using(chain_url) as db:
        with db.reading():
            history = db.history(end=AS_OF, start=AS_OF - dt.timedelta(weeks=52))
            customers = db.customers()
        keys = customers["customer_key"].filter(customers["customer_key"] % 3 != 0)  # the batch's qualifying
        subset = customers.filter(pl.col("customer_key").is_in(keys.implode()))
        truth = profile_frames(history, None, customers, Settings(), AS_OF, 14)
        truth_subset = profile_frames(
            history.filter(pl.col("customer_key").is_in(keys.implode())), None, subset, Settings(), AS_OF, 14
        )
        assert truth[0].height > 10_000 and truth[1].height == 300
        monkeypatch.setattr(stages, "partition_sources", no_scratch)
        scales = [
            ScaleSettings(),
            ScaleSettings(partitions=4, workers=2),
            ScaleSettings(partitions=16, workers=2),
            ScaleSettings(partitions=4, executor="dask", scheduler=cluster),
        ]
        if not db.sqlite:  # the partition logic is the database's only through the reads: CI time
            scales = scales[-1:]  # on PostgreSQL the Dask workers' reads by path and the checkout lines' read
        for scale in scales:
            settings = Settings(scale=scale)
            profile, value = store_profile_frames(db, customers, settings, AS_OF, 14)
            assert_frame_equal(profile, truth[0], check_exact=True)
            assert_frame_equal(value, truth[1], check_exact=True)
            profile, value = store_profile_frames(db, subset, settings, AS_OF, 14, keys=keys)
            assert_frame_equal(profile, truth_subset[0], check_exact=True)
            assert_frame_equal(value, truth_subset[1], check_exact=True)


def test_partitions_must_divide_the_stores_buckets(tmp_path):
    """A store created with 8 buckets cannot be read in 16 partitions: one line naming the setting."""
    from engine.db import connect, init_schema
    from engine.errors import ConfigError
    from engine.stages import store_sources

    url = f"sqlite:///{tmp_path / 'eight.db'}"
    engine = connect(url)
    init_schema(engine, buckets=8)
    engine.dispose()
    with Gateway.using(url) as db:
        with pytest.raises(ConfigError, match=r"scale.partitions \(16\) must divide the history store's 8 buckets"):
            store_sources(db, 16, AS_OF, None)
        assert len(store_sources(db, 4, AS_OF, None)) == 4


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--partitions", "3"], "scale.partitions must be a divisor of 64"),
        (["--executor", "dask"], "executor 'dask' needs a scheduler address"),
        (["--executor", "dask", "--scheduler", "tcp://127.0.0.1:9"], "cannot reach the dask scheduler"),
    ],
)
def test_bad_scale_options_are_one_line_errors(chain_url, tmp_path, capsys, args, message):
    if "postgres" in chain_url and "--scheduler" in args:
        pytest.skip("the scheduler is the same for both databases")
    code = main(
        ["-q", "--database", chain_url, "profile", "--as-of", str(AS_OF), "--out", str(tmp_path / "p.csv"), *args]
    )
    err = capsys.readouterr().err
    assert code == 1 and message in err and len(err.strip().splitlines()) == 1, err
    assert not (tmp_path / "p.csv").exists()


def test_the_profile_command_takes_the_partitions(chain_url, tmp_path):
    """`listwise profile --partitions 4` writes what `listwise profile` writes."""
    for name, extra in [("one", []), ("four", ["--partitions", "4", "--executor", "local"])]:
        out = tmp_path / f"{name}.parquet"
        code = main(["-q", "--database", chain_url, "profile", "--as-of", str(AS_OF), "--out", str(out), *extra])
        assert code == 0
    assert_frame_equal(pl.read_parquet(tmp_path / "four.parquet"), pl.read_parquet(tmp_path / "one.parquet"))


def test_the_customers_command_reads_the_store_in_partitions(chain_url, cluster, tmp_path):
    """`listwise customers` in 1 or 16 local partitions or 4 on Dask writes `cycles.value.customer_value` of
    `Gateway.history`'s whole frame (the independent truth: one pass, no partitions), to the bit."""
    from cycles.value import customer_value

    s = Settings()
    with Gateway.using(chain_url) as db, db.reading():
        customers = db.customers()
        history = db.history(end=AS_OF, start=AS_OF - dt.timedelta(weeks=s.value.rfm_lookback_weeks))
    truth = customer_value(history, AS_OF, customers, qualifying_weeks=s.batch.qualifying_weeks, params=s.value)
    truth = truth.join(
        customers.select("customer_key", "customer_id"), on="customer_key", maintain_order="left"
    ).select("customer_id", *[c for c in truth.columns if c != "customer_key"])
    assert truth.height == 300 and truth["rfm_segment"].n_unique() > 3
    runs = [[], ["--partitions", "16"], ["--partitions", "4", "--executor", "dask", "--scheduler", cluster]]
    if "postgres" in chain_url:  # CI time: the partition logic runs on SQLite; here the reads by path on Dask
        runs = runs[-1:]
    for i, extra in enumerate(runs):
        out = tmp_path / f"{i}.parquet"
        code = main(["-q", "--database", chain_url, "customers", "--as-of", str(AS_OF), "--out", str(out), *extra])
        assert code == 0
        assert_frame_equal(pl.read_parquet(out), truth, check_exact=True)


def test_settings_scale_section_is_validated():
    from engine.config import validate_settings
    from engine.errors import ConfigError

    for bad, key in [
        (ScaleSettings(executor="ray"), "scale.executor"),
        (ScaleSettings(partitions=0), "scale.partitions"),
        (ScaleSettings(sample_customers=5), "scale.sample_customers"),
    ]:
        with pytest.raises(ConfigError, match=key):
            validate_settings(dataclasses.replace(Settings(), scale=bad))


def test_the_batchs_sums_over_lines_add_up_over_the_stores_partitions(chain_url, cluster):
    """Who qualifies and the catalogue's missing prices, summed over 4 local or 16 Dask partitions of the
    store, are what they are of `Gateway.history`'s whole frame; a partition's checkout lines count too."""
    from coupons.prices import history_prices, prices_from_counts
    from coupons.qualify import window_spend
    from engine.stages import TotalsWindow, partition_totals, store_sources, store_totals

    w = TotalsWindow(AS_OF, 8, 60)
    with Gateway.using(chain_url) as db:
        with db.reading():
            history = db.history(end=AS_OF, start=w.start)
        spend, prices = window_spend(history, AS_OF, 8).sort("customer_key"), history_prices(history, AS_OF, 60)
        assert spend.height > 250 and prices.height > 100
        scales = [ScaleSettings(partitions=4), ScaleSettings(partitions=16, executor="dask", scheduler=cluster)]
        for scale in scales[: 2 if db.sqlite else 1]:
            got_spend, counts = store_totals(db, Settings(scale=scale), w)
            assert_frame_equal(got_spend, spend, check_exact=True)
            assert_frame_equal(prices_from_counts(counts), prices, check_exact=True)
        # a partition with checkout lines (basket_lines' rows): the sums see them as its history does
        source = store_sources(db, 4, AS_OF, w.start)[1]
    keys = source.history().filter(pl.col("day") >= w.start)["customer_key"].unique().sort()[:2]
    extra = pl.DataFrame(
        {
            "basket_key": [10**9, 10**9, 10**9 + 1],
            "line_no": [1, 2, 1],
            "customer_key": [keys[0], keys[0], keys[1]],
            "day": [AS_OF - dt.timedelta(days=1)] * 2 + [AS_OF - dt.timedelta(days=90)],  # the last: too old
            "product_key": history["product_key"][:3],
            "quantity": [1.0, 2.0, 1.0],
            "amount_cents": [12_345, 500, 999],
            "discount_cents": [0, 100, 0],
        },
        schema=source.checkout.schema,
    )
    held = dataclasses.replace(source, checkout=pl.concat([source.checkout, extra]))
    got_spend, counts = partition_totals(held, w)
    lines = held.history()
    assert_frame_equal(got_spend.sort("customer_key"), window_spend(lines, AS_OF, 8).sort("customer_key"))
    assert_frame_equal(prices_from_counts(counts), history_prices(lines, AS_OF, 60))
    before = dict(partition_totals(source, w)[0].iter_rows())
    assert dict(got_spend.iter_rows())[keys[0]] == before[keys[0]] + 12_845


def _recording_reads(monkeypatch) -> list[str]:
    """The paths every `engine.history_store.read_parts` call is given from now on (in call order)."""
    import engine.history_store as history_store

    real, seen = history_store.read_parts, []

    def recording(paths, *args, **kwargs):
        seen.extend(paths)
        return real(paths, *args, **kwargs)

    monkeypatch.setattr(history_store, "read_parts", recording)
    return seen


def _bucket(path: str) -> int:
    return int(re.search(r"bucket=(\d+)", path)[1])


def test_a_store_partitions_strata_history_is_its_history_of_those_customers_in_the_window(chain_url, monkeypatch):
    """`StoreSource.strata_history` (the globals' sample reads it): the partition's history of the customers
    with customer_key % 64 in the strata and a day in the window, files and checkout lines alike, only
    among `keys` when the source has them; of the part files only those of the strata's buckets are read."""
    from engine.stages import store_sources

    start = AS_OF - dt.timedelta(weeks=3)  # a short window: not every line is in it
    with Gateway.using(chain_url) as db:
        source = store_sources(db, 4, AS_OF + dt.timedelta(days=7), None)[2]  # partition 2: strata 2, 6, 10...
    lines = source.history()
    known = lines.filter((pl.col("day") >= start) & (pl.col("customer_key") % 64 == 6))["customer_key"][0]
    other = lines.filter(pl.col("customer_key") % 64 == 10)["customer_key"][0]  # partition 2, another stratum
    newcomer = 64 * 10**7 + 6  # stratum 6, partition 2 of 4: a customer the files do not have
    at_checkout = pl.DataFrame(
        {
            "basket_key": [10**9, 10**9 + 1, 10**9 + 2, 10**9 + 3],
            "line_no": [1, 1, 1, 1],
            "customer_key": [newcomer, known, known, other],
            "day": [AS_OF - dt.timedelta(days=3)] * 2 + [AS_OF, AS_OF - dt.timedelta(days=3)],  # the third: too late
            "product_key": lines["product_key"][:4],
            "quantity": [1.0] * 4,
            "amount_cents": [500] * 4,
            "discount_cents": [0] * 4,
        },
        schema=source.checkout.schema,
    )
    source = dataclasses.replace(source, checkout=pl.concat([source.checkout, at_checkout]))
    lines = source.history()
    of_strata = (pl.col("customer_key") % 64).is_in([2, 6]) & (pl.col("day") < AS_OF) & (pl.col("day") >= start)
    truth = lines.filter(of_strata)
    assert newcomer in truth["customer_key"] and truth.filter(pl.col("basket_key") == 10**9 + 1).height == 1
    assert set((lines["customer_key"] % 64).unique()) > {2, 6} and lines["day"].min() < start  # the filters tell
    seen = _recording_reads(monkeypatch)
    assert_frame_equal(source.strata_history([2, 6], AS_OF, start), truth, check_exact=True)
    assert sorted(seen) == sorted(p for p in source.paths if _bucket(p) in (2, 6)) and seen  # 64 buckets: s is b
    some = truth["customer_key"].unique().sort().gather([0, 2]).append(pl.Series([-1]))
    assert_frame_equal(
        dataclasses.replace(source, keys=some).strata_history([2, 6], AS_OF, start),
        truth.filter(pl.col("customer_key").is_in(some.implode())),
        check_exact=True,
    )
    # only some columns (the stage's): the same lines in the same order, only those columns read and joined
    from engine.stages import _STAGE_COLUMNS

    assert_frame_equal(
        source.strata_history([2, 6], AS_OF, start, _STAGE_COLUMNS), truth.select(_STAGE_COLUMNS), check_exact=True
    )
    assert_frame_equal(source.history(columns=_STAGE_COLUMNS), lines.select(_STAGE_COLUMNS), check_exact=True)
    kept = ["day", "customer_key", "category", "amount_cents"]
    assert_frame_equal(source.history(some, columns=kept), source.history(some).select(kept), check_exact=True)
    import engine.history_store as history_store

    real, asked = history_store.read_parts, []
    monkeypatch.setattr(history_store, "read_parts", lambda *a, **k: asked.append(k.get("columns")) or real(*a, **k))
    source.history(columns=_STAGE_COLUMNS)
    of_lines = {"basket_key", "line_no", "customer_key", "day", "product_key", "quantity", "amount_cents"}
    assert asked and all(cols is not None and set(cols) <= of_lines for cols in asked)  # not discount_cents


def _old_sample(history: pl.DataFrame, size: int, start: dt.date, keys: pl.Series | None = None) -> pl.DataFrame:
    """The globals' sample read the old way: every customer with a line in [start, AS_OF) (among `keys`),
    `sample_customers` of them all, their lines in the window."""
    from cycles.profile import sample_customers
    from engine.stages import _STAGE_COLUMNS

    window = history.filter((pl.col("day") < AS_OF) & (pl.col("day") >= start))
    if keys is not None:
        window = window.filter(pl.col("customer_key").is_in(keys.implode()))
    chosen = sample_customers(window["customer_key"], size)
    return window.filter(pl.col("customer_key").is_in(chosen.implode())).select(_STAGE_COLUMNS)


@pytest.mark.parametrize("n", [1, 4, 16])
def test_the_samples_lines_are_those_of_the_sample_of_every_customer(chain_url, n, monkeypatch):
    """`_sample_lines` reads the first key strata only, yet gives the lines `sample_customers` of every
    customer gives, to the bit and in order: of frames, of Parquet files and of the store (with `keys`
    too), for 1, 4 and 16 partitions; of the store's part files only the first strata's buckets are read."""
    from engine.stages import _sample_lines, partition_sources, store_sources

    start, later = AS_OF - dt.timedelta(weeks=8), AS_OF + dt.timedelta(days=7)  # the chain goes on after AS_OF
    with Gateway.using(chain_url) as db:
        with db.reading():
            history = db.history(end=later)
        truth = _old_sample(history, 100, start)
        assert truth["customer_key"].n_unique() == 100 and history["customer_key"].n_unique() == 300
        assert history["day"].min() < start and history["day"].max() >= AS_OF  # the window tells
        completing = (truth["customer_key"] % 64).max()  # the stratum the sample ends in
        assert 5 < completing < 40
        keys = history["customer_key"].unique().filter(history["customer_key"].unique() % 3 != 0)
        seen = _recording_reads(monkeypatch)
        stores = store_sources(db, n, later, None)
        assert_frame_equal(_sample_lines(stores, 100, AS_OF, start), truth, check_exact=True)
        read = {_bucket(p) for p in seen}
        # whole strata from 0, the completing one and at most a round's margin more, each file once
        assert read == set(range(max(read) + 1)) and completing <= max(read) < 63 and len(seen) == len(set(seen))
        assert sorted(seen) == sorted(p for s in stores for p in s.paths if _bucket(p) in read)
        subset = store_sources(db, n, later, None, keys)
        assert_frame_equal(_sample_lines(subset, 100, AS_OF, start), _old_sample(history, 100, start, keys))
    for on_disk in (False, True):
        with partition_sources(history, n, on_disk=on_disk) as sources:
            assert_frame_equal(_sample_lines(sources, 100, AS_OF, start), truth, check_exact=True)


@pytest.mark.parametrize(("buckets", "size"), [(16, 40), (16, 100), (128, 40)])
def test_the_sample_reads_the_buckets_that_hold_its_strata_whatever_the_stores_bucket_count(
    chain_dir, tmp_path, buckets, size, monkeypatch
):
    """A store of 16 buckets holds stratum s in bucket s % 16, one of 128 in buckets s and s + 64: the sample
    is the same, and only those buckets' files are read (40 customers: strata 0..8 or so; 100: 0..21, so
    strata 16.. are in buckets 0.. again)."""
    from engine.db import connect, init_schema
    from engine.stages import _sample_lines, store_sources

    url = f"sqlite:///{tmp_path / 'store.db'}"
    engine = connect(url)
    init_schema(engine, buckets=buckets)
    engine.dispose()
    _load(url, chain_dir)
    start = AS_OF - dt.timedelta(weeks=8)
    with Gateway.using(url) as db:
        with db.reading():
            truth = _old_sample(db.history(end=AS_OF), size, start)
        seen = _recording_reads(monkeypatch)
        stores = store_sources(db, 4, AS_OF, None)
        assert_frame_equal(_sample_lines(stores, size, AS_OF, start), truth, check_exact=True)
    read = sorted({_bucket(p) for p in seen})
    if size == 100:
        assert read == list(range(16)) and (truth["customer_key"] % 64).max() > 16
        return
    strata = sorted({b % 64 for b in read}) if buckets > 64 else read
    assert strata == list(range(strata[-1] + 1)) and (truth["customer_key"] % 64).max() <= strata[-1] < 15
    assert read == (strata if buckets == 16 else sorted([*strata, *(s + 64 for s in strata)]))
    assert len(seen) == len(set(seen))


def test_the_sample_is_read_in_as_many_rounds_as_the_strata_need(monkeypatch):
    """A dense stratum 0 (50 customers) and sparse others (2 each) mislead each round's estimate: the rounds
    go on until 100 customers are held, and the lines are those of the sample of every customer."""
    import engine.stages as stages
    from cycles.profile import sample_customers

    keys = [64 * i for i in range(1, 51)] + [64 * i + s for s in range(1, 64) for i in (1, 2)]
    days = [AS_OF - dt.timedelta(days=d) for d in (1, 5, 400)]  # the last: before the window
    lines = pl.DataFrame(
        {
            "customer_key": [k for k in keys for _ in days],
            "day": days * len(keys),
            "quantity": [float(i) for i in range(3 * len(keys))],
        }
    )
    start = AS_OF - dt.timedelta(weeks=52)
    window = lines.filter(pl.col("day") >= start)
    chosen = sample_customers(window["customer_key"], 100)
    truth = window.filter(pl.col("customer_key").is_in(chosen.implode())).sort(
        "customer_key", "day", maintain_order=True
    )
    assert truth["customer_key"].n_unique() == 100 and (truth["customer_key"] % 64).max() == 25
    rounds, real = [], stages._strata_lines
    monkeypatch.setattr(stages, "_strata_lines", lambda h, strata, *a: rounds.append(strata) or real(h, strata, *a))
    for n in (1, 4):
        rounds.clear()
        with stages.partition_sources(lines, n, on_disk=n > 1) as sources:
            assert_frame_equal(stages._sample_lines(sources, 100, AS_OF, start), truth, check_exact=True)
        assert len(rounds) >= 3 and rounds[0] == range(1) and rounds[-1].stop < 64
        assert [r.start for r in rounds[1:]] == [r.stop for r in rounds[:-1]]  # strata in order, each once


def test_the_globals_map_gives_every_result_in_order_whoever_computes_it():
    """`engine.stages._pool_map` (the priors' category fits): chunks the workers have not started come
    back to this process; the results are in item order either way."""
    import time
    from concurrent.futures import ProcessPoolExecutor
    from multiprocessing import get_context

    from engine.stages import _pool_map

    items, expected = list(range(-40, 0)), list(range(40, 0, -1))
    with ProcessPoolExecutor(max_workers=1, mp_context=get_context("spawn")) as pool:
        busy = pool.submit(time.sleep, 2)  # the one worker busy: this process takes back what it can
        assert list(_pool_map(pool, 1)(abs, items)) == expected
        busy.result()
        assert list(_pool_map(pool, 1)(abs, items)) == expected  # an idle worker takes its share
