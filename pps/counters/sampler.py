"""Counter sampling for one run: which namespaces and devices to read, the snapshot taken at
each mark, and from them the counters table and the drop ledger.

A run may last hours, so nothing here grows with its length: each raw capture goes to a
counter stream (pps.counters.stream) that parses it while the run goes, off the workers, and
keeps only running totals; the table itself is on disk (a pps.results.spill.SpilledTable).
"""

from __future__ import annotations

import time
from collections.abc import Collection
from typing import Any

import pandas as pd

from pps.config.model import Config
from pps.counters import collectors
from pps.counters.collectors.capture import Capturer
from pps.counters.ledger import build_ledger
from pps.counters.stream import ChildStream, StreamResult
from pps.results.spill import SpilledTable


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


class CounterSampler:
    """Called by the orchestrator with a mark name; streams every snapshot it takes."""

    def __init__(self, scopes: list[collectors.Scope], send_netns: str | None,
                 recv_netns: str | None, recv_device: str | None,
                 sources: Collection[str] = collectors.SOURCES) -> None:
        self.scopes = scopes
        self.sources = frozenset(sources)
        self.send_netns = send_netns
        self.recv_netns = recv_netns
        self.recv_device = recv_device
        self._capturer = Capturer(scopes, sources)
        self._stream = ChildStream(self._capturer.scopes, self.sources)
        self.taken = 0
        self.cost = SamplingCost()  # to report the sampling overhead
        self._drivers = collectors.device_drivers(scopes)
        self._t0 = time.monotonic()

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
        """Read every counter now; only the bytes are taken here (see pps.counters.collectors.capture),
        and handed to the stream. Interval samples are light: collectors not able at the last
        mark are not retried."""
        if self._stream.result is not None:
            raise RuntimeError("the sampler has finished; a new run needs a new sampler")
        began = time.monotonic()
        cap = self._capturer.take(full=mark != "interval")
        self.cost.add(mark, time.monotonic() - began)
        self._stream.add(began - self._t0, mark, cap)
        self.taken += 1

    def finish(self) -> StreamResult:
        """The end of sampling: readers closed, the stream's last captures parsed."""
        self._capturer.close()
        return self._stream.finish()

    def table(self) -> SpilledTable | None:
        return self.finish().table

    def totals(self) -> pd.DataFrame:
        """Change of every series over the whole run: first snapshot (before go) to last."""
        return self.finish().totals

    def ledger(self, sent: int, received: int) -> dict[str, Any] | None:
        if self.finish().snapshots < 2:
            return None
        ledger = build_ledger(sent, received, self.totals(), self.send_netns, self.recv_netns,
                              devices=self._drivers)
        if self.recv_netns is not None:
            ledger.notes.append("the lab's namespaces have their own snmp counters: "
                                "its UDP and IP rows are exact")
        return {**ledger.to_dict(), "text": ledger.format_text()}

    def notes(self) -> list[str]:
        result = self.finish()
        notes = [f"{source} unavailable{f' on {dev}' if dev else ''}: {reason}"
                 for (source, dev, _ns), reason in result.unavailable.items()
                 if source not in ("ethtool", "qstats")]  # lo has neither; that is expected
        return notes + ([result.problem] if result.problem and self.taken else [])
