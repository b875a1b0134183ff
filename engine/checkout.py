"""Checkout: scan a list or a card, apply its offers once, record the basket.

The cashier's side without HTTP: `engine/server.py` puts these functions on the wire and
`listwise checkout --file` calls them directly. Everything here is SQLAlchemy Core on the
same schema for SQLite and PostgreSQL.

* `scan` judges a list code: the keyed check first (`engine.codes.parse_code`, no database
  look-up for a forged or mistyped code), then the list's existence, status and validity.
* `checkout` applies the offers of the basket's lists to its items and, in ONE transaction,
  records the idempotency row (`checkouts`), the redemptions and the basket with its lines,
  so that the next profile sees it. "At most `max_uses`" holds under concurrent lanes by the
  partial unique index ``ux_redemptions_use (offer_id, use_no) WHERE voided = 0``: each use
  is inserted ``ON CONFLICT DO NOTHING``, and a lane whose insert meets the index simply does
  not get that use. On SQLite the transaction starts with ``BEGIN IMMEDIATE`` (one writer at a
  time, so the count read inside it is exact); on PostgreSQL the index decides.
* `void` reverses a checkout: redemptions released (their use numbers free again), basket
  marked void so history no longer reads it.
* `writing` is the one write transaction (also engine/keys.py's): on SQLite an in-process
  writer lock and ``BEGIN IMMEDIATE``; the wait for the lock is bounded (`lock_wait`, 503
  busy beyond it) or refused (`no_wait`, for the service's event loop).

What a basket earns is decided by the pure rules of `coupons.redemption` (which line meets
which offer, free uses, one use per unit, rewards' minimum spend, list validity); this module
reads what they need and records what they decide. The request bodies and the refusal words
with their HTTP statuses are engine/checkout_api.py; API keys are engine/keys.py.

Money is integer cents. A request's ``amount_cents`` is what the line costs before
listwise's discounts; the recorded line's ``amount_cents`` is what was paid after them and
its ``discount_cents`` the listwise discount on it. Timestamps are kept as store-local
wall-clock time without a zone (schema.sql: baskets.ts). A request's timestamp may be naive
(store-local, as the till's clock shows it) or carry an offset or ``Z``; one with an offset
is converted to the store's zone (`stores.timezone`, else the chain's `Settings.timezone`),
and refused (invalid_request) when its offset differs from that zone's at that instant by
more than the zone's DST shift: the zone is then set wrong (engine/zones.py). ``Z`` is an
instant in UTC and never judged.

Time: validity is judged by the server's clock (`server_now`) read in the store's zone, not
by the lane's. The basket's timestamp counts only within `clock_tolerance_minutes` of it (a
lane a few minutes off still redeems on a list's last evening); a basket dated further off
is judged at the server's clock, so an expired list never redeems by backdating. A basket
more than `max_clock_skew_minutes` (default 24 h: a store-and-forward lane sending
yesterday's baskets after an outage) from the server's clock is refused (clock_skew); within
it, it joins history on its own day.
"""

from __future__ import annotations

import contextlib
import contextvars
import datetime as dt
import functools
import json
import threading
import time
from collections.abc import Iterator
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from coupons.redemption import Line, Offer, Redeemed, list_refusal, redeem
from engine.checkout_api import CheckoutRefused, CheckoutRequest, parse_request, request_sha256
from engine.codes import parse_code
from engine.config import CheckoutSettings
from engine.db import allocate_keys, is_sqlite, utc_now
from engine.errors import CodeError
from engine.ingest import line_checksum
from engine.values import as_date, mask_card
from engine.zones import local_wall_clock, zone_of

__all__ = ["scan", "checkout", "void", "server_now", "writing", "lock_wait", "no_wait", "WouldWait", "sql_value"]


# ---------------------------------------------------------------- the write transaction and its locks

_SQLITE_WRITERS: dict[str, threading.Lock] = {}
_SQLITE_WRITERS_LOCK = threading.Lock()


