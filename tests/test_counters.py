"""The counters table: deltas per series, 32-bit wrap, resets, gauges, totals."""

from __future__ import annotations

import math

from pps.collectors import Reading as R
from pps.counters import WRAP32, to_frame, total_of, totals


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


def test_64bit_counter_going_down_is_a_reset():
    df = to_frame(snaps([("n", R("link", "rx_packets", 2**40, device="v"))],
                        [("n", R("link", "rx_packets", 100, device="v"))],
                        [("n", R("link", "rx_packets", 130, device="v"))]))
    assert deltas(df, "rx_packets") == [None, None, 30]
    assert list(df["reset"]) == [False, True, False]
    tot = totals(df)
    assert tot["resets"].tolist() == [1] and tot["delta"].tolist() == [30]


def test_small_32bit_counter_going_down_is_a_reset_not_a_wrap():
    df = to_frame(snaps([(None, R("snmp", "UdpNoPorts", 1000))],
                        [(None, R("snmp", "UdpNoPorts", 3))]))
    assert df["reset"].tolist() == [False, True]


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
