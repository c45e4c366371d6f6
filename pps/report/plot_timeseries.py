"""The time series figure: rx packets/s per sample interval and drops/s from the ledger's
counters. Up to MAX_SERIES trials share two panels (rx above, drops below, one colour per
trial); past that, one small panel per trial with rx and drops in the same two colours.
Also the rates per worker and per queue or CPU over a run that plots.workers and
plots.queues draw. Time is seconds since go on the samples' clock (`t_s`, or `t` in older
results); counters are put on it, and their snapshots after the last sample left out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.lines import Line2D

from pps.counters.ledger import UDP_PARTS
from pps.report import plot_style as style

RX_COLOUR, DROP_COLOUR = style.PART_COLOURS["received"], style.PART_COLOURS["udp"]


MIN_INTERVAL_S = 0.05   # counter snapshots closer than this (marks) are merged into one interval


def time_column(df: pd.DataFrame | None) -> str | None:
    """The tables' time column, seconds: `t_s`, or `t` in results written before the rename."""
    if df is None:
        return None
    return next((name for name in ("t_s", "t") if name in df.columns), None)


def run_end(trial: Any) -> float | None:
    """The last sample's time (seconds since go): counters after it are the run stopping."""
    samples = trial.tables.get("samples")
    t = time_column(samples)
    return None if t is None or samples.empty else float(samples[t].max())


def rx_rate(trial: Any) -> pd.Series:
    """Receivers' packets/s per sample time (seconds since go); empty without samples."""
    samples = trial.tables.get("samples")
    t = time_column(samples)
    if t is None or not {"role", "pps"} <= set(samples.columns):
        return pd.Series(dtype=float)
    return samples[samples["role"] == "receiver"].groupby(t)["pps"].sum()


def worker_rates(trial: Any) -> dict[tuple[str, int], pd.Series]:
    """Each worker's packets/s per sample time (seconds since go), keyed (role, index),
    receivers first; {} without samples."""
    samples = trial.tables.get("samples")
    t = time_column(samples)
    if t is None or samples.empty or not {"role", "index", "pps"} <= set(samples.columns):
        return {}
    rates = {}
    for (role, index), rows in samples.dropna(subset=["index"]).groupby(["role", "index"]):
        series = rows.groupby(t)["pps"].sum().sort_index().dropna()
        if not series.empty:
            rates[(str(role), int(index))] = series
    return dict(sorted(rates.items(), key=lambda kv: (kv[0][0] != "receiver", kv[0])))


def _interval_rates(deltas: pd.Series, t0: float, until: float | None) -> pd.Series:
    """Per second between counter snapshots, from deltas indexed by snapshot time: snapshots
    closer than MIN_INTERVAL_S (marks) merged into the interval before, none lost; indexed by
    the interval's end on the samples' clock (t - t0); intervals starting after `until` (the
    run had stopped) left out."""
    total = deltas.sort_index().fillna(0).cumsum()
    kept: list[float] = []
    for when in total.index:
        if not kept or when - kept[-1] > MIN_INTERVAL_S:
            kept.append(when)
        elif len(kept) > 1:  # the interval before now ends here (at the start: the next does)
            kept[-1] = when
    at = total.loc[kept]
    starts = at.index.to_series().shift(1)
    rate = (at.diff() / (at.index.to_series() - starts)).dropna()
    if until is not None:
        rate = rate[(starts.loc[rate.index] - t0) < until - MIN_INTERVAL_S]
    rate.index = rate.index - t0
    return rate.astype(float)


def counter_rates(counters: pd.DataFrame | None, source: str, name: str, by: str,
                  until: float | None = None) -> dict[int, pd.Series]:
    """Per queue or CPU (`by`), one counter's rate per second between snapshots, on the
    samples' clock; resets count nothing."""
    t = time_column(counters)
    if t is None or counters.empty or not {"source", "name", "delta", by} <= set(counters.columns):
        return {}
    # Counters' clock starts just before the go signal, the samples' at go: align on it.
    t0 = float(counters[t].min())
    rows = counters[(counters["source"] == source) & (counters["name"] == name)
                    & counters[by].notna()]
    if "reset" in rows:
        rows = rows.assign(delta=rows["delta"].where(~rows["reset"].astype(bool)))
    rates = {}
    for key, g in rows.groupby(by):
        rate = _interval_rates(g.groupby(t)["delta"].sum(min_count=1), t0, until)
        if not rate.empty:
            rates[int(key)] = rate
    return rates


def drop_weights(trial: Any) -> dict[tuple[str, str], int]:
    """(source, counter) -> +1 or -1: the ledger's counted drop counters, each packet once.
    "UdpInErrors(other)" is InErrors less its parts, the parts being counted on their own:
    together, InErrors. A socket's drops repeat its RcvbufErrors: taken only when the ledger
    names no counter (results from before it)."""
    drops = ((trial.summary.get("ledger") or {}).get("drops") or {})
    weights: dict[tuple[str, str], int] = {}
    for key in drops:
        if "." not in key:
            continue
        source, name = key.split(".", 1)
        if name.endswith("(other)"):
            whole = name[:-len("(other)")]
            weights[(source, whole)] = weights.get((source, whole), 0) + 1
            prefix = whole[:-len("InErrors")] if whole.endswith("InErrors") else ""
            for part in UDP_PARTS:
                weights[(source, prefix + part)] = weights.get((source, prefix + part), 0) - 1
        else:
            weights[(source, name)] = weights.get((source, name), 0) + 1
    weights = {k: w for k, w in weights.items() if w}
    return weights or {("socket", "drops"): 1}


