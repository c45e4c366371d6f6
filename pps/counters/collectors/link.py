"""Link stats64 (RTM_GETLINK, IFLA_STATS64) and per-queue stats (netdev genl qstats-get).

Raw netlink here, not pyroute2: pyroute2 0.9.7's ifstats64 decoder stops after 23 fields and
drops rx_nohandler and rx_otherhost_dropped, which the ledger wants; a dump over one
AF_NETLINK socket is also cheaper than building an IPRoute per sample. The socket is opened
in the calling thread, so it belongs to that thread's network namespace.
"""

from __future__ import annotations

import os
import socket
import struct
from collections.abc import Iterator, Sequence

from pps.counters.collectors.base import Reading
from pps.errors import EnvironmentNotAble

NLMSG_ERROR, NLMSG_DONE = 2, 3
NLM_F_REQUEST, NLM_F_DUMP = 0x1, 0x300
RTM_GETLINK, RTM_NEWLINK = 18, 16
IFLA_IFNAME, IFLA_STATS64 = 3, 23
GENL_ID_CTRL, CTRL_CMD_GETFAMILY = 0x10, 3
CTRL_ATTR_FAMILY_ID, CTRL_ATTR_FAMILY_NAME = 1, 2
NETLINK_GENERIC = 16  # <linux/netlink.h>; Python's socket module lacks the name
NETDEV_CMD_QSTATS_GET = 12  # <linux/netdev.h>, kernel 6.10+
NETDEV_A_QSTATS_IFINDEX, NETDEV_A_QSTATS_QUEUE_TYPE = 1, 2
NETDEV_A_QSTATS_QUEUE_ID, NETDEV_A_QSTATS_SCOPE = 3, 4
NETDEV_QSTATS_SCOPE_QUEUE = 1

# struct rtnl_link_stats64 in <linux/if_link.h>, in order; older kernels send fewer fields.
STATS64_FIELDS = (
    "rx_packets", "tx_packets", "rx_bytes", "tx_bytes", "rx_errors", "tx_errors",
    "rx_dropped", "tx_dropped", "multicast", "collisions", "rx_length_errors",
    "rx_over_errors", "rx_crc_errors", "rx_frame_errors", "rx_fifo_errors",
    "rx_missed_errors", "tx_aborted_errors", "tx_carrier_errors", "tx_fifo_errors",
    "tx_heartbeat_errors", "tx_window_errors", "rx_compressed", "tx_compressed",
    "rx_nohandler", "rx_otherhost_dropped",
)

# enum netdev_a_qstats from NETDEV_A_QSTATS_RX_PACKETS (8) on, named as the netlink spec does.
QSTATS_FIELDS = {
    8: "rx-packets", 9: "rx-bytes", 10: "tx-packets", 11: "tx-bytes", 12: "rx-alloc-fail",
    13: "rx-hw-drops", 14: "rx-hw-drop-overruns", 15: "rx-csum-complete",
    16: "rx-csum-unnecessary", 17: "rx-csum-none", 18: "rx-csum-bad",
    19: "rx-hw-gro-packets", 20: "rx-hw-gro-bytes", 21: "rx-hw-gro-wire-packets",
    22: "rx-hw-gro-wire-bytes", 23: "rx-hw-drop-ratelimits", 24: "tx-hw-drops",
    25: "tx-hw-drop-errors", 26: "tx-csum-none", 27: "tx-needs-csum",
    28: "tx-hw-gso-packets", 29: "tx-hw-gso-bytes", 30: "tx-hw-gso-wire-packets",
    31: "tx-hw-gso-wire-bytes", 32: "tx-hw-drop-ratelimits", 33: "tx-stop", 34: "tx-wake",
}


def _attrs(buf: bytes, offset: int = 0, end: int | None = None) -> Iterator[tuple[int, bytes]]:
    """Netlink attributes (type without flag bits, payload) from buf[offset:end]."""
    end = len(buf) if end is None else end
    while offset + 4 <= end:
        length, kind = struct.unpack_from("=HH", buf, offset)
        if length < 4:
            break
        yield kind & 0x3FFF, buf[offset + 4:offset + length]
        offset += (length + 3) & ~3


