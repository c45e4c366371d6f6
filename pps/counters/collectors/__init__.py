"""Counter collectors: raw kernel counters, one module per source, and one snapshot of them all.

Each module is a pure `parse(...)` over captured text or bytes plus a thin reader. The readers
come in two forms: `read_here(...)` reads in the calling thread's network namespace, and
`read(netns, ...)` runs it inside a namespace through `pps.host.netns.call_in`. `snapshot` (and
`capture.Capturer` for repeated ones) enters each namespace once to open its readers there,
so a sample costs one short-lived thread per namespace, not one per collector.

Values are raw and absolute; deltas, wrap-around and resets are `pps.counters.table`' business.
A collector that cannot work is recorded as `Unavailable` with the reason; `snapshot` never
raises for one collector's failure, because a run must go on without, say, lo's ethtool stats.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence

from pps.counters.collectors.base import (
    GAUGES,
    SOURCES,
    Reading,
    Scope,
    Unavailable,
    is_gauge,
)
from pps.host import netns as _netns

__all__ = [
    "GAUGES", "SOURCES", "Reading", "Scope", "Unavailable", "device_drivers", "is_gauge",
    "snapshot",
]


def snapshot(scopes: Sequence[Scope], sources: Collection[str] = SOURCES
             ) -> tuple[list[tuple[str | None, Reading]], list[Unavailable]]:
    """The collectors in `sources` (all by default) over every scope, plus the host-wide
    files once (tagged netns None).

    Scopes naming the same namespace are merged (union of devices and ports). Never raises
    for a collector's failure; a namespace that cannot be entered is one Unavailable.
    For many snapshots in a row, keep a `capture.Capturer` instead: it opens its readers once.
    """
    from pps.counters.collectors.capture import snapshot as take

    return take(scopes, sources)


def device_drivers(scopes: Sequence[Scope]) -> dict[tuple[str | None, str], str]:
    """(netns, device) -> driver name as `ethtool -i` shows it; devices without one are left out."""
    from pps.counters.collectors import nic

    out: dict[tuple[str | None, str], str] = {}
    for s in scopes:
        for dev in s.devices:
            try:
                out[(s.netns, dev)] = _netns.call_in(s.netns, lambda d=dev: nic.driver_here(d))
            except Exception:  # no driver info (e.g. a device gone): the ledger falls back
                continue
    return out
