"""GSO, GRO and busy-poll told honestly, and the per-run figures that go with them.

A UDP GSO sender hands the kernel one datagram carrying N segments. On a real NIC the
segments are split before the wire (USO or software GSO) and each is a packet. Between
two sockets on one host (loopback, or veth between namespaces) nothing ever splits them
unless the receiver needs it: a plain receiver gets them split at the socket
(udp_rcv_segment), which is real per-packet work, but a UDP_GRO receiver is handed the
super-datagram whole. Its segment count then says nothing about a packet rate; the run
itself shows it, as fewer datagrams than segments received.

Also here, for the summary (pure, no I/O): datagrams next to packets, latency per
receiver with the clock it was measured on, CPU use per worker, and a pacing shortfall.
Before a run, `probe_kernel_support` checks the socket options the config needs, so a
kernel without them stops the run with EnvironmentNotAble (exit 3) before any worker starts.
"""

from __future__ import annotations

import errno
import socket
from collections.abc import Callable
from typing import Any

from pps.config.model import Config
from pps.errors import EnvironmentNotAble
from pps.results import latency

PACING_TOLERANCE = 0.01   # the shortfall over which a paced run says it missed its rate


# ---------------------------------------------------------------------------- warnings

def offload_warnings(config: Config, lab_enabled: bool, summary: dict[str, Any]) -> list[str]:
    """The GSO/GRO warning, exactly when the run shows super-datagrams received whole: GSO
    senders, GRO receivers, and fewer datagrams than segments received. GSO into a plain
    receiver (split at the socket) and GRO without GSO get none."""
    s, r = config.senders, config.receivers
    if not (s.gso_segments and r.gro):
        return []
    packets, datagrams = summary.get("rx_packets", 0), summary.get("rx_datagrams")
    if datagrams is None or not packets or datagrams >= packets:
        return []
    path = "veth between the lab's namespaces" if lab_enabled else "loopback"
    return [f"GSO into a GRO receiver over {path}: the kernel never split the segments; "
            f"{datagrams:,} super-datagrams arrived whole ({packets / datagrams:.1f} segments "
            f"each), so rx_pps counts segments that were never packets on any path: compare "
            f"rx_datagrams, or receive without GRO to measure a packet rate"]


def timestamp_warnings(config: Config, summary: dict[str, Any]) -> list[str]:
    """Kernel RX timestamps asked for but missing on some packets: say how many, since
    stack and app then describe fewer packets than one-way latency does."""
    missing = summary.get("ts_missing") or 0
    if config.run.timestamps != "kernel" or not missing:
        return []
    return [f"run.timestamps = kernel: {missing:,} packets came without a kernel RX stamp "
            "(timestamping switched on while they were in flight, or not supported on this "
            "path); stack and app latency leave them out"]


def pacing_warnings(config: Config, summary: dict[str, Any]) -> list[str]:
    """A paced run that missed its offered rate says so, rather than passing it off."""
    rate = config.senders.rate
    tx = summary.get("tx_pps", 0.0)
    if not rate or not summary.get("seconds") or tx >= rate * (1 - PACING_TOLERANCE):
        return []
    return [f"senders.rate {rate:,.0f} pps was not reached: the senders sent {tx:,.0f} pps "
            f"({tx / rate - 1:+.1%}); the host or the receive path cannot go faster"]


# ---------------------------------------------------------------------------- summary

def _window_delta(outcome: Any, role: str, key: str) -> int | None:
    start = outcome.marks.get("measure_start")
    end = outcome.marks.get("measure_end") or outcome.marks.get("end")
    if start is None or end is None:
        return None
    return sum(end.slots[w["slot"]][key] - start.slots[w["slot"]][key]
               for w in outcome.workers if w["role"] == role)


