"""PNG plots of work per worker, queue and CPU (for one trial over the run, for several
their whole-run totals; small multiples past MAX_SERIES), and the one module report.py
draws every figure from. Each function takes
data already read from results directories and a file path, and returns the path, or None
when the results hold nothing to draw (a missing table is normal for older or partial runs).
The look (units, colours, legends, layout) is plot_style's; the rate, ledger, latency and
time series figures live in plot_rates, plot_ledger, plot_latency and plot_timeseries.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.patches import Patch

from pps.report import plot_style as style
from pps.report.plot_latency import latency  # noqa: F401  (re-exported: report.py draws every figure from here
from pps.report.plot_ledger import ledger  # noqa: F401
from pps.report.plot_rates import rate_by_run, rate_vs_param  # noqa: F401
from pps.report.plot_timeseries import counter_rates, run_end, timeseries, worker_rates  # noqa: F401

# Per-queue receive counters, most specific first: ethtool's per-queue counters, then the
# kernel's netdev queue stats. Any other driver shape with "rx" and "packets" is used last,
# but never an XDP counter: veth has rx_queue_N_xdp_packets, zero unless XDP runs.
QUEUE_NAMES = ("rx_queue_N_packets", "rxN_packets", "queue_N_rx_packets", "rx-packets")
QUEUE_FALLBACK = re.compile(r"rx.*packets|packets.*rx")


ROLE_COLOURS = {"receiver": style.PART_COLOURS["received"], "sender": style.PART_COLOURS["send"]}
IDLE_SHARE = 0.01   # a queue or CPU with less of the work than this share of the busiest: left out


@dataclass
class Kind:
    title: str                       # "softnet: packets processed per CPU"
    what: str                        # what a key is: "receiver", "sender", "queue", "cpu"
    word: str                        # what is counted: "packets", "softirqs"
    data: list[dict[int, float]]     # whole-run totals per key, one dict per trial
    rates: dict[int, pd.Series] = field(default_factory=dict)  # one trial: per key, per second
    names: dict[int, str] = field(default_factory=dict)        # key -> "receiver 0 (cpu 1)"
    colour: str = style.SERIES_COLOURS[0]                      # the kind's colour in multiples

    def name(self, key: int) -> str:
        return self.names.get(key) or f"{self.what} {key}"


def _worker_packets(trial: Any) -> pd.DataFrame:
    df = trial.tables.get("workers")
    if df is None or not {"role", "index", "packets"} <= set(df.columns):
        df = pd.DataFrame(trial.summary.get("workers") or [])
    if df.empty or not {"role", "index", "packets"} <= set(df.columns):
        return pd.DataFrame(columns=["role", "index", "packets", "cpu", "host"])
    return df[[c for c in ("role", "index", "packets", "cpu", "host") if c in df.columns]]


def imbalance(values: Sequence[float]) -> float | None:
    """max/min of the per-worker or per-queue counts; 1.0 is perfectly even."""
    values = [v for v in values if v is not None]
    if len(values) < 2 or min(values) <= 0:
        return None
    return max(values) / min(values)


def _title(what: str, data: list[dict[Any, float]]) -> str:
    """The title with the worst spread; a worker, queue or CPU with none while others had
    some is worse than any ratio, and said so."""
    if any(len(d) > 1 and min(d.values()) <= 0 < max(d.values()) for d in data):
        return what + " (one with none while others had some)"
    worst = [imbalance(list(d.values())) for d in data]
    worst = [w for w in worst if w is not None]
    return what + (f" (worst max/min {max(worst):.2f})" if worst else "")


def _spread(what: str, values: dict[Any, float]) -> str | None:
    """"receivers max/min 1.02", "receivers: one with none", or None (fewer than two)."""
    ratio = imbalance(list(values.values()))
    if ratio is not None:
        return f"{what}s max/min {ratio:.2f}"
    if len(values) > 1 and min(values.values()) <= 0 < max(values.values()):
        return f"{what}s: one with none"
    return None


def _mark_zeros(ax: Any, bars: Any, values: list[float]) -> None:
    """A bar of 0 is no bar at all: write the 0, so it is not read as missing."""
    if any(v == 0 for v in values):
        ax.bar_label(bars, ["0" if v == 0 else "" for v in values], fontsize=7, padding=1)


def _entities(kinds: list[Kind], keys_of: Any) -> list[tuple[str, int]]:
    """(what, key) of every series in the figure, in order; a CPU in two kinds is one series."""
    seen: dict[tuple[str, int], None] = {}
    for kind in kinds:
        for key in sorted(keys_of(kind)):
            seen[(kind.what, key)] = None
    return list(seen)


def _count_unit(divisor: float) -> str:
    return dict(style.COUNT_UNITS).get(divisor, "")


def _per_second(words: list[str], divisor: float, unit: str, short: bool = False) -> str:
    """"packets/s (kpps)", "softirqs/s (thousands)", "packets or softirqs per second
    (thousands)"; short, for a small panel whose legend names its lines: "count/s (thousands)"."""
    words = list(dict.fromkeys(words))
    if words == ["packets"]:
        return f"packets/s ({unit})"
    if len(words) > 1 and short:
        words = ["count"]
    what = " or ".join(words) + (" per second" if len(words) > 1 else "/s")
    return style.count_label(what, _count_unit(divisor))


