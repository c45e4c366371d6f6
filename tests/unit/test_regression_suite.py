"""The standard regression suite in configs/regression/: every config loads, and each runs
(short) here: the loopback ones as one-repetition sweeps, the search within a small budget.
The lab one runs in its own lab in tests/system/test_regression_suite_lab.py. What the
README's nightly job runs is what is tested."""

from __future__ import annotations

import json

import pytest
from support import CONFIG_DIR, pps

from pps.config.model import load_config

SUITE = sorted((CONFIG_DIR / "regression").glob("*.toml"))
LAB = {"lab-multiqueue"}  # run in tests/system/test_regression_suite_lab.py
SHORT = ["--set", "run.duration=0.3", "--set", "run.warmup=0.1", "--set", "run.drain=0.1",
         "--set", "run.interval=0.1", "--set", "run.repetitions=1"]


def test_the_suite_has_its_scenarios():
    names = {p.stem for p in SUITE}
    assert names == {"loopback-single-flow", "lab-multiqueue", "gso", "busy-poll", "ndr-search"}
    for path in SUITE:
        config = load_config(path)
        assert config.run.repetitions >= 5 or config.search.budget <= 120, path.name


@pytest.mark.parametrize("path", [p for p in SUITE if p.stem not in LAB], ids=lambda p: p.stem)
def test_suite_config_runs_short(path, tmp_path):
    port = 47400 + SUITE.index(path)
    sets = [*SHORT, "--set", f"target.port={port}", "--set", "run.label=suite-test"]
    if path.stem == "ndr-search":
        command = ["search", str(path), "--set", "search.budget=5", "--set", "search.precision=0.2",
                   "--set", "search.confirm=0"]
    else:
        command = ["sweep", str(path)]
    done = pps(*command, "--out", str(tmp_path / "out"), "--json", *sets, timeout=180)
    # A 5 s search may end before any rate passed (exit 1); it still made its trials.
    assert done.returncode in ((0, 1) if path.stem == "ndr-search" else (0,)), done.stderr
    result = json.loads(done.stdout)
    if path.stem == "ndr-search":
        assert result["trials"] and result["trials"][0]["phase"] == "upper"
    else:
        assert result["statuses"] == {"done": 1}
        assert result["runs"][0]["rx_pps"] > 0
    # Every result of the suite is something compare reads: here, against itself.
    same = pps("compare", str(tmp_path / "out"), str(tmp_path / "out"), "--json", timeout=180)
    assert same.returncode in (0, 1), same.stderr
    assert json.loads(same.stdout)["verdict"] in ("no change", "inconclusive")
