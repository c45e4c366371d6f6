"""PNG plots of results (matplotlib, Agg: no display needed). Each function takes data
already read from results directories and a file path, and returns the path, or None when
the results hold nothing to draw (a missing table is normal for older or partial runs).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports run on headless CI hosts
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402

LAYERS = ("send", "nic", "backlog", "ip", "udp")
# Per-queue receive counters, most specific first: ethtool's per-queue counters, then the
# kernel's netdev queue stats. Any other driver shape with "rx" and "packets" is used last.
QUEUE_NAMES = ("rx_queue_N_packets", "rxN_packets", "queue_N_rx_packets", "rx-packets")
QUEUE_FALLBACK = re.compile(r"rx.*packets|packets.*rx")
# One colour per ledger part in every panel, so "udp" is the same colour everywhere.
PART_COLOURS = dict(zip(("received", *LAYERS), ("tab:blue", "tab:orange", "tab:green", "tab:red",
                                                "tab:purple", "tab:brown")))


def _save(fig: Any, out: Path) -> Path:
    fig.tight_layout()
    fig.savefig(out, dpi=90)
    plt.close(fig)
    return out


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
               for v in values)


def _mpps(ax: Any) -> None:
    ax.yaxis.set_major_formatter(matplotlib.ticker.FuncFormatter(lambda v, _: f"{v / 1e6:g}M"))


def rate_vs_param(runs: pd.DataFrame, param: str, series: Sequence[str], out: Path) -> Path | None:
    """Median rx (solid) and tx (dashed) pps against one swept parameter, one line per value
    of the other swept parameters, with min..max over repetitions as error bars."""
    done = runs[runs["status"] == "done"].dropna(subset=["rx_pps"])
    if done.empty or param not in done:
        return None
    xs_all = sorted(done[param].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    numeric = _numeric(xs_all)
    position = {v: (v if numeric else i) for i, v in enumerate(xs_all)}
    fig, ax = plt.subplots(figsize=(7, 4.2))
    groups = done.groupby(list(series), dropna=False) if series else [((), done)]
    for key, group in groups:
        key = key if isinstance(key, tuple) else (key,)
        name = ", ".join(f"{s}={k}" for s, k in zip(series, key)) or "rx"
        stats = group.groupby(param)["rx_pps"].agg(["median", "min", "max"]).reset_index()
        x = [position[v] for v in stats[param]]
        err = [stats["median"] - stats["min"], stats["max"] - stats["median"]]
        line = ax.errorbar(x, stats["median"], yerr=err, marker="o", capsize=4, label=name)
        tx = group.groupby(param)["tx_pps"].median().reindex(stats[param])
        ax.plot(x, tx.values, linestyle="--", color=line[0].get_color(), alpha=0.5)
    if numeric and min(xs_all) > 0 and max(xs_all) / min(xs_all) >= 16:
        ax.set_xscale("log", base=2)
    if numeric:
        ax.set_xticks(xs_all, [str(v) for v in xs_all])
    else:
        ax.set_xticks(range(len(xs_all)), [str(v) for v in xs_all])
    ax.set_xlabel(param)
    ax.set_ylabel("packets/s (rx solid, tx dashed)")
    ax.set_title(f"rate vs {param}: median, min..max over repetitions")
    _mpps(ax)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    if series:
        ax.legend(fontsize=8)
    return _save(fig, out)


def rate_by_run(runs: pd.DataFrame, out: Path) -> Path | None:
    """Without swept parameters: median rx pps of each results directory, min..max bars."""
    done = runs[runs["status"] == "done"].dropna(subset=["rx_pps"])
    if done.empty:
        return None
    stats = done.groupby("source", sort=False)["rx_pps"].agg(["median", "min", "max"])
    fig, ax = plt.subplots(figsize=(max(4, 1.2 * len(stats) + 2), 4))
    x = np.arange(len(stats))
    ax.bar(x, stats["median"], yerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]],
           capsize=4, color="tab:blue")
    ax.set_xticks(x, stats.index, rotation=20, ha="right", fontsize=8)
    ax.set_ylabel("rx packets/s")
    ax.set_title("rx rate per run: median, min..max over repetitions")
    _mpps(ax)
    return _save(fig, out)


def _worker_packets(trial: Any) -> pd.DataFrame:
    df = trial.tables.get("workers")
    if df is None or not {"role", "index", "packets"} <= set(df.columns):
        df = pd.DataFrame(trial.summary.get("workers") or [])
    if df.empty or not {"role", "index", "packets"} <= set(df.columns):
        return pd.DataFrame(columns=["role", "index", "packets"])
    return df[["role", "index", "packets"]]


def _grouped_bars(ax: Any, labels: list[str], data: list[dict[Any, float]], what: str) -> None:
    keys = sorted({k for d in data for k in d}, key=lambda k: (str(type(k)), k))
    width = 0.8 / max(1, len(keys))
    x = np.arange(len(labels))
    for i, key in enumerate(keys):
        ax.bar(x + i * width - 0.4 + width / 2, [d.get(key, 0) for d in data], width,
               label=f"{what} {key}")
    ax.set_xticks(x, labels, rotation=20, ha="right", fontsize=7)
    if 1 < len(keys) <= 16:
        ax.legend(fontsize=7, ncol=2)


def imbalance(values: Sequence[float]) -> float | None:
    """max/min of the per-worker or per-queue counts; 1.0 is perfectly even."""
    values = [v for v in values if v is not None]
    if len(values) < 2 or min(values) <= 0:
        return None
    return max(values) / min(values)


def _title(what: str, data: list[dict[Any, float]]) -> str:
    worst = [imbalance(list(d.values())) for d in data]
    worst = [w for w in worst if w is not None]
    return what + (f" (worst max/min {max(worst):.2f})" if worst else "")


def workers(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Packets per worker in each trial, receivers and senders apart."""
    frames = [_worker_packets(t) for t in trials]
    if all(f.empty for f in frames):
        return None
    fig, axes = plt.subplots(1, 2, figsize=(11, 4))
    for ax, role in zip(axes, ("receiver", "sender")):
        data = [dict(zip(f[f["role"] == role]["index"], f[f["role"] == role]["packets"]))
                for f in frames]
        _grouped_bars(ax, labels, data, role)
        ax.set_title(_title(f"{role}s: packets per worker", data), fontsize=9)
        _mpps(ax)
    return _save(fig, out)


