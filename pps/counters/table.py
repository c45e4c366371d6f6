"""The `counters` table: snapshots in long format, with every delta computed here, once.

A counter that goes down has wrapped or been reset. Only counters the kernel keeps in 32 bits
(THIRTY_TWO_BIT, each with the reason) can wrap in practice, and only from the upper half of
their range (more than 2**31 events in one interval is out of reach); their delta is then
new + 2**32 - old. Everything else that goes down is a reset: a device re-created, a driver
reloaded, a namespace made anew. A 64-bit counter read as a 32-bit wrap would jump by ~4e9,
so none is. A reset row gets `reset` True and its delta is counted from 0: the new value,
which is what the counter has counted since it restarted. Totals include it and say how many
resets they saw. Gauges (queue lengths) get their plain difference, negative or not.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Sequence

import numpy as np
import pandas as pd

from pps.counters.collectors import Reading, is_gauge

WRAP32 = 1 << 32

# Sources whose counters the kernel keeps as 32-bit unsigned ints, so they wrap at 2**32 on
# every kernel (their gauges, in collectors.GAUGES, never count as wrapped or reset):
THIRTY_TWO_BIT = frozenset({
    # struct softnet_data: processed, time_squeeze, received_rps, cpu_collision, dropped are
    # unsigned int, flow_limit_count is sd_flow_limit.count (unsigned int); all printed
    # with "%08x" (net/core/net-procfs.c softnet_seq_show).
    "softnet",
    # per-CPU interrupt counts are unsigned int (struct irq_desc.kstat_irqs), printed "%10u".
    "interrupts",
    # kstat_softirqs_cpu() returns unsigned int, printed "%10u" (fs/proc/softirqs.c).
    "softirqs",
    # /proc/net/udp's drops is sk_drops, an atomic_t printed with "%u".
    "socket",
})
# Not here, so 64-bit: link (rtnl_link_stats64) and qstats are u64; ethtool -S values are u64
# (a driver that exposes a raw 32-bit hardware counter shows its wrap as a reset, flagged);
# snmp, netstat and snmp6 are unsigned long, 64-bit on the 64-bit kernels pps runs on.
KEY = ["source", "netns", "device", "queue", "cpu", "name"]
COLUMNS = ["t", *KEY, "value", "delta", "reset"]
# The results directory's counters table (schema 2): `t` is `t_s`, and each counter's kernel
# name and ledger layer follow its name (annotate).
RESULT_COLUMNS = ["t_s", *KEY, "kernel_name", "layer", "value", "delta", "reset"]
NO_LAYER = "none"

Snapshot = tuple[float, Iterable[tuple[str | None, Reading]]]


def to_frame(snapshots: Sequence[Snapshot]) -> pd.DataFrame:
    """[(t, [(netns, Reading), ...]), ...] -> the counters table, sorted by series then t.

    The delta of a row is its change since the previous snapshot of the same series (NaN for
    the first one; the new value after a reset).
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


