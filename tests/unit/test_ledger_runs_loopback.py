"""A whole loopback run that forces one kind of drop (a tiny receive buffer) and checks that
it lands in the right row of the ledger, with `unaccounted` within 0.1% of sent, and that
the root namespace's figures are flagged as shared. The lab runs, whose private counters
close exactly, are in tests/system/test_ledger_runs.py."""

from __future__ import annotations

from support import ledger_closes as closes
from support import run_summary as run


def test_tiny_receive_buffer_on_loopback_lands_on_rcvbuf_errors():
    summary = run("receivers.rcvbuf=4096", "target.port=47410")
    ledger = summary["ledger"]
    rcvbuf = ledger["drops"]["snmp.UdpRcvbufErrors"]
    assert rcvbuf > 0 and rcvbuf == max(ledger["drops"].values())  # the biggest row
    assert ledger["layers"]["udp"] >= rcvbuf
    assert "snmp.UdpRcvbufErrors" in ledger["shared"]  # root namespace: said so
    closes(ledger)
