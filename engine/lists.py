"""One customer's lists, for the service desk: show, revoke, reprint (`listwise lists ...`).

* `show` gives a customer's lists with their offers' state (uses redeemed, left) and the card
  masked: no name or address is needed to help at the desk, so none is read.
* `revoke` ends the list a code names (after its keyed check): scans then answer "revoked".
* `reprint` gives the customer's current list a new code. A code is the list id with its
  keyed check (engine/codes.py), so a new code needs a new list id; the schema keeps one
  list per batch and customer (``UNIQUE (batch_id, customer_key)``), so the list moves to
  the new id with its offers (their redemptions stay with them) in one transaction, and the
  old code names no list any more: it is refused ("unknown"). Uses already redeemed stay
  used. Everything else about the list (batch, validity, offers) is unchanged.
"""

from __future__ import annotations

import datetime as dt
from typing import Any
from zoneinfo import ZoneInfo

import sqlalchemy as sa

from engine.codes import make_code, parse_code
from engine.db import allocate_keys, is_sqlite
from engine.errors import CodeError, InputError, StateError
from engine.values import day_text, mask_card

__all__ = ["show", "revoke", "reprint"]


def _today(zone: str) -> dt.date:
    """Today in the chain's zone, by the clock the checkout judges validity with."""
    from engine import checkout

    return checkout.server_now().astimezone(ZoneInfo(zone)).date()


def _customer(conn: sa.Connection, customer_id: str) -> Any:
    row = (
        conn.execute(
            sa.text("SELECT customer_key, customer_id, card_number FROM customers WHERE customer_id = :c"),
            {"c": customer_id},
        )
        .mappings()
        .first()
    )
    if row is None:
        raise InputError(f"no customer {customer_id!r}")
    return row


def show(engine: sa.Engine, customer_id: str, today: dt.date | None = None, timezone: str = "UTC") -> dict:
    """A customer's lists, newest first, with their offers' state.

    Returns
    -------
    dict
        customer_id, card (masked), current_list_id (the active list valid `today`, else None),
        lists: list_id, code, batch_id, valid_from, valid_to, status, and offers: offer_id,
        line_no, kind, sku, category, discount_cents, max_uses, redeemed, left.
    """
    today = today or _today(timezone)
    with engine.connect() as conn:
        customer = _customer(conn, customer_id)
        lists = (
            conn.execute(
                sa.text(
                    "SELECT list_id, code, batch_id, valid_from, valid_to, status FROM lists WHERE customer_key = :k "
                    "ORDER BY valid_from DESC, list_id DESC"
                ),
                {"k": customer["customer_key"]},
            )
            .mappings()
            .all()
        )
        offers = (
            conn.execute(
                sa.text(
                    "SELECT o.list_id, o.offer_id, o.line_no, o.kind, p.sku, o.category, o.discount_cents, o.max_uses, "
                    "(SELECT count(*) FROM redemptions r WHERE r.offer_id = o.offer_id AND r.voided = 0) AS redeemed "
                    "FROM offers o JOIN lists l ON l.list_id = o.list_id LEFT JOIN products p ON p.product_key = o.product_key "
                    "WHERE l.customer_key = :k ORDER BY o.list_id, o.line_no"
                ),
                {"k": customer["customer_key"]},
            )
            .mappings()
            .all()
        )
    by_list: dict[int, list[dict]] = {}
    for o in offers:
        by_list.setdefault(int(o["list_id"]), []).append(
            {
                "offer_id": int(o["offer_id"]),
                "line_no": int(o["line_no"]),
                "kind": o["kind"],
                "sku": o["sku"],
                "category": o["category"],
                "discount_cents": int(o["discount_cents"]),
                "max_uses": int(o["max_uses"]),
                "redeemed": int(o["redeemed"]),
                "left": int(o["max_uses"]) - int(o["redeemed"]),
            }
        )
    out = [
        {
            "list_id": int(r["list_id"]),
            "code": r["code"],
            "batch_id": int(r["batch_id"]),
            "valid_from": day_text(r["valid_from"]),
            "valid_to": day_text(r["valid_to"]),
            "status": r["status"],
            "offers": by_list.get(int(r["list_id"]), []),
        }
        for r in lists
    ]
    current = [
        x["list_id"] for x in out if x["status"] == "active" and x["valid_from"] <= today.isoformat() <= x["valid_to"]
    ]
    return {
        "customer_id": customer["customer_id"],
        "card": mask_card(customer["card_number"]),
        "current_list_id": current[0] if current else None,
        "lists": out,
    }


