"""The lab scenario of the standard regression suite (configs/regression/lab-multiqueue.toml)
runs short in its own lab, as a one-repetition sweep, and compare reads what it made. The
loopback scenarios are in tests/unit/test_regression_suite.py. Needs root for the lab."""

from __future__ import annotations

import json

from support import CONFIG_DIR, pps

SUITE = sorted((CONFIG_DIR / "regression").glob("*.toml"))
PATH = CONFIG_DIR / "regression" / "lab-multiqueue.toml"
SHORT = ["--set", "run.duration=0.3", "--set", "run.warmup=0.1", "--set", "run.drain=0.1",
         "--set", "run.interval=0.1", "--set", "run.repetitions=1"]


def test_lab_suite_config_runs_short(tmp_path):
    port = 47400 + SUITE.index(PATH)  # the port the suite's order gives it, as before
    done = pps("sweep", str(PATH), "--out", str(tmp_path / "out"), "--json", *SHORT,
               "--set", f"target.port={port}", "--set", "run.label=suite-test",
               "--set", "lab.id=t17suite", timeout=180)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout)
    assert result["statuses"] == {"done": 1}
    assert result["runs"][0]["rx_pps"] > 0
    # Every result of the suite is something compare reads: here, against itself.
    same = pps("compare", str(tmp_path / "out"), str(tmp_path / "out"), "--json", timeout=180)
    assert same.returncode in (0, 1), same.stderr
    assert json.loads(same.stdout)["verdict"] in ("no change", "inconclusive")
