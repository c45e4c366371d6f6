"""The AF_XDP side of the native boundary (csrc/xsk*.c, csrc/xdp_prog.c): an XSK socket,
its sender and receiver loops, and the XDP program that steers the run's UDP port into
XSKs. Thin wrappers, as in pps.native: check, call, turn errno into an OSError naming the
call. Nothing here imports anything heavy: workers import it.
"""

from __future__ import annotations

import errno
import os
import socket
from dataclasses import dataclass

from pps._native import ffi, lib
from pps.native import SharedStats, flow_results, raise_errno, recv_params_struct

MODES = {"off": lib.PPS_XSK_COPY, "on": lib.PPS_XSK_ZEROCOPY, "auto": lib.PPS_XSK_AUTO}
STAT_FIELDS = ("rx_dropped", "rx_invalid_descs", "tx_invalid_descs", "rx_ring_full",
               "rx_fill_ring_empty_descs", "tx_ring_empty_descs")
AF_XDP = getattr(socket, "AF_XDP", 44)


def supported(family: int = AF_XDP) -> str | None:
    """None when this kernel makes AF_XDP sockets; else why not."""
    try:
        socket.socket(family, socket.SOCK_RAW, 0).close()
    except OSError as exc:
        if exc.errno in (errno.EAFNOSUPPORT, errno.EINVAL, errno.ESOCKTNOSUPPORT):
            return f"this kernel has no AF_XDP sockets ({os.strerror(exc.errno)})"
        if exc.errno in (errno.EPERM, errno.EACCES):
            return "AF_XDP sockets need CAP_NET_RAW (run as root)"
        raise
    return None


@dataclass(frozen=True)
class XskParams:
    ifindex: int
    queue: int
    ring: int = 4096          # entries of each ring used (power of two)
    frame_size: int = 2048
    zerocopy: str = "auto"    # off (copy), on (zero-copy or fail), auto
    rx: bool = False
    tx: bool = False


class Xsk:
    """One AF_XDP socket bound to a device queue, with its UMEM; a context manager."""

    def __init__(self, params: XskParams) -> None:
        frames = params.ring * 2  # the fill (or TX) ring full, and as many in flight
        p = ffi.new("struct pps_xsk_params *", {
            "ifindex": params.ifindex, "queue_id": params.queue, "frames": frames,
            "frame_size": params.frame_size, "rx_size": params.ring if params.rx else 0,
            "tx_size": params.ring if params.tx else 0, "mode": MODES[params.zerocopy],
            "rx": int(params.rx), "tx": int(params.tx)})
        handle = lib.pps_xsk_open(p)
        if handle == ffi.NULL:
            raise_errno(f"AF_XDP bind to ifindex {params.ifindex} queue {params.queue}")
        self.handle = handle
        self.params = params

    @property
    def fd(self) -> int:
        return lib.pps_xsk_fd(self.handle)

    @property
    def zerocopy(self) -> bool:
        return bool(lib.pps_xsk_zerocopy(self.handle))

    def statistics(self) -> dict[str, int]:
        """XDP_STATISTICS; an older kernel gives the first three only."""
        out = ffi.new("struct pps_xsk_stats *")
        n = lib.pps_xsk_statistics(self.handle, out)
        if n < 0:
            raise_errno("getsockopt(XDP_STATISTICS)")
        return {name: getattr(out, name) for name in STAT_FIELDS[:n]}

    def describe(self) -> dict[str, object]:
        return {"kind": "xdp", "queue": self.params.queue, "ring": self.params.ring,
                "zerocopy": self.zerocopy, "mode": "zero-copy" if self.zerocopy else "copy"}

    def close(self) -> None:
        if self.handle is not None:
            lib.pps_xsk_close(self.handle)
            self.handle = None

    def __enter__(self) -> Xsk:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


@dataclass(frozen=True)
class Frame:
    """What an AF_XDP sender puts around each payload: the Ethernet, IPv4 and UDP headers."""

    src_mac: bytes
    dst_mac: bytes
    src_ip: str
    dst_ip: str
    dst_port: int
    src_ports: tuple[int, ...]  # one per flow
    ttl: int = 64


