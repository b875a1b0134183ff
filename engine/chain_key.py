"""The list-code secret belongs to one database: bind it at `init`, check it before use.

Every printed code carries an HMAC under the chain's secret (`engine.codes`). A second
`listwise init` run from another directory, or a service started with another
``LISTWISE_SECRET``, would otherwise mint a fresh key, and every code already printed would
fail its check at the till. So `init` stores a *fingerprint* of the secret in the database
(``chain_meta``: an HMAC of a fixed label under the secret — it reveals nothing of the key)
and every command that makes or checks codes compares its secret against it first.

Rotation (`rotate_secret`, ``listwise keys rotate``) keeps one key for the operator to hold:
the new one. The retired key is kept in ``chain_meta`` *wrapped* under the new key (XOR with an
HMAC-SHA256 keystream of the new key; its fingerprint checks the unwrapping), with the last
list id it signed and the last day those lists are valid. The database alone therefore reveals
no key. `verify_secret` unwraps the retired keys and hands them to `engine.codes.accept_retired`: a
list printed before the rotation scans until it expires (then the checkout refuses it as
expired, and the next rotation drops the key), and a retired key never verifies a list issued
after it was retired.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json

import sqlalchemy as sa

from engine.codes import accept_retired
from engine.db import is_sqlite, utc_now
from engine.errors import ConfigError, StateError

__all__ = [
    "fingerprint",
    "stored_fingerprint",
    "bind_secret",
    "verify_secret",
    "require_existing_secret",
    "rotate_secret",
    "retired_keys",
]

_LABEL = b"listwise-secret-fingerprint:v1"
_NAME = "secret_fingerprint"
_RETIRED = "retired_key:"  # + fingerprint: a retired key, wrapped under the current one
_GRACE = dt.timedelta(days=1)  # a list's last day is store-local; UTC may still be the day before


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
        f"(fingerprint {want}): every printed code would fail; use the original listwise.secret or LISTWISE_SECRET "
        "(the new one after 'listwise keys rotate'; an interrupted rotation finishes when run again)"
    )


def bind_secret(engine: sa.Engine, secret: bytes) -> None:
    """Store the secret's fingerprint, or refuse a secret other than the stored one."""
    mine = fingerprint(secret)
    with engine.begin() as conn:
        conn.execute(
            sa.text("INSERT INTO chain_meta (name, value) VALUES (:n, :v) ON CONFLICT (name) DO NOTHING"),
            {"n": _NAME, "v": mine},
        )
        stored = conn.execute(sa.text("SELECT value FROM chain_meta WHERE name = :n"), {"n": _NAME}).scalar()
    if stored != mine:
        raise _mismatch(mine, stored)


def verify_secret(engine: sa.Engine, secret: bytes) -> None:
    """`ConfigError` when the database was initialised with another secret.

    Then the retired keys are accepted for the codes they signed (`engine.codes.accept_retired`):
    list ids up to each one's last. Once those lists expired the checkout refuses them as expired
    anyway, so a retired key is of no use to a thief then; the next rotation drops it.
    """
    stored = stored_fingerprint(engine)
    if stored is not None and stored != fingerprint(secret):
        raise _mismatch(fingerprint(secret), stored)
    accept_retired(secret, [(r["key"], r["last_list_id"]) for r in retired_keys(engine, secret)])


