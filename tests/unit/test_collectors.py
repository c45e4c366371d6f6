"""Collectors: each parser on captured text (tests/data/collectors). Live reads in a
namespace, checked against the usual tools, are in tests/system/test_collectors_live.py."""

from __future__ import annotations

import struct

import pytest
import support
from support import nstat_values

from pps.counters.collectors import (
    Reading,
    Scope,
    interrupts,
    nic,
    snapshot,
    snmp,
    sockets,
    softnet,
)

DATA = support.DATA / "collectors"


def text(name: str) -> str:
    return (DATA / name).read_text()


def by_name(readings, **kw) -> dict:
    return {(r.name, r.queue, r.cpu): r.value for r in readings
            if all(getattr(r, k) == v for k, v in kw.items())}


# ---- ethtool -S text and binary ---------------------------------------------------------

@pytest.mark.parametrize("raw, name, queue", [
    ("rx_queue_3_packets", "rx_queue_N_packets", 3),
    ("rx3_drops", "rxN_drops", 3),
    ("ch12_events", "chN_events", 12),
    ("rx-3.packets", "rx-N.packets", 3),
    ("tx-0.tx_packets", "tx-N.tx_packets", 0),
    ("queue_3_rx_packets", "queue_N_rx_packets", 3),
    ("rxq2: rx_drops_no_skbs", "rxqN: rx_drops_no_skbs", 2),
    ("[1]: rx_discards", "[N]: rx_discards", 1),
    ("rx_queue_drop_cnt[7]", "rx_queue_drop_cnt[N]", 7),
    # numbers that are not queues stay in the name
    ("port_rx_65_to_127", "port_rx_65_to_127", None),
    ("rx_prio3_bytes", "rx_prio3_bytes", None),
    ("port.tx_priority_0_xon_tx", "port.tx_priority_0_xon_tx", None),
    ("rx_out_of_buffer", "rx_out_of_buffer", None),
])
def test_split_queue(raw, name, queue):
    assert nic.split_queue(raw) == (name, queue)


def test_ethtool_veth_capture():
    rs = nic.parse(text("ethtool_veth_6.18.txt"), "va")
    names = {(r.name, r.queue) for r in rs}
    assert ("rx_queue_N_drops", 0) in names and ("tx_queue_N_xdp_xmit", 0) in names
    assert all(r.name != "peer_ifindex" for r in rs)  # an ifindex, not a counter
    assert all(r.source == "ethtool" and r.device == "va" for r in rs)


def test_ethtool_virtio_6_18_has_device_and_queue_drops():
    rs = by_name(nic.parse(text("ethtool_virtio_net_6.18.txt")))
    assert ("rx_drops", None, None) in rs  # device total...
    assert ("rxN_drops", 0, None) in rs  # ...and per queue: the driver map takes the latter
    assert nic.NIC_DROPS["virtio_net"][0][0] == "rxN_drops"


@pytest.mark.parametrize("fixture, driver, expect", [
    ("ethtool_sfc_ef10_excerpt.txt", "sfc", "port_rx_nodesc_drops"),
    ("ethtool_ixgbe_5.1.0-k_excerpt.txt", "ixgbe", "rx_missed_errors"),
    ("ethtool_virtio_net_old_excerpt.txt", "virtio_net", "rx_queue_N_drops"),
])
def test_real_world_captures_carry_driver_map_counters(fixture, driver, expect):
    names = {r.name for r in nic.parse(text(fixture))}
    groups = nic.nic_drop_names(driver)
    assert any(expect in g for g in groups)
    assert expect in names


def test_real_world_queue_shapes():
    mlx4 = nic.parse(text("ethtool_mlx4_en_excerpt.txt"))
    assert by_name(mlx4)[("rxN_packets", 5, None)] == 17373290830
    assert by_name(mlx4)[("tx_packets", None, None)] == 1543869000751
    bnx = by_name(nic.parse(text("ethtool_bnx2x_excerpt.txt")))
    assert bnx[("[N]: rx_bytes", 1, None)] == 207561754146
    ixq = by_name(nic.parse(text("ethtool_ixgbe_queues_excerpt.txt")))
    assert ("rx_queue_N_packets", 16, None) in ixq
    mlx5 = nic.parse(text("ethtool_mlx5_core_4.15_excerpt.txt"))
    assert len(mlx5) == 23 and all(r.queue is None for r in mlx5)


def test_parse_binary_roundtrip():
    names = [b"rx_queue_0_drops", b"rx_packets", b"peer_ifindex"]
    strings = b"".join(n.ljust(nic.ETH_GSTRING_LEN, b"\0") for n in names)
    stats = struct.pack("=3Q", 5, 2**40, 7)
    rs = nic.parse_binary(strings, stats, "d")
    assert rs == [Reading("ethtool", "rx_queue_N_drops", 5, "d", 0),
                  Reading("ethtool", "rx_packets", 2**40, "d")]
    with pytest.raises(ValueError):
        nic.parse_binary(strings, stats[:8])


