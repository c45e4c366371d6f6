"""One run pipeline over a list of hosts: a role that spans two SSH hosts (incast), and
queue-aligned placement in the lab, both run as a user runs them."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest
import sshhost
from support import pps


def sets(*items: str) -> list[str]:
    return [a for s in items for a in ("--set", s)]


@pytest.fixture(scope="module")
def two_hosts(tmp_path_factory):
    """Hosts a and b, each a namespace with its own sshd. b reaches a's address on this host
    through this host (a route via its veth), so both can send to one receiver address."""
    if os.geteuid() != 0 or not os.path.exists(sshhost.SSHD) or not shutil.which("ssh"):
        pytest.fail("these tests need root, openssh-server and openssh-client (.ci/run installs them)")
    a = sshhost.start(tmp_path_factory.mktemp("host_a"))
    try:
        b = sshhost.start(tmp_path_factory.mktemp("host_b"))
        try:
            subprocess.run(["ip", "-n", b.netns, "route", "add", f"{a.local_addr}/32",
                            "via", b.local_addr], check=True)
            yield a, b
        finally:
            sshhost.stop(b)
    finally:
        sshhost.stop(a)
    assert not Path(f"/run/netns/{a.netns}").exists()


def test_senders_on_two_ssh_hosts_and_receivers_here_close_the_ledger(two_hosts, tmp_path):
    a, b = two_hosts
    proc = pps("run", "--yes", "--json", "--duration", "1", "--out", str(tmp_path / "r"),
               *sets(*a.sets("a"), *b.sets("b"), f"target.address={a.local_addr}",
                     "target.port=48311", 'senders.host=["a", "b"]', "senders.count=1",
                     "senders.flows=2", "senders.rate=40000", "receivers.count=2",
                     "run.warmup=0.3", "run.drain=0.3", "run.interval=0.25"))
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    senders = {(w["host"], w["index"]): w["packets"] for w in s["workers"] if w["role"] == "sender"}
    # Each listed host ran `count` senders, with indices unique across hosts.
    assert set(senders) == {("a", 0), ("b", 1)}
    assert all(n > 0 for n in senders.values()), senders
    led = s["ledger"]
    assert led["sent"] == sum(senders.values()) == s["sent"]
    # senders.rate is for all senders together, split over both hosts.
    assert 0.8 * 40000 < s["tx_pps"] < 1.2 * 40000
    # Every packet is received or lands in a drop row: the ledger closes.
    assert led["unaccounted"] == 0, led
    # Flow ids stay unique across hosts: no receiver saw a duplicate or a foreign flow.
    run = json.loads((tmp_path / "r" / "run.json").read_text())
    assert run["summary"]["foreign"] == 0 and run["summary"]["duplicate"] == 0
    assert set(run["hosts"]) == {"a", "b", "local"}
    assert run["hosts"]["a"]["roles"] == ["sender"] and run["hosts"]["local"]["roles"] == ["receiver"]
    # The ledger read each sender host's own counters, under its own label.
    assert "one-way latency is not reported" in " ".join(s["warnings"])


def test_a_lab_run_with_local_placement_runs_where_the_queues_are_served(tmp_path):
    """RPS steers rx-0 to CPU 0 and rx-1 to CPU 1: `local` puts each receiver on its queue's
    CPU, read in the lab's namespace (its sysfs), with target.device unset."""
    if os.geteuid() != 0:
        pytest.fail("the lab needs root")
    lab_id = f"pl{os.getpid() % 100000}"
    proc = pps("run", "--json", "--duration", "0.5", "--out", str(tmp_path / "r"),
               *sets("lab.enabled=true", f"lab.id={lab_id}", "lab.queues=2", "lab.rps_cpus=0,1",
                     "receivers.count=2", "receivers.placement=local", "senders.rate=20000",
                     "run.warmup=0.2"))
    try:
        assert proc.returncode == 0, proc.stderr
        run = json.loads((tmp_path / "r" / "run.json").read_text())
        receivers = sorted((w for w in run["plan"]["workers"] if w["role"] == "receiver"),
                           key=lambda w: w["index"])
        assert [(w["queue"], w["cpu"]) for w in receivers] == [(0, 0), (1, 1)], receivers
        assert all("does RPS for" in w["reason"] for w in receivers)
        assert run["summary"]["ledger"]["unaccounted"] == 0
    finally:
        assert not Path(f"/run/netns/pps-{lab_id}-rx").exists()


def test_target_device_is_honoured_in_a_dry_run_of_the_lab():
    """A dry run makes no lab: it plans on CPUs and says nothing about a missing device."""
    proc = pps("run", "--dry-run", "--json", *sets("lab.enabled=true", "receivers.count=2"))
    assert proc.returncode == 0, proc.stderr
    plan = json.loads(proc.stdout)["plan"]
    assert [w["role"] for w in plan["workers"]].count("receiver") == 2
