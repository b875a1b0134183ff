"""Next-window ranker: P(a customer buys a category in the next window), learnt from the chain's past.

The renewal model (`cycles.purchase_cycle`) weighs frequency against timing by its own
assumptions; on real panels purchases are burstier and it ranks a household's categories
worse than plain frequency. This estimator learns the weighing from the chain's own history:

* training examples are customer x category pairs (bought at least once before the cutoff)
  at several earlier cutoffs c inside the history, every `cutoff_step_days`; the features of
  a cutoff use only occasions before c, the label is "at least one purchase occasion in
  [c, c + window)" (the framing of next-basket benchmarks, e.g. Hu et al. 2020, TIFU-KNN,
  whose time-decayed personal frequency is the recency-weighted counts below);
* features: recency-weighted occasion counts at several half-lives, counts over the recent
  weeks, days since the last purchase over the typical interval, the renewal model's own
  `p_buy_in_window` and `p_active`, the household's trips and number of categories in recent
  weeks, the category's repurchase rate over one window and its share of buyers, and a
  neighbour-blended frequency (the household's recency-weighted counts smoothed through a
  rank-16 SVD of all households' counts, `cycles.ranker_features.neighbour_scores`);
* gradient-boosted trees (LightGBM, Ke et al. 2017; deterministic, one seed), trained on the
  earlier cutoffs; the score is calibrated by isotonic regression (Zadrozny & Elkan 2002) on
  the latest cutoff, held out, so `p_buy_in_window` keeps meaning "probability of at least
  one purchase in the window".

Thin histories fall back to the renewal model: a customer whose first purchase is fewer than
`min_history_days` before the as-of date gets the renewal probability, and so does everyone
when the history holds no training cutoff with enough positives (a short chain).

Global quantities (the trees, the calibration map, the renewal priors, the category rates)
are fitted once, on a deterministic hash sample of at most `max_train_customers` customers;
`predict(..., history=part)` scores one customer partition with them, so partitions give the
same figures as one pass.

Speed (`cycles.ranker_features`): the line items become one sorted int64 array of packed
(customer, category code, day) occasion keys; every feature of a cutoff is a numpy segment sum
over it or a difference of a customer x day trip count, so the training cutoffs of the sample
are slices of one array and prediction is one pass over every customer's lookback. The renewal
priors of the training cutoffs are fitted once (before the first cutoff) from those pair
statistics, the renewal probabilities are the closed form of `PurchaseCycleEstimator.predict`
over all rows at once, and the features are float32. With `n_jobs` > 1 the training cutoffs are
built in threads, LightGBM grows the trees in as many (the same trees), and prediction splits the
customers into parts (runs of whole customers, a pair's features read only its customer's
occasions) whose features, renewal probabilities and trees' scores run in threads (numpy, scipy's
ufuncs and LightGBM release the GIL): the same rows as one pass, in less memory.
"""

from __future__ import annotations

import copy
import datetime as dt
from collections.abc import Callable, Iterable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numpy as np
import polars as pl
from scipy import optimize

from cycles._forest import raw_scores
from cycles.exceptions import InputError
from cycles.occasions import OccasionKeys, require_columns
from cycles.purchase_cycle import (
    PurchaseCycleEstimator,
    check_fitted,
    predictive_survival,
)
from cycles.ranker_features import (
    Occasions,
    code_occasions,
    customer_features,
    neighbour_components,
    neighbour_scores,
    occasions_of,
    pair_features,
)

__all__ = ["RANKER_FEATURES", "NextWindowRanker"]

RANKER_FEATURES = [
    "n_occ",
    "n_recent",
    "n_4w",
    "n_window",
    "rw_7",
    "rw_28",
    "rw_91",
    "rw_273",
    "days_since",
    "span_days",
    "rate_window",
    "share_recent",
    "share_all",
    "interval_mean_days",
    "mean_interval_days",
    "overdue_ratio",
    "p_renewal",
    "p_active",
    "cust_days_recent",
    "cust_days_4w",
    "cust_cats_recent",
    "cust_cats_4w",
    "cust_days_since",
    "cat_repurchase",
    "cat_share",
    "neighbour_rw",
]

_EPOCH = dt.date(1970, 1, 1)
_REQUIRED = {"customer_key", "day", "product_key", "category", "quantity"}
_RW_NAMES = ("rw_7", "rw_28", "rw_91", "rw_273")
_SVD_RANK = 16  # components of the neighbour-blended frequency
_F = np.float32
_FILL_ROWS = 16_384  # `_cutoff` fills its feature matrix this many rows at a time (~1.6 MB: in cache)
_PART_OCCASIONS = 2_000_000  # predict's parts: at least this many occasions each (below, one pass)


