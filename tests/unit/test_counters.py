"""The counters table: deltas per series, 32-bit wrap, resets, gauges, totals."""

from __future__ import annotations

import math

import support

from pps.counters.collectors import Reading as R
from pps.counters.collectors import nic, softnet
from pps.counters.ledger import build_ledger
from pps.counters.table import THIRTY_TWO_BIT, WRAP32, to_frame, total_of, totals

DATA = support.DATA / "collectors"


def snaps(*steps):
    return [(float(t), rs) for t, rs in enumerate(steps)]


def deltas(df, name):
    return [None if math.isnan(d) else d for d in df[df["name"] == name]["delta"]]


def test_deltas_per_series_and_namespace():
    df = to_frame(snaps(
        [(None, R("snmp", "UdpNoPorts", 5)), ("a", R("snmp", "UdpNoPorts", 100))],
        [(None, R("snmp", "UdpNoPorts", 7)), ("a", R("snmp", "UdpNoPorts", 150))],
    ))
    root = df[df["netns"].isna()]
    assert list(root["delta"].fillna(-1)) == [-1, 2]
    assert list(df[df["netns"] == "a"]["delta"].fillna(-1)) == [-1, 50]
    assert list(df.columns) == ["t", "source", "netns", "device", "queue", "cpu", "name",
                                "value", "delta", "reset"]


def test_queue_and_cpu_are_separate_series():
    df = to_frame(snaps(
        [(None, R("softnet", "dropped", 1, cpu=0)), (None, R("softnet", "dropped", 10, cpu=1))],
        [(None, R("softnet", "dropped", 2, cpu=0)), (None, R("softnet", "dropped", 13, cpu=1))],
    ))
    tot = totals(df)
    assert total_of(tot, "softnet", "dropped") == 4
    assert sorted(tot["delta"]) == [1, 3]


def test_32bit_wrap():
    df = to_frame(snaps([(None, R("softnet", "processed", WRAP32 - 10, cpu=0))],
                        [(None, R("softnet", "processed", 5, cpu=0))],
                        [(None, R("softnet", "processed", 9, cpu=0))]))
    assert deltas(df, "processed") == [None, 15, 4]
    assert not df["reset"].any()
    assert total_of(totals(df), "softnet", "processed") == 19


def test_64bit_counter_going_down_is_a_reset_counted_from_zero():
    df = to_frame(snaps([("n", R("link", "rx_packets", 2**40, device="v"))],
                        [("n", R("link", "rx_packets", 100, device="v"))],
                        [("n", R("link", "rx_packets", 130, device="v"))]))
    assert deltas(df, "rx_packets") == [None, 100, 30]
    assert list(df["reset"]) == [False, True, False]
    tot = totals(df)
    assert tot["resets"].tolist() == [1] and tot["delta"].tolist() == [130]


def test_64bit_reset_from_the_upper_half_of_32_bits_is_no_wrap():
    # A re-created virtio_net device: its counters start again from the values captured on
    # the test machine (tests/data/collectors). Before, tx_kicks stood at 3e9, in
    # [2**31, 2**32): reading that as a 32-bit wrap would add 2**32 - 3e9 + 1406 ~ 1.3e9.
    after = nic.parse((DATA / "ethtool_virtio_net_6.18.txt").read_text(), device="eth0")
    kicks = next(r for r in after if r.name == "tx_kicks")
    assert kicks.value == 1406
    before = [R("ethtool", "tx_kicks", 3_000_000_000, device="eth0")]
    df = to_frame(snaps([(None, r) for r in before], [(None, r) for r in after]))
    row = df[(df["name"] == "tx_kicks") & (df["t"] == 1.0)].iloc[0]
    assert bool(row["reset"]) and row["delta"] == 1406
    assert total_of(totals(df), "ethtool", "tx_kicks") == 1406


def test_snmp_reset_from_the_upper_half_is_a_reset():
    # snmp counters are unsigned long: 64-bit. A namespace made anew restarts them.
    df = to_frame(snaps([("n", R("snmp", "UdpInDatagrams", 2**31 + 5))],
                        [("n", R("snmp", "UdpInDatagrams", 7))]))
    assert df["reset"].tolist() == [False, True]
    assert deltas(df, "UdpInDatagrams") == [None, 7]


