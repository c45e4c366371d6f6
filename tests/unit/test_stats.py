"""The regression statistics on known cases: identical samples, large shifts at n = 3, noisy
overlapping samples (which must never come out as a regression or an improvement), the
tests scipy gives for each sample size, and search brackets."""

from __future__ import annotations

import math

import numpy as np
import pytest
from scipy import stats

from pps.errors import ConfigError
from pps.experiments.regression_metrics import METRICS, parse_thresholds
from pps.experiments.stats_compare import compare_brackets, compare_samples, worst

# The issue's case: three unpaced repetitions against three capped at 20 kpps.
ISSUE_BASE = [360_202.0, 358_911.0, 361_540.0]
ISSUE_CUR = [20_000.0, 19_998.0, 20_003.0]


def test_three_against_three_at_minus_94_percent_is_a_regression():
    c = compare_samples(ISSUE_BASE, ISSUE_CUR, 5.0)
    assert c.verdict == "regression" and c.test == "welch-t"
    assert c.change_pct == pytest.approx(-94.4, abs=0.1)
    assert c.ci_low_pct <= c.change_pct <= c.ci_high_pct < -5
    assert c.p_value < 1e-6
    # Welch's t on the logs, as scipy computes it: the p-value is scipy's own.
    expected = stats.ttest_ind(np.log(ISSUE_CUR), np.log(ISSUE_BASE), equal_var=False).pvalue
    assert c.p_value == pytest.approx(expected)
    assert "Welch" in c.reason and "beyond the 5% threshold" in c.reason
    # The same data the other way round is an improvement; lower-is-better turns it over.
    assert compare_samples(ISSUE_CUR, ISSUE_BASE, 5.0).verdict == "improvement"
    assert compare_samples(ISSUE_BASE, ISSUE_CUR, 5.0, higher_is_better=False).verdict == "improvement"


def test_identical_samples_are_no_change():
    for values in ([100.0, 101.0, 99.0], [100.0] * 3, [100.0, 101.0, 99.0, 100.5, 99.5, 100.2]):
        c = compare_samples(values, list(values), 5.0)
        assert c.verdict == "no change", c
        assert c.change_pct == pytest.approx(0.0, abs=1e-9)
        assert c.ci_low_pct <= 0 <= c.ci_high_pct
    # Identical but 30% noisy: a change of exactly 0, yet too noisy to promise +-5%.
    noisy = compare_samples([5.0, 7.0, 6.0, 5.5, 6.5, 6.2], [5.0, 7.0, 6.0, 5.5, 6.5, 6.2], 5.0)
    assert noisy.change_pct == pytest.approx(0.0, abs=1e-9)
    assert noisy.verdict == "inconclusive" and "reaches beyond" in noisy.reason
    same = compare_samples([100.0] * 3, [100.0] * 3, 5.0)
    assert same.test == "no spread" and same.p_value == 1.0
    assert (same.ci_low_pct, same.ci_high_pct) == pytest.approx((0.0, 0.0), abs=1e-9)


def _interleaved(b: np.ndarray, c: np.ndarray) -> bool:
    """Each side's median lies inside the other's range: samples that truly overlap."""
    return bool(b.min() < np.median(c) < b.max() and c.min() < np.median(b) < c.max())


def test_noisy_overlapping_samples_stay_no_change_or_inconclusive():
    """Both sides from one wide distribution (30% spread), at the repetition counts people
    use: whenever the samples overlap like that, the verdict is never a regression or an
    improvement (checked over a few hundred fixed draws)."""
    checked = 0
    for seed in range(200):
        rng = np.random.default_rng(seed)
        for n in (3, 4, 5):
            base, cur = rng.normal(100, 30, n).clip(20), rng.normal(100, 30, n).clip(20)
            if not _interleaved(base, cur):
                continue
            checked += 1
            c = compare_samples(base, cur, 5.0)
            assert c.verdict in ("no change", "inconclusive"), (base, cur, c)
    assert checked > 200


def test_false_verdicts_on_equal_distributions_stay_below_alpha():
    """Any draws at all from one distribution: a test at alpha = 0.05 that also needs its
    interval beyond the threshold calls a change in well under 5% of them."""
    calls = total = 0
    for seed in range(400):
        rng = np.random.default_rng(1000 + seed)
        for n in (3, 5):
            c = compare_samples(rng.normal(100, 10, n), rng.normal(100, 10, n), 5.0)
            calls += c.verdict in ("regression", "improvement")
            total += 1
    assert calls / total < 0.05


def test_hand_picked_overlapping_samples():
    noisy = compare_samples([100, 60, 140, 90, 110], [70, 130, 50, 95, 80], 5.0)
    assert noisy.verdict == "inconclusive" and "not significant" in noisy.reason
    assert noisy.test == "mann-whitney-u"
    three = compare_samples([100, 60, 140], [70, 130, 50], 5.0)
    assert three.verdict == "inconclusive" and three.test == "welch-t"


def test_a_small_real_change_within_the_threshold_is_no_change():
    base = [100.0, 102.0, 98.0, 101.0, 99.0]
    c = compare_samples(base, [96.0, 95.5, 96.5, 95.8, 96.2], 10.0)
    assert c.verdict == "no change" and -10 <= c.ci_low_pct and c.ci_high_pct <= 10


