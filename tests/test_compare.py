"""pps compare: statistics on synthetic numbers, then real loopback runs: the same paced
config twice says "no change", a run capped at 20% of the baseline's rate is a regression
(exit 1), and runs that differ in what matters are refused (exit 2) unless --force."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pps.compare import compare_dirs
from pps.config import load_config
from pps.stats_compare import (bootstrap_change, compare_samples, mann_whitney_u,
                               smallest_p)
from pps.sweep import run_sweep

SHORT = ["run.duration=0.5", "run.warmup=0.2", "run.drain=0.2", "run.interval=0.25"]


def pps(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "pps", *args], capture_output=True, text=True,
                          timeout=60)


# ------------------------------------------------------------------ statistics, synthetic

def test_mann_whitney_exact_values():
    assert mann_whitney_u([1, 2, 3], [4, 5, 6]) == (0.0, pytest.approx(0.1))
    assert mann_whitney_u([1, 2, 3, 4], [5, 6, 7, 8])[1] == pytest.approx(2 / 70)
    assert mann_whitney_u([5, 6, 7, 8], [1, 2, 3, 4]) == (16.0, pytest.approx(2 / 70))
    assert mann_whitney_u([1, 2, 3], [1, 2, 3])[1] == pytest.approx(1.0)
    assert mann_whitney_u([1, 1, 1], [1, 1, 1])[1] == pytest.approx(1.0)  # all tied


def test_mann_whitney_agrees_with_scipy():
    stats = pytest.importorskip("scipy.stats")
    rng = np.random.default_rng(1)
    for n1, n2, shift in ((4, 5, 1.0), (6, 6, 0.3), (3, 7, 2.0), (30, 40, 0.5)):
        a = rng.normal(0, 1, n1).round(1)  # rounding makes ties
        b = rng.normal(shift, 1, n2).round(1)
        method = "exact" if n1 + n2 < 20 and len(set(np.r_[a, b])) == n1 + n2 else "asymptotic"
        if method == "exact":
            expected = stats.mannwhitneyu(a, b, method="exact").pvalue
        else:
            expected = stats.mannwhitneyu(a, b, method="asymptotic", use_continuity=True).pvalue
        u, p = mann_whitney_u(a, b)
        assert u == stats.mannwhitneyu(a, b).statistic
        if method == "exact" or n1 + n2 > 50:  # small tied samples: ours is the exact permutation
            assert p == pytest.approx(expected, rel=0.02)


def test_smallest_p_and_bootstrap():
    assert smallest_p(3, 3) == pytest.approx(0.1)
    assert smallest_p(4, 4) < 0.05
    low, high = bootstrap_change([100, 101, 99, 100], [80, 81, 79, 80])
    assert -0.22 < low <= -0.2 <= high < -0.18
    assert bootstrap_change([100, 100], [90, 90]) == pytest.approx((-0.1, -0.1))


def test_verdicts_on_synthetic_numbers():
    base = [100.0, 102.0, 98.0, 101.0, 99.0]
    assert compare_samples(base, [99.0, 101.0, 100.0, 98.0, 102.0], 0.05).verdict == "no change"
    regression = compare_samples(base, [80.0, 81.0, 79.0, 82.0, 78.0], 0.05)
    assert regression.verdict == "regression"
    assert regression.change == pytest.approx(-0.2)
    assert regression.ci_low <= -0.2 <= regression.ci_high and regression.p_value < 0.05
    assert compare_samples(base, [120.0, 121.0, 119.0, 122.0, 118.0], 0.05).verdict == "improvement"
    # Lower is better (latency): a rise is the regression.
    assert compare_samples(base, [120.0, 121.0, 119.0, 122.0, 118.0], 0.05,
                           higher_is_better=False).verdict == "regression"
    # A significant change within the threshold is no change.
    assert compare_samples(base, [96.0, 95.5, 96.5, 95.8, 96.2], 0.10).verdict == "no change"
    # Too few repetitions: one each, or 3 and 3 (the U test cannot reach p < 0.05).
    one = compare_samples([100.0], [50.0], 0.05)
    assert one.verdict == "inconclusive" and "too few repetitions" in one.reason
    three = compare_samples([100.0, 101.0, 99.0], [50.0, 51.0, 49.0], 0.05)
    assert three.verdict == "inconclusive" and "4 or more" in three.reason
    # Beyond the threshold, enough repetitions, but overlapping: not significant.
    noisy = compare_samples([100, 60, 140, 90, 110], [70, 130, 50, 95, 80], 0.05)
    assert noisy.verdict == "inconclusive" and "not significant" in noisy.reason


# ------------------------------------------------------------------ real runs on loopback

@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """baseline: unpaced, 4 reps; slow: paced at 20% of the baseline's rate, 4 reps;
    slow_again: the same paced config, 3 reps. Paced runs are steady on a noisy host,
    which is what lets two of them show "no change" reliably."""
    root = tmp_path_factory.mktemp("compare")
    base_cfg = load_config(None, [*SHORT, "run.repetitions=4", "target.port=47310"])
    run_sweep(base_cfg, root / "baseline")
    rx = json.loads((root / "baseline" / "sweep.json").read_text())
    rates = [json.loads((root / "baseline" / t["results"] / "run.json").read_text())["summary"]["rx_pps"]
             for t in rx["trials"]]
    slow = f"senders.rate={0.2 * float(np.median(rates)):.0f}"
    run_sweep(load_config(None, [*SHORT, "run.repetitions=4", "target.port=47311", slow]), root / "slow")
    run_sweep(load_config(None, [*SHORT, "run.repetitions=3", "target.port=47312", slow]),
              root / "slow_again")
    return root


def test_same_config_is_no_change(runs):
    done = pps("compare", str(runs / "slow"), str(runs / "slow_again"), "--threshold", "25")
    assert done.returncode == 0, done.stdout + done.stderr
    assert "verdict: no change" in done.stdout


def test_capped_rate_is_a_regression(runs):
    done = pps("compare", str(runs / "baseline"), str(runs / "slow"), "--threshold", "25", "--json")
    assert done.returncode == 1, done.stdout + done.stderr
    result = json.loads(done.stdout)
    assert result["verdict"] == "regression"
    (trial,) = result["trials"]
    assert trial["verdict"] == "regression" and trial["change"] < -0.5
    assert trial["ci_low"] <= trial["change"] <= trial["ci_high"]
    assert trial["n_base"] == 4 and trial["n_cur"] == 4
    assert result["differences"] == []
    assert any(n["what"] == "config.senders.rate" for n in result["notes"])


def _edit_runs(path: Path, edit) -> None:
    for run_json in path.glob("trials/*/run.json"):
        run = json.loads(run_json.read_text())
        edit(run)
        run_json.write_text(json.dumps(run))


def test_refuses_runs_that_differ(runs, tmp_path):
    other = tmp_path / "other"
    shutil.copytree(runs / "slow_again", other)

    def edit(run):
        run["host"]["before"]["kernel"] = "5.10.0-old"
        run["config"]["senders"]["batch"] = 8
        run["checks"] = [{"name": "cpu-governor", "status": "fail", "seen": "powersave", "advice": "x"}]

    _edit_runs(other, edit)
    sweep = json.loads((other / "sweep.json").read_text())
    sweep["config"]["senders"]["batch"] = 8
    (other / "sweep.json").write_text(json.dumps(sweep))
    done = pps("compare", str(runs / "slow"), str(other), "--json")
    assert done.returncode == 2
    result = json.loads(done.stdout)
    assert result["verdict"] == "refused" and result["trials"] == []
    assert {d["what"] for d in result["differences"]} == {"host.kernel", "config.senders.batch"}
    assert any(n["what"] == "check.cpu-governor" for n in result["notes"])
    assert "host.kernel" in done.stderr and "--force" in done.stderr
    forced = compare_dirs(runs / "slow", other, 25, force=True)
    assert forced["verdict"] == "no change" and forced["forced"]


def test_bad_input_is_a_one_line_error(tmp_path):
    done = pps("compare", str(tmp_path / "missing"), str(tmp_path))
    assert done.returncode == 2 and len(done.stderr.strip().splitlines()) == 1
    assert "Traceback" not in done.stderr
