"""Counter collectors: raw kernel counters, one module per source, and one snapshot of them all.

Each module is a pure `parse(...)` over captured text or bytes plus a thin reader. The readers
come in two forms: `read_here(...)` reads in the calling thread's network namespace, and
`read(netns, ...)` runs it inside a namespace through `pps.netns.call_in`. `snapshot` enters
each namespace once and runs every per-namespace reader there, so a sample costs one
short-lived thread per namespace, not one per collector.

Values are raw and absolute; deltas, wrap-around and resets are `pps.counters`' business.
A collector that cannot work is recorded as `Unavailable` with the reason; `snapshot` never
raises for one collector's failure, because a run must go on without, say, lo's ethtool stats.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .. import netns as _netns

__all__ = [
    "Reading", "Unavailable", "Scope", "SOURCES", "GAUGES", "is_gauge", "snapshot",
    "collect_here", "device_drivers",
]

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


def _guard(source: str, device: str | None, netns: str | None,
           unavailable: list[Unavailable], fn: Callable[[], list[Reading]]) -> list[Reading]:
    """Run one reader; turn its failure into an Unavailable record instead of an exception."""
    try:
        return fn()
    except Exception as exc:  # any reader failure must not stop the run; the reason is kept
        reason = str(exc) or type(exc).__name__
        unavailable.append(Unavailable(source, device, reason, netns))
        return []


def collect_here(scope: Scope) -> tuple[list[Reading], list[Unavailable]]:
    """Every per-namespace collector, in the calling thread's namespace (already entered)."""
    from . import link, nic, snmp, sockets

    out: list[Reading] = []
    missing: list[Unavailable] = []
    ns = scope.netns
    for source, filename in snmp.FILES.items():
        out += _guard(source, None, ns, missing, lambda f=filename: snmp.read_here(f))
    index: dict[int, str] = {}

    def links() -> list[Reading]:
        readings, names = link.read_here(scope.devices)
        index.update(names)
        return readings

    out += _guard("link", None, ns, missing, links)
    for dev in scope.devices:
        out += _guard("ethtool", dev, ns, missing, lambda d=dev: nic.read_here(d))
    if index:
        wanted = {i: n for i, n in index.items() if not scope.devices or n in scope.devices}
        out += _guard("qstats", None, ns, missing, lambda: link.read_qstats_here(wanted))
    if scope.ports:
        out += _guard("socket", None, ns, missing, lambda: sockets.read_here(scope.ports))
    return out, missing


def collect_global() -> tuple[list[Reading], list[Unavailable]]:
    """Host-wide files (per CPU, per IRQ): read once per snapshot, not per namespace."""
    from . import interrupts, softnet

    missing: list[Unavailable] = []
    out = _guard("softnet", None, None, missing, softnet.read)
    out += _guard("interrupts", None, None, missing, interrupts.read_interrupts)
    out += _guard("softirqs", None, None, missing, interrupts.read_softirqs)
    return out, missing


def snapshot(scopes: Sequence[Scope]) -> tuple[list[tuple[str | None, Reading]],
                                              list[Unavailable]]:
    """Every collector over every scope, plus the global files once (tagged netns None).

    Scopes naming the same namespace are merged (union of devices and ports). Never raises
    for a collector's failure; a namespace that cannot be entered is one Unavailable.
    """
    merged: dict[str | None, Scope] = {}
    for s in scopes:
        old = merged.get(s.netns)
        if old is None:
            merged[s.netns] = Scope(s.netns, tuple(dict.fromkeys(s.devices)),
                                    tuple(dict.fromkeys(s.ports)))
        else:
            merged[s.netns] = Scope(s.netns, tuple(dict.fromkeys(old.devices + s.devices)),
                                    tuple(dict.fromkeys(old.ports + s.ports)))
    readings: list[tuple[str | None, Reading]] = []
    missing: list[Unavailable] = []
    for ns, scope in merged.items():
        try:
            got, lost = _netns.call_in(ns, lambda sc=scope: collect_here(sc))
        except Exception as exc:  # the namespace itself is gone or not enterable
            missing.append(Unavailable("netns", None, str(exc) or type(exc).__name__, ns))
            continue
        readings += [(ns, r) for r in got]
        missing += lost
    got, lost = collect_global()
    readings += [(None, r) for r in got]
    missing += lost
    return readings, missing


def device_drivers(scopes: Sequence[Scope]) -> dict[tuple[str | None, str], str]:
    """(netns, device) -> driver name as `ethtool -i` shows it; devices without one are left out."""
    from . import nic

    out: dict[tuple[str | None, str], str] = {}
    for s in scopes:
        for dev in s.devices:
            try:
                out[(s.netns, dev)] = _netns.call_in(s.netns, lambda d=dev: nic.driver_here(d))
            except Exception:  # no driver info (e.g. a device gone): the ledger falls back
                continue
    return out
