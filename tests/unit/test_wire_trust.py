"""A receiver that does not trust the wire (docs/wire.md), on real loopback sockets.

The C loops are built with AddressSanitizer and UndefinedBehaviorSanitizer into a small
driver (csrc/fuzz/driver.c) and fed random, short, oversized and crafted datagrams next to
an honest sender: extreme sequence numbers, stamps 0, 1 and 2^64 - 1, more flows than the
table holds, the wrong key, replays. Every counter must come out as the contract says and
the sanitizers must stay silent. Then a forger sends into a real run's receiver (the built
module, through pps.run.worker): its packets are foreign, nothing of the honest flows moves.
"""

from __future__ import annotations

import os
import random
import re
import socket
import struct
import subprocess
import threading
import time
from pathlib import Path

import pytest
from support import ROOT

from pps import native
from pps.config.model import load_config
from pps.report import display
from pps.results import summary
from pps.run.group import LocalGroup
from pps.run.trial import WorkerSpec, worker_specs

CSRC = ROOT / "csrc"
WIRE = struct.Struct("<IIQQ")
SANITIZE = ["-fsanitize=address,undefined", "-fno-sanitize-recover=all", "-fno-omit-frame-pointer"]
# Any of these on stderr is a sanitizer's report: the test fails on it, whatever the exit.
REPORT = re.compile(r"AddressSanitizer|LeakSanitizer|UndefinedBehaviorSanitizer|runtime error:")
SANITIZER_ENV = {"ASAN_OPTIONS": "detect_leaks=1:abort_on_error=0:exitcode=66",
                 "UBSAN_OPTIONS": "print_stacktrace=1:halt_on_error=1:exitcode=67"}
N_SENDERS, FLOWS_PER_SENDER, MAX_FLOWS = 2, 3, 4
KEY = random.Random(15).getrandbits(32)
WAIT_S = 30.0  # a bound on waiting for packets, never a measured time


def is_ours(wire_flow: int, key: int = KEY) -> bool:
    """What the receiver accepts: the decoded id is a sender and flow this run has."""
    flow = native.wire_flow(key, wire_flow)
    return flow >> 16 < N_SENDERS and flow & 0xFFFF < FLOWS_PER_SENDER


def packet(flow: int, seq: int, tx_ns: int, key: int = KEY) -> bytes:
    """A well-formed packet of run flow id `flow`, under `key`."""
    return WIRE.pack(native.MAGIC, native.wire_flow(key, flow), seq, tx_ns) + b"\0" * 8


@pytest.fixture(scope="module")
def driver(tmp_path_factory) -> Path:
    """csrc's loops and the driver, built with both sanitizers. A host where that does not
    link fails here, with gcc's words: the CI image needs libasan and libubsan."""
    out = tmp_path_factory.mktemp("sanitized") / "driver"
    sources = sorted(str(p) for p in CSRC.glob("*.c")) + [str(CSRC / "fuzz" / "driver.c")]
    build = subprocess.run(["gcc", "-O1", "-g", "-std=gnu11", "-Wall", "-Wextra", "-Werror",
                            *SANITIZE, f"-I{CSRC}", *sources, "-o", str(out)],
                           capture_output=True, text=True)
    assert build.returncode == 0, build.stderr
    return out


@pytest.fixture
def stats():
    shm = native.SharedStats.create(2)
    yield shm
    shm.close()


def _args(stats: native.SharedStats, slot: int, **values: int) -> list[str]:
    return [f"shm_fd={stats.fd}", f"nslots={stats.nslots}", f"slot={slot}",
            *(f"{k}={v}" for k, v in values.items())]


def _assert_clean(proc_name: str, returncode: int, stderr: str) -> None:
    assert not REPORT.search(stderr), f"{proc_name}: sanitizer report:\n{stderr}"
    assert returncode == 0, f"{proc_name} exited {returncode}: {stderr}"


class SanitizedReceiver:
    """The driver's receiver loop in slot 1, stopped through the segment's stop word."""

    def __init__(self, driver: Path, stats: native.SharedStats, **params: int) -> None:
        self.stats = stats
        self.proc = subprocess.Popen(
            [str(driver), "recv", *_args(stats, 1, **params)], pass_fds=(stats.fd,),
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, **SANITIZER_ENV})
        line = self.proc.stdout.readline()
        if not line.startswith("port "):
            self.proc.kill()
            _, err = self.proc.communicate()
            pytest.fail(f"the sanitized receiver did not start: {line!r} {err}")
        self.port = int(line.split()[1])

    def wait_for(self, packets: int) -> dict[str, int]:
        end = time.monotonic() + WAIT_S
        while self.stats.read(1)["packets"] < packets and time.monotonic() < end:
            time.sleep(0.01)
        return self.stats.read(1)

    def stop(self) -> tuple[dict[str, int], dict[int, dict[str, int]]]:
        self.stats.stop(native.RECEIVER)
        try:
            out, err = self.proc.communicate(timeout=WAIT_S)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.communicate()
        _assert_clean("receiver", self.proc.returncode, err)
        flows = {}
        for line in out.splitlines():  # the "port" line was read at the start
            words = line.split()
            values = dict(zip(words[0::2], map(int, words[1::2])))
            flows[values["flow"]] = values
        return self.stats.read(1), flows


