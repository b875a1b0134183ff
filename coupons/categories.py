"""Category names as a chain writes them: case-insensitive patterns over the catalogue.

Household groups and campaigns name categories by pattern, so that one settings file reads
a catalogue that says ``DOG FOODS``, ``DIAPERS & DISPOSABLES`` or ``VEGETABLES - ALL OTHERS``:

* ``*`` matches any run of characters, ``?`` one character; everything else is literal,
  compared without regard to case and to surrounding blanks (``"dog food*"`` matches
  ``DOG FOODS`` and ``DOG FOOD - WET``, not ``HOT DOGS``);
* a pattern written ``dept:PATTERN`` matches every category of the departments whose name
  matches PATTERN (``"dept:PET*"``);
* a pattern without a wildcard matches that exact name (case aside).

`match_categories` resolves patterns against the catalogue once; whoever configured them
then sees, per pattern, what it matched (``listwise settings check``), and a pattern that
matches nothing is reported rather than silently ignored.
"""

from __future__ import annotations

import re
from collections.abc import Iterable

import polars as pl

__all__ = ["pattern_regex", "match_categories", "resolve_groups", "DEPARTMENT_PREFIX"]

DEPARTMENT_PREFIX = "dept:"
MATCH_SCHEMA = {"pattern": pl.String, "category": pl.String}


def pattern_regex(pattern: str) -> str:
    """The anchored, case-insensitive regular expression of a glob-like category pattern.

    Examples
    --------
    >>> pattern_regex("DOG FOOD*")
    '(?i)^DOG FOOD.*$'
    """
    body = "".join(".*" if ch == "*" else "." if ch == "?" else re.escape(ch) for ch in pattern.strip())
    return f"(?i)^{body}$"


def _split(pattern: str) -> tuple[str, str]:
    """('category' | 'department', the glob) of one configured pattern."""
    text = pattern.strip()
    if text.lower().startswith(DEPARTMENT_PREFIX):
        return "department", text[len(DEPARTMENT_PREFIX) :]
    return "category", text


def match_categories(patterns: Iterable[str], catalogue: pl.DataFrame) -> pl.DataFrame:
    """Every (pattern, category) pair where the pattern matches.

    Parameters
    ----------
    patterns
        Configured patterns (see the module docstring).
    catalogue
        At least ``category``; ``department`` for ``dept:`` patterns (one row per product
        is fine: pairs are made distinct).

    Returns
    -------
    pl.DataFrame
        pattern, category — distinct, sorted by pattern then category; a pattern that
        matches nothing has no row.
    """
    has_department = "department" in catalogue.columns
    names = (
        catalogue.select(
            pl.col("category").cast(pl.String).str.strip_chars(),
            (pl.col("department") if has_department else pl.lit(None))
            .cast(pl.String)
            .str.strip_chars()
            .alias("department"),
        )
        .filter(pl.col("category").is_not_null())
        .unique()
    )
    frames = []
    for pattern in dict.fromkeys(patterns):  # a handful of patterns, each a vectorised match
        field, glob = _split(pattern)
        if not glob:
            continue
        hit = names.filter(pl.col(field).str.contains(pattern_regex(glob)).fill_null(False))
        frames.append(hit.select(pl.lit(pattern).alias("pattern"), "category"))
    if not frames:
        return pl.DataFrame(schema=MATCH_SCHEMA)
    return pl.concat(frames).unique().sort("pattern", "category")


def resolve_groups(groups: dict[str, list[str]], catalogue: pl.DataFrame) -> dict[str, list[str]]:
    """``groups`` (name -> patterns) with each pattern replaced by the categories it matches.

    A group keeps its name even when nothing matched (its list is then empty).
    """
    resolved = {}
    for name, patterns in groups.items():
        hits = match_categories(patterns, catalogue)
        resolved[name] = sorted(set(hits["category"].to_list()))
    return resolved
