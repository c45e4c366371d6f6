"""What every collector module shares: the Reading it returns, the Unavailable it records, the
Scope it reads, and the names of sources and gauges.

Kept apart from the package's __init__ so the collector modules import it, not the package
that imports them (no import cycle).
"""

from __future__ import annotations

from dataclasses import dataclass

# Every source name a Reading may carry.
SOURCES = ("ethtool", "link", "qstats", "snmp", "netstat", "snmp6", "softnet",
           "interrupts", "softirqs", "socket")

# Series that are levels, not counters: their change may be negative and is no reset.
GAUGES = frozenset({
    ("softnet", "backlog_len"), ("softnet", "input_qlen"), ("softnet", "process_qlen"),
    ("socket", "rx_queue"), ("socket", "tx_queue"),
})


def is_gauge(source: str, name: str) -> bool:
    return (source, name) in GAUGES


@dataclass(frozen=True)
class Reading:
    """One raw counter value. `device`, `queue` and `cpu` say which series it belongs to."""

    source: str
    name: str
    value: int
    device: str | None = None
    queue: int | None = None
    cpu: int | None = None


@dataclass(frozen=True)
class Unavailable:
    """A collector that could not read, and why (lo has no ethtool stats, a file is hidden)."""

    source: str
    device: str | None
    reason: str
    netns: str | None = None


@dataclass(frozen=True)
class Scope:
    """A network namespace (None = the caller's), its devices, the run's receiver UDP ports."""

    netns: str | None
    devices: tuple[str, ...] = ()
    ports: tuple[int, ...] = ()
