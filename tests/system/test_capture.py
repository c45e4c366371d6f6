"""The repeated-snapshot path (pps.counters.collectors.capture): readers opened once per
namespace and read from the calling thread, light samples, deferred parsing, and the sampler
built on it. Real namespaces (root), real sockets, real counters. What needs no namespace
(a missing one, netlink replies) is in tests/unit/test_capture_without_netns.py."""

from __future__ import annotations

import os
import socket

import pytest

from pps.counters.collectors import Scope, snapshot
from pps.counters.collectors.capture import Capturer
from pps.counters.sampler import CounterSampler
from pps.counters.table import KEY, totals
from pps.host import netns

PORTS = iter(range(48100, 48200))


def values(capturer: Capturer, cap) -> dict:
    readings, _ = capturer.parse(cap)
    return {(ns, r.source, r.device, r.queue, r.cpu, r.name): r.value for ns, r in readings}


def send_in(ns: str, port: int, count: int) -> None:
    def go() -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for _ in range(count):
                s.sendto(b"x" * 32, ("127.0.0.1", port))
    netns.call_in(ns, go)


def test_light_samples_read_the_namespace_from_the_calling_thread(veth_netns):
    port = next(PORTS)
    rx = netns.call_in(veth_netns, lambda: _bound(port))
    try:
        with Capturer([Scope(veth_netns, ("lo", "va"), (port,))]) as c:
            first = values(c, c.take())
            send_in(veth_netns, port, 100)
            light = c.take(full=False)
            second = values(c, light)
            # Counters of the namespace, not of this thread's (the root one).
            out = (veth_netns, "snmp", None, None, None, "UdpOutDatagrams")
            assert second[out] - first[out] == 100
            lo_tx = (veth_netns, "link", "lo", None, None, "tx_packets")
            assert second[lo_tx] - first[lo_tx] == 100
            queued = [v for k, v in second.items() if k[1] == "socket" and k[5] == "rx_queue"]
            assert queued and queued[0] > 0  # our socket, found by its port, holds them
            for _ in range(100):
                rx.recv(64)
            third = values(c, c.take(full=False))
            udp = (veth_netns, "snmp", None, None, None, "UdpInDatagrams")  # counted when read
            assert third[udp] - first[udp] == 100
            # The light sample is the same set of series, less the ones not able.
            # (snmp6 lists an Icmp6 type's counters only once one moved: a new namespace's
            # MLD reports may add one between two samples.)
            assert set(first) <= set(second) and all(
                k[1] == "snmp6" and k[5].startswith("Icmp6") for k in set(second) - set(first))
            assert all(u.source in ("qstats", "ethtool") for u in light.missing) and not any(
                u.device == "lo" for u in light.missing)  # lo's ethtool: skipped, not retried
    finally:
        rx.close()


def _bound(port: int) -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("127.0.0.1", port))
    return s


def test_not_able_collectors_are_retried_at_full_samples_only(veth_netns):
    with Capturer([Scope(veth_netns, ("lo", "va"))]) as c:
        full = c.take()
        assert any(u.source == "ethtool" and u.device == "lo" for u in full.missing)
        light = c.take(full=False)
        assert not any(u.source == "ethtool" and u.device == "lo" for u in light.missing)
        again = c.take()
        assert any(u.source == "ethtool" and u.device == "lo" for u in again.missing)
        # veth has ethtool stats: present in every sample, light or full.
        for cap in (full, light, again):
            assert any(src == "ethtool" and dev == "va" for _, src, dev, _ in cap.raw)


def test_ethtool_light_sample_equals_a_fresh_read(veth_netns):
    with Capturer([Scope(veth_netns, ("va",))], ["ethtool"]) as c:
        c.take()
        light = values(c, c.take(full=False))
    fresh, missing = snapshot([Scope(veth_netns, ("va",))], ["ethtool"])
    assert not missing and light == {(ns, r.source, r.device, r.queue, r.cpu, r.name): r.value
                                     for ns, r in fresh}


def test_a_broken_reader_is_opened_again_at_the_next_sample(veth_netns):
    with Capturer([Scope(veth_netns, ("lo",))], ["snmp"]) as c:
        c.take()
        files = c._readers[veth_netns].files
        os.close(files["snmp"])
        files["snmp"] = os.open("/", os.O_RDONLY)  # reads fail with EISDIR: a reader gone bad
        bad = c.take(full=False)
        assert any(u.source == "snmp" for u in bad.missing) and not bad.raw
        good = c.take(full=False)
        assert not good.missing and values(c, good)


def test_sampler_streams_and_its_totals_close(veth_netns):
    port = next(PORTS)
    rx = netns.call_in(veth_netns, lambda: _bound(port))
    try:
        sampler = CounterSampler.here([Scope(veth_netns, ("lo",), (port,))], veth_netns, veth_netns, "lo")
        sampler("start")
        for _ in range(3):
            send_in(veth_netns, port, 50)
            for _ in range(50):
                rx.recv(64)
            sampler("interval")
        sampler("end")
        assert not hasattr(sampler, "snapshots")  # nothing kept per sample in this process
        table = sampler.table().read()
        assert table["t"].nunique() == 5 == sampler.taken
        tot = sampler.totals()
        row = tot[(tot["source"] == "snmp") & (tot["name"] == "UdpInDatagrams")]
        assert int(row["delta"].iloc[0]) == 150
        # The running totals are what the table's own totals say, series by series.
        again = totals(table).set_index(KEY)[["first", "last", "delta", "resets", "samples"]]
        assert again.sort_index().equals(tot.set_index(KEY).sort_index()[again.columns])
        ledger = sampler.ledger(150, 150)
        assert ledger is not None and ledger["unaccounted"] == 0
        with pytest.raises(RuntimeError):
            sampler("interval")  # finished: a new run takes a new sampler
    finally:
        rx.close()
