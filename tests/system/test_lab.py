"""The lab on the real kernel: namespaces, a multi-queue veth, options, traffic, cleanup.

Needs root (CAP_NET_ADMIN, CAP_SYS_ADMIN); skipped otherwise. The checks of ids and specs,
which need nothing, are in tests/unit/test_lab_spec.py. Traffic stays inside the
namespaces the tests make, between 198.18.0.1 and 198.18.0.2, and is bounded (1000 datagrams).
Every test uses its own random id and a fixture that always runs lab_down.
"""

from __future__ import annotations

import os
import secrets
import socket
import subprocess
import sys
import threading
from pathlib import Path

import pytest
from support import ROOT

from pps.errors import ConfigError, EnvironmentNotAble
from pps.host.netns import call_in, enter
from pps.lab import kernel as kern
from pps.lab.bed import (
    BACKLOG_SYSCTL,
    LabSpec,
    find_lab,
    format_status,
    lab_down,
    lab_status,
    lab_up,
    require_net_admin,
    state_path,
)

PORT = 9000
COUNT = 1000


def _have_caps() -> bool:
    try:
        require_net_admin()
    except EnvironmentNotAble:
        return False
    return True


needs_root = pytest.mark.skipif(not _have_caps(), reason="needs CAP_NET_ADMIN and CAP_SYS_ADMIN")
made: list[str] = []


def new_id() -> str:
    lab_id = "t" + secrets.token_hex(3)
    made.append(lab_id)
    return lab_id


@pytest.fixture
def lab_id():
    lab_id = new_id()
    yield lab_id
    lab_down(lab_id)


@pytest.fixture(scope="module", autouse=True)
def nothing_left_behind():
    yield
    if not _have_caps():
        return
    for lab_id in made:  # a test that failed half-way must not leave anything either
        lab_down(lab_id)
    names = os.listdir("/run/netns") if os.path.isdir("/run/netns") else []
    assert not [n for n in names if any(f"pps-{i}-" in n for i in made)]
    listed = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout
    assert not [i for i in made if f"pps-{i}-" in listed]


# ---- helpers: a receiver thread that enters the namespace, as a worker does ----


class Receiver(threading.Thread):
    def __init__(self, ns: str, addr: str, want: int) -> None:
        super().__init__(daemon=True)
        self.ns, self.addr, self.want = ns, addr, want
        self.got = 0
        self.ready = threading.Event()
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            enter(self.ns)
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                sock.setsockopt(socket.SOL_SOCKET, 33, 4 << 20)  # SO_RCVBUFFORCE: room for all
                sock.bind((self.addr, PORT))
                sock.settimeout(2.0)
                self.ready.set()
                while self.got < self.want:
                    sock.recv(2048)
                    self.got += 1
        except BaseException as exc:  # reported by the test through .error
            self.error = exc
            self.ready.set()


def send(ns: str, addr: str, count: int = COUNT, ports: int = 8) -> None:
    """count datagrams from `ports` different sockets, so several TX queues get traffic."""

    def run() -> None:
        for p in range(ports):
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
                for _ in range(count // ports + (p < count % ports)):
                    sock.sendto(b"x" * 64, (addr, PORT))

    call_in(ns, run)


def deliver(lab, count: int = COUNT) -> int:
    rx = Receiver(lab.receiver_ns, lab.receiver_addr, count)
    rx.start()
    assert rx.ready.wait(5)
    send(lab.sender_ns, lab.receiver_addr, count)
    rx.join(10)
    if rx.error and not isinstance(rx.error, socket.timeout):
        raise rx.error
    return rx.got


def queue_packets(lab) -> dict[int, int]:
    stats = call_in(lab.receiver_ns, lambda: kern.ethtool_stats(lab.receiver_dev))
    return {q: stats[f"rx_queue_{q}_xdp_packets"] for q in range(lab.queues)}


# ---- the lab without CAP_NET_ADMIN ----


def test_without_net_admin_says_so():
    """A child with CAP_NET_ADMIN dropped from every set gets EnvironmentNotAble."""
    code = (
        "from pps.errors import EnvironmentNotAble\n"
        "from pps.lab import bed as lab\n"
        "for f in (lab.require_net_admin, lambda: lab.lab_status('x'), lambda: lab.lab_down('x'),"
        " lambda: lab.lab_up(lab.LabSpec(id='x'))):\n"
        "    try:\n        f()\n    except EnvironmentNotAble as e:\n        print(e)\n"
        "    else:\n        print('NOT RAISED')\n"
    )
    cmd = ["setpriv", "--inh-caps=-all", "--ambient-caps=-all", "--bounding-set=-net_admin",
           sys.executable, "-c", code]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, cwd=ROOT, timeout=60)
    except FileNotFoundError:
        pytest.skip("no setpriv")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert len(lines) == 4
    assert all("needs CAP_NET_ADMIN (run as root)" in line for line in lines), lines


