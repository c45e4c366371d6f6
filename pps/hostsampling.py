"""Counter sampling across hosts: every host's snapshot at each mark, in one counters table
(with a host column) and one drop ledger that spans hosts.

Namespaces are only unique within a host, so each reading's namespace gets a label unique in
the run: this host keeps its own (None for the root namespace); host `b` files its root
namespace as "b" and a namespace `x` there as "b:x". The ledger then reads the senders'
host for send-side drops and the receivers' host for NIC, backlog, IP and UDP drops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pandas as pd

from . import counters
from .collectors import Reading, Unavailable
from .collectors.capture import Capturer
from .hosts_config import LOCAL
from .ledger import build_ledger

Snapshot = tuple[list[tuple[str | None, Reading]], list[Unavailable]]


def label(host: str, netns: str | None) -> str | None:
    if host == LOCAL:
        return netns
    return host if netns is None else f"{host}:{netns}"


@dataclass
class HostCounters:
    """Where one host's counters come from: a snapshot function and its drivers."""

    host: str
    snapshot: Callable[[bool], Snapshot]  # full: a mark (every collector), else an interval
    drivers: dict[tuple[str | None, str], str]


def remote_snapshot(session: Any) -> Callable[[bool], Snapshot]:
    """A snapshot taken by a host's agent (pps.agent op_collect), as Readings again."""
    def take(full: bool) -> Snapshot:
        reply = session.request("collect", full=full)
        readings = [(ns, Reading(source, name, value, device, queue, cpu))
                    for ns, source, name, value, device, queue, cpu in reply["readings"]]
        missing = [Unavailable(source, device, reason, ns)
                   for source, device, reason, ns in reply["missing"]]
        return readings, missing
    return take


def local_snapshot(capturer: Capturer) -> Callable[[bool], Snapshot]:
    return lambda full: capturer.parse(capturer.take(full=full))


class HostsSampler:
    """The orchestrator's sampler for a run across hosts; same interface as CounterSampler."""

    def __init__(self, hosts: list[HostCounters], send: tuple[str, str | None],
                 recv: tuple[str, str | None], recv_device: str | None) -> None:
        self.hosts = hosts
        self.send_netns = label(*send)
        self.recv_netns = label(*recv)
        self.recv_host = label(recv[0], None)
        self.recv_device = recv_device
        self.snapshots: list[tuple[float, str, list]] = []
        self.unavailable: dict[tuple[str, str, str | None, str | None], str] = {}
        self.seconds: list[float] = []
        self._host_of: dict[str | None, str] = {}
        self._t0 = time.monotonic()
        self._table: pd.DataFrame | None = None
        self._totals: pd.DataFrame | None = None

    def __call__(self, mark: str) -> None:
        began = time.monotonic()
        readings: list[tuple[str | None, Reading]] = []
        for h in self.hosts:
            try:
                got, missing = h.snapshot(mark != "interval")
            except OSError as exc:  # the host is gone; the run itself reports that
                self.unavailable.setdefault(("host", h.host, None, None), str(exc))
                continue
            for ns, r in got:
                tag = label(h.host, ns)
                self._host_of[tag] = h.host
                readings.append((tag, r))
            for m in missing:
                self.unavailable.setdefault((m.source, h.host, m.device, m.netns), m.reason)
        self.seconds.append(time.monotonic() - began)
        self.snapshots.append((began - self._t0, mark, readings))

    def table(self) -> pd.DataFrame:
        if self._table is None:
            df = counters.to_frame([(t, readings) for t, _, readings in self.snapshots])
            hosts = [self._host_of.get(None if pd.isna(ns) else ns, LOCAL) for ns in df["netns"]]
            df.insert(1, "host", pd.Series(hosts, index=df.index, dtype="object"))
            self._table = df
        return self._table

    def totals(self) -> pd.DataFrame:
        if self._totals is None:
            self._totals = counters.totals(self.table().drop(columns="host"))
        return self._totals

    def ledger(self, sent: int, received: int) -> dict[str, Any] | None:
        if len(self.snapshots) < 2:
            return None
        drivers = {(label(h.host, ns), dev): d for h in self.hosts
                   for (ns, dev), d in h.drivers.items()}
        # Every host's root namespace carries other traffic (its SSH session, at least).
        shared = {label(h.host, None) for h in self.hosts}
        ledger = build_ledger(sent, received, self.totals(), self.send_netns, self.recv_netns,
                              devices=drivers, shared=shared, recv_host=self.recv_host)
        ledger.notes.append(f"sent counted on the senders' side ({self.send_netns or 'this host'}), "
                            f"drops and receives on the receivers' ({self.recv_netns or 'this host'})")
        return {**ledger.to_dict(), "text": ledger.format_text()}

    def notes(self) -> list[str]:
        return [f"{source} unavailable on host {host}{f' ({dev})' if dev else ''}: {reason}"
                for (source, host, dev, _ns), reason in self.unavailable.items()
                if source not in ("ethtool", "qstats")]
