"""The C boundary with real sockets on loopback: round trips, exact accounting of
crafted sequence numbers, hostile packets, live counters, errno -> OSError."""

from __future__ import annotations

import errno
import random
import threading
import time

import pytest

from loops import WIRE, RunningReceiver, send_raw, wire
from pps import native
from pps.sockets import open_senders


@pytest.fixture
def stats():
    shm = native.SharedStats.create(2)
    yield shm
    shm.close()


def test_round_trip_exact_count(stats):
    rx = RunningReceiver(stats)
    socks, _ = open_senders([("127.0.0.1", rx.port)] * 3)
    params = native.SendParams(fds=[s.fileno() for s in socks], flow_base=7 << 16, batch=16,
                               payload=32, rate_pps=50_000, max_packets=3000)
    seqs = native.send_loop(params, stats, 0, [0, 0, 0])
    rx.wait_for(3000)
    counters = rx.stop()
    assert sum(seqs) == 3000 == stats.read(0)["packets"]
    assert counters["packets"] == 3000
    assert counters["lost"] == counters["reordered"] == counters["duplicate"] == 0
    by_flow = {f["flow"]: f for f in rx.flows}
    assert sorted(by_flow) == [(7 << 16) + i for i in range(3)]
    for i, seq in enumerate(seqs):
        assert by_flow[(7 << 16) + i]["unique"] == seq == by_flow[(7 << 16) + i]["next_seq"]
    assert counters["lat_count"] == 3000 and sum(stats.histogram(1)) == 3000
    for s in socks:
        s.close()


def test_skips_repeats_and_reorders_are_counted_exactly(stats):
    rx = RunningReceiver(stats)
    # flow 1: 0 1 2 5 4 3 3 6 9 (skip 7, 8), 10, 3000 (gap of 2989), 1500 (older than the
    # 1024-wide window), 2500 (inside it)
    order = [0, 1, 2, 5, 4, 3, 3, 6, 9, 10, 3000, 1500, 2500]
    send_raw(rx.port, [wire(1, seq) for seq in order])
    rx.wait_for(len(order))
    c = rx.stop()
    flow = rx.flows[0]
    assert c["packets"] == len(order)
    assert flow["received"] == 13 and flow["duplicate"] == 1 and c["duplicate"] == 1
    # 4 and 3 came after 5; 1500 and 2500 after 3000 (1500 beyond the window: "late").
    assert flow["reordered"] == 4 and flow["late"] == 1 == c["late"]
    assert flow["next_seq"] == 3001
    assert flow["unique"] == 12
    # Missing: 7, 8 and 11..2999 except 1500 and 2500.
    assert c["lost"] == 2 + 2989 - 2 == flow["next_seq"] - flow["unique"]


def _arrivals_with_gaps(rng: random.Random) -> list[int]:
    """In-order runs broken by gaps of every awkward size (inside a 64-bit word, across
    one, up to the 1024-wide window and past it), each followed by stragglers from what
    is still missing and repeats of what came, all within 1000 of the newest number."""
    order: list[int] = []
    seq = 0
    for gap in [1, 5, 63, 64, 65, 127, 200, 700, 1000, 1023, 1024, 1500, 3]:
        order += range(seq, seq + rng.randint(1, 90))
        newest = order[-1] + 1 + gap
        order.append(newest)
        came = set(order)
        recent = range(max(0, newest - 1000), newest)
        stragglers = [s for s in recent if s not in came]
        repeats = [s for s in recent if s in came]
        order += rng.sample(stragglers, min(4, len(stragglers)))
        order += rng.sample(repeats, min(3, len(repeats)))
        seq = newest + 1
    return order


def _interleave(rng: random.Random, flows: dict[int, list[int]]) -> list[tuple[int, int]]:
    """The flows' arrivals merged in chunks of 1 to 40, each flow keeping its own order."""
    queues = {flow: list(order) for flow, order in flows.items()}
    out: list[tuple[int, int]] = []
    while any(queues.values()):
        flow = rng.choice([f for f, q in queues.items() if q])
        take = rng.randint(1, 40)
        out += [(flow, seq) for seq in queues[flow][:take]]
        del queues[flow][:take]
    return out


@pytest.mark.parametrize("burst", [False, True], ids=["one-per-batch", "bursts"])
def test_gaps_of_every_size_keep_duplicates_apart_from_stragglers(stats, burst):
    """Window slots are set and cleared a word at a time, and runs in order are applied
    in one go; the counts must still mean what they say, checked against the plain
    definition: a duplicate is a number its flow already received. Sent one at a time
    each packet is a batch of its own; sent in bursts, batches hold runs of two flows
    broken by gaps, stragglers and repeats."""
    rng = random.Random(7)
    arrivals = _interleave(rng, {1: _arrivals_with_gaps(rng), 2: _arrivals_with_gaps(rng)})
    seen: dict[int, set[int]] = {1: set(), 2: set()}
    newest = {1: -1, 2: -1}
    duplicate = reordered = 0
    for flow, seq in arrivals:
        if seq in seen[flow]:
            duplicate += 1
        elif seq < newest[flow]:
            reordered += 1
        seen[flow].add(seq)
        newest[flow] = max(newest[flow], seq)
    rx = RunningReceiver(stats)
    payloads = [wire(flow, seq) for flow, seq in arrivals]
    if burst:
        send_raw(rx.port, payloads, pause_s=0)
    else:
        send_raw(rx.port, payloads)
    rx.wait_for(len(arrivals))
    c = rx.stop()
    assert c["packets"] == len(arrivals)
    assert (c["duplicate"], c["reordered"], c["late"]) == (duplicate, reordered, 0)
    by_flow = {f["flow"]: f for f in rx.flows}
    for flow in (1, 2):
        assert by_flow[flow]["unique"] == len(seen[flow])
        assert by_flow[flow]["next_seq"] == newest[flow] + 1
    assert c["lost"] == sum(newest[f] + 1 - len(seen[f]) for f in (1, 2))
    assert c["lat_count"] == len(arrivals) == sum(stats.histogram(1))


