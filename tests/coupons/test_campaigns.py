"""Conversion campaigns: who is targeted, how deep, and which store product is offered."""

import polars as pl

from coupons.campaigns import closest_alternatives, conversion_candidates, conversion_offers
from coupons.rules import Campaign, OfferRules
from tests.coupons.conftest import END, MARGIN_SHARE, START, make_profile


def test_store_product_offered_is_the_closest_in_size_then_price(products):
    alt = closest_alternatives(products, "ANALGESICS", "store")
    mapping = dict(zip(alt["product_key"].to_list(), alt["offer_product_key"].to_list()))
    assert mapping[1] == 3  # small national -> small store
    assert mapping[2] == 4  # large national -> large store


def test_heavier_national_buyers_get_deeper_offers_and_store_loyal_none(products):
    profile = make_profile(
        [
            (1, "ANALGESICS", 0.5, "national", "high", 1, 5),
            (2, "ANALGESICS", 0.5, "national", "mid", 1, 5),
            (3, "ANALGESICS", 0.5, "national", "low", 1, 5),
            (4, "ANALGESICS", 0.5, "store", "high", 3, 5),
            (5, "ANALGESICS", 0.5, "switcher", "high", 1, 5),
            (6, "MILK", 0.9, "national", "high", 6, 9),
        ]
    )
    offers = conversion_offers(profile, products, (Campaign("ANALGESICS"),), START, END, MARGIN_SHARE)
    by = dict(zip(offers["customer_key"].to_list(), offers["discount_cents"].to_list()))
    assert set(by) == {1, 2, 3, 5}
    assert by[1] == round(350 * 0.40) and by[2] == round(350 * 0.25) and by[3] == round(350 * 0.10)
    assert by[1] > by[2] > by[3]
    assert offers["product_key"].unique().to_list() == [3]
    assert (offers["kind"] == "conversion").all() and (offers["funder"] == "retailer").all()
    assert offers["valid_to"].max() == END - __import__("datetime").timedelta(days=1)


def test_no_store_product_in_category_means_no_offer(products):
    profile = make_profile([(1, "DOG FOOD", 0.5, "national", "high", 5, 5)])
    assert conversion_offers(profile, products, (Campaign("DOG FOOD"),), START, END, MARGIN_SHARE).height == 0


def test_a_conversion_is_valued_as_the_switch_over_the_horizon(products):
    # the store product earns more a unit here: S1 costs 100 (margin 250) against N1's 300 (margin 200)
    cheap = products.with_columns(
        pl.when(pl.col("product_key") == 3).then(100).otherwise(pl.col("unit_cost_cents")).alias("unit_cost_cents")
    )
    profile = make_profile(
        [(1, "ANALGESICS", 0.5, "national", "high", 1, 5), (2, "ANALGESICS", 0.5, "national", "low", 1, 5)]
    ).with_columns(pl.Series("units_per_week", [2.0, 0.5]))
    s = OfferRules(conversion_horizon_weeks=26, conversion_hold_probability=0.25)
    o = conversion_offers(profile, cheap, (Campaign("ANALGESICS"),), START, END, MARGIN_SHARE, rules=s).sort(
        "customer_key"
    )
    high, low = o.row(0, named=True), o.row(1, named=True)
    # 2 units/week x 26 weeks x 50 cents x 0.25 = 650; discount 40 % of 350 = 140, all the retailer's
    assert high["expected_value_cents"] == round(0.5 * (650 - 140))
    # 0.5 x 26 x 50 x 0.25 = 162.5; discount 10 % of 350 = 35
    assert low["expected_value_cents"] == round(0.5 * (162.5 - 35))
    assert isinstance(high["reason"], str) and "ANALGESICS" in high["reason"]


def test_a_switch_to_a_lower_margin_is_worth_less_than_nothing(products):
    profile = make_profile([(1, "ANALGESICS", 0.5, "national", "high", 1, 5)]).with_columns(
        pl.lit(2.0).alias("units_per_week")
    )
    o = conversion_offers(profile, products, (Campaign("ANALGESICS"),), START, END, MARGIN_SHARE).row(0, named=True)
    # store small margin 150, national small margin 200: 2 x 26 x (-50) x 0.25 = -650; discount 140
    assert o["expected_value_cents"] == round(0.5 * (-650 - 140))


def test_targeted_customers_without_an_alternative_or_a_price_are_counted_not_lost(products):
    unpriced = products.with_columns(
        pl.when(pl.col("brand_type") == "store")
        .then(None)
        .otherwise(pl.col("regular_price_cents"))
        .alias("regular_price_cents")
    )
    profile = make_profile(
        [
            (1, "ANALGESICS", 0.5, "national", "high", 1, 5),  # no store product priced
            (2, "ANALGESICS", 0.5, "switcher", "low", 2, 5),
            (3, "DOG FOOD", 0.5, "national", "high", 5, 5),  # no store dog food
            (4, "DOG FOOD", 0.5, "store", "high", 5, 5),
        ]
    )  # not targeted at all
    campaigns = (Campaign("ANALGESICS"), Campaign("DOG FOOD"))
    c = conversion_candidates(profile, unpriced, campaigns, START, END, MARGIN_SHARE)
    assert dict(zip(c["customer_key"], c["drop_reason"])) == {
        1: "no price",
        2: "no price",
        3: "no store-brand alternative",
    }
    assert conversion_offers(profile, unpriced, campaigns, START, END, MARGIN_SHARE).height == 0
    assert conversion_offers(profile, products, campaigns, START, END, MARGIN_SHARE)["customer_key"].to_list() == [1, 2]


def test_a_priced_store_product_is_offered_before_a_closer_one_without_a_price(products):
    # S1 (small, like N1) has no price: the large S2 is offered to a small N1 buyer instead
    no_price = products.with_columns(
        pl.when(pl.col("product_key") == 3)
        .then(None)
        .otherwise(pl.col("regular_price_cents"))
        .alias("regular_price_cents")
    )
    alt = closest_alternatives(no_price, "ANALGESICS", "store")
    assert dict(zip(alt["product_key"], alt["offer_product_key"])) == {1: 4, 2: 4, 3: 4, 4: 4}
