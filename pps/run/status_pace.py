"""The pace of the status lines, apart from the pace of sampling.

`run.interval` says how often counters are sampled; at 20 Hz a line per sample is 20 lines
a second, which nobody reads. A StatusPace is told the running packet totals at every
sample and gives a status line only when `display_interval` seconds have passed since the
last one (0: at every sample), with the rates over that whole span. When sampling is slower
than the display pace, every sample gets its line.
"""

from __future__ import annotations

from typing import Any


class StatusPace:
    def __init__(self, display_interval: float, sample_interval: float) -> None:
        self.every = display_interval
        # Samples land a little after their due time: a quarter interval of slack keeps a
        # 1 s display of 0.05 s samples at one line per 20 samples, not 21.
        self.slack = sample_interval / 4
        self.shown_t = 0.0
        self.shown: dict[str, int] = {}

    def line(self, t: float, packets: dict[str, int]) -> dict[str, Any] | None:
        """The status since the last line, if one is due at `t`; `packets`: totals by role
        since the start (not per interval)."""
        if self.every > 0 and t - self.shown_t < self.every - self.slack:
            return None
        span = max(t - self.shown_t, 1e-9)
        rates = {role: (n - self.shown.get(role, 0)) / span for role, n in packets.items()}
        out = {"t0": self.shown_t, "t1": t, "tx_pps": rates.get("sender", 0.0),
               "rx_pps": rates.get("receiver", 0.0)}
        self.shown_t, self.shown = t, dict(packets)
        return out