def not_one_clock(config: Config) -> str:
    """Why one-way latency cannot be taken: the workers' hosts do not share a clock."""
    def where(hosts: tuple[str, ...]) -> str:
        return f"host{'s' if len(hosts) > 1 else ''} {', '.join(hosts)}"
    return (f"senders on {where(config.senders.hosts)} and receivers on "
            f"{where(config.receivers.hosts)} do not share a clock")


def latency_clock(config: Config, outcome: Any) -> dict[str, Any]:
    """On which clock latency was taken and why it can (or cannot) be trusted."""
    if not config.one_clock:
        return {"clock": None, "shared": False, "recorded": False, "why": not_one_clock(config)}
    if not config.run.latency:
        return {"clock": None, "shared": None, "recorded": False, "why": "run.latency = false"}
    # Kernel RX stamps are CLOCK_REALTIME, so with them both ends use that clock.
    kernel = config.run.timestamps == "kernel"
    clock = "CLOCK_REALTIME" if kernel else "CLOCK_MONOTONIC"
    end = outcome.marks.get("end")
    skew_keys = ("lat_skew", "stack_skew", "app_skew") if kernel else ("lat_skew",)
    skew = sum(end.slots[w["slot"]].get(k, 0) for w in outcome.workers if w["role"] == "receiver"
               for k in skew_keys) if end else 0
    if skew:
        # A send stamp later than its receive: the two clocks are not one clock (or, on
        # CLOCK_REALTIME, the clock was stepped during the run).
        return {"clock": clock, "shared": False, "recorded": True, "skewed": skew,
                "why": f"{skew:,} intervals ended before they began (a send time after a "
                       "receive time): the clocks are not shared or were stepped, latency is "
                       "not trustworthy"}
    where = "the lab's namespaces share the host's clock" if config.lab.enabled else \
        "sender and receiver run on one host"
    return {"clock": clock, "shared": True, "recorded": True, "why": where,
            "timestamps": config.run.timestamps}


def latency_per_receiver(outcome: Any) -> list[dict[str, Any]]:
    """Percentiles of each receiver's own histogram (the merged ones are in `latency`)."""
    end = outcome.marks.get("end")
    one_way = outcome.histograms.get("one_way", {})
    out = []
    for w in outcome.workers:
        if w["role"] != "receiver" or w["index"] not in one_way:
            continue
        row = {"index": w["index"], "cpu": w["cpu"]}
        for kind in latency.KINDS:  # stack and app only where the receiver took kernel stamps
            hist = outcome.histograms.get(kind, {}).get(w["index"])
            if hist is not None:
                max_ns = end.slots[w["slot"]][latency.MAX_COUNTER[kind]] if end else None
                name = "latency" if kind == "one_way" else f"latency_{kind}"
                row[name] = latency.percentiles(hist, max_ns)
        out.append(row)
    return out


def cpu_percent(worker: dict[str, Any], wall_s: float) -> float | None:
    """CPU time over wall time, in percent of one CPU. The CPU time is the worker's loop
    (getrusage around it, start-up left out); the wall time runs from go to when the loop
    stopped. A receiver's loop starts when it is ready, a moment before go, so a
    busy-polling one can show a little over 100%."""
    t = worker.get("cpu_time") or {}
    if wall_s <= 0 or t.get("user_s") is None or t.get("sys_s") is None:
        return None
    return round(100.0 * (t["user_s"] + t["sys_s"]) / wall_s, 1)