def _writer_lock(engine: sa.Engine) -> threading.Lock | contextlib.nullcontext:
    """On SQLite, one in-process lock per database file.

    SQLite has one writer at a time anyway; queueing this process's lanes on a lock wakes
    the next one the moment the writer commits, where SQLite's busy handler would have it
    sleep and poll (up to 100 ms a round: the tail latency of a busy service). Other
    processes (a batch) still meet the busy timeout as before.
    """
    if not is_sqlite(engine):
        return contextlib.nullcontext()
    name = str(engine.url.database)
    with _SQLITE_WRITERS_LOCK:
        return _SQLITE_WRITERS.setdefault(name, threading.Lock())


class WouldWait(Exception):
    """Inside `no_wait()`: the write lock is taken; try again where waiting blocks no one."""


_NO_WAIT: contextvars.ContextVar[bool] = contextvars.ContextVar("listwise_no_wait", default=False)
_LOCK_WAIT: contextvars.ContextVar[float] = contextvars.ContextVar("listwise_lock_wait", default=30.0)


@contextlib.contextmanager
def no_wait() -> Iterator[None]:
    """Writes inside raise `WouldWait` instead of waiting for the write lock.

    The service runs SQLite checkouts in its event loop; one that waited there for an import's
    lock would stall every request, health included. It tries without waiting, and on
    `WouldWait` runs the call again in a thread, where the wait blocks only that request.
    """
    token = _NO_WAIT.set(True)
    try:
        yield
    finally:
        _NO_WAIT.reset(token)


@contextlib.contextmanager
def lock_wait(seconds: float) -> Iterator[None]:
    """Writes inside wait at most `seconds` for the write lock, then `CheckoutRefused` busy (503)."""
    token = _LOCK_WAIT.set(seconds)
    try:
        yield
    finally:
        _LOCK_WAIT.reset(token)


def _busy(seconds: float) -> CheckoutRefused:
    return CheckoutRefused(
        "busy",
        f"the database's write lock was held by another writer for over "
        f"{seconds:g} s (an import or a batch?); try again",
        retry_after=max(1, min(30, round(seconds))),
    )


def _is_lock_timeout(exc: sa.exc.DBAPIError) -> bool:
    """SQLite's "database is locked" (busy timeout) or PostgreSQL's lock_timeout (55P03)."""
    code = getattr(exc.orig, "sqlstate", None) or getattr(exc.orig, "pgcode", None)
    return code == "55P03" or "database is locked" in str(exc.orig)


@contextlib.contextmanager
def writing(engine: sa.Engine) -> Iterator[sa.Connection]:
    """One write transaction; on SQLite BEGIN IMMEDIATE so that it never fails on lock upgrade.

    The wait for the write lock is bounded (`lock_wait`, default 30 s; none inside `no_wait`):
    beyond it `CheckoutRefused` busy, never a bare database error.
    """
    sqlite, nowait, wait = is_sqlite(engine), _NO_WAIT.get(), _LOCK_WAIT.get()
    deadline = time.monotonic() + wait
    lock = _writer_lock(engine)
    if isinstance(lock, contextlib.nullcontext):
        acquired = True
    else:
        acquired = lock.acquire(blocking=not nowait, timeout=-1 if nowait else wait)
    if not acquired:
        if nowait:
            raise WouldWait()
        raise _busy(wait)
    try:
        with engine.connect() as conn:
            try:
                if sqlite:
                    left_ms = 0 if nowait else max(1, int((deadline - time.monotonic()) * 1000))
                    conn.connection.driver_connection.execute(f"PRAGMA busy_timeout = {left_ms}")
                    conn.execution_options(sqlite_begin="IMMEDIATE")
                with conn.begin():
                    if not sqlite:
                        conn.exec_driver_sql(f"SET LOCAL lock_timeout = {max(1, int(wait * 1000))}")
                    yield conn
            except sa.exc.OperationalError as exc:
                if not _is_lock_timeout(exc):
                    raise
                if nowait:
                    raise WouldWait() from exc
                raise _busy(wait) from exc
            finally:
                if sqlite and not conn.invalidated:  # the pooled connection's reads keep the usual timeout
                    with contextlib.suppress(Exception):
                        conn.connection.driver_connection.execute("PRAGMA busy_timeout = 30000")
    finally:
        if not isinstance(lock, contextlib.nullcontext):
            lock.release()


# ---------------------------------------------------------------- values and statements