def counter_totals(counters: pd.DataFrame | None, source: str, name: str, by: str) -> dict[Any, float]:
    """Sum of the deltas of one counter per queue or per CPU (resets excluded)."""
    if counters is None or counters.empty or by not in counters:
        return {}
    rows = counters[(counters["source"] == source) & (counters["name"] == name)]
    rows = rows[rows[by].notna()]
    if "reset" in rows:
        rows = rows[~rows["reset"].astype(bool)]
    if rows.empty or "delta" not in rows:
        return {}
    totals = rows.groupby(by)["delta"].sum()
    return {int(k): float(v) for k, v in totals.items()}


def queue_counter(counters: pd.DataFrame | None) -> tuple[str, str] | None:
    """(source, name) of the per-queue rx packet counter these counters have, if any."""
    if counters is None or counters.empty or "queue" not in counters:
        return None
    per_queue = counters[counters["queue"].notna()]
    names = set(zip(per_queue["source"], per_queue["name"]))
    for wanted in QUEUE_NAMES:
        for source, name in sorted(names):
            if name == wanted:
                return source, name
    for source, name in sorted(names):
        if QUEUE_FALLBACK.search(name) and "bytes" not in name:
            return source, name
    return None


def queues(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Per-queue and per-CPU receive work: NIC queue packets (when the driver counts them),
    softnet packets processed per CPU and NET_RX softirqs per CPU."""
    panels = []
    counters = [t.tables.get("counters") for t in trials]
    found = next((q for q in map(queue_counter, counters) if q), None)
    if found:
        panels.append((f"{found[0]} {found[1]} per queue", "queue",
                       [counter_totals(c, found[0], found[1], "queue") for c in counters]))
    panels.append(("softnet processed per CPU", "cpu",
                   [counter_totals(c, "softnet", "processed", "cpu") for c in counters]))
    panels.append(("NET_RX softirqs per CPU", "cpu",
                   [counter_totals(c, "softirqs", "NET_RX", "cpu") for c in counters]))
    panels = [p for p in panels if any(p[2])]
    if not panels:
        return None
    fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 4), squeeze=False)
    for ax, (title, by, data) in zip(axes[0], panels):
        _grouped_bars(ax, labels, data, by)
        ax.set_title(_title(title, data), fontsize=9)
    return _save(fig, out)


def _drop_keys(trial: Any) -> list[tuple[str, str]]:
    drops = ((trial.summary.get("ledger") or {}).get("drops") or {})
    keys = [tuple(k.split(".", 1)) for k in drops if "." in k]
    return [(s, n.split("(")[0]) for s, n in keys] + [("socket", "drops")]


def timeseries(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """rx pps per sample interval and drops per second from the counters' deltas."""
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(9, 6), sharex=True)
    drew = False
    for trial, label in zip(trials, labels):
        samples = trial.tables.get("samples")
        if samples is not None and {"t", "role", "pps"} <= set(samples.columns):
            rx = samples[samples["role"] == "receiver"].groupby("t")["pps"].sum()
            if not rx.empty:
                top.plot(rx.index, rx.values, marker=".", label=label)
                drew = True
        counters = trial.tables.get("counters")
        if counters is None or counters.empty or not {"t", "source", "name", "delta"} <= set(counters):
            continue
        # Counters' clock starts just before the go signal, the samples' at go: align on it.
        t0 = counters["t"].min()
        keys = set(_drop_keys(trial))
        mask = [(s, n) in keys for s, n in zip(counters["source"], counters["name"])]
        rows = counters[mask].dropna(subset=["delta"])
        if rows.empty:
            continue
        per_t = rows.groupby("t")["delta"].sum().sort_index()
        dt = per_t.index.to_series().diff().replace(0, np.nan)
        rate = (per_t / dt).dropna()
        rate = rate[dt.dropna() > 0.05]  # back-to-back snapshots at marks say nothing per second
        if not rate.empty:
            bottom.plot(rate.index - t0, rate.values, marker=".", label=label)
            drew = True
    if not drew:
        plt.close(fig)
        return None
    top.set_ylabel("rx packets/s")
    top.set_title("rx rate per sample interval")
    _mpps(top)
    bottom.set_ylabel("drops/s (ledger counters + socket drops)")
    bottom.set_xlabel("seconds since start")
    for ax in (top, bottom):
        ax.grid(alpha=0.3)
        if 1 < len(labels) <= 12:
            ax.legend(fontsize=7)
    return _save(fig, out)