def summary_extras(config: Config, outcome: Any, summary: dict[str, Any]) -> dict[str, Any]:
    """Keys to merge into the run summary: datagrams in the measurement window next to
    tx_packets/rx_packets, latency per receiver and its clock, and the workers list with
    user_s, sys_s and cpu_percent added."""
    end = outcome.marks.get("end")
    # Senders run from go until the drain begins (measure_end); receivers until the end.
    stop = outcome.marks.get("measure_end") or end
    wall = {"sender": stop.t if stop else 0.0, "receiver": end.t if end else 0.0}
    by_key = {(w["role"], w["index"]): w for w in outcome.workers}
    workers = []
    for row in summary.get("workers", []):
        w = by_key.get((row["role"], row["index"]), {})
        t = w.get("cpu_time") or {}
        workers.append({**row, "user_s": t.get("user_s"), "sys_s": t.get("sys_s"),
                        "cpu_percent": cpu_percent(w, wall.get(row["role"], 0.0))})
    return {
        "tx_datagrams": _window_delta(outcome, "sender", "datagrams"),
        "rx_datagrams": _window_delta(outcome, "receiver", "datagrams"),
        "latency_per_receiver": latency_per_receiver(outcome) if config.run.latency else None,
        "latency_clock": latency_clock(config, outcome),
        "workers": workers,
    }


# ---------------------------------------------------------------------------- probing

def _probe(sock: socket.socket, level: int, opt: int, value: int, feature: str) -> None:
    try:
        sock.setsockopt(level, opt, value)
    except OSError as exc:
        if exc.errno in (errno.ENOPROTOOPT, errno.EINVAL, errno.EOPNOTSUPP):
            raise EnvironmentNotAble(f"{feature} is not supported by this kernel "
                                     f"({exc.strerror})") from None
        if exc.errno == errno.EPERM:
            raise EnvironmentNotAble(f"{feature}: not permitted ({exc.strerror}); a value above "
                                     "the sysctl default needs CAP_NET_ADMIN") from None
        raise


def probe_af_xdp(family: int | None = None) -> None:
    """senders.socket or receivers.socket = xdp on a kernel (or a build) without AF_XDP:
    EnvironmentNotAble (exit 3) before anything starts; the rest of pps works as before."""
    from pps import native_xsk

    why = native_xsk.supported() if family is None else native_xsk.supported(family)
    if why is not None:
        raise EnvironmentNotAble(f"socket = xdp: {why} (CONFIG_XDP_SOCKETS); "
                                 "use senders.socket and receivers.socket = udp")


def probe_kernel_support(config: Config,
                         socket_factory: Callable[[], socket.socket] | None = None) -> list[str]:
    """Try every socket option the config needs on a throwaway socket, before any worker
    starts: UDP_SEGMENT (GSO), UDP_GRO, SO_BUSY_POLL, SO_TIMESTAMPING. Kernel support is
    kernel-wide, so the root namespace answers for the lab too. Returns the options it
    found working."""
    from pps._native import lib
    from pps.host.sockets import TIMESTAMPING_FEATURE, TIMESTAMPING_FLAGS

    s, r = config.senders, config.receivers
    if "xdp" in (s.socket, r.socket):
        probe_af_xdp()
    wanted = []
    if s.gso_segments:
        wanted.append((lib.SOL_UDP, lib.UDP_SEGMENT, max(s.payload, 1),
                       "UDP_SEGMENT (GSO, Linux 4.18+), for senders.gso_segments"))
    if r.gro:
        wanted.append((lib.SOL_UDP, lib.UDP_GRO, 1,
                       "UDP_GRO (receive offload, Linux 5.0+), for receivers.gro"))
    if r.mode == "busy-poll" and r.busy_poll_us:
        wanted.append((socket.SOL_SOCKET, lib.SO_BUSY_POLL, r.busy_poll_us,
                       "SO_BUSY_POLL (CONFIG_NET_RX_BUSY_POLL), for receivers.busy_poll_us"))
    if config.run.timestamps == "kernel":
        wanted.append((socket.SOL_SOCKET, lib.SO_TIMESTAMPING, TIMESTAMPING_FLAGS,
                       f"{TIMESTAMPING_FEATURE}, for run.timestamps = kernel"))
    if not wanted:
        return []
    factory = socket_factory or (lambda: socket.socket(socket.AF_INET, socket.SOCK_DGRAM))
    with factory() as sock:
        for level, opt, value, feature in wanted:
            _probe(sock, level, opt, value, feature)
    return [w[3].split(" ", 1)[0] for w in wanted]
