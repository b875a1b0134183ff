"""Selection by hand: reserved campaign lines, the list cap they are exempt from, and the offer funnel."""

import datetime as dt

import polars as pl

from coupons.funnel import funnel_dict, offer_funnel
from coupons.offers import DROP_REASONS, conform, conform_candidates
from coupons.select import campaign_lines, selection

NO_DEALS = pl.DataFrame(schema={"deal_id": pl.String, "budget_left_cents": pl.Int64})


def candidates() -> pl.DataFrame:
    rows = [  # customer, name (in deal_id, to follow it), kind, category, discount, EV
        (1, "A", "conversion", "ANALGESICS", 300, -50),  # costs 3x the small cap: reserved, so exempt
        (1, "B", "cycle", "MILK", 60, 40),
        (1, "C", "cycle", "BREAD", 60, 30),  # 60 + 60 > 100: list cap
        (1, "D", "cycle", "EGGS", 30, 20),  # refill: 60 + 30 <= 100
        (1, "E", "cycle", "MILK", 10, 10),  # MILK again, lower EV: duplicate
        (1, "F", "household", "DOG FOOD", 5, 5),  # fits the cap, but the 5th line of 4: list length
        (1, "G", "reward", None, 1000, 100),  # outside the list cap
        (2, "H", "conversion", "SOAP", 200, 10),  # 2nd campaign offer: not reserved, counts in the cap
        (2, "I", "conversion", "ANALGESICS", 900, 50),  # the better campaign offer takes the reserved line
    ]
    f = pl.DataFrame(
        rows,
        schema={
            "customer_key": pl.Int64,
            "deal_id": pl.String,
            "kind": pl.String,
            "category": pl.String,
            "discount_cents": pl.Int64,
            "expected_value_cents": pl.Int64,
        },
        orient="row",
    )
    f = f.with_columns(
        pl.when(pl.col("kind") == "reward").then(None).otherwise(pl.int_range(1, pl.len() + 1)).alias("product_key"),
        pl.lit(0.0).alias("funded_share"),
        pl.lit(1).alias("max_uses"),
        pl.lit("retailer").alias("funder"),
    )
    return conform(f)


TIERS = pl.DataFrame({"customer_key": [1, 2], "value_tier": ["small", "small"]})


def test_reserved_lines_are_a_share_of_max_offers_rounded_up_at_least_one():
    assert campaign_lines(20, 0.25) == 5 and campaign_lines(30, 0.1) == 3 and campaign_lines(4, 0.25) == 1
    assert campaign_lines(3, 0.0) == 1 and campaign_lines(2, 0.9) == 2 and campaign_lines(0, 0.5) == 0


def test_a_campaign_offer_keeps_its_reserved_line_whatever_the_cap():
    chosen = selection(candidates(), TIERS, NO_DEALS, {"small": 100}, max_offers=4, campaign_share=0.25)
    kept = chosen.offers.sort("customer_key", "line_no")
    assert set(kept["deal_id"]) == {"A", "G", "B", "D", "I"}
    assert dict(zip(chosen.dropped["deal_id"], chosen.dropped["drop_reason"])) == {
        "C": "list cap",
        "E": "duplicate",
        "F": "list length",
        "H": "list cap",
    }
    # lines numbered by expected value: the reserved campaign line is last on customer 1's list
    assert kept.filter(pl.col("customer_key") == 1)["deal_id"].to_list() == ["G", "B", "D", "A"]
    # offers + dropped are the candidates, row for row
    assert sorted([*kept["deal_id"], *chosen.dropped["deal_id"]]) == sorted(candidates()["deal_id"])


def test_without_a_cap_the_campaign_still_comes_before_better_offers_on_a_short_list():
    chosen = selection(candidates(), TIERS, NO_DEALS, {"small": 10_000}, max_offers=2, campaign_share=0.25)
    one = chosen.offers.filter(pl.col("customer_key") == 1)
    assert sorted(one["deal_id"]) == ["A", "G"]
    assert sorted(chosen.offers.filter(pl.col("customer_key") == 2)["deal_id"]) == ["H", "I"]


def test_the_chain_budget_serves_reserved_campaign_lines_first():
    chosen = selection(
        candidates(), TIERS, NO_DEALS, {"small": 10_000}, max_offers=10, chain_budget_cents=1300, campaign_share=0.1
    )
    # reserved A (300) and I (900) first = 1,200 despite A's negative EV; then by EV with the greedy refill:
    # G (1,000) no, B (60) 1,260, C (60) no, D (30) 1,290, H (200) no, F (5) 1,295
    assert set(chosen.offers["deal_id"]) == {"A", "I", "B", "D", "F"}
    assert dict(chosen.dropped.select("deal_id", "drop_reason").iter_rows()) == {
        "E": "duplicate",
        "G": "chain budget",
        "C": "chain budget",
        "H": "chain budget",
    }


