"""The compiled trees (cycles._forest) score as LightGBM's Booster.predict(raw_score=True), to the bit:
on a fitted ranker's real features, on every kind of missing-value split, on NaN, infinities, zeros,
values LightGBM takes for zero and the float32 neighbours of every threshold; and the models it does
not cover are scored by LightGBM itself."""

from __future__ import annotations

import lightgbm as lgb
import numpy as np
import pytest

from cycles import _forest
from cycles._forest import raw_scores

TINY = np.float32(1e-35)


def _train(x: np.ndarray, y: np.ndarray, rounds: int = 25, **params) -> lgb.Booster:
    base = {"objective": "binary", "num_leaves": 15, "min_child_samples": 5, "verbose": -1, "seed": 1}
    return lgb.train({**base, **params}, lgb.Dataset(x, y), rounds)


def _data(seed: int = 0, n: int = 4000) -> tuple[np.ndarray, np.ndarray]:
    """Six float32 features: plain, NaN a fifth of the time, zero half the time, tiny values, integers, inf."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 6)).astype(np.float32)
    x[rng.random(n) < 0.2, 1] = np.nan
    x[rng.random(n) < 0.5, 2] = 0.0
    x[:, 3] = rng.choice(np.array([0, 1e-36, -1e-36, TINY, -TINY, 2e-35, 1.0], np.float32), n)
    x[:, 4] = rng.integers(0, 5, n)
    x[rng.random(n) < 0.05, 5] = np.inf
    score = x[:, 0] + np.nan_to_num(x[:, 1], nan=2.0) - (x[:, 2] == 0) + (x[:, 3] != 0) + 0.3 * x[:, 4]
    y = (score + rng.standard_normal(n) > 0.5).astype(int)
    return x, y


def _probes(booster: lgb.Booster, x: np.ndarray) -> np.ndarray:
    """Rows whose every feature is, in turn, at a threshold's float32 neighbours and at the values a
    split treats apart (NaN, +-inf, +-0, +-1e-35 and smaller), the others from `x`."""
    thresholds = []

    def walk(node: dict) -> None:
        if "split_feature" in node:
            thresholds.append((node["split_feature"], node["threshold"]))
            walk(node["left_child"])
            walk(node["right_child"])

    for tree in booster.dump_model()["tree_info"]:
        walk(tree["tree_structure"])
    special = np.array([np.nan, np.inf, -np.inf, 0.0, -0.0, 1e-36, -1e-36, TINY, -TINY], np.float32)
    rows = []
    for i, (f, th) in enumerate(thresholds):
        t = np.float32(th)
        for v in (t, np.nextafter(t, np.float32(np.inf)), np.nextafter(t, np.float32(-np.inf)), *special):
            row = x[i % x.shape[0]].copy()
            row[f] = v
            rows.append(row)
    return np.vstack(rows)


@pytest.mark.parametrize(
    "params",
    [{}, {"zero_as_missing": True}, {"use_missing": False}],
    ids=["nan-missing", "zero-missing", "no-missing"],
)
def test_compiled_scores_are_lightgbms_to_the_bit(params):
    x, y = _data()
    booster = _train(x, y, **params)
    assert _forest._compiled(booster) is not None  # the compiled path, not LightGBM's
    rows = np.vstack([_data(seed=1)[0], _probes(booster, x)])
    expected = booster.predict(rows, raw_score=True)
    assert np.array_equal(raw_scores(booster, rows), expected)
    assert np.array_equal(raw_scores(booster, rows, n_jobs=2), expected)  # threads: the same rows


def test_every_kind_of_missing_split_is_compiled_and_scored_alike():
    """The three models above hold splits of each missing type with both default directions."""
    x, y = _data()
    seen = set()
    for params in ({}, {"zero_as_missing": True}, {"use_missing": False}):
        booster = _train(x, y, **params)
        for tree in booster.dump_model()["tree_info"]:
            stack = [tree["tree_structure"]]
            while stack:
                node = stack.pop()
                if "split_feature" in node:
                    seen.add((node["missing_type"], node["default_left"]))
                    stack += [node["left_child"], node["right_child"]]
    assert {("NaN", True), ("NaN", False), ("Zero", True), ("None", True)} <= seen


def test_single_leaf_trees_and_a_constant_model():
    x, y = _data(n=300)
    booster = _train(x, y, rounds=5, min_child_samples=1000)  # no split possible: every tree one leaf
    assert "num_leaves=1" in booster.model_to_string()
    assert _forest._compiled(booster) is not None
    assert np.array_equal(raw_scores(booster, x), booster.predict(x, raw_score=True))
    assert np.array_equal(raw_scores(booster, x[:0]), booster.predict(x[:0], raw_score=True))


def test_models_and_inputs_it_does_not_cover_are_scored_by_lightgbm():
    x, y = _data()
    cat = x.copy()
    cat[:, 4] = np.abs(cat[:, 4])
    categorical = lgb.train(
        {"objective": "binary", "verbose": -1, "min_child_samples": 5, "min_data_per_group": 5, "cat_smooth": 1},
        lgb.Dataset(cat, y, categorical_feature=[4]),
        20,
    )
    assert any(d == "==" for d in _decisions(categorical))
    assert _forest._compiled(categorical) is None
    assert np.array_equal(raw_scores(categorical, cat), categorical.predict(cat, raw_score=True))
    multi = _train(x, (x[:, 4]).astype(int), rounds=5, objective="multiclass", num_class=5)
    assert _forest._compiled(multi) is None
    assert np.array_equal(raw_scores(multi, x), multi.predict(x, raw_score=True))
    # a tree of more leaves than an int64 has bits: LightGBM's
    big = _train(x, y, rounds=3, seed=7, num_leaves=65, min_child_samples=2)
    assert max(t["num_leaves"] for t in big.dump_model()["tree_info"]) == 65
    assert _forest._compiled(big) is None
    assert np.array_equal(raw_scores(big, x), big.predict(x, raw_score=True))
    # a threshold that is not finite (a model written by hand): LightGBM's
    booster = _train(x, y, rounds=2)
    text = booster.model_to_string()
    first = text.split("threshold=", 1)[1].split()[0]
    assert _forest._forest(text.replace(f"threshold={first}", "threshold=inf", 1)) is None
    # float64 rows are LightGBM's to read (the compiled trees take float32)
    booster = _train(x, y)
    x64 = x.astype(np.float64) + 1e-9
    assert np.array_equal(raw_scores(booster, x64), booster.predict(x64, raw_score=True))
    with pytest.raises(Exception, match="number of features"):
        raw_scores(booster, x[:, :5])


def _decisions(booster: lgb.Booster) -> list[str]:
    out = []
    for tree in booster.dump_model()["tree_info"]:
        stack = [tree["tree_structure"]]
        while stack:
            node = stack.pop()
            if "split_feature" in node:
                out.append(node["decision_type"])
                stack += [node["left_child"], node["right_child"]]
    return out


def test_a_fitted_rankers_scores_are_lightgbms(tmp_path):
    """The ranker's own model on its own features (a generated chain): the compiled path, the same bits."""
    import datetime as dt

    import polars as pl

    from cycles.ranker import NextWindowRanker
    from engine.history import history_from_files
    from engine.sample_chain import generate

    generate(tmp_path, customers=300, weeks=30, seed=3, fmt="parquet")
    history = history_from_files(tmp_path)[0]
    as_of = history["day"].max() + dt.timedelta(days=1)
    ranker = NextWindowRanker(n_estimators=30, n_cutoffs=4).fit(history, observed_until=as_of)
    assert not ranker.fallback_
    seen = []
    score = ranker._score

    def spy(x, n_jobs=None):
        seen.append(x)
        return score(x, n_jobs)

    ranker._score = spy
    out = ranker.predict(as_of, 14)
    x = np.concatenate(seen)
    assert x.dtype == np.float32 and x.shape[0] == out.height > 1000
    assert _forest._compiled(ranker.model_) is not None
    assert np.array_equal(raw_scores(ranker.model_, x), ranker.model_.predict(x, raw_score=True))
    assert np.array_equal(out["score"].to_numpy(), ranker.model_.predict(x, raw_score=True))
    assert out.filter(pl.col("score").is_nan()).height == 0


