"""Counter sampling for one run: which namespaces and devices to read, the snapshots taken
at each mark, and from them the counters table and the drop ledger."""

from __future__ import annotations

import time
from typing import Any

import pandas as pd

from . import collectors, counters
from .config import Config
from .ledger import build_ledger


class CounterSampler:
    """Called by the orchestrator with a mark name; keeps every snapshot it takes."""

    def __init__(self, scopes: list[collectors.Scope], send_netns: str | None,
                 recv_netns: str | None, recv_device: str | None) -> None:
        self.scopes = scopes
        self.send_netns = send_netns
        self.recv_netns = recv_netns
        self.recv_device = recv_device
        self.snapshots: list[tuple[float, str, list]] = []
        self.unavailable: dict[tuple[str, str | None, str | None], str] = {}
        self.seconds: list[float] = []  # cost of each snapshot, to report sampling overhead
        self._drivers = collectors.device_drivers(scopes)
        self._t0 = time.monotonic()
        self._table: pd.DataFrame | None = None  # built once, after the last snapshot
        self._totals: pd.DataFrame | None = None

    @classmethod
    def for_run(cls, config: Config, lab: Any | None, plan: Any) -> CounterSampler:
        port = config.target.port
        if lab is not None:
            scopes = [collectors.Scope(lab.sender_ns, (lab.sender_dev,)),
                      collectors.Scope(lab.receiver_ns, (lab.receiver_dev,), (port,))]
            return cls(scopes, lab.sender_ns, lab.receiver_ns, lab.receiver_dev)
        device = plan.device or "lo"
        return cls([collectors.Scope(None, (device,), (port,))], None, None, device)

    def __call__(self, mark: str) -> None:
        began = time.monotonic()
        readings, missing = collectors.snapshot(self.scopes)
        self.seconds.append(time.monotonic() - began)
        self.snapshots.append((began - self._t0, mark, readings))
        for m in missing:
            self.unavailable.setdefault((m.source, m.device, m.netns), m.reason)

    def table(self) -> pd.DataFrame:
        if self._table is None:
            self._table = counters.to_frame([(t, readings) for t, _, readings in self.snapshots])
        return self._table

    def totals(self) -> pd.DataFrame:
        """Change of every series over the whole run: first snapshot (before go) to last."""
        if self._totals is None:
            self._totals = counters.totals(self.table())
        return self._totals

    def ledger(self, sent: int, received: int) -> dict[str, Any] | None:
        if len(self.snapshots) < 2:
            return None
        ledger = build_ledger(sent, received, self.totals(), self.send_netns, self.recv_netns,
                              devices=self._drivers)
        if self.recv_netns is not None:
            ledger.notes.append("the lab's namespaces have their own snmp counters: "
                                "its UDP and IP rows are exact")
        return {**ledger.to_dict(), "text": ledger.format_text()}

    def notes(self) -> list[str]:
        return [f"{source} unavailable{f' on {dev}' if dev else ''}: {reason}"
                for (source, dev, _ns), reason in self.unavailable.items()
                if source not in ("ethtool", "qstats")]  # lo has neither; that is expected
