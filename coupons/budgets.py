"""Budgets: keep the best offers (by expected value) that fit each budget.

Three budgets, each a cap in cents on a cost of the offers it covers:

* per deal — the deal's budget covers what its offers are *expected to give away*, with a
  safety margin (below): ``budget_left_cents`` is the budget minus what earlier batches hold
  (the caller, `engine.batch`: redemptions of offers whose list expired, and the expected cost
  plus margin of offers still live), so value an expired offer did not use returns to the deal;
* per list — `OfferRules.list_cap_cents` by the customer's value tier covers the
  retailer-funded part of the face value, ``ceil(discount x max_uses x (1 - funded_share))``
  (a tier not in the table gets the smallest cap); reward coupons are outside this cap (they
  are the loyalty programme's, sized by `coupons.rewards`) but inside the chain budget, and so
  are the campaign offers on a list's reserved campaign lines (`coupons.select`);
* per batch — `BatchRules.chain_budget_cents` (0 = no limit) covers the retailer-funded
  part of what the batch's offers are expected to give away, with the same margin.

The list cap stays on face value: it bounds what one customer can take, not an average.

Model of use (deal and chain budgets)
-------------------------------------
An offer of face value ``F = discount_cents x max_uses`` gives away ``X = discount x U`` in
[0, F], ``U`` its uses. The model counts uses, not face value: a customer who buys once uses one
coupon however many uses the offer allows (1.0 use per used offer on the demo), so

    E[U] = min(USE_CAP x max_uses, p_buy x use_factor),   q = E[U] / max_uses   (share of F)

* ``p_buy`` is the probability that the customer buys in the offer's category in the period
  (for a reward, that the customer is alive), without the offer; null ``p_buy``: q = USE_CAP.
  With factor 1 a buyer is expected to use one coupon.
* **No evidence, no model**: an offer whose kind and band have no learnt factor (no expired
  batch recorded redemptions, e.g. a chain's first batches) is charged q = USE_CAP, its face
  value, as before issue 15 — ``p_buy`` is the probability of buying *without* the coupon, and
  the coupon causes purchases (the demo's shoppers use 35 % of offers whatever their
  ``p_buy``, about twice what ``p_buy`` says), so it is no safe basis on its own.
* ``use_factor`` (`use_factors`) is learnt per kind and band of ``p_buy`` (`USE_BANDS`) from
  offers whose lists expired: redeemed cents over ``sum(p_buy x discount)``, shrunk towards 1 by a
  prior worth `FACTOR_PRIOR_USES` expected uses, ``(redeemed + prior) / (expected + prior)``
  with ``prior = FACTOR_PRIOR_USES x expected / expected uses`` (cents of the group's average use):
  how many uses were really made against how likely the purchase was. Per band, because a coupon also *causes* purchases (the lift): an offer on a
  category the customer rarely buys is used more often than ``p_buy`` says, a likely one less.
  A band with evidence is shrunk towards 1; the guarantee below holds as far as the learnt
  factor is right for the next period.

The charge against a budget is ``min(sum F, sum(E[X]) + margin)`` (redemptions can never exceed
the face value, so a few offers are charged no more than that), the margin from Bernstein's inequality
for independent bounded variables (e.g. Boucheron, Lugosi & Massart 2013, *Concentration
inequalities*, ch. 2): with
``X - E[X] <= M = F (1 - q)`` and ``Var X <= E[X] (F - E[X]) = F^2 q (1 - q)`` (Bhatia-Davis:
the largest variance of a variable in [0, F] with that mean),

    P(sum X - sum E[X] >= t) <= risk   for   t = L M / 3 + sqrt((L M / 3)^2 + 2 L sum Var X),
    L = ln(1 / risk), M the largest M of the offers charged together.

So, when q is right (or too high) and customers redeem independently, the actual redemptions
exceed a budget with probability at most `BUDGET_RISK` (1 %) — whatever the distribution of
uses, and also for a handful of large offers, where the normal approximation would not hold.
For many small offers t is about 3.0 standard deviations (the normal 1 % quantile is 2.33).
Offers that will certainly be used (q = 1) carry no margin and are charged their face value.
Independence holds across customers, and a deal gives a customer one offer (`coupons.deals`);
the chain budget also adds up one customer's several offers, which a shopping trip correlates,
so its margin is the looser guarantee.

`within_budget` is a greedy fill, vectorised: rows sorted by expected value (best first) within
their group, running sums of cost (and variance, running maximum of the bound), keep the prefix
whose charge fits; then up to `rounds` refill passes over the rows left out whose own charge
still fits the remainder (so one costly offer does not block cheaper ones behind it). The charge
grows with every row added, so each pass keeps the group's charge within its budget.
"""