# ----------------------------------------------------------------------------- one trial: over time

def _rates_figure(kinds: list[Kind], one_axes: bool, fig_title: str, left_out: str,
                  out: Path) -> Path | None:
    """Each series' rate per interval. Up to MAX_SERIES series: one axes (one_axes, the
    kinds told apart by line style) or one axes per kind, a colour per series. Past that, one
    panel per series with its kinds in the kinds' colours, each kind's whats on rows of their
    own, shared axes."""
    kinds = [k for k in kinds if k.rates]
    if not kinds:
        return None
    highest = style.largest(v for k in kinds for s in k.rates.values() for v in s.values)
    divisor, unit = style.unit_for(highest)
    entities = _entities(kinds, lambda k: k.rates)
    note = f" ({left_out})" if left_out else ""
    if len(entities) <= style.MAX_SERIES:
        colour_of = dict(zip(entities, style.colours(len(entities))))
        groups = [kinds] if one_axes else [[k] for k in kinds]
        fig, axes = style.figure(len(groups), 1, width=9.5,
                                 height=(3.8 if len(groups) == 1 else 2.8 * len(groups) + 0.6),
                                 sharex=True)
        for ax, group in zip(axes[:, 0], groups):
            styles = dict(zip([k.what for k in group], ("-", "--", ":", "-.")))
            for kind in group:
                for key, series in sorted(kind.rates.items()):
                    ax.plot(series.index, series.values, marker=".", linestyle=styles[kind.what],
                            color=colour_of[(kind.what, key)], label=kind.name(key))
            if not one_axes:
                ax.set_title(group[0].title, fontsize=9)
            ax.set_ylabel(_per_second([k.word for k in group], divisor, unit))
            style.plain_ticks(ax, "y", divisor)
            top = style.largest(v for k in group for s in k.rates.values() for v in s.values)
            ax.set_ylim(0, 1.08 * top or 1)
            ax.grid(alpha=0.3)
            style.legend_outside(ax)
        axes[-1, 0].set_xlabel("seconds since start")
        fig.suptitle(fig_title + note, fontsize=10)
        return style.save(fig, out)
    whats = list(dict.fromkeys(what for what, _ in entities))
    sizes = [sum(1 for w, _ in entities if w == what) for what in whats]
    rows, cols, cells = style.grouped_grid(sizes, style.small_multiple_cols(len(entities)))
    fig, axes = style.figure(rows, cols, width=3.0 * cols, height=2.1 * rows + 1.0,
                             sharex=True, sharey=True)
    panels, ylabels = [], {}
    for what, group_cells in zip(whats, cells):
        keys = [key for w, key in entities if w == what]
        words = [k.word for k in kinds if k.what == what]
        for key, (row, col) in zip(keys, group_cells):
            ax = axes[row, col]
            panels.append(ax)
            ylabels[row] = _per_second(words, divisor, unit, short=True)
            for kind in kinds:
                series = kind.rates.get(key) if kind.what == what else None
                if series is not None:
                    ax.plot(series.index, series.values, marker=".", markersize=3,
                            color=kind.colour, label=kind.title)
            name = next(k.name(key) for k in kinds if k.what == what)
            ax.set_title(style.shorten(name, 36), fontsize=8)
            style.plain_ticks(ax, "y", divisor)
            ax.tick_params(labelsize=7)
            ax.grid(alpha=0.3)
    style.hide_unused(axes, panels)
    axes[0, 0].set_ylim(0, 1.08 * highest or 1)  # shared: every panel's highest point shows
    style.label_grid(axes, panels, "seconds since start",
                     lambda ax: ylabels[ax.get_subplotspec().rowspan.start])
    style.figure_legend_below(fig, [Line2D([], [], color=k.colour, marker=".") for k in kinds],
                              [k.title for k in kinds])
    fig.suptitle(f"{fig_title}, one panel each{note}", fontsize=10)
    return style.save(fig, out)


