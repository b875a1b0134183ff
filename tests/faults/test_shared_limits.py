"""Failed-check limits shared by the service's processes (engine/shared_limits.py).

`serve --workers N` used to keep a limit per process: a guesser spread over N workers got N
times the limit. Claims: the shared buckets do the in-memory buckets' arithmetic (hand-worked
below), two instances on one database (two processes) see one bucket, and a real
`listwise serve --workers 2` answers exactly `max_failed_checks_per_lane` bad checks from one
lane before 429, whichever worker each connection reached. SQLite and PostgreSQL.
"""

from __future__ import annotations

import contextlib
import subprocess
import sys

import httpx
import pytest

from engine.codes import make_code
from engine.db import connect
from engine.server import _FailureLimits
from engine.shared_limits import SharedFailureLimits
from tests.checkout.conftest import NOW, REPO, SECRET, _keys, _wait_ready, build_chain, free_port


class Clock:
    def __init__(self) -> None:
        self.t = 1_000_000.0

    def __call__(self) -> float:
        return self.t


def _steps(a, b, clock: Clock) -> list[int]:
    """A hand-worked sequence (per key 3, per lane 2, window 60 s): failures through `a`, waits through `b`."""
    seen = []
    a.fail(1, "S1", 1)
    a.fail(1, "S1", 1)
    seen.append(b.wait(1, "S1", 1))  # lane 1 empty: a token back in 60 / 2 = 30 s
    seen.append(b.wait(1, "S1", 2))  # lane 2 full, key holds 1 token: go
    a.fail(1, "S1", 2)
    seen.append(b.wait(1, "S1", 2))  # key empty: a token back in 60 / 3 = 20 s
    seen.append(b.wait(2, "S1", 9))  # another key and lane: go
    clock.t += 20
    seen.append(b.wait(1, "S1", 2))  # key refilled one token, lane 2 holds 1: go
    seen.append(b.wait(1, "S1", 1))  # lane 1 at 20 * 2 / 60 = 0.67 token: 10 s to go
    clock.t += 600
    seen.append(b.wait(1, "S1", 1))  # all full again
    return seen


HAND_WORKED = [30, 0, 20, 0, 0, 10, 0]


def test_the_in_memory_buckets_give_the_hand_worked_answers():
    clock = Clock()
    limits = _FailureLimits(3, 2, 60.0, clock=clock)
    assert _steps(limits, limits, clock) == HAND_WORKED


def test_two_processes_share_one_bucket_in_the_database(db_url):
    clock = Clock()
    a, b = (SharedFailureLimits(connect(db_url), 3, 2, 60.0, clock=clock) for _ in range(2))
    assert _steps(a, b, clock) == HAND_WORKED
    engine = connect(db_url)
    with engine.connect() as conn:
        rows = sorted(r[0] for r in conn.exec_driver_sql("SELECT bucket FROM check_failures"))
    assert rows == ["key:1", "lane:S1:1", "lane:S1:2"]  # only failures write: the waits wrote nothing
    a.fail(3, "S2", 4)  # rows untouched for a whole window go with the next failure
    with engine.connect() as conn:
        assert sorted(r[0] for r in conn.exec_driver_sql("SELECT bucket FROM check_failures")) == ["key:3", "lane:S2:4"]
    engine.dispose()


@pytest.mark.slow  # a two-worker server: ~15 s
def test_a_two_worker_server_allows_the_lane_limit_once_not_per_worker(db_url, tmp_path):
    chain = build_chain(db_url)
    key, _ = _keys(chain.url)
    (tmp_path / "listwise.toml").write_text(
        "[checkout]\nmax_failed_checks_per_lane = 3\nmax_failed_checks_per_key = 100\n"
    )
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(
        "import datetime as dt\nimport engine.checkout as c\n"
        f"c.server_now = lambda: dt.datetime.fromisoformat({NOW.isoformat()!r})\n"
    )
    port = free_port()
    env = {
        "LISTWISE_SECRET": SECRET.decode(),
        "LISTWISE_DATABASE_URL": chain.url,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{hook}:{REPO}",
    }
    log = open(tmp_path / "server.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", "2"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc, seconds=60)
        statuses = []
        for i in range(12):  # a new connection each: the kernel spreads them
            r = httpx.post(
                base + "/v1/scan",
                json={"code": make_code(1 + i, b"guess"), "lane": 7},
                headers={"X-API-Key": key},
                timeout=30,
            )
            statuses.append(r.status_code)
        other_lane = httpx.post(
            base + "/v1/scan", json={"code": make_code(1, b"guess"), "lane": 8}, headers={"X-API-Key": key}, timeout=30
        )
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(15)
        if proc.poll() is None:
            proc.kill()
        log.close()
    assert statuses == [400] * 3 + [429] * 9, statuses
    assert other_lane.status_code == 400  # another lane of the same key still has its tries
