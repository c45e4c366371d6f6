"""The XDP program (csrc/xdp_prog.c) and the AF_XDP receiver (csrc/xsk_recv.c) on the real
kernel: steering the run's port into an XSK while the stack keeps the rest, detaching with
its holder, attach failures, statistics, modes. The namespaces and helpers are
tests/xsk_pair.py's. Needs root (namespaces, AF_XDP, bpf)."""

from __future__ import annotations

import errno
import os
import secrets
import socket
import subprocess
import sys
import threading
import time

import pytest
from pps._native import ffi, lib
from xsk_pair import (
    B_ADDR,
    NFLOWS,
    OTHER_PORT,
    PORT,
    N,
    _read_in,
    drain,
    kernel_receiver,
    link_show,
    send_params,
    udp_snmp,
    wait_for,
    xdp_attach,
    xsk,
)

from pps import native
from pps.host import netns

# The two namespaces (fixture `pair`) and the check of root and AF_XDP are tests/system/conftest.py's.
pytestmark = pytest.mark.usefixtures("needs_af_xdp")


def recv_params(run_key: int, busy_poll: bool):
    now = native.now_ns()
    return ffi.new("struct pps_recv_params *", {
        "batch": 64, "busy_poll": int(busy_poll), "track": 1, "latency": 1, "max_flows": 64,
        "clock_id": lib.CLOCK_MONOTONIC, "deadline_ns": now + 15_000_000_000,
        "run_key": run_key, "n_senders": 1, "flows_per_sender": NFLOWS, "run_start_ns": now})


@pytest.mark.parametrize("skb_mode,busy_poll", [(0, False), (1, True)],
                         ids=["native-poll", "generic-busypoll"])