def test_foreign_short_and_garbage_are_counted_not_trusted(stats):
    rx = RunningReceiver(stats)
    payloads = [b"", b"x" * 10, b"\xff" * 64, WIRE.pack(0xDEADBEEF, 1, 5, 0), wire(3, 0),
                WIRE.pack(native.MAGIC, 0xFFFFFFFF, 2**64 - 1, 2**64 - 1)]
    send_raw(rx.port, payloads)
    rx.wait_for(len(payloads))
    c = rx.stop()
    assert c["packets"] == 6
    assert c["short_pkts"] == 2 and c["foreign"] == 2
    # The last one claims a send time in the far future: not a latency, a clock skew.
    assert c["lat_skew"] == 1
    assert {f["flow"] for f in rx.flows} == {3, 0xFFFFFFFF}


def test_counters_are_live_while_the_loop_runs(stats):
    rx = RunningReceiver(stats)
    send_raw(rx.port, [wire(0, i) for i in range(50)])
    rx.wait_for(50)
    live = stats.read(1)
    assert rx.thread.is_alive() and native.STATES[live["state"]] == "running"
    assert live["packets"] == 50 and live["heartbeat_ns"] > 0
    beat = live["heartbeat_ns"]
    time.sleep(0.2)  # the blocking loop times out and publishes a fresh heartbeat
    assert stats.read(1)["heartbeat_ns"] > beat
    rx.stop()
    assert stats.state(1) == "done"


def test_flow_table_is_bounded(stats):
    rx = RunningReceiver(stats, max_flows=8)
    send_raw(rx.port, [wire(flow, 0) for flow in range(20)])
    rx.wait_for(20)
    c = rx.stop()
    assert c["flows"] == 8 and c["untracked"] == 12 and len(rx.flows) == 8


def test_errno_surfaces_as_oserror_naming_the_call(stats, tmp_path):
    with open(tmp_path / "f", "w") as not_a_socket:
        params = native.SendParams(fds=[not_a_socket.fileno()], flow_base=0, batch=4, payload=32)
        with pytest.raises(OSError) as info:
            native.send_loop(params, stats, 0, [0])
    assert info.value.errno == errno.ENOTSOCK and "sendmmsg" in str(info.value)
    assert stats.state(0) == "failed"
    with pytest.raises(OSError) as info:
        native.Receiver(native.RecvParams(fd=0, batch=8, max_flows=0))
    assert info.value.errno == errno.EINVAL and "pps_recv_new" in str(info.value)


def test_stop_word_ends_an_unpaced_sender_within_a_batch(stats):
    rx = RunningReceiver(stats)
    socks, _ = open_senders([("127.0.0.1", rx.port)])
    params = native.SendParams(fds=[socks[0].fileno()], flow_base=0, batch=8, payload=32)
    timer = threading.Timer(0.3, stats.stop, args=(native.SENDER,))
    timer.start()
    began = time.monotonic()
    native.send_loop(params, stats, 0, [0])
    assert time.monotonic() - began < 2.0
    assert stats.read(0)["packets"] > 0
    rx.stop()
    socks[0].close()


def test_histogram_buckets_are_contiguous_and_monotonic():
    lows = native.hist_bounds()
    assert lows[0] == 0 and all(b > a for a, b in zip(lows, lows[1:]))
    for value in (0, 1, 31, 32, 33, 1000, 123_456_789, 2**40, 2**63):
        i = native.hist_index(value)
        assert lows[i] <= value and (i + 1 == len(lows) or value < lows[i + 1])


def test_block_mode_spins_after_packets_then_sleeps(stats):
    rx = RunningReceiver(stats, spin_ns=150_000_000)
    socks, _ = open_senders([("127.0.0.1", rx.port)])
    params = native.SendParams(fds=[socks[0].fileno()], flow_base=0, batch=16, payload=32,
                               rate_pps=50_000, max_packets=2000)
    native.send_loop(params, stats, 0, [0])
    rx.wait_for(2000)
    spinning = stats.read(1)["eagain"]
    time.sleep(0.4)                       # the spin window (150 ms) ends in here
    asleep = stats.read(1)["eagain"]
    time.sleep(0.4)
    counters = rx.stop()
    socks[0].close()
    assert counters["packets"] == 2000 and counters["lost"] == 0
    assert asleep - spinning > 1000       # polled back to back after the packets
    # then slept in recvmmsg: only SO_RCVTIMEO's 50 ms timeouts count as empty reads
    assert counters["eagain"] - asleep <= 0.4 / 0.05 + 3

