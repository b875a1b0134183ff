"""coupons owns its rules (coupons.rules): defaults in range, ranges named, the offer plan reads them."""

from __future__ import annotations

import ast
import pickle
from pathlib import Path

import polars as pl
import pytest

from coupons.build import plan_offers
from coupons.exceptions import CouponsError, RulesError
from coupons.rules import DEFAULT_CAMPAIGNS, BatchRules, Campaign, OfferRules, PlanRules
from tests.coupons.conftest import END, START, make_deals, make_profile, make_value

PACKAGE = Path(__file__).resolve().parents[2] / "coupons"


def test_the_defaults_are_in_range():
    assert OfferRules().validate() == OfferRules()
    assert BatchRules().validate() == BatchRules()
    assert all(c.validate() == c for c in DEFAULT_CAMPAIGNS)


@pytest.mark.parametrize(
    "rules, message",
    [
        (OfferRules(reward_min_cents=5000), "reward_max_cents must be >= reward_min_cents >= 0, got 4000"),
        (OfferRules(list_cap_cents={"VIP": -1}), "list_cap_cents must be amounts >= 0, got {'VIP': -1}"),
        (OfferRules(min_p_buy="high"), "min_p_buy must be in [0, 1], got 'high'"),  # a string: refused, not a crash
        (BatchRules(holdout_share=1.0), "holdout_share must be in [0, 1), got 1.0"),
        (BatchRules(chain_budget_cents=-5), "chain_budget_cents must be >= 0 (0 = no limit), got -5"),
        (Campaign(" "), "category must be a category pattern, got ' '"),
        (
            Campaign("X*", depth_by_tier={"high": 1.2}),
            "depth_by_tier must be depths in [0, 1) for low, mid, high, got {'high': 1.2}",
        ),
    ],
)
def test_a_rule_out_of_range_is_named_with_its_value(rules, message):
    with pytest.raises(RulesError) as info:
        rules.validate()
    assert str(info.value) == message
    assert info.value.field == message.split(" ")[0]
    assert isinstance(info.value, CouponsError)


def test_the_error_survives_a_trip_to_a_worker_process():
    again = pickle.loads(pickle.dumps(RulesError("max_uses", ">= 1", 0)))
    assert (again.field, again.wanted, again.value) == ("max_uses", ">= 1", 0)
    assert str(again) == "max_uses must be >= 1, got 0"


def _plan(products, rules: PlanRules) -> pl.DataFrame:
    profile = make_profile(
        [
            (1, "MILK", 0.9, "national", "mid", 6, 9),
            (1, "VEGETABLES", 0.8, "national", "mid", 7, 9),
            (1, "DOG FOOD", 0.7, "national", "mid", 5, 9),
        ]
    )
    value = make_value([(1, "ordinary", 0.3, 1000)])
    budgets = pl.DataFrame(schema={"deal_id": pl.String, "budget_left_cents": pl.Int64})
    return plan_offers(profile, value, products, make_deals([]), budgets, pl.Series([1]), rules, START, END).offers


def test_the_offer_plan_reads_list_length_and_margin_share_from_its_rules(products):
    base = PlanRules(margin_share=0.25, campaigns=())
    three = _plan(products, base)
    assert sorted(three["category"].to_list()) == ["DOG FOOD", "MILK", "VEGETABLES"]  # three cycle offers
    one = _plan(products, PlanRules(margin_share=0.25, campaigns=(), batch=BatchRules(max_offers=1)))
    assert one["category"].to_list() == [three.sort("expected_value_cents")["category"][-1]]  # the best one
    # MILK has no unit cost: margin = share x 300; cycle discount 10 % of 300 = 30; EV = 0.9 x (margin - 30)
    milk = pl.col("category") == "MILK"
    assert three.filter(milk)["expected_value_cents"].item() == round(0.9 * (0.25 * 300 - 30))
    richer = _plan(products, PlanRules(margin_share=0.5, campaigns=()))
    assert richer.filter(milk)["expected_value_cents"].item() == round(0.9 * (0.5 * 300 - 30))


def test_coupons_imports_nothing_of_engine_or_printing():
    """The layers point down (docs/architecture.md): coupons/ knows nothing of printing or the
    engine. It may use cycles' pure functions (the extracts' cells come from cycles.brand_volume);
    the offer rules themselves import no cycles module (coupons.baseline stands in for it)."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            names = (
                [a.name for a in node.names]
                if isinstance(node, ast.Import)
                else [node.module or ""]
                if isinstance(node, ast.ImportFrom)
                else []
            )
            found += [
                f"{path.name}: {n}"
                for n in names
                if n.split(".")[0] in {"engine", "printing"}
                or (n.split(".")[0] == "cycles" and path.name != "results.py")
            ]
    assert found == []
