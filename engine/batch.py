"""The biweekly batch: qualify, hold out, build offers, persist lists and offers, summarise.

`run_batch` is the one entry point (``listwise batch run``). Its steps:

1. **Period.** ``period_start`` given, else the period after the last batch, else
   `BatchSettings.first_period_start`, else the Monday after the last purchase in history.
   The period is [start, start + period_days).
2. **State.** A batch row per period (``batches.period_start`` is unique). A period whose batch
   is 'done' is not recomputed: its stored summary is returned, so re-running changes nothing.
   A batch left 'running' (killed) or 'failed' keeps its batch_id and is redone from scratch.
3. **Read**, in one read session of the command's `engine.db.Gateway` (ADBC): products,
   customers, history from `engine.history.history_start` before the period, deals, what
   earlier batches hold of each deal (redemptions of offers whose list expired, live offers)
   and the redemptions of expired batches the use factors learn from (`coupons.budgets`).
4. **Compute** (pure, coupons/ and cycles/): the catalogue completed where it has no shelf
   price or unit cost (`coupons.prices`, from the history just read), qualifying customers, the
   hold-out draw, profile and customer value (`engine.profiles.profile_frames`; the
   most-frequent baseline of `coupons.baseline` when the cycles package is not installed, said
   in the summary), offers with what was dropped and why (`coupons.build.plan_offers`, made as
   `partition_offers` per customer partition and `coupons.select.finish_order` over them all), tips.
5. **Write**, in ONE transaction: delete whatever the batch had (nothing, unless a database
   was written by hand), batch_members (treated and holdout), lists (with their codes and the
   customer's home store, `home_stores`: the list is printed for that store), offers,
   the starter tips when the tips table is empty, and the batch row set to 'done' with its
   summary. A batch killed at any point has therefore written nothing but its 'running' row,
   and the re-run completes it; list ids come from the ``lists`` sequence, so a list's code
   never changes once its batch is done.

The summary (also ``<out_dir>/<period-start>/summary.json``) reconciles with the offers table:
costs are face values (discount x max_uses), the retailer's part rounded up to the cent
(`coupons.offers.retailer_cost`) and the funder's part the rest. Budgets are charged differently:
the expected cost plus a safety margin (`coupons.budgets`; ``deal_budgets`` and ``chain_budget``
show face value, expected and charged, ``budget_model`` the risk and learnt use factors). The
settlement (`engine.extracts`), from the redemptions, remains what a manufacturer owes. Its ``offer_funnel`` counts, per
kind, the candidates, the offers selected and the candidates dropped by reason
(`coupons.offers.DROP_REASONS`; candidates = selected + dropped), and ``prices`` how many products
took their shelf price from the catalogue, from history, or have none.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import secrets
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import polars as pl
import sqlalchemy as sa

from coupons.budgets import (
    BUDGET_RISK,
    FACTOR_PRIOR_USES,
    USE_BANDS,
    USE_CAP,
    budget_charges,
    deal_commitments,
    use_factors,
)
from coupons.build import shortlist_offers
from coupons.campaigns import campaign_name
from coupons.funnel import TALLY_KEYS, drop_tally, funnel_dict, tally_funnel
from coupons.holdout import assign_groups
from coupons.needs import select_needs
from coupons.offers import OFFER_KINDS, OFFER_SCHEMA, face_value, retailer_cost
from coupons.prices import PRICE_SOURCES, fill_prices, history_prices, prices_from_counts
from coupons.qualify import qualifying_from_spend, window_spend
from coupons.rewards import with_reward_uses
from coupons.rules import Campaign, PlanRules
from coupons.select import finish_order
from coupons.tips import TIP_SCHEMA, choose_tips, starter_tips
from engine.categories import format_matches, resolve_categories
from engine.chain_key import fingerprint, verify_secret
from engine.codes import make_code
from engine.config import Settings, partitions_of, public_settings, resolve_secret
from engine.db import Gateway, allocate_keys, is_sqlite, utc_now
from engine.errors import ConfigError, NothingToDo, StateError
from engine.faults import fault_point  # tests/faults: LISTWISE_FAULT=batch-...[#n] kills here
from engine.history import history_start
from engine.progress import Progress
from engine.scratch import scratch as scratch_dir
from engine.stages import TotalsWindow, run_store_then, store_totals
from engine.values import as_date, dollars

__all__ = [
    "run_batch",
    "cancel_batch",
    "format_summary",
    "default_period_start",
    "deal_budgets",
    "home_stores",
    "Profiler",
]

Profiler = Callable[..., tuple[pl.DataFrame, pl.DataFrame]]

_CELLS = ("national", "store", "switcher")
_TIERS = ("low", "mid", "high")
_STEPS = ("read", "qualify", "profile", "offers", "write")
_FACTOR_BATCHES = 6  # the use factors learn from this many recent expired batches (coupons.budgets)


def _monday_after(day: dt.date) -> dt.date:
    return day + dt.timedelta(days=7 - day.weekday())


def _claimed_periods(db: Gateway) -> tuple[dt.date | None, dt.date | None]:
    """(the earliest period whose batch was killed, failed or cancelled — it is redone first —, the
    latest period of any batch), read in one statement: one snapshot. Read apart, a racing run's claim
    landing between the two reads made its 'running' period look done, and this run took the next one
    (a second batch where the two runs should have shared one)."""
    found = db.read_small(
        "SELECT (SELECT MIN(period_start) FROM batches WHERE status IN ('running', 'failed', 'cancelled')) AS u, "
        "(SELECT MAX(period_start) FROM batches) AS p",
        {"u": pl.Date, "p": pl.Date},
    )
    return found["u"][0], found["p"][0]


def default_period_start(db: Gateway | sa.Engine, settings: Settings) -> dt.date:
    """The period `batch run` takes when given none.

    An unfinished period (killed, failed, cancelled) first; else the period after the last
    batch — `NothingToDo` when no purchase was recorded since that batch's period began (its
    successor would be built from the same history); else `batch.first_period_start`; else
    the Monday after the last purchase.
    """
    db = Gateway.of(db)
    unfinished, last = _claimed_periods(db)
    last_day = db.last_purchase_day()
    if unfinished is not None:
        return unfinished
    if last is not None:
        if last_day is None or last_day < last:
            raise NothingToDo(
                f"the batch of {last} is done and no purchase was recorded since it began "
                f"(last purchase {last_day or 'none'}): nothing to do; give --period-start to force"
            )
        return last + dt.timedelta(days=settings.batch.period_days)
    if settings.batch.first_period_start:
        return dt.date.fromisoformat(settings.batch.first_period_start)  # checked by validate_settings
    if last_day is None:
        raise StateError("no purchase history: import transactions before running a batch")
    return _monday_after(last_day)


def _default_profiler() -> tuple[Profiler, str]:
    try:
        from engine.profiles import profile_frames
    except ImportError:
        from coupons.baseline import baseline_profile, baseline_value

        def profile_frames(history, products, customers, settings, as_of, window_days):  # noqa: ANN001
            return (
                baseline_profile(history, products, as_of, window_days, settings.cycles),
                baseline_value(history, customers, as_of, settings.value, settings.batch.qualifying_weeks),
            )

        return profile_frames, "baseline (engine.profiles not installed)"
    return profile_frames, "engine.profiles"


def _start_batch(
    db: Gateway | sa.Engine, settings: Settings, period_start: dt.date, period_end: dt.date
) -> tuple[int, str, dict | None]:
    """(batch_id, this run's token, stored summary if the period is done).

    Claims the period for this run: a new 'running' row, or an unfinished one taken over with
    a fresh token. A period overlapping another batch's is refused. Only the run holding the
    token may write the batch (`_write` checks it inside its transaction), so of two racing
    runs one writes and the other finds the batch done — a done batch is never rewritten.
    """
    token = secrets.token_hex(8)
    db_is_sqlite = is_sqlite(Gateway.of(db).engine)
    with Gateway.of(db).begin(immediate=True) as conn:
        if not db_is_sqlite:  # claims one at a time, as SQLite's IMMEDIATE: else two INSERTs of a new period race
            conn.execute(sa.text("LOCK TABLE batches IN SHARE ROW EXCLUSIVE MODE"))
        row = conn.execute(
            sa.text("SELECT batch_id, status, summary_json FROM batches WHERE period_start = :p"), {"p": period_start}
        ).first()
        if row is not None:
            if row.status == "done":
                return int(row.batch_id), token, json.loads(row.summary_json)
            conn.execute(
                sa.text("UPDATE batches SET status = 'running', run_token = :k, started_at = :t WHERE batch_id = :b"),
                {"k": token, "t": utc_now(), "b": row.batch_id},
            )
            return int(row.batch_id), token, None
        overlap = conn.execute(
            sa.text(
                "SELECT period_start, period_end FROM batches WHERE period_start < :e AND period_end > :s "
                "ORDER BY period_start"
            ),
            {"s": period_start, "e": period_end},
        ).first()
        if overlap is not None:
            raise StateError(
                f"period {period_start} to {period_end - dt.timedelta(days=1)} overlaps the batch of "
                f"{as_date(overlap.period_start)} to "
                f"{as_date(overlap.period_end) - dt.timedelta(days=1)}"
            )
        batch_id = allocate_keys(conn, "batches", 1)
        conn.execute(
            sa.text(
                "INSERT INTO batches (batch_id, period_start, period_end, status, run_token, started_at, settings_json) "
                "VALUES (:b, :s, :e, 'running', :k, :t, :j)"
            ),
            {
                "b": batch_id,
                "s": period_start,
                "e": period_end,
                "k": token,
                "t": utc_now(),
                "j": json.dumps(public_settings(settings), default=str),
            },
        )
    return batch_id, token, None


def _stale_history_warning(db: Gateway, period_start: dt.date, period_days: int) -> str | None:
    """A warning when the history ends long before the period (exports not imported yet?)."""
    last_day = db.last_purchase_day(before=period_start)
    if last_day is None or (period_start - last_day).days <= period_days:
        return None
    return (
        f"warning: the purchase history ends {last_day}, {(period_start - last_day).days} days before the "
        f"period starts ({period_start}): have the latest exports been imported?"
    )


def home_stores(db, customers_sql: str = "", chunk_rows: int = 1 << 20) -> pl.DataFrame:  # noqa: ANN001 - a bulk session
    """Each customer's home store: the store of most of their baskets (a tie: the lowest store_id).

    Every basket counts, whenever it was made. `customers_sql`, a subquery of customer_keys,
    limits the customers read (default: all); `chunk_rows`: SQLite's pairs are counted this many at
    a time. Columns: customer_key, store_id; a customer without a basket has no row.
    """
    within = f" AND customer_key IN ({customers_sql})" if customers_sql else ""
    if db.sqlite:  # SQLite groups by sorting (a temporary b-tree): reading the pairs and counting them here
        # is 7x faster (2M baskets: 1.6 s against 10.9 s; 77M at a million households: minutes saved).
        # The pairs are counted chunk by chunk as they are read: all of them at once were 3.8 GiB at
        # 28M baskets; the counts (a row per customer and store) are a few per customer
        counts = _fold_counts(
            db.read_chunks(
                f"SELECT customer_key, store_id FROM baskets WHERE customer_key IS NOT NULL{within}",
                {"customer_key": pl.Int64, "store_id": pl.String},
                chunk_rows,
            )
        )
    else:
        counts = db.read(
            "SELECT customer_key, store_id, COUNT(*) AS n FROM baskets "
            f"WHERE customer_key IS NOT NULL{within} GROUP BY customer_key, store_id",
            {"customer_key": pl.Int64, "store_id": pl.String, "n": pl.Int64},
        )
    return (
        counts.sort(["customer_key", "n", "store_id"], descending=[False, True, False])
        .group_by("customer_key", maintain_order=True)
        .first()
        .select("customer_key", "store_id")
    )


def _fold_counts(chunks: Iterator[pl.DataFrame], every: int = 16) -> pl.DataFrame:
    """customer_key, store_id, n: the pairs of every chunk counted, the partial counts summed every
    `every` chunks (so memory holds the counts, not the pairs)."""
    keys = ["customer_key", "store_id"]
    parts: list[pl.DataFrame] = [pl.DataFrame(schema={"customer_key": pl.Int64, "store_id": pl.String, "n": pl.Int64})]
    for chunk in chunks:
        parts.append(chunk.group_by(keys).agg(pl.len().cast(pl.Int64).alias("n")))
        if len(parts) > every:
            parts = [pl.concat(parts).group_by(keys).agg(pl.col("n").sum())]
    return pl.concat(parts).group_by(keys).agg(pl.col("n").sum())


def _read_inputs(
    db: Gateway, settings: Settings, batch_id: int, period_start: dt.date, streamed: bool, progress: Progress | None
) -> dict[str, pl.DataFrame | None]:
    """What the batch reads of the database; `streamed`: not the history (None): its partitions are
    read where they are used (`engine.stages`), and the sums the batch needs of it added up here."""
    o = settings.offers
    with db.reading():
        products = db.products()
        customers = db.customers()
        history = (
            None if streamed else db.history(period_start, history_start(settings, period_start), products=products)
        )
        deals = db.deals()
        # what earlier batches hold of each deal (coupons.budgets.deal_commitments): offers whose list
        # expired hold what they redeemed, live ones their expected cost plus margin.
        # CAST: PostgreSQL's SUM of integers is numeric (issue 13)
        b, day = int(batch_id), f"'{period_start.isoformat()}'"
        used = (
            "LEFT JOIN (SELECT offer_id, SUM(discount_cents) AS cents FROM redemptions WHERE voided = 0 "
            "GROUP BY offer_id) r ON r.offer_id = o.offer_id"
        )
        expired = db.read(
            "SELECT o.deal_id, CAST(SUM(o.discount_cents * o.max_uses) AS BIGINT) AS face_cents, "
            f"CAST(SUM(COALESCE(r.cents, 0)) AS BIGINT) AS redeemed_cents FROM offers o "
            f"JOIN lists l ON l.list_id = o.list_id {used} WHERE o.deal_id IS NOT NULL AND l.batch_id <> {b} "
            f"AND l.valid_to < {day} GROUP BY o.deal_id",
            {"deal_id": pl.String, "face_cents": pl.Int64, "redeemed_cents": pl.Int64},
        )
        live = db.read(
            "SELECT o.deal_id, o.kind, o.p_buy, o.discount_cents, o.max_uses, "
            f"CAST(COALESCE(r.cents, 0) AS BIGINT) AS redeemed_cents FROM offers o "
            f"JOIN lists l ON l.list_id = o.list_id {used} WHERE o.deal_id IS NOT NULL AND l.batch_id <> {b} "
            f"AND l.valid_to >= {day}",
            {
                "deal_id": pl.String,
                "kind": pl.String,
                "p_buy": pl.Float64,
                "discount_cents": pl.Int64,
                "max_uses": pl.Int32,
                "redeemed_cents": pl.Int64,
            },
        )
        # the use factors learn from the last few expired batches that recorded redemptions at all: a
        # period whose checkouts never reached the database is no evidence that nobody used an offer
        band = " ".join(f"WHEN o.p_buy >= {edge!r} THEN {i}" for i, edge in reversed(list(enumerate(USE_BANDS, 1))))
        use_history = db.read(
            f"SELECT o.kind, CASE WHEN o.p_buy IS NULL THEN NULL {band} ELSE 0 END AS band, "
            "CAST(SUM(o.p_buy * o.discount_cents) AS DOUBLE PRECISION) AS expected_cents, "
            "CAST(SUM(o.p_buy) AS DOUBLE PRECISION) AS expected_uses, "
            "CAST(SUM(COALESCE(r.cents, 0)) AS BIGINT) AS redeemed_cents FROM offers o "
            f"JOIN lists l ON l.list_id = o.list_id {used} WHERE l.batch_id <> {b} AND l.valid_to < {day} "
            f"AND l.batch_id IN (SELECT b2.batch_id FROM batches b2 WHERE b2.period_end <= {day} AND EXISTS ("
            "SELECT 1 FROM redemptions x JOIN offers o2 ON o2.offer_id = x.offer_id JOIN lists l2 ON "
            "l2.list_id = o2.list_id WHERE l2.batch_id = b2.batch_id AND x.voided = 0) "
            f"ORDER BY b2.period_start DESC LIMIT {_FACTOR_BATCHES}) GROUP BY 1, 2",
            {
                "kind": pl.String,
                "band": pl.Int32,
                "expected_cents": pl.Float64,
                "expected_uses": pl.Float64,
                "redeemed_cents": pl.Int64,
            },
        )
        tips = db.read("SELECT tip_id, category, title, body FROM tips", TIP_SCHEMA)
        home = home_stores(db)
    if streamed:
        window = TotalsWindow(period_start, settings.batch.qualifying_weeks, o.price_lookback_days)
        spend, counts = store_totals(db, settings, window, progress)
        seen = prices_from_counts(counts)
    else:
        spend = window_spend(history, period_start, settings.batch.qualifying_weeks)
        seen = history_prices(history, period_start, o.price_lookback_days)
    # the profile reads the catalogue's own prices through history; offers the completed catalogue
    products = fill_prices(products, seen, o.margin_share_national, o.margin_share_store)
    return {
        "spend": spend,
        "products": products,
        "customers": customers,
        "history": history,
        "deals": deals,
        "expired": expired,
        "live": live,
        "factors": use_factors(use_history),
        "tips": tips,
        "home": home,
    }


def deal_budgets(deals: pl.DataFrame, expired: pl.DataFrame, live: pl.DataFrame, factors: pl.DataFrame) -> pl.DataFrame:
    """`coupons.budgets.deal_commitments` of the deals: budget_left_cents is what this batch may charge."""
    return deal_commitments(deals.select("deal_id", "budget_cents"), expired, live, factors)


def _cost_columns(offers: pl.DataFrame) -> pl.DataFrame:
    """Adds face_value_cents, retailer_cost_cents and funder_cost_cents (their difference)."""
    return offers.with_columns(face_value(), retailer_cost()).with_columns(
        (pl.col("face_value_cents") - pl.col("retailer_cost_cents")).alias("funder_cost_cents")
    )


def _deal_budget_block(budgets: pl.DataFrame, offers: pl.DataFrame, factors: pl.DataFrame | None) -> dict:
    """The summary's deal_budgets: per deal, in cents (see `format_summary`).

    budget_cents (null: no limit); what earlier batches hold — redeemed_before_cents (offers
    whose list expired), released_before_cents (their face value not redeemed, returned to the
    deal), live_before_cents, committed_before_cents (redeemed + live); this batch —
    offers, face_value_cents, expected_cents, this_batch_cents (the charge: expected plus the
    safety margin, `coupons.budgets`); left_cents = budget - committed before - this batch.
    """
    mine = budget_charges(
        offers.select("deal_id", "kind", "p_buy", "discount_cents", "max_uses").filter(pl.col("deal_id").is_not_null()),
        ["deal_id"],
        factors,
    )
    deals = {}
    for row in budgets.join(mine, on="deal_id", how="left").sort("deal_id").iter_rows(named=True):
        this = int(row["committed_cents"] or 0)
        before = int(row["committed_before_cents"])
        deals[row["deal_id"]] = {
            "offers": int(row["offers"] or 0),
            "budget_cents": row["budget_cents"],
            "redeemed_before_cents": int(row["redeemed_before_cents"]),
            "released_before_cents": int(row["released_before_cents"]),
            "live_before_cents": int(row["live_before_cents"]),
            "committed_before_cents": before,
            "face_value_cents": int(row["face_cents"] or 0),
            "expected_cents": int(row["expected_cents"] or 0),
            "this_batch_cents": this,
            "left_cents": None if row["budget_cents"] is None else int(row["budget_cents"]) - before - this,
        }
    return deals


def _campaign_rows(frame: pl.DataFrame, campaign: Campaign) -> pl.DataFrame:
    """The conversion rows of `campaign` in an offers (or dropped candidates) frame."""
    return frame.filter(pl.col("kind") == "conversion", pl.col("category") == campaign.category)


def _summary(
    *,
    batch_id: int,
    period_start: dt.date,
    period_end: dt.date,
    profiler_name: str,
    groups: pl.DataFrame,
    offers: pl.DataFrame,
    cells: pl.DataFrame,
    budgets: pl.DataFrame,
    settings: Settings,
    seconds: dict[str, float],
    funnel: pl.DataFrame | None = None,
    dropped: pl.DataFrame | None = None,
    products: pl.DataFrame | None = None,
    factors: pl.DataFrame | None = None,
) -> dict:
    # only the columns the sums read: each filter below copies what it is given
    costs = _cost_columns(offers.select("kind", "funder", "discount_cents", "max_uses", "funded_share"))
    by_funder: dict[str, int] = {"retailer": int(costs["retailer_cost_cents"].sum())}
    for row in (
        costs.filter(pl.col("funder") != "retailer")
        .group_by("funder")
        .agg(pl.col("funder_cost_cents").sum())
        .sort("funder")
        .iter_rows(named=True)
    ):
        by_funder[row["funder"]] = by_funder.get(row["funder"], 0) + int(row["funder_cost_cents"])
    # a retailer campaign with funded_share > 0 but funder 'retailer' is still all the retailer's
    by_funder["retailer"] += int(costs.filter(pl.col("funder") == "retailer")["funder_cost_cents"].sum())
    by_funder = {k: v for k, v in by_funder.items() if v or k == "retailer"}
    deals = _deal_budget_block(budgets, offers, factors)
    campaigns = {}
    for campaign in settings.campaigns:

        def grid(frame: pl.DataFrame) -> dict[str, dict[str, int]]:
            counts = {
                (r["brand_cell"], r["volume_tier"]): r["n"]
                for r in frame.group_by("brand_cell", "volume_tier").agg(pl.col("n").sum()).iter_rows(named=True)
            }
            return {c: {t: int(counts.get((c, t), 0)) for t in _TIERS} for c in _CELLS}

        conv = _campaign_rows(offers, campaign)
        made = conv.group_by("brand_cell", "volume_tier").agg(pl.len().cast(pl.Int64).alias("n"))
        lost = _campaign_rows(dropped, campaign) if dropped is not None else made.clear()
        campaigns[campaign_name(campaign)] = {
            "category": campaign.category,
            "qualifying_customers": grid(cells.filter(pl.col("category") == campaign.category)),
            "candidates": grid(pl.concat([made, lost.select("brand_cell", "volume_tier", "n")])),
            "offers": grid(made),
            "dropped": {
                r["drop_reason"]: int(r["n"])
                for r in lost.group_by("drop_reason").agg(pl.col("n").sum()).sort("drop_reason").iter_rows(named=True)
            },
            "discount_by_tier_cents": {
                r["volume_tier"]: int(r["discount_cents"])
                for r in conv.group_by("volume_tier").agg(pl.col("discount_cents").median()).iter_rows(named=True)
                if r["volume_tier"]
            },
        }
    n_hold = int((groups["grp"] == "holdout").sum())
    return {
        "batch_id": batch_id,
        "period_start": period_start.isoformat(),
        "period_end": period_end.isoformat(),
        "status": "done",
        "profiler": profiler_name,
        "qualifying_customers": groups.height,
        "holdout_customers": n_hold,
        "lists": groups.height - n_hold,
        "offers": offers.height,
        "offers_by_kind": {k: int((offers["kind"] == k).sum()) for k in OFFER_KINDS},
        "offers_by_cell": {
            (r["brand_cell"] or "none"): int(r["len"])
            for r in offers.group_by("brand_cell").len().sort("brand_cell", nulls_last=True).iter_rows(named=True)
        },
        "face_value_cents": int(costs["face_value_cents"].sum()),
        "discount_cost_by_funder_cents": by_funder,
        "deal_budgets": deals,
        "chain_budget": {
            "budget_cents": settings.batch.chain_budget_cents or None,
            "retailer_cost_cents": int(costs["retailer_cost_cents"].sum()),
            **{
                k: int(v)
                for k, v in budget_charges(offers, factors=factors, retailer=True)
                .select(expected_cents="expected_cents", committed_cents="committed_cents")
                .row(0, named=True)
                .items()
            },
            "retailer_cost_by_kind_cents": {
                k: int(costs.select(pl.col("retailer_cost_cents").filter(pl.col("kind") == k).sum()).item())
                for k in OFFER_KINDS
            },
        },
        "budget_model": {
            "risk": BUDGET_RISK,
            "use_cap": USE_CAP,
            "factor_prior_uses": FACTOR_PRIOR_USES,
            "use_bands": list(USE_BANDS),
            "use_factors": (
                {f"{r['kind']} {r['band']}": round(r["use_factor"], 4) for r in factors.iter_rows(named=True)}
                if factors is not None
                else {}
            ),
        },
        "offer_funnel": funnel_dict(funnel) if funnel is not None else {},
        "prices": (
            {src: int((products["price_source"] == src).sum()) for src in PRICE_SOURCES}
            if products is not None and "price_source" in products.columns
            else {}
        ),
        "campaigns": campaigns,
        "seconds": {k: round(v, 2) for k, v in seconds.items()},
    }


def _sql_text(value: str) -> str:
    return "'" + value.replace("'", "''") + "'"


class _TakenOver(Exception):
    """Another run completed or took over this batch while this one computed it."""


def _write(
    gateway: Gateway,
    batch_id: int,
    token: str,
    groups: pl.DataFrame,
    lists: pl.DataFrame,
    offers: pl.DataFrame,
    starter: pl.DataFrame | None,
    summary: dict,
    secret: bytes,
    parts: list[OfferPart],
) -> None:
    """Everything the batch writes, in one transaction (see the module docstring).

    `offers`: the selected offers' driver columns in list order (`finish_order` of `_shortlists`:
    ``_part``, ``_row`` name each one's row in its partition's shortlist); `parts`: the partitions,
    whose whole offer rows and needs are read and written one partition at a time."""
    sqlite = gateway.sqlite
    with gateway.bulk() as db:
        b = int(batch_id)
        # the guard: only the run holding the token writes, and never over a done batch (PostgreSQL's row
        # lock makes a racing run wait here and then find the row no longer 'running' under its token)
        mine = db.execute(
            f"UPDATE batches SET run_token = run_token WHERE batch_id = {b} AND status = 'running' "
            f"AND run_token = {_sql_text(token)} RETURNING batch_id"
        )
        if not mine:
            raise _TakenOver(b)
        key = db.execute("UPDATE chain_meta SET value = value WHERE name = 'secret_fingerprint' RETURNING value")
        if key and key[0][0] != fingerprint(secret):  # row-locked: a `keys rotate` waits for this commit
            raise StateError("the list-code key was rotated while this batch ran: run 'listwise batch run' again")
        db.execute(f"DELETE FROM list_needs WHERE list_id IN (SELECT list_id FROM lists WHERE batch_id = {b})")
        db.execute(f"DELETE FROM offers WHERE list_id IN (SELECT list_id FROM lists WHERE batch_id = {b})")
        db.execute(f"DELETE FROM lists WHERE batch_id = {b}")
        db.execute(f"DELETE FROM batch_members WHERE batch_id = {b}")
        if starter is not None and starter.height:
            db.execute("DELETE FROM tips")  # empty anyway: the starter set goes in only then
            db.append("tips", starter)
        db.append(
            "batch_members",
            groups.select(pl.lit(b, pl.Int64).alias("batch_id"), "customer_key", "grp", "avg_weekly_spend_cents"),
        )
        first_list = allocate_keys(db, "lists", max(lists.height, 1))
        lists = lists.with_columns(pl.int_range(first_list, first_list + pl.len(), dtype=pl.Int64).alias("list_id"))
        codes = [make_code(i, secret) for i in lists["list_id"].to_list()]
        db.append(
            "lists",
            lists.select(
                "list_id",
                pl.lit(b, pl.Int64).alias("batch_id"),
                "customer_key",
                pl.col("store_id").cast(pl.String),
                pl.Series("code", codes, dtype=pl.String),
                "valid_from",
                "valid_to",
                pl.lit("active").alias("status"),
                "tip_id",
            ),
        )
        fault_point("batch-mid-write")  # lists written, their offers not
        first_offer = allocate_keys(db, "offers", max(offers.height, 1))
        # offers are in list order (customer_key, line_no; list ids rise with customer_key): the offer
        # ids follow it. Each partition's whole rows are gathered from its shortlist and written in turn
        ids = lists.select("customer_key", "list_id")
        chosen = offers.select(
            "_part",
            "_row",
            "line_no",
            pl.int_range(first_offer, first_offer + pl.len(), dtype=pl.Int64).alias("offer_id"),
        )
        for i, part in enumerate(parts):
            mine = chosen.filter(pl.col("_part") == i)
            if mine.height == 0:
                continue
            rows = (
                part.offers.select(list(OFFER_SCHEMA))
                .collect()[mine["_row"]]
                .with_columns(mine["line_no"], mine["offer_id"])
            )
            rows = rows.join(ids, on="customer_key", how="inner", maintain_order="left")
            db.append("offers", rows.select(_OFFER_TABLE))
        for part in parts:  # the needs section (coupons.needs), keyed by the list
            needs = part.needs.collect()
            if needs.height:
                db.append(
                    "list_needs",
                    needs.join(ids, on="customer_key", how="inner")
                    .sort("list_id", "line_no")
                    .select(  # INTEGER columns: Int32 (PostgreSQL's COPY)
                        "list_id",
                        pl.col("line_no").cast(pl.Int32),
                        "category",
                        "product_key",
                        "p_buy",
                        "expected_on",
                        pl.col("interval_days").cast(pl.Int32),
                    ),
                )
        finished = utc_now().isoformat(sep=" ") if sqlite else utc_now().isoformat()
        db.execute(
            f"UPDATE batches SET status = 'done', finished_at = {_sql_text(finished)}, "
            f"summary_json = {_sql_text(json.dumps(summary))} WHERE batch_id = {b}"
        )
        fault_point("batch-before-commit")


_OFFER_TABLE = [
    "offer_id",
    "list_id",
    "line_no",
    "kind",
    "product_key",
    "category",
    "deal_id",
    "funder",
    "funded_share",
    "discount_cents",
    "min_spend_cents",
    "max_uses",
    "valid_from",
    "valid_to",
    "expected_on",
    "p_buy",
    "expected_value_cents",
    "brand_cell",
    "volume_tier",
    "reason",
]


def run_batch(
    settings: Settings,
    period_start: dt.date | None = None,
    out_dir: str | Path | None = None,
    progress: Progress | None = None,
    profiler: Profiler | None = None,
    gateway: Gateway | None = None,
) -> dict:
    """Run (or complete, or return) the batch of one period; returns its summary.

    Parameters
    ----------
    settings
        Effective settings (database, batch, offers, campaigns, secret).
    period_start
        First day of the period; None: the period after the last batch (see
        `default_period_start`).
    out_dir
        Directory of batch files (default `BatchSettings.out_dir`); the summary goes to
        ``<out_dir>/<period-start>/summary.json``.
    progress
        ``progress(label, done, total)`` called after each step.
    profiler
        ``profiler(history, products, customers, settings, as_of, window_days) -> (profile,
        value)``; default `engine.profiles.profile_frames`.
    gateway
        The command's database (`engine.db.Gateway`); None: one made from
        ``settings.database_url`` for this run and closed after it.

    Returns
    -------
    dict
        The batch summary (see `format_summary`).
    """
    with Gateway.using(gateway or settings.database_url) as db:
        db.require()
        verify_secret(db.engine, resolve_secret(settings))  # codes made under another key would all fail
        start = period_start or default_period_start(db, settings)
        end = start + dt.timedelta(days=settings.batch.period_days)
        batch_id, token, done = _start_batch(db, settings, start, end)
        fault_point("batch-after-start")
        target = Path(out_dir or settings.batch.out_dir) / start.isoformat()
        if done is not None:
            _write_summary(target, done)
            return done
        stale = _stale_history_warning(db, start, settings.batch.period_days)
        if stale:
            print(stale, file=sys.stderr)
        try:
            summary = _compute_and_write(db, settings, batch_id, token, start, end, progress, profiler)
        except _TakenOver:
            stored = _stored_summary(db, batch_id)
            if stored is None:
                raise StateError(
                    f"the batch of {start} was taken over by another run of 'batch run'; this run wrote nothing"
                ) from None
            _write_summary(target, stored)
            return stored  # another run finished it first: its lists stand
        except BaseException:
            _mark_failed(db, batch_id, token)
            raise
        fault_point("batch-after-commit")
        _write_summary(target, summary)
        return summary


def _stored_summary(db: Gateway, batch_id: int) -> dict | None:
    row = db.batch(batch_id)
    return json.loads(row["summary_json"]) if row is not None and row["status"] == "done" else None


def cancel_batch(settings: Settings, batch_id: int, gateway: Gateway | None = None) -> str:
    """Withdraw a batch: its lists and offers are deleted (their codes answer 'unknown').

    Refused once any of its offers was redeemed (the redemption must keep its offer, and the
    manufacturer's settlement its line). The batch row stays, 'cancelled', and `batch run`
    redoes the period, with new list ids and codes. Returns a one-line report.
    """
    with Gateway.using(gateway or settings.database_url) as db:
        db.require()
        with db.begin(immediate=True) as conn:
            row = conn.execute(
                sa.text("SELECT period_start, status FROM batches WHERE batch_id = :b"), {"b": batch_id}
            ).first()
            if row is None:
                raise StateError(f"no batch {batch_id}")
            if row.status == "running":
                raise StateError(
                    f"batch {batch_id} is running; stop it first (a killed run shows 'running' "
                    "until the next 'batch run' redoes it)"
                )
            used = conn.execute(
                sa.text(
                    "SELECT COUNT(*) FROM redemptions r JOIN offers o ON o.offer_id = r.offer_id "
                    "JOIN lists l ON l.list_id = o.list_id WHERE l.batch_id = :b AND r.voided = 0"
                ),
                {"b": batch_id},
            ).scalar()
            if used:
                raise StateError(
                    f"batch {batch_id} cannot be cancelled: {used} of its offers were already redeemed at the checkout"
                )
            lists = conn.execute(sa.text("SELECT COUNT(*) FROM lists WHERE batch_id = :b"), {"b": batch_id}).scalar()
            for table in ("list_needs", "offers"):
                conn.execute(
                    sa.text(f"DELETE FROM {table} WHERE list_id IN (SELECT list_id FROM lists WHERE batch_id = :b)"),
                    {"b": batch_id},
                )
            conn.execute(sa.text("DELETE FROM lists WHERE batch_id = :b"), {"b": batch_id})
            conn.execute(sa.text("DELETE FROM batch_members WHERE batch_id = :b"), {"b": batch_id})
            conn.execute(
                sa.text("UPDATE batches SET status = 'cancelled', run_token = NULL WHERE batch_id = :b"),
                {"b": batch_id},
            )
    return (
        f"batch {batch_id} ({as_date(row.period_start)}) cancelled: {lists:,} lists withdrawn; "
        "'batch run' redoes the period"
    )


def _mark_failed(db: Gateway, batch_id: int, token: str) -> None:
    try:
        with db.begin() as conn:
            conn.execute(
                sa.text(
                    "UPDATE batches SET status = 'failed' WHERE batch_id = :b AND status = 'running' AND run_token = :k"
                ),
                {"b": batch_id, "k": token},
            )
    except Exception:  # noqa: BLE001 - the original error matters more; 'running' is handled alike
        pass


def _compute_and_write(
    db: Gateway,
    settings: Settings,
    batch_id: int,
    token: str,
    start: dt.date,
    end: dt.date,
    progress: Progress | None,
    profiler: Profiler | None,
) -> dict:
    seconds: dict[str, float] = {}
    clock = time.perf_counter()

    def step(name: str) -> None:
        nonlocal clock
        now = time.perf_counter()
        seconds[name] = now - clock
        clock = now
        if progress:
            progress("batch", _STEPS.index(name) + 1, len(_STEPS))

    secret = resolve_secret(settings)
    if profiler is None:
        profiler, profiler_name = _default_profiler()
        from_store = profiler_name == "engine.profiles"
    else:
        from_store, profiler_name = False, getattr(profiler, "__name__", "custom")
    # the history store's partitions, each read where its stage runs (on a Dask worker too): the
    # batch holds no copy of the history, only the sums it needs (spend, prices) and the results
    streamed = from_store and (partitions_of(settings) > 1 or settings.scale.executor == "dask")
    data = _read_inputs(db, settings, batch_id, start, streamed, progress)
    settings, matches = resolve_categories(settings, data["products"])  # patterns -> the catalogue's names
    for line in format_matches(matches):
        if line.startswith("warning:"):
            print(line, file=sys.stderr)
    step("read")
    b = settings.batch
    qualifying = qualifying_from_spend(data["customers"], data["spend"], b.threshold_cents, b.qualifying_weeks)
    groups = assign_groups(qualifying, start, b.holdout_share)
    treated = groups.filter(pl.col("grp") == "treated")["customer_key"]
    step("qualify")
    customers = data["customers"].filter(pl.col("customer_key").is_in(qualifying["customer_key"].implode()))
    job = OfferJob(
        data["products"],
        data["deals"],
        settings.plan_rules(),
        start,
        end,
        tuple(c.category for c in settings.campaigns),
        settings.printing.needs_min_p_buy,
        settings.printing.needs_max_lines,
    )
    with contextlib.ExitStack() as stack:
        if streamed:
            # each partition's stage reads the history store's own part files (by path: on a Dask worker
            # too), restricted to the qualifying customers, and turns its profile into its customers'
            # shortlisted offers where it runs: neither history nor the profile comes to this process,
            # and of the shortlists (scratch files) only the columns the budgets and the summary read
            scratch = stack.enter_context(scratch_dir("batch"))
            n = partitions_of(settings)
            keys = groups["customer_key"]
            extra = [(treated.filter(treated % n == p), keys.filter(keys % n == p)) for p in range(n)]
            value, handles = run_store_then(
                db,
                customers,
                settings,
                start,
                history_start(settings, start),
                partition_offers,
                job,
                extra,
                window_days=b.period_days,
                progress=progress,
                keys=qualifying["customer_key"],
                prepare=lambda v: with_reward_uses(v, settings.offers),  # the reward's count ranks every customer
                scratch=scratch,
            )
            del value  # every customer's value rows: the partitions made their offers from their own
            parts = [OfferPart(*h) for h in handles]
        else:  # one partition in this process: the history already read
            history = data["history"].filter(pl.col("customer_key").is_in(qualifying["customer_key"].implode()))
            profile, value = profiler(history, data["products"], customers, settings, start, b.period_days)
            del history
            part = partition_offers(profile, value, treated, groups["customer_key"], job)
            del profile, value
            parts = [OfferPart(*(frame.lazy() for frame in part))]
        step("profile")
        fault_point("batch-after-profile")
        budgets = deal_budgets(data["deals"], data["expired"], data["live"], data["factors"])
        o = settings.offers
        short = _shortlists(parts)
        kept, lost = finish_order(short, budgets, b.chain_budget_cents, o.budget_refill_rounds, data["factors"])
        lost = short.select(k for k in TALLY_KEYS if k != "drop_reason")[lost["_at"]].with_columns(lost["drop_reason"])
        offers = _take(short, kept["_at"]).with_columns(kept["line_no"])  # empties `short`
        del short, kept
        dropped = pl.concat([*(p.dropped.collect() for p in parts), drop_tally(lost)])
        candidates = pl.concat([p.candidates.collect() for p in parts])
        funnel = tally_funnel(candidates, offers, dropped)
        cells = (
            pl.concat([p.cells.collect() for p in parts])
            .group_by("category", "brand_cell", "volume_tier")
            .agg(pl.col("n").sum())
        )
        tips = data["tips"] if data["tips"].height else starter_tips()
        chosen = choose_tips(offers, treated, tips)
        valid_to = end - dt.timedelta(days=1)
        lists = chosen.with_columns(pl.lit(start).alias("valid_from"), pl.lit(valid_to).alias("valid_to")).join(
            data["home"], on="customer_key", how="left", maintain_order="left"
        )
        step("offers")
        summary = _summary(
            batch_id=batch_id,
            period_start=start,
            period_end=end,
            profiler_name=profiler_name,
            groups=groups,
            offers=offers,
            cells=cells,
            budgets=budgets,
            settings=settings,
            seconds=seconds,
            funnel=funnel,
            dropped=dropped,
            products=data["products"],
            factors=data["factors"],
        )
        summary["category_matches"] = [m.as_dict() for m in matches]
        counts = pl.concat(
            [
                p.needs.select(pl.len().alias("lines"), pl.col("customer_key").n_unique().alias("lists")).collect()
                for p in parts
            ]
        ).sum()
        summary["needs"] = {
            "lines": int(counts["lines"][0]),
            "lists_with_needs": int(counts["lists"][0]),
            "lists": int(treated.len()),
            "min_p_buy": settings.printing.needs_min_p_buy,
            "max_lines": settings.printing.needs_max_lines,
        }
        _write(
            db, batch_id, token, groups, lists, offers, None if data["tips"].height else tips, summary, secret, parts
        )
    step("write")  # the stored summary's seconds end before the write, so a re-run returns it unchanged
    return summary


def _shortlists(parts: list[OfferPart]) -> pl.DataFrame:
    """Every partition's shortlisted offers, the columns the budgets, tips and summary read (not the
    texts and dates the write gathers per partition), with their partition and row (``_part``,
    ``_row``), in customer order (a customer's rows are in one partition, in their order)."""
    frames = [
        p.offers.select(_SLIM).with_row_index("_row").with_columns(pl.lit(i, pl.Int32).alias("_part")).collect()
        for i, p in enumerate(parts)
    ]
    merged = pl.concat(frames, rechunk=False)
    del frames
    return _take(merged, merged.select(pl.arg_sort_by("customer_key", "_row")).to_series())


def _take(frame: pl.DataFrame, rows: pl.Series) -> pl.DataFrame:
    """``frame[rows]`` a column at a time, each of `frame`'s columns released (`drop_in_place`) once
    gathered: `frame` is left empty, and the peak is one copy and a column, not two copies (at a
    million customers, 12M shortlisted offers are ~2 GB a copy)."""
    out = []
    for name in frame.columns:
        out.append(frame.drop_in_place(name).gather(rows))
    return pl.DataFrame(out)


# the shortlist's columns the driver holds for every offer (`_shortlists`); the write gathers the rest
_SLIM = [c for c in OFFER_SCHEMA if c not in ("min_spend_cents", "valid_from", "valid_to", "expected_on", "reason")] + [
    "_reserved"
]


@dataclass(frozen=True)
class OfferJob:
    """What every partition's offers stage (`partition_offers`) shares: the catalogue (prices
    completed), the deals, the plan's rules, the period, the campaigns' categories and the needs
    section's settings."""

    products: pl.DataFrame
    deals: pl.DataFrame
    rules: PlanRules
    start: dt.date
    end: dt.date
    campaign_categories: tuple[str, ...]
    needs_min_p_buy: float
    needs_max_lines: int


def _needs(profile: pl.DataFrame, treated: pl.Series, start: dt.date, end: dt.date, settings: Settings) -> pl.DataFrame:
    """The needs section of each treated customer's list (`coupons.needs.select_needs`)."""
    p = settings.printing
    return _select_needs(profile, treated, start, end, p.needs_min_p_buy, p.needs_max_lines)


def _select_needs(
    profile: pl.DataFrame, treated: pl.Series, start: dt.date, end: dt.date, min_p_buy: float, max_lines: int
) -> pl.DataFrame:
    try:
        return select_needs(profile, treated, start, end, min_p_buy=min_p_buy, max_lines=max_lines)
    except ValueError as exc:
        raise ConfigError(f"printing: {exc}") from exc


class OfferPart(NamedTuple):
    """A partition's part of the batch (`partition_offers`): its shortlisted offers and tallies
    (`coupons.build.Shortlisted`: offers, candidates, dropped), its lists' needs sections, and ``cells``: category, brand_cell,
    volume_tier, n of its qualifying customers' profile rows in the campaigns' categories."""

    offers: pl.DataFrame
    candidates: pl.DataFrame
    dropped: pl.DataFrame
    needs: pl.DataFrame
    cells: pl.DataFrame


def partition_offers(
    profile: pl.DataFrame, value: pl.DataFrame, treated: pl.Series, members: pl.Series, job: OfferJob
) -> OfferPart:
    """One partition's offers stage, where its profile is (`engine.stages.run_store_then`): a pure
    function of its customers' profile and value rows. `treated`: who gets a list; `members`: the
    qualifying customers (treated and hold-out) the campaigns' grids count."""
    fault_point("stage-offers")
    short = shortlist_offers(profile, value, job.products, job.deals, treated, job.rules, job.start, job.end)
    needs = _select_needs(profile, treated, job.start, job.end, job.needs_min_p_buy, job.needs_max_lines)
    cells = (
        profile.filter(
            pl.col("category").is_in(list(job.campaign_categories)),
            pl.col("customer_key").is_in(members.cast(pl.Int64).implode()),
        )
        .group_by("category", "brand_cell", "volume_tier")
        .agg(pl.len().cast(pl.Int64).alias("n"))
    )
    return OfferPart(short.offers, short.candidates, short.dropped, needs, cells)


def _write_summary(target: Path, summary: dict) -> None:
    target.mkdir(parents=True, exist_ok=True)
    (target / "summary.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")


def _budget_lines(summary: dict) -> list[dict]:
    """The chain and every deal as budget lines: name, budget, held before, this batch's charge and
    expected cost, left; largest charge first."""
    rows = []
    c = summary.get("chain_budget", {})
    if c.get("committed_cents") is not None:
        rows.append(
            {
                "line": "chain (retailer)",
                "budget": c.get("budget_cents"),
                "before": 0,
                "charged": c["committed_cents"],
                "expected": c.get("expected_cents", 0),
                "left": None if c.get("budget_cents") is None else c["budget_cents"] - c["committed_cents"],
            }
        )
    for deal, d in summary.get("deal_budgets", {}).items():
        rows.append(
            {
                "line": deal,
                "budget": d.get("budget_cents"),
                "before": d.get("committed_before_cents", 0),
                "charged": d.get("this_batch_cents", 0),
                "expected": d.get("expected_cents", 0),
                "left": d.get("left_cents"),
            }
        )
    return sorted(rows, key=lambda r: (-r["charged"], r["line"]))


def format_summary(summary: dict, out_dir: str | Path | None = None) -> str:
    """The batch summary as a few lines for the terminal (summary.json has it all).

    Headline counts, offers by kind with the funnel's drop totals, the five largest budget
    lines by this batch's charge, and where the files are (``out_dir``: the batch files'
    root, as given to `run_batch`).
    """
    s = summary
    lines = [
        f"batch {s['batch_id']}: period {s['period_start']} to {s['period_end']} (exclusive), "
        f"profiles from {s['profiler']}",
        f"qualifying customers {s['qualifying_customers']:,}, hold-out {s['holdout_customers']:,}, "
        f"lists {s['lists']:,}, offers {s['offers']:,} (face value {dollars(s['face_value_cents'])})",
    ]
    funnel = s.get("offer_funnel") or {}
    kinds = []
    for kind, n in s["offers_by_kind"].items():
        f = funnel.get(kind)
        dropped = sum(f["dropped"].values()) if f else 0
        kinds.append(f"{kind} {n:,}" + (f" of {f['candidates']:,}" if f and dropped else ""))
    lines.append("offers by kind (of candidates): " + ", ".join(kinds))
    if funnel:
        totals: dict[str, int] = {}
        for f in funnel.values():
            for reason, n in f["dropped"].items():
                totals[reason] = totals.get(reason, 0) + n
        why = ", ".join(f"{r} {n:,}" for r, n in totals.items() if n)
        if why:
            lines.append("candidates dropped: " + why)
    p = s.get("prices") or {}
    if p.get("history") or p.get("none"):  # a catalogue without shelf prices: say where they came from
        lines.append(
            f"shelf prices: catalogue {p.get('catalogue', 0):,}, from history {p.get('history', 0):,}, "
            f"none {p.get('none', 0):,} products"
        )
    if s.get("needs"):
        n = s["needs"]
        lines.append(f"needs section: {n['lines']:,} lines on {n['lists_with_needs']:,} of {n['lists']:,} lists")
    for name, c in s["campaigns"].items():
        if "candidates" in c:
            n = {k: sum(sum(row.values()) for row in c[k].values()) for k in ("candidates", "offers")}
            lines.append(
                f"campaign {name}: {n['candidates']:,} targeted, {n['offers']:,} offered "
                "(3 x 3 grid in summary.json and the report)"
            )
    budget = _budget_lines(s)
    if budget:
        lines.append("largest budget lines (charged this batch = expected + margin; held before; budget; left):")
        for r in budget[:5]:
            lines.append(
                f"  {r['line']:<16} {dollars(r['charged']):>11} (expected {dollars(r['expected'])}); "
                f"before {dollars(r['before'])}; budget "
                f"{'no limit' if r['budget'] is None else dollars(r['budget'])}; left "
                f"{'-' if r['left'] is None else dollars(r['left'])}"
            )
        if len(budget) > 5:
            lines.append(f"  ... {len(budget) - 5:,} more lines in summary.json")
    if out_dir is not None:
        folder = Path(out_dir) / s["period_start"]
        lines.append(f"files: {folder}/ (summary.json); report: {folder / 'report' / 'report.html'}")
    return "\n".join(lines)
