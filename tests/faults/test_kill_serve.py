"""kill -9 of a real `listwise serve` receiving checkouts from several lanes, then a restart.

Claims, on SQLite and PostgreSQL:
* every checkout answered 200 is in the database exactly once, with the answer it was given;
* nothing is half-written: each recorded checkout has its basket (and the basket its lines),
  each basket from the service its checkout row, each redemption its basket;
* every basket re-sent to the restarted service is answered 200, and a basket answered before
  the kill gets the very same answer again (idempotent), whether or not the kill came between
  its commit and its answer;
* no offer is used more often than its limit.

The chain is tests/checkout's (list 1 of C1 with four offers of 1 or 2 uses, list 5 of C2).
"""

from __future__ import annotations

import contextlib
import json
import os
import queue
import signal
import subprocess
import sys
import threading
import time

import httpx
import pytest
import sqlalchemy as sa

from engine.db import connect
from tests.checkout.conftest import CARD, NOW, REPO, SECRET, _keys, _wait_ready, basket, build_chain, free_port

BASKETS = 120
LANES = 6
KILL_AFTER = 25  # answers 200 before the kill
ITEMS = [
    {"sku": "COFFEE-1", "quantity": 1, "amount_cents": 499},
    {"sku": "MILK-1", "quantity": 3, "amount_cents": 567},
    {"sku": "TEA-1", "quantity": 1, "amount_cents": 350},
    {"sku": "BREAD-1", "quantity": 10, "amount_cents": 2590},
]


def _bodies(codes: dict[str, str]) -> list[dict]:
    """Baskets with list 1's code, list 5's code, or C1's card: all compete for the same offers."""
    out = []
    for i in range(BASKETS):
        extra = ({"codes": [codes["1"]]}, {"codes": [codes["5"]]}, {"card_number": CARD})[i % 3]
        out.append(basket(f"K{i:03d}", items=ITEMS, lane=i % LANES, **extra))
    return out


