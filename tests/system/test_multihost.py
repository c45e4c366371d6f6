"""Runs across hosts over real SSH: a second "host" is a namespace with its own sshd
(tests/sshhost.py), reached at a 198.19.0.0/16 address over a veth pair. Needs root,
openssh-server and openssh-client. What needs no second host (the ssh command line, host
config errors, the agent over pipes, a stalled or babbling agent) is in
tests/unit/test_multihost_local.py."""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from pathlib import Path

import pandas as pd
import pytest
import sshhost
from support import CONFIG_DIR, pps, pps_start

from pps.config.cpulist import parse_cpulist
from pps.run.agent import PROTOCOL
from pps.run.remote import REPLY_TIMEOUT_S

PORTS = iter(range(48000, 48100))


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    if os.geteuid() != 0 or not os.path.exists(sshhost.SSHD) or not shutil.which("ssh"):
        pytest.fail("these tests need root, openssh-server and openssh-client (.ci/run installs them)")
    h = sshhost.start(tmp_path_factory.mktemp("sshhost"))
    try:
        yield h
    finally:
        sshhost.stop(h)
    assert not Path(f"/run/netns/{h.netns}").exists()


def run_args(h, tmp_path, *sets: str, duration: float = 1.0) -> list[str]:
    items = [*h.sets(), f"target.port={next(PORTS)}",
             "run.warmup=0.3", "run.drain=0.3", "run.interval=0.25", *sets]
    return ["run", "--yes", "--json", "--duration", str(duration), "--out", str(tmp_path / "r"),
            *[a for s in items for a in ("--set", s)]]


def test_local_sender_remote_receiver_ledger_spans_hosts(host, tmp_path):
    # A tiny receive buffer on host b: the drops happen there, in its own namespace's
    # counters, while the packets were sent here. The ledger must put them on b, exactly.
    proc = pps(*run_args(host, tmp_path, f"target.address={host.remote_addr}",
                         "receivers.host=b", "receivers.rcvbuf=4000"), timeout=90)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    led = s["ledger"]
    assert led["sent"] > 0 and led["received"] > 0
    assert led["drops"]["snmp.UdpRcvbufErrors"] > 0
    assert led["unaccounted"] == 0
    assert led["sent"] == led["received"] + sum(led["drops"].values())
    assert s["latency"] is None and "do not share a clock" in s["latency_clock"]["why"]
    assert {(w["host"], w["role"]) for w in s["workers"]} == {("local", "sender"), ("b", "receiver")}
    out = Path(s["results_dir"])
    counters = pd.read_parquet(out / "counters.parquet")
    assert {"local", "b"} <= set(counters["host"])
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples["host"]) == {"local", "b"}
    run = json.loads((out / "run.json").read_text())
    assert run["hosts"]["b"]["roles"] == ["receiver"]
    assert run["hosts"]["b"]["hello"]["protocol"] == PROTOCOL
    assert run["hosts"]["b"]["device"].startswith("pss")  # the veth end that holds the address
    # Each host's pps process left its workers' CPUs to them (this machine has two CPUs,
    # and each host runs one worker).
    for record, share in ((run["hosts"]["b"]["agent"], run["plan"]["hosts"]["b"]),
                          (run["orchestrator"], run["plan"]["hosts"]["local"])):
        worker_cpus = {w["cpu"] for w in share["workers"]}
        assert record["moved"] and not worker_cpus & set(parse_cpulist(record["cpus"]))
    assert not host.processes()  # nothing left running over there


def test_the_shipped_two_host_config_runs(host, tmp_path):
    config = CONFIG_DIR / "two-hosts.toml"
    args = run_args(host, tmp_path, f"target.address={host.remote_addr}")
    proc = pps(args[0], str(config), *args[1:], timeout=90)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["rx_packets"] > 0 and s["ledger"]["unaccounted"] == 0


def test_remote_sender_local_receiver(host, tmp_path):
    # Kernel stamps split one-way latency, which two hosts cannot measure: turned off, said.
    proc = pps(*run_args(host, tmp_path, f"target.address={host.local_addr}", "senders.host=b",
                         "senders.rate=50000", "run.timestamps=kernel"), timeout=90)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    led = s["ledger"]
    assert 0.9 * 50000 < s["tx_pps"] < 1.1 * 50000
    assert led["sent"] > 0
    # This host's root namespace is shared with other traffic, so allow a hair of noise.
    assert abs(led["unaccounted"]) <= 0.001 * led["sent"]
    assert "do not share a clock" in " ".join(s["warnings"])
    assert "run.timestamps = kernel is ignored" in " ".join(s["warnings"])
    assert "latency_stack" not in s and "latency_app" not in s
    assert not host.processes()


