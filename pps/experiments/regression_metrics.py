"""The metrics a regression compare judges, their directions and default thresholds, and
how each is read from a trial or a search.

Units, the same everywhere a user gives a threshold or a limit: percent. For rates,
latency and CPU time a threshold is a change in percent of the baseline; for loss, which
is itself a percent and often 0 in the baseline, it is a difference in percentage points
(loss 0.2% -> 1.4% is +1.2 points).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

from pps.errors import ConfigError


@dataclass(frozen=True)
class Metric:
    name: str               # the key in JSON, tables and --threshold NAME=PCT
    title: str              # how text and plots name it
    higher_is_better: bool
    relative: bool          # True: change in % of the baseline; False: in percentage points
    threshold_pct: float    # default threshold
    unit: str               # "pps", "%", "ns", "ns/pkt"


RUN_METRICS = (
    Metric("rx_pps", "rx rate", True, True, 5.0, "pps"),
    Metric("loss_pct", "loss", False, False, 1.0, "%"),
    Metric("p99_ns", "latency p99", False, True, 20.0, "ns"),
    Metric("rx_cpu_ns", "receiver CPU per packet", False, True, 10.0, "ns/pkt"),
)
SEARCH_METRICS = (
    Metric("ndr_pps", "NDR", True, True, 5.0, "pps"),
    Metric("pdr_pps", "PDR", True, True, 5.0, "pps"),
    Metric("ndr_p99_ns", "latency p99 at NDR", False, True, 20.0, "ns"),
    Metric("pdr_p99_ns", "latency p99 at PDR", False, True, 20.0, "ns"),
)
METRICS = {m.name: m for m in (*RUN_METRICS, *SEARCH_METRICS)}
RATE_METRICS = ("rx_pps", "ndr_pps", "pdr_pps")   # what a bare --threshold PCT sets
BRACKET_METRICS = ("ndr_pps", "pdr_pps")          # one search: a bracket, not a sample
MAX_THRESHOLD_PCT = 1000.0


def parse_thresholds(items: list[str] | None) -> dict[str, float]:
    """Every metric's threshold in percent: the defaults, then each item in order, either
    `PCT` (the rate metrics: rx_pps, ndr_pps, pdr_pps) or `METRIC=PCT`; `off` (or inf)
    reports the metric without judging it. ConfigError names a bad item."""
    out = {name: m.threshold_pct for name, m in METRICS.items()}
    for item in items or []:
        name, sep, value = str(item).partition("=")
        names = [name.strip()] if sep else list(RATE_METRICS)
        text = value if sep else name
        if sep and names[0] not in METRICS:
            raise ConfigError(f"--threshold {item}: unknown metric {names[0]!r}; metrics are "
                              f"{', '.join(METRICS)}")
        out.update(dict.fromkeys(names, _percent(item, text.strip())))
    return out


def _percent(item: str, text: str) -> float:
    if text.lower() in ("off", "inf"):
        return math.inf
    try:
        value = float(text.rstrip("%"))
    except ValueError:
        raise ConfigError(f"--threshold {item}: expected a percent like 5, METRIC=PCT or "
                          "METRIC=off") from None
    if not 0 <= value <= MAX_THRESHOLD_PCT:
        raise ConfigError(f"--threshold {item}: {value:g} is out of range 0..{MAX_THRESHOLD_PCT:g} "
                          "(percent)")
    return value


def _number(value: Any) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def trial_metrics(run: dict[str, Any], workers: Any) -> dict[str, float | None]:
    """One finished trial's values of RUN_METRICS, None where the trial does not have one.
    Receiver CPU per packet is the receivers' user + system time over the packets they
    received, warm-up to drain (the span both counts cover); on loopback most of the
    kernel's receive work runs on the sending CPU and is not in it."""
    summary = run.get("summary") or {}
    loss = _number(summary.get("loss_ratio"))
    latency = summary.get("latency") or {}
    return {"rx_pps": _number(summary.get("rx_pps")),
            "loss_pct": None if loss is None else loss * 100,
            "p99_ns": _number(latency.get("p99_ns")),
            "rx_cpu_ns": _cpu_per_packet(workers, _number(summary.get("received")))}


def _cpu_per_packet(workers: Any, received: float | None) -> float | None:
    if workers is None or not received or not {"role", "user_s", "sys_s"} <= set(workers.columns):
        return None
    recv = workers[workers["role"] == "receiver"]
    if recv.empty:
        return None
    seconds = float(recv["user_s"].fillna(0).sum() + recv["sys_s"].fillna(0).sum())
    return _number(seconds * 1e9 / received) if seconds > 0 else None
