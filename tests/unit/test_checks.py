"""Host checks (pps.host.checks, `pps check`) on captured trees and on this machine.

Fixtures: tests/data/checks/mlx5-{tuned,untuned} (make_fixtures.py there) are the 2-socket
mlx5 machine with every check's files; tests/data/topo/* have none of them, which is how
most checks reach "n/a".
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time

import pytest
from support import DATA, ROOT, pps

from pps.config.model import load_config
from pps.errors import ConfigError
from pps.host.checks import (
    CHECK_NAMES,
    STATUSES,
    CheckResult,
    Context,
    checks_for_run,
    format_report,
    required_failures,
    results_json,
    run_checks,
)
from pps.host.checks.base import busy_fraction, parse_proc_stat_line, read_processes
from pps.host.topology import read_topology
from pps.plan.placement import plan_workers

TUNED = os.path.join(DATA, "checks", "mlx5-tuned")
UNTUNED = os.path.join(DATA, "checks", "mlx5-untuned")
VIRTIO = os.path.join(DATA, "topo", "virtio-vm")
THIS = os.path.join(DATA, "topo", "this-host")
NIC = "enp129s0f0np0"


def context(root, device, *sets, plan=True, **kw):
    config = load_config(None, sets)
    topo = read_topology(root, devices=[device] if device else [])
    p = plan_workers(topo, config, device) if plan else None
    kw.setdefault("is_root", True)
    return Context(root, topo, device, config, p, **kw)


def results(root, device, *sets, **kw):
    return {r.name: r for r in run_checks(context(root, device, *sets, **kw))}


def status(root, device, *sets, **kw):
    return {n: r.status for n, r in results(root, device, *sets, **kw).items()}


BUSY = ("receivers.count=4", "receivers.rcvbuf=8388608", "senders.sndbuf=8388608",
        "receivers.mode=busy-poll")


# ---------------------------------------------------------------------------- every outcome

def test_tuned_machine_is_all_ok():
    got = status(TUNED, NIC, *BUSY)
    assert list(got) == list(CHECK_NAMES)
    # not loaded; NAPI without RPS skips the backlog; a captured tree holds no XDP state
    na = {"conntrack", "netdev-backlog", "xdp-attached"}
    assert {n for n, s in got.items() if s == "n/a"} == na
    assert all(s == "ok" for n, s in got.items() if n not in na), got


def test_untuned_machine_warns():
    got = status(UNTUNED, NIC, *BUSY, "receivers.busy_poll_us=0", is_root=False)
    expect_ok = {"rps-xps", "nic-numa"}  # 8 IRQ queues; spread keeps receivers on the NIC node
    assert {n for n, s in got.items() if s != "warn"} == expect_ok | {"netdev-backlog",
                                                                       "xdp-attached"}
    assert got["netdev-backlog"] == got["xdp-attached"] == "n/a"
    assert all(got[n] == "ok" for n in expect_ok)


def test_advice_is_the_command():
    r = results(UNTUNED, NIC, *BUSY, is_root=False)
    assert r["rss-hash"].advice == f"ethtool -N {NIC} rx-flow-hash udp4 sdfn"
    assert r["rings"].advice == f"ethtool -G {NIC} rx 8192 tx 8192"
    assert r["channels"].advice == f"ethtool -L {NIC} combined 16"
    assert r["irqbalance"].advice == "systemctl stop irqbalance"
    assert "--dport 4321 -j NOTRACK" in r["conntrack"].advice
    assert r["rmem-max"].advice == "sysctl -w net.core.rmem_max=8388608"
    assert r["rp-filter"].advice == ("sysctl -w net.ipv4.conf.all.rp_filter=0 "
                                     f"net.ipv4.conf.{NIC}.rp_filter=0")
    assert "stress-ng (4711) on CPU 8" in r["cpu-load"].seen
    assert all(x.advice is None for x in r.values() if x.status != "warn")


def test_na_on_a_bare_tree():
    """virtio-vm has topology files only: no cpufreq, cpuidle, processes, sysctls, ethtool."""
    got = status(VIRTIO, "eth0", "receivers.mode=busy-poll")
    for name in ("irqbalance", "cpu-governor", "turbo", "c-states", "cpu-load", "conntrack",
                 "netfilter", "rp-filter", "rss-hash", "channels", "rings", "rmem-max",
                 "wmem-max", "netdev-backlog", "busy-poll", "nic-numa"):
        assert got[name] == "n/a", name


def test_virtual_devices_are_na_for_nic_checks():
    got = status(TUNED, "lo")
    for name in ("rp-filter", "rss-hash", "channels", "rings", "rps-xps"):
        assert got[name] == "n/a", name


def test_isolated_cpus_outcomes():
    assert status(THIS, "eth0")["isolated-cpus"] == "n/a"  # 2 CPUs: nothing to set apart
    assert status(TUNED, NIC)["isolated-cpus"] == "ok"
    assert status(TUNED, NIC, "receivers.cpus=0-1")["isolated-cpus"] == "warn"
    assert status(UNTUNED, NIC)["isolated-cpus"] == "warn"


def test_rps_on_one_queue_device():
    r = results(THIS, "eth0")["rps-xps"]  # virtio_net, one queue, IRQ on CPU 1, no RPS
    assert r.status == "warn"
    assert r.advice == "echo 1 > /sys/class/net/eth0/queues/rx-0/rps_cpus"
    assert status(TUNED, NIC)["rps-xps"] == "ok"


def test_backlog_outcomes():
    assert status(TUNED, "lo")["netdev-backlog"] == "ok"
    assert status(UNTUNED, "lo")["netdev-backlog"] == "warn"
    assert status(TUNED, NIC)["netdev-backlog"] == "n/a"


def test_socket_buffer_outcomes():
    assert status(UNTUNED, NIC, "receivers.rcvbuf=8388608")["rmem-max"] == "ok"  # root forces
    r = results(UNTUNED, NIC, "senders.sndbuf=8388608", is_root=False)["wmem-max"]
    assert r.status == "warn" and r.advice == "sysctl -w net.core.wmem_max=8388608"
    assert status(UNTUNED, NIC, is_root=False)["rmem-max"] == "ok"  # not set: default used


def test_busy_poll_outcomes():
    assert status(TUNED, NIC)["busy-poll"] == "n/a"
    assert status(TUNED, NIC, "receivers.mode=busy-poll")["busy-poll"] == "ok"
    got = status(UNTUNED, NIC, "receivers.mode=busy-poll", is_root=False)
    assert got["busy-poll"] == "warn"  # SO_BUSY_POLL 50 > busy_read 0 without CAP_NET_ADMIN


def test_nic_numa_outcomes():
    assert status(TUNED, NIC)["nic-numa"] == "ok"
    r = results(TUNED, NIC, "receivers.cpus=0-1")["nic-numa"]
    assert r.status == "warn" and "node 1" in r.seen
    assert status(TUNED, NIC, "receivers.placement=remote")["nic-numa"] == "ok"
    assert status(TUNED, NIC, plan=False)["nic-numa"] == "n/a"


def test_cpu_load_with_a_sampler():
    idle = {c: 0.01 for c in range(32)}
    assert status(TUNED, NIC, cpu_load=lambda: idle)["cpu-load"] == "ok"
    r = results(TUNED, NIC, cpu_load=lambda: {**idle, 8: 0.9})["cpu-load"]
    assert r.status == "warn" and "CPU 8 90%" in r.seen
    assert status(TUNED, NIC)["cpu-load"] == "ok"  # captured: loadavg 0.02, none runnable


def test_turbo_boost_and_conntrack_on_a_tree(tmp_path):
    root = tmp_path / "t"
    shutil.copytree(VIRTIO, root, symlinks=True)
    (root / "sys/devices/system/cpu/cpufreq").mkdir(parents=True)
    (root / "sys/devices/system/cpu/cpufreq/boost").write_text("1\n")
    (root / "proc/sys/net/netfilter").mkdir(parents=True)
    (root / "proc/sys/net/netfilter/nf_conntrack_count").write_text("0\n")
    got = status(str(root), "eth0")
    assert got["turbo"] == "warn" and got["conntrack"] == "ok"
    (root / "sys/devices/system/cpu/cpufreq/boost").write_text("0\n")
    assert status(str(root), "eth0")["turbo"] == "ok"


def test_a_broken_check_is_na_not_a_crash(tmp_path):
    root = tmp_path / "t"
    shutil.copytree(TUNED, root, symlinks=True)
    (root / f"ethtool/{NIC}.json").write_text('{"rings": {"rx": 1}}')
    got = results(str(root), NIC)
    assert got["rings"].status == "n/a" and "could not check" in got["rings"].seen


def test_checks_only_read():
    def digest():
        h = hashlib.sha256()
        for d, _, files in sorted(os.walk(UNTUNED)):
            for f in sorted(files):
                path = os.path.join(d, f)
                # A driver link's target is an empty directory, which git does not keep,
                # so in a clean checkout it dangles: hash where it points, not its content.
                if os.path.islink(path):
                    content = os.readlink(path).encode()
                else:
                    content = open(path, "rb").read()
                h.update(f.encode() + content)
        return h.hexdigest()

    before = digest()
    run_checks(context(UNTUNED, NIC, *BUSY))
    assert digest() == before


# ---------------------------------------------------------------------------- parsers

def test_proc_stat_with_odd_comm():
    fields = ["0"] * 49
    fields[35] = "7"
    assert parse_proc_stat_line("9 (a b) (c)) R " + " ".join(fields)) == ("R", 7)
    assert parse_proc_stat_line("") == ("?", None)


def test_busy_fraction():
    a = "cpu  1 1 1 1\ncpu0 10 0 0 90 0\ncpu1 0 0 0 100 0\n"
    b = "cpu  1 1 1 1\ncpu0 60 0 0 140 0\ncpu1 0 0 0 200 0\n"
    assert busy_fraction(a, b) == {0: 0.5, 1: 0.0}


def test_processes_of_a_tree():
    procs = read_processes(UNTUNED)
    assert [(p.pid, p.comm, p.state, p.cpu) for p in procs] == [
        (1, "systemd", "S", 0), (812, "irqbalance", "S", 3), (4711, "stress-ng", "R", 8)]


# ---------------------------------------------------------------------------- output

def test_json_shape_is_stable():
    out = results_json(run_checks(context(UNTUNED, NIC, *BUSY)))
    assert set(out) == {"checks", "warnings"}
    assert [c["name"] for c in out["checks"]] == list(CHECK_NAMES)
    for c in out["checks"]:
        assert set(c) == {"name", "status", "seen", "advice"} and c["status"] in STATUSES
    assert out["warnings"] == sum(c["status"] == "warn" for c in out["checks"])
    json.dumps(out)


def test_names_are_stable_kebab_case():
    assert len(set(CHECK_NAMES)) == len(CHECK_NAMES)
    assert all(n == n.lower() and " " not in n and "_" not in n for n in CHECK_NAMES)
    for name in ("irqbalance", "cpu-governor", "conntrack", "rss-hash", "rmem-max", "nic-numa"):
        assert name in CHECK_NAMES


def test_report_text():
    rs = [CheckResult("a", "ok", "fine"), CheckResult("bb", "warn", "bad", "fix-it --now"),
          CheckResult("c", "n/a", "absent")]
    text = format_report(rs)
    lines = text.splitlines()
    assert lines[0].startswith("ok  ") and "WARN" in lines[1] and "fix: fix-it --now" in lines[2]
    assert lines[3].startswith("n/a") and lines[-1] == "1 warning, 3 checks"
    assert text.count("fix:") == 1


def test_required_failures():
    rs = [CheckResult("irqbalance", "warn", "running", "systemctl stop irqbalance"),
          CheckResult("rss-hash", "ok", "sdfn"), CheckResult("turbo", "n/a", "none")]
    assert required_failures(rs, ()) == []
    assert required_failures(rs, ("rss-hash", "turbo")) == []
    assert required_failures(rs, ("irqbalance",)) == [
        "irqbalance: running (fix: systemctl stop irqbalance)"]
    with pytest.raises(ConfigError, match="irqbalanse.*checks are irqbalance"):
        required_failures(rs, ("irqbalanse",))


# ---------------------------------------------------------------------------- this machine

def test_live_checks_on_this_machine():
    config = load_config(None, ())
    topo = read_topology("/", devices=["lo"])
    plan = plan_workers(topo, config, "lo")
    start = time.monotonic()
    rs = checks_for_run(config, topo, plan, "lo", "/")
    assert time.monotonic() - start < 2.0
    assert [r.name for r in rs] == list(CHECK_NAMES)
    assert all(r.status in STATUSES and r.seen for r in rs)
    by = {r.name: r for r in rs}
    running = any(open(f"/proc/{p}/comm").read().strip() == "irqbalance"
                  for p in os.listdir("/proc") if p.isdigit() and os.path.exists(f"/proc/{p}/comm"))
    assert by["irqbalance"].status == ("warn" if running else "ok")
    backlog = int(open("/proc/sys/net/core/netdev_max_backlog").read())
    assert by["netdev-backlog"].status == ("ok" if backlog >= 10000 else "warn")
    assert by["rss-hash"].status == "n/a"  # lo


def test_live_nic_with_real_ethtool():
    dev = "eth0" if os.path.exists("/sys/class/net/eth0/device") else None
    if dev is None:
        pytest.skip("no eth0 with a device here")
    r = results("/", dev)
    assert r["rings"].status in ("ok", "warn") and "rx " in r["rings"].seen


def test_cli_on_this_machine():
    p = pps("check", cwd=ROOT)
    assert p.returncode == 0, p.stderr
    for name in CHECK_NAMES:
        assert name in p.stdout
    assert p.stdout.splitlines()[-1].endswith(("checks", "measurement"))
    j = pps("check", "--json", cwd=ROOT)
    assert j.returncode == 0
    out = json.loads(j.stdout)
    assert {"checks", "warnings", "root", "device", "cpus"} <= set(out) and out["device"] == "lo"


def test_cli_on_a_fixture():
    p = pps("check", "--root", UNTUNED, "--dev", NIC, "--json", "--set", "receivers.count=4",
            cwd=ROOT)
    assert p.returncode == 0, p.stderr
    out = json.loads(p.stdout)
    by = {c["name"]: c for c in out["checks"]}
    assert by["rss-hash"]["status"] == "warn" and out["warnings"] >= 10
    t = pps("check", "--root", TUNED, "--dev", NIC, cwd=ROOT)
    assert t.returncode == 0 and "0 warnings" in t.stdout


@pytest.mark.parametrize("args, code, words", [
    (("--root", "/nonexistent"), 2, "--root /nonexistent"),
    (("--root", TUNED, "--dev", "nope0"), 3, "nope0"),
    (("--root", TUNED, "--set", "target.address=10.0.0.1"), 2, "--dev"),
    (("--set", "receivers.mode=spin"), 2, "receivers.mode"),
])
def test_cli_errors(args, code, words):
    p = pps("check", *args, cwd=ROOT)
    assert p.returncode == code
    assert words in p.stderr and len(p.stderr.strip().splitlines()) == 1 and p.stdout == ""