def sql_value(value: dt.date | dt.datetime, sqlite: bool) -> Any:
    """Dates and timestamps as ISO text for SQLite, as the ADBC bulk loads write them.

    ('2025-03-05', '2025-03-05T10:15:00.000000'): one text form per column keeps text
    comparisons right, and no reliance on pysqlite's deprecated default adapters.
    """
    if not sqlite:
        return value
    return value.isoformat(timespec="microseconds") if isinstance(value, dt.datetime) else value.isoformat()


@functools.lru_cache(maxsize=256)
def _stmt(sql: str, expanding: tuple[str, ...] = ()) -> sa.TextClause:
    """A text statement, parsed once (a checkout runs a dozen; parsing was a fifth of its CPU)."""
    statement = sa.text(sql)
    if expanding:
        statement = statement.bindparams(*(sa.bindparam(name, expanding=True) for name in expanding))
    return statement


def _run(conn: sa.Connection, sql: str, params: dict | list | None = None) -> sa.CursorResult:
    return conn.execute(_stmt(sql), params or {})


def _rows(conn: sa.Connection, sql: str, params: dict | None = None, expanding: tuple[str, ...] = ()) -> list:
    return conn.execute(_stmt(sql, expanding), params or {}).mappings().all()


_LIST_SQL = (
    "SELECT l.list_id, l.customer_key, l.valid_from, l.valid_to, l.status, c.customer_id "
    "FROM lists l JOIN customers c ON c.customer_key = l.customer_key "
)


def _list_refusal(row: Any, list_id: int, day: dt.date) -> tuple[str, str] | None:
    """(reason, detail) when list `row` (None: no such list) does not redeem on `day` (coupons.redemption)."""
    if row is None:
        return list_refusal(list_id, None, None, None, day)
    return list_refusal(list_id, row["status"], as_date(row["valid_from"]), as_date(row["valid_to"]), day)


# ---------------------------------------------------------------- the clock and the zones


def server_now() -> dt.datetime:
    """The server's clock, an instant in UTC: what validity is judged by (tests replace it)."""
    return dt.datetime.now(dt.UTC)


def _local_now(now: dt.datetime | None, zone: str) -> dt.datetime:
    """The server's clock (`now`, default `server_now()`) as wall-clock time in `zone`.

    A naive `now` already is store-local wall-clock time (callers of the library may say so).
    """
    now = server_now() if now is None else now
    return now if now.tzinfo is None else now.astimezone(ZoneInfo(zone)).replace(tzinfo=None)


def _judged_at(lane_clock: dt.datetime | None, server_local: dt.datetime, tolerance_minutes: int) -> dt.datetime:
    """The moment validity is judged: the lane's clock, but never further than the tolerance from the server's.

    A lane a few minutes off still redeems on the last evening of a list; a basket dated last
    week is judged now, so an expired list never redeems by backdating (nor a future one early).
    """
    if lane_clock is None:
        return server_local
    tolerance = dt.timedelta(minutes=tolerance_minutes)
    return min(max(lane_clock, server_local - tolerance), server_local + tolerance)


def _zoned(value: dt.datetime, zone: str | None, chain_zone: str) -> dt.datetime:
    """`value` as store-local wall clock (zone `zone`, else `chain_zone`); refused when the offset cannot be."""
    try:
        return local_wall_clock(value, zone_of(zone, chain_zone))
    except ValueError as exc:
        raise CheckoutRefused("invalid_request", f"timestamp: {exc}") from exc


def _store_zone(engine: sa.Engine, store_id: str) -> tuple[bool, str | None]:
    """(whether the store exists, its own zone or None)."""
    with engine.connect() as conn:
        row = conn.execute(sa.text("SELECT timezone FROM stores WHERE store_id = :s"), {"s": store_id}).first()
    return (row is not None, None if row is None else row[0])


def _list_id(code: str, secret: bytes) -> int:
    try:
        return parse_code(code, secret)
    except CodeError as exc:
        raise CheckoutRefused("bad_check", str(exc)) from exc


# ---------------------------------------------------------------- scan


