"""Redemption rules on baskets worked by hand (coupons.redemption: no database).

The catalogue of these baskets:

    product  sku         category  brand
    1        COFFEE-1    COFFEE    Roast
    2        MILK-1      MILK      Own
    3        BREAD-1     BREAD     Own
    4        TEA-1       TEA       Leaf
    5        TEA-2       TEA       Own
    6        CHIPS-ACME  SNACKS    Acme
    7        CHIPS-OWN   SNACKS    Own
"""

from __future__ import annotations

import datetime as dt

import pytest

from coupons.redemption import (
    Line,
    Offer,
    free_uses,
    is_reward,
    list_refusal,
    meets,
    plan_item_uses,
    redeem,
    reward_discount,
)

CATALOGUE = {
    "COFFEE-1": (1, "COFFEE"),
    "MILK-1": (2, "MILK"),
    "BREAD-1": (3, "BREAD"),
    "TEA-1": (4, "TEA"),
    "TEA-2": (5, "TEA"),
    "CHIPS-ACME": (6, "SNACKS"),
    "CHIPS-OWN": (7, "SNACKS"),
}

COFFEE = Offer(101, "cycle", product_key=1, category="COFFEE", discount_cents=125, max_uses=1)
MILK = Offer(102, "cycle", product_key=2, category="MILK", discount_cents=50, max_uses=2)
TEA = Offer(103, "household", product_key=None, category="TEA", discount_cents=40, max_uses=1)
REWARD = Offer(104, "reward", product_key=None, category=None, discount_cents=300, max_uses=1, min_spend_cents=3000)
# A manufacturer's deal on the Acme brand only: the batch offers it on an Acme product (coupons.deals).
ACME = Offer(105, "deal", product_key=6, category="SNACKS", discount_cents=75, max_uses=2)


def line(sku: str, quantity: float, amount_cents: int) -> Line:
    product_key, category = CATALOGUE.get(sku, (None, None))
    return Line(sku, quantity, amount_cents, product_key, category)


def discounts(redeemed) -> dict:
    """(line_no, offer_id) -> (uses, discount_cents)."""
    return {(x["line_no"], x["offer_id"]): (x["uses"], x["discount_cents"]) for x in redeemed.lines}


# ---------------------------------------------------------------- whole baskets


def test_the_service_first_basket():
    # coffee 499 - 125; milk x3 at 567: two uses of 50 (max 2); bread untouched;
    # spend 499 + 567 + 259 - 225 = 1100 < 3000: no reward
    basket = [line("COFFEE-1", 1, 499), line("MILK-1", 3, 567), line("BREAD-1", 1, 259)]
    got = redeem(basket, [COFFEE, MILK, TEA, REWARD])
    assert discounts(got) == {(1, 101): (1, 125), (2, 102): (2, 100)}
    assert got.per_line == [125, 100, 0] and got.total_cents == 225


def test_an_offer_met_twice_applies_once():
    # coffee on two lines (and two units on the second): max_uses 1, so one use on the first line only
    basket = [line("COFFEE-1", 1, 499), line("COFFEE-1", 2, 998)]
    got = redeem(basket, [COFFEE])
    assert discounts(got) == {(1, 101): (1, 125)}
    assert got.per_line == [125, 0]


def test_one_use_per_whole_unit_until_the_uses_run_out():
    # milk 50 off, 2 uses: 3 units give 2 uses; 1.5 units give 1 use; a weighed 0.4 gives 1
    assert redeem([line("MILK-1", 3, 567)], [MILK]).per_line == [100]
    assert redeem([line("MILK-1", 1.5, 280)], [MILK]).per_line == [50]
    assert redeem([line("MILK-1", 0.4, 80)], [MILK]).per_line == [50]
    # split over two lines: 1 unit on the first, the second use on the next line, nothing more
    got = redeem([line("MILK-1", 1, 189), line("MILK-1", 4, 756)], [MILK])
    assert discounts(got) == {(1, 102): (1, 50), (2, 102): (1, 50)}


