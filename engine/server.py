"""The checkout service: `engine.checkout` over HTTP (FastAPI on uvicorn, OpenAPI at /docs).

The bodies and the refusal words with their HTTP statuses are `engine.checkout_api`; the
stores' API keys `engine.keys`.

Each store's point-of-sale system sends its own API key in ``X-API-Key``; a key acts for
its own store only. Every refusal is a 4xx JSON body ``{"error": word, "detail": text}``:
bodies over `settings.checkout.max_body_bytes` are refused before they are parsed (413),
malformed JSON is 400, unknown fields and bad values are 422. No response carries a
customer's name, address or full card number (the library selects none of them).

Where the work runs: on PostgreSQL in FastAPI's thread pool, each request with its own
pooled connection, so lanes proceed in parallel as far as the database lets them. On
SQLite, where writers queue for the one write lock anyway, in the event loop itself: the
hand-off to threads and their contention for the GIL cost more CPU than the checkout
(measured: 4.6 against 3.5 ms of server CPU a checkout at 200/s). A write that would wait for
the lock (another process, an import or a batch, holds it) is not waited for in the event loop:
it runs again in a thread (`engine.checkout.no_wait`), so health and reads go on, and is
answered 503 with Retry-After after `checkout.lock_wait_seconds`.

Guessing: failed code checks (bad_check) are limited per API key and per store lane with
token buckets (`_FailureLimits`): once a bucket is empty, requests carrying codes get 429 with
Retry-After until it refills; card-only checkouts and voids go on. slowapi was considered: it
limits every request by a key taken from the request line, while this limit counts only
failures and keys on the lane inside the body, so a small bucket here is simpler. One process
(`serve`, the default) keeps the buckets in its memory; several (`serve --workers N`) share them
as rows of ``check_failures`` (`engine.shared_limits`), else a guesser spread over N workers
would get N times the limit.

Access log: one JSON line per request on the `listwise.access` logger (stdlib logging): time,
method, path, status, outcome (the refusal word or "ok"), key_id, store, lane, latency_ms.
Never a code, a card number or any customer field. An unexpected error is answered 500
`{"error": "internal"}` and logged by type and place only: a database error's message can
carry the statement's parameters (the engine hides them too).
"""

from __future__ import annotations

import contextlib
import dataclasses
import datetime as dt
import json
import logging
import os
import threading
import time
import traceback
from collections.abc import Callable
from typing import Any

import sqlalchemy as sa
from fastapi import Depends, FastAPI, Header, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from starlette.concurrency import run_in_threadpool

from engine import checkout as co
from engine import checkout_api as api
from engine.chain_key import verify_secret
from engine.config import Settings, resolve_secret
from engine.db import connect, is_sqlite, require_schema
from engine.keys import key_for

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
        await send(
            {
                "type": "http.response.start",
                "status": 413,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())],
            }
        )
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
                return  # client went away
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


access_log = logging.getLogger("listwise.access")


class _AccessLog:
    """ASGI middleware: one JSON line per request on `listwise.access`, and no traceback text.

    The handlers put key_id, store, lane and outcome into ``request.state`` (``scope["state"]``).
    An exception no handler turned into an answer becomes 500 ``{"error": "internal"}``; it is
    logged by its type and the places it passed, not its message (which may hold parameters).
    """

    def __init__(self, app: Any):
        self.app = app

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        started, status = time.perf_counter(), {"code": 500, "sent": False}

        async def watch(message: dict) -> None:
            if message["type"] == "http.response.start":
                status["code"], status["sent"] = message["status"], True
            await send(message)

        try:
            await self.app(scope, receive, watch)
        except Exception as exc:  # noqa: BLE001 - the last line of defence: answer JSON, log without values
            scope.setdefault("state", {})["outcome"] = "internal"
            access_log.error(
                json.dumps(
                    {
                        "event": "unhandled",
                        "type": type(exc).__name__,
                        "where": [
                            f"{f.filename.rsplit('/', 1)[-1]}:{f.lineno} {f.name}"
                            for f in traceback.extract_tb(exc.__traceback__)
                        ][-6:],
                    }
                )
            )
            if not status["sent"]:
                body = json.dumps({"error": "internal", "detail": "unexpected error; it was logged"}).encode()
                await watch(
                    {
                        "type": "http.response.start",
                        "status": 500,
                        "headers": [
                            (b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode()),
                        ],
                    }
                )
                await send({"type": "http.response.body", "body": body})
        finally:
            state = scope.get("state", {})
            code = status["code"]
            access_log.info(
                json.dumps(
                    {
                        "ts": dt.datetime.now(dt.UTC).isoformat(timespec="milliseconds"),
                        "method": scope["method"],
                        "path": scope["path"],
                        "status": code,
                        "outcome": state.get("outcome", "ok" if code < 400 else "error"),
                        "key_id": state.get("key_id"),
                        "store": state.get("store"),
                        "lane": state.get("lane"),
                        "latency_ms": round((time.perf_counter() - started) * 1000, 2),
                    },
                    separators=(",", ":"),
                )
            )