def test_small_counter_going_down_is_a_reset_not_a_wrap():
    df = to_frame(snaps([(None, R("snmp", "UdpNoPorts", 1000))],
                        [(None, R("snmp", "UdpNoPorts", 3))]))
    assert df["reset"].tolist() == [False, True]
    # A 32-bit one too: from below 2**31 a wrap would need 2**31 events in one interval.
    df = to_frame(snaps([(None, R("interrupts", "24", 1000, cpu=0))],
                        [(None, R("interrupts", "24", 3, cpu=0))]))
    assert df["reset"].tolist() == [False, True] and deltas(df, "24") == [None, 3]


def test_softnet_from_real_capture_wraps_at_32_bits():
    # The kernel prints softnet_stat's fields with %08x of unsigned int: they wrap at 2**32.
    text = (DATA / "softnet_stat_15col_6.18.txt").read_text()
    after = softnet.parse(text)
    processed = next(r for r in after if r.name == "processed" and r.cpu == 0)
    assert processed.value == 0x000BDCFC
    before = [R("softnet", "processed", WRAP32 - 16, cpu=0)]
    df = to_frame(snaps([(None, r) for r in before], [(None, r) for r in after]))
    row = df[(df["name"] == "processed") & (df["cpu"] == 0) & (df["t"] == 1.0)].iloc[0]
    assert not row["reset"] and row["delta"] == 16 + 0x000BDCFC


def test_only_the_kernels_32bit_sources_wrap():
    assert THIRTY_TWO_BIT == {"softnet", "interrupts", "softirqs", "socket"}
    for source, name in (("interrupts", "24"), ("softirqs", "NET_RX"), ("socket", "drops")):
        df = to_frame(snaps([(None, R(source, name, WRAP32 - 1, cpu=0))],
                            [(None, R(source, name, 4, cpu=0))]))
        assert deltas(df, name) == [None, 5] and not df["reset"].any(), source
    for source in ("link", "qstats", "ethtool", "snmp", "netstat", "snmp6"):
        df = to_frame(snaps([(None, R(source, "x", WRAP32 - 1, device="d"))],
                            [(None, R(source, "x", 4, device="d"))]))
        assert deltas(df, "x") == [None, 4] and df["reset"].tolist() == [False, True], source


def test_ledger_counts_a_reset_from_zero_and_notes_it():
    df = to_frame([(0.0, [("rx", R("link", "rx_missed_errors", 3_000_000_000, device="e"))]),
                   (1.0, [("rx", R("link", "rx_missed_errors", 5, device="e"))])])
    led = build_ledger(10, 5, totals(df), "rx", "rx", shared=())
    assert led.to_dict()["drops"] == {"link.rx_missed_errors": 5}
    assert led.unaccounted == 0
    assert any("rx_missed_errors reset 1 time" in n for n in led.notes)


def test_gauges_take_plain_differences():
    df = to_frame(snaps([(None, R("softnet", "backlog_len", 50, cpu=0))],
                        [(None, R("softnet", "backlog_len", 10, cpu=0))]))
    assert deltas(df, "backlog_len") == [None, -40]
    assert not df["reset"].any()


def test_series_appearing_late_and_window():
    df = to_frame(snaps([(None, R("snmp", "A", 1))],
                        [(None, R("snmp", "A", 2)), (None, R("snmp", "B", 10))],
                        [(None, R("snmp", "A", 4)), (None, R("snmp", "B", 15))],
                        [(None, R("snmp", "A", 8)), (None, R("snmp", "B", 15))]))
    tot = totals(df)
    assert total_of(tot, "snmp", "A") == 7 and total_of(tot, "snmp", "B") == 5
    win = totals(df, start=1.0, end=2.0)
    assert total_of(win, "snmp", "A") == 2 and total_of(win, "snmp", "B") == 5
    assert int(win.loc[win["name"] == "A", "samples"].iloc[0]) == 2


def test_empty():
    df = to_frame([])
    assert df.empty and "delta" in df.columns
    assert totals(df).empty


def test_not_set_marker_is_left_out():
    df = to_frame(snaps([("n", R("ethtool", "x", 2**64 - 1, device="e")),
                         ("n", R("snmp", "TcpMaxConn", -1))]))
    assert df["name"].tolist() == ["TcpMaxConn"]