from __future__ import annotations

import math

import polars as pl

from coupons.offers import face_value, retailer_cost
from coupons.rules import OfferRules

__all__ = [
    "within_budget",
    "apply_list_caps",
    "apply_deal_budgets",
    "apply_chain_budget",
    "BUDGET_RISK",
    "USE_CAP",
    "FACTOR_PRIOR_USES",
    "USE_BANDS",
    "use_band",
    "use_factors",
    "use_probability",
    "cost_moments",
    "safety_margin",
    "margin_cents",
    "budget_charges",
    "deal_commitments",
]

BUDGET_RISK = 0.01  # chance that a period's redemptions exceed a deal's (or the chain's) budget
USE_CAP = 1.0  # q never above this share of face value
FACTOR_PRIOR_USES = 20  # the prior factor 1 weighs like this many expected uses of the group
USE_BANDS = (0.1, 0.2, 0.35, 0.5, 0.7)  # p_buy band edges: band 0 below 0.1, ..., band 5 from 0.7
_ROUNDS = OfferRules.budget_refill_rounds


def use_band(p_buy: pl.Expr | None = None) -> pl.Expr:
    """The band of p_buy (Int32, 0..len(USE_BANDS); null p_buy: null)."""
    p = pl.col("p_buy") if p_buy is None else p_buy
    band = pl.lit(0, pl.Int32)
    for i, edge in enumerate(USE_BANDS, start=1):
        band = pl.when(p >= edge).then(pl.lit(i, pl.Int32)).otherwise(band)
    return pl.when(p.is_null()).then(None).otherwise(band).cast(pl.Int32).alias("band")


def use_factors(history: pl.DataFrame, prior_uses: float = FACTOR_PRIOR_USES) -> pl.DataFrame:
    """The use factor per offer kind and p_buy band, learnt from offers whose lists expired.

    Parameters
    ----------
    history
        kind, band (`use_band`; Int32, null for offers without p_buy), expected_cents (sum of
        p_buy x discount_cents, Float64), expected_uses (sum of p_buy, Float64),
        redeemed_cents (Int64); any number of rows per group.
    prior_uses
        Weight of the prior factor 1, in expected uses.

    Returns
    -------
    polars.DataFrame
        kind, band, use_factor (Float64 > 0), sorted by kind, band. Absent groups: no factor (charged face value).
    """
    return (
        history.filter(pl.col("band").is_not_null())
        .group_by("kind", pl.col("band").cast(pl.Int32))
        .agg(
            pl.col("expected_cents").cast(pl.Float64).fill_null(0).sum().alias("e"),
            pl.col("expected_uses").cast(pl.Float64).fill_null(0).sum().alias("u"),
            pl.col("redeemed_cents").cast(pl.Float64).fill_null(0).sum().alias("r"),
        )
        .filter(pl.col("u") > 0)
        .with_columns((prior_uses * pl.col("e") / pl.col("u")).alias("prior"))
        .select("kind", "band", ((pl.col("r") + pl.col("prior")) / (pl.col("e") + pl.col("prior"))).alias("use_factor"))
        .sort("kind", "band")
    )