def drop_rate(trial: Any) -> pd.Series:
    """Drops/s of the ledger's counters per counter snapshot, each drop counted once (as the
    ledger counts it), over the run (see run_end)."""
    counters = trial.tables.get("counters")
    t = time_column(counters)
    if t is None or counters.empty or not {"source", "name", "delta"} <= set(counters):
        return pd.Series(dtype=float)
    t0 = float(counters[t].min())
    weights = drop_weights(trial)
    weight = pd.Series([weights.get((s, n), 0) for s, n in zip(counters["source"], counters["name"])],
                       index=counters.index)
    rows = counters[weight != 0]
    if "reset" in rows:
        rows = rows.assign(delta=rows["delta"].where(~rows["reset"].astype(bool)))
    if rows.empty:
        return pd.Series(dtype=float)
    # The first snapshot's delta is empty: it is where the first interval starts.
    deltas = (rows["delta"].fillna(0) * weight[rows.index]).groupby(rows[t]).sum()
    return _interval_rates(deltas, t0, run_end(trial)).clip(lower=0)


def timeseries(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """rx pps per sample interval and drops per second from the counters' deltas."""
    rx = [rx_rate(t) for t in trials]
    drops = [drop_rate(t) for t in trials]
    if all(r.empty for r in rx) and all(d.empty for d in drops):
        return None
    divisor, unit = style.unit_for(style.largest([v for s in rx + drops for v in s.values]))
    if len(trials) <= style.MAX_SERIES:
        fig = _shared_panels(rx, drops, labels, divisor, unit)
    else:
        fig = _small_multiples(rx, drops, labels, divisor, unit)
    return style.save(fig, out)


def _shared_panels(rx: list[pd.Series], drops: list[pd.Series], labels: list[str],
                   divisor: float, unit: str) -> Any:
    any_drops = any(not d.empty for d in drops)
    fig, axes = style.figure(2 if any_drops else 1, 1, width=9, height=6 if any_drops else 3.6,
                             sharex=True)
    top = axes[0, 0]
    colours = style.colours(len(labels))
    for series, label, colour in zip(rx, labels, colours):
        if not series.empty:
            top.plot(series.index, series.values, marker=".", color=colour, label=label)
    if all(r.empty for r in rx):
        top.text(0.5, 0.5, "no rx samples (runs shorter than one sample interval)",
                 ha="center", va="center", transform=top.transAxes, color="dimgray")
    top.set_title("rx rate per sample interval", fontsize=9)
    style.rate_axis(top, "rx packets/s", divisor, unit)
    panels = [top]
    if any_drops:
        bottom = axes[1, 0]
        for series, label, colour in zip(drops, labels, colours):
            if not series.empty:
                bottom.plot(series.index, series.values, marker=".", color=colour, label=label)
        bottom.set_title("drops per second (the ledger's drop counters, each drop once)", fontsize=9)
        style.rate_axis(bottom, "drops/s", divisor, unit)
        panels.append(bottom)
    for ax, series in zip(panels, (rx, drops)):
        ax.set_ylim(0, 1.08 * style.largest(v for s in series for v in s.values) or 1)
        ax.grid(alpha=0.3)
    panels[-1].set_xlabel("seconds since start")
    # One legend for both panels: a trial has the same colour in each.
    handles = [Line2D([], [], color=c, marker=".") for c in colours]
    top.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
               frameon=False, borderaxespad=0, title="trial", title_fontsize=8)
    return fig


def _small_multiples(rx: list[pd.Series], drops: list[pd.Series], labels: list[str],
                     divisor: float, unit: str) -> Any:
    rows, cols = style.grid_shape(len(labels), 4)
    fig, axes = style.figure(rows, cols, width=3.2 * cols, height=2.3 * rows + 0.8,
                             sharex=True, sharey=True)
    panels = []
    for ax, r, d, label in zip(axes.flat, rx, drops, labels):
        if r.empty and d.empty:
            style.no_data(ax, f"{style.shorten(label, 30)}:\nno samples or counters")
            continue
        panels.append(ax)
        ax.set_title(style.shorten(label, 40), fontsize=8)
        if not r.empty:
            ax.plot(r.index, r.values, marker=".", color=RX_COLOUR, label="rx packets/s")
        if not d.empty:
            ax.plot(d.index, d.values, marker=".", color=DROP_COLOUR, label="drops/s")
        ax.grid(alpha=0.3)
        style.plain_ticks(ax, "y", divisor)
    style.hide_unused(axes, len(labels))
    # Shared y: one limit for all panels, from the highest point of any (none is cut off).
    axes[0, 0].set_ylim(0, 1.08 * max(style.largest(s.values) for s in rx + drops) or 1)
    style.label_grid(axes, panels, "seconds since start", f"packets/s ({unit})", fontsize=10)
    handles = [Line2D([], [], color=c, marker=".") for c in (RX_COLOUR, DROP_COLOUR)]
    style.figure_legend_below(fig, handles, ["rx packets/s", "drops/s (ledger counters)"])
    fig.suptitle("rx rate and drops per sample interval, one panel per trial", fontsize=10)
    return fig
