"""engine/history.py: the one lookback rule every command that reads history follows."""

from __future__ import annotations

import dataclasses
import datetime as dt

from engine.config import Settings
from engine.history import history_start

AS_OF = dt.date(2025, 6, 16)


def _settings(lookback_weeks: int, rfm_weeks: int, qualifying_weeks: int, price_days: int) -> Settings:
    s = Settings()
    return dataclasses.replace(
        s,
        cycles=dataclasses.replace(s.cycles, lookback_weeks=lookback_weeks),
        value=dataclasses.replace(s.value, rfm_lookback_weeks=rfm_weeks),
        batch=dataclasses.replace(s.batch, qualifying_weeks=qualifying_weeks),
        offers=dataclasses.replace(s.offers, price_lookback_days=price_days),
    )


def test_history_reaches_back_the_longest_window_of_any_stage():
    assert history_start(_settings(10, 20, 8, 91), AS_OF) == AS_OF - dt.timedelta(weeks=20)  # customer value
    assert history_start(_settings(30, 20, 8, 91), AS_OF) == AS_OF - dt.timedelta(weeks=30)  # profile
    assert history_start(_settings(2, 3, 9, 14), AS_OF) == AS_OF - dt.timedelta(weeks=9)  # qualifying spend
    assert history_start(_settings(10, 20, 8, 200), AS_OF) == AS_OF - dt.timedelta(days=200)  # shelf prices


def test_the_profile_module_keeps_the_same_rule():
    from engine.profiles import history_start as profiles_history_start

    assert profiles_history_start is history_start