# ---- tests on the kernel ----


@needs_root
def test_up_and_down(lab_id):
    lab, created = lab_up(LabSpec(id=lab_id, queues=4))
    assert created
    assert os.path.exists(f"/run/netns/{lab.sender_ns}") and os.path.exists(
        f"/run/netns/{lab.receiver_ns}")
    assert lab.sender_dev == f"pps-{lab_id}-t" and lab.receiver_dev == f"pps-{lab_id}-r"
    assert kern.queue_counts(lab.sender_ns, lab.sender_dev) == (4, 4)
    assert kern.queue_counts(lab.receiver_ns, lab.receiver_dev) == (4, 4)
    # ... and in sysfs as the namespace sees it
    queues = call_in(lab.receiver_ns, lambda: kern.private_sysfs(
        lambda: sorted(os.listdir(f"/sys/class/net/{lab.receiver_dev}/queues"))))
    assert queues == [f"rx-{i}" for i in range(4)] + [f"tx-{i}" for i in range(4)]
    assert lab.receiver_dev not in os.listdir("/sys/class/net")  # not in the host's view

    st = lab_status(lab_id)
    assert st["up"] and st["queues"] == 4
    for role, addr in (("sender", "198.18.0.1/24"), ("receiver", "198.18.0.2/24")):
        side = st["sides"][role]
        assert side["lo_up"] and side["addresses"] == [addr]
        assert side["link"]["state"] == "UP"
    assert "up, 4 queues" in format_status(st)
    assert find_lab(lab_id) == lab

    removed = lab_down(lab_id)
    assert f"netns {lab.sender_ns}" in removed and f"netns {lab.receiver_ns}" in removed
    assert not os.path.exists(f"/run/netns/{lab.sender_ns}")
    assert not os.path.exists(f"/run/netns/{lab.receiver_ns}")
    assert find_lab(lab_id) is None
    assert lab_down(lab_id) == []  # nothing there: no error, nothing reported
    assert not lab_status(lab_id)["up"]


@needs_root
def test_up_is_idempotent(lab_id):
    lab, created = lab_up(LabSpec(id=lab_id, queues=2))
    again, created_again = lab_up(LabSpec(id=lab_id, queues=2, gro=True))
    assert created and not created_again
    assert again.sender_ns == lab.sender_ns and again.spec.gro
    assert lab_status(lab_id)["sides"]["receiver"]["features"]["rx-gro"]  # options applied
    with pytest.raises(ConfigError, match="exists with 2"):
        lab_up(LabSpec(id=lab_id, queues=3))
    assert kern.queue_counts(lab.sender_ns, lab.sender_dev) == (2, 2)  # left alone


@needs_root
def test_packets_flow_without_arp(lab_id):
    lab, _ = lab_up(LabSpec(id=lab_id, queues=4))
    assert deliver(lab) == COUNT
    st = lab_status(lab_id)
    for role, peer in (("sender", "198.18.0.2"), ("receiver", "198.18.0.1")):
        neigh = st["sides"][role]["neighbours"]
        assert neigh == [{"dst": peer, "lladdr": neigh[0]["lladdr"], "permanent": True}]
    assert st["sides"]["sender"]["neighbours"][0]["lladdr"] == \
        st["sides"]["receiver"]["link"]["mac"]
    # The receiver namespace's UDP counters are its own and clean: exactly our datagrams.
    snmp = call_in(lab.receiver_ns, lambda: open("/proc/thread-self/net/snmp").read())
    udp = [line.split() for line in snmp.splitlines() if line.startswith("Udp:")]
    row = dict(zip(udp[0][1:], map(int, udp[1][1:])))
    assert row["InDatagrams"] == COUNT and row["RcvbufErrors"] == 0 and row["NoPorts"] == 0


@needs_root
def test_per_queue_counters_move_with_gro(lab_id):
    lab, _ = lab_up(LabSpec(id=lab_id, queues=4))
    before = queue_packets(lab)
    assert deliver(lab) == COUNT
    assert queue_packets(lab) == before  # without GRO, veth skips NAPI: counters stay put

    lab, _ = lab_up(LabSpec(id=lab_id, queues=4, gro=True))
    assert call_in(lab.receiver_ns, lambda: kern.get_features(lab.receiver_dev))["rx-gro"]
    before = queue_packets(lab)
    assert deliver(lab) == COUNT
    moved = {q: n - before[q] for q, n in queue_packets(lab).items()}
    assert sum(moved.values()) == COUNT  # every datagram went through a queue's NAPI
    assert sum(1 for n in moved.values() if n) >= 2  # 8 sockets hash onto several queues


