"""cycles owns its parameters (cycles.params): defaults in range, ranges named, the frames read them."""

from __future__ import annotations

import ast
import datetime as dt
import pickle
from pathlib import Path

import pytest

from cycles.exceptions import CyclesError, ParamsError
from cycles.params import ProfileParams, ValueParams
from cycles.profile import customer_profile
from tests.cycles.test_hand_worked import D0, lines

PACKAGE = Path(__file__).resolve().parents[2] / "cycles"

# one customer each: national-loyal, store-loyal, half and half (switcher), a single purchase
TEA = [
    (1, 0, "TEA", 1, "national", 1),
    (1, 7, "TEA", 1, "national", 1),
    (2, 0, "TEA", 1, "store", 2),
    (2, 7, "TEA", 1, "store", 2),
    (3, 0, "TEA", 1, "store", 2),
    (3, 7, "TEA", 1, "national", 1),
    (4, 0, "TEA", 5, "store", 2),
]


def test_the_defaults_are_in_range():
    assert ProfileParams().validate() == ProfileParams()
    assert ValueParams().validate() == ValueParams()


@pytest.mark.parametrize(
    "params, message",
    [
        (
            ProfileParams(volume_cuts=(0.7, 0.3)),
            "volume_cuts must be two increasing quantiles strictly between 0 and 1, got (0.7, 0.3)",
        ),
        (
            ProfileParams(national_max_store_share=0.5, store_min_store_share=0.4),
            "store_min_store_share must be in (national_max_store_share, 1], got 0.4",
        ),
        (ProfileParams(window_days="14"), "window_days must be >= 1, got '14'"),  # a string: refused, not a crash
        (
            ValueParams(weekly_budget_cents=()),
            "weekly_budget_cents must be a non-empty list of positive amounts, got ()",
        ),
        (ValueParams(margin_share=1.0), "margin_share must be in [0, 1), got 1.0"),
    ],
)
def test_a_parameter_out_of_range_is_named_with_its_value(params, message):
    with pytest.raises(ParamsError) as info:
        params.validate()
    assert str(info.value) == message
    assert info.value.field == message.split(" ")[0]
    assert isinstance(info.value, CyclesError)


def test_the_error_survives_a_trip_to_a_worker_process():
    again = pickle.loads(pickle.dumps(ParamsError("lapsed_days", ">= 1", 0)))
    assert (again.field, again.wanted, again.value) == ("lapsed_days", ">= 1", 0)
    assert str(again) == "lapsed_days must be >= 1, got 0"


def test_the_profile_reads_its_cell_thresholds_from_the_params():
    as_of = D0 + dt.timedelta(days=14)

    def cells(**changes) -> list[str]:
        params = ProfileParams(brand_prior_occasions=0.0, **changes)
        return customer_profile(lines(TEA), as_of, params=params)["brand_cell"].to_list()

    assert cells() == ["national", "store", "switcher", "unclassified"]
    assert cells(national_max_store_share=0.5) == ["national", "store", "national", "unclassified"]
    assert cells(min_occasions=3) == ["unclassified"] * 4


def test_the_profile_window_defaults_to_the_params_one():
    as_of = D0 + dt.timedelta(days=14)
    history = lines(TEA)
    short = customer_profile(history, as_of, params=ProfileParams(window_days=7))["p_buy_in_window"]
    long = customer_profile(history, as_of, params=ProfileParams(window_days=28))["p_buy_in_window"]
    given = customer_profile(history, as_of, 28, params=ProfileParams(window_days=7))["p_buy_in_window"]
    assert (long >= short).all() and (long > short).any()
    assert given.to_list() == long.to_list()  # an explicit window wins over the params'


def test_cycles_imports_nothing_of_engine_coupons_or_printing():
    """The layers point down (DESIGN.md): cycles/ knows nothing of offers, printing or the engine."""
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
            found += [f"{path.name}: {n}" for n in names if n.split(".")[0] in {"engine", "coupons", "printing"}]
    assert found == []
