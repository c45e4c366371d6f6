"""Kernel receive timestamps (run.timestamps = kernel) on real loopback sockets: the C loop
splits one-way latency at the kernel's RX stamp into stack and app, counts packets that come
unstamped and intervals that run backwards; whole runs carry the split into the summary,
the latency table and the text; with "user" none of it appears."""

from __future__ import annotations

import errno
import json

import pandas as pd
import pytest
from loops import WIRE, RunningReceiver, run_trial, send_raw
from support import pps

from pps import native
from pps.config.model import load_config
from pps.host import offload
from pps.host.sockets import open_senders
from pps.report import display
from pps.results import latency

PORTS = iter(range(48300, 48400))
REALTIME = native.CLOCK_REALTIME


def stamping_receiver(stats, stamped: bool = True, gro: bool = False) -> RunningReceiver:
    """A receiver on a socket with SO_TIMESTAMPING (stamped=False: without it), its loop told
    to read the stamps, on CLOCK_REALTIME as they are."""
    return RunningReceiver(stats, sock_opts={"timestamps": stamped, "gro": gro}, gro=gro,
                           bufsize=65536 if gro else 2048, timestamps=True, clock=REALTIME)


@pytest.fixture
def stats():
    shm = native.SharedStats.create(2)
    yield shm
    shm.close()


def send(stats, port: int, n: int, flows: int = 3, gso: int = 0) -> None:
    socks, _ = open_senders([("127.0.0.1", port)] * flows, gso_segments=gso, payload=32)
    params = native.SendParams(fds=[s.fileno() for s in socks], flow_base=0, batch=16,
                               payload=32, gso_segments=gso, rate_pps=50_000, max_packets=n,
                               clock=REALTIME)
    native.send_loop(params, stats, 0, [0] * flows)
    for s in socks:
        s.close()


def assert_split_adds_up(c: dict[str, int], stats, n: int) -> None:
    """Every packet in all three histograms; per packet stack + app = one-way, exactly."""
    assert c["lat_count"] == c["stack_count"] == c["app_count"] == n
    assert c["ts_missing"] == c["lat_skew"] == c["stack_skew"] == c["app_skew"] == 0
    for kind in latency.KINDS:
        assert sum(stats.histogram(1, kind)) == n
    assert c["stack_sum_ns"] + c["app_sum_ns"] == c["lat_sum_ns"]
    assert 0 < c["stack_max_ns"] <= c["lat_max_ns"] and 0 < c["app_max_ns"] <= c["lat_max_ns"]


# ------------------------------------------------------------------ the C loop

def test_counters_follow_pps_h_order_and_histograms_are_cache_aligned():
    ffi = native.ffi
    offsets = [ffi.offsetof("struct pps_stats", name) for name in native.COUNTERS]
    assert offsets == list(range(offsets[0], offsets[0] + 8 * len(offsets), 8))
    for field, _ in native.HIST_KINDS.values():
        assert ffi.offsetof("struct pps_stats", field) % 64 == 0
    assert ffi.sizeof("struct pps_stats") % 64 == 0
    shm = native.SharedStats.create(1)
    try:
        assert shm.shm.version == native.lib.PPS_SHM_VERSION == 3
    finally:
        shm.close()


def test_kernel_stamps_split_one_way_latency(stats):
    rx = stamping_receiver(stats)
    assert rx.report.timestamps == "software" and not rx.report.notes
    send(stats, rx.port, 3000)
    rx.wait_for(3000)
    c = rx.stop()
    assert c["packets"] == 3000 and c["lost"] == 0
    assert_split_adds_up(c, stats, 3000)


def test_under_gro_every_segment_shares_its_datagrams_stamp(stats):
    rx = stamping_receiver(stats, gro=True)
    send(stats, rx.port, 2000, flows=1, gso=8)
    rx.wait_for(2000)
    c = rx.stop()
    assert c["packets"] == 2000 and c["datagrams"] * 2 < c["packets"]  # coalesced
    assert_split_adds_up(c, stats, 2000)


def test_a_socket_without_stamps_counts_them_missing(stats):
    rx = stamping_receiver(stats, stamped=False)
    send(stats, rx.port, 500)
    rx.wait_for(500)
    c = rx.stop()
    assert c["lat_count"] == c["ts_missing"] == 500
    assert c["stack_count"] == c["app_count"] == 0 and sum(stats.histogram(1, "stack")) == 0


def test_a_send_time_after_the_stamp_is_skew_not_latency(stats):
    rx = stamping_receiver(stats)
    now = native.now_ns(REALTIME)
    future = now + native.STAMP_SLACK_NS // 2  # within the slack: skew, not a forged stamp
    send_raw(rx.port, [WIRE.pack(native.MAGIC, 1, 0, future) + b"\0" * 8,
                       WIRE.pack(native.MAGIC, 1, 1, now) + b"\0" * 8])
    rx.wait_for(2)
    c = rx.stop()
    assert c["lat_skew"] == c["stack_skew"] == 1
    assert c["lat_count"] == c["stack_count"] == 1
    assert c["app_count"] == 2 and c["app_skew"] == 0  # stamp to read time is fine for both