def use_probability(factor: pl.Expr | float = 1.0, cap: float = USE_CAP) -> pl.Expr:
    """q = min(cap, p_buy x factor / max_uses) in [0, cap], the expected share of face value used;
    null p_buy or null factor (no evidence): cap (see the module docstring)."""
    f = factor if isinstance(factor, pl.Expr) else pl.lit(float(factor))
    uses = pl.col("max_uses").cast(pl.Float64).clip(lower_bound=1.0)
    return (pl.col("p_buy").cast(pl.Float64) * f / uses).fill_null(cap).clip(0.0, cap).alias("use_q")


def cost_moments(q: pl.Expr, share: pl.Expr | None = None) -> list[pl.Expr]:
    """_mean, _var, _bound (Float64) of the cost of one offer: F = face value x `share` (default 1).

    _mean = q F, _var = F^2 q (1 - q) (the largest variance in [0, F]), _bound = F (1 - q).
    """
    face = (pl.col("discount_cents") * pl.col("max_uses").cast(pl.Int64)).cast(pl.Float64)
    f = face * share if share is not None else face
    return [(q * f).alias("_mean"), (f * f * q * (1.0 - q)).alias("_var"), (f * (1.0 - q)).alias("_bound")]


def safety_margin(variance: pl.Expr, bound: pl.Expr, risk: float = BUDGET_RISK) -> pl.Expr:
    """Bernstein's t (cents) for a sum with total `variance` and largest upper deviation `bound`."""
    L = math.log(1.0 / risk)
    a = bound * (L / 3.0)
    return a + (a * a + 2.0 * L * variance).sqrt()


def margin_cents(variance: float, bound: float, risk: float = BUDGET_RISK) -> float:
    """`safety_margin` for Python numbers."""
    L = math.log(1.0 / risk)
    a = bound * L / 3.0
    return a + math.sqrt(a * a + 2.0 * L * variance)


def _factor_expr(offers: pl.DataFrame, factors: pl.DataFrame | None) -> tuple[pl.DataFrame, pl.Expr]:
    if factors is None or "kind" not in offers.columns:
        return offers, pl.lit(None, pl.Float64)  # no evidence: face value
    keyed = offers.with_columns(use_band().alias("_band"))
    joined = keyed.join(
        factors.select("kind", pl.col("band").cast(pl.Int32).alias("_band"), pl.col("use_factor").alias("_factor")),
        on=["kind", "_band"],
        how="left",
        nulls_equal=False,
    )
    return joined.drop("_band"), pl.col("_factor")


def budget_charges(
    offers: pl.DataFrame,
    by: list[str] | None = None,
    factors: pl.DataFrame | None = None,
    retailer: bool = False,
    risk: float = BUDGET_RISK,
) -> pl.DataFrame:
    """What a set of offers charges a budget, per group.

    Parameters
    ----------
    offers
        kind, p_buy, discount_cents, max_uses, funded_share (when `retailer`), and the `by` columns.
    factors
        kind, band, use_factor (`use_factors`); None or absent: face value.
    retailer
        Count the retailer-funded part only (the chain budget); else the whole offer (a deal).

    Returns
    -------
    polars.DataFrame
        `by` columns, face_cents (face value, or its retailer part rounded up as
        `coupons.offers.retailer_cost`), expected_cents (sum of E[X], rounded), committed_cents
        (what the budget is charged: the least of face_cents and expected + Bernstein margin at
        `risk`, rounded up), offers.
        One row per group present (by None: one row, zeros when `offers` is empty).
    """
    by = list(by or [])
    read = [*by, "kind", "p_buy", "discount_cents", "max_uses", "funded_share"]  # the join below copies: not all
    f, factor = _factor_expr(offers.select(c for c in dict.fromkeys(read) if c in offers.columns), factors)
    share = (1.0 - pl.col("funded_share").cast(pl.Float64)) if retailer else None
    face = retailer_cost() if retailer else face_value()
    f = f.with_columns(use_probability(factor), face.alias("_face")).with_columns(cost_moments(pl.col("use_q"), share))
    aggs = [
        pl.col("_face").sum().alias("_face"),
        pl.col("_mean").sum().alias("_mean"),
        pl.col("_var").sum().alias("_var"),
        pl.col("_bound").max().fill_null(0.0).alias("_bound"),
        pl.len().alias("offers"),
    ]
    g = f.group_by(by).agg(aggs) if by else f.select(aggs)
    return g.select(
        *by,
        pl.col("_face").fill_null(0).cast(pl.Int64).alias("face_cents"),
        pl.col("_mean").fill_null(0.0).round(0).cast(pl.Int64).alias("expected_cents"),
        pl.min_horizontal(
            pl.col("_face").fill_null(0).cast(pl.Float64),
            pl.col("_mean").fill_null(0.0) + safety_margin(pl.col("_var").fill_null(0.0), pl.col("_bound"), risk),
        )
        .round(6)
        .ceil()
        .cast(pl.Int64)
        .alias("committed_cents"),
        pl.col("offers").cast(pl.Int64),
    )