def _list_of_code(code: str, secret: bytes) -> int:
    try:
        return parse_code(code, secret)
    except CodeError as exc:
        raise InputError(f"{exc} (a code printed with another secret, or mistyped)") from exc


def revoke(engine: sa.Engine, secret: bytes, code: str) -> dict:
    """Revoke the list `code` names; returns list_id, customer_id, already_revoked."""
    list_id = _list_of_code(code, secret)
    with engine.begin() as conn:
        row = (
            conn.execute(
                sa.text(
                    "SELECT l.status, c.customer_id FROM lists l JOIN customers c "
                    "ON c.customer_key = l.customer_key WHERE l.list_id = :id"
                ),
                {"id": list_id},
            )
            .mappings()
            .first()
        )
        if row is None:
            raise InputError(f"no list {list_id} (code {code}): it may have been reprinted under a new code")
        conn.execute(sa.text("UPDATE lists SET status = 'revoked' WHERE list_id = :id"), {"id": list_id})
    return {"list_id": list_id, "customer_id": row["customer_id"], "already_revoked": row["status"] == "revoked"}


def reprint(
    engine: sa.Engine, secret: bytes, customer_id: str, today: dt.date | None = None, timezone: str = "UTC"
) -> dict:
    """Give the customer's current list a new code; the old one is refused from now.

    The current list: the active one valid `today` (default: today in `timezone`), else the
    next active one (printed, not yet valid).

    Returns
    -------
    dict
        customer_id, old_list_id, list_id (new), code (new), batch_id, valid_from, valid_to.
    """
    today = today or _today(timezone)
    sqlite = is_sqlite(engine)
    with engine.connect() as conn:
        if sqlite:
            conn.execution_options(sqlite_begin="IMMEDIATE")
        with conn.begin():
            customer = _customer(conn, customer_id)
            row = (
                conn.execute(
                    sa.text(
                        "SELECT list_id, batch_id, valid_from, valid_to FROM lists WHERE customer_key = :k "
                        "AND status = 'active' AND valid_to >= :d ORDER BY valid_from, list_id"
                    ),
                    {"k": customer["customer_key"], "d": today.isoformat() if sqlite else today},
                )
                .mappings()
                .first()
            )
            if row is None:
                raise StateError(
                    f"customer {customer_id!r} has no active list valid on or after {today}: nothing to reprint"
                )
            old = int(row["list_id"])
            # above every list id, should lists have been written without the sequence
            highest = conn.execute(sa.text("SELECT max(list_id) FROM lists")).scalar() or 0
            new = allocate_keys(conn, "lists", 1, above=int(highest))
            code = make_code(new, secret)
            move = {"old": old, "new": new, "code": code}
            if sqlite:
                # offers reference lists: the check waits for the commit, when both have moved
                conn.exec_driver_sql("PRAGMA defer_foreign_keys = ON")
                conn.execute(sa.text("UPDATE lists SET list_id = :new, code = :code WHERE list_id = :old"), move)
                conn.execute(sa.text("UPDATE offers SET list_id = :new WHERE list_id = :old"), move)
            else:
                # one statement: PostgreSQL checks the (NO ACTION) foreign key at its end
                conn.execute(
                    sa.text(
                        "WITH moved AS (UPDATE lists SET list_id = :new, code = :code WHERE list_id = :old "
                        "RETURNING list_id) UPDATE offers SET list_id = :new WHERE list_id = :old"
                    ),
                    move,
                )
    return {
        "customer_id": customer_id,
        "old_list_id": old,
        "list_id": new,
        "code": code,
        "batch_id": int(row["batch_id"]),
        "valid_from": day_text(row["valid_from"]),
        "valid_to": day_text(row["valid_to"]),
    }