def xsk_send_loop(xsk: Xsk, frame: Frame, *, flow_base: int, batch: int, payload: int,
                  raw: bool, rate_pps: float, burst: int, deadline_ns: int, clock: int,
                  run_key: int, stats: SharedStats, slot: int, max_packets: int = 0) -> list[int]:
    """Send complete frames through `xsk` until stop, deadline or error; returns each
    flow's next sequence number (what the kernel completed or took)."""
    nflows = len(frame.src_ports)
    ports = ffi.new("uint16_t[]", list(frame.src_ports))
    p = ffi.new("struct pps_xsk_send_params *", {
        "xsk": xsk.handle, "nflows": nflows, "flow_base": flow_base, "batch": batch,
        "payload": payload, "raw": int(raw), "rate_pps": rate_pps, "burst": burst,
        "deadline_ns": deadline_ns, "max_packets": max_packets, "clock_id": clock,
        "run_key": run_key, "src_mac": list(frame.src_mac), "dst_mac": list(frame.dst_mac),
        "src_ip": _ip(frame.src_ip), "dst_ip": _ip(frame.dst_ip), "dst_port": frame.dst_port,
        "src_ports": ports, "ttl": frame.ttl})
    seqs = ffi.new("uint64_t[]", nflows)
    if lib.pps_xsk_send_loop(p, stats.shm, slot, seqs) != 0:
        raise_errno("AF_XDP send")
    return list(seqs)


def _ip(address: str) -> int:
    """An IPv4 address in network order, as the C struct holds it (a uint32_t)."""
    return int.from_bytes(socket.inet_aton(address), "little")


class XskReceiver:
    """The receiver loop over an RX XSK, with the accounting of the UDP receiver."""

    def __init__(self, params, xsk: Xsk) -> None:
        self.params = params
        self._struct = recv_params_struct(params)
        handle = lib.pps_xsk_recv_new(self._struct, xsk.handle)
        if handle == ffi.NULL:
            raise_errno("pps_xsk_recv_new")
        self._handle = handle

    def run(self, stats: SharedStats, slot: int) -> None:
        if lib.pps_xsk_recv_loop(self._handle, stats.shm, slot) != 0:
            raise_errno("AF_XDP receive")

    def flows(self) -> list[dict[str, int]]:
        return flow_results(lib.pps_xsk_recv_flows, self._handle, self.params.max_flows)

    def close(self) -> None:
        if self._handle is not None:
            lib.pps_xsk_recv_free(self._handle)
            self._handle = None

    def __enter__(self) -> XskReceiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def set_queue(map_fd: int, queue: int, xsk: Xsk) -> None:
    """Steer the program's redirects for `queue` to `xsk`."""
    if lib.pps_xskmap_set(map_fd, queue, xsk.fd) != 0:
        raise_errno(f"XSKMAP update of queue {queue}")


class XdpProgram:
    """pps's XDP program on one device: UDP to `port` into the XSKMAP, the rest to the stack.
    Held by a BPF link: closing it (or the death of the process holding it, SIGKILL too)
    detaches the program."""

    def __init__(self, ifindex: int, port: int, queues: int, generic: bool = False) -> None:
        log = ffi.new("char[]", 1 << 16)
        self._handle = ffi.new("struct pps_xdp_handle *", {"log": log, "log_size": 1 << 16})
        self._log = log
        if lib.pps_xdp_attach(ifindex, port, queues, int(generic), self._handle) != 0:
            err = ffi.errno
            said = ffi.string(log).decode(errors="replace").strip().splitlines()
            why = f": {said[-1]}" if said else ""
            raise OSError(err, f"XDP attach to ifindex {ifindex}: {os.strerror(err)}{why}")
        self.generic = generic

    @property
    def map_fd(self) -> int:
        return self._handle.map_fd

    def close(self) -> None:
        if self._handle is not None:
            lib.pps_xdp_detach(self._handle)
            self._handle = None
