"""The `counters` table: snapshots in long format, with every delta computed here, once.

A counter that goes down is either a 32-bit counter that wrapped or a reset. It is taken as a
wrap when both values fit in 32 bits and the older one was in the upper half (a counter that
far along wraps long before it resets); the delta is then new + 2**32 - old. Anything else
that goes down (a 64-bit counter, or a small 32-bit one) is a reset: a device re-created, a
driver reloaded. Its delta is NaN and `reset` is True, and totals count it as 0 and say how
many resets they skipped. Gauges (queue lengths) get their plain difference, negative or not.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from .collectors import Reading, is_gauge

WRAP32 = 1 << 32
KEY = ["source", "netns", "device", "queue", "cpu", "name"]
COLUMNS = ["t", *KEY, "value", "delta", "reset"]

Snapshot = tuple[float, Iterable[tuple[str | None, Reading]]]


def to_frame(snapshots: Sequence[Snapshot]) -> pd.DataFrame:
    """[(t, [(netns, Reading), ...]), ...] -> the counters table, sorted by series then t.

    The delta of a row is its change since the previous snapshot of the same series (NaN for
    the first one).
    """
    cols: dict[str, list] = {c: [] for c in ["t", *KEY, "value"]}
    for t, readings in snapshots:
        for ns, r in readings:
            if r.value >= 1 << 63:
                continue  # ~0ULL "not set" markers: no real counter gets there; int64 can't hold it
            cols["t"].append(float(t))
            cols["source"].append(r.source)
            cols["netns"].append(ns)
            cols["device"].append(r.device)
            cols["queue"].append(r.queue)
            cols["cpu"].append(r.cpu)
            cols["name"].append(r.name)
            cols["value"].append(r.value)
    df = pd.DataFrame(cols)
    df["queue"] = df["queue"].astype("Int64")
    df["cpu"] = df["cpu"].astype("Int64")
    df["value"] = df["value"].astype("int64")
    if df.empty:
        df["delta"] = pd.Series(dtype="float64")
        df["reset"] = pd.Series(dtype="bool")
        return df[COLUMNS]
    df = df.sort_values([*KEY, "t"], kind="stable", na_position="first").reset_index(drop=True)
    df["delta"], df["reset"] = _deltas(df)
    return df[COLUMNS]


def _series_ids(df: pd.DataFrame) -> np.ndarray:
    # groupby(dropna=False) keeps None/NA keys (a device-less or queue-less series).
    return df.groupby(KEY, dropna=False, sort=False).ngroup().to_numpy()


def _deltas(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    ids = _series_ids(df)
    value = df["value"].to_numpy(dtype="int64")
    prev = np.roll(value, 1)
    first = np.ones(len(df), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    raw = (value - prev).astype("float64")
    gauge = np.fromiter((is_gauge(s, n) for s, n in zip(df["source"], df["name"])),
                        dtype=bool, count=len(df))
    down = (raw < 0) & ~gauge & ~first
    wrap = down & (prev >= WRAP32 // 2) & (prev < WRAP32) & (value >= 0) & (value < WRAP32)
    delta = raw.copy()
    delta[wrap] = (value[wrap] + WRAP32 - prev[wrap]).astype("float64")
    reset = down & ~wrap
    delta[reset] = np.nan
    delta[first] = np.nan
    return delta, reset


def totals(counters: pd.DataFrame, start: float | None = None,
           end: float | None = None) -> pd.DataFrame:
    """Total change of each series between its first and last snapshot in [start, end].

    Columns: KEY..., first, last, delta (sum of the per-interval deltas, wrap-aware; a reset
    interval counts 0), resets (how many intervals were resets), samples.
    """
    df = counters
    if start is not None:
        df = df[df["t"] >= start]
    if end is not None:
        df = df[df["t"] <= end]
    if df.empty:
        return pd.DataFrame(columns=[*KEY, "first", "last", "delta", "resets", "samples"])
    df = df.sort_values([*KEY, "t"], kind="stable", na_position="first")
    # Deltas are recomputed inside the window so its first row contributes nothing.
    d, r = _deltas(df.reset_index(drop=True))
    df = df.reset_index(drop=True).assign(delta=np.nan_to_num(d, nan=0.0), reset=r)
    g = df.groupby(KEY, dropna=False, sort=False)
    out = g.agg(first=("value", "first"), last=("value", "last"), delta=("delta", "sum"),
                resets=("reset", "sum"), samples=("value", "size")).reset_index()
    out["delta"] = out["delta"].round().astype("int64")
    out["resets"] = out["resets"].astype("int64")
    return out


def total_of(tot: pd.DataFrame, source: str, name: str, netns: str | None = ...,
             device: str | None = ...) -> int:
    """Sum of the totals of one counter (over queues and CPUs), optionally for one netns/device."""
    sel = (tot["source"] == source) & (tot["name"] == name)
    if netns is not ...:
        sel &= tot["netns"].isna() if netns is None else tot["netns"] == netns
    if device is not ...:
        sel &= tot["device"].isna() if device is None else tot["device"] == device
    return int(tot.loc[sel, "delta"].sum())