def test_xdp_steers_the_port_into_an_xsk(pair, skb_mode, busy_poll):
    rc, err, h, log = xdp_attach(pair.b, pair.b_index, PORT, skb_mode)
    assert rc == 0, f"{os.strerror(err)}: {log}"
    try:
        shown = link_show(pair.b, "xb")
        assert "prog/xdp" in shown and "pps_xsk_redir" in shown
        assert ("xdpgeneric" in shown) == bool(skb_mode)
        key = secrets.randbits(32)
        other = kernel_receiver(pair.b, OTHER_PORT)
        stats = native.SharedStats.create(2)
        with xsk(pair.b, pair.b_index, rx=True, frames=8192, rx_size=4096) as xr, \
                xsk(pair.a, pair.a_index, tx=True) as xs:
            assert lib.pps_xskmap_set(h.map_fd, 0, lib.pps_xsk_fd(xr)) == 0
            rcv = lib.pps_xsk_recv_new(recv_params(key, busy_poll), xr)
            assert rcv != ffi.NULL
            before = udp_snmp(pair.b)
            result: dict[str, int] = {}
            loop = threading.Thread(
                target=lambda: result.update(rc=lib.pps_xsk_recv_loop(rcv, stats.shm, 1)))
            loop.start()
            try:
                assert wait_for(lambda: stats.slot(1).state == lib.PPS_STATE_RUNNING)
                p, _ports = send_params(pair, xs, run_key=key, rate_pps=200000.0)
                seqs = ffi.new("uint64_t[]", NFLOWS)
                assert lib.pps_xsk_send_loop(p, stats.shm, 0, seqs) == 0
                k = netns.call_in(pair.a, lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
                with k:
                    for i in range(20):
                        k.sendto(b"kernel %d" % i, (B_ADDR, OTHER_PORT))
                passed = drain(other, 20)
                assert wait_for(lambda: stats.slot(1).packets >= N)
                time.sleep(0.05)  # nothing more may come
            finally:
                stats.stop(native.RECEIVER)
                loop.join(timeout=10)
            assert not loop.is_alive() and result["rc"] == 0
            after = udp_snmp(pair.b)
            slot = stats.read(1)
            out = ffi.new("struct pps_flow_result[]", 64)
            flows = [(r.flow, r.received, r.unique, r.next_seq, r.reordered, r.duplicate)
                     for r in out[0:lib.pps_xsk_recv_flows(rcv, out, 64)]]
            lib.pps_xsk_recv_free(rcv)
            st = ffi.new("struct pps_xsk_stats *")
            assert lib.pps_xsk_statistics(xr, st) in (3, 6)
        stats.close()
        other.close()
    finally:
        lib.pps_xdp_detach(h)
    assert h.link_fd == h.prog_fd == h.map_fd == -1
    # The XSK got exactly the port's packets, all of them, in order, with latencies.
    assert slot["packets"] == N and slot["datagrams"] == N and slot["bytes"] == N * 64
    for name in ("foreign", "short_pkts", "untracked", "lost", "reordered", "duplicate",
                 "late", "seq_jump", "stamp_future", "stamp_stale", "errors"):
        assert slot[name] == 0, name
    assert slot["flows"] == NFLOWS and slot["lat_count"] == N and slot["lat_skew"] == 0
    assert slot["state"] == lib.PPS_STATE_DONE
    q = N // NFLOWS
    assert sorted(flows) == [(f, q, q, q, 0, 0) for f in range(NFLOWS)]
    assert st.rx_dropped == 0 and st.rx_invalid_descs == 0 and st.rx_ring_full == 0
    # The other port went to the kernel (XDP_PASS), and only it did.
    assert sorted(passed) == sorted(b"kernel %d" % i for i in range(20))
    assert after["InDatagrams"] - before["InDatagrams"] == 20
    assert wait_for(lambda: "xdp" not in link_show(pair.b, "xb"))  # detached by closing


# (c) A link's program goes with the process that held it, SIGKILL included.

CHILD = r"""
import sys
from pps._native import ffi, lib
from pps.host import netns
netns.enter(sys.argv[1])
h = ffi.new("struct pps_xdp_handle *")
if lib.pps_xdp_attach(int(sys.argv[2]), int(sys.argv[3]), 1, 0, h) != 0:
    print("failed", ffi.errno, flush=True)
    sys.exit(1)
print("attached", flush=True)
sys.stdin.read()  # until killed
"""


def test_program_goes_when_its_holder_is_killed(pair):
    child = subprocess.Popen([sys.executable, "-c", CHILD, pair.b, str(pair.b_index), str(PORT)],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "attached"
        assert "prog/xdp" in link_show(pair.b, "xb")
        child.kill()  # SIGKILL: no cleanup of its own runs
        child.wait(timeout=10)
    finally:
        if child.poll() is None:
            child.kill()
            child.wait()
    assert child.returncode == -9
    # The kernel releases the link when the dead process's fds close (a deferred work item).
    assert wait_for(lambda: "xdp" not in link_show(pair.b, "xb"))
    # And the device takes a program again.
    rc, err, h, log = xdp_attach(pair.b, pair.b_index, PORT, 0)
    assert rc == 0, log
    lib.pps_xdp_detach(h)


def test_attach_failures_say_why(pair):
    rc, err, h, log = xdp_attach(pair.b, pair.b_index, PORT, 0)
    assert rc == 0, log
    try:
        rc2, err2, h2, log2 = xdp_attach(pair.b, pair.b_index, PORT, 0)
        assert rc2 == -1 and err2 == errno.EBUSY and "already attached" in log2
        assert h2.map_fd == h2.prog_fd == h2.link_fd == -1
    finally:
        lib.pps_xdp_detach(h)
    lo = int(_read_in(pair.b, "/sys/class/net/lo/ifindex"))
    rc3, err3, _h3, log3 = xdp_attach(pair.b, lo, PORT, 0)  # lo has no native XDP
    assert rc3 == -1 and err3 == errno.EOPNOTSUPP and "BPF_LINK_CREATE" in log3
    rc4, err4, h4, _log4 = xdp_attach(pair.b, lo, PORT, 1)  # generic works anywhere
    assert rc4 == 0
    lib.pps_xdp_detach(h4)
    assert netns.call_in(pair.b, lambda: (lib.pps_xdp_attach(lo, PORT, 0, 1, h4), ffi.errno)) == \
        (-1, errno.EINVAL)


# (d) Statistics, and the socket's modes.

def test_statistics_count_what_a_full_socket_dropped(pair):
    """An XSK with 64 frames and nobody reading: the first 64 packets wait in its RX ring,
    the rest are dropped and counted; a receiver loop then takes exactly those 64."""
    rc, err, h, log = xdp_attach(pair.b, pair.b_index, PORT, 0)
    assert rc == 0, log
    stats = native.SharedStats.create(2)
    try:
        with xsk(pair.b, pair.b_index, rx=True, frames=64, rx_size=64) as xr, \
                xsk(pair.a, pair.a_index, tx=True) as xs:
            st = ffi.new("struct pps_xsk_stats *")
            fields = lib.pps_xsk_statistics(xr, st)
            assert fields == st.fields and fields in (3, 6)
            assert (st.rx_dropped, st.rx_invalid_descs, st.tx_invalid_descs) == (0, 0, 0)
            assert lib.pps_xskmap_set(h.map_fd, 0, lib.pps_xsk_fd(xr)) == 0
            p, _ports = send_params(pair, xs, max_packets=500)
            seqs = ffi.new("uint64_t[]", NFLOWS)
            assert lib.pps_xsk_send_loop(p, stats.shm, 0, seqs) == 0
            assert wait_for(lambda: lib.pps_xsk_statistics(xr, st) > 0
                            and st.rx_dropped + st.rx_ring_full == 500 - 64)
            if fields == 6:
                assert st.rx_fill_ring_empty_descs > 0  # it ran out of frames to fill
            ts = ffi.new("struct pps_xsk_stats *")
            assert lib.pps_xsk_statistics(xs, ts) == fields and ts.tx_invalid_descs == 0
            rp = recv_params(0, busy_poll=False)
            rp.deadline_ns = native.now_ns() + 300_000_000
            rp.flows_per_sender = NFLOWS
            rcv = lib.pps_xsk_recv_new(rp, xr)
            assert lib.pps_xsk_recv_loop(rcv, stats.shm, 1) == 0
            lib.pps_xsk_recv_free(rcv)
            assert stats.read(1)["packets"] == 64
    finally:
        stats.close()
        lib.pps_xdp_detach(h)


def test_modes_and_bad_parameters(pair):
    def try_open(**kw):
        params = ffi.new("struct pps_xsk_params *", {"ifindex": pair.b_index, **kw})

        def open_():
            x = lib.pps_xsk_open(params)
            e = ffi.errno
            if x == ffi.NULL:
                return None, e
            info = (lib.pps_xsk_zerocopy(x), lib.pps_xsk_need_wakeup(x), lib.pps_xsk_fd(x) >= 0)
            lib.pps_xsk_close(x)
            return info, e

        return netns.call_in(pair.b, open_)

    # veth has no AF_XDP zero-copy: forced, bind says so; auto falls back to copy.
    assert try_open(rx=1, mode=lib.PPS_XSK_ZEROCOPY) == (None, errno.EOPNOTSUPP)
    info, _ = try_open(rx=1, tx=1, mode=lib.PPS_XSK_AUTO)
    assert info == (0, 1, True)  # copy, with need_wakeup (5.4+)
    assert try_open(tx=1, mode=lib.PPS_XSK_COPY)[0] == (0, 1, True)
    assert try_open(rx=1, queue_id=1)[1] == errno.EINVAL  # veth xb has one queue
    assert try_open()[1] == errno.EINVAL                  # neither rx nor tx
    assert try_open(rx=1, frame_size=3000)[1] == errno.EINVAL
    assert try_open(rx=1, rx_size=1000)[1] == errno.EINVAL
    assert try_open(rx=1, mode=7)[1] == errno.EINVAL
    # The same queue twice at once: the kernel allows one socket per queue.
    with xsk(pair.b, pair.b_index, rx=True):
        t0 = time.monotonic()
        assert try_open(rx=1)[1] == errno.EBUSY
        assert time.monotonic() - t0 < 3  # waited a second for it, no more
