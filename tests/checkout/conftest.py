"""A small chain with lists and offers in a real database, and a real checkout server.

The chain (rows inserted with SQLAlchemy Core, codes made with engine.codes.make_code):

* stores S1, S2; customers C1 (card 4000123412341234, named, with an address) and C2.
* products: COFFEE-1 (499), MILK-1 (189), BREAD-1 (259), TEA-1 (350, category TEA), TEA-2.
* list 1 of C1, valid 2025-03-03..2025-03-16, offers
    101 COFFEE-1  125 off, max 1 use         (cycle)
    102 MILK-1     50 off, max 2 uses        (cycle)
    103 category TEA, 40 off, max 1 use      (household)
    104 reward: 300 off a basket of >= 3000  (reward)
* list 2 of C1 expired (2025-02-17..2025-03-02), list 3 of C1 revoked, list 4 of C1 not yet
  valid (2025-03-17..2025-03-30), list 5 of C2 current (offer 501 COFFEE-1 100 off).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa
import uvicorn

from engine.codes import make_code
from engine.config import CheckoutSettings, Settings
from engine.db import connect

SECRET = b"test-secret-for-checkout"
DAY = dt.date(2025, 3, 5)
AT = "2025-03-05T10:15:00"
CARD = "4000123412341234"
# The servers' clock: validity is judged by it (engine.checkout.server_now), so the tests'
# servers live on the morning of DAY (stores without a zone keep UTC).
NOW = dt.datetime(2025, 3, 5, 10, 15, tzinfo=dt.UTC)
REPO = str(Path(__file__).resolve().parents[2])


class Clock:
    """A server clock a test can move: `clock.at = ...` (an aware datetime or ISO text)."""

    def __init__(self, at: dt.datetime = NOW):
        self.at = at

    def set(self, at: str | dt.datetime) -> None:
        self.at = at if isinstance(at, dt.datetime) else dt.datetime.fromisoformat(at.replace("Z", "+00:00"))

    def __call__(self) -> dt.datetime:
        return self.at


@dataclass
class Chain:
    url: str
    codes: dict[str, str] = field(default_factory=dict)

    def count(self, table: str, where: str = "1 = 1") -> int:
        engine = connect(self.url)
        with engine.connect() as conn:
            n = conn.execute(sa.text(f"SELECT count(*) FROM {table} WHERE {where}")).scalar()
        engine.dispose()
        return int(n)

    def written(self) -> dict[str, int]:
        """Rows in every table a checkout writes."""
        return {t: self.count(t) for t in ("checkouts", "redemptions", "baskets", "basket_lines")}


def basket(basket_id: str = "B1", codes: list[str] | None = None, items: list[dict] | None = None, **extra) -> dict:
    """A checkout body for store S1 on DAY."""
    body = {
        "store_id": "S1",
        "lane": 3,
        "basket_id": basket_id,
        "timestamp": AT,
        "codes": codes or [],
        "items": items
        if items is not None
        else [
            {"sku": "COFFEE-1", "quantity": 1, "amount_cents": 499},
            {"sku": "MILK-1", "quantity": 3, "amount_cents": 567},
            {"sku": "BREAD-1", "quantity": 1, "amount_cents": 259},
        ],
    }
    body.update(extra)
    return body


def build_chain(url: str) -> Chain:
    engine = connect(url)
    d = dt.date.fromisoformat
    rows = {
        "stores": [
            {"store_id": "S1", "name": "Main St", "address": "1 Main St"},
            {"store_id": "S2", "name": "Mill Rd", "address": "9 Mill Rd"},
        ],
        "customers": [
            {
                "customer_key": 1,
                "customer_id": "C1",
                "card_number": CARD,
                "first_name": "Alice",
                "last_name": "Zebedee",
                "address_line1": "42 Quince Lane",
                "opted_out": 0,
            },
            {
                "customer_key": 2,
                "customer_id": "C2",
                "card_number": "4000999988887777",
                "first_name": "Bob",
                "last_name": "Yarrow",
                "address_line1": "7 Rowan Close",
                "opted_out": 0,
            },
        ],
        "manufacturers": [{"manufacturer_id": "M1", "name": "Maker"}],
        "products": [
            {
                "product_key": 1,
                "sku": "COFFEE-1",
                "description": "Coffee 500g",
                "category": "COFFEE",
                "brand_type": "national",
                "regular_price_cents": 499,
            },
            {
                "product_key": 2,
                "sku": "MILK-1",
                "description": "Milk 1l",
                "category": "MILK",
                "brand_type": "store",
                "regular_price_cents": 189,
            },
            {
                "product_key": 3,
                "sku": "BREAD-1",
                "description": "Bread",
                "category": "BREAD",
                "brand_type": "store",
                "regular_price_cents": 259,
            },
            {
                "product_key": 4,
                "sku": "TEA-1",
                "description": "Tea 40",
                "category": "TEA",
                "brand_type": "national",
                "regular_price_cents": 350,
            },
            {
                "product_key": 5,
                "sku": "TEA-2",
                "description": "Tea 80",
                "category": "TEA",
                "brand_type": "store",
                "regular_price_cents": 450,
            },
        ],
        "batches": [
            {
                "batch_id": b,
                "period_start": d(s),
                "period_end": d(e),
                "status": "done",
                "started_at": dt.datetime(2025, 1, 1),
            }
            for b, s, e in [
                (1, "2025-03-03", "2025-03-17"),
                (2, "2025-02-17", "2025-03-03"),
                (3, "2025-03-17", "2025-03-31"),
                (4, "2025-01-06", "2025-01-20"),
            ]
        ],
        "lists": [
            {"list_id": 1, "batch_id": 1, "customer_key": 1, "vf": "2025-03-03", "vt": "2025-03-16", "st": "active"},
            {"list_id": 2, "batch_id": 2, "customer_key": 1, "vf": "2025-02-17", "vt": "2025-03-02", "st": "active"},
            {"list_id": 3, "batch_id": 4, "customer_key": 1, "vf": "2025-03-03", "vt": "2025-03-16", "st": "revoked"},
            {"list_id": 4, "batch_id": 3, "customer_key": 1, "vf": "2025-03-17", "vt": "2025-03-30", "st": "active"},
            {"list_id": 5, "batch_id": 1, "customer_key": 2, "vf": "2025-03-03", "vt": "2025-03-16", "st": "active"},
        ],
    }
    offers = [
        (101, 1, 1, "cycle", 1, "COFFEE", 125, None, 1),
        (102, 1, 2, "cycle", 2, "MILK", 50, None, 2),
        (103, 1, 3, "household", None, "TEA", 40, None, 1),
        (104, 1, 4, "reward", None, None, 300, 3000, 1),
        (201, 2, 1, "cycle", 1, "COFFEE", 125, None, 1),
        (301, 3, 1, "cycle", 1, "COFFEE", 125, None, 1),
        (401, 4, 1, "cycle", 1, "COFFEE", 125, None, 1),
        (501, 5, 1, "cycle", 1, "COFFEE", 100, None, 1),
    ]
    chain = Chain(url)
    with engine.begin() as conn:
        for table in ("stores", "customers", "manufacturers", "products", "batches"):
            cols = list(rows[table][0])
            for row in rows[table]:
                row = {c: row.get(c) for c in cols}
                conn.execute(
                    sa.text(f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join(':' + c for c in cols)})"), row
                )
        for lst in rows["lists"]:
            code = make_code(lst["list_id"], SECRET)
            chain.codes[str(lst["list_id"])] = code
            conn.execute(
                sa.text(
                    "INSERT INTO lists (list_id, batch_id, customer_key, store_id, code, valid_from, "
                    "valid_to, status) VALUES (:list_id, :batch_id, :customer_key, 'S1', :code, "
                    ":vf, :vt, :st)"
                ),
                {**lst, "code": code, "vf": d(lst["vf"]), "vt": d(lst["vt"])},
            )
        valid = {lst["list_id"]: (d(lst["vf"]), d(lst["vt"])) for lst in rows["lists"]}
        for oid, list_id, line_no, kind, pk, cat, cents, min_spend, uses in offers:
            conn.execute(
                sa.text(
                    "INSERT INTO offers (offer_id, list_id, line_no, kind, product_key, category, funder, "
                    "discount_cents, min_spend_cents, max_uses, valid_from, valid_to) VALUES (:o, :l, :n, :k, :pk, "
                    ":cat, 'retailer', :c, :ms, :u, :vf, :vt)"
                ),
                {
                    "o": oid,
                    "l": list_id,
                    "n": line_no,
                    "k": kind,
                    "pk": pk,
                    "cat": cat,
                    "c": cents,
                    "ms": min_spend,
                    "u": uses,
                    "vf": valid[list_id][0],
                    "vt": valid[list_id][1],
                },
            )
    engine.dispose()
    return chain


@pytest.fixture
def chain(db_url) -> Chain:
    return build_chain(db_url)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base: str
    key: str  # acts for S1
    other_key: str  # acts for S2

    def post(self, path: str, body=None, key: str | None = "default", **kw) -> httpx.Response:
        headers = kw.pop("headers", {})
        if key is not None:
            headers["X-API-Key"] = self.key if key == "default" else key
        return httpx.post(self.base + path, json=body, headers=headers, timeout=30, **kw)


def _wait_ready(base: str, proc: subprocess.Popen | None = None, seconds: float = 30) -> None:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"server exited with status {proc.returncode}")
        with contextlib.suppress(httpx.HTTPError):
            if httpx.get(base + "/v1/health", timeout=1).status_code == 200:
                return
        time.sleep(0.05)
    raise RuntimeError(f"server at {base} did not come up in {seconds} s")


def _keys(url: str) -> tuple[str, str]:
    from engine.keys import create_key

    engine = connect(url)
    keys = create_key(engine, "S1"), create_key(engine, "S2")
    engine.dispose()
    return keys


@pytest.fixture
def server_settings() -> CheckoutSettings:
    """Overridden by tests that need other limits."""
    return CheckoutSettings()


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def server(chain, server_settings, clock):
    """A real uvicorn server on a free loopback port, in a thread of this process.

    Its SQLite connections stay open (pooled): a test that reads through ADBC
    (engine.history) uses `server_process` instead.
    """
    yield from serve_in_thread(
        chain, Settings(database_url=chain.url, secret=SECRET.decode(), checkout=server_settings), clock
    )


def serve_in_thread(chain, settings: Settings, clock):
    """Generator body of a server fixture: the real app under uvicorn in a thread, stopped after."""
    from engine.server import create_app

    key, other = _keys(chain.url)
    port = free_port()
    srv = uvicorn.Server(
        uvicorn.Config(
            create_app(settings, clock=clock), host="127.0.0.1", port=port, log_level="warning", access_log=False
        )
    )
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{port}"
    _wait_ready(base)
    yield Server(base, key, other)
    srv.should_exit = True
    thread.join(10)


@contextlib.contextmanager
def server_process_for(chain: Chain, tmp_path, workers: int = 1):
    """A real server process started by the CLI (`listwise serve`), as a till would meet it."""
    key, other = _keys(chain.url)
    port = free_port()
    # The server's clock set to NOW in every process of it (workers too) by a sitecustomize
    # on its path: a test-only patch, no setting of the product.
    hook = tmp_path / "clock-hook"
    hook.mkdir(exist_ok=True)
    (hook / "sitecustomize.py").write_text(
        "import datetime as dt\nimport engine.checkout as c\n"
        f"c.server_now = lambda: dt.datetime.fromisoformat({NOW.isoformat()!r})\n"
    )
    env = {
        "LISTWISE_SECRET": SECRET.decode(),
        "LISTWISE_DATABASE_URL": chain.url,
        "PATH": "/usr/bin:/bin",
        "PYTHONPATH": f"{hook}:{REPO}",
    }  # this checkout's code, not whatever is installed
    log = open(tmp_path / "server.log", "wb")  # a file, not a pipe nobody drains
    proc = subprocess.Popen(
        [sys.executable, "-m", "engine.cli", "serve", "--port", str(port), "--workers", str(workers)],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=log,
    )
    base = f"http://127.0.0.1:{port}"
    try:
        _wait_ready(base, proc)
        yield Server(base, key, other)
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
        log.close()


@pytest.fixture
def server_process(chain, tmp_path):
    """A real server process started by the CLI (`listwise serve`), as a till would meet it."""
    with server_process_for(chain, tmp_path) as server:
        yield server
