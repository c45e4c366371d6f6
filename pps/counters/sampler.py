"""The run's one counter sampler: every host's snapshot at each mark, in one counters table
(with a host column) and one drop ledger that spans hosts.

A run may last hours, so nothing here grows with its length: each host streams its own raw
captures to a parser (pps.counters.stream) that keeps only running totals and writes the
table to disk; a remote host's agent does that on its side and sends its totals and table
at the end (pps.counters.hosts). The tables are joined here row group by row group, never
whole in memory.
"""

from __future__ import annotations

import time
from typing import Any, NamedTuple

import pandas as pd

from pps.config.hosts import LOCAL
from pps.counters.hosts import HostCounters, append_host_rows, label
from pps.counters.ledger import build_ledger
from pps.counters.stream import counters_schema
from pps.counters.table import KEY
from pps.results.spill import ParquetSink, SpillDir, SpilledTable


class SamplingCost:
    """What the snapshots cost the orchestrator, in constant space: count, sum and max of
    the seconds each one took, for light (interval) and full (mark) snapshots."""

    def __init__(self) -> None:
        self.count = {"interval": 0, "mark": 0}
        self.seconds = {"interval": 0.0, "mark": 0.0}
        self.longest = 0.0

    def add(self, mark: str, seconds: float) -> None:
        kind = "interval" if mark == "interval" else "mark"
        self.count[kind] += 1
        self.seconds[kind] += seconds
        self.longest = max(self.longest, seconds)


class Joined(NamedTuple):
    table: SpilledTable | None
    totals: pd.DataFrame
    snapshots: int


class CounterSampler:
    """The run's one sampler, over every host's counters (this host, the lab, others over
    SSH): called by the trial with a mark name, it has each host take a snapshot into its
    own stream; at the end it joins the hosts' tables and builds one ledger across them.

    send and recv list the namespace labels (see `label`) the senders' and receivers'
    counters are read under, one per host of the role; recv_hosts the receivers' hosts'
    root labels (their host-wide counters, softnet_stat, are filed there)."""

    def __init__(self, hosts: list[HostCounters], send: list[str | None], recv: list[str | None],
                 recv_hosts: list[str | None], recv_device: str | None,
                 notes: tuple[str, ...] = ()) -> None:
        self.hosts = hosts
        self.send_labels, self.recv_labels, self.recv_hosts = send, recv, recv_hosts
        self.recv_netns = recv[0]  # the first receivers' namespace, for the balance
        self.recv_device = recv_device
        self.cost = SamplingCost()  # to report the sampling overhead
        self.ledger_notes = list(notes)
        self.taken = 0
        self.unavailable: dict[tuple[str, str, str | None, str | None], str] = {}
        self.problems: list[str] = []
        self._t0 = time.monotonic()
        self._result: Joined | None = None

    @classmethod
    def here(cls, scopes: list, send_netns: str | None, recv_netns: str | None,
             recv_device: str | None) -> CounterSampler:
        """A sampler of this host alone, over `scopes` (pps.counters.collectors.Scope)."""
        from pps.counters import collectors
        from pps.counters.hosts import local_counters

        part, _ = local_counters(LOCAL, scopes, collectors.device_drivers(scopes))
        return cls([part], [send_netns], [recv_netns], [None], recv_device)

    def __call__(self, mark: str) -> None:
        if self._result is not None:
            raise RuntimeError("the sampler has finished; a new run needs a new sampler")
        began = time.monotonic()
        for h in self.hosts:
            try:
                h.take(began - self._t0, mark != "interval")
            except OSError as exc:  # the host is gone; the run itself reports that
                self.unavailable.setdefault(("host", h.host, None, None), str(exc))
        self.cost.add(mark, time.monotonic() - began)
        self.taken += 1

    def finish(self) -> Joined:
        """Every host's stream finished, joined: the table, the totals, and the snapshots
        of the host that took the fewest."""
        if self._result is not None:
            return self._result
        spill = SpillDir()
        sink = ParquetSink(spill.path / "counters.parquet", counters_schema(host=True), spill)
        totals, snapshots = [], []
        for h in self.hosts:
            try:
                got = h.finish()
            except OSError as exc:
                self.unavailable.setdefault(("host", h.host, None, None), str(exc))
                continue
            for (source, dev, ns), reason in got.unavailable.items():
                self.unavailable.setdefault((source, h.host, dev, ns), reason)
            if got.problem:
                self.problems.append(f"host {h.host}: {got.problem}")
            tot = got.totals.copy()
            tot["netns"] = [label(h.host, None if pd.isna(ns) else ns) for ns in tot["netns"]]
            totals.append(tot)
            snapshots.append(got.snapshots)
            if got.table is not None:
                append_host_rows(sink, got.table, h.host)
        tot = (pd.concat(totals, ignore_index=True) if totals else
               pd.DataFrame(columns=[*KEY, "first", "last", "delta", "resets", "samples"]))
        self._result = Joined(sink.close(), tot, min(snapshots) if snapshots else 0)
        return self._result

    def table(self) -> SpilledTable | None:
        return self.finish().table

    def totals(self) -> pd.DataFrame:
        return self.finish().totals

    def ledger(self, sent: int, received: int, xsk: dict[str, int] | None = None,
               xsk_tx: dict[str, int] | None = None) -> dict[str, Any] | None:
        """The run's drop ledger; `xsk`, `xsk_tx`: the AF_XDP receivers' and senders'
        statistics, each summed."""
        if self.finish().snapshots < 2:
            return None
        drivers = {(label(h.host, ns), dev): d for h in self.hosts
                   for (ns, dev), d in h.drivers.items()}
        # Every host's root namespace carries other traffic (its SSH session, at least).
        shared = {label(h.host, None) for h in self.hosts}
        ledger = build_ledger(sent, received, self.totals(), self.send_labels, self.recv_labels,
                              devices=drivers, shared=shared, recv_host=self.recv_hosts, xsk=xsk,
                              xsk_tx=xsk_tx)
        if len(self.hosts) > 1:
            ledger.notes.append(f"sent counted on the senders' side ({_names(self.send_labels)}), "
                                f"drops and receives on the receivers' ({_names(self.recv_labels)})")
        ledger.notes += self.ledger_notes
        return {**ledger.to_dict(), "text": ledger.format_text()}

    def notes(self) -> list[str]:
        self.finish()
        where = (lambda host: f" on host {host}") if len(self.hosts) > 1 else (lambda host: "")
        return [f"{source} unavailable{where(host)}{f' on {dev}' if dev else ''}: {reason}"
                for (source, host, dev, _ns), reason in self.unavailable.items()
                if source not in ("ethtool", "qstats")] + self.problems  # lo has neither




def _names(labels: list[str | None]) -> str:
    return ", ".join(x or "this host" for x in labels)