@needs_root
def test_options_applied_and_host_sysctl_restored(lab_id):
    before = kern.sysctl_read(BACKLOG_SYSCTL)
    wanted = str(int(before) + 17)
    spec = LabSpec(id=lab_id, queues=4, rps_cpus=(0,), xps=True, qdisc="pfifo limit 321",
                   backlog=int(wanted))
    lab_up(spec)
    st = lab_status(lab_id)
    ncpu = os.cpu_count() or 1
    assert st["sides"]["receiver"]["rps_cpus"] == {q: (0,) for q in range(4)}
    assert st["sides"]["sender"]["xps_cpus"] == {q: (q % ncpu,) for q in range(4)}
    assert st["sides"]["sender"]["qdisc"] == "pfifo"
    assert kern.sysctl_read(BACKLOG_SYSCTL) == wanted
    assert st["host_changes"][BACKLOG_SYSCTL] == {"previous": before, "set": wanted}
    # Reuse with no options: everything back to the defaults, the host value too.
    lab_up(LabSpec(id=lab_id, queues=4))
    st = lab_status(lab_id)
    assert st["sides"]["receiver"]["rps_cpus"] == {q: () for q in range(4)}
    assert st["sides"]["sender"]["qdisc"] == "noqueue"
    assert kern.sysctl_read(BACKLOG_SYSCTL) == before and not st["host_changes"]
    lab_up(spec)
    lab_down(lab_id)
    assert kern.sysctl_read(BACKLOG_SYSCTL) == before


@needs_root
def test_two_labs_side_by_side():
    a_id, b_id = new_id(), new_id()
    try:
        a, _ = lab_up(LabSpec(id=a_id, queues=2))
        b, _ = lab_up(LabSpec(id=b_id, queues=3))
        assert {a.sender_ns, a.receiver_ns}.isdisjoint({b.sender_ns, b.receiver_ns})
        assert deliver(a, 200) == 200 and deliver(b, 200) == 200
        lab_down(a_id)
        assert find_lab(a_id) is None
        assert find_lab(b_id) == b and deliver(b, 200) == 200
    finally:
        lab_down(a_id)
        lab_down(b_id)


@needs_root
def test_down_after_a_crash(lab_id):
    """A process that dies holding a lab leaves namespaces, links and the state file with a
    host sysctl it changed; down removes all of it and puts the sysctl back."""
    before = kern.sysctl_read(BACKLOG_SYSCTL)
    code = (f"import os\nfrom pps.lab.bed import LabSpec, lab_up\n"
            f"lab_up(LabSpec(id={lab_id!r}, queues=2, backlog={int(before) + 5}))\n"
            "os.kill(os.getpid(), 9)\n")
    subprocess.run([sys.executable, "-c", code], cwd=ROOT, timeout=60)
    assert os.path.exists(state_path(lab_id))
    assert os.path.exists(f"/run/netns/pps-{lab_id}-rx")
    assert kern.sysctl_read(BACKLOG_SYSCTL) != before
    removed = lab_down(lab_id)
    assert f"sysctl {BACKLOG_SYSCTL} restored to {before}" in removed
    assert kern.sysctl_read(BACKLOG_SYSCTL) == before
    assert not os.path.exists(state_path(lab_id))
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"pps-{lab_id}-")]


@needs_root
def test_half_made_lab_is_cleared(lab_id):
    """Only one namespace and a stray namespace file with nothing mounted on it."""
    from pyroute2 import netns as pyr_netns

    pyr_netns.create(f"pps-{lab_id}-tx")
    Path(f"/run/netns/pps-{lab_id}-rx").touch()
    assert find_lab(lab_id) is None
    assert not lab_status(lab_id)["up"]
    lab, created = lab_up(LabSpec(id=lab_id, queues=2))  # cleans up, then makes it whole
    assert created and deliver(lab, 100) == 100
    lab_down(lab_id)
    pyr_netns.create(f"pps-{lab_id}-rx")
    assert sorted(lab_down(lab_id)) == [f"netns pps-{lab_id}-rx"]


@needs_root
def test_failed_up_leaves_nothing(lab_id):
    with pytest.raises(ConfigError):
        lab_up(LabSpec(id=lab_id, rps_cpus=(4096,)))  # checked before anything is made
    with pytest.raises(EnvironmentNotAble, match="qdisc"):
        lab_up(LabSpec(id=lab_id, queues=2, qdisc="nosuchqdisc"))
    assert not [n for n in os.listdir("/run/netns") if n.startswith(f"pps-{lab_id}-")]
    assert not os.path.exists(state_path(lab_id))
