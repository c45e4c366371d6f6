"""Statistics for comparing two sets of repetitions, with numpy only (scipy is not a
dependency): median change, a bootstrap confidence interval, and the Mann-Whitney U test
(exact by enumeration for the small samples benchmarks have, normal approximation beyond).
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

EXACT_LIMIT = 50_000  # enumerate every split up to this many; beyond, the normal approximation
BOOTSTRAP_RESAMPLES = 4000
SEED = 20240601  # fixed: the same numbers always give the same interval and verdict


def _ranks(values: np.ndarray) -> np.ndarray:
    """1-based ranks, ties sharing their mean rank."""
    order = np.argsort(values, kind="mergesort")
    ranks = np.empty(len(values), dtype=float)
    sorted_vals = values[order]
    i = 0
    while i < len(values):
        j = i
        while j + 1 < len(values) and sorted_vals[j + 1] == sorted_vals[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    return ranks


def mann_whitney_u(a: Sequence[float], b: Sequence[float]) -> tuple[float, float]:
    """(U of `a`, two-sided p-value). Exact over every split of the pooled ranks when there
    are few enough (ties handled, since the pooled midranks are what get split)."""
    x, y = np.asarray(a, dtype=float), np.asarray(b, dtype=float)
    n1, n2 = len(x), len(y)
    if n1 == 0 or n2 == 0:
        raise ValueError("both samples need at least one value")
    ranks = _ranks(np.concatenate([x, y]))
    u1 = ranks[:n1].sum() - n1 * (n1 + 1) / 2
    mean_u = n1 * n2 / 2
    if math.comb(n1 + n2, n1) <= EXACT_LIMIT:
        observed = abs(u1 - mean_u)
        total = extreme = 0
        for idx in itertools.combinations(range(n1 + n2), n1):
            u = ranks[list(idx)].sum() - n1 * (n1 + 1) / 2
            total += 1
            # A small tolerance: midranks are halves, so sums compare exactly in floats anyway.
            if abs(u - mean_u) >= observed - 1e-9:
                extreme += 1
        return float(u1), extreme / total
    counts = np.unique(ranks, return_counts=True)[1]
    n = n1 + n2
    tie = (counts ** 3 - counts).sum() / (n * (n - 1))
    sigma = math.sqrt(n1 * n2 / 12 * ((n + 1) - tie))
    if sigma == 0:
        return float(u1), 1.0
    z = (abs(u1 - mean_u) - 0.5) / sigma  # continuity correction
    return float(u1), float(math.erfc(max(z, 0.0) / math.sqrt(2)))


def smallest_p(n1: int, n2: int) -> float:
    """The smallest two-sided p the exact U test can give for these sample sizes: with 3 and
    3 repetitions it is 0.1, so such a comparison can never be significant at 0.05."""
    if n1 == 0 or n2 == 0:
        return 1.0
    return min(1.0, 2 / math.comb(n1 + n2, n1))


def bootstrap_change(base: Sequence[float], cur: Sequence[float], level: float = 0.95,
                     resamples: int = BOOTSTRAP_RESAMPLES, seed: int = SEED) -> tuple[float, float]:
    """Percentile bootstrap interval of the relative change of medians, cur/base - 1."""
    rng = np.random.default_rng(seed)
    b, c = np.asarray(base, dtype=float), np.asarray(cur, dtype=float)
    mb = np.median(rng.choice(b, size=(resamples, len(b)), replace=True), axis=1)
    mc = np.median(rng.choice(c, size=(resamples, len(c)), replace=True), axis=1)
    with np.errstate(divide="ignore", invalid="ignore"):
        change = np.where(mb > 0, mc / mb - 1.0, np.nan)
    change = change[np.isfinite(change)]
    if change.size == 0:
        return (math.nan, math.nan)
    tail = (1 - level) / 2 * 100
    low, high = np.percentile(change, [tail, 100 - tail])
    return float(low), float(high)


@dataclass
class Comparison:
    verdict: str  # "no change", "improvement", "regression", "inconclusive"
    reason: str
    base_median: float | None
    cur_median: float | None
    change: float | None  # relative: -0.1 is 10 % lower
    ci_low: float | None
    ci_high: float | None
    p_value: float | None
    n_base: int
    n_cur: int

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def compare_samples(base: Sequence[float], cur: Sequence[float], threshold: float,
                    alpha: float = 0.05, higher_is_better: bool = True) -> Comparison:
    """The verdict for one metric. `threshold` is relative (0.05 = 5 %). A change is a
    regression or an improvement only when it is both significant (U test p < alpha) and
    beyond the threshold; a change within the threshold is "no change" whatever its p."""
    b = [float(v) for v in base if v is not None and math.isfinite(v)]
    c = [float(v) for v in cur if v is not None and math.isfinite(v)]
    n1, n2 = len(b), len(c)
    if n1 < 2 or n2 < 2:
        return Comparison("inconclusive", f"too few repetitions ({n1} and {n2}): need 2 or more "
                          "on each side, 4 or more to find a significant change",
                          float(np.median(b)) if b else None, float(np.median(c)) if c else None,
                          None, None, None, None, n1, n2)
    mb, mc = float(np.median(b)), float(np.median(c))
    change = mc / mb - 1.0 if mb > 0 else math.nan
    low, high = bootstrap_change(b, c)
    _, p = mann_whitney_u(b, c)
    worse = (change < 0) if higher_is_better else (change > 0)
    if not math.isfinite(change):
        verdict, reason = "inconclusive", "the baseline median is 0"
    elif abs(change) <= threshold:
        verdict, reason = "no change", f"within the {threshold:.0%} threshold"
    elif p < alpha:
        verdict = "regression" if worse else "improvement"
        reason = f"beyond the {threshold:.0%} threshold and significant (p={p:.3g})"
    elif smallest_p(n1, n2) >= alpha:
        verdict = "inconclusive"
        reason = (f"too few repetitions ({n1} and {n2}): the test cannot reach p<{alpha:g}; "
                  "use 4 or more on each side")
    else:
        verdict, reason = "inconclusive", f"beyond the threshold but not significant (p={p:.3g})"
    return Comparison(verdict, reason, mb, mc, change, low, high, p, n1, n2)
