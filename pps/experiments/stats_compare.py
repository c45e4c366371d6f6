"""The verdict on one metric between a baseline and a current set of values, with
scipy.stats doing the statistics.

Which test decides depends on what there is to test (the name is in `Comparison.test`):

- `mann-whitney-u`: 5 or more values on each side. A rank test: one wild repetition cannot
  swing it. Its interval is a bootstrap (scipy.stats.bootstrap) of the change of medians.
- `welch-t`: 2 to 4 values on a side. Welch's t-test, which does not assume both sides are
  equally noisy; at 3 against 3 the exact rank test cannot go below p = 0.1, the t-test can
  when the difference is large against the spread. The interval is the t-test's own.
- `student-t`: one value on a side and 2 or more on the other (history: tonight against the
  nights before). The pooled-variance t-test, i.e. "is the one value outside the spread the
  others predict?".
- `no spread`: neither side varies at all (a bucketed latency, identical loss); the
  difference is exact at the measurement's resolution and only the threshold decides.
- `bracket`: search rates (NDR, PDR), each known only to lie in [rate, lowest failing rate).

Relative metrics (rates, latency, CPU per packet) are tested on the logarithms of their
values: a change is then a ratio, the same whichever side is larger, and its interval maps
back to percent of the baseline. Absolute metrics (loss, already in percent) are tested on
the values and change in percentage points: a baseline of 0% loss has no relative change.

The verdict, with the threshold T in percent (or points):
- regression / improvement: significant (p < alpha) and the whole interval lies beyond T,
  so the claim is "the change is larger than T", not only "there is a change": on a noisy
  host a CI gate then fails for what is real, not for a lucky draw of three;
- no change: the whole interval lies within +-T (an identical pair of samples has [0, 0]);
- inconclusive: anything else, with the reason (too few values, not significant, an
  interval too wide to tell).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
from scipy import stats

ALPHA = 0.05
RANK_TEST_MIN = 5          # values on each side from which the rank test decides
BOOTSTRAP_RESAMPLES = 4000
SEED = 20240601            # fixed: the same numbers always give the same interval
LOG_FLOOR = 1.0            # a rate or time of 0 counts as 1 (pps, ns) so its log exists
EXACT_PERMUTATIONS = 50_000  # rank test with ties: exact permutation p up to this many splits

VERDICTS = ("regression", "improvement", "inconclusive", "no change")  # worst first
TEST_NAMES = {
    "mann-whitney-u": "Mann-Whitney U", "welch-t": "Welch's t", "student-t": "Student's t",
    "no spread": "no spread", "bracket": "search brackets",
}


@dataclass
class Comparison:
    verdict: str            # one of VERDICTS
    reason: str
    test: str | None        # what decided (a key of TEST_NAMES); None when nothing could
    base_center: float | None  # geometric mean (t-tests), median (rank test), or the rate found
    cur_center: float | None
    change_pct: float | None   # percent of the baseline, or percentage points (relative=False)
    ci_low_pct: float | None
    ci_high_pct: float | None
    p_value: float | None
    n_base: int
    n_cur: int
    threshold_pct: float
    relative: bool

    def to_dict(self) -> dict:
        return {k: (None if isinstance(v, float) and not math.isfinite(v) else v)
                for k, v in self.__dict__.items()}


def worst(verdicts: Sequence[str]) -> str:
    """The verdict a set of comparisons adds up to: any regression is a regression."""
    for verdict in VERDICTS:
        if verdict in verdicts:
            return verdict
    return "no change"


def _clean(values: Sequence[float | None], relative: bool) -> np.ndarray:
    x = np.array([float(v) for v in values if v is not None and math.isfinite(float(v))])
    if relative:
        return np.log(np.maximum(x, LOG_FLOOR))
    return x


def _shown(threshold: float, relative: bool) -> str:
    if math.isinf(threshold):
        return "no threshold (off)"
    return f"{threshold:g}% threshold" if relative else f"{threshold:g}-point threshold"


def compare_samples(base: Sequence[float | None], cur: Sequence[float | None], threshold_pct: float,
                    higher_is_better: bool = True, relative: bool = True,
                    alpha: float = ALPHA) -> Comparison:
    """The verdict for one metric. `threshold_pct` is in percent of the baseline (relative)
    or in percentage points (absolute metrics such as loss in %); math.inf turns it off."""
    b, c = _clean(base, relative), _clean(cur, relative)
    n1, n2 = len(b), len(c)
    centers = (_center(b, relative), _center(c, relative))
    if n1 == 0 or n2 == 0 or n1 + n2 < 3:
        return Comparison("inconclusive", f"too few values ({n1} and {n2}): need 2 or more on "
                          "one side and 1 on the other; use 3 or more repetitions", None,
                          *centers, None, None, None, None, n1, n2, threshold_pct, relative)
    with warnings.catch_warnings(), np.errstate(all="ignore"):
        warnings.simplefilter("ignore")  # scipy's "nearly identical data" notes go nowhere
        test, diff, low, high, p = _estimate(b, c, alpha)
    if test in ("welch-t", "student-t"):
        centers = (_to_scale(b.mean(), relative), _to_scale(c.mean(), relative))
    change, low, high = (_change(v, relative) for v in (diff, low, high))
    out = Comparison("", "", test, *centers, change, low, high, p, n1, n2, threshold_pct, relative)
    return _verdict(out, higher_is_better, alpha)


def _center(x: np.ndarray, relative: bool) -> float | None:
    return _to_scale(float(np.median(x)), relative) if len(x) else None


def _to_scale(v: float, relative: bool) -> float:
    return float(math.exp(v)) if relative else float(v)


def _change(diff: float, relative: bool) -> float:
    """A difference of logs as percent of the baseline; of values, as it is (points)."""
    if not math.isfinite(diff):
        return diff
    return (math.expm1(diff) * 100) if relative else diff


def _no_spread(x: np.ndarray) -> bool:
    return len(x) < 2 or float(np.ptp(x)) <= 1e-12 * max(1.0, float(np.abs(x).max()))


def _estimate(b: np.ndarray, c: np.ndarray, alpha: float) -> tuple[str, float, float, float, float]:
    """(test, difference cur - base, interval low, high, p) on the working scale."""
    if _no_spread(b) and _no_spread(c):
        diff = float(c.mean() - b.mean())
        return "no spread", diff, diff, diff, (1.0 if diff == 0 else 0.0)
    if min(len(b), len(c)) >= RANK_TEST_MIN:
        return ("mann-whitney-u", float(np.median(c) - np.median(b)), *_bootstrap(b, c, alpha),
                _rank_p(b, c))
    welch = min(len(b), len(c)) >= 2
    res = stats.ttest_ind(c, b, equal_var=not welch)
    ci = res.confidence_interval(1 - alpha)
    return ("welch-t" if welch else "student-t", float(c.mean() - b.mean()), float(ci.low),
            float(ci.high), float(res.pvalue))


def _rank_p(b: np.ndarray, c: np.ndarray) -> float:
    """Two-sided Mann-Whitney p: exact without ties, an exact permutation with ties while
    the splits are few enough to enumerate, the normal approximation beyond."""
    if len(np.unique(np.r_[b, c])) == len(b) + len(c):
        method = "exact" if len(b) + len(c) <= 40 else "asymptotic"
    elif math.comb(len(b) + len(c), len(b)) <= EXACT_PERMUTATIONS:
        method = stats.PermutationMethod(n_resamples=np.inf)
    else:
        method = "asymptotic"
    return float(stats.mannwhitneyu(c, b, alternative="two-sided", method=method).pvalue)


def _bootstrap(b: np.ndarray, c: np.ndarray, alpha: float) -> tuple[float, float]:
    """Percentile bootstrap interval of median(cur) - median(base), each side resampled on its
    own (the percentile method: BCa fails on the few distinct values small samples have)."""
    def diff(x: np.ndarray, y: np.ndarray, axis: int) -> np.ndarray:
        return np.median(y, axis=axis) - np.median(x, axis=axis)

    res = stats.bootstrap((b, c), diff, vectorized=True, paired=False, method="percentile",
                          confidence_level=1 - alpha, n_resamples=BOOTSTRAP_RESAMPLES,
                          rng=np.random.default_rng(SEED))
    return float(res.confidence_interval.low), float(res.confidence_interval.high)


def _verdict(out: Comparison, higher_is_better: bool, alpha: float) -> Comparison:
    t, change, low, high = out.threshold_pct, out.change_pct, out.ci_low_pct, out.ci_high_pct
    unit = "%" if out.relative else " pt"
    name = TEST_NAMES.get(out.test or "", out.test)
    if change is None or not math.isfinite(change):
        out.verdict, out.reason = "inconclusive", "no finite change to judge"
        return out
    if math.isinf(t):
        out.verdict, out.reason = "inconclusive", "threshold off: reported, not judged"
        return out
    beyond = high < -t or low > t      # the whole interval on one side past the threshold
    significant = out.p_value is not None and out.p_value < alpha
    interval = f"{1 - alpha:.0%} interval ({low:+.3g}{unit} .. {high:+.3g}{unit})"
    if significant and beyond:
        better = (change > 0) == higher_is_better
        out.verdict = "improvement" if better else "regression"
        out.reason = (f"significant ({name}, p={out.p_value:.2g}) and its whole {interval} is "
                      f"beyond the {_shown(t, out.relative)}")
    elif -t <= low and high <= t:
        out.verdict = "no change"
        out.reason = f"the {interval} lies within the {_shown(t, out.relative)}"
    elif significant and abs(change) > t:
        out.verdict = "inconclusive"
        out.reason = (f"significant ({name}, p={out.p_value:.2g}) but the {interval} reaches "
                      f"back within the {_shown(t, out.relative)}: more repetitions or a quieter host")
    elif abs(change) > t:
        out.verdict = "inconclusive"
        out.reason = (f"beyond the {_shown(t, out.relative)} but not significant ({name}, "
                      f"p={out.p_value:.2g}): more repetitions or a quieter host")
    else:
        out.verdict = "inconclusive"
        out.reason = (f"within the {_shown(t, out.relative)}, but the {interval} reaches beyond "
                      "it: more repetitions or a quieter host")
    return out


def compare_brackets(base: tuple[float | None, float | None], cur: tuple[float | None, float | None],
                     threshold_pct: float, higher_is_better: bool = True) -> Comparison:
    """Two search results for one rate (NDR or PDR), each (rate found, lowest failing rate
    above it or None). The true rate lies in [found, failing): the change can be anything
    from cur_found/base_failing - 1 to cur_failing/base_found - 1, and that range decides.
    A search that found nothing (even search.min_rate failed) counts as [0, failing)."""
    (b_lo, b_hi), (c_lo, c_hi) = base, cur
    t = threshold_pct
    n1, n2 = int(b_lo is not None), int(c_lo is not None)
    b_lo, c_lo = b_lo or 0.0, c_lo or 0.0
    out = Comparison("inconclusive", "", "bracket", b_lo, c_lo, None, None, None, None, n1, n2, t, True)
    if not b_lo:
        out.reason = "the baseline search found no rate: nothing to compare with"
        return out
    out.change_pct = (c_lo / b_lo - 1) * 100
    out.ci_low_pct = (c_lo / b_hi - 1) * 100 if b_hi else -100.0
    out.ci_high_pct = (c_hi / b_lo - 1) * 100 if c_hi else math.inf
    low, high = out.ci_low_pct, out.ci_high_pct
    worse_range, better_range = (high < -t, low > t) if higher_is_better else (low > t, high < -t)
    if worse_range or better_range:
        out.verdict = "regression" if worse_range else "improvement"
        out.reason = f"the whole range the searches allow is beyond the {_shown(t, True)}"
    elif -t <= low and high <= t:
        out.verdict, out.reason = "no change", f"the range the searches allow lies within the {_shown(t, True)}"
    else:
        hi_note = "" if c_hi else " (nothing failed above the current rate)"
        out.reason = (f"the searches' brackets overlap the {_shown(t, True)}{hi_note}: narrow "
                      "search.precision or use the trend of several searches")
    return out