def _serve(url: str, tmp_path, port: int, die_after: int | None = None) -> subprocess.Popen:
    """`listwise serve` in its own process, its clock at the chain's NOW (tests/checkout's hook).

    `die_after` n: the process kills itself (SIGKILL) as the n-th checkout returns, committed and
    not yet answered (a test-only wrapper installed by the same hook, as the clock).
    """
    hook = tmp_path / f"hook-{port}"
    hook.mkdir(exist_ok=True)
    text = (
        "import datetime as dt\nimport engine.checkout as c\n"
        f"c.server_now = lambda: dt.datetime.fromisoformat({NOW.isoformat()!r})\n"
    )
    if die_after:
        text += (
            "import itertools, os, signal\n_real, _n = c.checkout, itertools.count(1)\n"
            "def _dying(*a, **k):\n    out = _real(*a, **k)\n"
            f"    if next(_n) == {die_after}:\n        os.kill(os.getpid(), signal.SIGKILL)\n"
            "    return out\nc.checkout = _dying\n"
        )
    (hook / "sitecustomize.py").write_text(text)
    env = {
        "LISTWISE_SECRET": SECRET.decode(),
        "LISTWISE_DATABASE_URL": url,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{hook}:{REPO}",
    }
    log = open(tmp_path / f"server-{port}.log", "wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    log.close()
    _wait_ready(f"http://127.0.0.1:{port}", proc)
    return proc


def _post(base: str, key: str, body: dict) -> httpx.Response:
    return httpx.post(base + "/v1/checkout", json=body, headers={"X-API-Key": key}, timeout=30)


def _invariants(url: str) -> dict[str, dict]:
    """Checks nothing is half-written and no offer over-used; returns {basket_id: stored answer}."""
    engine = connect(url)
    with engine.connect() as conn:
        q = lambda sql: conn.execute(sa.text(sql)).all()
        checkouts = {r.basket_id: r.response_json for r in q("SELECT basket_id, response_json FROM checkouts")}
        baskets = q(
            "SELECT b.basket_id, b.line_count, (SELECT count(*) FROM basket_lines l WHERE "
            "l.basket_key = b.basket_key) AS lines FROM baskets b WHERE b.source = 'checkout'"
        )
        orphans = q(
            "SELECT r.basket_id FROM redemptions r LEFT JOIN baskets b ON b.store_id = r.store_id "
            "AND b.basket_id = r.basket_id WHERE b.basket_key IS NULL"
        )
        overused = q(
            "SELECT o.offer_id, o.max_uses, count(r.redemption_id) FROM offers o JOIN redemptions r "
            "ON r.offer_id = o.offer_id AND r.voided = 0 GROUP BY o.offer_id, o.max_uses "
            "HAVING count(r.redemption_id) > o.max_uses"
        )
        duplicated = q("SELECT basket_id FROM baskets GROUP BY store_id, basket_id HAVING count(*) > 1")
    engine.dispose()
    assert all(text for text in checkouts.values())  # no claim left without its answer
    assert sorted(b.basket_id for b in baskets) == sorted(checkouts)  # a basket per checkout, a checkout per basket
    assert all(b.line_count == b.lines == len(ITEMS) for b in baskets)
    assert orphans == [] and overused == [] and duplicated == []
    return {basket_id: json.loads(text) for basket_id, text in checkouts.items()}


@pytest.mark.slow  # two server starts and 240 checkouts: ~20 s
@pytest.mark.parametrize("kill", ["mid-stream", "after-commit"])
def test_a_killed_server_loses_nothing_answered_and_half_writes_nothing(db_url, tmp_path, kill):
    """`mid-stream`: SIGKILL from outside once KILL_AFTER checkouts were answered, lanes in flight;
    `after-commit`: the server dies as its KILL_AFTER-th checkout is committed, before answering it."""
    chain = build_chain(db_url)
    key, _ = _keys(chain.url)
    bodies = _bodies(chain.codes)
    port = free_port()
    proc = _serve(chain.url, tmp_path, port, die_after=KILL_AFTER if kill == "after-commit" else None)
    base = f"http://127.0.0.1:{port}"
    todo: queue.Queue = queue.Queue()
    for body in bodies:
        todo.put(body)
    answered: dict[str, dict] = {}
    failed: list[str] = []
    lock = threading.Lock()

    def lane() -> None:
        while True:
            try:
                body = todo.get_nowait()
            except queue.Empty:
                return
            try:
                r = _post(base, key, body)
            except httpx.HTTPError:
                with lock:
                    failed.append(body["basket_id"])
                continue
            with lock:
                if r.status_code == 200:
                    answered[body["basket_id"]] = r.json()
                else:
                    failed.append(body["basket_id"])

    threads = [threading.Thread(target=lane) for _ in range(LANES)]
    for t in threads:
        t.start()
    if kill == "mid-stream":
        deadline = time.monotonic() + 120
        while len(answered) < KILL_AFTER and time.monotonic() < deadline:
            time.sleep(0.002)
        os.kill(proc.pid, signal.SIGKILL)  # lanes have requests in flight
    for t in threads:
        t.join(60)
    assert proc.wait(10) == -signal.SIGKILL
    assert len(answered) < BASKETS and failed, (len(answered), len(failed))

    stored = _invariants(chain.url)
    if kill == "after-commit":  # at least the dying one: committed, unanswered
        assert len(set(stored) - set(answered)) >= 1 and len(stored) >= KILL_AFTER
    assert {b: stored.get(b) for b in answered} == answered  # every 200 is there, with its answer

    port = free_port()
    proc = _serve(chain.url, tmp_path, port)
    base = f"http://127.0.0.1:{port}"
    try:
        again = {body["basket_id"]: _post(base, key, body) for body in bodies}
    finally:
        proc.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            proc.wait(10)
        if proc.poll() is None:
            proc.kill()
    assert {b: r.status_code for b, r in again.items()} == {b["basket_id"]: 200 for b in bodies}
    assert {b: again[b].json() for b in answered} == answered  # a re-sent checkout gets the same answer
    # a basket committed before the kill whose answer was lost is replayed, not recorded twice
    assert {b: again[b].json() for b in stored} == stored
    final = _invariants(chain.url)
    assert sorted(final) == sorted(b["basket_id"] for b in bodies)
    uses: dict[int, int] = {}
    for answer in final.values():
        for line in answer["lines"]:
            uses[line["offer_id"]] = uses.get(line["offer_id"], 0) + line["uses"]
    assert uses == {101: 1, 102: 2, 103: 1, 104: 1, 501: 1}  # each offer used to its limit, not beyond
