"""The repeated-snapshot path (pps.counters.collectors.capture) without a namespace of its
own: a namespace or device that is missing never raises, and the netlink reader copes with
replies longer than its buffer and with the replies of an abandoned request. The capture
in real namespaces is in tests/system/test_capture.py."""

from __future__ import annotations

import socket

import pytest

from pps.counters.collectors import Scope, link
from pps.counters.collectors.capture import Capturer


def test_missing_namespace_and_device_never_raise():
    with Capturer([Scope("pps-t-no-such-ns", ("lo",)), Scope(None, ("pps-no-such-dev",))]) as c:
        for full in (True, False, True):
            cap = c.take(full)
            readings, missing = c.parse(cap)
            if full:
                assert any(u.source == "netns" and u.netns == "pps-t-no-such-ns" for u in missing)
                assert any(u.source == "link" and "pps-no-such-dev" in u.reason for u in missing)
            assert any(r.source == "softnet" for _, r in readings)


def test_netlink_reads_a_reply_longer_than_its_buffer_whole():
    nl = link.Netlink(socket.NETLINK_ROUTE)
    try:
        nl._buf = bytearray(64)  # far smaller than one RTM_NEWLINK message
        payloads = nl.request(link.RTM_GETLINK, link.NLM_F_DUMP, link.LINK_DUMP)
        readings, names = link.parse(payloads, ("lo",))
        assert "lo" in names.values() and len(nl._buf) > 64
        assert {r.name for r in readings} == set(link.STATS64_FIELDS)
    finally:
        nl.close()


def test_netlink_skips_replies_to_an_abandoned_request():
    nl = link.Netlink(socket.NETLINK_ROUTE)
    try:
        body = link.LINK_DUMP
        expected = sorted(link.parse(nl.request(link.RTM_GETLINK, link.NLM_F_DUMP, body))[1].values())
        # A dump whose replies nobody read: what a request that failed half-way leaves.
        nl._recv = lambda: (_ for _ in ()).throw(OSError("interrupted"))
        with pytest.raises(OSError):
            nl.request(link.RTM_GETLINK, link.NLM_F_DUMP, body)
        del nl._recv
        # Without reading those away first, the kernel refuses a second dump (EBUSY).
        for _ in range(2):
            _, names = link.parse(nl.request(link.RTM_GETLINK, link.NLM_F_DUMP, body))
            assert sorted(names.values()) == expected
    finally:
        nl.close()
