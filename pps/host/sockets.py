"""Open and configure the UDP sockets the C loops run on.

Socket setup happens in Python because it is one-off, and because the socket module
already turns every failure into an OSError naming the call. Options the kernel may
lack are probed here and reported as EnvironmentNotAble with what is missing.
"""

from __future__ import annotations

import errno
import ipaddress
import socket
import struct
import time
from dataclasses import dataclass, field

from pps._native import lib
from pps.errors import EnvironmentNotAble


@dataclass
class SocketReport:
    """What the kernel really set, recorded in the results."""

    rcvbuf: int | None = None
    sndbuf: int | None = None
    busy_poll_us: int | None = None
    prefer_busy_poll: bool | None = None
    gro: bool = False
    timestamps: str | None = None  # "software": the kernel stamps each datagram on receive
    gso_segments: int = 0
    local_ports: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def family_of(address: str) -> int:
    return socket.AF_INET6 if ipaddress.ip_address(address).version == 6 else socket.AF_INET


def _set_buffer(sock: socket.socket, size: int, force_opt: int, plain_opt: int, name: str,
                report: SocketReport) -> int:
    """Ask for `size` bytes, with the FORCE variant (CAP_NET_ADMIN) so rmem_max/wmem_max do
    not silently cap it; fall back to the plain option and say so."""
    if size:
        try:
            sock.setsockopt(socket.SOL_SOCKET, force_opt, size)
        except PermissionError:
            sock.setsockopt(socket.SOL_SOCKET, plain_opt, size)
            report.notes.append(f"{name}: no CAP_NET_ADMIN, so the kernel capped it at its *mem_max")
    # The kernel doubles the request for bookkeeping overhead; record what it holds.
    return sock.getsockopt(socket.SOL_SOCKET, plain_opt)


def _setopt(sock: socket.socket, level: int, opt: int, value: int, feature: str) -> None:
    try:
        sock.setsockopt(level, opt, value)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            raise EnvironmentNotAble(f"{feature} is not supported by this kernel ({exc.strerror})") from None
        raise


# Kernel receive timestamps: SO_TIMESTAMPING asking for software RX stamps only. Chosen over
# SO_TIMESTAMPNS, which gives the same stamp, because SO_TIMESTAMPNS fills in the time of the
# recvmsg call for a datagram that arrived unstamped (enabled while it was in flight), which
# would read as a near-zero app delay; SO_TIMESTAMPING then sends no stamp, and the receiver
# counts it (ts_missing) instead. It is also the option that later takes NIC stamps
# (SOF_TIMESTAMPING_RAW_HARDWARE) without changing the loop. The stamp is CLOCK_REALTIME,
# taken where the datagram enters the receive path (netif_rx / netif_receive_skb, per
# net.core.netdev_tstamp_prequeue), not when it is queued on the socket.
TIMESTAMPING_FLAGS = lib.SOF_TIMESTAMPING_RX_SOFTWARE | lib.SOF_TIMESTAMPING_SOFTWARE
TIMESTAMPING_FEATURE = "SO_TIMESTAMPING (software RX stamps)"
STAMP_WAIT_S = 1.0


def wait_for_rx_stamps(timeout_s: float = STAMP_WAIT_S) -> bool:
    """Wait until the kernel stamps received datagrams. It switches RX timestamping on for
    the whole host from a work queue, a moment after the first socket asks, and a datagram
    received before then has no stamp. A throwaway socket on this namespace's loopback
    sends itself datagrams until one comes back stamped; False if none did in time (or
    loopback is down here). Call it after setting SO_TIMESTAMPING on the real socket, which
    then keeps timestamping on."""
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, lib.SO_TIMESTAMPING, TIMESTAMPING_FLAGS)
            probe.bind(("127.0.0.1", 0))
            probe.settimeout(0.05)
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                probe.sendto(b"stamp?", probe.getsockname())
                try:
                    _, ancillary, _, _ = probe.recvmsg(16, 256)
                except TimeoutError:
                    continue
                if any(level == socket.SOL_SOCKET and kind == lib.SCM_TIMESTAMPING
                       for level, kind, _ in ancillary):
                    return True
                time.sleep(0.001)
    except OSError:
        return False
    return False


def ensure_port_free(address: str, port: int) -> None:
    """Fail if something already listens on the port. Receivers share it with SO_REUSEPORT,
    so a second run on the same port would silently get half of the first one's packets."""
    probe = socket.socket(family_of(address), socket.SOCK_DGRAM)
    try:
        probe.bind((address, port))
    except OSError as exc:
        if exc.errno == errno.EADDRINUSE:
            raise EnvironmentNotAble(
                f"UDP port {port} on {address} is already in use (another pps run?); "
                "choose another with --set target.port=N") from None
        raise EnvironmentNotAble(f"cannot bind UDP {address} port {port}: {exc.strerror}") from None
    finally:
        probe.close()


