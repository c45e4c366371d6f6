"""Contradictions between a config's keys, caught before anything starts (exit 2)."""

from __future__ import annotations

import ipaddress
from typing import Any

from pps.errors import ConfigError
from pps.native import WIRE_HEADER_BYTES

Config = Any  # pps.config.model.Config, which calls these checks (no import: no cycle)


def check_consistency(config: Config) -> None:
    """Contradictions between keys, caught before anything starts."""
    src = config.source
    s, r = config.senders, config.receivers
    if not s.raw and s.payload < WIRE_HEADER_BYTES:
        raise ConfigError(
            f"{src}: senders.payload: {s.payload} is below the {WIRE_HEADER_BYTES}-byte wire header; "
            "use 24 or more, or set senders.raw = true to only count")
    if s.gso_segments and s.payload * s.gso_segments > 65000:
        raise ConfigError(
            f"{src}: senders.gso_segments: {s.gso_segments} x {s.payload} bytes exceeds a 64 KB datagram")
    if s.cpus is not None and len(s.cpus) < 1:
        raise ConfigError(f"{src}: senders.cpus: empty")
    if r.placement == "explicit" and r.cpus is None:
        raise ConfigError(f"{src}: receivers.placement: 'explicit' needs receivers.cpus")
    if r.cpus is not None and r.placement not in ("explicit", "spread"):
        raise ConfigError(
            f"{src}: receivers.cpus: a CPU list and placement {r.placement!r} contradict; "
            "drop one (a CPU list means placement 'explicit')")
    if config.lab.enabled and config.target.address != "127.0.0.1" and not _is_lab_address(config.target.address):
        raise ConfigError(
            f"{src}: target.address: {config.target.address} with lab.enabled; the lab picks its own "
            "198.18.0.0/15 addresses, so leave target.address unset")
    if r.spin_us and r.mode != "block":
        raise ConfigError(f"{src}: receivers.spin_us: applies to block mode; a busy-poll receiver always polls")
    if config.run.timestamps == "kernel" and (s.raw or not config.run.latency):
        why = "senders.raw = true sends no send time" if s.raw else "run.latency = false"
        raise ConfigError(
            f"{src}: run.timestamps: 'kernel' splits one-way latency, but {why}; "
            "use run.timestamps = \"user\" or record latency")
    if s.burst and s.burst < s.batch and s.rate:
        raise ConfigError(f"{src}: senders.burst: {s.burst} is smaller than senders.batch {s.batch}")
    check_xdp(config)


def check_xdp(config: Config) -> None:
    """AF_XDP works on a device, over IPv4, one frame per packet: say so before anything."""
    src, s, r = config.source, config.senders, config.receivers
    which = [f"{role}.socket" for role, sock in (("senders", s.socket), ("receivers", r.socket))
             if sock == "xdp"]
    if not which:
        return
    what = " and ".join(which)
    if not config.lab.enabled and all(ipaddress.ip_address(a).is_loopback
                                      for a in config.target.all_addresses):
        raise ConfigError(f"{src}: {what} = xdp needs a device, and loopback has none to bind "
                          "AF_XDP to; use the lab (lab.enabled = true) or a NIC's address")
    if any(ipaddress.ip_address(a).version == 6 for a in config.target.all_addresses):
        raise ConfigError(f"{src}: {what} = xdp builds IPv4 frames; target an IPv4 address")
    if config.xdp.ring & (config.xdp.ring - 1):
        raise ConfigError(f"{src}: xdp.ring: {config.xdp.ring} is not a power of two")
    if s.socket == "xdp" and s.gso_segments:
        raise ConfigError(f"{src}: senders.gso_segments: an AF_XDP sender sends one frame per "
                          "packet; set senders.gso_segments = 0")
    if s.socket == "xdp" and s.payload > 1472:
        raise ConfigError(f"{src}: senders.payload: {s.payload} bytes do not fit one 1500-byte "
                          "frame; an AF_XDP sender sends at most 1472")
    if r.socket == "xdp" and (r.gro or config.run.timestamps == "kernel" or r.mode != "block"
                              or r.steer != "none" or r.rcvbuf):
        raise ConfigError(f"{src}: receivers.socket = xdp reads frames before the UDP stack: "
                          "receivers.gro, rcvbuf, steer, mode = busy-poll and run.timestamps = "
                          "kernel are UDP socket settings and do not apply")


def _is_lab_address(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network("198.18.0.0/15")