def scan(
    engine: sa.Engine,
    secret: bytes,
    code: str,
    at: dt.datetime | None = None,
    store_id: str | None = None,
    timezone: str = "UTC",
    now: dt.datetime | None = None,
    settings: CheckoutSettings | None = None,
) -> dict:
    """The list a code names, judged at the server's clock `now` (default `server_now()`).

    `at` is the lane's clock: store-local, or with an offset (converted to the zone of
    `store_id`, the scanning store, else to the chain's `timezone`); it is used only as far as
    it lies within `settings.clock_tolerance_minutes` of the server's clock in that zone.

    Returns
    -------
    dict
        list_id, customer_id, valid_from, valid_to (ISO), and offers: offer_id, line_no, sku,
        description, kind, category, discount_cents, min_spend_cents, max_uses, redeemed
        (uses not voided), valid_from, valid_to. No personal data.

    Raises
    ------
    CheckoutRefused
        bad_check (without a database look-up), unknown, revoked, not_yet_valid, expired.
    """
    settings = settings or CheckoutSettings()
    list_id = _list_id(code, secret)
    zone = zone_of(_store_zone(engine, store_id)[1] if store_id else None, timezone)
    if at is not None and at.tzinfo is not None:
        at = _zoned(at, zone, zone)
    day = _judged_at(at, _local_now(now, zone), settings.clock_tolerance_minutes).date()
    with engine.connect() as conn:
        found = _rows(conn, _LIST_SQL + "WHERE l.list_id = :id", {"id": list_id})
        row = found[0] if found else None
        refusal = _list_refusal(row, list_id, day)
        if refusal:
            raise CheckoutRefused(*refusal)
        offers = _rows(
            conn,
            (
                "SELECT o.offer_id, o.line_no, p.sku, p.description, o.kind, o.category, o.discount_cents, "
                "o.min_spend_cents, o.max_uses, o.valid_from, o.valid_to, "
                "(SELECT count(*) FROM redemptions r WHERE r.offer_id = o.offer_id AND r.voided = 0) AS redeemed "
                "FROM offers o LEFT JOIN products p ON p.product_key = o.product_key "
                "WHERE o.list_id = :id ORDER BY o.line_no"
            ),
            {"id": list_id},
        )
    return {
        "list_id": list_id,
        "customer_id": row["customer_id"],
        "valid_from": as_date(row["valid_from"]).isoformat(),
        "valid_to": as_date(row["valid_to"]).isoformat(),
        "offers": [
            {
                "offer_id": int(o["offer_id"]),
                "line_no": int(o["line_no"]),
                "sku": o["sku"],
                "description": o["description"],
                "kind": o["kind"],
                "category": o["category"],
                "discount_cents": int(o["discount_cents"]),
                "min_spend_cents": None if o["min_spend_cents"] is None else int(o["min_spend_cents"]),
                "max_uses": int(o["max_uses"]),
                "redeemed": int(o["redeemed"]),
                "valid_from": as_date(o["valid_from"]).isoformat(),
                "valid_to": as_date(o["valid_to"]).isoformat(),
            }
            for o in offers
        ],
    }


# ---------------------------------------------------------------- checkout