def ledger(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Where every sent packet went, as a share of sent: received, then drops per layer, then
    the unaccounted rest (below zero when counters saw more drops than packets went missing,
    as shared host-wide counters do)."""
    rows = []
    for trial, label in zip(trials, labels):
        led = trial.summary.get("ledger")
        sent = (led or {}).get("sent") or trial.summary.get("sent")
        if not led or not sent:
            continue
        layers = led.get("layers") or {}
        rows.append({"label": label, "received": led.get("received", 0) / sent,
                     **{layer: layers.get(layer, 0) / sent for layer in LAYERS},
                     "unaccounted": (led.get("unaccounted") or 0) / sent})
    if not rows:
        return None
    df = pd.DataFrame(rows)
    fig, (ax_all, ax_lost) = plt.subplots(1, 2, figsize=(12, 4.2))
    x = np.arange(len(df))
    for ax, parts in ((ax_all, ("received", *LAYERS)), (ax_lost, LAYERS)):
        bottom = np.zeros(len(df))
        for part in parts:
            ax.bar(x, df[part], bottom=bottom, label=part, color=PART_COLOURS[part])
            bottom += df[part].to_numpy()
        positive = df["unaccounted"].clip(lower=0)
        ax.bar(x, positive, bottom=bottom, label="unaccounted", color="grey", hatch="//")
        ax.bar(x, df["unaccounted"].clip(upper=0), color="grey", hatch="\\\\")
        ax.axhline(0, color="black", linewidth=0.5)
        ax.set_xticks(x, df["label"], rotation=20, ha="right", fontsize=7)
        ax.yaxis.set_major_formatter(matplotlib.ticker.PercentFormatter(1.0))
        ax.legend(fontsize=7)
    ax_all.set_title("ledger: share of packets sent")
    ax_lost.set_title("ledger: lost packets only, by layer")
    return _save(fig, out)
