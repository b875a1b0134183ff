"""Cycle, deal, household, reward offers, selection rules and tips on hand-made frames."""

import datetime as dt

import polars as pl

from coupons.cycle_offers import cycle_offers
from coupons.deals import deal_offers, target_cells
from coupons.household import household_groups, household_offers
from coupons.qualify import qualifying_customers
from coupons.rewards import reward_offers
from coupons.rules import OfferRules
from coupons.select import dedupe
from coupons.tips import choose_tips, starter_tips
from tests.coupons.conftest import END, MARGIN_SHARE, START, make_deals, make_profile, make_value


def test_cycle_offers_only_above_min_p_buy_on_the_usual_product(products):
    profile = make_profile([(1, "MILK", 0.9, "national", "mid", 6, 9), (1, "DOG FOOD", 0.05, "national", "low", 5, 2)])
    o = cycle_offers(profile, products, START, END, OfferRules(min_p_buy=0.15, cycle_depth=0.10), MARGIN_SHARE)
    assert o["product_key"].to_list() == [6]
    row = o.row(0, named=True)
    assert row["discount_cents"] == 30 and row["funder"] == "retailer"
    assert row["valid_from"] == START and row["valid_to"] == END - dt.timedelta(days=1)
    assert row["expected_on"] == START + dt.timedelta(days=3) and "likely needed around" in row["reason"]
    # no unit cost for MILK: margin = 25 % of 300 = 75; EV = 0.9 x (75 - 30)
    assert row["expected_value_cents"] == round(0.9 * 45)


def test_deal_validity_targeting_and_discounts(products):
    profile = make_profile(
        [
            (1, "ANALGESICS", 0.5, "national", "high", 1, 5),
            (2, "ANALGESICS", 0.5, "national", "low", 2, 5),
            (3, "ANALGESICS", 0.5, "store", "high", 3, 5),
        ]
    )
    deals = make_deals(
        [
            {
                "deal_id": "A",
                "manufacturer_id": "M1",
                "category": "ANALGESICS",
                "kind": "percent_off",
                "percent_bp": 2000,
                "funded_share": 0.5,
                "max_per_customer": 2,
            },
            {
                "deal_id": "B",
                "manufacturer_id": "M1",
                "sku": "N1",
                "kind": "amount_off",
                "value_cents": 75,
                "target_cells": "national:high",
            },
            {
                "deal_id": "C",
                "manufacturer_id": "M1",
                "sku": "N1",
                "kind": "price",
                "value_cents": 400,
                "starts_on": END,
                "ends_on": END + dt.timedelta(days=30),
            },  # starts after the period
            {
                "deal_id": "E",
                "manufacturer_id": "M1",
                "sku": "N2",
                "kind": "price",
                "value_cents": 800,
                "starts_on": START - dt.timedelta(days=30),
                "ends_on": START + dt.timedelta(days=4),
            },
        ]
    )
    o = deal_offers(profile, products, deals, START, END, MARGIN_SHARE).sort("deal_id", "customer_key")
    got = {(r["deal_id"], r["customer_key"]): r for r in o.iter_rows(named=True)}
    assert ("C", 1) not in got
    assert {k for k in got if k[0] == "B"} == {("B", 1)}  # targeted cell only
    assert got[("A", 1)]["product_key"] == 1 and got[("A", 2)]["product_key"] == 2  # usual product when covered
    assert got[("A", 2)]["discount_cents"] == 180 and got[("A", 2)]["max_uses"] == 2
    assert got[("A", 2)]["funder"] == "M1" and got[("A", 2)]["funded_share"] == 0.5
    assert got[("E", 3)]["discount_cents"] == 100 and got[("E", 3)]["valid_to"] == START + dt.timedelta(days=4)
    assert got[("B", 1)]["max_uses"] == 1


def test_target_cells_parse_cells_and_tiers():
    t = target_cells(
        make_deals(
            [
                {"deal_id": "A", "manufacturer_id": "M", "kind": "price", "target_cells": "national:high; switcher"},
                {"deal_id": "B", "manufacturer_id": "M", "kind": "price"},
            ]
        )
    )
    assert set(t.iter_rows()) == {("A", "national", "high"), ("A", "switcher", "*"), ("B", "*", "*")}