def test_the_funnel_reconciles_per_kind_and_counts_every_reason():
    made = conform_candidates(candidates()).vstack(
        conform_candidates(
            pl.DataFrame(
                {
                    "customer_key": [1, 2, 2],
                    "kind": ["cycle", "cycle", "conversion"],
                    "category": ["TEA", "TEA", "RICE"],
                    "product_key": [20, 20, 21],
                    "drop_reason": ["below probability floor", "no price", "no store-brand alternative"],
                }
            )
        )
    )
    chosen = selection(
        made.filter(pl.col("drop_reason").is_null()).drop("drop_reason"), TIERS, NO_DEALS, {"small": 100}, max_offers=4
    )
    dropped = pl.concat([made.filter(pl.col("drop_reason").is_not_null()), chosen.dropped])
    funnel = offer_funnel(made, chosen.offers, dropped)
    got = funnel_dict(funnel)
    assert got["cycle"] == {
        "candidates": 6,
        "selected": 2,
        "dropped": {
            **dict.fromkeys(DROP_REASONS, 0),
            "below probability floor": 1,
            "no price": 1,
            "list cap": 1,
            "duplicate": 1,
        },
    }
    assert got["conversion"]["candidates"] == 4 and got["conversion"]["selected"] == 2
    assert got["conversion"]["dropped"]["no store-brand alternative"] == 1
    assert got["conversion"]["dropped"]["list cap"] == 1
    assert got["household"]["dropped"]["list length"] == 1 and got["deal"]["candidates"] == 0
    reasons = funnel.select(list(DROP_REASONS)).sum_horizontal()
    assert (funnel["candidates"] == funnel["selected"] + reasons).all()
    assert (funnel["dropped"] == reasons).all()


def _random_candidates(seed: int, customers: int = 300) -> pl.DataFrame:
    import numpy as np

    rng = np.random.default_rng(seed)
    n = customers * 12
    kinds = np.array(["cycle", "conversion", "deal", "household", "reward"])
    kind = kinds[rng.choice(5, n, p=[0.55, 0.1, 0.15, 0.1, 0.1])]
    f = pl.DataFrame(
        {
            "customer_key": rng.integers(1, customers + 1, n),
            "kind": kind,
            "product_key": rng.integers(1, 60, n),
            "category": np.array([f"C{i}" for i in range(15)])[rng.integers(0, 15, n)],
            "deal_id": np.array(["D1", "D2", "D3"])[rng.integers(0, 3, n)],
            "funded_share": np.where(kind == "deal", 1.0, 0.0),
            "discount_cents": rng.integers(10, 400, n),
            "max_uses": rng.integers(1, 3, n),
            "p_buy": rng.uniform(0.05, 1.0, n),
            "expected_value_cents": rng.integers(-50, 300, n),  # many ties: the order must not matter
        },
        strict=False,
    ).with_columns(
        pl.when(pl.col("kind") == "deal").then(pl.lit("M1")).otherwise(pl.lit("retailer")).alias("funder"),
        pl.when(pl.col("kind") != "reward").then(pl.col("product_key", "category")),
        pl.when(pl.col("kind") == "deal").then(pl.col("deal_id")),
    )
    return conform(f)


def test_shortlists_of_any_customer_groups_finished_together_are_the_selection():
    """Steps 1-4 compare one customer's offers: shortlisting customers in groups (a batch's partitions)
    and finishing them together gives the selection of them all, offers and drops, to the row."""
    from coupons.select import finish_lists, shortlist

    offers = _random_candidates(7)
    tiers = offers.select("customer_key").unique().with_columns(pl.lit("small").alias("value_tier"))
    deals = pl.DataFrame({"deal_id": ["D1", "D2", "D3"], "budget_left_cents": [2_000, 500, None]})
    args = dict(list_caps={"small": 400}, max_offers=5)
    whole = selection(offers, tiers, deals, **args, chain_budget_cents=20_000)
    assert whole.dropped["drop_reason"].n_unique() >= 5  # every step removed something: a real check
    for n in (3, 7):
        shorts = [shortlist(offers.filter(pl.col("customer_key") % n == p), tiers, **args) for p in range(n)]
        merged = pl.concat([s.offers for s in shorts]).sort("customer_key", maintain_order=True)
        done = finish_lists(merged, deals, chain_budget_cents=20_000)
        assert done.offers.equals(whole.offers)
        dropped = pl.concat([*[s.dropped for s in shorts], done.dropped])
        key = list(dropped.columns)
        assert dropped.sort(key, nulls_last=True).equals(whole.dropped.sort(key, nulls_last=True))


def test_reward_counts_rank_every_customer_before_the_frame_is_split():
    from coupons.rewards import reward_offers, with_reward_uses
    from coupons.rules import OfferRules

    rules = OfferRules()
    value = pl.DataFrame(
        {
            "customer_key": list(range(1, 41)),
            "value_tier": ["VIP"] * 40,
            "share_of_wallet": [0.9] * 40,
            "clv_cents": [(k * 7919) % 1000 for k in range(1, 41)],
            "p_alive": [0.9] * 40,
        }
    )
    start, end = dt.date(2025, 1, 6), dt.date(2025, 1, 20)
    whole = reward_offers(value, start, end, rules, 0.25)
    assert whole["max_uses"].n_unique() == 2  # $30-40 in $10 coupons: 3 or 4 by the CLV rank
    ready = with_reward_uses(value, rules)
    parts = pl.concat(
        [reward_offers(ready.filter(pl.col("customer_key") % 4 == p), start, end, rules, 0.25) for p in range(4)]
    )
    assert parts.sort("customer_key").equals(whole.sort("customer_key"))
    alone = pl.concat(
        [reward_offers(value.filter(pl.col("customer_key") % 4 == p), start, end, rules, 0.25) for p in range(4)]
    )
    assert not alone.sort("customer_key").equals(whole.sort("customer_key"))  # ranked within a part: wrong
