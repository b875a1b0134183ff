"""Time zones: every timestamp is kept as its store's local wall-clock time (schema.sql: baskets.ts).

A store's zone is its own (`stores.timezone`), else the chain's (`Settings.timezone`). A
timestamp that carries an offset names an instant; it is converted to that zone's wall clock.
A timestamp without one already is store-local. An offset that differs from the zone's own
offset at that instant by more than the zone's DST shift (1 h for America/New_York, 0 for
UTC) means the zone is set wrong, and is refused by the callers (engine/ingest.py,
engine/checkout.py) with the zone they expected.
"""

from __future__ import annotations

import datetime as dt
import functools
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import polars as pl

__all__ = ["is_zone", "zone_of", "dst_shift", "local_wall_clock", "from_iso", "ZONE_HINT", "ZULU"]

# The tzinfo of a timestamp written with `Z`: an instant in UTC, as exporters write them
# whatever the store's zone, so never judged against it (unlike `+00:00`, an offset).
ZULU = dt.timezone(dt.timedelta(0), "Z")

# Where a user sets the zone a refusal names.
ZONE_HINT = "set the store's `timezone` column or the chain's `timezone` setting"


@functools.lru_cache(maxsize=1024)
def is_zone(name: str | None) -> bool:
    """Whether `name` is an IANA zone known both to Python's zoneinfo and to polars (chrono-tz)."""
    if not name or name != name.strip():
        return False
    try:
        ZoneInfo(name)
        pl.Series([dt.datetime(2000, 1, 1)]).dt.replace_time_zone(name)
    except (ZoneInfoNotFoundError, ValueError, pl.exceptions.PolarsError):
        return False
    return True


def zone_of(store_zone: str | None, chain_zone: str) -> str:
    """The zone a store's timestamps are kept in: its own, else the chain's."""
    return store_zone or chain_zone


@functools.lru_cache(maxsize=1024)
def dst_shift(name: str, first_year: int, last_year: int) -> dt.timedelta:
    """Largest difference between two UTC offsets `name` takes from `first_year` to `last_year`.

    Sampled on the 1st and 15th of every month (a DST period lasts months): 1 h for
    America/New_York, 30 min for Australia/Lord_Howe, 0 for UTC or Asia/Tokyo.
    """
    tz = ZoneInfo(name)
    offsets = {
        dt.datetime(y, m, d, 12, tzinfo=tz).utcoffset()
        for y in range(first_year, last_year + 1)
        for m in range(1, 13)
        for d in (1, 15)
    }
    return max(offsets) - min(offsets)


def local_wall_clock(value: dt.datetime, name: str) -> dt.datetime:
    """`value` as the wall-clock time of zone `name`, without tzinfo.

    A naive `value` is already wall-clock time there and comes back unchanged. An aware one
    is converted; `ValueError` when its offset differs from the zone's at that instant by
    more than the zone's DST shift (a store whose zone is not set as it should be). A
    `Z` timestamp (tzinfo `ZULU`, or `datetime.UTC` from Python) is an instant, not judged.
    """
    if value.tzinfo is None:
        return value
    tz = ZoneInfo(name)
    local = value.astimezone(tz)
    given, expected = value.utcoffset(), local.utcoffset()
    if value.tzinfo not in (ZULU, dt.UTC) and abs(given - expected) > dst_shift(name, local.year - 1, local.year + 1):
        raise ValueError(
            f"offset {_offset_text(given)} disagrees with time zone {name} "
            f"(UTC{_offset_text(expected)} at that instant); {ZONE_HINT}"
        )
    return local.replace(tzinfo=None)


def from_iso(text: str) -> dt.datetime | str:
    """ISO text ending in `Z` as a datetime in `ZULU`; other text unchanged (for the caller's parser)."""
    if text[-1:] in ("Z", "z"):
        try:
            return dt.datetime.fromisoformat(text[:-1].replace(" ", "T")).replace(tzinfo=ZULU)
        except ValueError:
            return text
    return text


def _offset_text(offset: dt.timedelta) -> str:
    minutes = int(offset.total_seconds() // 60)
    sign = "-" if minutes < 0 else "+"
    return f"{sign}{abs(minutes) // 60:02d}:{abs(minutes) % 60:02d}"
