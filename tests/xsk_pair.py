"""The two namespaces and the thin helpers the AF_XDP core tests share
(tests/system/test_xsk_core.py, test_xdp_prog.py): a veth pair xa/xb between namespaces of
the test's own (198.18.200.1/30 and .2), AF_XDP sockets and XDP programs made on a
namespace's thread, frame and checksum checks."""

from __future__ import annotations

import contextlib
import os
import secrets
import shutil
import socket
import struct
import subprocess
import time
from dataclasses import dataclass

import pytest
from pps._native import ffi, lib

from pps import native
from pps.host import netns

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


@pytest.fixture
def needs_af_xdp():
    """These tests need root, iproute2 and AF_XDP sockets (.ci/run has all three)."""
    if os.geteuid() != 0 or shutil.which("ip") is None:
        pytest.fail("the AF_XDP core tests need root and iproute2")
    try:
        socket.socket(44, socket.SOCK_RAW, 0).close()  # AF_XDP
    except OSError as exc:
        pytest.fail(f"no AF_XDP sockets here ({exc.strerror}): CONFIG_XDP_SOCKETS is needed")


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