# ----------------------------------------------------------------------------- whole-run totals

def _bars(ax: Any, labels: list[str], kind: Kind, colour_of: dict[tuple[str, int], str],
          divisor: float, unit: str) -> None:
    """Per trial (x), one bar per worker, queue or CPU in its own colour; one trial: the
    workers, queues or CPUs are the x axis, with their values written on the bars."""
    data, what = kind.data, kind.what
    keys = sorted({k for d in data for k in d})
    x = np.arange(len(labels))
    if len(labels) == 1:
        values = [data[0].get(k, 0) for k in keys]
        bars = ax.bar(np.arange(len(keys)), values, 0.6, color=kind.colour)
        if len(keys) <= 16:  # more values than that would run into each other
            ax.bar_label(bars, [f"{v / divisor:,.4g}" for v in values], fontsize=7, padding=2)
        else:
            _mark_zeros(ax, bars, values)
        ax.set_xticks(np.arange(len(keys)), [str(k) for k in keys], fontsize=8)
        ax.set_xlabel(f"{what} (trial {style.shorten(labels[0], 40)})")
    else:
        width = 0.8 / max(1, len(keys))
        for i, key in enumerate(keys):
            values = [d.get(key) for d in data]  # None: not in that trial, no bar and no 0
            bars = ax.bar(x + i * width - 0.4 + width / 2, [v or 0 for v in values], width,
                          color=colour_of[(what, key)], label=kind.name(key))
            _mark_zeros(ax, bars, [1 if v is None else v for v in values])
        style.legend_outside(ax)
        ax.set_xticks(x, [style.shorten(label, 32) for label in labels], rotation=30, ha="right",
                      fontsize=7)
        ax.set_xlabel("trial")
    ax.set_ylabel(style.count_label(kind.word, unit))
    style.plain_ticks(ax, "y", divisor)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3, axis="y")


def _totals_figure(fig_title: str, labels: list[str], kinds: list[Kind], out: Path) -> Path:
    """Whole-run counts. One trial, or up to MAX_SERIES series: one panel per kind, stacked
    when there are many trials so the x labels stay readable. Past MAX_SERIES series over
    several trials: one panel per trial, the kinds' bars one after another in the kinds'
    colours. Counts share one unit per figure."""
    divisor, unit = style.unit_for(style.largest(v for k in kinds for d in k.data
                                                 for v in d.values()), style.COUNT_UNITS)
    entities = _entities(kinds, lambda k: {key for d in k.data for key in d})
    if len(labels) > 1 and len(entities) > style.MAX_SERIES:
        return _totals_per_trial(fig_title, labels, kinds, divisor, unit, out)
    colour_of = dict(zip(entities, style.colours(len(entities)))) if len(labels) > 1 else {}
    wide = len(labels) > 4
    rows, cols = (len(kinds), 1) if wide else (1, len(kinds))
    fig, axes = style.figure(rows, cols, width=9 if wide else 4.6 * cols + 1.5,
                             height=(3.4 if wide else 3.8) * rows)
    for ax, kind in zip(axes.flat, kinds):
        _bars(ax, labels, kind, colour_of, divisor, unit)
        ax.set_title(_title(kind.title, kind.data), fontsize=9)
    fig.suptitle(fig_title, fontsize=10)
    return style.save(fig, out)


