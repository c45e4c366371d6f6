"""PNG plots of rates and work per worker, queue and CPU. Each function takes data already
read from results directories and a file path, and returns the path, or None when the
results hold nothing to draw (a missing table is normal for older or partial runs).
The look (units, colours, legends, layout) is plot_style's; the ledger, latency and time
series figures live in plot_ledger, plot_latency and plot_timeseries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pps.report import plot_style as style
from pps.report.display import rate
from pps.report.plot_latency import latency  # noqa: F401  (re-exported: report.py draws every figure from here
from pps.report.plot_ledger import ledger  # noqa: F401
from pps.report.plot_timeseries import timeseries  # noqa: F401

# Per-queue receive counters, most specific first: ethtool's per-queue counters, then the
# kernel's netdev queue stats. Any other driver shape with "rx" and "packets" is used last,
# but never an XDP counter: veth has rx_queue_N_xdp_packets, zero unless XDP runs.
QUEUE_NAMES = ("rx_queue_N_packets", "rxN_packets", "queue_N_rx_packets", "rx-packets")
QUEUE_FALLBACK = re.compile(r"rx.*packets|packets.*rx")


def _numeric(values: Sequence[Any]) -> bool:
    return all(isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool)
               for v in values)


# ----------------------------------------------------------------------------- rates

def _rate_series(ax: Any, group: pd.DataFrame, param: str, position: dict[Any, float],
                 colour: str, label: str | None) -> None:
    """One series: median rx with min..max bars (solid), median tx (dashed, same colour)."""
    stats = group.groupby(param)["rx_pps"].agg(["median", "min", "max"]).reset_index()
    x = [position[v] for v in stats[param]]
    err = [stats["median"] - stats["min"], stats["max"] - stats["median"]]
    ax.errorbar(x, stats["median"], yerr=err, marker="o", capsize=4, color=colour, label=label)
    tx = group.groupby(param)["tx_pps"].median().reindex(stats[param])
    ax.plot(x, tx.values, linestyle="--", color=colour, alpha=0.6)


def _param_axis(ax: Any, param: str, xs: list[Any], numeric: bool) -> None:
    if numeric and min(xs) > 0 and max(xs) / min(xs) >= 16:
        ax.set_xscale("log", base=2)
    ax.set_xticks(xs if numeric else range(len(xs)), [style.value_text(v) for v in xs])
    ax.minorticks_off()
    ax.set_xlabel(param)


def rate_vs_param(runs: pd.DataFrame, param: str, series: Sequence[str], out: Path) -> Path | None:
    """Median rx (solid) and tx (dashed) pps against one swept parameter, one line per value
    of the other swept parameters (small multiples past MAX_SERIES), with min..max over
    repetitions as error bars."""
    if param not in runs:
        return None
    # Rows without this parameter (a plain run reported beside a sweep) have no x: left out.
    done = runs[runs["status"] == "done"].dropna(subset=["rx_pps", param])
    if done.empty:
        return None
    xs = sorted(done[param].dropna().unique().tolist(), key=lambda v: (str(type(v)), v))
    numeric = _numeric(xs)
    position = {v: (v if numeric else i) for i, v in enumerate(xs)}
    groups = list(done.groupby(list(series), dropna=False)) if series else [((), done)]
    names = [", ".join(f"{s}={style.value_text(k)}" for s, k in zip(series, key if isinstance(key, tuple) else (key,)))
             for key, _ in groups]
    divisor, unit = style.unit_for(style.largest([*done["rx_pps"], *done["tx_pps"].dropna()]))
    title = f"rate against {param}: median, bars min..max over repetitions; rx solid, tx dashed"
    if len(groups) <= style.MAX_SERIES:
        fig, axes = style.figure(width=8.5, height=4.2)
        ax = axes[0, 0]
        for (_, group), name, colour in zip(groups, names, style.colours(len(groups))):
            _rate_series(ax, group, param, position, colour, name or None)
        panels = [ax]
        style.legend_outside(ax)
    else:
        rows, cols = style.grid_shape(len(groups), 3)
        fig, axes = style.figure(rows, cols, width=3.4 * cols, height=2.6 * rows + 0.6,
                                 sharex=True, sharey=True)
        panels = list(axes.flat)[:len(groups)]
        for ax, (_, group), name in zip(panels, groups, names):
            _rate_series(ax, group, param, position, style.SERIES_COLOURS[0], None)
            ax.set_title(style.shorten(name, 45), fontsize=8)
        style.hide_unused(axes, len(groups))
    for ax in panels:
        _param_axis(ax, param, xs, numeric)
        style.rate_axis(ax, "packets/s", divisor, unit)
        spec = ax.get_subplotspec()  # small multiples: labels on the outer panels only
        if not spec.is_first_col():
            ax.set_ylabel("")
        if not spec.is_last_row() and len(panels) > spec.get_gridspec().ncols:
            ax.set_xlabel("")
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    fig.suptitle(title, fontsize=10)
    return style.save(fig, out)


def rate_by_run(runs: pd.DataFrame, out: Path) -> Path | None:
    """Without swept parameters: median rx pps of each results directory, min..max bars.
    Horizontal bars, so a long directory name is read in full, never cut or slanted."""
    done = runs[runs["status"] == "done"].dropna(subset=["rx_pps"])
    if done.empty:
        return None
    stats = done.groupby("source", sort=False)["rx_pps"].agg(["median", "min", "max", "count"])
    divisor, unit = style.unit_for(style.largest(stats["max"]))
    fig, axes = style.figure(width=8, height=1.2 + 0.45 * len(stats))
    ax = axes[0, 0]
    y = np.arange(len(stats))[::-1]
    ax.barh(y, stats["median"], xerr=[stats["median"] - stats["min"], stats["max"] - stats["median"]],
            capsize=4, color=style.SERIES_COLOURS[0], height=0.6)
    for yi, median, n in zip(y, stats["median"], stats["count"]):
        ax.annotate(f"{rate(median).strip()} (n={n})", (median, yi), xytext=(6, 6),
                    textcoords="offset points", fontsize=8, va="bottom")
    ax.set_yticks(y, [style.shorten(s, 50) for s in stats.index], fontsize=8)
    ax.set_ylabel("results directory")
    style.rate_axis(ax, "rx packets/s, median", divisor, unit, axis="x")
    ax.set_xlim(left=0, right=stats["max"].max() * 1.3)
    ax.grid(alpha=0.3, axis="x")
    ax.set_title("rx rate per run (bars: min..max over repetitions)", fontsize=10)
    return style.save(fig, out)


# ----------------------------------------------------------------------------- per worker, queue, CPU

def _worker_packets(trial: Any) -> pd.DataFrame:
    df = trial.tables.get("workers")
    if df is None or not {"role", "index", "packets"} <= set(df.columns):
        df = pd.DataFrame(trial.summary.get("workers") or [])
    if df.empty or not {"role", "index", "packets"} <= set(df.columns):
        return pd.DataFrame(columns=["role", "index", "packets"])
    return df[["role", "index", "packets"]]


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


def _bars(ax: Any, labels: list[str], data: list[dict[Any, float]], what: str, ylabel: str,
          divisor: float, unit: str) -> None:
    """Per trial (x), one bar per worker, queue or CPU in its own colour; past MAX_SERIES of
    them, one dot each in a single colour (colours would repeat, a legend would not help)."""
    keys = sorted({k for d in data for k in d}, key=lambda k: (str(type(k)), k))
    x = np.arange(len(labels))
    if len(labels) == 1:  # one trial: the workers, queues or CPUs are the x axis, values written
        values = [data[0].get(k, 0) for k in keys]
        bars = ax.bar(np.arange(len(keys)), values, 0.6, color=style.SERIES_COLOURS[0])
        ax.bar_label(bars, [f"{v / divisor:,.4g}" for v in values], fontsize=7, padding=2)
        ax.set_xticks(np.arange(len(keys)), [str(k) for k in keys], fontsize=8)
        ax.set_xlabel(f"{what} (trial {style.shorten(labels[0], 40)})")
    elif len(keys) <= style.MAX_SERIES:
        width = 0.8 / max(1, len(keys))
        for i, (key, colour) in enumerate(zip(keys, style.colours(len(keys)))):
            ax.bar(x + i * width - 0.4 + width / 2, [d.get(key, 0) for d in data], width,
                   color=colour, label=f"{what} {key}")
        style.legend_outside(ax)
    else:
        for xi, d in zip(x, data):
            ax.scatter([xi] * len(d), list(d.values()), s=14, color=style.SERIES_COLOURS[0],
                       label=f"one dot per {what}" if xi == 0 else None)
        style.legend_outside(ax)
    if len(labels) > 1:
        ax.set_xticks(x, [style.shorten(label, 32) for label in labels], rotation=30, ha="right",
                      fontsize=7)
    ax.set_ylabel(style.count_label(ylabel, unit))
    style.plain_ticks(ax, "y", divisor)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")


def _panels(fig_title: str, labels: list[str], panels: list[tuple[str, str, str, list[dict]]],
            out: Path) -> Path:
    """One row of bar panels (title, what a bar is, y label, data per trial), stacked when
    there are many trials so the x labels stay readable. Counts share one unit per figure."""
    divisor, unit = style.unit_for(style.largest(v for _, _, _, data in panels for d in data
                                                 for v in d.values()), style.COUNT_UNITS)
    wide = len(labels) > 4
    rows, cols = (len(panels), 1) if wide else (1, len(panels))
    fig, axes = style.figure(rows, cols, width=9 if wide else 4.6 * cols + 1.5,
                             height=(3.4 if wide else 3.8) * rows)
    for ax, (title, what, ylabel, data) in zip(axes.flat, panels):
        _bars(ax, labels, data, what, ylabel, divisor, unit)
        ax.set_title(_title(title, data), fontsize=9)
    fig.suptitle(fig_title, fontsize=10)
    return style.save(fig, out)


def workers(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Packets per worker in each trial, receivers and senders apart; a role no trial has is
    left out."""
    frames = [_worker_packets(t) for t in trials]
    panels = []
    for role in ("receiver", "sender"):
        data = [dict(zip(f[f["role"] == role]["index"], f[f["role"] == role]["packets"]))
                for f in frames]
        if any(data):
            panels.append((f"{role}s: packets per worker", role, "packets", data))
    if not panels:
        return None
    return _panels("packets per worker, whole run", labels, panels, out)


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
        if QUEUE_FALLBACK.search(name) and "bytes" not in name and "xdp" not in name:
            return source, name
    return None


def queues(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Per-queue and per-CPU receive work: NIC queue packets (when the driver counts them),
    softnet packets processed per CPU and NET_RX softirqs per CPU. A panel whose counter is
    missing or all zero (veth counts no per-queue packets) is left out; None when all are."""
    panels = []
    counters = [t.tables.get("counters") for t in trials]
    found = next((q for q in map(queue_counter, counters) if q), None)
    if found:
        panels.append((f"{found[0]} {found[1]} per queue", "queue", "packets",
                       [counter_totals(c, found[0], found[1], "queue") for c in counters]))
    panels.append(("softnet: packets processed per CPU", "cpu", "packets",
                   [counter_totals(c, "softnet", "processed", "cpu") for c in counters]))
    panels.append(("NET_RX softirqs per CPU", "cpu", "softirqs",
                   [counter_totals(c, "softirqs", "NET_RX", "cpu") for c in counters]))
    panels = [p for p in panels if any(v for d in p[3] for v in d.values())]
    if not panels:
        return None
    return _panels("receive work per queue and per CPU, whole run", labels, panels, out)