class _FailureLimits:
    """Token buckets of failed code checks, one per API key and one per (store, lane).

    A bucket holds `capacity` tokens and refills at `capacity` per `window` seconds; a failed
    check takes one. A request carrying codes is refused (429) while either of its buckets is
    empty, with the seconds until a token is back. In this process's memory (see module doc).
    """

    def __init__(self, per_key: int, per_lane: int, window: float, clock: Callable[[], float] = time.monotonic):
        self.per_key, self.per_lane, self.window, self.clock = per_key, per_lane, window, clock
        self.lock = threading.Lock()
        self.buckets: dict[tuple, tuple[float, float]] = {}  # id -> (tokens, at)

    def _level(self, bucket: tuple, capacity: int, now: float) -> float:
        tokens, at = self.buckets.get(bucket, (capacity, now))
        return min(capacity, tokens + (now - at) * capacity / self.window)

    def _ids(self, key_id: int, store: str, lane: int | None) -> list[tuple[tuple, int]]:
        return [(("key", key_id), self.per_key), (("lane", store, lane), self.per_lane)]

    def wait(self, key_id: int, store: str, lane: int | None) -> int:
        """Seconds until this key and lane may try a code again; 0 = now."""
        now = self.clock()
        with self.lock:
            levels = [(self._level(b, cap, now), cap) for b, cap in self._ids(key_id, store, lane)]
        need = max((1 - level) * self.window / cap for level, cap in levels)
        return 0 if need <= 0 else max(1, int(need + 0.999))

    def fail(self, key_id: int, store: str, lane: int | None) -> None:
        now = self.clock()
        with self.lock:
            for bucket, cap in self._ids(key_id, store, lane):
                self.buckets[bucket] = (max(0.0, self._level(bucket, cap, now) - 1), now)
            if len(self.buckets) > 100_000:  # forget full buckets: memory stays bounded
                self.buckets = {
                    b: v
                    for b, v in self.buckets.items()
                    if v[0] < (self.per_key if b[0] == "key" else self.per_lane) - 1
                }


class _KeyCache:
    """key -> (key id, store), remembered `ttl` seconds (0: every request asks the database)."""

    def __init__(self, engine: sa.Engine, ttl: float):
        self.engine, self.ttl, self.lock, self.seen = engine, ttl, threading.Lock(), {}

    def lookup(self, key: str | None) -> tuple[int, str] | None:
        if self.ttl <= 0 or not key:
            return key_for(self.engine, key)
        now = time.monotonic()
        with self.lock:
            hit = self.seen.get(key)
        if hit and hit[1] > now:
            return hit[0]
        found = key_for(self.engine, key)
        with self.lock:
            self.seen[key] = (found, now + self.ttl)
        return found


def _service_engine(url: str, checkpoint_seconds: float = 0.0) -> sa.Engine:
    """`engine.db.connect`, with a few SQLite connections kept open.

    engine/db.py gives SQLite a NullPool because a process that also opens ADBC sessions
    must not keep a connection lingering; this process never opens one. Opening a
    connection per request costs its PRAGMAs, and closing the last one checkpoints the WAL:
    about 2.5 ms a checkout, measured with benchmarks/checkout_bench.py.
    """
    engine = connect(url, pooled=True)
    engine.hide_parameters = True  # a database error's text must not carry a card number into a log
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
        with contextlib.suppress(Exception):  # a busy moment: the next round catches up
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
        worker = threading.Thread(
            target=_checkpoint_wal, args=(engine, every, stop), daemon=True, name="listwise-wal-checkpoint"
        )
        worker.start()
    try:
        yield
    finally:
        stop.set()
        if worker is not None:
            worker.join(10)
        engine.dispose()


