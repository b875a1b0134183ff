"""The checkout service: `engine.checkout` over HTTP (FastAPI on uvicorn, OpenAPI at /docs).

Each store's point-of-sale system sends its own API key in ``X-API-Key``; a key acts for
its own store only. Every refusal is a 4xx JSON body ``{"error": word, "detail": text}``:
bodies over `settings.checkout.max_body_bytes` are refused before they are parsed (413),
malformed JSON is 400, unknown fields and bad values are 422. No response carries a
customer's name, address or full card number (the library selects none of them).

Where the work runs: on PostgreSQL in FastAPI's thread pool, each request with its own
pooled connection, so lanes proceed in parallel as far as the database lets them. On
SQLite, where writers queue for the one write lock anyway, in the event loop itself: the
hand-off to threads and their contention for the GIL cost more CPU than the checkout
(measured: 4.6 against 3.5 ms of server CPU a checkout at 200/s). The price: while another
process (an import, a batch) holds SQLite's write lock, the service waits with it.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import threading
import time
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from engine import checkout as co
from engine.chain_key import verify_secret
from engine.config import Settings, resolve_secret
from engine.db import connect, is_sqlite, require_schema

__all__ = ["create_app", "serve", "app_from_environment"]

_REFUSAL = {"model": dict, "description": 'refused: {"error": "...", "detail": "..."}'}


class _BodyLimit:
    """ASGI middleware: refuse request bodies over `max_bytes` (413) before anyone parses them.

    Checks Content-Length up front and counts the bytes of chunked bodies as they arrive;
    an accepted body is buffered and handed on unchanged.
    """

    def __init__(self, app: Any, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def _refuse(self, send: Any) -> None:
        body = json.dumps({"error": "too_large", "detail": f"request body over {self.max_bytes} bytes"}).encode()
        await send({"type": "http.response.start", "status": 413,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http" or scope["method"] in ("GET", "HEAD"):
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_bytes):
            return await self._refuse(send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":
                return                                     # client went away
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.max_bytes:
                return await self._refuse(send)
            more = message.get("more_body", False)
        body, sent = b"".join(chunks), False

        async def replay() -> dict:
            nonlocal sent
            if sent:
                return await receive()
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await self.app(scope, replay, send)


class _KeyCache:
    """key -> store, remembered `ttl` seconds (0: every request asks the database)."""

    def __init__(self, engine: sa.Engine, ttl: float):
        self.engine, self.ttl, self.lock, self.seen = engine, ttl, threading.Lock(), {}

    def store(self, key: str | None) -> str | None:
        if self.ttl <= 0 or not key:
            return co.store_for_key(self.engine, key)
        now = time.monotonic()
        with self.lock:
            hit = self.seen.get(key)
        if hit and hit[1] > now:
            return hit[0]
        store = co.store_for_key(self.engine, key)
        with self.lock:
            self.seen[key] = (store, now + self.ttl)
        return store


def _service_engine(url: str, checkpoint_seconds: float = 0.0) -> sa.Engine:
    """`engine.db.connect`, with a few SQLite connections kept open.

    engine/db.py gives SQLite a NullPool because a process that also opens ADBC sessions
    must not keep a connection lingering; this process never opens one. Opening a
    connection per request costs its PRAGMAs, and closing the last one checkpoints the WAL:
    about 2.5 ms a checkout, measured with benchmarks/checkout_bench.py.
    """
    engine = connect(url, pooled=True)
    if is_sqlite(engine):
        if checkpoint_seconds > 0:
            @sa.event.listens_for(engine, "connect")
            def _no_checkpoint_on_commit(dbapi_conn, _record):  # noqa: ANN001 - DB-API connection
                dbapi_conn.execute("PRAGMA wal_autocheckpoint=0")
    return engine


def _checkpoint_wal(engine: sa.Engine, every: float, stop: threading.Event) -> None:
    """Copy the WAL into the database file every `every` seconds, off the request path.

    By default the commit that grows the WAL past 1000 pages checkpoints it, fsync
    included: a lane's checkout then waits for it. PASSIVE never waits for readers or
    writers; the last round runs at shutdown.
    """
    while True:
        stopping = stop.wait(every)
        with contextlib.suppress(Exception):       # a busy moment: the next round catches up
            raw = engine.raw_connection()
            try:
                raw.driver_connection.execute("PRAGMA wal_checkpoint(PASSIVE)")
            finally:
                raw.close()
        if stopping:
            return


@contextlib.asynccontextmanager
async def _lifespan(app: FastAPI):
    """Start the WAL checkpointer with the service (SQLite), stop it and let the pool go at the end."""
    engine, every = app.state.engine, app.state.checkpoint_seconds
    stop = threading.Event()
    worker = None
    if is_sqlite(engine) and every > 0:
        worker = threading.Thread(target=_checkpoint_wal, args=(engine, every, stop), daemon=True,
                                  name="listwise-wal-checkpoint")
        worker.start()
    try:
        yield
    finally:
        stop.set()
        if worker is not None:
            worker.join(10)
        engine.dispose()


def create_app(settings: Settings) -> FastAPI:
    """The checkout service on `settings.database_url`, codes checked with the chain's secret."""
    engine = _service_engine(settings.database_url, settings.checkout.wal_checkpoint_seconds)
    require_schema(engine)
    secret = resolve_secret(settings)
    verify_secret(engine, secret)
    limits = settings.checkout
    keys = _KeyCache(engine, limits.key_cache_seconds)
    inline = is_sqlite(engine)

    async def call(fn: Any, *args: Any) -> Any:
        return fn(*args) if inline else await run_in_threadpool(fn, *args)

    app = FastAPI(
        lifespan=_lifespan,
        title="listwise checkout", version="1",
        description="Scan a list or a card, apply its offers once, record the basket. "
                    "Authenticate with the store's key in the X-API-Key header.")
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)

    @app.exception_handler(co.CheckoutRefused)
    async def _refused(_request: Request, exc: co.CheckoutRefused) -> JSONResponse:
        return JSONResponse(exc.as_dict(), status_code=exc.status)

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            return JSONResponse({"error": "malformed_json", "detail": "body is not valid JSON"}, status_code=400)
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:] if p != 'body') or 'body'}: {e['msg']}"
                 for e in errors[:5]]
        more = len(errors) - len(parts)
        detail = "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    async def store_of(x_api_key: str | None = Header(default=None, description="the store's API key")) -> str:
        store = await call(keys.store, x_api_key)
        if store is None:
            raise co.CheckoutRefused("unauthorized", "missing, unknown or revoked X-API-Key")
        return store

    def own_store(store_id: str, key_store: str) -> None:
        if store_id != key_store:
            raise co.CheckoutRefused("forbidden", f"this key acts for store {key_store!r}, not {store_id!r}")

    errors = {s: _REFUSAL for s in (400, 401, 403, 404, 409, 410, 413, 422)}

    @app.get("/v1/health", summary="Liveness and database reachability")
    async def health() -> dict:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))
        await call(ping)
        return {"status": "ok"}

    @app.post("/v1/scan", summary="Judge a list code and return its offers", responses=errors)
    async def scan(body: co.ScanRequest, key_store: str = Depends(store_of)) -> JSONResponse:
        """The list a code names, or a refusal: bad_check, unknown, expired, not_yet_valid, revoked."""
        return JSONResponse(await call(co.scan, engine, secret, body.code, body.at, key_store, settings.timezone))

    @app.post("/v1/checkout", summary="Apply a basket's offers once and record the basket", responses=errors)
    async def checkout(body: co.CheckoutRequest, key_store: str = Depends(store_of)) -> JSONResponse:
        """Idempotent on (store_id, basket_id): a retry returns the same answer, a different body is refused."""
        own_store(body.store_id, key_store)
        return JSONResponse(await call(co.checkout, engine, secret, body, limits, None, settings.timezone))

    @app.post("/v1/void", summary="Reverse a checkout", responses=errors)
    async def void(body: co.VoidRequest, key_store: str = Depends(store_of)) -> JSONResponse:
        """Release the basket's redemptions and mark it void in history."""
        own_store(body.store_id, key_store)
        return JSONResponse(await call(co.void, engine, body.store_id, body.basket_id))

    app.state.engine = engine
    app.state.checkpoint_seconds = limits.wal_checkpoint_seconds
    return app


_SETTINGS_ENV = "LISTWISE_SERVE_SETTINGS"


def app_from_environment() -> FastAPI:
    """The app of one worker process of `serve(workers=N)`: its settings handed over as JSON."""
    from engine.config import _build
    return create_app(_build(Settings, json.loads(os.environ[_SETTINGS_ENV]), _SETTINGS_ENV))


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Run the service with uvicorn until interrupted.

    `workers` > 1 runs that many processes on the port: Python's share of a checkout is
    CPU-bound, so on PostgreSQL throughput grows with the cores. On SQLite one process is
    best (one writer at a time, and waiting across processes polls where one process queues).
    """
    import uvicorn
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    # What the service reads of the settings (the secret resolved here, once).
    os.environ[_SETTINGS_ENV] = json.dumps({"database_url": settings.database_url, "timezone": settings.timezone,
                                            "secret": resolve_secret(settings).decode(),
                                            "checkout": dataclasses.asdict(settings.checkout)})
    uvicorn.run("engine.server:app_from_environment", factory=True, workers=workers, **options)