def test_kernel_stamps_of_a_remote_receiver_come_back_through_the_agent(host, tmp_path):
    # Both roles on b share b's clock: stack and app are measured there and travel back.
    proc = pps(*run_args(host, tmp_path, "target.address=127.0.0.1", "senders.host=b",
                         "receivers.host=b", "senders.rate=50000", "run.timestamps=kernel"),
               timeout=90)
    assert proc.returncode == 0, proc.stderr
    s = json.loads(proc.stdout)
    assert s["latency_stack"]["p50_ns"] > 0 and s["latency_app"]["p50_ns"] > 0
    assert s["latency_per_receiver"][0]["latency_app"]["max_ns"] == s["latency_app"]["max_ns"]
    table = pd.read_parquet(Path(s["results_dir"]) / "latency.parquet")
    counts = table[table["receiver"] == -1].groupby("kind")["count"].sum()
    assert counts["stack"] == counts["app"] == counts["one_way"] > 0
    assert not host.processes()


def _children(pid: int) -> list[tuple[int, str]]:
    out = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        comm = stat[stat.index("(") + 1:stat.rindex(")")]
        if int(stat[stat.rindex(")") + 2:].split()[1]) == pid:
            out.append((int(entry), comm))
    return out


def test_killing_the_ssh_connection_stops_the_remote_side(host, tmp_path):
    args = run_args(host, tmp_path, f"target.address={host.remote_addr}", "receivers.host=b",
                    duration=20)
    proc = pps_start(*args)
    try:
        # Wait for the run to measure (status lines on stderr), then cut the connection.
        for line in proc.stderr:
            if "measure" in line:
                break
        assert host.processes(), "the remote agent and receiver should be running"
        ssh = [pid for pid, comm in _children(proc.pid) if comm == "ssh"]
        assert len(ssh) == 1
        os.kill(ssh[0], signal.SIGKILL)
        cut = time.monotonic()
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 4, err
    assert time.monotonic() - cut < 10
    assert "host b" in err and "connection lost" in err
    deadline = time.monotonic() + 5
    while host.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host.processes(), "the remote side must stop when its SSH connection goes"
    s = json.loads(out)
    assert s["results_dir"] and s["sent"] > 0  # what was measured is saved
    samples = pd.read_parquet(Path(s["results_dir"]) / "samples.parquet")
    assert samples[samples["host"] == "b"]["packets"].max() > 0


def safe_options(h) -> str:
    """The fixture's ssh settings as plain options, no -F: what a shared config may hold."""
    return f"hosts.b.ssh_options={json.dumps(h.plain_options())}"


def test_a_stalled_host_fails_the_run_in_bounded_time(host, tmp_path):
    # The agent on b stops answering (SIGSTOP) while its TCP connection stays up, which ssh's
    # keepalives cannot see. The run must end with exit 4 naming host b within about one
    # reply timeout, keep what it measured, and leave nothing running on b.
    # The host is reached with plain options only, so no local-commands permission is needed.
    args = run_args(host, tmp_path, f"target.address={host.remote_addr}", "receivers.host=b",
                    safe_options(host), "hosts.b.allow_local_commands=false", duration=30)
    proc = pps_start(*args)
    agents: list[int] = []
    try:
        for line in proc.stderr:
            if "measure" in line:
                break
        agents = host.processes("pps agent")
        assert len(agents) == 1, "one agent runs on b"
        os.kill(agents[0], signal.SIGSTOP)
        stalled = time.monotonic()
        out, err = proc.communicate(timeout=REPLY_TIMEOUT_S + 30)
        took = time.monotonic() - stalled
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pid in agents:  # let it see its connection gone, and stop its workers
            os.kill(pid, signal.SIGCONT)
    assert proc.returncode == 4, err
    assert took < REPLY_TIMEOUT_S + 20, took  # one reply timeout, not one per request
    assert "host b" in err and "stopped answering" in err and "Traceback" not in err
    s = json.loads(out)
    assert s["results_dir"] and s["sent"] > 0
    deadline = time.monotonic() + 10
    while host.processes() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not host.processes(), "the agent must stop its workers once it runs again"


def test_a_wrong_python_path_is_one_clear_line(host, tmp_path):
    args = run_args(host, tmp_path, f"target.address={host.remote_addr}", "receivers.host=b",
                    "hosts.b.python=/nonexistent/python3")
    proc = pps(*args, timeout=90)
    assert proc.returncode == 3
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in proc.stderr
    assert "host b" in lines[0] and "'/nonexistent/python3' not found" in lines[0]
    assert "hosts.b.python" in lines[0]
    assert not (tmp_path / "r").exists()  # failed before any packet


def test_an_unreachable_host_is_one_clear_line(host, tmp_path):
    # Nothing listens on port 1 there: ssh is refused, and says so.
    args = run_args(host, tmp_path, f"target.address={host.remote_addr}", "receivers.host=b",
                    f"hosts.b.ssh_options={json.dumps([*host.plain_options(), '-p', '1'])}")
    proc = pps(*args, timeout=90)
    assert proc.returncode == 3, proc.stderr
    assert proc.stderr.count("\n") == 1 and "host b: ssh" in proc.stderr
