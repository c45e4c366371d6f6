"""A whole loopback run that forces one kind of drop (a tiny receive buffer) and checks that
it lands in the right row of the ledger, with `unaccounted` within 0.1% of sent, and that
the root namespace's figures are flagged as shared. The lab runs, whose private counters
close exactly, are in tests/system/test_ledger_runs.py."""

from __future__ import annotations

import json
import uuid

from support import pps

SHORT = ["--set", "run.duration=1", "--set", "run.warmup=0.2", "--set", "run.drain=0.3",
         "--set", "run.interval=0.5"]


def run(*sets: str) -> dict:
    args = [a for s in sets for a in ("--set", s)]
    proc = pps("run", "--json", "--out", f"/tmp/pps-test-{uuid.uuid4().hex[:8]}", *SHORT, *args,
               timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def closes(ledger: dict) -> None:
    assert ledger["sent"] > 0
    assert abs(ledger["unaccounted"]) <= max(1, 0.001 * ledger["sent"]), ledger


def test_tiny_receive_buffer_on_loopback_lands_on_rcvbuf_errors():
    summary = run("receivers.rcvbuf=4096", "target.port=47410")
    ledger = summary["ledger"]
    rcvbuf = ledger["drops"]["snmp.UdpRcvbufErrors"]
    assert rcvbuf > 0 and rcvbuf == max(ledger["drops"].values())  # the biggest row
    assert ledger["layers"]["udp"] >= rcvbuf
    assert "snmp.UdpRcvbufErrors" in ledger["shared"]  # root namespace: said so
    closes(ledger)