def _messages(data: bytes) -> Iterator[tuple[int, bytes]]:
    """(type, payload) of each netlink message in one datagram; raises on NLMSG_ERROR."""
    offset = 0
    while offset + 16 <= len(data):
        length, kind = struct.unpack_from("=IH", data, offset)
        if length < 16:
            break
        payload = data[offset + 16:offset + length]
        if kind == NLMSG_ERROR:
            err = -struct.unpack_from("=i", payload)[0]
            if err:
                raise OSError(err, os.strerror(err))
        else:
            yield kind, payload
        offset += (length + 3) & ~3


class Netlink:
    """One netlink socket kept open for many requests (a sampler's), in the namespace of the
    thread that opened it. A request that failed half-way leaves its replies (and perhaps a
    dump still running, which the kernel only lets one at a time) on the socket: the next
    request first reads them away, and skips any reply that does not carry its own sequence
    number.

    Each reply is read into one reused buffer, at its exact size (learnt with MSG_PEEK |
    MSG_TRUNC, so a large message is never cut). A fresh `recv(1 MiB)` per read, as before,
    made Python allocate and free a 1 MiB buffer each time, and at 10 Hz that alone cost the
    pinned workers 3-5% of their receive rate on a 2-CPU host (within-run A/B: with a reused
    1 MiB buffer the cost was gone). Exact reads also keep the kernel's dump buffers small
    (it sizes them from the largest read a socket asked for, up to 32 KiB).
    """

    def __init__(self, proto: int) -> None:
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, proto)
        self.sock.bind((0, 0))
        self.seq = 0
        self._buf = bytearray(1 << 14)
        self._dirty = False  # a request did not read all its replies

    def _drain(self) -> None:
        """Read until nothing is left; each read also moves a running dump on."""
        while True:
            try:
                self.sock.recv_into(self._buf, len(self._buf), socket.MSG_DONTWAIT)
            except BlockingIOError:
                return

    def _recv(self) -> bytes:
        size = self.sock.recv_into(self._buf, 16, socket.MSG_PEEK | socket.MSG_TRUNC)
        if size > len(self._buf):
            self._buf = bytearray(size)
        got = self.sock.recv_into(self._buf, size)
        return bytes(memoryview(self._buf)[:got])

    def request(self, kind: int, flags: int, body: bytes) -> list[bytes]:
        """Send one request and gather the payloads of every reply up to NLMSG_DONE."""
        if self._dirty:
            self._drain()
        self.seq += 1
        header = struct.pack("=IHHII", 16 + len(body), kind, flags | NLM_F_REQUEST, self.seq, 0)
        self._dirty = True
        self.sock.send(header + body)
        out: list[bytes] = []
        while True:
            data = self._recv()
            if len(data) >= 16 and struct.unpack_from("=I", data, 8)[0] != self.seq:
                continue  # a stale reply
            done = not flags & NLM_F_DUMP
            for mtype, payload in _messages(data):
                if mtype == NLMSG_DONE:
                    done = True
                    break
                out.append(payload)
            if done:
                self._dirty = False
                return out

    def close(self) -> None:
        self.sock.close()


def _request(proto: int, kind: int, flags: int, body: bytes) -> list[bytes]:
    """One request on a throw-away socket."""
    nl = Netlink(proto)
    try:
        return nl.request(kind, flags, body)
    finally:
        nl.close()