def test_uses_held_by_earlier_baskets_are_not_given_again():
    basket = [line("MILK-1", 3, 567)]
    assert redeem(basket, [MILK], taken={102: {1}}).per_line == [50]  # one of two left
    assert redeem(basket, [MILK], taken={102: {1, 2}}).lines == []  # none left
    assert redeem(basket, [MILK], taken={999: {1, 2}}).per_line == [100]  # another offer's uses


def test_a_reward_below_the_minimum_spend_is_not_given():
    assert redeem([line("BREAD-1", 1, 2999)], [REWARD]).lines == []
    got = redeem([line("BREAD-1", 1, 3000)], [REWARD])
    assert discounts(got) == {(None, 104): (1, 300)} and got.per_line == [0]


def test_the_reward_is_judged_on_the_spend_after_the_item_discounts():
    # tea 900 - 40 (category offer, 1 use) + bread 2590 = 3450 >= 3000: reward 300; total 340
    got = redeem([line("TEA-2", 2, 900), line("BREAD-1", 10, 2590)], [COFFEE, MILK, TEA, REWARD])
    assert discounts(got) == {(1, 103): (1, 40), (None, 104): (1, 300)} and got.total_cents == 340
    # coffee 499 + bread 2531 = 3030, but 3030 - 125 = 2905 < 3000: no reward
    got = redeem([line("COFFEE-1", 1, 499), line("BREAD-1", 1, 2531)], [COFFEE, REWARD])
    assert discounts(got) == {(1, 101): (1, 125)}


def test_a_reward_applies_once_per_basket_even_with_uses_left():
    three = Offer(104, "reward", None, None, discount_cents=300, max_uses=3, min_spend_cents=3000)
    got = redeem([line("BREAD-1", 1, 9000)], [three])  # spend enough for three
    assert discounts(got) == {(None, 104): (1, 300)}
    assert redeem([line("BREAD-1", 1, 9000)], [three], taken={104: {1, 2, 3}}).lines == []


def test_a_category_offer_is_met_by_any_product_of_its_category():
    # TEA names no product: TEA-1 and TEA-2 meet it, coffee does not; one use, on the first tea line
    got = redeem([line("COFFEE-1", 1, 499), line("TEA-2", 1, 450), line("TEA-1", 1, 350)], [TEA])
    assert discounts(got) == {(2, 103): (1, 40)}
    assert meets(line("TEA-1", 1, 350), TEA) and not meets(line("COFFEE-1", 1, 499), TEA)


def test_a_brand_restricted_offer_is_met_by_its_brand_only():
    # the Acme deal's offer names the Acme chips; the store brand's chips share the category, not the offer
    basket = [line("CHIPS-OWN", 2, 300), line("CHIPS-ACME", 1, 250)]
    got = redeem(basket, [ACME])
    assert discounts(got) == {(2, 105): (1, 75)} and got.per_line == [0, 75]
    assert not meets(line("CHIPS-OWN", 1, 150), ACME)


def test_a_discount_never_exceeds_what_the_line_still_costs():
    assert redeem([line("COFFEE-1", 1, 80)], [COFFEE]).per_line == [80]
    # two offers on one coffee line of 150: the product's 125 first (list order), then 25 of the category's 100
    coffee_category = Offer(106, "household", None, "COFFEE", discount_cents=100, max_uses=1)
    got = redeem([line("COFFEE-1", 1, 150)], [COFFEE, coffee_category])
    assert discounts(got) == {(1, 101): (1, 125), (1, 106): (1, 25)} and got.per_line == [150]
    # milk at 60 for 3 units, 5 uses free: 50, then 10, then nothing is left, and no use is spent on 0
    plenty = Offer(109, "cycle", product_key=2, category="MILK", discount_cents=50, max_uses=5)
    assert discounts(redeem([line("MILK-1", 3, 60)], [plenty])) == {(1, 109): (2, 60)}


