"""Paced senders hold the offered rate within 1%: in the C loop alone, and in whole
`pps run`s where the per-interval rate is in the samples table.

A rate the machine cannot reach is not a pacing failure, and must not be passed off as a
success either: when a run misses its target, an unpaced run measures what this host can
send, and the test is marked xfail with both figures only when the target is above it.
"""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pandas as pd
import pytest
from support import pps

from pps import native
from pps.host.sockets import open_senders

TOLERANCE = 0.01
PORTS = iter(range(47400, 47500))


def pps_run(tmp: Path, *sets: str, duration: float = 2.0) -> dict:
    out = tmp / f"run-{time.monotonic_ns()}"
    proc = pps("run", "--json", "--duration", str(duration), "--out", str(out),
               "--set", "senders.cpus=0", "--set", "receivers.cpus=1", "--set", "run.warmup=0.5",
               "--set", f"target.port={next(PORTS)}", *[a for s in sets for a in ("--set", s)],
               timeout=duration + 60)
    assert proc.returncode in (0, 1), proc.stderr
    return json.loads(proc.stdout)


def unpaced_capacity(tmp: Path) -> float:
    return pps_run(tmp, duration=1.0)["tx_pps"]


@pytest.fixture
def stats():
    shm = native.SharedStats.create(1)
    yield shm
    shm.close()


@pytest.fixture
def sink():
    """A bound socket nobody reads: the kernel drops at its buffer, the sender never notices."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        yield s.getsockname()[1]


@pytest.mark.parametrize("rate", [20_000, 100_000])
def test_c_loop_holds_rate(stats, sink, rate):
    socks, _ = open_senders([("127.0.0.1", sink)])
    # 2 s, not less: one 30 ms stall of this VM is 6% of a 0.5 s window, beyond what the
    # pacer forgives (20 ms of debt), while the rate it must hold is over whole runs.
    seconds = 2.0
    params = native.SendParams(fds=[s.fileno() for s in socks], flow_base=0, batch=32, payload=32,
                               rate_pps=rate, max_packets=int(rate * seconds))
    t0 = time.monotonic()
    native.send_loop(params, stats, 0, [0])
    elapsed = time.monotonic() - t0
    for s in socks:
        s.close()
    achieved = stats.read(0)["packets"] / elapsed
    # The last batch goes at its slot, not at the end of the interval: allow one batch.
    assert abs(achieved / rate - 1) < TOLERANCE + 32 / (rate * seconds), achieved


def test_burst_below_one_call_is_raised_to_it(stats, sink):
    """A bucket smaller than one call could never release it: the loop must still send."""
    socks, _ = open_senders([("127.0.0.1", sink)])
    params = native.SendParams(fds=[s.fileno() for s in socks], flow_base=0, batch=64, payload=32,
                               rate_pps=50_000, burst=1, max_packets=640)
    t0 = time.monotonic()
    native.send_loop(params, stats, 0, [0])
    assert stats.read(0)["packets"] == 640
    assert time.monotonic() - t0 < 1.0
    for s in socks:
        s.close()


# 200k, not 300k: this host sends only ~310-340k unpaced, and a pacer needs headroom above
# its rate to repay stalls (its peak is 1.25x). 500k checks that an impossible rate is
# reported as the host's limit, not passed off as met.
#
# A miss is tried once more. The pacer forgives a stall of the host beyond 20 ms of debt by
# design (repaying more would burst into the receiver), so one VM stall of 100 ms costs a 2 s
# run 5% of its rate, and this shared 2-CPU VM has such stalls. A pacer that is wrong misses
# on every try; a host that stalled misses once. Both figures are in the failure message.
@pytest.mark.parametrize("rate", [10_000, 100_000, 200_000, 500_000])
def test_paced_run_within_one_percent(tmp_path, rate):
    tries = []
    for _ in range(2):
        result = pps_run(tmp_path, f"senders.rate={rate}")
        error = result["tx_pps"] / rate - 1
        tries.append(f"{result['tx_pps']:.0f} ({error:+.2%})")
        if abs(error) < TOLERANCE:
            break
    if abs(error) >= TOLERANCE:
        capacity = unpaced_capacity(tmp_path)
        if capacity < rate * (1 + TOLERANCE):
            pytest.xfail(f"this host sends at most {capacity:,.0f} pps unpaced, below the "
                         f"{rate:,} target; paced run reached {result['tx_pps']:,.0f}")
    assert abs(error) < TOLERANCE, f"offered {rate} pps, achieved {' then '.join(tries)}"
    samples = pd.read_parquet(Path(result["results_dir"]) / "samples.parquet")
    sent = samples[(samples.role == "sender") & (samples.phase == "measure")]
    assert not sent.empty and "pps" in sent
