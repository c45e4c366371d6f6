"""Runs of any length on loopback, the short version of bench/soak.py that CI runs: a run at
20 Hz with run.display_interval = 0 shows every sample, and a Ctrl-C'd run still saves its
counters. The sampler's memory and a lab run at 20 Hz are in tests/system/test_soak.py."""

from __future__ import annotations

import json
import re
import signal
import time

import pandas as pd
from support import pps, pps_start

STATUS = re.compile(r"^\[\s*[\d.]+-\s*[\d.]+ s\]")


def test_display_interval_zero_shows_every_sample(tmp_path):
    spill = tmp_path / "tmp"  # the run's spill directory goes here, not in /tmp
    spill.mkdir()
    proc = pps("run", "--json", "--out", str(tmp_path / "r"), "--set", "run.duration=3",
               "--set", "run.warmup=1", "--set", "run.drain=0.3", "--set", "run.interval=0.05",
               "--set", "target.port=47931", "--set", "run.display_interval=0",
               "--set", "collect.enabled=false", timeout=120, env={"TMPDIR": str(spill)})
    assert proc.returncode == 0, proc.stderr
    lines = [ln for ln in proc.stderr.splitlines() if STATUS.match(ln)]
    assert len(lines) >= 70


def test_a_stopped_run_saves_its_counters(tmp_path):
    proc = pps_start("run", "--out", str(tmp_path / "r"), "--set", "run.duration=20",
                     "--set", "run.warmup=0.2", "--set", "run.interval=0.05",
                     "--set", "target.port=47932")
    # Wait for the first status line (the run is measuring; warnings may come first).
    assert any(STATUS.match(proc.stdout.readline()) for _ in range(20))
    time.sleep(1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=60)
    assert proc.returncode == 130
    counters = pd.read_parquet(tmp_path / "r" / "counters.parquet")
    assert counters["t_s"].nunique() >= 20  # the parser, deaf to Ctrl-C, finished its work
    assert json.loads((tmp_path / "r" / "run.json").read_text())["summary"]["ledger"]["sent"] > 0
