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

import contextlib
import errno
import os
import secrets
import shutil
import socket
import struct
import subprocess
import sys
import threading
import time
from dataclasses import dataclass

import pytest

from pps import native
from pps._native import ffi, lib
from pps.host import netns

pytestmark = pytest.mark.skipif(os.geteuid() != 0 or shutil.which("ip") is None,
                                reason="needs root and iproute2")

A_ADDR, B_ADDR = "198.18.200.1", "198.18.200.2"
PORT, OTHER_PORT = 9000, 9001
N = 3000           # packets per load: a few thousand, well under a second
NFLOWS = 4
WIRE = struct.Struct("<IIQQ")  # magic, flow, seq, tx_ns (docs/wire.md)


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run(["ip", *args], check=check, capture_output=True, text=True,
                          timeout=10)


def _read_in(ns: str, path: str) -> str:
    return _ip("netns", "exec", ns, "cat", path).stdout


@dataclass
class Pair:
    a: str          # namespace of xa, the sending side
    b: str          # namespace of xb, the receiving side
    a_index: int
    b_index: int
    a_mac: bytes
    b_mac: bytes


@pytest.fixture
def pair():
    tag = secrets.token_hex(4)
    a, b = f"pps-x-{tag}a", f"pps-x-{tag}b"
    try:
        _ip("netns", "add", a)
        _ip("netns", "add", b)
        _ip("-n", a, "link", "add", "xa", "numtxqueues", "1", "numrxqueues", "1", "type", "veth",
            "peer", "name", "xb", "netns", b, "numtxqueues", "1", "numrxqueues", "1")
        _ip("-n", a, "addr", "add", f"{A_ADDR}/30", "dev", "xa")
        _ip("-n", b, "addr", "add", f"{B_ADDR}/30", "dev", "xb")
        for ns, dev in ((a, "xa"), (b, "xb")):
            _ip("-n", ns, "link", "set", "lo", "up")
            _ip("-n", ns, "link", "set", dev, "up")

        def dev_info(ns: str, dev: str) -> tuple[int, bytes]:
            index = int(_read_in(ns, f"/sys/class/net/{dev}/ifindex"))
            mac = bytes.fromhex(_read_in(ns, f"/sys/class/net/{dev}/address").strip()
                                .replace(":", ""))
            return index, mac

        (ai, am), (bi, bm) = dev_info(a, "xa"), dev_info(b, "xb")
        yield Pair(a, b, ai, bi, am, bm)
    finally:
        for ns in (a, b):
            subprocess.run(["ip", "netns", "del", ns], capture_output=True, timeout=10)


@pytest.fixture(autouse=True)
def _needs_af_xdp():
    try:
        socket.socket(44, socket.SOCK_RAW, 0).close()  # AF_XDP
    except OSError as exc:
        pytest.skip(f"no AF_XDP sockets here: {exc.strerror}")


def udp_snmp(ns: str) -> dict[str, int]:
    rows = [line.split() for line in _read_in(ns, "/proc/net/snmp").splitlines()
            if line.startswith("Udp:")]
    return dict(zip(rows[0][1:], map(int, rows[1][1:])))


def link_show(ns: str, dev: str) -> str:
    return _ip("-n", ns, "link", "show", dev).stdout


def wait_for(cond, timeout: float = 5.0, step: float = 0.02) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if cond():
            return True
        time.sleep(step)
    return cond()


@contextlib.contextmanager
def xsk(ns: str, ifindex: int, *, rx: bool = False, tx: bool = False,
        mode: int = lib.PPS_XSK_AUTO, **sizes: int):
    params = ffi.new("struct pps_xsk_params *", {
        "ifindex": ifindex, "queue_id": sizes.pop("queue_id", 0), "mode": mode,
        "rx": int(rx), "tx": int(tx), **sizes})

    def open_() -> tuple:
        x = lib.pps_xsk_open(params)
        return x, ffi.errno  # errno is per thread: read it on the thread that called

    x, err = netns.call_in(ns, open_)
    if x == ffi.NULL:
        raise OSError(err, f"pps_xsk_open: {os.strerror(err)}")
    try:
        yield x
    finally:
        lib.pps_xsk_close(x)


def xdp_attach(ns: str, ifindex: int, port: int, skb_mode: int, queues: int = 1):
    """-> (rc, errno, handle, log text); the handle's fds are -1 on failure."""
    log = ffi.new("char[]", 1 << 16)
    h = ffi.new("struct pps_xdp_handle *", {"log": log, "log_size": 1 << 16})

    def attach() -> tuple[int, int]:
        rc = lib.pps_xdp_attach(ifindex, port, queues, skb_mode, h)
        return rc, ffi.errno

    rc, err = netns.call_in(ns, attach)
    return rc, err, h, ffi.string(log).decode(errors="replace")


def ip_u32(addr: str) -> int:
    """An IPv4 address as the uint32_t whose bytes are in network order."""
    return struct.unpack("=I", socket.inet_aton(addr))[0]


def send_params(pair: Pair, x, *, payload: int = 64, raw: bool = False, run_key: int = 0,
                max_packets: int = N, batch: int = 64, rate_pps: float = 0.0,
                port: int = PORT, nflows: int = NFLOWS):
    ports = ffi.new("uint16_t[]", [40000 + i for i in range(nflows)])
    p = ffi.new("struct pps_xsk_send_params *", {
        "xsk": x, "nflows": nflows, "flow_base": 0, "batch": batch, "payload": payload,
        "raw": int(raw), "rate_pps": rate_pps, "max_packets": max_packets,
        "deadline_ns": native.now_ns() + 10_000_000_000,  # a bound, never reached
        "clock_id": lib.CLOCK_MONOTONIC, "run_key": run_key,
        "src_mac": list(pair.a_mac), "dst_mac": list(pair.b_mac),
        "src_ip": ip_u32(A_ADDR), "dst_ip": ip_u32(B_ADDR), "dst_port": port,
        "src_ports": ports})
    return p, ports  # ports must outlive p: p points into it


def kernel_receiver(ns: str, port: int) -> socket.socket:
    def make() -> socket.socket:
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.setsockopt(socket.SOL_SOCKET, lib.SO_RCVBUFFORCE, 16 << 20)
        s.bind((B_ADDR, port))
        return s
    s = netns.call_in(ns, make)
    s.settimeout(0.5)
    return s


def drain(sock: socket.socket, want: int, timeout: float = 5.0) -> list[bytes]:
    """Datagrams until `want` of them, or the socket is quiet for its timeout."""
    got: list[bytes] = []
    end = time.monotonic() + timeout
    while len(got) < want and time.monotonic() < end:
        try:
            got.append(sock.recv(4096))
        except socket.timeout:
            break
    return got


def inet_csum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    s = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while s >> 16:
        s = (s & 0xFFFF) + (s >> 16)
    return ~s & 0xFFFF


def check_frame(frame: bytes) -> bytes:
    """Our own check of one captured Ethernet/IPv4/UDP frame's two checksums; -> payload."""
    ip = frame[14:34]
    assert inet_csum(ip) == 0, "IPv4 header checksum"
    ulen = struct.unpack("!H", frame[38:40])[0]
    udp = frame[34:34 + ulen]
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, ulen)
    assert struct.unpack("!H", udp[6:8])[0] != 0, "UDP checksum left out"
    assert inet_csum(pseudo + udp) == 0, "UDP checksum"
    return udp[8:]


# (a) The XSK sender into a plain kernel UDP socket.

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
