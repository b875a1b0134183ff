"""Two real `listwise batch run` processes started together on one database: one batch for the
period, with the lists and codes an uninterrupted run writes, and neither run ends in a traceback.

Issue 13: two overlapping runs of one period rewrote a finished batch (its list ids moved and
the printed codes turned 'unknown'). tests/engine/test_batch_lifecycle.py stages the race in one
process (a monkeypatched step); here the two runs are separate processes, as two operators
(or a cron job and an operator) would start them, on SQLite and PostgreSQL.
"""

from __future__ import annotations

import datetime as dt
import threading

import pytest
import sqlalchemy as sa

from engine.batch import _start_batch
from engine.config import Settings
from engine.db import connect
from tests.faults.conftest import RUN, SECOND_PERIOD, cli, copy_database, dump_batches

TAKEN_OVER = f"error: the batch of {SECOND_PERIOD} was taken over by another run of 'batch run'; this run wrote nothing"


@pytest.mark.slow  # two concurrent CLI batch runs: ~30 s under load
@pytest.mark.parametrize("dated", [False, True], ids=["plain", "period-start"])
def test_two_racing_runs_leave_one_batch_and_the_uninterrupted_codes(request, second_batch, tmp_path, dated):
    kind, base, expected = second_batch
    url = copy_database(request, base, tmp_path)
    args = (*RUN, "--period-start", SECOND_PERIOD) if dated else RUN
    runs = [cli(url, *args, "--out", str(tmp_path / f"out-{i}"), cwd=tmp_path, wait=False) for i in range(2)]
    results = [(p.wait(300), *p.communicate()) for p in runs]
    for code, out, err in results:
        assert "Traceback" not in err and "internal error" not in err, err
        # a run either wrote the batch, or returned the one the other wrote, or was taken over mid-way
        assert (code, err.strip()) in ((0, ""), (1, TAKEN_OVER)), (code, out, err)
    assert any(code == 0 for code, _, _ in results)
    assert dump_batches(url) == expected  # one batch, the same list ids, codes, offers and summary

    again = cli(url, *RUN, "--period-start", SECOND_PERIOD, "--out", str(tmp_path / "out"), cwd=tmp_path)
    assert again.returncode == 0, again.stderr  # the finished batch is returned, not rewritten
    assert dump_batches(url) == expected


def test_two_claims_of_a_new_period_at_the_same_instant_both_succeed(db_url):
    """The claim (`_start_batch`) of two runs at once, 20 times: one inserts the period, the other takes
    it over; on PostgreSQL the second used to die on the unique period_start (IntegrityError) when both
    looked before either committed."""
    settings = Settings(database_url=db_url, secret="s")
    outcomes, errors = [], []
    for k in range(20):
        start = dt.date(2025, 1, 6) + dt.timedelta(days=14 * k)
        barrier = threading.Barrier(2)

        def claim() -> None:
            engine = connect(db_url)
            barrier.wait()
            try:
                outcomes.append(_start_batch(engine, settings, start, start + dt.timedelta(days=14))[:2])
            except Exception as exc:  # noqa: BLE001 - what the test counts
                errors.append(f"{type(exc).__name__}: {str(exc)[:120]}")
            finally:
                engine.dispose()

        threads = [threading.Thread(target=claim) for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == []
    engine = connect(db_url)
    with engine.connect() as conn:
        rows = conn.execute(sa.text("SELECT batch_id, status, run_token FROM batches ORDER BY batch_id")).all()
    engine.dispose()
    assert len(rows) == 20 and {r.status for r in rows} == {"running"}  # one row a period
    # both claims of a period name its one batch; the later one holds the token
    by_batch: dict[int, list[str]] = {}
    for batch_id, token in outcomes:
        by_batch.setdefault(batch_id, []).append(token)
    assert {r.batch_id: r.run_token in by_batch[r.batch_id] for r in rows} == {r.batch_id: True for r in rows}
    assert all(len(tokens) == 2 for tokens in by_batch.values())
