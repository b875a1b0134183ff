"""The offer funnel: per kind, how many candidates, how many selected, and why the rest were dropped.

Every candidate of a kind ends either on a list or in exactly one drop reason
(`coupons.offers.DROP_REASONS`), so per kind ``candidates = selected + sum of dropped``; the
batch summary prints it so that no kind of offer vanishes without a word.
"""

from __future__ import annotations

import polars as pl

from coupons.offers import DROP_REASONS, OFFER_KINDS

__all__ = ["offer_funnel", "tally_funnel", "candidate_tally", "drop_tally", "TALLY_KEYS", "funnel_dict"]

# what a tally of dropped candidates keeps of each: enough for the funnel and the campaigns' grids
TALLY_KEYS = ("kind", "category", "brand_cell", "volume_tier", "drop_reason")


def candidate_tally(candidates: pl.DataFrame) -> pl.DataFrame:
    """kind, n: candidates made per kind (tallies of groups of customers add up)."""
    return candidates.group_by("kind").agg(pl.len().cast(pl.Int64).alias("n"))


def drop_tally(dropped: pl.DataFrame) -> pl.DataFrame:
    """`TALLY_KEYS`, n: dropped candidates counted per kind, category, cell, tier and reason."""
    return dropped.group_by(list(TALLY_KEYS)).agg(pl.len().cast(pl.Int64).alias("n"))


def offer_funnel(candidates: pl.DataFrame, selected: pl.DataFrame, dropped: pl.DataFrame) -> pl.DataFrame:
    """Counts per kind, each from its own frame (`tally_funnel` of their tallies).

    Parameters
    ----------
    candidates
        Every candidate made (kind column), viable or not.
    selected
        The offers of the batch (kind).
    dropped
        Every candidate not selected (kind, drop_reason): those dropped while making candidates
        and those the selection removed.
    """
    return tally_funnel(candidate_tally(candidates), selected, drop_tally(dropped))


def tally_funnel(candidates: pl.DataFrame, selected: pl.DataFrame, dropped: pl.DataFrame) -> pl.DataFrame:
    """Counts per kind from tallies: `candidates` (kind, n), `selected` (the offers: kind), `dropped`
    (kind, drop_reason, n); tallies of groups of customers may repeat a key (they are summed).

    Returns
    -------
    pl.DataFrame
        kind (every kind of `OFFER_KINDS`, in that order), candidates, selected, dropped (their
        total), then one Int64 column per reason of `DROP_REASONS`, in that order.
    """
    kinds = pl.DataFrame({"kind": list(OFFER_KINDS)})
    unknown = set(dropped["drop_reason"].unique().to_list()) - set(DROP_REASONS)
    if unknown:
        raise ValueError(f"unknown drop reasons: {sorted(unknown, key=str)}")

    def total(frame: pl.DataFrame, name: str) -> pl.DataFrame:
        return frame.group_by("kind").agg(pl.col("n").sum().cast(pl.Int64).alias(name))

    by_reason = (
        dropped.group_by("kind", "drop_reason")
        .agg(pl.col("n").sum().cast(pl.Int64))
        .pivot("drop_reason", index="kind", values="n", on_columns=list(DROP_REASONS))
        if dropped.height
        else pl.DataFrame(schema={"kind": pl.String})
    )
    f = (
        kinds.join(total(candidates, "candidates"), on="kind", how="left")
        .join(selected.group_by("kind").agg(pl.len().cast(pl.Int64).alias("selected")), on="kind", how="left")
        .join(total(dropped, "dropped"), on="kind", how="left")
        .join(by_reason, on="kind", how="left")
    )
    return f.select(
        "kind",
        *[
            pl.col(c).fill_null(0).cast(pl.Int64) if c in f.columns else pl.lit(0, pl.Int64).alias(c)
            for c in ("candidates", "selected", "dropped", *DROP_REASONS)
        ],
    )


def funnel_dict(funnel: pl.DataFrame) -> dict[str, dict]:
    """{kind: {candidates, selected, dropped: {reason: n, every reason}}} for the batch summary."""
    return {
        r["kind"]: {
            "candidates": r["candidates"],
            "selected": r["selected"],
            "dropped": {reason: r[reason] for reason in DROP_REASONS},
        }
        for r in funnel.iter_rows(named=True)
    }