def within_budget(
    frame: pl.DataFrame,
    cost: str,
    budget: str,
    by: list[str] | None = None,
    rounds: int = _ROUNDS,
    first: str | None = None,
    variance: str | None = None,
    bound: str | None = None,
    ceiling: str | None = None,
    risk: float = BUDGET_RISK,
) -> pl.DataFrame:
    """The rows of `frame` kept by a greedy fill of each group's budget, in their original order.

    A group's charge is ``sum(cost)``, plus ``safety_margin(sum(variance), max(bound), risk)``
    when `variance` is given, and at most ``sum(ceiling)`` when `ceiling` is given; the kept rows'
    charge never exceeds the group's budget.

    Parameters
    ----------
    frame
        Rows with expected_value_cents, `cost` (>= 0, the expected cost when `variance` is
        given) and `budget` (the same for every row of a group; null = no limit).
    cost, budget
        Column names.
    by
        Group columns (None: one group, the whole frame).
    rounds
        Refill passes after the first.
    first
        A boolean column: its true rows are served before the others (then expected value).
    variance, bound
        Columns of each row's cost variance and upper deviation (`cost_moments`); None: none.
    ceiling
        Column of each row's largest possible cost (its face value); None: no ceiling.
    """
    by = list(by or [])
    lead = [pl.col(first).not_()] if first else []
    var = pl.col(variance).cast(pl.Float64) if variance else pl.lit(0.0)
    top = pl.col(bound).cast(pl.Float64) if bound else pl.lit(0.0)
    most = pl.col(ceiling).cast(pl.Float64) if ceiling else pl.lit(math.inf)
    f = (
        frame.with_row_index("_i")
        .sort([*by, *lead, -pl.col("expected_value_cents"), "_i"])
        .with_columns(
            (pl.col(budget).is_null() | ((pl.col(cost) <= 0) & (var <= 0))).alias("_keep"),
            pl.col(budget).fill_null(0).cast(pl.Float64).alias("_b"),
            pl.col(cost).cast(pl.Float64).alias("_c"),
            var.alias("_v"),
            top.alias("_m"),
            most.alias("_x"),
            pl.lit(0.0).alias("_used"),
            pl.lit(0.0).alias("_uvar"),
            pl.lit(0.0).alias("_umax"),
            pl.lit(0.0).alias("_umost"),
        )
    )

    def per_group(e: pl.Expr) -> pl.Expr:
        return e.over(by) if by else e

    def charge(mean: pl.Expr, v: pl.Expr, m: pl.Expr, x: pl.Expr) -> pl.Expr:
        return pl.min_horizontal(x, mean + safety_margin(v, m, risk) if variance else mean)

    for _ in range(rounds + 1):
        alone = charge(
            pl.col("_used") + pl.col("_c"),
            pl.col("_uvar") + pl.col("_v"),
            pl.max_horizontal("_umax", "_m"),
            pl.col("_umost") + pl.col("_x"),
        )
        candidate = ~pl.col("_keep") & (alone <= pl.col("_b"))
        run_c = per_group(pl.when(candidate).then(pl.col("_c")).otherwise(0.0).cum_sum())
        run_v = per_group(pl.when(candidate).then(pl.col("_v")).otherwise(0.0).cum_sum())
        run_m = per_group(pl.when(candidate).then(pl.col("_m")).otherwise(0.0).cum_max())
        run_x = per_group(pl.when(candidate).then(pl.col("_x")).otherwise(0.0).cum_sum())
        total = charge(
            pl.col("_used") + run_c,
            pl.col("_uvar") + run_v,
            pl.max_horizontal("_umax", run_m),
            pl.col("_umost") + run_x,
        )
        f = f.with_columns((candidate & (total <= pl.col("_b"))).alias("_new"))
        if not f["_new"].any():
            break
        new = pl.col("_new")
        f = f.with_columns(
            (pl.col("_keep") | new).alias("_keep"),
            (pl.col("_used") + per_group(pl.when(new).then(pl.col("_c")).otherwise(0.0).sum())).alias("_used"),
            (pl.col("_uvar") + per_group(pl.when(new).then(pl.col("_v")).otherwise(0.0).sum())).alias("_uvar"),
            pl.max_horizontal("_umax", per_group(pl.when(new).then(pl.col("_m")).otherwise(0.0).max())).alias("_umax"),
            (pl.col("_umost") + per_group(pl.when(new).then(pl.col("_x")).otherwise(0.0).sum())).alias("_umost"),
        )
    return (
        f.filter("_keep")
        .sort("_i")
        .drop("_i", "_keep", "_b", "_c", "_v", "_m", "_x", "_used", "_uvar", "_umax", "_umost", "_new", strict=False)
    )


