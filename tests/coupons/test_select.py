"""Selection by hand: reserved campaign lines, the list cap they are exempt from, and the offer funnel."""

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
