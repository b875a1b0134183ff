"""Conversion campaigns: who is targeted, how deep, and which store product is offered."""

import polars as pl

from coupons.campaigns import closest_alternatives, conversion_offers
from engine.config import Campaign
from tests.coupons.conftest import END, START, make_profile


def test_store_product_offered_is_the_closest_in_size_then_price(products):
    alt = closest_alternatives(products, "ANALGESICS", "store")
    mapping = dict(zip(alt["product_key"].to_list(), alt["offer_product_key"].to_list()))
    assert mapping[1] == 3       # small national -> small store
    assert mapping[2] == 4       # large national -> large store


def test_heavier_national_buyers_get_deeper_offers_and_store_loyal_none(products):
    profile = make_profile([
        (1, "ANALGESICS", 0.5, "national", "high", 1, 5),
        (2, "ANALGESICS", 0.5, "national", "mid", 1, 5),
        (3, "ANALGESICS", 0.5, "national", "low", 1, 5),
        (4, "ANALGESICS", 0.5, "store", "high", 3, 5),
        (5, "ANALGESICS", 0.5, "switcher", "high", 1, 5),
        (6, "MILK", 0.9, "national", "high", 6, 9),
    ])
    offers = conversion_offers(profile, products, (Campaign("ANALGESICS"),), START, END)
    by = dict(zip(offers["customer_key"].to_list(), offers["discount_cents"].to_list()))
    assert set(by) == {1, 2, 3, 5}
    assert by[1] == round(350 * 0.40) and by[2] == round(350 * 0.25) and by[3] == round(350 * 0.10)
    assert by[1] > by[2] > by[3]
    assert offers["product_key"].unique().to_list() == [3]
    assert (offers["kind"] == "conversion").all() and (offers["funder"] == "retailer").all()
    assert offers["valid_to"].max() == END - __import__("datetime").timedelta(days=1)


def test_no_store_product_in_category_means_no_offer(products):
    profile = make_profile([(1, "DOG FOOD", 0.5, "national", "high", 5, 5)])
    assert conversion_offers(profile, products, (Campaign("DOG FOOD"),), START, END).height == 0


def test_expected_value_counts_the_margin_change_and_retailer_discount(products):
    profile = make_profile([(1, "ANALGESICS", 0.5, "national", "high", 1, 5)])
    o = conversion_offers(profile, products, (Campaign("ANALGESICS"),), START, END).row(0, named=True)
    # store small margin 150, national small margin 200, discount 140 all retailer's
    assert o["expected_value_cents"] == round(0.5 * (150 - 200 - 140))
    assert isinstance(o["reason"], str) and "ANALGESICS" in o["reason"]
    assert pl.Series([o["p_buy"]]).is_between(0, 1).all()
