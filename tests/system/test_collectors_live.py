"""Collectors reading live counters in a private namespace with a veth pair, checked against
the usual tools (ethtool -S, nstat) and each other. Needs root for the namespace; the
parsers on captured text are in tests/unit/test_collectors.py."""

from __future__ import annotations

import os
import shutil
import subprocess

import pytest
from support import nstat_values

from pps.counters.collectors import Scope, Unavailable, device_drivers, link, nic, snapshot, snmp


@pytest.mark.skipif(not shutil.which("ethtool"), reason="ethtool not installed")
def test_live_ethtool_equals_ethtool_S(veth_netns):
    ours = nic.read(veth_netns, "va")
    out = subprocess.run(["ip", "netns", "exec", veth_netns, "ethtool", "-S", "va"],
                         capture_output=True, text=True, check=True).stdout
    assert sorted(ours, key=repr) == sorted(nic.parse(out, "va"), key=repr)
    drivers = device_drivers([Scope(veth_netns, ("va", "lo"))])
    assert drivers[(veth_netns, "va")] == "veth"


@pytest.mark.skipif(not shutil.which("nstat"), reason="nstat not installed")
def test_live_snmp_equalsnstat_values(veth_netns, tmp_path):
    def ours() -> dict:
        got = {}
        for filename in snmp.FILES.values():
            got.update({r.name: r.value for r in snmp.read(veth_netns, filename)})
        return got

    before = ours()
    env = dict(os.environ, NSTAT_HISTORY=str(tmp_path / "hist"))
    out = subprocess.run(["ip", "netns", "exec", veth_netns, "nstat", "-asz"], env=env,
                         capture_output=True, text=True, check=True).stdout
    after = ours()
    theirs = nstat_values(out)
    # The veth just came up: IPv6 sends its MLD and DAD packets while we read. Counters
    # that moved between our two reads are left out; every other one must match exactly.
    still = {k for k in theirs if before.get(k) == after.get(k)}
    assert len(still) > 0.9 * len(theirs) > 100
    assert {k: before.get(k) for k in still} == {k: theirs[k] for k in still}


def test_live_link_stats(veth_netns):
    rs = link.read(veth_netns, ("lo", "va"))
    got = {(r.device, r.name) for r in rs}
    for field in ("rx_missed_errors", "rx_dropped", "rx_fifo_errors", "rx_nohandler",
                  "tx_dropped"):
        assert ("lo", field) in got and ("va", field) in got


def test_live_snapshot_scopes(veth_netns):
    readings, missing = snapshot([Scope(veth_netns, ("lo", "va"), (9999,)), Scope(None, ("lo",))])
    sources = {(ns, r.source) for ns, r in readings}
    for src in ("snmp", "netstat", "snmp6", "link"):
        assert (veth_netns, src) in sources and (None, src) in sources
    assert (veth_netns, "ethtool") in sources  # veth has stats
    for src in ("softnet", "interrupts", "softirqs"):
        assert (None, src) in sources and (veth_netns, src) not in sources
    lo_missing = [u for u in missing if u.source == "ethtool" and u.device == "lo"]
    assert lo_missing and "no NIC statistics" in lo_missing[0].reason
    assert all(isinstance(u, Unavailable) for u in missing)