def checkout(
    engine: sa.Engine,
    secret: bytes,
    request: CheckoutRequest | dict | str | bytes,
    settings: CheckoutSettings | None = None,
    now: dt.datetime | None = None,
    timezone: str = "UTC",
) -> dict:
    """Apply the basket's offers once and record it; idempotent on (store_id, basket_id).

    Parameters
    ----------
    request
        The body of ``POST /v1/checkout`` (validated here with `parse_request`).
    settings
        Limits and the clock-skew rule (`settings.checkout`); defaults when None.
    now
        The server's clock (default `server_now()`): an instant, converted to the store's zone,
        or naive store-local time. Offers are judged at the basket's timestamp only within
        `settings.clock_tolerance_minutes` of it, and a basket further than
        `max_clock_skew_minutes` from it is refused (clock_skew).
    timezone
        The chain's zone (`Settings.timezone`), for a store without its own: a timestamp with
        an offset is converted to the store's wall clock before anything else (the idempotency
        digest included, so a retry written either way is the same request).

    Returns
    -------
    dict
        basket_id, store_id, customer_id (None without list or card), list_ids, lines (one per
        item line x offer applied: line_no, sku, offer_id, kind, uses, discount_cents; a reward
        has line_no and sku None), total_discount_cents, refused (code or masked card, error),
        unknown_skus (items not in the catalogue: no discount, not recorded in history).
        A retry with the same body returns the stored answer and writes nothing.

    Raises
    ------
    CheckoutRefused
        malformed or invalid body, too_many_items, clock_skew, unknown_store, conflict (same
        basket_id, different body), voided (retry of a voided basket), basket_exists (imported),
        bad_check (a code fails its keyed check: nothing is recorded, the lane re-scans or
        drops it; a guess must never leave a basket behind), busy (write lock held too long).
    """
    settings = settings or CheckoutSettings()
    req = parse_request(request, settings)
    # The keyed check of every code, before any database look-up.
    codes: list[tuple[str, int | None, str | None]] = []
    for i, code in enumerate(dict.fromkeys(req.codes)):
        try:
            codes.append((code, parse_code(code, secret), None))
        except CodeError as exc:
            raise CheckoutRefused("bad_check", f"codes.{i}: {exc}; nothing was recorded") from exc
    exists, zone = _store_zone(engine, req.store_id)
    if not exists:
        raise CheckoutRefused("unknown_store", f"no store {req.store_id!r}")
    zone = zone_of(zone, timezone)
    if req.timestamp.tzinfo is not None:
        req = req.model_copy(update={"timestamp": _zoned(req.timestamp, zone, zone)})
    server_local = _local_now(now, zone)
    if settings.max_clock_skew_minutes > 0:
        skew = abs((req.timestamp - server_local).total_seconds()) / 60
        if skew > settings.max_clock_skew_minutes:
            raise CheckoutRefused(
                "clock_skew",
                f"timestamp {req.timestamp.isoformat()} is {skew:.0f} minutes "
                f"from the server's clock in {zone} "
                f"(at most {settings.max_clock_skew_minutes})",
            )
    judged = _judged_at(req.timestamp, server_local, settings.clock_tolerance_minutes).date()
    digest = request_sha256(req)
    _ensure_sequences(engine)
    with lock_wait(settings.lock_wait_seconds), writing(engine) as conn:
        return _checkout_in(conn, is_sqlite(engine), req, digest, codes, judged)


_SEQUENCES_READY: set[str] = set()


def _ensure_sequences(engine: sa.Engine) -> None:
    """Create the key sequences a checkout draws from, once per database and process.

    `allocate_keys` inserts a missing sequence row itself, but two lanes doing that at
    once on PostgreSQL both insert and one fails on the primary key (seen with 50 lanes on
    a fresh database); a row that exists is locked by UPDATE, which is what serialises them.
    """
    name = engine.url.render_as_string(hide_password=True)
    if name in _SEQUENCES_READY:
        return
    with writing(engine) as conn:
        for sequence in ("baskets", "redemptions"):
            _run(
                conn,
                "INSERT INTO sequences (name, next_value) VALUES (:name, 1) ON CONFLICT (name) DO NOTHING",
                {"name": sequence},
            )
    _SEQUENCES_READY.add(name)


def _replay(row: Any, digest: str, store_id: str, basket_id: str) -> dict:
    if row["voided_at"] is not None:
        raise CheckoutRefused("voided", f"basket {basket_id} of store {store_id} was voided")
    if row["request_sha256"] != digest:
        raise CheckoutRefused(
            "conflict", f"basket {basket_id} of store {store_id} was already checked out with a different body"
        )
    return json.loads(row["response_json"])


_CLAIM = (
    "INSERT INTO checkouts (store_id, basket_id, request_sha256, response_json, created_at) "
    "VALUES (:store, :basket, :sha, :response, :at)"
)
_SEEN = (
    "SELECT s.store_id, c.request_sha256, c.response_json, c.voided_at, "
    "(SELECT count(*) FROM baskets b WHERE b.store_id = :store AND b.basket_id = :basket) AS in_history "
    "FROM stores s LEFT JOIN checkouts c ON c.store_id = s.store_id AND c.basket_id = :basket "
    "WHERE s.store_id = :store"
)