def create_app(
    settings: Settings, clock: Callable[[], dt.datetime] | None = None, shared_limits: bool = False
) -> FastAPI:
    """The checkout service on `settings.database_url`, codes checked with the chain's secret.

    `clock` is the server's clock (an aware instant; default `engine.checkout.server_now`),
    by which validity is judged. `shared_limits`: the failed-check buckets are rows in the
    database, one limit for every process of the service (`serve` with several workers).
    """
    engine = _service_engine(settings.database_url, settings.checkout.wal_checkpoint_seconds)
    require_schema(engine)
    secret = resolve_secret(settings)
    verify_secret(engine, secret)
    limits = settings.checkout
    keys = _KeyCache(engine, limits.key_cache_seconds)
    if shared_limits:
        from engine.shared_limits import SharedFailureLimits

        failures: Any = SharedFailureLimits(
            engine,
            limits.max_failed_checks_per_key,
            limits.max_failed_checks_per_lane,
            limits.failed_checks_window_seconds,
        )
    else:
        failures = _FailureLimits(
            limits.max_failed_checks_per_key, limits.max_failed_checks_per_lane, limits.failed_checks_window_seconds
        )

    async def bucket(fn: Any, *args: Any) -> Any:  # shared buckets are rows: read and written off the loop
        return await run_in_threadpool(fn, *args) if shared_limits else fn(*args)

    inline = is_sqlite(engine)

    def now() -> dt.datetime:
        return (clock or co.server_now)()

    def bounded(fn: Any, *args: Any) -> Any:
        with co.lock_wait(limits.lock_wait_seconds):
            return fn(*args)

    async def call(fn: Any, *args: Any) -> Any:
        if inline:
            try:
                with co.no_wait():
                    return bounded(fn, *args)
            except co.WouldWait:
                pass  # the write lock is taken: wait for it in a thread, not here
        return await run_in_threadpool(bounded, fn, *args)

    app = FastAPI(
        lifespan=_lifespan,
        title="listwise checkout",
        version="1",
        description="Scan a list or a card, apply its offers once, record the basket. "
        "Authenticate with the store's key in the X-API-Key header.",
    )
    app.add_middleware(_BodyLimit, max_bytes=limits.max_body_bytes)
    app.add_middleware(_AccessLog)  # outermost of ours: it also times the body limit

    @app.exception_handler(api.CheckoutRefused)
    async def _refused(request: Request, exc: api.CheckoutRefused) -> JSONResponse:
        request.state.outcome = exc.reason
        headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else None
        return JSONResponse(exc.as_dict(), status_code=exc.status, headers=headers)

    @app.exception_handler(RequestValidationError)
    async def _invalid(request: Request, exc: RequestValidationError) -> JSONResponse:
        errors = exc.errors()
        if any(e.get("type") == "json_invalid" for e in errors):
            request.state.outcome = "malformed_json"
            return JSONResponse({"error": "malformed_json", "detail": "body is not valid JSON"}, status_code=400)
        request.state.outcome = "invalid_request"
        parts = [f"{'.'.join(str(p) for p in e['loc'][1:] if p != 'body') or 'body'}: {e['msg']}" for e in errors[:5]]
        more = len(errors) - len(parts)
        detail = "; ".join(parts) + (f" (and {more} more)" if more > 0 else "")
        return JSONResponse({"error": "invalid_request", "detail": detail}, status_code=422)

    async def key_of(
        request: Request, x_api_key: str | None = Header(default=None, description="the store's API key")
    ) -> tuple:
        found = await call(keys.lookup, x_api_key)
        if found is None:
            raise api.CheckoutRefused("unauthorized", "missing, unknown or revoked X-API-Key")
        request.state.key_id, request.state.store = found
        return found

    def own_store(store_id: str, key_store: str) -> None:
        if store_id != key_store:
            raise api.CheckoutRefused("forbidden", f"this key acts for store {key_store!r}, not {store_id!r}")

    def guarded(key: tuple, lane: int | None, fn: Any) -> Any:
        """Refuse while this key or lane has no failed check left; count a bad_check against both."""

        async def run(*args: Any) -> Any:
            wait = await bucket(failures.wait, key[0], key[1], lane)
            if wait:
                raise api.CheckoutRefused(
                    "too_many_failed_checks",
                    f"too many codes failed their check from this key or lane; try again in {wait} s",
                    retry_after=wait,
                )
            try:
                return await call(fn, *args)
            except api.CheckoutRefused as exc:
                if exc.reason == "bad_check":
                    await bucket(failures.fail, key[0], key[1], lane)
                raise

        return run

    errors = dict.fromkeys((400, 401, 403, 404, 409, 410, 413, 422, 429, 503), _REFUSAL)

    @app.get("/v1/health", summary="Liveness and database reachability")
    async def health() -> dict:
        def ping() -> None:
            with engine.connect() as conn:
                conn.execute(sa.text("SELECT 1"))  # a read: in WAL mode it never waits for a writer

        await call(ping)
        return {"status": "ok"}

    @app.post("/v1/scan", summary="Judge a list code and return its offers", responses=errors)
    async def scan(request: Request, body: api.ScanRequest, key: tuple = Depends(key_of)) -> JSONResponse:
        """The list a code names, or a refusal: bad_check, unknown, expired, not_yet_valid, revoked."""
        request.state.lane = body.lane
        run = guarded(key, body.lane, co.scan)
        return JSONResponse(await run(engine, secret, body.code, body.at, key[1], settings.timezone, now(), limits))

    @app.post("/v1/checkout", summary="Apply a basket's offers once and record the basket", responses=errors)
    async def checkout(request: Request, body: api.CheckoutRequest, key: tuple = Depends(key_of)) -> JSONResponse:
        """Idempotent on (store_id, basket_id): a retry returns the same answer, a different body is refused.

        A code that fails its keyed check refuses the whole basket (bad_check, nothing recorded).
        """
        request.state.lane = body.lane
        own_store(body.store_id, key[1])
        run = guarded(key, body.lane, co.checkout) if body.codes else (lambda *a: call(co.checkout, *a))
        return JSONResponse(await run(engine, secret, body, limits, now(), settings.timezone))

    @app.post("/v1/void", summary="Reverse a checkout", responses=errors)
    async def void(body: api.VoidRequest, key: tuple = Depends(key_of)) -> JSONResponse:
        """Release the basket's redemptions and mark it void in history."""
        own_store(body.store_id, key[1])
        return JSONResponse(await call(co.void, engine, body.store_id, body.basket_id))

    app.state.engine = engine
    app.state.checkpoint_seconds = limits.wal_checkpoint_seconds
    return app