def parse(payloads: Sequence[bytes], devices: Sequence[str] = ()) -> tuple[list[Reading],
                                                                          dict[int, str]]:
    """RTM_NEWLINK payloads -> stats64 Readings (for `devices`, or all) and ifindex -> name."""
    readings: list[Reading] = []
    names: dict[int, str] = {}
    for payload in payloads:
        index = struct.unpack_from("=i", payload, 4)[0]
        name, stats = None, b""
        for kind, value in _attrs(payload, 16):
            if kind == IFLA_IFNAME:
                name = value.split(b"\0", 1)[0].decode()
            elif kind == IFLA_STATS64:
                stats = value
        if name is None:
            continue
        names[index] = name
        if devices and name not in devices:
            continue
        n = min(len(stats) // 8, len(STATS64_FIELDS))
        for field, v in zip(STATS64_FIELDS, struct.unpack_from(f"={n}Q", stats)):
            readings.append(Reading("link", field, v, device=name))
    return readings, names


LINK_DUMP = struct.pack("=BxHiII", socket.AF_UNSPEC, 0, 0, 0, 0)  # struct ifinfomsg, all zero


def check_devices(names: dict[int, str], devices: Sequence[str]) -> None:
    missing = [d for d in devices if d not in names.values()]
    if missing:
        raise EnvironmentNotAble(f"no such device: {', '.join(missing)}")


def read_here(devices: Sequence[str] = ()) -> tuple[list[Reading], dict[int, str]]:
    """stats64 of the devices (all if empty) in the calling thread's namespace."""
    payloads = _request(socket.NETLINK_ROUTE, RTM_GETLINK, NLM_F_DUMP, LINK_DUMP)
    readings, names = parse(payloads, devices)
    check_devices(names, devices)
    return readings, names


def read(netns: str | None, devices: Sequence[str] = ()) -> list[Reading]:
    from pps.host.netns import call_in

    return call_in(netns, lambda: read_here(devices)[0])


def _uint(value: bytes) -> int:
    return int.from_bytes(value, "little" if struct.pack("=H", 1)[0] else "big")


def parse_qstats(payloads: Sequence[bytes], names: dict[int, str]) -> list[Reading]:
    """qstats-get replies (genl header + attrs) -> Readings with queue set, for known ifindexes."""
    out = []
    for payload in payloads:
        attrs = dict(_attrs(payload, 4))  # 4 = struct genlmsghdr
        index = _uint(attrs.get(NETDEV_A_QSTATS_IFINDEX, b"\0\0\0\0"))
        if index not in names:
            continue
        queue = _uint(attrs[NETDEV_A_QSTATS_QUEUE_ID]) if NETDEV_A_QSTATS_QUEUE_ID in attrs else None
        for kind, value in attrs.items():
            field = QSTATS_FIELDS.get(kind)
            if field is not None:
                out.append(Reading("qstats", field, _uint(value), device=names[index], queue=queue))
    return out


def netdev_family(nl: Netlink | None = None) -> int:
    """The netdev generic netlink family's id (ids are host-wide, not per namespace)."""
    name = b"netdev\0"
    attr = struct.pack("=HH", 4 + len(name), CTRL_ATTR_FAMILY_NAME) + name
    attr += b"\0" * (-len(attr) % 4)
    body = struct.pack("=BBH", CTRL_CMD_GETFAMILY, 1, 0) + attr
    try:
        replies = (nl.request(GENL_ID_CTRL, 0, body) if nl is not None
                   else _request(NETLINK_GENERIC, GENL_ID_CTRL, 0, body))
    except OSError as exc:
        raise EnvironmentNotAble(f"no netdev generic netlink family: {exc.strerror}") from None
    for payload in replies:
        for kind, value in _attrs(payload, 4):
            if kind == CTRL_ATTR_FAMILY_ID:
                return struct.unpack("=H", value[:2])[0]
    raise EnvironmentNotAble("no netdev generic netlink family")


def request_qstats(nl: Netlink, family: int) -> list[bytes]:
    """The raw per-queue stats dump of every device in the socket's namespace."""
    scope = struct.pack("=HHI", 8, NETDEV_A_QSTATS_SCOPE, NETDEV_QSTATS_SCOPE_QUEUE)
    try:
        return nl.request(family, NLM_F_DUMP, struct.pack("=BBH", NETDEV_CMD_QSTATS_GET, 1, 0) + scope)
    except OSError as exc:
        raise EnvironmentNotAble(f"qstats-get: {exc.strerror} (kernel older than 6.10?)") from None


def check_qstats(out: list[Reading], names: dict[int, str]) -> list[Reading]:
    if not out:
        raise EnvironmentNotAble(f"no per-queue stats from {', '.join(names.values())} "
                                 "(driver does not implement netdev queue stats)")
    return out