def test_households_inferred_from_history(products):
    profile = make_profile(
        [
            (1, "DOG FOOD", 0.4, "national", "low", 5, 3),
            (2, "DOG FOOD", 0.4, "national", "low", 5, 1),  # one purchase: not enough
            (3, "VEGETABLES", 0.9, "national", "mid", 7, 12),  # not heavy
            (4, "VEGETABLES", 0.9, "national", "high", 7, 12),
        ]
    )
    rules = OfferRules()
    groups = household_groups(profile, rules)
    assert set(groups.iter_rows()) == {(1, "pet"), (4, "vegetables")}
    o = household_offers(profile, products, START, END, rules, MARGIN_SHARE)
    assert set(zip(o["customer_key"], o["reason"])) == {(1, "household: pet"), (4, "household: vegetables")}


def test_rewards_go_to_loyal_vips_in_whole_coupons_within_range():
    value = make_value(
        [
            (1, "VIP", 0.9, 1000),
            (2, "VIP", 0.7, 5000),
            (3, "VIP", 0.3, 9000),
            (4, "major", 0.95, 9000),
            (5, "VIP", 0.8, 3000),
        ]
    )
    o = reward_offers(value, START, END, OfferRules(), MARGIN_SHARE)
    total = dict(zip(o["customer_key"], (o["discount_cents"] * o["max_uses"]).to_list()))
    assert set(total) == {1, 2, 5}
    assert all(3000 <= v <= 4000 for v in total.values())
    assert total[2] == 4000 and total[1] == 3000
    assert o["product_key"].is_null().all() and o["category"].is_null().all()
    assert (o["min_spend_cents"] == 5000).all()


def test_dedupe_keeps_one_offer_per_product_and_category_the_more_specific_kind():
    from coupons.offers import conform

    cand = conform(
        pl.DataFrame(
            {
                "customer_key": [1, 1, 1, 1, 1],
                "kind": ["cycle", "conversion", "deal", "cycle", "reward"],
                "product_key": [1, 3, 1, 6, None],
                "category": ["ANALGESICS", "ANALGESICS", "ANALGESICS", "MILK", None],
                "expected_value_cents": [50, -10, 20, 5, 100],
            }
        )
    )
    kept = dedupe(cand)
    assert sorted(kept["kind"].to_list()) == ["conversion", "cycle", "reward"]
    assert kept.filter(pl.col("kind") == "cycle")["category"].to_list() == ["MILK"]


def test_tip_matches_the_best_offer_category_else_a_general_one():
    tips = starter_tips()
    offers = pl.DataFrame(
        {"customer_key": [1, 1, 2], "category": ["MILK", "ANALGESICS", "NOTHING"], "expected_value_cents": [10, 50, 5]}
    )
    chosen = dict(choose_tips(offers, pl.Series([1, 2, 3]), tips).iter_rows())
    by_id = {r["tip_id"]: r["category"] for r in tips.iter_rows(named=True)}
    assert by_id[chosen[1]] == "ANALGESICS"
    assert by_id[chosen[2]] is None and by_id[chosen[3]] is None
    assert chosen == dict(choose_tips(offers, pl.Series([1, 2, 3]), tips).iter_rows())


def test_qualifying_needs_a_card_no_opt_out_and_enough_weekly_spend():
    customers = pl.DataFrame(
        {"customer_key": [1, 2, 3, 4], "has_card": [True, True, False, True], "opted_out": [False, True, False, False]}
    )
    day = START - dt.timedelta(days=3)
    history = pl.DataFrame(
        {
            "customer_key": [1, 2, 3, 4, 4, 1],
            "day": [day] * 5 + [START],
            "amount_cents": [8 * 2500, 10**6, 10**6, 8 * 2500 - 1, 0, 10**6],
        }
    )
    q = qualifying_customers(customers, history, START, 2500, 8)
    assert q.rows() == [(1, 2500)]