def _checkout_in(
    conn: sa.Connection,
    sqlite: bool,
    req: CheckoutRequest,
    digest: str,
    codes: list[tuple[str, int | None, str | None]],
    judged: dt.date,
) -> dict:
    key = {"store": req.store_id, "basket": req.basket_id}
    # One look: the store, an earlier checkout of this basket, the basket in history. The
    # replay comes first: a basket a checkout wrote is in history with its checkout row.
    seen = _rows(conn, _SEEN, key)
    if not seen:
        raise CheckoutRefused("unknown_store", f"no store {req.store_id!r}")
    if seen[0]["request_sha256"] is not None:
        return _replay(seen[0], digest, req.store_id, req.basket_id)
    if seen[0]["in_history"]:
        raise CheckoutRefused(
            "basket_exists", f"basket {req.basket_id} of store {req.store_id} is already in history (imported)"
        )
    claim = {**key, "sha": digest, "response": "", "at": sql_value(utc_now(), sqlite)}
    if not sqlite:
        # Claim the basket first: a concurrent duplicate waits here for our commit, then
        # finds the row taken and replays our answer. (SQLite: one writer, no race.)
        if (
            _run(conn, _CLAIM + " ON CONFLICT (store_id, basket_id) DO NOTHING RETURNING store_id", claim).first()
            is None
        ):
            again = _rows(conn, _SEEN, key)
            if not again or again[0]["request_sha256"] is None:
                raise CheckoutRefused("conflict", f"basket {req.basket_id} is being checked out by another lane")
            return _replay(again[0], digest, req.store_id, req.basket_id)

    # `day`: the basket's store-local day (history); `judged`: the day its offers are judged on
    # (the server's clock, the lane's within the tolerance). They differ only for a basket
    # sent late (store-and-forward) or a lane whose clock is off.
    day = req.timestamp.date()
    lists, customer_key, customer_id, refused = _resolve_lists(conn, sqlite, req, codes, judged)
    skus = sorted({item.sku for item in req.items})
    products = {
        r["sku"]: r
        for r in _rows(
            conn, "SELECT product_key, sku, category FROM products WHERE sku IN :skus", {"skus": skus}, ("skus",)
        )
    }
    offers = _rows(
        conn,
        (
            "SELECT offer_id, kind, product_key, category, discount_cents, min_spend_cents, max_uses "
            "FROM offers WHERE list_id IN :ids AND valid_from <= :day AND valid_to >= :day "
            "ORDER BY list_id, line_no"
        ),
        {"ids": lists or [-1], "day": sql_value(judged, sqlite)},
        ("ids",),
    )
    redeemed = _redeem(conn, sqlite, req, products, offers, judged)
    per_line = redeemed.per_line

    basket_key = allocate_keys(conn, "baskets", 1)
    recorded = [
        {
            "bk": basket_key,
            "no": i + 1,
            "ck": customer_key,
            "day": sql_value(day, sqlite),
            "pk": products[item.sku]["product_key"],
            "q": item.quantity,
            "amount": item.amount_cents - per_line[i],
            "discount": per_line[i],
        }
        for i, item in enumerate(req.items)
        if item.sku in products
    ]
    n, checksum = line_checksum(
        (r["pk"], r["q"], r["amount"], r["discount"]) for r in recorded
    )  # lets an import skip them
    _run(
        conn,
        "INSERT INTO baskets (basket_key, store_id, basket_id, customer_key, ts, day, source, lane, voided, "
        "line_count, line_sum) VALUES (:bk, :store, :basket, :ck, :ts, :day, 'checkout', :lane, 0, :n, :sum)",
        {
            "bk": basket_key,
            **key,
            "ck": customer_key,
            "ts": sql_value(req.timestamp, sqlite),
            "day": sql_value(day, sqlite),
            "lane": req.lane,
            "n": n,
            "sum": checksum,
        },
    )
    if recorded:
        _run(
            conn,
            "INSERT INTO basket_lines (basket_key, line_no, customer_key, day, product_key, quantity, "
            "amount_cents, discount_cents) VALUES (:bk, :no, :ck, :day, :pk, :q, :amount, :discount)",
            recorded,
        )
    response = {
        "basket_id": req.basket_id,
        "store_id": req.store_id,
        "customer_id": customer_id,
        "list_ids": lists,
        "lines": redeemed.lines,
        "total_discount_cents": redeemed.total_cents,
        "refused": refused,
        "unknown_skus": [s for s in skus if s not in products],
    }
    claim["response"] = json.dumps(response, separators=(",", ":"))
    if sqlite:
        _run(conn, _CLAIM, claim)
    else:
        _run(
            conn,
            "UPDATE checkouts SET response_json = :response WHERE store_id = :store AND basket_id = :basket",
            claim,
        )
    return response