def _day(d: dt.date) -> int:
    return (d - _EPOCH).days


def _unique_pairs(occ: Occasions, lo: int, hi: int) -> np.ndarray:
    """Sorted distinct pair codes with an occasion in [lo, hi)."""
    pair = occ.pair[(occ.day >= lo) & (occ.day < hi)]
    return pair[np.r_[True, pair[1:] != pair[:-1]]] if pair.size else pair


def _category_stats(occ: Occasions, c: int, w: int) -> tuple[np.ndarray, np.ndarray]:
    """Per category code at cutoff day c: cat_repurchase (share of the pairs bought in [c-2w, c-w) bought
    again in [c-w, c)) and cat_share (share of the customers with a purchase in [c-w, c) who bought it)."""
    n_cat = occ.categories.height
    prev, last = _unique_pairs(occ, c - 2 * w, c - w), _unique_pairs(occ, c - w, c)
    again = np.isin(prev, last, assume_unique=True)
    n_prev = np.bincount(occ.cat(prev), minlength=n_cat)
    rep = np.bincount(occ.cat(prev), weights=again, minlength=n_cat) / np.maximum(n_prev, 1)
    active = max(np.unique(last >> occ.cat_bits).size, 1)
    share = np.bincount(occ.cat(last), minlength=n_cat) / active
    return rep, share


