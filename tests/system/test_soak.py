"""Runs of any length: the short version of bench/soak.py that CI runs (with the loopback
half in tests/unit/test_soak_loopback.py). Needs root: a namespace and a lab.

Memory must not grow with the number of samples: thousands of real captures through the
sampler leave this process's resident memory where it was after the first few hundred (the
old sampler kept ~18 KB of raw capture per sample, and parsed them all at the end). A short
lab run at 20 Hz shows a status line a second, streams its tables, closes its ledger, and
leaves no spill directory behind."""

from __future__ import annotations

import json
import re
import subprocess
import uuid

import pandas as pd
from support import pps

from pps.counters.collectors import Scope
from pps.counters.sampler import CounterSampler
from pps.host import netns

STATUS = re.compile(r"^\[\s*[\d.]+-\s*[\d.]+ s\]")


def rss_kib() -> int:
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS:"))


def test_sampler_memory_is_flat_in_the_number_of_samples(veth_netns):
    # Traffic in the namespace between samples, so every counter file changes.
    sender = netns.call_in(veth_netns, lambda: __import__("socket").socket(2, 2))
    sampler = CounterSampler.here([Scope(veth_netns, ("va", "lo"), (48999,))], veth_netns, veth_netns, "va")
    try:
        sampler("start")
        for i in range(3000):
            sender.sendto(b"x" * 32, ("127.0.0.1", 48999))
            sampler("interval")
            if i == 499:
                warmed = rss_kib()
        grown_kib = rss_kib() - warmed
        sampler("end")
        table = sampler.table()
    finally:
        sender.close()
    # 2,500 samples of ~18 KB raw each would be 45 MB; a few MB of allocator noise is not.
    assert grown_kib < 8 * 1024, f"grew {grown_kib} KiB over 2,500 samples"
    assert sampler.finish().snapshots == 3002 and table.rows > 3002 * 100
    tot = sampler.totals()
    noports = tot[(tot["source"] == "snmp") & (tot["name"] == "UdpNoPorts")]
    assert int(noports["delta"].iloc[0]) == 3000 and int(noports["samples"].iloc[0]) == 3002


def _run(tmp_path, *sets: str, name: str = "r") -> tuple[subprocess.CompletedProcess, dict]:
    spill = tmp_path / "tmp"
    spill.mkdir(exist_ok=True)
    args = [a for s in sets for a in ("--set", s)]
    proc = pps("run", "--json", "--out", str(tmp_path / name), "--set", "run.duration=3",
               "--set", "run.warmup=1", "--set", "run.drain=0.3", "--set", "run.interval=0.05",
               *args, timeout=120, env={"TMPDIR": str(spill)})
    assert proc.returncode == 0, proc.stderr
    return proc, json.loads(proc.stdout)


def test_a_lab_run_at_20_hz_shows_a_line_a_second_and_streams_its_tables(tmp_path):
    proc, summary = _run(tmp_path, "lab.enabled=true", f"lab.id=s{uuid.uuid4().hex[:6]}",
                         "lab.queues=2")
    lines = [ln for ln in proc.stderr.splitlines() if STATUS.match(ln)]
    assert 3 <= len(lines) <= 5, lines  # 4 s of run at the 1 s display pace, not 80 lines
    assert summary["ledger"]["unaccounted"] == 0 and summary["sent"] > 0
    samples = pd.read_parquet(tmp_path / "r" / "samples.parquet")
    assert samples["t_s"].nunique() >= 70 and len(samples) == 2 * samples["t_s"].nunique()
    counters = pd.read_parquet(tmp_path / "r" / "counters.parquet")
    assert counters["t_s"].nunique() >= 70
    # The counters' totals, read back from the saved table, are the ledger's.
    rx_ns = f"pps-{json.loads((tmp_path / 'r' / 'run.json').read_text())['lab']['id']}-rx"
    udp = counters[(counters["source"] == "snmp") & (counters["name"] == "UdpInDatagrams")
                   & (counters["netns"] == rx_ns)]
    assert udp["delta"].sum() == summary["received"]
    assert not list((tmp_path / "tmp").iterdir())  # every spill directory removed