def step(prev: np.ndarray, value: np.ndarray, narrow: np.ndarray, gauge: np.ndarray,
         first: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The delta of each reading from its series' previous one, and whether it was a reset:
    the one rule for wraps and resets, used by the table (to_frame, totals) and by the
    running totals of a long run (RunningTotals) alike. `first`: no previous reading
    (delta NaN, never a reset)."""
    raw = (value - prev).astype("float64")
    down = (raw < 0) & ~gauge & ~first
    wrap = down & narrow & (prev >= WRAP32 // 2) & (prev < WRAP32) & (value >= 0)
    delta = raw.copy()
    delta[wrap] = (value[wrap] + WRAP32 - prev[wrap]).astype("float64")
    reset = down & ~wrap
    delta[reset] = value[reset].astype("float64")  # counted from 0 since the reset
    delta[first] = np.nan
    return delta, reset


def kinds(sources: Sequence[str], names: Sequence[str]) -> tuple[np.ndarray, np.ndarray]:
    """(narrow, gauge) per series: a 32-bit counter (wraps), a gauge (plain difference)."""
    sources = np.asarray(sources, dtype=object)
    gauge = np.fromiter((is_gauge(s, n) for s, n in zip(sources, names)),
                        dtype=bool, count=len(sources))
    return np.isin(sources, list(THIRTY_TWO_BIT)), gauge


def _deltas(df: pd.DataFrame) -> tuple[np.ndarray, np.ndarray]:
    ids = _series_ids(df)
    value = df["value"].to_numpy(dtype="int64")
    prev = np.roll(value, 1)
    first = np.ones(len(df), dtype=bool)
    first[1:] = ids[1:] != ids[:-1]
    narrow, gauge = kinds(df["source"].to_numpy(), df["name"].to_numpy())
    return step(prev, value, narrow, gauge, first)


def totals(counters: pd.DataFrame, start: float | None = None,
           end: float | None = None) -> pd.DataFrame:
    """Total change of each series between its first and last snapshot in [start, end].

    Columns: KEY..., first, last, delta (sum of the per-interval deltas, wrap-aware; a reset
    interval counts the value after it), resets (how many intervals were resets), samples.
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


class RunningTotals:
    """What `totals(table)` gives for a whole run, kept up to date one snapshot at a time, so
    a run of any length needs neither its table in memory nor a re-read of it: per series
    the first and last value, the sum of the deltas (by `step`'s rule), resets and samples.

    Series are numbered in the order first seen (`index`); `add` takes one snapshot as
    (series numbers, values) and returns each reading's delta and reset flag for the table.
    """

    def __init__(self) -> None:
        self.index: dict[tuple, int] = {}
        self.keys: list[tuple] = []
        self._alloc(256)

    def _alloc(self, n: int) -> None:
        def grow(old: np.ndarray | None, dtype: str) -> np.ndarray:
            new = np.zeros(n, dtype=dtype)
            if old is not None:
                new[:len(old)] = old
            return new
        for name, dtype in (("first", "int64"), ("last", "int64"), ("delta", "int64"),
                            ("resets", "int64"), ("samples", "int64"), ("narrow", "bool"),
                            ("gauge", "bool")):
            setattr(self, name, grow(getattr(self, name, None), dtype))

    def series(self, key: tuple) -> int:
        """The number of the series `key` (KEY order), new ones added."""
        i = self.index.get(key)
        if i is None:
            i = self.index[key] = len(self.keys)
            self.keys.append(key)
            if i >= len(self.first):
                self._alloc(2 * len(self.first))
            narrow, gauge = kinds([key[0]], [key[5]])
            self.narrow[i], self.gauge[i] = narrow[0], gauge[0]
        return i

    def add(self, ids: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """One snapshot (each series at most once). Returns (delta, reset) per reading."""
        first = self.samples[ids] == 0
        prev = np.where(first, values, self.last[ids])
        delta, reset = step(prev, values, self.narrow[ids], self.gauge[ids], first)
        self.first[ids[first]] = values[first]
        self.last[ids] = values
        self.delta[ids] += np.nan_to_num(delta, nan=0.0).round().astype("int64")
        self.resets[ids] += reset
        self.samples[ids] += 1
        return delta, reset

    def frame(self) -> pd.DataFrame:
        """The totals, in `totals()`'s columns and order."""
        n = len(self.keys)
        if not n:
            return pd.DataFrame(columns=[*KEY, "first", "last", "delta", "resets", "samples"])
        df = pd.DataFrame(self.keys, columns=KEY)
        df["queue"] = df["queue"].astype("Int64")
        df["cpu"] = df["cpu"].astype("Int64")
        for name in ("first", "last", "delta", "resets", "samples"):
            df[name] = getattr(self, name)[:n]
        return df.sort_values(KEY, kind="stable", na_position="first").reset_index(drop=True)


# --------------------------------------------------------------------------- names and layers

def annotate(df: pd.DataFrame) -> pd.DataFrame:
    """The counters table as a results directory holds it (RESULT_COLUMNS): `t` renamed
    `t_s`, and after `name` the counter's `kernel_name` (kernel_names) and the drop-ledger
    `layer` it is counted in (ledger_layers). Takes the table of any schema version (a
    table already annotated comes back as it is); other columns (across hosts, `host`)
    keep their place. Work is per distinct counter, not per row: a long run's table goes
    through here a row group at a time."""
    if "t" in df.columns and "t_s" not in df.columns:
        df = df.rename(columns={"t": "t_s"})
    if {"kernel_name", "layer"} <= set(df.columns) or not {"source", "name"} <= set(df.columns):
        return df
    try:
        queue = df["queue"].astype("Int64")
    except (KeyError, TypeError, ValueError):  # none, or not whole numbers: no queue to put back
        queue = pd.Series(pd.NA, index=df.index, dtype="Int64")
    # Each row's (source, name) pair as one code, from the codes of each column.
    s_codes, sources = pd.factorize(df["source"], use_na_sentinel=False)
    n_codes, names = pd.factorize(df["name"], use_na_sentinel=False)
    pair_codes, combined = pd.factorize(s_codes.astype("int64") * len(names) + n_codes)
    pairs = [(sources[c // len(names)], names[c % len(names)]) for c in combined]
    layers = ledger_layers(pairs)
    layer = np.array([layers.get(p, NO_LAYER) for p in pairs], dtype=object)[pair_codes]
    kernel = df["name"].to_numpy(dtype=object, copy=True)
    queued = (df["source"] == "ethtool").to_numpy() & queue.notna().to_numpy()
    if queued.any():
        triples = list(zip(df["source"][queued], df["name"][queued], queue[queued]))
        kernel_of = kernel_names(triples)
        kernel[queued] = [kernel_of[k] for k in triples]
    at = list(df.columns).index("name") + 1
    df = df.copy()
    df.insert(at, "kernel_name", pd.array(kernel, dtype=df["name"].dtype))
    df.insert(at + 1, "layer", pd.array(layer, dtype=df["name"].dtype))
    return df


def kernel_names(series: Iterable[tuple[str, str, int | None]]) -> dict[tuple, str]:
    """(source, name, queue) -> the name as the kernel shows it. Only ethtool's per-queue
    names are rewritten when read (`rx_queue_3_drops` -> `rx_queue_N_drops`, queue 3: see
    collectors.nic.split_queue); every other counter's name is the kernel's (snmp and
    netstat in nstat's joined form, `UdpRcvbufErrors`). The number goes back in the one
    place that split_queue would take it from again."""
    from pps.counters.collectors.nic import split_queue

    out: dict[tuple, str] = {}
    for key in set(series):
        source, name, queue = key
        out[key] = name
        if source != "ethtool" or queue is None or pd.isna(queue) or not isinstance(name, str):
            continue
        number = str(int(queue))
        for i, char in enumerate(name):
            candidate = name[:i] + number + name[i + 1:]
            if char == "N" and split_queue(candidate) == (name, int(queue)):
                out[key] = candidate
                break
    return out


def ledger_layers(pairs: Iterable[tuple[str, str]]) -> dict[tuple[str, str], str]:
    """(source, name) -> the drop-ledger layer (send, nic, backlog, ip, udp) the ledger files
    that counter under, whether it adds it or only shows it; pairs it never looks at are
    left out. The ledger itself is asked (pps.counters.ledger.build_ledger, over one
    made-up total per counter and device), so this never disagrees with it."""
    return dict(_layers(frozenset((s, n) for s, n in pairs
                                  if isinstance(s, str) and isinstance(n, str))))


@functools.lru_cache(maxsize=64)
def _layers(pairs: frozenset[tuple[str, str]]) -> tuple[tuple[tuple[str, str], str], ...]:
    from pps.counters.collectors.nic import NIC_DROPS
    from pps.counters.ledger import build_ledger

    # One device per driver the ledger has a NIC map for, and one it knows no driver of
    # (whose NIC drops come from link counters).
    drivers = {(None, f"nic{i}"): driver for i, driver in enumerate(sorted(NIC_DROPS))}
    devices = [dev for _, dev in drivers] + ["link"]
    found: dict[tuple[str, str], str] = {}
    todo = set(pairs)
    # A driver's map takes the first of each group of alternative names that is present,
    # so a second alternative is found on a later pass, once the first is known.
    while todo:
        rows = []
        for source, name in sorted(todo):
            for dev in (devices if source in ("ethtool", "link") else [None]):
                rows.append((source, None, dev, None, None, name, 0, 1, 1, 0, 2))
        totals = pd.DataFrame(rows, columns=[*KEY, "first", "last", "delta", "resets", "samples"])
        ledger = build_ledger(1 << 40, 0, totals, None, None, devices=drivers)
        new = {}
        for row in ledger.rows:
            counter = row.counter.split("(", 1)[0]  # UdpInErrors(other) counts UdpInErrors
            if (row.source, counter) in todo:
                new.setdefault((row.source, counter), row.layer)
        if not new:
            break
        found.update(new)
        todo -= set(new)
    return tuple(sorted(found.items()))