def test_threads_score_their_runs_of_rows_alike():
    """n_jobs > 1 splits rows >= 100k into runs scored in threads at once: the same scores."""
    x, y = _data()
    booster = _train(x, y)
    rows = np.vstack([_data(seed=s, n=40_000)[0] for s in range(3)])
    expected = booster.predict(rows, raw_score=True)
    assert np.array_equal(raw_scores(booster, rows, n_jobs=2), expected)
    assert np.array_equal(raw_scores(booster, rows[1:][::2], n_jobs=3), expected[1:][::2])  # not contiguous


@pytest.mark.parametrize("leaves", [64, 2])
def test_trees_of_two_and_sixty_four_leaves(leaves):
    """A tree's leaves are the bits of an int64: 64 leaves use every bit (the last is never cleared)."""
    x, y = _data(n=20_000)
    booster = _train(x, y, rounds=4, num_leaves=leaves, min_child_samples=2)
    assert max(t["num_leaves"] for t in booster.dump_model()["tree_info"]) == leaves
    assert _forest._compiled(booster) is not None
    rows = np.vstack([_data(seed=5)[0], _probes(booster, x)])
    assert np.array_equal(raw_scores(booster, rows), booster.predict(rows, raw_score=True))


def test_hand_made_tree_whose_leaf_numbers_are_not_left_to_right():
    """The mask's bits follow the leaves left to right, whatever LightGBM numbers them: a tree written
    by hand, its leaves numbered 3, 0, 2, 1 from left to right, scored on a hand-worked grid."""
    x, y = _data(n=300)
    text = _train(x, y, rounds=1, num_leaves=4).model_to_string()
    head, tail = text.split("\nTree=0\n", 1)
    tree = (
        "Tree=0\n"
        "num_leaves=4\n"
        "num_cat=0\n"
        "split_feature=0 1 0\n"
        "split_gain=1 1 1\n"
        "threshold=0.5 -1.5 2.5\n"
        "decision_type=2 2 2\n"
        "left_child=1 -4 -3\n"
        "right_child=2 -1 -2\n"
        "leaf_value=10 1000 100 1\n"
        "leaf_weight=1 1 1 1\n"
        "leaf_count=1 1 1 1\n"
        "internal_value=0 0 0\n"
        "internal_weight=0 0 0\n"
        "internal_count=4 2 2\n"
        "is_linear=0\n"
        "shrinkage=1\n"
        "\n"
        "\n"
    )
    booster = lgb.Booster(model_str=head + "\n" + tree + "end of trees" + tail.split("end of trees", 1)[1])
    grid = np.array([[a, b] + [0.0] * 4 for a in (0.0, 0.5, 1.0, 2.5, 3.0) for b in (-2.0, -1.5, 0.0)], np.float32)
    # x0 <= 0.5: x1 <= -1.5 -> leaf 3 (1.0), else leaf 0 (10.0); x0 > 0.5: x0 <= 2.5 -> leaf 2 (100.0), else leaf 1 (1000.0)
    worked = [
        1.0 if a <= 0.5 and b <= -1.5 else 10.0 if a <= 0.5 else 100.0 if a <= 2.5 else 1000.0 for a, b in grid[:, :2]
    ]
    assert _forest._compiled(booster) is not None
    assert raw_scores(booster, grid).tolist() == worked
    assert booster.predict(grid, raw_score=True).tolist() == worked
