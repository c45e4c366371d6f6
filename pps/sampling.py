"""Counter sampling for one run: which namespaces and devices to read, the snapshots taken
at each mark, and from them the counters table and the drop ledger."""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import pandas as pd

from . import collectors, counters
from .collectors.capture import Capture, Capturer
from .config import Config
from .ledger import build_ledger


class CounterSampler:
    """Called by the orchestrator with a mark name; keeps every snapshot it takes."""

    def __init__(self, scopes: list[collectors.Scope], send_netns: str | None,
                 recv_netns: str | None, recv_device: str | None,
                 sources: Collection[str] = collectors.SOURCES) -> None:
        self.scopes = scopes
        self.sources = frozenset(sources)
        self.send_netns = send_netns
        self.recv_netns = recv_netns
        self.recv_device = recv_device
        self.snapshots: list[tuple[float, str, Capture]] = []  # raw; parsed after the run
        self._capturer = Capturer(scopes, sources)
        self._parsed: list[tuple[float, list]] | None = None
        self.unavailable: dict[tuple[str, str | None, str | None], str] = {}
        self.seconds: list[float] = []  # cost of each snapshot, to report sampling overhead
        self._drivers = collectors.device_drivers(scopes)
        self._t0 = time.monotonic()
        self._table: pd.DataFrame | None = None  # built once, after the last snapshot
        self._totals: pd.DataFrame | None = None

    @classmethod
    def for_run(cls, config: Config, lab: Any | None, plan: Any,
                sources: Collection[str] = collectors.SOURCES) -> CounterSampler:
        port = config.target.port
        if lab is not None:
            scopes = [collectors.Scope(lab.sender_ns, (lab.sender_dev,)),
                      collectors.Scope(lab.receiver_ns, (lab.receiver_dev,), (port,))]
            return cls(scopes, lab.sender_ns, lab.receiver_ns, lab.receiver_dev, sources)
        device = plan.device or "lo"
        return cls([collectors.Scope(None, (device,), (port,))], None, None, device, sources)

    def __call__(self, mark: str) -> None:
        """Read every counter now; only the bytes are kept (see pps.collectors.capture).
        Interval samples are light: collectors not able at the last mark are not retried."""
        began = time.monotonic()
        cap = self._capturer.take(full=mark != "interval")
        self.seconds.append(time.monotonic() - began)
        self.snapshots.append((began - self._t0, mark, cap))
        self._parsed = self._table = self._totals = None

    def readings(self) -> list[tuple[float, list]]:
        """(t, [(netns, Reading), ...]) per snapshot: the captures parsed, once, after the
        last one (the readers are closed then; a later snapshot would open them again)."""
        if self._parsed is None:
            self._capturer.close()
            self._parsed = []
            for t, _, cap in self.snapshots:
                readings, missing = self._capturer.parse(cap)
                self._parsed.append((t, readings))
                for m in missing:
                    self.unavailable.setdefault((m.source, m.device, m.netns), m.reason)
        return self._parsed

    def table(self) -> pd.DataFrame:
        if self._table is None:
            self._table = counters.to_frame(self.readings())
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
        self.readings()  # parse failures are found only when parsing
        return [f"{source} unavailable{f' on {dev}' if dev else ''}: {reason}"
                for (source, dev, _ns), reason in self.unavailable.items()
                if source not in ("ethtool", "qstats")]  # lo has neither; that is expected
