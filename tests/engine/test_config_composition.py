"""engine.config composes the packages' parameters (cycles.params, coupons.rules) under the same keys."""

from __future__ import annotations

import dataclasses

import pytest

from coupons.rules import DEFAULT_CAMPAIGNS, BatchRules, Campaign, OfferRules
from cycles.params import ProfileParams, ValueParams
from engine.config import load_settings, public_settings
from engine.errors import ConfigError, cycles_errors

TOML = """
[batch]
max_offers = 5
period_days = 7

[cycles]
min_occasions = 3
partitions = 2

[value]
margin_share = 0.3

[offers]
cycle_depth = 0.2

[[campaigns]]
category = "TEA*"
"""


@pytest.fixture
def here(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("LISTWISE_DATABASE_URL", raising=False)
    return tmp_path


def test_each_section_is_the_packages_object_and_takes_the_same_keys(here):
    (here / "listwise.toml").write_text(TOML)
    s = load_settings()
    assert isinstance(s.batch, BatchRules) and (s.batch.max_offers, s.batch.period_days) == (5, 7)
    assert isinstance(s.cycles, ProfileParams) and (s.cycles.min_occasions, s.cycles.partitions) == (3, 2)
    assert type(s.value) is ValueParams and s.value.margin_share == 0.3
    assert type(s.offers) is OfferRules and s.offers.cycle_depth == 0.2
    assert s.campaigns == (Campaign("TEA*"),)
    plan = s.plan_rules()  # what coupons.build reads: the margin share comes from [value]
    assert (plan.margin_share, plan.batch.max_offers, plan.offers.cycle_depth) == (0.3, 5, 0.2)
    assert plan.campaigns == s.campaigns
    shown = public_settings(s)  # `listwise settings` prints the packages' keys and the engine's
    assert {"max_offers", "threshold_cents", "period_days", "out_dir"} <= set(shown["batch"])
    assert {"volume_cuts", "partitions", "p_buy_model"} <= set(shown["cycles"])


def test_without_a_file_the_defaults_are_the_packages_own(here):
    s = load_settings()
    assert s.offers == OfferRules() and s.value == ValueParams() and s.campaigns == DEFAULT_CAMPAIGNS
    for part, own in ((s.cycles, ProfileParams()), (s.batch, BatchRules())):
        assert {f.name: getattr(part, f.name) for f in dataclasses.fields(own)} == dataclasses.asdict(own)


def test_an_unknown_key_lists_the_packages_keys_and_the_engines(here):
    (here / "listwise.toml").write_text("[batch]\nthreshold = 1\n")
    with pytest.raises(
        ConfigError,
        match=r"batch: unknown key 'threshold' \(known: chain_budget_cents, "
        r"first_period_start, holdout_share, max_offers, max_uses, out_dir, "
        r"period_days, qualifying_weeks, threshold_cents\)",
    ):
        load_settings()


def test_the_p_buy_model_is_checked_when_the_settings_load(here):
    (here / "listwise.toml").write_text('[cycles]\np_buy_model = "magic"\n')
    with pytest.raises(ConfigError) as info:
        load_settings()
    assert str(info.value) == "listwise.toml: cycles.p_buy_model must be 'ranker' or 'renewal', got 'magic'"


def test_a_parameter_error_from_cycles_becomes_a_config_error():
    with pytest.raises(ConfigError, match=r"^volume_cuts must be two increasing quantiles"), cycles_errors():
        ProfileParams(volume_cuts=(0.9, 0.1)).validate()
