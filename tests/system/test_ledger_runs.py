"""Whole lab runs that force one kind of drop each and check that it lands in the right row
of the ledger, with `unaccounted` within 0.1% of sent. Lab runs use private namespaces, whose
counters no other traffic moves; they need root. The loopback run is in
tests/unit/test_ledger_runs_loopback.py."""

from __future__ import annotations

import json
import os
import signal
import time
import uuid

import pytest
from support import ledger_closes as closes
from support import pps_start
from support import run_summary as run


def lab(*sets: str) -> dict:
    return run("lab.enabled=true", f"lab.id=t{uuid.uuid4().hex[:6]}", *sets)


def test_tiny_receive_buffer_in_the_lab_is_exact():
    summary = lab("receivers.rcvbuf=4096", "lab.queues=1")
    ledger = summary["ledger"]
    assert ledger["drops"]["snmp.UdpRcvbufErrors"] == ledger["sent"] - ledger["received"]
    assert ledger["unaccounted"] == 0 and "snmp.UdpRcvbufErrors" not in ledger["shared"]
    assert any("exact" in note for note in ledger["notes"])


def test_small_backlog_with_rps_to_another_cpu_lands_on_softnet_dropped():
    # The sender on CPU 0 queues every packet to CPU 1's backlog (RPS); a backlog of 8
    # overflows long before the receiver on CPU 1 drains it.
    summary = lab("lab.queues=1", "lab.rps_cpus=1", "lab.backlog=8", "senders.cpus=0",
                  "receivers.cpus=1")
    ledger = summary["ledger"]
    assert ledger["layers"]["backlog"] > 0, ledger
    assert ledger["drops"]["softnet.dropped"] > 0
    # veth hands the backlog drop back to the sender too: it must not count twice.
    assert ledger["layers"]["send"] == 0
    closes(ledger)


def test_qdisc_drops_land_on_the_send_side():
    # A veth never pushes back on its qdisc, so a FIFO never fills; a token bucket at
    # 2 MB/s with a 5 KB queue drops most of an unpaced 32-byte flood. The packets it holds
    # still count against the sender's default send buffer, and at times that buffer
    # filled and paced the sender to the bucket's rate (2% dropped instead of ~70%): a
    # large one keeps the flood a flood (57-79% dropped in 11 runs here).
    summary = lab("lab.queues=1", "lab.qdisc=tbf rate 2000000 burst 5000 limit 5000",
                  "senders.sndbuf=4194304")
    ledger = summary["ledger"]
    assert ledger["drops"]["snmp.UdpSndbufErrors"] > 0.25 * ledger["sent"], ledger
    assert ledger["layers"]["send"] == ledger["drops"]["snmp.UdpSndbufErrors"]
    closes(ledger)


@pytest.mark.parametrize("sets", [(), ("lab.gro=true", "senders.flows=8", "receivers.count=2")])
def test_a_lab_run_delivers_and_closes(sets):
    summary = lab("lab.queues=4", *sets)
    assert summary["rx_packets"] > 1000
    closes(summary["ledger"])


def test_sigint_in_a_lab_run_saves_results_and_removes_the_lab(tmp_path):
    lab_id = f"t{uuid.uuid4().hex[:6]}"
    proc = pps_start("run", "--out", str(tmp_path / "r"), "--set", "lab.enabled=true",
                     "--set", f"lab.id={lab_id}", "--set", "run.duration=20", "--set", "run.warmup=0.2")
    time.sleep(2.5)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    assert json.loads((tmp_path / "r" / "run.json").read_text())["summary"]["interrupted"]
    # The counters were parsed while the run went, by a child deaf to Ctrl-C: all saved.
    assert (tmp_path / "r" / "counters.parquet").stat().st_size > 0
    assert not [ns for ns in os.listdir("/run/netns") if lab_id in ns]