def test_a_reward_never_exceeds_the_spend():
    any_basket = Offer(107, "reward", None, None, discount_cents=300, max_uses=1, min_spend_cents=None)
    assert redeem([line("BREAD-1", 1, 200)], [any_basket]).total_cents == 200


def test_an_unknown_sku_meets_no_offer():
    unknown = line("NEW-ITEM", 1, 100)
    assert unknown.product_key is None and not meets(unknown, TEA)
    assert redeem([unknown], [COFFEE, TEA]).lines == []


def test_a_use_another_lane_took_first_is_not_given():
    # the caller obtains only the first of the two milk uses it planned: the line keeps the other 50,
    # and the reward is judged on 3000 (567 + 2483 - 50): given, where both uses (2950) would not be
    asked = []

    def obtain(offer_id, free, amounts):
        asked.append((offer_id, list(free), amounts))
        return 1 if offer_id == 102 else len(amounts)

    basket = [line("MILK-1", 3, 567), line("BREAD-1", 1, 2483)]
    assert discounts(redeem(basket, [MILK, REWARD])) == {(1, 102): (2, 100)}
    got = redeem(basket, [MILK, REWARD], obtain=obtain)
    assert discounts(got) == {(1, 102): (1, 50), (None, 104): (1, 300)} and got.per_line == [50, 0]
    assert asked == [(102, [1, 2], [50, 50]), (104, [1], [300])]
    lost_reward = redeem([line("BREAD-1", 1, 3000)], [REWARD], obtain=lambda *_: 0)
    assert lost_reward.lines == [] and lost_reward.per_line == [0]


# ---------------------------------------------------------------- the pieces


def test_free_uses_are_the_numbers_not_taken():
    assert free_uses(3) == [1, 2, 3]
    assert free_uses(3, {2}) == [1, 3]
    assert free_uses(2, {1, 2}) == []


def test_plan_item_uses_stops_at_the_free_uses():
    basket = [line("MILK-1", 5, 945)]
    assert plan_item_uses(MILK, basket, [945], free=2) == [(0, 50), (0, 50)]
    assert plan_item_uses(MILK, basket, [945], free=0) == []
    assert plan_item_uses(MILK, basket, [70], free=2) == [(0, 50), (0, 20)]


@pytest.mark.parametrize("spend, free, expected", [(2999, 1, 0), (3000, 1, 300), (3000, 0, 0), (5000, 1, 300)])
def test_reward_discount_needs_the_minimum_spend_and_a_free_use(spend, free, expected):
    assert reward_discount(REWARD, spend, free) == expected


def test_what_is_a_reward():
    assert is_reward(REWARD)
    assert is_reward(Offer(108, "deal", None, None, discount_cents=100))  # neither product nor category
    assert not is_reward(TEA) and not is_reward(COFFEE)


VALID_FROM, VALID_TO = dt.date(2025, 3, 3), dt.date(2025, 3, 16)


@pytest.mark.parametrize(
    "status, day, reason",
    [
        ("active", dt.date(2025, 3, 3), None),  # the first day
        ("active", dt.date(2025, 3, 16), None),  # valid_to is inclusive
        ("active", dt.date(2025, 3, 17), "expired"),
        ("active", dt.date(2025, 3, 2), "not_yet_valid"),
        ("revoked", dt.date(2025, 3, 5), "revoked"),  # revoked even within its dates
        ("revoked", dt.date(2025, 4, 1), "revoked"),  # and revoked before expired
        (None, dt.date(2025, 3, 5), "unknown"),
    ],
)
def test_list_refusal_names_the_reason(status, day, reason):
    refusal = list_refusal(7, status, VALID_FROM, VALID_TO, day)
    assert (refusal and refusal[0]) == reason
    if reason == "expired":
        assert refusal[1] == "list 7 was valid until 2025-03-16, not on 2025-03-17"