# ---- snmp, softnet, interrupts, sockets ---------------------------------------------------

def test_snmp_capture_matches_nstat_capture():
    ours = {}
    for src, f in (("snmp", "snmp_6.18.txt"), ("netstat", "netstat_6.18.txt"),
                   ("snmp6", "snmp6_6.18.txt")):
        ours.update({r.name: r.value for r in snmp.parse(text(f), src)})
    theirs = nstat_values(text("nstat_az_6.18.txt"))
    assert len(theirs) > 300
    missing = set(theirs) - set(ours)
    assert not missing
    assert {k: ours[k] for k in theirs} == theirs
    for name in ("UdpRcvbufErrors", "UdpInErrors", "UdpNoPorts", "UdpMemErrors",
                 "UdpInCsumErrors", "UdpSndbufErrors", "IpInDiscards", "IpExtInNoRoutes",
                 "Udp6RcvbufErrors"):
        assert name in ours


def test_snmp_mismatched_lines_raise():
    with pytest.raises(ValueError):
        snmp.parse("Udp: InDatagrams NoPorts\nUdp: 1\n")


@pytest.mark.parametrize("fixture, ncols, cpus", [
    ("softnet_stat_10col_3.x.txt", 10, [0, 1, 2]),
    ("softnet_stat_13col_5.x.txt", 13, [0, 1, 2, 3, 4]),
    ("softnet_stat_15col_6.18.txt", 15, [0, 1]),
])
def test_softnet_columns(fixture, ncols, cpus):
    rs = softnet.parse(text(fixture))
    assert sorted({r.cpu for r in rs}) == cpus
    names = {r.name for r in rs}
    assert {"processed", "dropped", "time_squeeze"} <= names
    assert ("flow_limit_count" in names) == (ncols >= 11)
    assert ("backlog_len" in names) == (ncols >= 12)
    assert ("process_qlen" in names) == (ncols >= 15)


def test_softnet_values_and_cpu_column():
    rs = by_name(softnet.parse(text("softnet_stat_13col_5.x.txt")))
    assert rs[("dropped", None, 4)] == 0x2DB94
    assert rs[("received_rps", None, 1)] == 0x8EEB9A
    # synthetic, from the v3.13 format string: 11 columns, offline CPU 1 skipped -> row index
    line = "00000010 00000002 00000000 00000000 00000000 00000000 00000000 00000000 " \
           "00000000 00000003 00000001\n"
    rs11 = by_name(softnet.parse(line * 2))
    assert rs11[("flow_limit_count", None, 1)] == 1 and ("backlog_len", None, 0) not in rs11
    # with the cpu column the row index is ignored: rows for CPUs 0 and 5
    cols = ["0"] * 13
    rows = "\n".join(" ".join(cols[:12] + [c]) for c in ("00000000", "00000005"))
    assert {r.cpu for r in softnet.parse(rows)} == {0, 5}


def test_interrupts_and_softirqs_capture():
    rs = interrupts.parse_interrupts(text("interrupts_6.18.txt"))
    assert {r.cpu for r in rs} == {0, 1}
    irq24 = [r for r in rs if r.name == "24"]
    assert irq24 and "ACPI:Ged" in irq24[0].device
    assert any(r.name == "NMI" for r in rs)
    sirq = interrupts.parse_softirqs(text("softirqs_6.18.txt"))
    assert {r.name for r in sirq} == {"NET_RX", "NET_TX"}
    assert {r.cpu for r in sirq} == {0, 1}


def test_interrupts_header_names_cpus():
    sample = "           CPU0       CPU3\n  5:   10   20   IO-APIC 5-edge eth0\nERR:   0\n"
    rs = interrupts.parse_interrupts(sample)
    assert [(r.name, r.cpu, r.value) for r in rs] == [("5", 0, 10), ("5", 3, 20), ("ERR", 0, 0)]


def test_udp_sockets_capture():
    rs = sockets.parse(text("udp_6.18.txt"), "udp", ports=[9000])
    drops = [r for r in rs if r.name == "drops"]
    assert len(drops) == 1 and drops[0].value == 48 and drops[0].device.startswith("udp:9000:")
    assert sockets.parse(text("udp_6.18.txt"), "udp", ports=[9000], inodes=[1]) == []
    v6 = sockets.parse(text("udp6_6.18.txt"), "udp6", ports=[9001])
    assert [r.value for r in v6 if r.name == "drops"] == [0]


def test_snapshot_never_raises_on_missing_namespace_or_device():
    readings, missing = snapshot([Scope("pps-t-does-not-exist", ("lo",)),
                                  Scope(None, ("pps-no-such-dev",))])
    assert any(u.source == "netns" and u.netns == "pps-t-does-not-exist" for u in missing)
    assert any(u.source == "ethtool" and u.device == "pps-no-such-dev" for u in missing)
    assert any(r.source == "softnet" for _, r in readings)