def test_significant_but_interval_reaching_back_within_the_threshold_is_inconclusive():
    # -8% on average, significant, but with this spread the interval reaches above -5%.
    c = compare_samples([100.0, 104.0, 96.0], [93.0, 89.0, 94.0], 5.0)
    assert c.p_value < 0.05 and c.ci_high_pct > -5
    assert c.verdict == "inconclusive" and "reaches back within" in c.reason


def test_rank_test_decides_from_five_a_side_and_matches_scipy():
    base = [100.0, 101.0, 99.0, 100.5, 102.0]
    cur = [80.0, 81.0, 79.0, 82.0, 78.0]
    c = compare_samples(base, cur, 5.0)
    assert c.test == "mann-whitney-u" and c.verdict == "regression"
    assert c.p_value == pytest.approx(stats.mannwhitneyu(cur, base, method="exact").pvalue)
    assert c.change_pct == pytest.approx((80 / 100.5 - 1) * 100)  # medians
    # Ties: the exact permutation p, not the normal approximation.
    tied = compare_samples([1, 2, 2, 4, 5], [6, 7, 8, 8, 10], 5.0)
    assert tied.p_value == pytest.approx(2 / math.comb(10, 5))


def test_one_value_against_several_is_a_prediction_test():
    """History's case: tonight's single value against the nights before."""
    nights = [100.0, 101.0, 99.5, 100.4]
    c = compare_samples(nights, [60.0], 5.0)
    assert c.test == "student-t" and c.verdict == "regression"
    expected = stats.ttest_ind(np.log([60.0]), np.log(nights), equal_var=True).pvalue
    assert c.p_value == pytest.approx(expected)
    assert compare_samples(nights, [100.2], 5.0).verdict == "no change"


def test_too_few_values_say_so():
    one = compare_samples([100.0], [50.0], 5.0)
    assert one.verdict == "inconclusive" and "too few values" in one.reason and one.test is None
    assert compare_samples([], [1.0, 2.0], 5.0).verdict == "inconclusive"
    assert compare_samples([None, math.nan, 1.0], [1.0], 5.0).n_base == 1


def test_loss_is_judged_in_percentage_points():
    # 0% loss before, 2% after: no relative change exists, 2 points does.
    c = compare_samples([0.0, 0.0, 0.0], [2.0, 2.1, 1.9], 1.0, higher_is_better=False, relative=False)
    assert c.verdict == "regression" and c.change_pct == pytest.approx(2.0)
    small = compare_samples([0.0, 0.0, 0.0], [0.2, 0.3, 0.1], 1.0, higher_is_better=False, relative=False)
    assert small.verdict == "no change"


def test_a_zero_rate_is_a_collapse_not_a_crash():
    c = compare_samples([1e5, 1.01e5, 0.99e5], [0.0, 0.0, 0.0], 5.0)
    assert c.verdict == "regression" and c.change_pct < -99


def test_threshold_off_reports_without_judging():
    c = compare_samples(ISSUE_BASE, ISSUE_CUR, math.inf)
    assert c.verdict == "inconclusive" and "off" in c.reason
    assert c.to_dict()["threshold_pct"] is None  # JSON has no infinity


def test_search_brackets():
    # NDR 400k (failing at 408k) then 200k (failing at 204k): -50% whatever inside the brackets.
    c = compare_brackets((400_000, 408_000), (200_000, 204_000), 5.0)
    assert c.verdict == "regression" and c.change_pct == pytest.approx(-50)
    assert c.ci_low_pct == pytest.approx((200 / 408 - 1) * 100)
    assert c.ci_high_pct == pytest.approx((204 / 400 - 1) * 100)
    assert compare_brackets((400_000, 408_000), (401_000, 409_000), 5.0).verdict == "no change"
    # Brackets 8% wide cannot tell a 5% change either way.
    assert compare_brackets((400_000, 432_000), (390_000, 421_000), 5.0).verdict == "inconclusive"
    # Nothing failed above the current rate: it could be anything higher; never a regression.
    assert compare_brackets((400_000, 408_000), (390_000, None), 5.0).verdict == "inconclusive"
    # The current search found nothing (even min_rate failed): [0, 2000).
    assert compare_brackets((400_000, 408_000), (None, 2_000), 5.0).verdict == "regression"


def test_worst_verdict():
    assert worst(["no change", "improvement", "regression"]) == "regression"
    assert worst(["no change", "inconclusive"]) == "inconclusive"
    assert worst([]) == "no change"


def test_thresholds_are_percent_per_metric():
    t = parse_thresholds([])
    assert t["rx_pps"] == 5 and t["loss_pct"] == 1 and t["p99_ns"] == 20
    t = parse_thresholds(["10", "p99_ns=50", "rx_cpu_ns=off", "loss_pct=0.5%"])
    assert (t["rx_pps"], t["ndr_pps"], t["pdr_pps"]) == (10, 10, 10)
    assert t["p99_ns"] == 50 and math.isinf(t["rx_cpu_ns"]) and t["loss_pct"] == 0.5
    for bad in ("x", "p99=5", "-1", "rx_pps=2000"):
        with pytest.raises(ConfigError) as exc:
            parse_thresholds([bad])
        assert "\n" not in str(exc.value) and "--threshold" in str(exc.value)
    assert METRICS["rx_pps"].higher_is_better and not METRICS["p99_ns"].higher_is_better
    assert not METRICS["loss_pct"].relative
