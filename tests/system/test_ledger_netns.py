"""The drop ledger on the real kernel: forced drops in a private namespace, whose counters
nothing else moves, land in the right row and the ledger closes. Needs root for the
namespace; the arithmetic on synthetic totals is in tests/unit/test_ledger.py."""

from __future__ import annotations

import socket

import pytest

from pps.counters.collectors import Scope, device_drivers, snapshot
from pps.counters.ledger import build_ledger
from pps.counters.table import to_frame, totals
from pps.host import netns as ppsnetns


@pytest.fixture
def netns(private_netns):
    return private_netns


def _ledger_around(ns, port, action):
    """Snapshot, run action() inside ns -> (sent, received), snapshot, build the ledger."""
    scope = [Scope(ns, ("lo",), (port,))]
    before = snapshot(scope)[0]
    sent, received = ppsnetns.call_in(ns, action)
    after = snapshot(scope)[0]
    tot_ = totals(to_frame([(0.0, before), (1.0, after)]))
    return build_ledger(sent, received, tot_, ns, ns, device_drivers(scope), shared=())


def test_forced_noports(netns):
    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2000):
                s.sendto(b"x" * 32, ("127.0.0.1", 9))
        return 2000, 0

    led = _ledger_around(netns, 9, action)
    d = led.drops()
    backlog = d.get("softnet.dropped", 0)  # loopback's backlog may drop a few under load
    assert d["snmp.UdpNoPorts"] == 2000 - backlog
    assert abs(led.unaccounted) <= 2  # 0.1% of 2000
    assert led.biggest().key == "snmp.UdpNoPorts"


def test_forced_rcvbuf_errors(netns):
    port = 9100

    def open_receiver():
        r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        r.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1)  # the kernel's minimum
        r.bind(("127.0.0.1", port))
        return r

    # The socket lives in the namespace it was made in, and exists across both snapshots.
    r = ppsnetns.call_in(netns, open_receiver)

    def action():
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(2000):
                s.sendto(b"x" * 64, ("127.0.0.1", port))
        r.setblocking(False)
        got = 0
        try:
            while True:
                r.recv(2048)
                got += 1
        except BlockingIOError:
            pass
        return 2000, got

    try:
        led = _ledger_around(netns, port, action)
    finally:
        r.close()
    d = led.drops()
    assert led.received < 100
    assert d["snmp.UdpRcvbufErrors"] >= 1900
    assert d["snmp.UdpInErrors(other)"] == 0  # InErrors counted once
    assert abs(led.unaccounted) <= 2
    sock_row = next(r for r in led.rows if r.key == "socket.drops")
    assert not sock_row.counted and sock_row.count == d["snmp.UdpRcvbufErrors"]
    assert "biggest drop: snmp.UdpRcvbufErrors in the udp layer" in led.format_text()