_SETTINGS_ENV = "LISTWISE_SERVE_SETTINGS"


def _log_to_stderr() -> None:
    """The access log's JSON lines on stderr, unless the embedding program configured logging."""
    if not access_log.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access_log.addHandler(handler)
        access_log.setLevel(logging.INFO)


def app_from_environment() -> FastAPI:
    """The app of one worker process of `serve(workers=N)`: its settings handed over as JSON."""
    from engine.config import from_table as _build

    _log_to_stderr()
    data = json.loads(os.environ[_SETTINGS_ENV])
    shared = data.pop("shared_limits", False)
    return create_app(_build(Settings, data, _SETTINGS_ENV), shared_limits=shared)


def serve(settings: Settings, host: str = "127.0.0.1", port: int = 8080, workers: int = 1) -> None:
    """Run the service with uvicorn until interrupted.

    `workers` > 1 runs that many processes on the port: Python's share of a checkout is
    CPU-bound, so on PostgreSQL throughput grows with the cores. On SQLite one process is
    best (one writer at a time, and waiting across processes polls where one process queues).
    The workers share the failed-check limits through the database (`engine.shared_limits`).
    """
    import uvicorn

    _log_to_stderr()
    options = {"host": host, "port": port, "log_level": "warning", "access_log": False}
    if workers <= 1:
        uvicorn.run(create_app(settings), **options)
        return
    # What the service reads of the settings (the secret resolved here, once).
    os.environ[_SETTINGS_ENV] = json.dumps(
        {
            "database_url": settings.database_url,
            "timezone": settings.timezone,
            "secret": resolve_secret(settings).decode(),
            "checkout": dataclasses.asdict(settings.checkout),
            "shared_limits": True,
        }
    )
    uvicorn.run("engine.server:app_from_environment", factory=True, workers=workers, **options)