def _totals_per_trial(fig_title: str, labels: list[str], kinds: list[Kind], divisor: float,
                      unit: str, out: Path) -> Path:
    rows, cols = style.grid_shape(len(labels), 3)
    fig, axes = style.figure(rows, cols, width=4.2 * cols, height=2.6 * rows + 1.0, sharey=True)
    panels = []
    for i, (ax, label) in enumerate(zip(axes.flat, labels)):
        if not any(kind.data[i] for kind in kinds):
            style.no_data(ax, f"{style.shorten(label, 30)}:\nnothing counted")
            continue
        panels.append(ax)
        start, ticks, names, worst = 0, [], [], []
        for kind in kinds:
            values = kind.data[i]
            keys = sorted(values)
            xs = np.arange(start, start + len(keys))
            bars = ax.bar(xs, [values[k] for k in keys], 0.8, color=kind.colour)
            _mark_zeros(ax, bars, [values[k] for k in keys])
            ticks += list(xs)
            names += [str(k) for k in keys]
            start += len(keys) + 1 if keys else 0
            spread = _spread(kind.what, values)
            if spread:
                worst.append(spread)
        step = max(1, len(ticks) // 16)  # at most ~16 tick labels: a readable panel
        ax.set_xticks(ticks[::step], names[::step], fontsize=7)
        ax.set_title(style.shorten(label, 40) + (f"\n{'; '.join(worst)}" if worst else ""),
                     fontsize=8)
        style.plain_ticks(ax, "y", divisor)
        ax.tick_params(axis="y", labelsize=7)
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3, axis="y")
    style.hide_unused(axes, len(labels))  # the no-data panels say so in words
    whats = ", then ".join(dict.fromkeys(f"{k.what}s" for k in kinds))
    style.label_grid(axes, panels, f"{whats} (number)",
                     style.count_label(" or ".join(dict.fromkeys(k.word for k in kinds)), unit))
    for ax in panels:  # every panel has its own keys: x ticks on all of them
        ax.xaxis.set_tick_params(labelbottom=True)
    style.figure_legend_below(fig, [Patch(facecolor=k.colour) for k in kinds],
                              [k.title for k in kinds])
    fig.suptitle(f"{fig_title}, one panel per trial", fontsize=10)
    return style.save(fig, out)


# ----------------------------------------------------------------------------- the figures

def _worker_names(frame: pd.DataFrame, role: str) -> dict[int, str]:
    rows = frame[frame["role"] == role]
    hosts = frame["host"].nunique() if "host" in frame else 1
    names = {}
    for _, r in rows.iterrows():
        where = [f"cpu {int(r['cpu'])}"] if "cpu" in r and pd.notna(r["cpu"]) else []
        if hosts > 1 and pd.notna(r.get("host")):
            where.insert(0, str(r["host"]))
        names[int(r["index"])] = f"{role} {int(r['index'])}" + (f" ({', '.join(where)})" if where else "")
    return names


