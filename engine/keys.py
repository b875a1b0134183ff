"""API keys of the checkout service: each store's point-of-sale system has its own (`listwise keys`).

A key acts for one store (``X-API-Key``; engine/server.py refuses it for any other). Only a
sha256 of each key is stored (table ``api_keys``), so `create_key` returns the one copy there
is; a key is ended by `revoke_key` and never comes back. `key_for` answers the service's
question on every request; `list_keys` is what the service desk may see: ids, stores and
times, never a key or its hash.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

import sqlalchemy as sa

from engine.checkout import sql_value, writing
from engine.db import allocate_keys, is_sqlite, utc_now
from engine.errors import InputError

__all__ = ["create_key", "revoke_key", "key_for", "store_for_key", "list_keys"]

# Parsed once: key_for runs on every request the service gets (settings.checkout.key_cache_seconds = 0).
_STORE = sa.text("SELECT 1 FROM stores WHERE store_id = :s")
_INSERT = sa.text("INSERT INTO api_keys (key_id, store_id, key_sha256, created_at) VALUES (:id, :s, :h, :at)")
_ANY = sa.text("SELECT store_id FROM api_keys WHERE key_sha256 = :h")
_REVOKE = sa.text("UPDATE api_keys SET revoked_at = :at WHERE key_sha256 = :h AND revoked_at IS NULL")
_LIVE = sa.text("SELECT key_id, store_id FROM api_keys WHERE key_sha256 = :h AND revoked_at IS NULL")
_ALL = sa.text("SELECT key_id, store_id, created_at, revoked_at FROM api_keys ORDER BY key_id")


def _key_hash(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_key(engine: sa.Engine, store_id: str) -> str:
    """A new API key acting for `store_id`; only its sha256 is stored, so print it now."""
    key = "lw_" + secrets.token_urlsafe(32)
    with writing(engine) as conn:
        if conn.execute(_STORE, {"s": store_id}).first() is None:
            raise InputError(f"store {store_id!r} is not known: import stores first")
        key_id = allocate_keys(conn, "api_keys", 1)
        conn.execute(
            _INSERT, {"id": key_id, "s": store_id, "h": _key_hash(key), "at": sql_value(utc_now(), is_sqlite(engine))}
        )
    return key


def revoke_key(engine: sa.Engine, key: str) -> str:
    """End `key`; returns the store it acted for. Revoking a revoked key changes nothing."""
    with writing(engine) as conn:
        found = conn.execute(_ANY, {"h": _key_hash(key)}).first()
        if found is None:
            raise InputError("no such API key")
        conn.execute(_REVOKE, {"h": _key_hash(key), "at": sql_value(utc_now(), is_sqlite(engine))})
    return found.store_id


def key_for(engine: sa.Engine, key: str | None) -> tuple[int, str] | None:
    """(key id, store) of a live key; None for a missing, unknown or revoked key.

    The key id is what logs name: it identifies the key without being it.
    """
    if not key:
        return None
    with engine.connect() as conn:
        found = conn.execute(_LIVE, {"h": _key_hash(key)}).first()
    return (int(found.key_id), found.store_id) if found is not None else None


def store_for_key(engine: sa.Engine, key: str | None) -> str | None:
    """The store a live key acts for; None for a missing, unknown or revoked key."""
    found = key_for(engine, key)
    return None if found is None else found[1]


def list_keys(engine: sa.Engine) -> list[dict]:
    """Every API key: key_id, store_id, created_at, revoked_at (None while live); never the key or its hash."""
    with engine.connect() as conn:
        rows = conn.execute(_ALL).all()

    def text(value: Any) -> str | None:
        return None if value is None else str(value).replace("T", " ")[:19]

    return [
        {
            "key_id": int(r.key_id),
            "store_id": r.store_id,
            "created_at": text(r.created_at),
            "revoked_at": text(r.revoked_at),
        }
        for r in rows
    ]
