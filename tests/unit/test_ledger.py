"""The drop ledger: arithmetic on synthetic totals. Real forced drops in a namespace are in
tests/system/test_ledger_netns.py."""

from __future__ import annotations

import pytest

from pps.counters.collectors import Reading as R
from pps.counters.ledger import build_ledger
from pps.counters.table import to_frame, totals


def tot(before, after):
    """Totals from two snapshots given as {(netns, Reading-args)...} lists."""
    return totals(to_frame([(0.0, before), (1.0, after)]))


def pair(ns, reading0, value1):
    r1 = R(reading0.source, reading0.name, value1, reading0.device, reading0.queue, reading0.cpu)
    return (ns, reading0), (ns, r1)


def build(rows, sent, received, **kw):
    before, after = zip(*rows)
    return build_ledger(sent, received, tot(list(before), list(after)), **kw)


def test_udp_inerrors_counted_once():
    rows = [pair("rx", R("snmp", "UdpRcvbufErrors", 0), 70),
            pair("rx", R("snmp", "UdpInErrors", 0), 75),
            pair("rx", R("snmp", "UdpInCsumErrors", 0), 5),
            pair("rx", R("snmp", "UdpNoPorts", 0), 20),
            pair("rx", R("socket", "drops", 0, device="udp:9:1"), 70),
            pair(None, R("softnet", "dropped", 0, cpu=0), 3),
            pair(None, R("softnet", "flow_limit_count", 0, cpu=0), 3)]
    led = build(rows, 1000, 902, send_netns="tx", recv_netns="rx", shared=())
    d = led.drops()
    assert d["snmp.UdpRcvbufErrors"] == 70 and d["snmp.UdpInCsumErrors"] == 5
    assert d["snmp.UdpInErrors(other)"] == 0 and d["snmp.UdpNoPorts"] == 20
    assert "socket.drops" not in d and "softnet.flow_limit_count" not in d
    assert d["softnet.dropped"] == 3
    assert led.unaccounted == 1000 - 902 - 98 == 0
    assert led.layers() == {"send": 0, "nic": 0, "xdp": 0, "backlog": 3, "ip": 0, "udp": 95}
    info = {r.key: r for r in led.rows if not r.counted}
    assert info["socket.drops"].count == 70 and info["softnet.flow_limit_count"].count == 3


def test_only_the_right_namespaces_count():
    rows = [pair("tx", R("snmp", "UdpSndbufErrors", 0), 10),
            pair("rx", R("snmp", "UdpSndbufErrors", 0), 99),  # receiver's send side: not ours
            pair("tx", R("snmp", "UdpNoPorts", 0), 99),  # sender's receive side: not ours
            pair("rx", R("snmp", "UdpNoPorts", 0), 5)]
    led = build(rows, 100, 85, send_netns="tx", recv_netns="rx", shared=())
    assert led.drops()["snmp.UdpSndbufErrors"] == 10
    assert led.drops()["snmp.UdpNoPorts"] == 5
    assert led.unaccounted == 0 and not led.to_dict()["shared"] == ["snmp.UdpNoPorts"]


def test_driver_map_replaces_link_counters_for_a_known_driver():
    rows = [pair("rx", R("ethtool", "rx_missed_errors", 0, device="eth1"), 40),
            pair("rx", R("ethtool", "rx_no_dma_resources", 0, device="eth1"), 7),
            pair("rx", R("link", "rx_missed_errors", 0, device="eth1"), 40),  # same drops
            pair("rx", R("link", "rx_dropped", 0, device="eth1"), 12),  # never added
            pair("rx", R("link", "rx_missed_errors", 0, device="eth2"), 3)]  # unknown driver
    led = build(rows, 100, 50, send_netns="tx", recv_netns="rx",
                devices={("rx", "eth1"): "ixgbe"}, shared=())
    nic = {(r.source, r.counter, r.device): r.count for r in led.rows if r.layer == "nic"}
    assert nic[("ethtool", "rx_missed_errors", "eth1")] == 40
    assert nic[("ethtool", "rx_no_dma_resources", "eth1")] == 7
    assert ("link", "rx_missed_errors", "eth1") not in nic
    assert nic[("link", "rx_missed_errors", "eth2")] == 3
    assert led.layers()["nic"] == 50 and led.unaccounted == 0


def test_renamed_counter_alternatives_and_queue_sums():
    rows = [pair("rx", R("ethtool", "port.rx_discards", 0, device="p"), 9),
            pair("rx", R("ethtool", "port.rx_dropped", 0, device="p"), 9),  # older name, same
            pair("rx", R("ethtool", "rxN_drops", 0, device="v", queue=0), 2),
            pair("rx", R("ethtool", "rxN_drops", 0, device="v", queue=1), 3),
            pair("rx", R("ethtool", "rx_drops", 0, device="v"), 5)]  # device total of the two
    led = build(rows, 100, 86, send_netns="rx", recv_netns="rx",
                devices={("rx", "p"): "i40e", ("rx", "v"): "virtio_net"}, shared=())
    assert led.drops() == {"ethtool.port.rx_discards": 9, "ethtool.rxN_drops": 5}
    assert led.unaccounted == 0


def test_veth_tx_dropped_and_softnet_counted_once():
    rows = [pair("tx", R("link", "tx_dropped", 0, device="va"), 30),
            pair(None, R("softnet", "dropped", 0, cpu=1), 30)]
    led = build(rows, 100, 70, send_netns="tx", recv_netns="rx",
                devices={("tx", "va"): "veth"}, shared=())
    assert led.layers()["backlog"] == 30 and led.layers()["send"] == 0
    assert led.unaccounted == 0


def test_shared_flags_and_text():
    rows = [pair(None, R("snmp", "UdpRcvbufErrors", 0), 600),
            pair(None, R("snmp", "UdpInErrors", 0), 600),
            pair(None, R("snmp", "UdpNoPorts", 0), 0),
            pair(None, R("softnet", "dropped", 0, cpu=0), 4)]
    led = build(rows, 10_000, 9_390, send_netns=None, recv_netns=None)
    d = led.to_dict()
    assert set(d) >= {"sent", "received", "drops", "layers", "unaccounted",
                      "unaccounted_ratio", "shared", "notes"}
    assert "snmp.UdpRcvbufErrors" in d["shared"] and "softnet.dropped" in d["shared"]
    assert d["unaccounted"] == 6 and d["unaccounted_ratio"] == pytest.approx(6e-4)
    txt = led.format_text()
    assert "biggest drop: snmp.UdpRcvbufErrors in the udp layer" in txt
    assert "shared with other traffic" in txt
    assert "UdpNoPorts" not in txt  # zero rows are left out of the five-second view
    assert len(txt.splitlines()) < 12


def test_reset_is_noted():
    df = to_frame([(0.0, [("rx", R("link", "rx_missed_errors", 2**40, device="e"))]),
                   (1.0, [("rx", R("link", "rx_missed_errors", 5, device="e"))])])
    led = build_ledger(10, 10, totals(df), "rx", "rx", shared=())
    assert any("reset" in n for n in led.notes)


def test_empty_totals():
    led = build_ledger(0, 0, totals(to_frame([])), None, None)
    assert led.unaccounted == 0 and led.unaccounted_ratio == 0.0 and led.biggest() is None
    assert "no drop counter moved" in led.format_text()
