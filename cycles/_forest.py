"""LightGBM's trees compiled to machine code for the ranker's scoring, bit for bit its raw scores.

`Booster.predict` walks every tree of every row through generic node arrays (~24 ns a tree walk
for the ranker's 60 trees of 15 leaves: a 100k chain's 6.2M pairs cost ~8 CPU s, the biggest single
piece of a partition's stage). Here the model text becomes one LLVM function — a loop over the rows,
each tree a nest of branches on constant thresholds, its leaves summed in tree order — compiled by
llvmlite (numba's own LLVM binding, already installed with it): ~0.03 s to compile, then ~4x less CPU
for the same scores (385k rows: 0.50 -> 0.15 s). lleaves does the same but needs llvmlite's legacy
pass manager, which llvmlite 0.45 removed.

The scores are LightGBM's to the bit (tests/cycles/test_forest.py compares them on real features, on
NaN, zeros, infinities and values at every threshold, for each kind of missing-value split):
a float32 feature is widened to double; a value with |v| <= 1e-35f counts as 0 (LightGBM's dense rows
drop it); a split's missing type decides NaN (and, for "zero", |v| <= 1e-35f) goes its default way,
otherwise NaN counts as 0; leaves add up from 0.0 in tree order. Models this does not cover
(categorical or linear trees, several trees an iteration, averaged output, float64 input) are scored
by LightGBM itself.
"""

from __future__ import annotations

import ctypes
import threading
import warnings
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np

__all__ = ["raw_scores"]

_ZERO = float(np.float32(1e-35))  # LightGBM's kZeroThreshold (a float constant, widened)
_CACHE: dict[str, _Forest | None] = {}  # model text -> compiled forest (None: LightGBM scores it)
_CACHE_SIZE = 4
# beyond this many nodes LightGBM scores the model: compiling grows with it (300 trees of 255 leaves:
# 13 CPU s and ~730 MB in every process that scores); the ranker's 60 x 15 are ~900
_MAX_NODES = 50_000
_LOCK = threading.Lock()
_SIGNATURE = ctypes.CFUNCTYPE(None, ctypes.c_void_p, ctypes.c_int64, ctypes.c_int64, ctypes.c_void_p)


class _Forest:
    """A compiled model: `engine` (its LLVM context and execution engine) keeps the machine code
    alive, `fn(x, rows, stride, out)` runs it (ctypes releases the GIL: threads score parts at once)."""

    def __init__(self, engine: Any, fn: Any, n_features: int) -> None:
        self.engine, self.fn, self.n_features = engine, fn, n_features

    def __call__(self, x: np.ndarray) -> np.ndarray:
        out = np.empty(x.shape[0], np.float64)
        if x.shape[0]:
            self.fn(x.ctypes.data, x.shape[0], x.shape[1], out.ctypes.data)
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


def _compiled(booster: Any) -> _Forest | None:
    text = booster.model_to_string()
    with _LOCK:
        if text in _CACHE:
            return _CACHE[text]
        try:
            forest = _compile(text)
        except Exception as exc:  # noqa: BLE001 - an LLVM that refuses the IR: LightGBM scores, said once
            warnings.warn(
                f"the ranker's trees could not be compiled ({type(exc).__name__}: {exc}); LightGBM scores them",
                RuntimeWarning,
                stacklevel=3,
            )
            forest = None
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


def _compile(text: str) -> _Forest | None:
    """The model text as a compiled forest, or None when it holds a kind of tree not covered here."""
    head, trees = _header(text), _trees(text)
    if (
        int(head.get("num_tree_per_iteration", "1")) != 1
        or "average_output" in head
        or any(t.get("is_linear", "0") != "0" or t.get("num_cat", "0") != "0" for t in trees)
        or any(int(d) & 1 for t in trees for d in t.get("decision_type", "").split())
        or sum(2 * int(t["num_leaves"]) - 1 for t in trees) > _MAX_NODES
    ):
        return None
    n_features = int(head["max_feature_idx"]) + 1
    import llvmlite.binding as llvm

    llvm.initialize_native_target()
    llvm.initialize_native_asmprinter()
    # a context of its own: LLVM's global one is numba's too, and a numba function compiled in another
    # thread at the same time would share it (LLVM contexts are not thread-safe; distinct ones are)
    context = llvm.create_context()
    module = llvm.parse_assembly(_ir(trees), context=context)
    module.verify()
    # opt 0 (fast instruction selection): 0.03 s to compile against 0.4 s at 1-3, for 0.15 against
    # 0.10 s a 385k-row partition (measured): the same CPU over a 100k chain's partitions, less for a small one
    machine = llvm.Target.from_default_triple().create_target_machine(opt=0)
    engine = llvm.create_mcjit_compiler(module, machine)
    engine.finalize_object()
    return _Forest((context, engine), _SIGNATURE(engine.get_function_address("forest")), n_features)