def _resolve_lists(
    conn: sa.Connection,
    sqlite: bool,
    req: CheckoutRequest,
    codes: list[tuple[str, int | None, str | None]],
    day: dt.date,
):
    """(list ids, customer_key, customer_id, refused) for the card and the codes of a basket.

    A card finds the customer's lists valid on `day`, as scanning them would; codes of
    another customer than the basket's first one are refused (`other_customer`).
    """
    lists: list[int] = []
    refused: list[dict] = []
    customer_key = customer_id = None
    if req.card_number:
        found = _rows(
            conn, "SELECT customer_key, customer_id FROM customers WHERE card_number = :card", {"card": req.card_number}
        )
        if not found:
            refused.append({"code": None, "card": mask_card(req.card_number), "error": "unknown"})
        else:
            customer_key, customer_id = found[0]["customer_key"], found[0]["customer_id"]
            current = _rows(
                conn,
                "SELECT list_id FROM lists WHERE customer_key = :ck AND status = 'active' "
                "AND valid_from <= :day AND valid_to >= :day ORDER BY list_id",
                {"ck": customer_key, "day": sql_value(day, sqlite)},
            )
            lists.extend(int(r["list_id"]) for r in current)
    wanted = [list_id for _, list_id, error in codes if not error]
    known = (
        {int(r["list_id"]): r for r in _rows(conn, _LIST_SQL + "WHERE l.list_id IN :ids", {"ids": wanted}, ("ids",))}
        if wanted
        else {}
    )
    for code, list_id, error in codes:
        if error:
            refused.append({"code": code, "error": error})
            continue
        row = known.get(list_id)
        refusal = _list_refusal(row, list_id, day)
        if refusal:
            refused.append({"code": code, "error": refusal[0]})
            continue
        if customer_key is None:
            customer_key, customer_id = row["customer_key"], row["customer_id"]
        elif row["customer_key"] != customer_key:
            refused.append({"code": code, "error": "other_customer"})
            continue
        if list_id not in lists:
            lists.append(list_id)
    return lists, customer_key, customer_id, refused


def _redeem(
    conn: sa.Connection, sqlite: bool, req: CheckoutRequest, products: dict, offers: list, day: dt.date
) -> Redeemed:
    """Redeem what the basket earns by the rules of `coupons.redemption`, each use inserted as it is obtained.

    The uses other baskets hold are read first; the rules then ask `_Uses.obtain` for each
    offer's planned uses, and get only those the database grants (on PostgreSQL a racing
    lane may have taken one since the read), so the discounts returned are exactly those
    redeemed.
    """
    rules = [
        Offer(
            int(o["offer_id"]),
            o["kind"],
            o["product_key"],
            o["category"],
            int(o["discount_cents"]),
            int(o["max_uses"]),
            None if o["min_spend_cents"] is None else int(o["min_spend_cents"]),
        )
        for o in offers
    ]
    taken: dict[int, set[int]] = {}
    for r in _rows(
        conn,
        "SELECT offer_id, use_no FROM redemptions WHERE offer_id IN :ids AND voided = 0",
        {"ids": [o.offer_id for o in rules] or [-1]},
        ("ids",),
    ):
        taken.setdefault(int(r["offer_id"]), set()).add(int(r["use_no"]))
    lines = []
    for item in req.items:
        product = products.get(item.sku)
        lines.append(
            Line(
                item.sku,
                item.quantity,
                item.amount_cents,
                None if product is None else product["product_key"],
                None if product is None else product["category"],
            )
        )
    uses = _Uses(conn, sqlite, req, day, sum(o.max_uses for o in rules))
    redeemed = redeem(lines, rules, taken, uses.obtain)
    uses.flush()
    return redeemed


_INSERT_USE_SQL = (
    "INSERT INTO redemptions (redemption_id, offer_id, use_no, store_id, basket_id, redeemed_on, "
    "discount_cents, voided, created_at) VALUES (:id, :offer, :use, :store, :basket, :day, :amount, "
    "0, :at)"
)
_INSERT_USE = sa.text(_INSERT_USE_SQL)