def _keystream(key: bytes, label: str, n: int) -> bytes:
    blocks = (
        hmac.new(key, f"listwise-wrap:v1:{label}:{i}".encode(), hashlib.sha256).digest() for i in range(-(-n // 32))
    )
    return b"".join(blocks)[:n]


def _wrap(key: bytes, under: bytes) -> str:
    """`key` encrypted under `under` (hex): its own fingerprint is the label, so each stream is used once."""
    return bytes(a ^ b for a, b in zip(key, _keystream(under, fingerprint(key), len(key)))).hex()


def _unwrap(wrapped: str, label: str, under: bytes) -> bytes:
    data = bytes.fromhex(wrapped)
    key = bytes(a ^ b for a, b in zip(data, _keystream(under, label, len(data))))
    if fingerprint(key) != label:
        raise ConfigError(
            f"the retired list-code key {label} does not unwrap under the current key: chain_meta was altered"
        )
    return key


def retired_keys(engine: sa.Engine, secret: bytes) -> list[dict]:
    """The retired keys, unwrapped with the current `secret`: fingerprint, key, last_list_id, valid_to
    (the last day of their lists), retired_at; oldest first."""
    if not sa.inspect(engine).has_table("chain_meta"):
        return []
    with engine.connect() as conn:
        rows = conn.execute(
            sa.text("SELECT name, value FROM chain_meta WHERE name LIKE :p ORDER BY name"), {"p": _RETIRED + "%"}
        ).all()
    out = []
    for name, value in rows:
        entry = json.loads(value)
        out.append(
            {
                "fingerprint": name[len(_RETIRED) :],
                "key": _unwrap(entry["wrapped"], name[len(_RETIRED) :], secret),
                "last_list_id": int(entry["last_list_id"]),
                "valid_to": dt.date.fromisoformat(entry["valid_to"]),
                "retired_at": entry["retired_at"],
            }
        )
    return sorted(out, key=lambda r: (r["retired_at"], r["last_list_id"]))


def rotate_secret(engine: sa.Engine, current: bytes, new: bytes) -> dict:
    """Make `new` the list-code key; `current` retires and still verifies the lists it signed.

    In one transaction, which a batch's write waits for (engine/batch.py checks the key in its
    own): the stored fingerprint becomes the new key's, the current key is stored wrapped under
    the new one with the last list id and the last valid day of its lists, the other retired
    keys are re-wrapped under the new key, and those whose lists all expired are dropped.

    Returns fingerprint, previous (the retired key's fingerprint), last_list_id, valid_to,
    dropped (fingerprints no longer accepted).
    """
    if not new.strip():
        raise ConfigError("the new list-code secret is blank")
    mine, theirs = fingerprint(current), fingerprint(new)
    if mine == theirs:
        raise ConfigError("the new list-code secret is the current one")
    today = utc_now().date()
    with engine.execution_options(sqlite_begin="IMMEDIATE").begin() as conn:
        lock = "" if is_sqlite(engine) else " FOR UPDATE"
        stored = conn.execute(sa.text(f"SELECT value FROM chain_meta WHERE name = :n{lock}"), {"n": _NAME}).scalar()
        if stored is None:
            raise StateError("this database has no list-code key to rotate: run 'listwise init' first")
        if stored != mine:
            raise _mismatch(mine, stored)
        if conn.execute(sa.text("SELECT 1 FROM chain_meta WHERE name = :n"), {"n": _RETIRED + theirs}).first():
            raise ConfigError(f"the new list-code secret (fingerprint {theirs}) is a retired one: choose a fresh key")
        last_id, last_day = conn.execute(sa.text("SELECT MAX(list_id), MAX(valid_to) FROM lists")).one()
        last_day = dt.date.fromisoformat(str(last_day)[:10]) if last_day is not None else today
        kept, dropped = [], []
        for name, value in conn.execute(
            sa.text("SELECT name, value FROM chain_meta WHERE name LIKE :p"), {"p": _RETIRED + "%"}
        ).all():
            entry, label = json.loads(value), name[len(_RETIRED) :]
            if dt.date.fromisoformat(entry["valid_to"]) + _GRACE < today:
                dropped.append(label)
            else:
                kept.append((label, {**entry, "wrapped": _wrap(_unwrap(entry["wrapped"], label, current), new)}))
            conn.execute(sa.text("DELETE FROM chain_meta WHERE name = :n"), {"n": name})
        kept.append(
            (
                mine,
                {
                    "wrapped": _wrap(current, new),
                    "last_list_id": int(last_id or 0),
                    "valid_to": last_day.isoformat(),
                    "retired_at": utc_now().isoformat(),
                },
            )
        )
        for label, entry in kept:
            conn.execute(
                sa.text("INSERT INTO chain_meta (name, value) VALUES (:n, :v)"),
                {"n": _RETIRED + label, "v": json.dumps(entry, sort_keys=True)},
            )
        conn.execute(sa.text("UPDATE chain_meta SET value = :v WHERE name = :n"), {"v": theirs, "n": _NAME})
    return {
        "fingerprint": theirs,
        "previous": mine,
        "last_list_id": int(last_id or 0),
        "valid_to": last_day.isoformat(),
        "dropped": dropped,
    }


def require_existing_secret(engine: sa.Engine) -> None:
    """`StateError` for `init` when the database has a secret that is not available here."""
    stored = stored_fingerprint(engine)
    if stored is not None:
        raise StateError(
            f"this database was initialised with a list-code secret (fingerprint {stored}) that is not "
            "available here: copy its listwise.secret, or set LISTWISE_SECRET, instead of creating a new one"
        )