def apply_list_caps(
    offers: pl.DataFrame,
    tiers: pl.DataFrame,
    caps: dict[str, int],
    rounds: int = _ROUNDS,
    first: str | None = None,
    exempt: str | None = None,
) -> pl.DataFrame:
    """Offers within each list's cap of retailer-funded face value by value tier.

    `tiers`: customer_key, value_tier. Reward offers are not counted, nor the rows where the
    boolean column `exempt` is true. `first`: see `within_budget`.
    """
    smallest = min(caps.values()) if caps else None
    cap = pl.col("value_tier").replace_strict(caps, default=smallest, return_dtype=pl.Int64)
    outside = (pl.col("kind") == "reward") | (pl.col(exempt).fill_null(False) if exempt else pl.lit(False))
    f = offers.join(tiers.select("customer_key", pl.col("value_tier")), on="customer_key", how="left").with_columns(
        retailer_cost(), pl.when(outside).then(None).otherwise(cap).alias("_cap")
    )
    kept = within_budget(f, "retailer_cost_cents", "_cap", ["customer_key"], rounds, first)
    return kept.drop("value_tier", "retailer_cost_cents", "_cap")


def apply_deal_budgets(
    offers: pl.DataFrame,
    deal_budgets: pl.DataFrame,
    rounds: int = _ROUNDS,
    factors: pl.DataFrame | None = None,
    risk: float = BUDGET_RISK,
) -> pl.DataFrame:
    """Offers whose expected cost plus margin fits each deal's remaining budget.

    `deal_budgets`: deal_id, budget_left_cents (null: no budget, unlimited); `factors`: kind,
    band, use_factor (`use_factors`; None or absent: face value). Offers of no deal are untouched.
    """
    f, factor = _factor_expr(offers, factors)
    f = (
        f.join(deal_budgets.select("deal_id", "budget_left_cents"), on="deal_id", how="left")
        .with_columns(
            use_probability(factor),
            face_value().alias("_face"),
            pl.when(pl.col("deal_id").is_null())
            .then(None)
            .otherwise(pl.col("budget_left_cents").clip(lower_bound=0))
            .alias("_budget"),
        )
        .with_columns(cost_moments(pl.col("use_q")))
    )
    kept = within_budget(
        f, "_mean", "_budget", ["deal_id"], rounds, variance="_var", bound="_bound", ceiling="_face", risk=risk
    )
    return kept.drop(
        "budget_left_cents", "use_q", "_mean", "_var", "_bound", "_budget", "_factor", "_face", strict=False
    )