# The conflict target names the partial index's predicate, so both databases infer it.
_INSERT_USE_IF_FREE = sa.text(
    _INSERT_USE_SQL + " ON CONFLICT (offer_id, use_no) WHERE voided = 0 DO NOTHING RETURNING use_no"
)


class _Uses:
    """Inserts the redemptions of one checkout; `obtain` says how many uses a lane got.

    PostgreSQL: each use is inserted ``ON CONFLICT ... DO NOTHING``; where another lane took
    that use number since we read (the unique index ``ux_redemptions_use``; an uncommitted
    one makes us wait for its transaction), nothing is inserted and we try the next free
    number, stopping when none is left. SQLite: the transaction began IMMEDIATE, so no other writer
    has taken a number since we read them; the rows go in with one statement at `flush`
    (the index would still refuse a double use).
    """

    def __init__(self, conn: sa.Connection, sqlite: bool, req: CheckoutRequest, day: dt.date, size: int):
        self.conn, self.sqlite, self.size = conn, sqlite, max(1, size)
        self.common = {
            "store": req.store_id,
            "basket": req.basket_id,
            "day": sql_value(day, sqlite),
            "at": sql_value(utc_now(), sqlite),
        }
        self.next_id = self.end_id = 0
        self.pending: list[dict] = []

    def _id(self) -> int:
        if self.next_id >= self.end_id:  # allocated only once a use is attempted
            self.next_id = allocate_keys(self.conn, "redemptions", self.size)
            self.end_id = self.next_id + self.size
        self.next_id += 1
        return self.next_id - 1

    def obtain(self, offer_id: int, free: list[int], amounts: list[int]) -> int:
        """Redeem one use per amount on the `free` use numbers; how many were obtained."""
        if self.sqlite:
            rows = [
                {**self.common, "id": self._id(), "offer": offer_id, "use": use_no, "amount": amount}
                for use_no, amount in zip(free, amounts)
            ]
            self.pending.extend(rows)
            return len(rows)
        got = 0
        for amount in amounts:
            while free:
                row = {**self.common, "id": self._id(), "offer": offer_id, "use": free.pop(0), "amount": amount}
                if self.conn.execute(_INSERT_USE_IF_FREE, row).first() is not None:
                    got += 1
                    break  # else another lane has this use: next number
            else:
                return got
        return got

    def flush(self) -> None:
        if self.pending:
            self.conn.execute(_INSERT_USE, self.pending)
            self.pending = []


# ---------------------------------------------------------------- void


def void(engine: sa.Engine, store_id: str, basket_id: str) -> dict:
    """Reverse the checkout of a basket: release its redemptions, mark it void in history.

    Returns
    -------
    dict
        store_id, basket_id, voided (True), released_redemptions, released_discount_cents,
        already_voided (a repeated void changes nothing).

    Raises
    ------
    CheckoutRefused
        unknown_basket when the service never checked this basket out.
    """
    key = {"store": store_id, "basket": basket_id}
    with writing(engine) as conn:
        seen = _rows(conn, "SELECT voided_at FROM checkouts WHERE store_id = :store AND basket_id = :basket", key)
        if not seen:
            raise CheckoutRefused("unknown_basket", f"no checkout of basket {basket_id} in store {store_id}")
        result = {
            "store_id": store_id,
            "basket_id": basket_id,
            "voided": True,
            "already_voided": False,
            "released_redemptions": 0,
            "released_discount_cents": 0,
        }
        if seen[0]["voided_at"] is not None:
            return {**result, "already_voided": True}
        released = _rows(
            conn,
            "SELECT count(*) AS n, CAST(coalesce(sum(discount_cents), 0) AS BIGINT) AS cents "
            "FROM redemptions "
            "WHERE store_id = :store AND basket_id = :basket AND voided = 0",
            key,
        )[0]
        _run(conn, "UPDATE redemptions SET voided = 1 WHERE store_id = :store AND basket_id = :basket", key)
        _run(conn, "UPDATE baskets SET voided = 1 WHERE store_id = :store AND basket_id = :basket", key)
        _run(
            conn,
            ("UPDATE checkouts SET voided_at = :at WHERE store_id = :store AND basket_id = :basket"),
            {**key, "at": sql_value(utc_now(), is_sqlite(engine))},
        )
    return {**result, "released_redemptions": int(released["n"]), "released_discount_cents": int(released["cents"])}