def sanitized_send(driver: Path, stats: native.SharedStats, port: int,
                   **params: int) -> dict[int, int]:
    """The driver's sender loop in slot 0, to completion: flow id -> packets sent."""
    proc = subprocess.run([str(driver), "send", *_args(stats, 0, port=port, run_key=KEY, **params)],
                          pass_fds=(stats.fd,), capture_output=True, text=True, timeout=WAIT_S,
                          env={**os.environ, **SANITIZER_ENV})
    _assert_clean("sender", proc.returncode, proc.stderr)
    return {int(f): int(n) for _, f, n in (line.split() for line in proc.stdout.splitlines())}


def send_datagrams(port: int, payloads: list[bytes]) -> None:
    """One at a time with a pause, so the receiver never overflows."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 20)
        for p in payloads:
            s.sendto(p, ("127.0.0.1", port))
            time.sleep(0.0002)


# ------------------------------------------------------------------ what the forgers send

def garbage(rng: random.Random) -> tuple[list[bytes], dict[str, int]]:
    """Random, short, oversized and foreign datagrams, none of them this run's; with what
    each must count as."""
    payloads, want = [], {"short_pkts": 0, "bad_magic": 0, "foreign_flow": 0}
    magic = struct.pack("<I", native.MAGIC)
    for length in range(24):  # every short length, with and without the magic in front
        body = (magic + rng.randbytes(24)) if length % 2 else rng.randbytes(24)
        payloads.append(body[:length])
        want["short_pkts"] += 1
    for length in [24, 25, 100, 1500, 2047, 2048, 2049, 3000, 65000]:  # > 2048: cut short
        body = rng.randbytes(length)
        while body[:4] == magic:
            body = rng.randbytes(length)
        payloads.append(body)
        want["bad_magic"] += 1
    extremes = [0, 1, 2**32, 2**63, 2**64 - 1]
    # The right magic: random ids, this run's ids under other keys (one bit apart, and 0:
    # as a key-less tool writes them), and the contract's extremes in every other field.
    wires = [rng.getrandbits(32) for _ in range(40)]
    for other in (KEY ^ 1, KEY ^ 0x80000000, 0):
        wires += [native.wire_flow(other, s << 16 | f)
                  for s in range(N_SENDERS) for f in range(FLOWS_PER_SENDER)]
    for wire in wires:
        assert not is_ours(wire), "a forged id decodes to this run's: pick another seed"
        payloads.append(WIRE.pack(native.MAGIC, wire, rng.choice(extremes), rng.choice(extremes))
                        + rng.randbytes(rng.choice([0, 8, 3000])))
        want["foreign_flow"] += 1
    return payloads, want


def crafted(now: int, sent: dict[int, int]) -> list[bytes]:
    """Packets with this run's key, as a forger who knows it (or a broken sender) would
    send: ids of sender 1, whose flows the honest sender (sender 0) leaves free."""
    x, y, z = 1 << 16, 1 << 16 | 1, 1 << 16 | 2
    return [
        # x: 0 1 2 10 (3..9 lost), a repeat of 1, three jumps no honest sender makes, then
        # 11 12 13 stamped in the far future, 10 s ahead and 0.5 s ahead (skew), 2 and 10
        # stamped at 0 and 1 (older than the run).
        packet(x, 0, now), packet(x, 1, now), packet(x, 2, 0), packet(x, 10, 1),
        packet(x, 1, now), packet(x, 2**63, now), packet(x, 2**64 - 1, now),
        packet(x, 11 + 2**32 + 1, now), packet(x, 11, 2**64 - 1),
        packet(x, 12, now + 10 * 10**9), packet(x, 13, now + 5 * 10**8),
        # y: 0, a jump of 2^63 (two of them used to wrap the sum), 1500 (1..1499 lost),
        # 200 (late: beyond the window), 1400 (a straggler inside it), 1400 again.
        packet(y, 0, now), packet(y, 2**63, now), packet(y, 1500, now), packet(y, 200, now),
        packet(y, 1400, now), packet(y, 1400, now),
        # z: the table (4 entries) is full by now: untracked, its stamp still checked; a
        # jump is a jump, entry or none.
        packet(z, 0, now), packet(z, 1, 1), packet(z, 2**63, now),
        # Replays into the honest flows: 3 of flow 0 (beyond the window, and flow 0 lost
        # nothing: a duplicate, never a straggler repaying y's loss), and one of flow 1
        # inside the window.
        packet(0, 3, now), packet(0, 3, now), packet(1, sent[1] - 10, now),
    ]


def test_the_sanitized_receiver_counts_hostile_datagrams_exactly(driver, stats):
    rng = random.Random(1515)
    run_start = native.now_ns()
    rx = SanitizedReceiver(driver, stats, run_key=KEY, n_senders=N_SENDERS,
                           flows_per_sender=FLOWS_PER_SENDER, max_flows=MAX_FLOWS,
                           run_start_ns=run_start, deadline_ns=run_start + 120 * 10**9)
    sent = sanitized_send(driver, stats, rx.port, flows=2, packets=4000, rate=20000)
    assert sum(sent.values()) == 4000 and min(sent.values()) > 1100  # replays need a window
    assert rx.wait_for(4000)["packets"] == 4000, "loopback lost honest packets"
    junk, want = garbage(rng)
    send_datagrams(rx.port, junk)
    forged = crafted(native.now_ns(), sent)  # stamped just before they go
    send_datagrams(rx.port, forged)
    rx.wait_for(4000 + len(junk) + len(forged))
    c, flows = rx.stop()
    elapsed = native.now_ns() - run_start

    assert c["packets"] == 4000 + len(junk) + len(forged)
    assert c["short_pkts"] == want["short_pkts"]
    assert c["foreign_flow"] == want["foreign_flow"] and c["seq_jump"] == 5
    assert c["foreign"] == want["bad_magic"] + want["foreign_flow"] + c["seq_jump"]
    # Only this run's ids got entries, no more than the table holds; z did not fit.
    assert sorted(flows) == [0, 1, 1 << 16, 1 << 16 | 1] and c["flows"] == 4
    assert c["untracked"] == 2
    x, y = flows[1 << 16], flows[1 << 16 | 1]
    assert (x["received"], x["unique"], x["next_seq"], x["duplicate"]) == (8, 7, 14, 1)
    assert (y["received"], y["unique"], y["next_seq"]) == (5, 4, 1501)
    assert (y["reordered"], y["late"], y["duplicate"]) == (2, 1, 1)
    # The honest flows: everything once, the replays duplicates; their loss stays 0.
    for flow, n in sent.items():
        assert flows[flow]["unique"] == flows[flow]["next_seq"] == n
    assert flows[0]["duplicate"] == 2 and flows[1]["duplicate"] == 1
    assert flows[0]["late"] == flows[1]["late"] == 0
    # Loss is x's 7 and y's 1497, each flow's own; no jump, replay or wrap reached it.
    assert c["lost"] == 7 + 1497 == sum(f["next_seq"] - f["unique"] for f in flows.values())
    assert c["lost"] <= sum(sent.values())
    assert (c["duplicate"], c["reordered"], c["late"]) == (5, 2, 1)
    # Stamps: 0 and 1 (x, z) are older than the run, 2^64 - 1 and +10 s are in the future,
    # +0.5 s is skew; none of them is a latency, and what is stays below the run's age.
    assert (c["stamp_stale"], c["stamp_future"], c["lat_skew"]) == (3, 2, 1)
    assert c["lat_count"] == 4000 + 3 + 3 + 5 + 1 == sum(stats.histogram(1))
    assert 0 < c["lat_max_ns"] < elapsed
    assert c["lat_sum_ns"] <= c["lat_count"] * c["lat_max_ns"]


def test_gro_trains_with_short_tails_are_split_and_checked(driver, stats):
    """Under UDP GRO a message is a train of segments, the last maybe shorter: every one
    is a packet, a short one is short, and a forged one in an honest train is foreign."""
    run_start = native.now_ns()
    rx = SanitizedReceiver(driver, stats, gro=1, run_key=KEY, n_senders=1, flows_per_sender=2,
                           run_start_ns=run_start, deadline_ns=run_start + 120 * 10**9)
    sent = sanitized_send(driver, stats, rx.port, flows=2, packets=2048, rate=20000, gso=4)
    assert rx.wait_for(2048)["packets"] == 2048, "loopback lost honest packets"
    train = (packet(0, 5, 1, key=KEY ^ 1) + packet(0, sent[0], native.now_ns())  # foreign, next
             + packet(1, 2**63, native.now_ns()) + b"\x01" * 10)                  # jump, runt
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.setsockopt(native.lib.SOL_UDP, native.lib.UDP_SEGMENT, 32)
        s.sendto(train, ("127.0.0.1", rx.port))
    rx.wait_for(2048 + 4)
    c, flows = rx.stop()
    assert c["packets"] == 2048 + 4 and c["short_pkts"] == 1
    assert (c["foreign"], c["foreign_flow"], c["seq_jump"]) == (2, 1, 1)
    assert c["lost"] == 0
    assert flows[0]["next_seq"] == sent[0] + 1 and flows[1]["next_seq"] == sent[1]
    assert c["lat_count"] == 2048 + 1 and c["stamp_stale"] == 0
    assert 0 < c["lat_max_ns"] < native.now_ns() - run_start


def test_the_sanitized_receiver_refuses_a_flow_table_past_its_bound(driver, stats):
    proc = subprocess.run([str(driver), "recv", *_args(stats, 1, max_flows=native.MAX_FLOWS + 1)],
                          pass_fds=(stats.fd,), capture_output=True, text=True, timeout=WAIT_S,
                          env={**os.environ, **SANITIZER_ENV})
    assert not REPORT.search(proc.stderr), proc.stderr
    assert proc.returncode == 1 and "pps_recv_new: Invalid argument" in proc.stderr


# ------------------------------------------------------------------ a forger in a real run

def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _forge(port: int, stop: threading.Event, count: list[int]) -> None:
    """Right magic, wrong key, every other field hostile, until told to stop."""
    rng = random.Random(99)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        while not stop.is_set() or count[0] < 200:
            wire = rng.getrandbits(32)
            if is_ours(wire, key=RUN_KEY):
                continue
            seq = rng.choice([0, 1, 2**32, 2**63, 2**64 - 1, rng.getrandbits(64)])
            tx = rng.choice([0, 1, 2**64 - 1, native.now_ns()])
            s.sendto(WIRE.pack(native.MAGIC, wire, seq, tx) + b"\0" * 8, ("127.0.0.1", port))
            count[0] += 1
            time.sleep(0.0005)


RUN_KEY = 0x5EED15


def test_a_forger_in_a_run_counts_as_foreign_and_moves_nothing():
    port = _free_port()
    config = load_config(None, [f"target.port={port}", "senders.rate=20000", "senders.flows=2"])
    specs = worker_specs(config, [WorkerSpec("receiver", 0, 1), WorkerSpec("sender", 0, 0)],
                         {"destinations": ["127.0.0.1"], "bind": "127.0.0.1", "run_key": RUN_KEY})
    run_start = native.now_ns()
    for spec in specs:  # what the orchestrator puts in every spec
        spec.update(run_key=RUN_KEY, n_senders=1, flows_per_sender=2, run_start_ns=run_start)
    group = LocalGroup(specs)
    stop, forged = threading.Event(), [0]
    try:
        assert group.start(deadline_s=60, ready_timeout_s=30) == []
        forger = threading.Thread(target=_forge, args=(port, stop, forged), daemon=True)
        forger.start()
        group.go()
        end = time.monotonic() + WAIT_S
        while group.read()[1]["packets"] < 4000 and time.monotonic() < end:
            time.sleep(0.02)
        stop.set()
        forger.join(WAIT_S)
        group.stop(native.SENDER)
        end = time.monotonic() + WAIT_S
        # The receiver has everything once its count stops short of nothing.
        while time.monotonic() < end:
            rx, tx = group.read()
            if rx["packets"] - rx["foreign"] - rx["short_pkts"] >= tx["packets"] and \
                    rx["foreign"] >= forged[0]:
                break
            time.sleep(0.02)
        group.finish(WAIT_S)
        rx, tx = group.read()
        records = group.records()
    finally:
        stop.set()
        group.close()
    elapsed = native.now_ns() - run_start
    assert tx["packets"] >= 4000 and forged[0] >= 200
    assert rx["foreign"] == rx["foreign_flow"] == forged[0]
    assert rx["packets"] - rx["foreign"] == tx["packets"]
    assert rx["lost"] == 0 <= tx["packets"] and rx["seq_jump"] == 0
    assert rx["stamp_stale"] == rx["stamp_future"] == 0
    assert 0 < rx["lat_max_ns"] < elapsed and rx["lat_count"] == tx["packets"]
    got = {f["flow"]: f for f in records[0]["flows"]}
    sent = {f["flow"]: f["sent"] for f in records[1]["flows"]}
    assert sorted(got) == sorted(sent) == [0, 1]
    assert all(got[f]["unique"] == got[f]["next_seq"] == sent[f] for f in sent)


def test_the_run_summary_says_what_was_not_trusted():
    text = display.run_summary({
        "seconds": 1.0, "tx_pps": 1000.0, "rx_pps": 990.0, "sent": 1000, "received": 990,
        "loss_ratio": 0.01, "foreign": 9, "foreign_flow": 7, "seq_jump": 2, "stamp_future": 0,
        "stamp_stale": 3})
    assert "untrusted: not this run's flow 7  impossible seq 2  stamp before the run 3" in text
    assert "stamp in the future" not in text
    assert set(summary.UNTRUSTED) <= set(native.COUNTERS)