def _c(value: float) -> str:
    """An LLVM double constant, exact (its bits)."""
    return f"0x{np.float64(value).view(np.uint64):016X}"


def _ir(trees: list[dict[str, str]]) -> str:
    """LLVM IR of `void forest(float *x, i64 rows, i64 stride, double *out)`."""
    used = sorted({int(f) for t in trees if int(t["num_leaves"]) > 1 for f in t["split_feature"].split()})
    ir = [
        "declare double @llvm.fabs.f64(double)",
        "define void @forest(ptr noalias %x, i64 %n, i64 %stride, ptr noalias %out) {",
        "entry:\n  br label %loop",
        "loop:\n  %i = phi i64 [0, %entry], [%next, %tail]\n  %more = icmp slt i64 %i, %n",
        "  br i1 %more, label %row, label %done",
        "row:\n  %at = mul i64 %i, %stride\n  %r = getelementptr inbounds float, ptr %x, i64 %at",
    ]
    for f in used:
        # once a row, per feature: a = the value (|v| <= 1e-35 -> 0), z = a with NaN -> 0, zz = z counts as zero
        ir += [
            f"  %p{f} = getelementptr inbounds float, ptr %r, i64 {f}",
            f"  %f{f} = load float, ptr %p{f}",
            f"  %d{f} = fpext float %f{f} to double",
            f"  %m{f} = call double @llvm.fabs.f64(double %d{f})",
            f"  %t{f} = fcmp ole double %m{f}, {_c(_ZERO)}",
            f"  %a{f} = select i1 %t{f}, double 0.0, double %d{f}",
            f"  %u{f} = fcmp uno double %a{f}, 0.0",
            f"  %z{f} = select i1 %u{f}, double 0.0, double %a{f}",
            f"  %w{f} = call double @llvm.fabs.f64(double %z{f})",
            f"  %zz{f} = fcmp ole double %w{f}, {_c(_ZERO)}",
        ]
    total = "0.0"
    ir.append(f"  br label %{'T0N0' if trees else 'tail'}")
    for t, tree in enumerate(trees):
        after = f"T{t + 1}N0" if t + 1 < len(trees) else "tail"
        leaves = [float(v) for v in tree["leaf_value"].split()]
        if int(tree["num_leaves"]) == 1:
            ir += [f"T{t}N0:", f"  %s{t} = fadd double {total}, {_c(leaves[0])}", f"  br label %{after}"]
            total = f"%s{t}"
            continue
        columns = ("split_feature", "threshold", "decision_type", "left_child", "right_child")
        feature, threshold, kind, left, right = ([float(v) for v in tree[c].split()] for c in columns)

        def label(child: float, t: int = t) -> str:
            return f"T{t}L{~int(child)}" if child < 0 else f"T{t}N{int(child)}"

        for n, f in enumerate(int(v) for v in feature):
            k = int(kind[n])
            default_left, missing = bool(k & 2), (k >> 2) & 3
            th = _c(threshold[n])
            ir.append(f"T{t}N{n}:")
            if missing == 2:  # NaN goes the default way (fcmp u*: true when unordered)
                ir.append(f"  %c{t}.{n} = fcmp {'ule' if default_left else 'ole'} double %a{f}, {th}")
            elif missing == 1:  # NaN and zero go the default way
                ir.append(f"  %k{t}.{n} = fcmp ole double %z{f}, {th}")
                ir.append(f"  %c{t}.{n} = select i1 %zz{f}, i1 {'true' if default_left else 'false'}, i1 %k{t}.{n}")
            else:  # no missing value: NaN counts as 0
                ir.append(f"  %c{t}.{n} = fcmp ole double %z{f}, {th}")
            ir.append(f"  br i1 %c{t}.{n}, label %{label(left[n])}, label %{label(right[n])}")
        ir += [f"T{t}L{j}:\n  br label %T{t}J" for j in range(len(leaves))]
        phi = ", ".join(f"[{_c(v)}, %T{t}L{j}]" for j, v in enumerate(leaves))
        ir += [
            f"T{t}J:",
            f"  %v{t} = phi double {phi}",
            f"  %s{t} = fadd double {total}, %v{t}",
            f"  br label %{after}",
        ]
        total = f"%s{t}"
    ir += [
        "tail:",
        "  %o = getelementptr inbounds double, ptr %out, i64 %i",
        f"  store double {total}, ptr %o",
        "  %next = add i64 %i, 1",
        "  br label %loop",
        "done:\n  ret void\n}",
    ]
    return "\n".join(ir)
