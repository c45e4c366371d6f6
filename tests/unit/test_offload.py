"""GSO/GRO told honestly: the warning appears exactly for GSO into a GRO receiver, segments
and datagrams are counted apart, missing kernel support is EnvironmentNotAble (exit 3);
and the summary extras (latency per receiver and its clock, CPU per worker)."""

from __future__ import annotations

import errno
from types import SimpleNamespace

import pytest
from loops import run_trial

from pps.config.model import load_config
from pps.errors import EnvironmentNotAble
from pps.host import offload
from pps.run.trial import Mark

PORTS = iter(range(47600, 47700))


def config(*sets: str):
    return load_config(None, ["run.duration=0.4", "run.warmup=0.2", "run.drain=0.2",
                              "run.interval=0.2", f"target.port={next(PORTS)}", *sets])


def run(*sets: str):
    return run_trial(config(*sets))


# ------------------------------------------------------------------ the warning, pure

@pytest.mark.parametrize("sets, packets, datagrams, warned", [
    (("senders.gso_segments=16", "receivers.gro=true"), 16_000, 1_000, True),
    (("senders.gso_segments=16", "receivers.gro=true"), 16_000, 16_000, False),  # split: real
    (("senders.gso_segments=16",), 16_000, 16_000, False),
    (("receivers.gro=true",), 16_000, 2_000, False),   # GRO of single packets (lab veth): real
    ((), 16_000, 16_000, False),
    (("senders.gso_segments=16", "receivers.gro=true"), 0, 0, False),  # nothing received
])
def test_warning_exactly_for_gso_into_gro(sets, packets, datagrams, warned):
    summary = {"rx_packets": packets, "rx_datagrams": datagrams}
    warnings = offload.offload_warnings(config(*sets), False, summary)
    assert bool(warnings) == warned
    if warned:
        assert "loopback" in warnings[0] and "16.0 segments" in warnings[0]
        assert "veth" in offload.offload_warnings(config(*sets), True, summary)[0]


def test_pacing_shortfall_is_said():
    c = config("senders.rate=500000")
    assert offload.pacing_warnings(c, {"tx_pps": 340_000.0, "seconds": 2.0})
    assert not offload.pacing_warnings(c, {"tx_pps": 498_000.0, "seconds": 2.0})
    assert not offload.pacing_warnings(config(), {"tx_pps": 1.0, "seconds": 2.0})


# ------------------------------------------------------------------ real runs on loopback

def test_gso_into_gro_receiver_gets_super_datagrams_and_the_warning():
    c, _, s = run("senders.gso_segments=16", "receivers.gro=true")
    assert s["tx_packets"] == 16 * s["tx_datagrams"]
    assert s["rx_datagrams"] * 2 < s["rx_packets"]  # coalesced: whole super-datagrams
    assert offload.offload_warnings(c, False, s)


def test_gso_into_plain_receiver_is_split_at_the_socket_and_real():
    c, _, s = run("senders.gso_segments=16")
    assert s["tx_packets"] == 16 * s["tx_datagrams"]
    assert s["rx_datagrams"] == s["rx_packets"] > 0
    # Each segment arrives as a whole wire packet of its own. How many an unpaced sender
    # loses to a full socket buffer depends on the host, but the gaps in the sequence can
    # never exceed what did not arrive.
    assert s["foreign"] == s["short_pkts"] == s["duplicate"] == 0
    assert 0 <= s["lost"] <= s["sent"] - s["received"]
    assert not offload.offload_warnings(c, False, s)


def test_gro_alone_on_loopback_coalesces_nothing():
    c, _, s = run("receivers.gro=true")
    assert s["rx_datagrams"] == s["rx_packets"] > 0
    assert s["tx_datagrams"] == s["tx_packets"]
    assert not offload.offload_warnings(c, False, s)


