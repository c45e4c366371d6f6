"""AF_XDP's C core (csrc/xsk.c, xsk_send.c, xsk_recv.c, xdp_prog.c) on the real kernel.

Two namespaces of the test's own (pps-x-<hex>a, pps-x-<hex>b) joined by a veth pair xa/xb,
198.18.200.1/30 and .2 (198.18.0.0/15 only), deleted afterwards. The C functions are
called through cffi (pps._native) directly; the Python wrappers are another layer. An XSK
socket, a BPF program and a link live in the namespace of the thread that made them, so
they are made on a pps.host.netns.call_in thread and used from anywhere.

The veth devices are made with one queue each, said explicitly (it is also iproute2's
default): an XSK serves one queue, the kernel hands it only frames that arrived on that
queue, and on a veth with more the queue follows the sender's TX queue. With one, every
packet meets the XSK. Needs root (namespaces, AF_XDP, bpf)."""

from __future__ import annotations

import secrets
import socket
import struct
import threading
import time

import pytest
from pps._native import ffi, lib
from xsk_pair import (
    A_ADDR,
    B_ADDR,
    NFLOWS,
    PORT,
    WIRE,
    N,
    check_frame,
    drain,
    inet_csum,
    kernel_receiver,
    send_params,
    udp_snmp,
    xsk,
)

from pps import native
from pps.host import netns

# The two namespaces (fixture `pair`) and the check of root and AF_XDP are tests/system/conftest.py's.
pytestmark = pytest.mark.usefixtures("needs_af_xdp")


@pytest.mark.parametrize("payload,raw", [(64, False), (24, False), (25, False), (7, True)],
                         ids=["64B", "24B-header-only", "25B-odd", "7B-raw"])
def test_xsk_sender_to_kernel_socket(pair, payload, raw):
    key = secrets.randbits(32)
    rs = kernel_receiver(pair.b, PORT)

    def sniffer() -> socket.socket:  # every frame on xb, before IP sees it
        s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0800))
        s.setsockopt(socket.SOL_SOCKET, lib.SO_RCVBUFFORCE, 16 << 20)
        s.bind(("xb", 0))
        return s

    sniff = netns.call_in(pair.b, sniffer)
    sniff.settimeout(0.5)
    stats = native.SharedStats.create(1)
    before = udp_snmp(pair.b)
    try:
        with xsk(pair.a, pair.a_index, tx=True) as x:
            p, _ports = send_params(pair, x, payload=payload, raw=raw, run_key=key)
            seqs = ffi.new("uint64_t[]", NFLOWS)
            t0 = native.now_ns()
            assert lib.pps_xsk_send_loop(p, stats.shm, 0, seqs) == 0
            t1 = native.now_ns()
            got = drain(rs, N)
            xs = ffi.new("struct pps_xsk_stats *")
            assert lib.pps_xsk_statistics(x, xs) in (3, 6)
            assert xs.tx_invalid_descs == 0
        frames = [f for f in drain(sniff, 10 * N) if f[23] == 17 and f[36:38] == b"\x23\x28"]
        after = udp_snmp(pair.b)
        slot = stats.read(0)
    finally:
        stats.close()
        rs.close()
        sniff.close()

    assert len(got) == N
    delta = {k: after[k] - before[k] for k in after}
    assert delta["InDatagrams"] == N
    assert delta["InCsumErrors"] == 0 and delta["InErrors"] == 0
    assert len(frames) == N
    assert [check_frame(f) for f in frames] == got  # the same datagrams, in order
    assert all(f[:6] == pair.b_mac and f[6:12] == pair.a_mac for f in frames)
    assert slot["packets"] == N and slot["datagrams"] == N and slot["bytes"] == N * payload
    assert slot["errors"] == 0 and slot["state"] == lib.PPS_STATE_DONE
    assert slot["syscalls"] >= N // 64  # a kick per batch: copy mode always needs one
    if raw:
        assert all(d == bytes(payload) for d in got)
        assert list(seqs) == [0] * NFLOWS
        return
    assert all(len(d) == payload for d in got)
    assert list(seqs) == [N // NFLOWS] * NFLOWS
    by_flow: dict[int, list[int]] = {}
    for d in got:
        magic, wire, seq, tx_ns = WIRE.unpack_from(d)
        assert magic == native.MAGIC
        assert t0 <= tx_ns <= t1
        by_flow.setdefault(native.wire_flow(key, wire), []).append(seq)
    assert sorted(by_flow) == list(range(NFLOWS))
    assert all(seqs_ == list(range(N // NFLOWS)) for seqs_ in by_flow.values())
    # Round robin packet by packet: consecutive datagrams are consecutive flows.
    firsts = [native.wire_flow(key, WIRE.unpack_from(d)[1]) for d in got[:NFLOWS * 2]]
    assert firsts == list(range(NFLOWS)) * 2


def test_veth_peer_verifies_udp_checksums(pair):
    """The control for test (a): a frame with a wrong UDP checksum is counted in
    InCsumErrors on this path (veth leaves CHECKSUM_NONE alone), so (a)'s zero means the
    sender's sums are right, not that nobody looked."""
    rs = kernel_receiver(pair.b, PORT)
    ps = netns.call_in(pair.a, lambda: socket.socket(socket.AF_PACKET, socket.SOCK_RAW))
    ps.bind(("xa", 0))
    src, dst, payload = socket.inet_aton(A_ADDR), socket.inet_aton(B_ADDR), b"p" * 30
    ulen = 8 + len(payload)
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + ulen, 0, 0x4000, 64, 17, 0, src, dst)
    ip = ip[:10] + struct.pack("!H", inet_csum(ip)) + ip[12:]

    def frame(bad: bool) -> bytes:
        udp = struct.pack("!HHHH", 1234, PORT, ulen, 0)
        c = inet_csum(src + dst + struct.pack("!BBH", 0, 17, ulen) + udp + payload)
        c = (c ^ 0x0101) if bad else c
        return pair.b_mac + pair.a_mac + b"\x08\x00" + ip + udp[:6] + struct.pack("!H", c) + payload

    try:
        for bad in (False, True):
            before = udp_snmp(pair.b)
            ps.send(frame(bad))
            got = drain(rs, 1, timeout=1.0)
            after = udp_snmp(pair.b)
            assert len(got) == (0 if bad else 1)
            assert after["InCsumErrors"] - before["InCsumErrors"] == (1 if bad else 0)
    finally:
        ps.close()
        rs.close()


def test_paced_sender_stops_on_the_stop_word(pair):
    rate, run_s = 20000.0, 0.25
    rs = kernel_receiver(pair.b, PORT)
    stats = native.SharedStats.create(1)
    try:
        with xsk(pair.a, pair.a_index, tx=True) as x:
            p, _ports = send_params(pair, x, max_packets=0, rate_pps=rate, batch=32)
            seqs = ffi.new("uint64_t[]", NFLOWS)
            timer = threading.Timer(run_s, stats.stop, args=(native.SENDER,))
            t0 = time.monotonic()
            timer.start()
            assert lib.pps_xsk_send_loop(p, stats.shm, 0, seqs) == 0
            elapsed = time.monotonic() - t0
            slot = stats.read(0)
            got = drain(rs, slot["packets"])
    finally:
        stats.close()
        rs.close()
    assert elapsed < run_s + 0.5
    assert slot["pace_sleeps"] > 0
    assert 0.5 * rate * run_s <= slot["packets"] <= 1.5 * rate * elapsed + 64
    assert len(got) == slot["packets"] == sum(seqs)


# (b) The XDP program steers the port into an XSK and passes everything else.
