"""Resolve the settings' category patterns against the chain's catalogue.

Household groups (`OfferRules.household_groups`) and campaigns (`Campaign.category`) are
written as patterns (`coupons.categories`). Before a batch builds offers, and for
``listwise settings check``, they are replaced by the catalogue's exact category names:

* a household group keeps its name and gets every category its patterns match;
* a campaign whose pattern matches one category becomes that category's campaign; one that
  matches several becomes one campaign per category, named ``"<name>: <category>"`` so its
  3 x 3 grid is shown per category; one that matches nothing is left out.

What each pattern matched — and which matched nothing — is returned as a report, printed by
``settings check`` and kept in the batch summary; nothing is silently ignored.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

import polars as pl

from coupons.categories import match_categories
from engine.config import Settings

__all__ = ["CategoryMatch", "resolve_categories", "format_matches"]


@dataclass(frozen=True)
class CategoryMatch:
    """What one configured group or campaign matched in the catalogue."""

    what: str  # 'household group' or 'campaign'
    name: str  # the group's name, or the campaign's pattern/name
    patterns: tuple[str, ...]
    categories: tuple[str, ...]  # sorted, distinct
    unmatched: tuple[str, ...]  # patterns that matched nothing

    def as_dict(self) -> dict:
        """JSON-ready (lists, not tuples), as kept in the batch summary."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}


def resolve_categories(settings: Settings, catalogue: pl.DataFrame) -> tuple[Settings, list[CategoryMatch]]:
    """Settings with exact category names, and what each group and campaign matched.

    Parameters
    ----------
    catalogue
        The products (at least ``category`` and ``department``).
    """
    matches: list[CategoryMatch] = []
    groups: dict[str, list[str]] = {}
    for name, patterns in settings.offers.household_groups.items():
        hits = match_categories(patterns, catalogue)
        found = set(hits["pattern"].to_list())
        categories = sorted(set(hits["category"].to_list()))
        groups[name] = categories
        matches.append(
            CategoryMatch(
                "household group",
                name,
                tuple(patterns),
                tuple(categories),
                tuple(p for p in patterns if p not in found),
            )
        )
    campaigns = []
    for campaign in settings.campaigns:
        hits = match_categories([campaign.category], catalogue)
        categories = sorted(set(hits["category"].to_list()))
        label = campaign.name or f"{campaign.category} to {campaign.to_brand_type}"
        matches.append(
            CategoryMatch(
                "campaign", label, (campaign.category,), tuple(categories), () if categories else (campaign.category,)
            )
        )
        for category in categories:
            name = campaign.name if len(categories) == 1 else f"{label}: {category}"
            campaigns.append(dataclasses.replace(campaign, category=category, name=name))
    resolved = dataclasses.replace(
        settings, campaigns=tuple(campaigns), offers=dataclasses.replace(settings.offers, household_groups=groups)
    )
    return resolved, matches


def format_matches(matches: list[CategoryMatch], limit: int = 8) -> list[str]:
    """One line per group or campaign: what it matched (at most `limit` names shown)."""
    lines = []
    for m in matches:
        shown = ", ".join(m.categories[:limit]) + (
            f", ... ({len(m.categories)} in all)" if len(m.categories) > limit else ""
        )
        lines.append(f"{m.what} {m.name!r} ({'; '.join(m.patterns)}): {shown or 'NOTHING'}")
        lines.extend(
            f"warning: {m.what} {m.name!r}: pattern {p!r} matches no category of the catalogue" for p in m.unmatched
        )
    return lines
