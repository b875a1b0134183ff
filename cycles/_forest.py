"""LightGBM's trees scored by a compiled, branch-free kernel: bit for bit its raw scores.

`Booster.predict` walks every tree of every row through generic node arrays (~24 ns a tree walk
for the ranker's 60 trees of 15 leaves: a 100k chain's 6.2M pairs cost ~8 CPU s, the biggest single
piece of a partition's stage). Compiled to branches on constant thresholds (llvmlite, the eleventh
stop), each row still took ~0.5 us: half the branches of a tree walk are mispredicted.

Here the trees are scored the QuickScorer way (Lucchese et al., SIGIR 2015): each tree's leaves are
the bits of a mask, numbered left to right; a node whose test fails (the row goes right) clears the
bits of the leaves of its left subtree, and the row's leaf is the lowest bit left. Every node's test
over a block of rows is then a compare and a masked AND with no branch, which the compiler turns into
SIMD instructions (4 rows at once on AVX2): one numba kernel for every model (`_score`), the model as
arrays (`_Forest`). A partition of the 100k chain, 383k rows: 0.205 s compiled branches -> 0.077 s.

The scores are LightGBM's to the bit (tests/cycles/test_forest.py compares them on real features, on
NaN, zeros, infinities and values at every threshold, for each kind of missing-value split):
a float32 feature is widened to double; a value with |v| <= 1e-35f counts as 0 (LightGBM's dense rows
drop it); a split's missing type decides NaN (and, for "zero", |v| <= 1e-35f) goes its default way,
otherwise NaN counts as 0 — each of these read once a row as a column of its own in which the default
way is -inf (left) or +inf (right), so that every test is `value <= threshold`; leaves add up from 0.0 in
tree order. Models this does not cover (categorical or linear trees, several trees an iteration,
averaged output, more than 64 leaves a tree, a threshold that is not finite, float64 input) are
scored by LightGBM itself.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import numpy as np
from numba import njit

__all__ = ["raw_scores"]

_ZERO = np.float64(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant, widened)
_CACHE: dict[str, _Forest | None] = {}  # model text -> its arrays (None: LightGBM scores it)
_CACHE_SIZE = 4
_LOCK = threading.Lock()
_BLOCK = 128  # rows a block: its derived columns (~30 x 128 doubles) stay in the L1 cache
# how a feature is read for a split, by its missing type and default direction (a derived column each)
_PLAIN, _ZERO_LEFT, _ZERO_RIGHT, _NAN_LEFT, _NAN_RIGHT = range(5)
# the lowest set bit's index: (bit * constant) >> 58 is distinct for each of the 64 bits (de Bruijn)
_DE_BRUIJN = np.uint64(0x03F79D71B4CB0A89)
_BIT_INDEX = np.zeros(64, np.int64)
_BIT_INDEX[(np.left_shift(np.uint64(1), np.arange(64, dtype=np.uint64)) * _DE_BRUIJN) >> np.uint64(58)] = np.arange(64)


@dataclass(frozen=True)
class _Forest:
    """A model as the kernel's arrays: the derived columns (feature, how read); for each internal node,
    tree by tree, its column, threshold and the mask its failed test ANDs in; each tree's first node
    (`starts`, one more than trees) and its leaf values left to right (trees x most leaves)."""

    n_features: int
    column_feature: np.ndarray
    column_kind: np.ndarray
    node_column: np.ndarray
    node_threshold: np.ndarray
    node_mask: np.ndarray
    starts: np.ndarray
    leaves: np.ndarray

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape[0], np.float64)
        if x.shape[0]:
            _score(
                x,
                self.column_feature,
                self.column_kind,
                self.node_column,
                self.node_threshold,
                self.node_mask,
                self.starts,
                self.leaves,
                _BIT_INDEX,
                out,
            )
        return out


def raw_scores(booster: Any, x: np.ndarray, n_jobs: int = 1) -> np.ndarray:
    """`booster.predict(x, raw_score=True)`, the same float64 values, compiled when the model allows.

    `x`: rows x features; float32 rows take the compiled path (copied when not C-contiguous), anything
    else LightGBM's.
    `n_jobs`: threads, each a run of rows (the scores do not depend on it).
    """
    forest = _compiled(booster) if x.dtype == np.float32 and x.ndim == 2 else None
    if forest is None or x.shape[1] != forest.n_features:
        return booster.predict(x, raw_score=True, num_threads=n_jobs)
    x = np.ascontiguousarray(x)
    parts = max(1, min(n_jobs, x.shape[0] // 50_000))
    if parts == 1:
        return forest(x)
    bounds = np.linspace(0, x.shape[0], parts + 1).astype(np.int64)
    with ThreadPoolExecutor(parts) as pool:
        return np.concatenate(list(pool.map(forest, [x[lo:hi] for lo, hi in zip(bounds[:-1], bounds[1:])])))


def load() -> None:
    """The kernel compiled (or loaded from numba's cache: ~0.2 CPU s a process) for the types it is
    called with, on a one-row, one-leaf model."""
    one = np.zeros(1, np.int64)
    _Forest(0, one[:0], one[:0], one[:0], np.zeros(0), one[:0], one, np.zeros((1, 1)))(np.zeros((1, 0), np.float32))


def _compiled(booster: Any) -> _Forest | None:
    """The booster's `_Forest`, made once a model (None: a model LightGBM scores itself)."""
    text = booster.model_to_string()
    with _LOCK:
        if text in _CACHE:
            return _CACHE[text]
        forest = _forest(text)
        if len(_CACHE) >= _CACHE_SIZE:
            _CACHE.pop(next(iter(_CACHE)))
        _CACHE[text] = forest
        return forest


def _header(text: str) -> dict[str, str]:
    """The model text's header: its key=value lines, and a flag line (e.g. average_output) as flag=''."""
    head = text.split("\nTree=", 1)[0]
    return dict((*line.split("=", 1), "")[:2] for line in head.splitlines() if line)


def _trees(text: str) -> list[dict[str, str]]:
    body = text.split("\nend of trees", 1)[0]
    return [
        dict(line.split("=", 1) for line in block.splitlines() if "=" in line) for block in body.split("\nTree=")[1:]
    ]


def _forest(text: str) -> _Forest | None:
    """The model text as the kernel's arrays, or None when it holds a kind of tree not covered here."""
    head, trees = _header(text), _trees(text)
    if (
        int(head.get("num_tree_per_iteration", "1")) != 1
        or "average_output" in head
        or any(t.get("is_linear", "0") != "0" or t.get("num_cat", "0") != "0" for t in trees)
        or any(int(d) & 1 for t in trees for d in t.get("decision_type", "").split())
        or any(int(t["num_leaves"]) > 64 for t in trees)
        or not all(np.isfinite(float(v)) for t in trees for v in t.get("threshold", "").split())
    ):
        return None
    columns: dict[tuple[int, int], int] = {}  # (feature, how read) -> derived column
    node_column: list[int] = []
    node_threshold: list[float] = []
    node_mask: list[int] = []
    starts, leaves = [0], []
    for tree in trees:
        values = [float(v) for v in tree["leaf_value"].split()]
        if int(tree["num_leaves"]) == 1:  # no node: the mask keeps bit 0, its only leaf
            starts.append(starts[-1])
            leaves.append(values)
            continue
        names = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
        feature, threshold, kind, left, right = ([float(v) for v in tree[n].split()] for n in names)

        def below(child: int, left: list[float] = left, right: list[float] = right) -> list[int]:
            """The leaves under a child (~leaf for a leaf), left to right."""
            return [~child] if child < 0 else below(int(left[child])) + below(int(right[child]))

        in_order = below(0)
        rank = {leaf: r for r, leaf in enumerate(in_order)}
        for n, f in enumerate(int(v) for v in feature):
            k = int(kind[n])
            default_left, missing = bool(k & 2), (k >> 2) & 3
            how = (
                (_NAN_LEFT if default_left else _NAN_RIGHT)
                if missing == 2
                else (_ZERO_LEFT if default_left else _ZERO_RIGHT)
                if missing == 1
                else _PLAIN
            )
            node_column.append(columns.setdefault((f, how), len(columns)))
            node_threshold.append(threshold[n])
            node_mask.append(~sum(1 << rank[leaf] for leaf in below(int(left[n]))))
        starts.append(starts[-1] + len(feature))
        leaves.append([values[leaf] for leaf in in_order])
    width = max(len(v) for v in leaves) if leaves else 1
    return _Forest(
        n_features=int(head["max_feature_idx"]) + 1,
        column_feature=np.array([f for f, _ in columns], np.int64),
        column_kind=np.array([how for _, how in columns], np.int64),
        node_column=np.array(node_column, np.int64),
        node_threshold=np.array(node_threshold, np.float64),
        # the rightmost leaf is in no left subtree: bit 63 is never cleared, each mask fits an int64
        node_mask=np.array(node_mask, np.int64),
        starts=np.array(starts, np.int64),
        leaves=np.array([v + [0.0] * (width - len(v)) for v in leaves], np.float64).reshape(len(leaves), width),
    )


@njit(cache=True, nogil=True, boundscheck=False)
def _score(
    x: np.ndarray,
    column_feature: np.ndarray,
    column_kind: np.ndarray,
    node_column: np.ndarray,
    node_threshold: np.ndarray,
    node_mask: np.ndarray,
    starts: np.ndarray,
    leaves: np.ndarray,
    bit_index: np.ndarray,
    out: np.ndarray,
) -> None:
    """out[i] = the sum, in tree order from 0.0, of row i's leaves (no fastmath: the same additions)."""
    n, d, trees = x.shape[0], column_feature.size, starts.size - 1
    value = np.empty((max(d, 1), _BLOCK))
    mask = np.empty(_BLOCK, np.int64)
    total = np.empty(_BLOCK)
    for lo in range(0, n, _BLOCK):
        m = min(_BLOCK, n - lo)
        for c in range(d):
            f, how = column_feature[c], column_kind[c]
            for b in range(m):
                v = np.float64(x[lo + b, f])
                a = 0.0 if abs(v) <= _ZERO else v  # NaN stays NaN
                if how >= _NAN_LEFT:
                    if a != a:
                        a = -np.inf if how == _NAN_LEFT else np.inf
                    value[c, b] = a
                else:
                    z = 0.0 if a != a else a
                    if how == _PLAIN:
                        value[c, b] = z
                    elif z == 0.0:  # zero (tiny values were made 0.0 above, NaN here) goes the default way
                        value[c, b] = -np.inf if how == _ZERO_LEFT else np.inf
                    else:
                        value[c, b] = z
        for b in range(m):
            total[b] = 0.0
        for t in range(trees):
            for b in range(m):
                mask[b] = -1
            for j in range(starts[t], starts[t + 1]):
                c, threshold, clear = node_column[j], node_threshold[j], node_mask[j]
                for b in range(m):  # branch-free: a select and an AND, vectorised over the block
                    mask[b] = mask[b] & clear if value[c, b] > threshold else mask[b]
            for b in range(m):
                bits = np.uint64(mask[b])
                lowest = bits & (~bits + np.uint64(1))
                total[b] += leaves[t, bit_index[(lowest * _DE_BRUIJN) >> np.uint64(58)]]
        for b in range(m):
            out[lo + b] = total[b]
