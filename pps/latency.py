"""Latency histograms: merge the receivers' log-linear buckets and read percentiles.

Bucket bounds come from the C core (pps_hist_low), so Python and C never disagree on
where a bucket starts. A percentile is reported as the upper edge of its bucket (as HDR
histograms do), capped at the largest value seen: it never understates latency.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from . import native

PERCENTILES = (("p50_ns", 50.0), ("p90_ns", 90.0), ("p99_ns", 99.0), ("p999_ns", 99.9))


def merge(histograms: Iterable[Sequence[int]]) -> list[int]:
    merged = [0] * native.HIST_BUCKETS
    for hist in histograms:
        for i, count in enumerate(hist):
            merged[i] += count
    return merged


def percentiles(hist: Sequence[int], max_ns: int | None = None) -> dict[str, int] | None:
    """p50/p90/p99/p99.9 and max in ns, or None when nothing was recorded."""
    total = sum(hist)
    if total == 0:
        return None
    lows = native.hist_bounds()
    out: dict[str, int] = {}
    for name, pct in PERCENTILES:
        rank = pct / 100.0 * total
        seen = 0
        for i, count in enumerate(hist):
            seen += count
            if count and seen >= rank:
                upper = lows[i + 1] - 1 if i + 1 < len(lows) else lows[i]
                out[name] = min(upper, max_ns) if max_ns else upper
                break
    top = max(i for i, count in enumerate(hist) if count)
    out["max_ns"] = max_ns if max_ns else lows[top]
    return out


def table(histograms: dict[int, Sequence[int]]) -> pd.DataFrame:
    """Long table of non-empty buckets: receiver (-1 = merged), low_ns, high_ns, count."""
    lows = native.hist_bounds()
    rows = []
    items = list(histograms.items()) + [(-1, merge(histograms.values()))]
    for receiver, hist in items:
        for i, count in enumerate(hist):
            if count:
                high = lows[i + 1] - 1 if i + 1 < len(lows) else lows[i]
                rows.append({"receiver": receiver, "low_ns": lows[i], "high_ns": high, "count": count})
    return pd.DataFrame(rows, columns=["receiver", "low_ns", "high_ns", "count"])