def workers(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """One trial: each worker's packets/s per sample interval (the whole run's packets in
    its name), receivers and senders; several trials, or a trial without samples: packets per
    worker in each trial. A role no trial has is left out."""
    frames = [_worker_packets(t) for t in trials]
    kinds = []
    for role in ("receiver", "sender"):
        data = [{int(i): float(p) for i, p in zip(f[f["role"] == role]["index"],
                                                  f[f["role"] == role]["packets"])}
                for f in frames]
        if any(data):
            kinds.append(Kind(f"{role}s: packets per worker", role, "packets", data,
                              names=_worker_names(frames[0], role) if len(trials) == 1 else {},
                              colour=ROLE_COLOURS[role]))
    if len(trials) == 1:
        rates = worker_rates(trials[0])
        per_role = {role: {i: s for (r, i), s in rates.items() if r == role}
                    for role in ("receiver", "sender")}
        timed = [Kind(f"{role}s", role, "packets", [], per_role[role],
                      names=_worker_names(frames[0], role), colour=ROLE_COLOURS[role])
                 for role in ("receiver", "sender") if per_role[role]]
        if timed:
            spread = [t for t in (_spread(k.what, k.data[0]) for k in kinds) if t]
            for kind in timed:  # the whole run's packets in each worker's name
                totals = next((k.data[0] for k in kinds if k.what == kind.what), {})
                kind.names = {i: f"{kind.name(i)}: {totals[i]:,.0f} packets" if i in totals
                              else kind.name(i) for i in kind.rates}
            missing = sum(len(k.data[0]) for k in kinds) - sum(len(k.rates) for k in timed)
            notes = [*spread, *([f"{missing} workers without samples left out"] if missing > 0 else [])]
            return _rates_figure(timed, True, f"packets/s per worker, {style.shorten(labels[0], 30)}",
                                 "; ".join(notes), out)
    if not kinds:
        return None
    return _totals_figure("packets per worker, whole run", labels, kinds, out)


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


def _busy(kinds: list[Kind]) -> tuple[list[Kind], str]:
    """The kinds with only the queues and CPUs that did receive work (IDLE_SHARE of the
    busiest of their kind, over every trial), and what was left out, in words."""
    left_out = []
    for what in dict.fromkeys(k.what for k in kinds):
        same = [k for k in kinds if k.what == what]
        work: dict[int, float] = {}
        for kind in same:
            top = style.largest(v for d in kind.data for v in d.values())
            for d in kind.data:
                for key, v in d.items():
                    work[key] = max(work.get(key, 0.0), v / top if top else 0.0)
        idle = {key for key, share in work.items() if share < IDLE_SHARE}
        if idle and len(idle) < len(work):
            left_out.append(f"{len(idle)} idle {what}{'s' if len(idle) > 1 else ''}")
            for kind in same:
                kind.data = [{k: v for k, v in d.items() if k not in idle} for d in kind.data]
                kind.rates = {k: s for k, s in kind.rates.items() if k not in idle}
    return kinds, (" and ".join(left_out) + " left out") if left_out else ""


def queues(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """Per-queue and per-CPU receive work: NIC queue packets (when the driver counts them),
    softnet packets processed per CPU and NET_RX softirqs per CPU; for one trial, their rate
    over the run, for several, whole-run totals per trial. A kind whose counter is missing or
    all zero (veth counts no per-queue packets) is left out; None when all are; queues and
    CPUs with under IDLE_SHARE of the busiest one's work are left out and counted."""
    counters = [t.tables.get("counters") for t in trials]
    found = next((q for q in map(queue_counter, counters) if q), None)
    wanted = [(f"{found[0]} {found[1]} per queue", "queue", "packets", found, "queue")] if found else []
    wanted += [("softnet: packets processed per CPU", "cpu", "packets", ("softnet", "processed"), "cpu"),
               ("NET_RX softirqs per CPU", "cpu", "softirqs", ("softirqs", "NET_RX"), "cpu")]
    kinds = []
    for i, (title, what, word, (source, name), by) in enumerate(wanted):
        data = [counter_totals(c, source, name, by) for c in counters]
        if any(v for d in data for v in d.values()):
            rates = (counter_rates(counters[0], source, name, by, run_end(trials[0]))
                     if len(trials) == 1 else {})
            kinds.append(Kind(title, what, word, data, rates, colour=style.SERIES_COLOURS[i]))
    if not kinds:
        return None
    kinds, left_out = _busy(kinds)
    if len(trials) == 1 and any(k.rates for k in kinds):
        for kind in kinds:  # the whole run's count in each name, the spread in the title
            kind.names = {key: f"{kind.what} {key}: {kind.data[0][key]:,.0f} {kind.word}"
                          for key in kind.rates if key in kind.data[0]}
            kind.title = _title(kind.title, kind.data).replace("worst max/min", "max/min")
        return _rates_figure(kinds, False, "receive work per queue and per CPU, per second",
                             left_out, out)
    return _totals_figure("receive work per queue and per CPU, whole run"
                          + (f" ({left_out})" if left_out else ""), labels, kinds, out)
