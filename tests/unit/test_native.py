"""The C boundary with real sockets on loopback: round trips, exact accounting of
crafted sequence numbers, hostile packets (keys, ids, jumps, replays, stamps; the
sanitized build in test_wire_trust.py goes further), live counters, errno -> OSError."""

from __future__ import annotations

import errno
import random
import threading
import time

import pytest
from loops import WIRE, RunningReceiver, send_raw, wire

from pps import native
from pps.errors import ConfigError
from pps.host.sockets import open_senders


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
    assert c["short_pkts"] == 2 and c["foreign"] == 3
    # The last one claims the last sequence number there is: no sender gets there, so it is
    # not a gap of 2^64 - 1 and it makes no flow entry.
    assert c["seq_jump"] == 1 and c["lost"] == 0 and c["lat_count"] == 1
    assert {f["flow"] for f in rx.flows} == {3}


def test_wire_flow_is_a_keyed_permutation_that_undoes_itself():
    rng = random.Random(3)
    ids = [0, 1, 0xFFFF, 1 << 16, 0xFFFFFFFF] + [rng.getrandbits(32) for _ in range(2000)]
    key = rng.getrandbits(32)
    wires = [native.wire_flow(key, i) for i in ids]
    assert len(set(wires)) == len(set(ids))                      # one to one
    assert [native.wire_flow(key, w) for w in wires] == ids      # the same function decodes
    assert [native.wire_flow(0, i) for i in ids] == ids          # key 0: as they are
    # A key one bit away decodes this run's ids to numbers far from any of them.
    near = [native.wire_flow(key ^ 1, w) for w in wires[:5]]
    assert all(n >> 16 > 8 for n in near)


def _keyed_run(stats, send_key: int, recv_key: int) -> tuple[dict, list[dict], list[int]]:
    """600 packets of flows 7<<16 + 0..2 under send_key, into a receiver of recv_key."""
    rx = RunningReceiver(stats, run_key=recv_key, n_senders=8, flows_per_sender=3)
    socks, _ = open_senders([("127.0.0.1", rx.port)] * 3)
    params = native.SendParams(fds=[s.fileno() for s in socks], flow_base=7 << 16, batch=16,
                               payload=32, rate_pps=50_000, max_packets=600, run_key=send_key)
    seqs = native.send_loop(params, stats, 0, [0, 0, 0])
    rx.wait_for(600)
    counters = rx.stop()
    for s in socks:
        s.close()
    return counters, rx.flows, seqs


def test_keyed_flows_round_trip(stats):
    c, flows, seqs = _keyed_run(stats, 0xC0FFEE15, 0xC0FFEE15)
    assert c["packets"] == 600 and c["foreign"] == 0 and c["lost"] == 0
    assert {f["flow"]: f["unique"] for f in flows} == {(7 << 16) + i: n for i, n in enumerate(seqs)}


def test_another_runs_key_makes_its_packets_foreign(stats):
    c, flows, _ = _keyed_run(stats, 0xC0FFEE15, 0xC0FFEE15 ^ 1)
    assert c["packets"] == c["foreign"] == c["foreign_flow"] == 600
    assert flows == [] and c["flows"] == c["lat_count"] == c["lost"] == 0


def test_a_flow_id_outside_the_runs_senders_and_flows_is_foreign(stats):
    rx = RunningReceiver(stats, n_senders=2, flows_per_sender=3)
    send_raw(rx.port, [wire(1 << 16 | 2, 0), wire(2 << 16, 0), wire(3, 0), wire(0, 0)])
    rx.wait_for(4)
    c = rx.stop()
    assert c["foreign_flow"] == c["foreign"] == 2
    assert sorted(f["flow"] for f in rx.flows) == [0, 1 << 16 | 2]


def test_a_jump_past_the_bound_is_not_loss(stats):
    rx = RunningReceiver(stats)
    jump = native.SEQ_JUMP_MAX
    send_raw(rx.port, [wire(1, 0), wire(1, 1 + jump + 1),   # one past the bound: refused
                       wire(1, 1 + jump),                   # on it: a gap, believed
                       wire(2, native.SEQ_LIMIT), wire(2, 2**64 - 1), wire(2, 0)])
    rx.wait_for(6)
    c = rx.stop()
    by_flow = {f["flow"]: f for f in rx.flows}
    assert c["seq_jump"] == 3 and c["foreign"] == 3 and c["lost"] == jump
    assert by_flow[1]["next_seq"] == jump + 2 and by_flow[1]["unique"] == 2
    assert by_flow[2]["next_seq"] == 1 and by_flow[2]["received"] == 1


def test_a_replay_older_than_the_window_never_repays_another_flows_loss(stats):
    rx = RunningReceiver(stats)
    # flow 1 complete to 1999; flow 2 lost 1..1499; then flow 1's old 3, twice.
    order = [(1, s) for s in range(2000)] + [(2, 0), (2, 1500), (1, 3), (1, 3)]
    send_raw(rx.port, [wire(f, s) for f, s in order], pause_s=0)
    rx.wait_for(len(order))
    c = rx.stop()
    by_flow = {f["flow"]: f for f in rx.flows}
    assert c["packets"] == len(order) and c["lost"] == 1499
    assert by_flow[1]["duplicate"] == 2 and by_flow[1]["unique"] == 2000
    assert by_flow[1]["late"] == c["late"] == 0


def test_stamps_from_before_the_run_or_far_ahead_are_not_latencies(stats):
    start = native.now_ns()
    rx = RunningReceiver(stats, run_start_ns=start)
    slack = native.STAMP_SLACK_NS
    send_raw(rx.port, [wire(1, 0, tx_ns=1), wire(1, 1, tx_ns=start - slack - 1),
                       wire(1, 2, tx_ns=2**64 - 1), wire(1, 3, tx_ns=native.now_ns() + 10 * slack),
                       wire(1, 4, tx_ns=native.now_ns() + slack // 2),  # skew, within slack
                       wire(1, 5, tx_ns=start - slack // 2), wire(1, 6)])
    rx.wait_for(7)
    c = rx.stop()
    assert (c["stamp_stale"], c["stamp_future"], c["lat_skew"]) == (2, 2, 1)
    assert c["lat_count"] == 2 == sum(stats.histogram(1))
    assert c["lat_max_ns"] < native.now_ns() - start + slack
    assert c["lost"] == 0 and rx.flows[0]["unique"] == 7  # the packets themselves count


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


@pytest.mark.parametrize("field, value", [("max_flows", native.MAX_FLOWS + 1),
                                          ("n_senders", native.MAX_SENDERS + 1),
                                          ("flows_per_sender", native.MAX_FLOWS_PER_SENDER + 1)])
def test_bounds_past_the_documented_maximum_are_refused(field, value):
    with pytest.raises(ConfigError, match=field):
        native.Receiver(native.RecvParams(fd=0, batch=8, **{field: value}))
    # C refuses them as well, whoever calls it.
    p = native.ffi.new("struct pps_recv_params *", {"fd": 0, "batch": 8, "bufsize": 2048,
                                                    "max_flows": 16, field: value})
    assert native.lib.pps_recv_new(p) == native.ffi.NULL
    assert native.ffi.errno == errno.EINVAL


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