def apply_chain_budget(
    offers: pl.DataFrame,
    chain_budget_cents: int,
    rounds: int = _ROUNDS,
    first: str | None = None,
    factors: pl.DataFrame | None = None,
    risk: float = BUDGET_RISK,
) -> pl.DataFrame:
    """Offers whose expected retailer-funded cost plus margin fits the batch's budget (0 = no limit).

    `first`: see `within_budget`; `factors`: see `apply_deal_budgets`.
    """
    if chain_budget_cents <= 0:
        return offers
    f, factor = _factor_expr(offers, factors)
    f = f.with_columns(
        use_probability(factor), retailer_cost().alias("_face"), pl.lit(chain_budget_cents, pl.Int64).alias("_budget")
    ).with_columns(cost_moments(pl.col("use_q"), 1.0 - pl.col("funded_share").cast(pl.Float64)))
    kept = within_budget(
        f, "_mean", "_budget", None, rounds, first, variance="_var", bound="_bound", ceiling="_face", risk=risk
    )
    return kept.drop("use_q", "_mean", "_var", "_bound", "_budget", "_factor", "_face", strict=False)


def deal_commitments(
    deals: pl.DataFrame,
    expired: pl.DataFrame,
    live: pl.DataFrame,
    factors: pl.DataFrame | None = None,
    risk: float = BUDGET_RISK,
) -> pl.DataFrame:
    """What earlier batches hold of each deal's budget, re-based on their redemptions.

    An offer whose list expired holds what it redeemed (the rest of its charge is released to
    the deal); a live offer holds its charge (expected cost plus margin, `budget_charges`), or
    what it already redeemed if more.

    Parameters
    ----------
    deals
        deal_id, budget_cents (null: no budget).
    expired
        Per deal, the offers of earlier batches whose list expired: deal_id, face_cents,
        redeemed_cents (not voided).
    live
        One row per offer of an earlier batch still valid: deal_id, kind, p_buy,
        discount_cents, max_uses, redeemed_cents (so far).
    factors
        kind, band, use_factor (`use_factors`); None or absent: face value.

    Returns
    -------
    polars.DataFrame
        deal_id, budget_cents, redeemed_before_cents (by expired offers), released_before_cents
        (their face value not redeemed), live_before_cents (held by live offers),
        committed_before_cents (redeemed + live), budget_left_cents (budget - committed, at
        least 0; null: no budget); one row per deal, by deal_id.
    """
    held = budget_charges(live, ["deal_id"], factors, risk=risk)
    used = live.group_by("deal_id").agg(pl.col("redeemed_cents").fill_null(0).sum().cast(pl.Int64).alias("_r"))
    live_held = held.join(used, on="deal_id", how="left").select(
        "deal_id",
        pl.max_horizontal("committed_cents", pl.col("_r").fill_null(0)).cast(pl.Int64).alias("live_before_cents"),
    )
    past = expired.group_by("deal_id").agg(
        pl.col("face_cents").fill_null(0).sum().cast(pl.Int64).alias("_f"),
        pl.col("redeemed_cents").fill_null(0).sum().cast(pl.Int64).alias("_r"),
    )
    out = (
        deals.select("deal_id", pl.col("budget_cents").cast(pl.Int64))
        .join(past, on="deal_id", how="left")
        .join(live_held, on="deal_id", how="left")
        .with_columns(
            pl.col("_r").fill_null(0).alias("redeemed_before_cents"),
            (pl.col("_f") - pl.col("_r")).fill_null(0).clip(lower_bound=0).alias("released_before_cents"),
            pl.col("live_before_cents").fill_null(0),
        )
        .with_columns((pl.col("redeemed_before_cents") + pl.col("live_before_cents")).alias("committed_before_cents"))
        .with_columns(
            (pl.col("budget_cents") - pl.col("committed_before_cents")).clip(lower_bound=0).alias("budget_left_cents")
        )
    )
    return out.select(
        "deal_id",
        "budget_cents",
        "redeemed_before_cents",
        "released_before_cents",
        "live_before_cents",
        "committed_before_cents",
        "budget_left_cents",
    ).sort("deal_id")