def test_the_loop_refuses_stamps_on_a_clock_they_are_not_on():
    with pytest.raises(OSError) as info:
        native.Receiver(native.RecvParams(fd=0, batch=8, timestamps=True,
                                          clock=native.CLOCK_MONOTONIC))
    assert info.value.errno == errno.EINVAL


# ------------------------------------------------------------------ whole runs

def run(*sets: str):
    return run_trial(load_config(None, ["run.duration=0.5", "run.warmup=0.2", "run.drain=0.2",
                                        "run.interval=0.25", "senders.rate=50000",
                                        f"target.port={next(PORTS)}", *sets]))


def upper_edge(value: int) -> int:
    lows = native.hist_bounds()
    return lows[native.hist_index(value) + 1] - 1


def test_a_kernel_run_records_stack_and_app_beside_one_way():
    c, outcome, s = run("run.timestamps=kernel")
    receiver = next(w for w in outcome.workers if w["role"] == "receiver")
    end = outcome.marks["end"].slots[receiver["slot"]]
    n = end["lat_count"]
    assert n > 10_000 and end["stack_count"] == end["app_count"] == n
    assert end["stack_sum_ns"] + end["app_sum_ns"] == end["lat_sum_ns"]
    table = latency.table(outcome.histograms)
    merged = table[table["receiver"] == -1].groupby("kind")["count"].sum()
    assert merged.to_dict() == {"app": n, "one_way": n, "stack": n}
    one, stack, app = s["latency"], s["latency_stack"], s["latency_app"]
    assert stack["p50_ns"] > 0 and app["p50_ns"] > 0 and s["ts_missing"] == 0
    # Per packet each part is at most the whole, so every percentile is too (same buckets).
    for key in one:
        assert stack[key] <= one[key] and app[key] <= one[key], key
    # At most 10% of packets exceed each part's p90, so at least 80% have a one-way latency
    # within the two p90s' sum: the one-way median is no more than that (bucket edge).
    assert one["p50_ns"] <= upper_edge(stack["p90_ns"] + app["p90_ns"])
    clock = offload.latency_clock(c, outcome)
    assert clock["clock"] == "CLOCK_REALTIME" and clock["shared"] is True
    per = offload.latency_per_receiver(outcome)[0]
    assert per["latency_stack"]["p50_ns"] > 0 and per["latency_app"]["max_ns"] == app["max_ns"]
    text = display.run_summary(s)
    assert "\n  stack:  p50 " in text and "\n  app:    p50 " in text


def test_a_user_run_has_no_stack_or_app():
    c, outcome, s = run()
    assert set(outcome.histograms) == {"one_way"}
    assert set(latency.table(outcome.histograms)["kind"]) == {"one_way"}
    assert "latency_stack" not in s and "latency_app" not in s and "ts_missing" not in s
    assert s["latency"]["p50_ns"] > 0
    assert offload.latency_clock(c, outcome)["clock"] == "CLOCK_MONOTONIC"
    assert "stack:" not in display.run_summary(s)
    assert all("latency_stack" not in r for r in offload.latency_per_receiver(outcome))


def test_cli_json_and_latency_table_with_kernel_stamps(tmp_path):
    out = tmp_path / "res"
    proc = pps("run", "--duration", "0.5", "--json", "--out", str(out),
               "--set", "run.warmup=0.2", "--set", "run.timestamps=kernel",
               "--set", "senders.rate=50000", "--set", f"target.port={next(PORTS)}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)
    for key in ("latency", "latency_stack", "latency_app"):
        assert set(summary[key]) == {"p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"}
    table = pd.read_parquet(out / "latency.parquet")
    assert list(table.columns) == ["kind", "receiver", "low_ns", "high_ns", "count"]
    counts = table[table["receiver"] == -1].groupby("kind")["count"].sum()
    assert counts["stack"] == counts["app"] == counts["one_way"] > 0
    run_json = json.loads((out / "run.json").read_text())
    assert run_json["config"]["run"]["timestamps"] == "kernel"
    receiver = next(w for w in run_json["workers"] if w["role"] == "receiver")
    assert receiver["socket"]["timestamps"] == "software"


def test_kernel_support_is_probed():
    c = load_config(None, ["run.timestamps=kernel"])
    assert offload.probe_kernel_support(c) == ["SO_TIMESTAMPING"]


def test_a_latency_table_from_before_kinds_reads_as_one_way(tmp_path):
    from pps.results.store import read_trial, write_trial

    old = pd.DataFrame([{"receiver": -1, "low_ns": 1024, "high_ns": 1087, "count": 5}])
    write_trial(tmp_path / "r", {"summary": {}}, {"latency": old})
    table = read_trial(tmp_path / "r").tables["latency"]
    assert list(table.columns) == ["kind", "receiver", "low_ns", "high_ns", "count"]
    assert list(table["kind"]) == ["one_way"] and list(table["count"]) == [5]