def open_receiver(address: str, port: int, *, reuseport: bool, rcvbuf: int = 0,
                  busy_poll_us: int = 0, gro: bool = False, timeout_s: float = 0.05,
                  incoming_cpu: int | None = None, timestamps: bool = False
                  ) -> tuple[socket.socket, SocketReport]:
    """A bound UDP socket. Blocking reads time out after timeout_s so the loop sees stop.
    With `timestamps`, every datagram comes with the kernel's software RX stamp."""
    report = SocketReport()
    sock = socket.socket(family_of(address), socket.SOCK_DGRAM)
    try:
        if reuseport:
            sock.setsockopt(socket.SOL_SOCKET, lib.SO_REUSEPORT, 1)
        report.rcvbuf = _set_buffer(sock, rcvbuf, lib.SO_RCVBUFFORCE, socket.SO_RCVBUF, "rcvbuf", report)
        if gro:
            _setopt(sock, lib.SOL_UDP, lib.UDP_GRO, 1, "UDP_GRO (receive offload, Linux 5.0+)")
            report.gro = True
        if timestamps:
            _setopt(sock, socket.SOL_SOCKET, lib.SO_TIMESTAMPING, TIMESTAMPING_FLAGS,
                    TIMESTAMPING_FEATURE)
            report.timestamps = "software"
            if not wait_for_rx_stamps():
                report.notes.append("SO_TIMESTAMPING: a probe datagram on loopback came back "
                                    f"unstamped for {STAMP_WAIT_S:g} s; packets without a "
                                    "stamp are counted as ts_missing")
        if busy_poll_us:
            _setopt(sock, socket.SOL_SOCKET, lib.SO_BUSY_POLL, busy_poll_us,
                    "SO_BUSY_POLL (CONFIG_NET_RX_BUSY_POLL)")
            report.busy_poll_us = busy_poll_us
            try:
                sock.setsockopt(socket.SOL_SOCKET, lib.SO_PREFER_BUSY_POLL, 1)
                report.prefer_busy_poll = True
            except OSError:
                report.prefer_busy_poll = False
                report.notes.append("SO_PREFER_BUSY_POLL unsupported (Linux 5.11+); busy poll without it")
        if incoming_cpu is not None:
            sock.setsockopt(socket.SOL_SOCKET, lib.SO_INCOMING_CPU, incoming_cpu)
        seconds = int(timeout_s)
        micros = int((timeout_s - seconds) * 1e6)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, struct.pack("ll", seconds, micros))
        try:
            sock.bind((address, port))
        except OSError as exc:
            raise EnvironmentNotAble(f"cannot bind UDP {address} port {port}: {exc.strerror}") from None
        report.local_ports.append(sock.getsockname()[1])
    except BaseException:
        sock.close()
        raise
    return sock, report


def _bind_source(sock: socket.socket, family: int, source_port: int) -> None:
    try:
        sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", source_port))
    except OSError as exc:
        raise EnvironmentNotAble(
            f"cannot bind source port {source_port} (chosen by the port pick): {exc.strerror}; "
            "run again, or --set senders.pick_ports=off") from None


def open_senders(destinations: list[tuple[str, int]], *, sndbuf: int = 0, gso_segments: int = 0,
                 payload: int = 0, source_ports: list[int | None] | None = None
                 ) -> tuple[list[socket.socket], SocketReport]:
    """One connected UDP socket per flow, each with its own source port, so RSS and
    SO_REUSEPORT hashing can spread the flows: the one in `source_ports` (pps/flowpick.py
    chose it) or, where that is None, an ephemeral one."""
    report = SocketReport(gso_segments=gso_segments)
    socks: list[socket.socket] = []
    try:
        for i, (address, port) in enumerate(destinations):
            family = family_of(address)
            sock = socket.socket(family, socket.SOCK_DGRAM)
            socks.append(sock)
            report.sndbuf = _set_buffer(sock, sndbuf, lib.SO_SNDBUFFORCE, socket.SO_SNDBUF, "sndbuf", report)
            if gso_segments:
                _setopt(sock, lib.SOL_UDP, lib.UDP_SEGMENT, payload, "UDP_SEGMENT (GSO, Linux 4.18+)")
            if source_ports and source_ports[i] is not None:
                _bind_source(sock, family, source_ports[i])
            try:
                sock.connect((address, port))
            except OSError as exc:
                raise EnvironmentNotAble(f"cannot reach {address} port {port}: {exc.strerror}") from None
            report.local_ports.append(sock.getsockname()[1])
    except BaseException:
        for sock in socks:
            sock.close()
        raise
    return socks, report
