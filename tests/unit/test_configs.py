"""Every config shipped in configs/ loads, and runs (short) where this machine can run it
without privileges: on loopback. The lab configs run in tests/system/test_configs_lab.py."""

from __future__ import annotations

import json

import pytest
from support import CONFIG_DIR, DATA, pps

from pps.config.model import load_config
from pps.errors import ConfigError

CONFIGS = sorted(CONFIG_DIR.glob("*.toml"))
SHORT = ["--set", "run.duration=0.5", "--set", "run.warmup=0.2", "--set", "run.drain=0.2",
         "--set", "run.interval=0.25"]
NEEDS_TWO_NODES = {"numa-placement.toml"}
NEEDS_HOSTS = {"two-hosts.toml"}  # run against an SSH "host" in tests/system/test_multihost.py


def needs_lab(path) -> bool:
    """A lab config runs in tests/system/test_configs_lab.py."""
    try:
        return load_config(path).lab.enabled
    except ConfigError:
        return False  # test_config_loads says why


NEEDS_LAB = {p.name for p in CONFIGS if needs_lab(p)}
FIXTURE = DATA / "topo" / "mlx5-2socket"


def test_there_are_configs():
    assert len(CONFIGS) >= 4


@pytest.mark.parametrize("path", CONFIGS, ids=lambda p: p.name)
def test_config_loads(path):
    config = load_config(path)
    assert config.source == str(path)


@pytest.mark.parametrize("path", [p for p in CONFIGS
                                  if p.name not in NEEDS_TWO_NODES | NEEDS_HOSTS | NEEDS_LAB],
                         ids=lambda p: p.name)
def test_config_runs_short(path, tmp_path):
    config = load_config(path)
    port = 47200 + CONFIGS.index(path)  # unique: parallel runs on one port would share it
    extra = ["--set", f"target.port={port}"] + (["--set", "run.repetitions=1"] if config.sweep else [])
    command = "sweep" if config.sweep else "run"
    proc = pps(command, str(path), "--out", str(tmp_path / "res"), "--json", *SHORT, *extra,
               timeout=180)
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    if command == "run":
        assert summary["rx_packets"] > 0
        ledger = summary["ledger"]
        moved = {key for key, count in ledger["drops"].items() if count}
        assert moved <= set(ledger["shared"])  # every root-namespace figure is flagged


@pytest.mark.parametrize("path", [p for p in CONFIGS if p.name in NEEDS_TWO_NODES],
                         ids=lambda p: p.name)
def test_bare_metal_config_plans_on_a_captured_two_socket_machine(path):
    proc = pps("run", str(path), "--dry-run", "--json", "--root", str(FIXTURE), timeout=180)
    assert proc.returncode == 0, proc.stderr
    assert len(json.loads(proc.stdout)["workers"]) == 6