def test_latency_per_receiver_clock_and_cpu():
    c, outcome, s = run("receivers.count=2", "senders.flows=8")
    per = s["latency_per_receiver"]
    assert sorted(r["index"] for r in per) == [0, 1]
    got = [r for r in per if r["latency"]]
    assert got and all(r["latency"]["p50_ns"] <= r["latency"]["p99_ns"] for r in got)
    assert s["latency"]["p50_ns"] > 0  # the merged figures are still there
    assert s["latency_clock"]["shared"] is True and s["latency_clock"]["clock"] == "CLOCK_MONOTONIC"
    for w in s["workers"]:
        assert w["cpu_percent"] is not None and w["cpu_percent"] >= 0
        assert w["user_s"] is not None and w["sys_s"] is not None


def test_worker_cpu_time_is_the_loops_not_the_interpreters():
    # At 1 kpps the loops need a few ms of CPU; starting the worker (interpreter, imports)
    # takes ~0.15 s, which would dwarf that if it were counted.
    _, _, s = run("senders.rate=1000")
    for w in s["workers"]:
        assert w["user_s"] + w["sys_s"] < 0.05, w


def test_busy_poll_receiver_spins_and_shows_its_price():
    _, _, s = run("receivers.mode=busy-poll", "senders.rate=50000")
    block = run("senders.rate=50000")[2]
    busy = next(w for w in s["workers"] if w["role"] == "receiver")["cpu_percent"]
    idle = next(w for w in block["workers"] if w["role"] == "receiver")["cpu_percent"]
    assert s["rx_packets"] > 0
    assert busy > 70 and busy > 2 * idle  # a spinning receiver burns its CPU whatever the rate


def test_block_receiver_with_spin_polls_after_each_read_then_sleeps():
    def empty_polls(outcome):
        w = next(w for w in outcome.workers if w["role"] == "receiver")
        return outcome.marks["end"].slots[w["slot"]]["eagain"]

    # 20 kpps in batches of 64 is a burst every 3.2 ms: 2 ms of polling after each.
    _, spun, s = run("receivers.spin_us=2000", "senders.rate=20000")
    _, slept, _ = run("senders.rate=20000")
    assert s["rx_packets"] > 0
    # Asleep, a read comes back empty only on the 50 ms timeout; spinning, thousands do.
    assert empty_polls(spun) > 1000 and empty_polls(spun) > 50 * max(1, empty_polls(slept))


def test_clock_not_shared_or_latency_off():
    c = config()
    slots = [{"lat_skew": 5}]
    outcome = SimpleNamespace(marks={"end": Mark("end", 1.0, slots)},
                              workers=[{"role": "receiver", "slot": 0, "index": 0}])
    assert offload.latency_clock(c, outcome)["shared"] is False
    off = offload.latency_clock(config("run.latency=false"), outcome)
    assert off["recorded"] is False and "run.latency" in off["why"]


def test_cpu_percent():
    assert offload.cpu_percent({"cpu_time": {"user_s": 0.5, "sys_s": 1.5}}, 4.0) == 50.0
    assert offload.cpu_percent({"cpu_time": {}}, 4.0) is None
    assert offload.cpu_percent({"cpu_time": {"user_s": 1, "sys_s": 1}}, 0) is None


# ------------------------------------------------------------------ kernel support

class RefusingSocket:
    def __init__(self, err: int) -> None:
        self.err = err

    def setsockopt(self, *args) -> None:
        raise OSError(self.err, "Protocol not available")

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        pass


@pytest.mark.parametrize("sets, name", [
    (("senders.gso_segments=8",), "UDP_SEGMENT"),
    (("receivers.gro=true",), "UDP_GRO"),
    (("receivers.mode=busy-poll",), "SO_BUSY_POLL"),
    (("run.timestamps=kernel",), "SO_TIMESTAMPING"),
])
def test_missing_kernel_support_is_environment_not_able(sets, name):
    for err in (errno.ENOPROTOOPT, errno.EINVAL, errno.EPERM):
        with pytest.raises(EnvironmentNotAble, match=name) as info:
            offload.probe_kernel_support(config(*sets), lambda: RefusingSocket(err))
        assert info.value.exit_code == 3


def test_this_kernel_supports_them():
    c = config("senders.gso_segments=8", "receivers.gro=true", "receivers.mode=busy-poll")
    assert offload.probe_kernel_support(c) == ["UDP_SEGMENT", "UDP_GRO", "SO_BUSY_POLL"]
    assert offload.probe_kernel_support(config()) == []
