"""Latency histograms: merge the receivers' log-linear buckets and read percentiles.

Bucket bounds come from the C core (pps_hist_low), so Python and C never disagree on
where a bucket starts. A percentile is reported as the upper edge of its bucket (as HDR
histograms do), capped at the largest value seen: it never understates latency.

Kinds: `one_way` (the receiver's clock after recvmmsg minus the packet's send time), and
with kernel RX timestamps (run.timestamps = kernel) its two parts, `stack` (the kernel's
RX stamp minus the send time) and `app` (the receiver's clock minus the RX stamp).
Percentiles of the parts do not add up to those of the whole.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import pandas as pd

from pps import native

PERCENTILES = (("p50_ns", 50.0), ("p90_ns", 90.0), ("p99_ns", 99.0), ("p999_ns", 99.9))
KINDS = tuple(native.HIST_KINDS)   # one_way, stack, app: the slot's histograms, in order
SPLIT = KINDS[1:]                  # stack and app: recorded only with kernel RX timestamps
# Each kind's largest value, a slot counter named after the kind's prefix (lat_max_ns, ...).
MAX_COUNTER = {kind: f"{prefix}_max_ns" for kind, (_, prefix) in native.HIST_KINDS.items()}


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


def merged_percentiles(histograms: dict[str, dict[int, Sequence[int]]], kind: str,
                       slots: Iterable[dict[str, int]]) -> dict[str, int] | None:
    """Percentiles of every receiver's `kind` buckets together, capped at the largest value
    the receivers' slots saw."""
    max_ns = max((s[MAX_COUNTER[kind]] for s in slots), default=0)
    return percentiles(merge(histograms.get(kind, {}).values()), max_ns)


def table(histograms: dict[str, dict[int, Sequence[int]]]) -> pd.DataFrame:
    """Long table of non-empty buckets: kind, receiver (-1 = merged), low_ns, high_ns, count."""
    lows = native.hist_bounds()
    rows = []
    for kind in [k for k in KINDS if k in histograms]:
        by_receiver = histograms[kind]
        items = list(by_receiver.items()) + [(-1, merge(by_receiver.values()))]
        for receiver, hist in items:
            for i, count in enumerate(hist):
                if count:
                    high = lows[i + 1] - 1 if i + 1 < len(lows) else lows[i]
                    rows.append({"kind": kind, "receiver": receiver, "low_ns": lows[i],
                                 "high_ns": high, "count": count})
    return pd.DataFrame(rows, columns=["kind", "receiver", "low_ns", "high_ns", "count"])
