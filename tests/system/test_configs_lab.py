"""Every lab config shipped in configs/ runs (short) in its own lab, with a ledger that
closes exactly: the lab's counters are private. The loopback configs are in
tests/unit/test_configs.py. Needs root for the lab."""

from __future__ import annotations

import json

import pytest
from support import CONFIG_DIR, pps

from pps.config.model import load_config
from pps.errors import ConfigError

CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
SHORT = ["--set", "run.duration=0.5", "--set", "run.warmup=0.2", "--set", "run.drain=0.2",
         "--set", "run.interval=0.25"]


def needs_lab(path) -> bool:
    try:
        return load_config(path).lab.enabled
    except ConfigError:
        return False  # tests/unit/test_configs.py::test_config_loads says why


@pytest.mark.parametrize("path", [p for p in CONFIGS if needs_lab(p)], ids=lambda p: p.name)
def test_lab_config_runs_short(path, tmp_path):
    config = load_config(path)
    port = 47200 + CONFIGS.index(path)  # unique: parallel runs on one port would share it
    extra = ["--set", f"target.port={port}"]
    if config.sweep:
        extra += ["--set", "run.repetitions=1"]
    command = "sweep" if config.sweep else "run"
    proc = pps(command, str(path), "--out", str(tmp_path / "res"), "--json", *SHORT, *extra,
               timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    if command == "run":
        assert summary["rx_packets"] > 0
        ledger = summary["ledger"]
        # Private counters: exact (loopback's are shared with the host).
        assert abs(ledger["unaccounted"]) <= max(2, 0.001 * ledger["sent"])
