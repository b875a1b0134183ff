"""The list-code secret belongs to one database: bind it at `init`, check it before use.

Every printed code carries an HMAC under the chain's secret (`engine.codes`). A second
`listwise init` run from another directory, or a service started with another
``LISTWISE_SECRET``, would otherwise mint a fresh key, and every code already printed would
fail its check at the till. So `init` stores a *fingerprint* of the secret in the database
(``chain_meta``: an HMAC of a fixed label under the secret — it reveals nothing of the key)
and every command that makes or checks codes compares its secret against it first.
"""

from __future__ import annotations

import hashlib
import hmac

import sqlalchemy as sa

from engine.errors import ConfigError, StateError

__all__ = ["fingerprint", "stored_fingerprint", "bind_secret", "verify_secret", "require_existing_secret"]

_LABEL = b"listwise-secret-fingerprint:v1"
_NAME = "secret_fingerprint"


def fingerprint(secret: bytes) -> str:
    """16 hex digits identifying `secret` without revealing it."""
    return hmac.new(secret, _LABEL, hashlib.sha256).hexdigest()[:16]


def stored_fingerprint(engine: sa.Engine) -> str | None:
    """The fingerprint `init` stored, or None (a database from before fingerprints)."""
    if not sa.inspect(engine).has_table("chain_meta"):
        return None
    with engine.connect() as conn:
        return conn.execute(sa.text("SELECT value FROM chain_meta WHERE name = :n"), {"n": _NAME}).scalar()


def _mismatch(have: str, want: str) -> ConfigError:
    return ConfigError(
        f"the list-code secret (fingerprint {have}) is not the one this database was initialised with "
        f"(fingerprint {want}): every printed code would fail; use the original listwise.secret or LISTWISE_SECRET")


def bind_secret(engine: sa.Engine, secret: bytes) -> None:
    """Store the secret's fingerprint, or refuse a secret other than the stored one."""
    mine = fingerprint(secret)
    with engine.begin() as conn:
        conn.execute(sa.text("INSERT INTO chain_meta (name, value) VALUES (:n, :v) ON CONFLICT (name) DO NOTHING"),
                     {"n": _NAME, "v": mine})
        stored = conn.execute(sa.text("SELECT value FROM chain_meta WHERE name = :n"), {"n": _NAME}).scalar()
    if stored != mine:
        raise _mismatch(mine, stored)


def verify_secret(engine: sa.Engine, secret: bytes) -> None:
    """`ConfigError` when the database was initialised with another secret."""
    stored = stored_fingerprint(engine)
    if stored is not None and stored != fingerprint(secret):
        raise _mismatch(fingerprint(secret), stored)


def require_existing_secret(engine: sa.Engine) -> None:
    """`StateError` for `init` when the database has a secret that is not available here."""
    stored = stored_fingerprint(engine)
    if stored is not None:
        raise StateError(
            f"this database was initialised with a list-code secret (fingerprint {stored}) that is not "
            "available here: copy its listwise.secret, or set LISTWISE_SECRET, instead of creating a new one")