def _renewal(
    k: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    pi: np.ndarray,
    n: np.ndarray,
    s: np.ndarray,
    u: np.ndarray,
    w: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """The renewal model's p_buy_in_window, p_active and posterior mean interval of each row, from its
    pair statistics (n intervals summing to s days, u days since the last purchase) and its category's
    (k, a, b, pi); the formulas of `PurchaseCycleEstimator.predict`."""
    alpha = a + n * k
    beta = b + s
    s_now, s_end = predictive_survival(u[:, None] + np.array([0.0, w]) - 0.5, k, alpha, beta).T
    active = (1 - pi) * s_now
    with np.errstate(invalid="ignore", divide="ignore"):
        p_active = active / (active + pi)
        p_buy = np.where(active > 0, (1 - pi) * (s_now - s_end) / (active + pi), 0.0)
        mean_interval = np.where(alpha > 1, k * beta / np.maximum(alpha - 1, 1e-9), np.nan)
    return np.clip(p_buy, 0.0, 1.0), p_active, mean_interval


def _renewal_given(
    given: tuple[np.ndarray, ...],
    pair: np.ndarray,
    k: np.ndarray,
    a: np.ndarray,
    b: np.ndarray,
    pi: np.ndarray,
    n: np.ndarray,
    s: np.ndarray,
    u: np.ndarray,
    w: int,
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """`_renewal` of each row, taken from `given` (pair codes sorted, p_buy, p_active, mean interval: the
    same formulas on the same statistics, computed by the caller) where it has the pair and the row's
    category has priors; computed for the other rows."""
    g_pair, g_p, g_active, g_mean = given
    at = np.minimum(np.searchsorted(g_pair, pair), max(g_pair.size - 1, 0))
    hit = (g_pair[at] == pair) & np.isfinite(k) if g_pair.size else np.zeros(pair.size, bool)
    p_buy, p_active, mean_interval = np.empty(pair.size), np.empty(pair.size), np.empty(pair.size)
    p_buy[hit], p_active[hit], mean_interval[hit] = g_p[at[hit]], g_active[at[hit]], g_mean[at[hit]]
    miss = ~hit
    if miss.any():
        p_buy[miss], p_active[miss], mean_interval[miss] = _renewal(
            k[miss], a[miss], b[miss], pi[miss], n[miss], s[miss], u[miss], w
        )
    return p_buy, p_active, mean_interval


def _with_new_candidates(
    pf: dict[str, np.ndarray], cat_bits: int, popularity: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    """`pair_features` output plus, per customer, the `n` most popular category codes (ties: lower
    code) it has no pair with (zero counts; `_cutoff` makes their days since NaN), sorted by pair."""
    pair = pf["pair"]
    if pair.size == 0:
        return pf
    cust = np.unique(pair >> cat_bits)
    top = np.argsort(-popularity, kind="stable")
    top = top[np.isfinite(popularity[top])][: n + 64].astype(np.int64)  # -inf: not a candidate here
    cand = (cust[:, None] << cat_bits) | top[None, :]  # customers x popular, popularity order
    have = np.isin(cand, pair)
    rank = np.cumsum(~have, axis=1)
    new = cand[~have & (rank <= n)]
    out = {}
    order = np.argsort(np.concatenate([pair, new]), kind="stable")
    for name, values in pf.items():
        filler = new if name == "pair" else np.zeros(new.size, values.dtype)
        out[name] = np.concatenate([values, filler])[order]
    return out


def _by_code(categories: pl.DataFrame, table: pl.DataFrame, columns: list[str]) -> list[np.ndarray]:
    """Columns of `table` (keyed by category) as arrays indexed by the category codes of `categories`
    (NaN where the table has no row)."""
    joined = categories.join(table, on="category", how="left").sort("cat")
    return [joined[col].cast(pl.Float64).fill_null(np.nan).to_numpy() for col in columns]


class NextWindowRanker:
    """Probability that a customer buys a category in [as_of, as_of + window), learnt from past windows.

    Parameters
    ----------
    window_days
        The window the labels (and `p_buy_in_window`) are about.
    n_cutoffs
        Training cutoffs, every `cutoff_step_days` going back from two windows before the end
        of history (the latest window is held out for the calibration).
    cutoff_step_days
        Days between two training cutoffs.
    lookback_days
        Occasions older than this before a cutoff are not read.
    half_lives
        Half-lives (days) of the recency-weighted counts; four are expected (names rw_7 ... rw_273
        are positional).
    recent_days
        The "recent weeks" of the counts, trips and number of categories.
    min_history_days
        A customer whose first purchase is more recent than this gets the renewal probability;
        a cutoff with less history before it is not used for training.
    max_train_customers
        Training examples, the renewal priors and the category rates come from at most this many
        customers (a deterministic hash sample); prediction covers everyone. 2,500 keeps all of
        The Complete Journey's 2,469 households (P@10 +0.012 over P-TopFreq there) and bounds the
        trees' work on a large chain (LightGBM's rounds are most of the fit).
    min_train_positives
        Fewer positive training examples (or calibration ones) than this: the renewal model
        for everyone (`fallback_` is True).
    n_estimators, learning_rate, num_leaves, min_child_samples
        The trees. 60 trees of 15 leaves at 0.15 (with 6 cutoffs): on The Complete Journey P@10 /
        NDCG@10 over P-TopFreq +0.0117 / +0.0127 against +0.0123 / +0.0138 for 100 of 31 at 0.1
        with 10 cutoffs, at half the CPU (scoring them was 45 % of a 100k partition's; README).
    backend
        'lightgbm' or 'sklearn' (HistGradientBoostingClassifier), for comparison.
    seed, n_jobs
        Deterministic seed; threads for the training cutoffs and for scoring (features, renewal
        probabilities and trees, in parts of whole customers) and for growing the trees
        (deterministic): n_jobs never changes the model or a score.
    new_candidates
        Also score this many categories per customer that it never bought in the lookback: the
        most popular ones at the cutoff (by cat_share) it has not bought, trained and calibrated
        like the others (their pair counts are 0, their renewal probability 0). Off by default:
        on The Complete Journey 5 of them moved NDCG@10 by +0.001 to +0.002 and P@10 by -0.0002
        to 0.000, and the profile (so the list, its needs and offers) keeps bought pairs only,
        while they were 8 % of the rows scored and a tenth of predict's time at 100k customers.
    train_negatives
        Share of the negative training examples the trees see (a deterministic draw, weighted by
        its inverse; every positive is kept): 0.3 is a third of the rows a tree; on The Complete
        Journey (100 trees of 31 leaves) P@10 / NDCG@10 over P-TopFreq +0.0123 / +0.0138 (0.5:
        +0.0124 / +0.0138); with this revision's trees 0.15 gave +0.0116 / +0.0127.
    map_fn
        A ``map(function, items)`` the renewal priors' category fits go through
        (`PurchaseCycleEstimator`'s: e.g. a process pool's; the same fits anywhere); None = the
        builtin ``map``. Not kept by `without_history`.

    Attributes
    ----------
    model_ : fitted booster (None when falling back)
    calibration_ : (scores, probabilities) knots of the isotonic map
    renewal_priors_ : polars.DataFrame, the renewal model's category priors at the end of history
        (fitted on the training sample)
    category_stats_ : polars.DataFrame, category, cat_repurchase, cat_share at the end of history
    neighbour_components_ : polars.DataFrame, category, component (list of the SVD's loadings) at the
        end of history, on the training sample
    observed_until_ : datetime.date
    cutoffs_ : list of datetime.date, training cutoffs (the last entry is the calibration cutoff)
    fallback_ : bool

    The fitted model keeps no line items or occasions of its own: `predict(history=None)`
    reads the frame given to `fit` (a reference, not a copy).
    """

    def __init__(
        self,
        window_days: int = 14,
        n_cutoffs: int = 6,
        cutoff_step_days: int = 14,
        lookback_days: int = 364,
        half_lives: tuple[float, ...] = (7.0, 28.0, 91.0, 273.0),
        recent_days: int = 112,
        min_history_days: int = 28,
        max_train_customers: int = 2_500,
        min_train_positives: int = 200,
        n_estimators: int = 60,
        learning_rate: float = 0.15,
        num_leaves: int = 15,
        min_child_samples: int = 100,
        backend: str = "lightgbm",
        seed: int = 0,
        n_jobs: int = 1,
        new_candidates: int = 0,
        train_negatives: float = 0.3,
        map_fn: Callable[..., Iterable[Any]] | None = None,
    ):
        self.window_days = window_days
        self.n_cutoffs = n_cutoffs
        self.cutoff_step_days = cutoff_step_days
        self.lookback_days = lookback_days
        self.half_lives = half_lives
        self.recent_days = recent_days
        self.min_history_days = min_history_days
        self.max_train_customers = max_train_customers
        self.min_train_positives = min_train_positives
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.backend = backend
        self.seed = seed
        self.n_jobs = n_jobs
        self.new_candidates = new_candidates
        self.train_negatives = train_negatives
        self.map_fn = map_fn

    # ---------------------------------------------------------------- features
    def _cutoff(
        self,
        occ: Occasions,
        c: int,
        priors: list[np.ndarray],
        cat_stats: tuple[np.ndarray, np.ndarray],
        components: np.ndarray | None = None,
        given: tuple[np.ndarray, ...] | None = None,
    ) -> dict[str, np.ndarray]:
        """Features at cutoff day c of every pair with an occasion in [c - lookback, c), in pair order:
        pair (codes), first_d (the customer's first trip in the lookback), x (float32, RANKER_FEATURES),
        p_renewal (float64); `priors` are k, a, b, pi and `cat_stats` cat_repurchase, cat_share, each
        indexed by category code; `components` those of the neighbour-blended frequency (None: fitted
        on these pairs); `given`: (pair codes sorted, p_renewal, p_active, mean_interval) the renewal
        model already computed for some pairs (`predict`'s `renewal`), used for those of them whose
        category has priors here."""
        L, w, R = self.lookback_days, self.window_days, self.recent_days
        pf = pair_features(occ, c, L, R, w, self.half_lives, logsum=False)
        rw = pf[f"rw_{self.half_lives[2]:g}"]
        if components is None:
            components = neighbour_components(pf["pair"], occ.cat_bits, occ.categories.height, rw, _SVD_RANK)
        if self.new_candidates > 0:
            pf = _with_new_candidates(pf, occ.cat_bits, cat_stats[1], self.new_candidates)
        pair = pf["pair"]
        cf = customer_features(occ, pair, c, L, R, pf["n_recent"], pf["n_4w"])
        code = occ.cat(pair)
        k, a, b, pi = (p[code] for p in priors)
        days_since = (c - pf["last_d"]).astype(np.float64)
        never = pf["n_occ"] == 0  # a new candidate
        days_since[never] = np.nan
        if given is None:
            p_renewal, p_active, mean_interval = _renewal(
                k, a, b, pi, pf["n_intervals"], pf["interval_sum_days"], days_since, w
            )
        else:
            p_renewal, p_active, mean_interval = _renewal_given(
                given, pair, k, a, b, pi, pf["n_intervals"], pf["interval_sum_days"], days_since, w
            )
        p_renewal[never] = 0.0
        span = (c - cf["first_d"]).astype(_F)
        with np.errstate(invalid="ignore", divide="ignore"):
            interval_mean = np.where(
                pf["n_intervals"] > 0, pf["interval_sum_days"] / np.maximum(pf["n_intervals"], 1), np.nan
            )
            overdue = days_since / mean_interval
        columns = {
            **{name: pf[name] for name in ("n_occ", "n_recent", "n_4w", "n_window")},
            **{name: pf[f"rw_{h:g}"] for name, h in zip(_RW_NAMES, self.half_lives)},
            "days_since": days_since,
            "span_days": span,
            "rate_window": pf["n_occ"] * w / np.maximum(span, _F(w)),
            "share_recent": pf["n_recent"] / np.maximum(cf["cust_days_recent"], _F(1)),
            "share_all": pf["n_occ"] / cf["cust_days_all"],
            "interval_mean_days": interval_mean,
            "mean_interval_days": mean_interval,
            "overdue_ratio": overdue,
            "p_renewal": p_renewal,
            "p_active": p_active,
            **{name: cf[name] for name in ("cust_days_recent", "cust_days_4w", "cust_cats_recent", "cust_cats_4w")},
            "cust_days_since": (c - cf["cust_last"]).astype(_F),
            "cat_repurchase": cat_stats[0][code],
            "cat_share": cat_stats[1][code],
            "neighbour_rw": neighbour_scores(pair, occ.cat_bits, components, pf[f"rw_{self.half_lives[2]:g}"]),
        }
        x = np.empty((pair.size, len(RANKER_FEATURES)), _F)
        # filled in blocks of rows: a whole column's strided writes into the row-major matrix miss the cache
        # on every row (385k pairs x 25 features: 30-38 ms; in blocks of 16k rows 15 ms, /work/s14/fill.py)
        for lo in range(0, pair.size, _FILL_ROWS):
            block = x[lo : lo + _FILL_ROWS]
            for j, name in enumerate(RANKER_FEATURES):
                block[:, j] = columns[name][lo : lo + _FILL_ROWS]
        return {"pair": pair, "first_d": cf["first_d"], "x": x, "p_renewal": p_renewal}

    def _refit_priors(self, occ: Occasions, c: int, no_lines: pl.DataFrame) -> pl.DataFrame:
        """The renewal model's category priors fitted on the pair statistics before cutoff c only."""
        pf = pair_features(occ, c, self.lookback_days, self.recent_days, self.window_days, ())
        pair = pf["pair"]
        pairs = (
            pl.DataFrame(
                {
                    "customer_key": occ.customer(pair),
                    "cat": occ.cat(pair),
                    "last_purchase_on": pf["last_d"],
                    "n_intervals": pf["n_intervals"],
                    "interval_sum_days": pf["interval_sum_days"],
                    "interval_logsum": pf["interval_logsum"],
                }
            )
            .join(occ.categories, on="cat", how="left", maintain_order="left")
            .select(
                "customer_key",
                "category",
                pl.col("last_purchase_on").cast(pl.Date),
                "n_intervals",
                "interval_sum_days",
                "interval_logsum",
            )
        )
        return (
            PurchaseCycleEstimator(map_fn=self.map_fn)
            .fit(no_lines, observed_until=_EPOCH + dt.timedelta(days=c), pairs=pairs)
            .priors_
        )

    # ---------------------------------------------------------------- trees
    def _train(self, x: np.ndarray, y: np.ndarray):
        if self.train_negatives < 1.0:
            # keep every positive and a deterministic share of the negatives, weighted back up: the
            # same loss in expectation at a fraction of the rows (the calibration maps scores anyway)
            keep = (y == 1) | (np.random.default_rng(self.seed).random(y.size) < self.train_negatives)
            weight = np.where(y[keep] == 1, 1.0, 1.0 / self.train_negatives)
            x, y = x[keep], y[keep]
        else:
            weight = None
        if self.backend == "lightgbm":
            import lightgbm as lgb

            params = {
                "objective": "binary",
                "learning_rate": self.learning_rate,
                "num_leaves": self.num_leaves,
                "min_child_samples": self.min_child_samples,
                "feature_fraction": 0.9,
                "lambda_l2": 1.0,
                # half the rows a tree and 63 bins: less work a tree, same P@10 / NDCG@10 on the real panel (measured)
                "bagging_fraction": 0.5,
                "bagging_freq": 1,
                "max_bin": 63,
                "seed": self.seed,
                "deterministic": True,
                "force_row_wise": True,
                # n_jobs threads: the same trees whatever their number (deterministic, row-wise: 704k
                # examples, the 100k chain's sample, bit-identical with 1 and 2; tests/cycles/test_ranker.py),
                # 5.7 -> 3.0 s on two idle cores. A machine busy with other work pays OpenMP's spinning
                # for them (about 3x the CPU for the same wall time, measured under load): n_jobs=1 then.
                "num_threads": self.n_jobs,
                "verbose": -1,
            }
            return lgb.train(params, lgb.Dataset(x, y, weight=weight, feature_name=RANKER_FEATURES), self.n_estimators)
        if self.backend == "sklearn":
            from sklearn.ensemble import HistGradientBoostingClassifier

            return HistGradientBoostingClassifier(
                max_iter=self.n_estimators,
                learning_rate=self.learning_rate,
                max_leaf_nodes=self.num_leaves,
                min_samples_leaf=self.min_child_samples,
                l2_regularization=1.0,
                early_stopping=False,
                max_bins=63,
                random_state=self.seed,
            ).fit(x, y, sample_weight=weight)
        raise InputError(f"NextWindowRanker: backend must be 'lightgbm' or 'sklearn', got {self.backend!r}")

    def _score(self, x: np.ndarray, n_jobs: int | None = None) -> np.ndarray:
        if self.backend == "lightgbm":
            # the trees compiled (cycles._forest): LightGBM's raw scores to the bit, ~7x less CPU
            return raw_scores(self.model_, x, n_jobs or self.n_jobs)
        return self.model_.decision_function(x)

    def _fit_globals(self, occ: Occasions, tr_lines: pl.DataFrame, observed_until: dt.date) -> None:
        """Global things at the end of history, once, on the sample: the renewal priors, the category
        rates and the neighbour components."""
        end, w = _day(observed_until), self.window_days
        self.renewal_priors_ = (
            PurchaseCycleEstimator(map_fn=self.map_fn).fit(tr_lines, observed_until=observed_until).priors_
        )
        rep, share = _category_stats(occ, end, w)
        self.category_stats_ = (
            occ.categories.with_columns(pl.Series("cat_repurchase", rep), pl.Series("cat_share", share))
            .select("category", "cat_repurchase", "cat_share")
            .sort("category")
        )
        pf = pair_features(occ, end, self.lookback_days, self.recent_days, w, self.half_lives)
        comps = neighbour_components(
            pf["pair"], occ.cat_bits, occ.categories.height, pf[f"rw_{self.half_lives[2]:g}"], _SVD_RANK
        )
        self.neighbour_components_ = (
            occ.categories.select("category")
            .with_columns(pl.Series("component", comps.T.tolist(), pl.List(pl.Float32)))
            .sort("category")
        )

    # ---------------------------------------------------------------- API
    def fit(self, history: pl.DataFrame, observed_until: dt.date | None = None) -> NextWindowRanker:
        """Build training examples at earlier cutoffs, train the trees, calibrate on the latest window.

        Parameters
        ----------
        history
            Line items: customer_key, day, product_key, category, quantity (engine.history columns).
        observed_until
            First day not covered by `history`; default the day after its last day.
        """
        require_columns(history, _REQUIRED, "history")
        if self.window_days <= 0:
            raise InputError(f"window_days must be > 0, got {self.window_days}")
        if observed_until is None:
            last = history.select(pl.col("day").max()).item()
            if last is None:
                raise InputError("history: no line items to fit the ranker on")
            observed_until = last + dt.timedelta(days=1)
        end, w = _day(observed_until), self.window_days
        lines = history.lazy().select(sorted(_REQUIRED)).filter(pl.col("day") < observed_until)
        # the training sample: a deterministic hash of the customer, the same whatever the partitioning
        keys = (
            lines.select(pl.col("customer_key").unique())
            .collect()
            .with_columns((pl.col("customer_key").hash(seed=self.seed + 11) % 1_000_000_007).alias("h"))
            .sort("h", "customer_key")
            .head(self.max_train_customers)["customer_key"]
        )
        tr_lines = lines.filter(pl.col("customer_key").is_in(keys.implode())).collect()
        occ = code_occasions(tr_lines.lazy(), None, end)
        self.observed_until_ = observed_until
        self._history = history  # predict(history=None) scores the customers fitted on
        self.model_, self.calibration_, self.fallback_, self.cutoffs_ = None, None, True, []
        if occ.pair.size == 0:
            self._fit_globals(occ, tr_lines, observed_until)
            return self
        first = int(occ.day.min())
        calib = end - w
        cutoffs = [end - 2 * w - k * self.cutoff_step_days for k in range(self.n_cutoffs)]
        cutoffs = sorted(c for c in cutoffs if c - first >= self.min_history_days)
        if not cutoffs or calib - first < self.min_history_days:
            self._fit_globals(occ, tr_lines, observed_until)
            return self
        cuts = [*cutoffs, calib]
        # the renewal priors of every training cutoff are fitted once, on the pair statistics before the
        # first one: no label window leaks into a feature (category hyper-parameters drift slowly, and
        # each fit is 300 small optimisations)
        priors = _by_code(occ.categories, self._refit_priors(occ, cuts[0], tr_lines.clear()), ["k", "a", "b", "pi"])

        def examples(c: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
            f = self._cutoff(occ, c, priors, _category_stats(occ, c, w))
            keep = c - f["first_d"] >= self.min_history_days
            bought = _unique_pairs(occ, c, c + w)
            y = np.isin(f["pair"][keep], bought, assume_unique=True).astype(np.int8)
            return f["x"][keep], y, np.full(int(keep.sum()), c == calib)

        # the cutoffs are independent (numpy releases the GIL): n_jobs threads, the same examples in order
        xs, ys, is_cal = zip(*_map(examples, cuts, self.n_jobs), strict=True)
        x, y, is_cal = np.concatenate(xs), np.concatenate(ys), np.concatenate(is_cal)
        x_tr, y_tr, x_cal, y_cal = x[~is_cal], y[~is_cal], x[is_cal], y[is_cal]
        if min(y_tr.sum(), y_cal.sum()) < self.min_train_positives:
            self._fit_globals(occ, tr_lines, observed_until)
            return self
        with ThreadPoolExecutor(1) as pool:
            # LightGBM's rounds run in C++ without the GIL: the end-of-history fits (mostly Python)
            # overlap them; the model is the same as one after the other (one thread each)
            trees = pool.submit(self._train, x_tr, y_tr)
            self._fit_globals(occ, tr_lines, observed_until)
            self.model_ = trees.result()
        self.calibration_ = _isotonic(self._score(x_cal), y_cal)
        self.cutoffs_ = [_EPOCH + dt.timedelta(days=int(c)) for c in cuts]
        self.fallback_ = False
        return self

    def predict(
        self,
        as_of: dt.date,
        window_days: int | None = None,
        history: pl.DataFrame | None = None,
        renewal: pl.DataFrame | None = None,
        occasions: OccasionKeys | None = None,
    ) -> pl.DataFrame:
        """P(at least one purchase in [as_of, as_of + window)) per customer x category.

        Parameters
        ----------
        as_of
            On or after the end of the fitted history.
        window_days
            Must be the fitted window (None: it is).
        history
            Score these customers (e.g. one hash partition) with the fitted global model;
            None = the history fitted on.
        renewal
            The renewal model's figures of these customers' pairs, if the caller has them
            (`PurchaseCycleEstimator.predict` with this ranker's `renewal_priors_`, at `as_of`, over
            the same lookback: customer_key, category, p_buy_in_window, p_active,
            mean_interval_days): they are the p_renewal, p_active and mean interval features of the
            pairs whose category has priors here, so they are not computed twice. The same scores.
        occasions
            `cycles.occasions.occasion_keys(history)` if the caller has them (the profile of the
            same lines sorts them too): read instead of sorting `history`'s lines again; those
            outside the lookback are left out here. The same scores.

        Returns
        -------
        polars.DataFrame
            One row per pair with an occasion in the lookback, sorted by customer_key, category:
            customer_key, category, score (the trees' raw score; null on fallback), p_renewal,
            p_buy_in_window (calibrated; the renewal probability on fallback), fallback (bool).
        """
        check_fitted(self, "category_stats_")
        w = window_days or self.window_days
        if w != self.window_days:
            raise InputError(f"NextWindowRanker was fitted for {self.window_days}-day windows, asked {w}")
        if as_of < self.observed_until_:
            raise InputError(f"as_of {as_of} is before the end of the fitted history ({self.observed_until_})")
        if history is None:
            history = self._history
        require_columns(history, _REQUIRED, "history")
        c = _day(as_of)
        if occasions is None:
            occ = code_occasions(
                history.lazy().select(sorted(_REQUIRED)), c - self.lookback_days, _day(self.observed_until_)
            )
        else:
            occ = occasions_of(occasions).between(c - self.lookback_days, _day(self.observed_until_))
        priors = _by_code(occ.categories, self.renewal_priors_, ["k", "a", "b", "pi"])
        rep, share = (
            np.nan_to_num(v) for v in _by_code(occ.categories, self.category_stats_, ["cat_repurchase", "cat_share"])
        )
        if occasions is not None and self.new_candidates > 0:
            # the profile's codes keep categories with no occasion in the lookback (returns only, older
            # or later purchases): never a new candidate, as they are absent from code_occasions' codes
            # (only the candidates read the share of a category no pair has)
            present = np.zeros(occ.categories.height, bool)
            present[occ.cat(occ.pair)] = True
            share = np.where(present, share, -np.inf)
        comps = (
            occ.categories.join(self.neighbour_components_, on="category", how="left")
            .sort("cat")["component"]
            .to_list()
        )
        rank = max((len(v) for v in comps if v is not None), default=0)
        comps = np.array([v if v is not None else [0.0] * rank for v in comps], _F).reshape(len(comps), rank).T
        fallback = self.fallback_
        given = None if renewal is None else _given_renewal(occ, renewal)

        def score(part: Occasions) -> tuple[np.ndarray, ...]:
            f = self._cutoff(part, c, priors, (rep, share), comps, given)
            thin = c - f["first_d"] < self.min_history_days
            if fallback:
                return f["pair"], f["p_renewal"], f["p_renewal"], f["p_renewal"], np.ones(thin.size, bool)
            raw = self._score(f["x"], 1)
            knots_x, knots_y = self.calibration_
            p = np.clip(np.where(thin, f["p_renewal"], np.interp(raw, knots_x, knots_y)), 0.0, 1.0)
            return f["pair"], f["p_renewal"], raw, p, thin

        # customers are independent: parts of whole customers scored in n_jobs threads (features, renewal
        # probabilities, trees: numpy, scipy and LightGBM release the GIL), the same rows as one pass
        n_parts = 1 if self.n_jobs <= 1 else min(4 * self.n_jobs, -(-occ.pair.size // _PART_OCCASIONS))
        pair, p_renewal, raw, p, thin = (
            np.concatenate(v) for v in zip(*_map(score, occ.split(n_parts), self.n_jobs), strict=True)
        )
        out = (
            pl.DataFrame({"customer_key": occ.customer(pair), "cat": occ.cat(pair)})
            .join(occ.categories, on="cat", how="left", maintain_order="left")
            .drop("cat")
        )
        return out.with_columns(
            pl.lit(None, pl.Float64).alias("score") if fallback else pl.Series("score", raw, pl.Float64),
            pl.Series("p_renewal", p_renewal),
            pl.Series("p_buy_in_window", p),
            pl.Series("fallback", thin),
        )

    def without_history(self, n_jobs: int | None = None) -> NextWindowRanker:
        """A copy for scoring elsewhere: the fitted model without the lines it was fitted on.

        Its `predict` must be given the history to score (`history=None` has nothing to score);
        what travels to another process is the trees, the calibration and the priors only.
        `n_jobs`: the copy's threads (None: this one's); it changes no score.
        """
        check_fitted(self, "category_stats_")
        twin = copy.copy(self)
        twin._history = self._history.clear()
        twin.map_fn = None  # a pool's map stays with the pool's owner
        if n_jobs is not None:
            twin.n_jobs = n_jobs
        return twin

    def feature_importances(self) -> pl.DataFrame:
        """Columns: feature, gain (share of the total split gain), sorted by gain descending."""
        check_fitted(self, "model_")
        if self.backend == "lightgbm":
            gain = self.model_.feature_importance("gain").astype(float)
        else:
            raise InputError("feature importances: lightgbm backend only")
        return pl.DataFrame({"feature": RANKER_FEATURES, "gain": gain / max(gain.sum(), 1e-12)}).sort(
            "gain", descending=True
        )


def _given_renewal(occ: Occasions, renewal: pl.DataFrame) -> tuple[np.ndarray, ...]:
    """`predict`'s `renewal` frame as (pair codes of `occ`, sorted; p_renewal, p_active, mean interval)."""
    require_columns(
        renewal, {"customer_key", "category", "p_buy_in_window", "p_active", "mean_interval_days"}, "renewal"
    )
    frame = renewal.join(occ.categories, on="category", how="inner")
    keys = frame["customer_key"].to_numpy()
    if occ.customer_keys is not None:  # customers coded 0..n-1 by sorted key
        at = np.minimum(np.searchsorted(occ.customer_keys, keys), max(occ.customer_keys.size - 1, 0))
        found = occ.customer_keys[at] == keys if occ.customer_keys.size else np.zeros(keys.size, bool)
        frame, keys = frame.filter(pl.Series(found)), at[found]
    pair = (keys.astype(np.int64) << occ.cat_bits) | frame["cat"].to_numpy().astype(np.int64)
    order = np.argsort(pair, kind="stable")
    return (
        pair[order],
        frame["p_buy_in_window"].to_numpy()[order],
        frame["p_active"].to_numpy()[order],
        frame["mean_interval_days"].cast(pl.Float64).fill_null(np.nan).to_numpy()[order],
    )


def _map(fn, items: list, n_jobs: int) -> list:
    """[fn(item) for item in items], in n_jobs threads when there are several items."""
    if n_jobs <= 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(n_jobs) as pool:
        return list(pool.map(fn, items))


def _isotonic(score: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Knots (score, probability) of the isotonic regression of y on score (pool adjacent violators)."""
    order = np.argsort(score, kind="stable")
    s, t = score[order], y[order].astype(float)
    fitted = optimize.isotonic_regression(t, increasing=True).x
    # one knot per block's end points, so np.interp is a step-wise linear map between blocks
    change = np.r_[True, np.diff(fitted) != 0, True]
    idx = np.unique(np.r_[np.flatnonzero(change[:-1]), np.flatnonzero(change[1:])])
    return s[idx], fitted[idx]
