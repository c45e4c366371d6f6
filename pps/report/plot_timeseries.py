"""The time series figure: rx packets/s per sample interval and drops/s from the ledger's
counters. Up to MAX_SERIES trials share two panels (rx above, drops below, one colour per
trial); past that, one small panel per trial with rx and drops in the same two colours."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pps.report import plot_style as style

RX_COLOUR, DROP_COLOUR = style.PART_COLOURS["received"], style.PART_COLOURS["udp"]


def _drop_keys(trial: Any) -> set[tuple[str, str]]:
    drops = ((trial.summary.get("ledger") or {}).get("drops") or {})
    keys = [tuple(k.split(".", 1)) for k in drops if "." in k]
    return {(s, n.split("(")[0]) for s, n in keys} | {("socket", "drops")}


def rx_rate(trial: Any) -> pd.Series:
    """Receivers' packets/s per sample time (seconds since go); empty without samples."""
    samples = trial.tables.get("samples")
    if samples is None or not {"t", "role", "pps"} <= set(samples.columns):
        return pd.Series(dtype=float)
    return samples[samples["role"] == "receiver"].groupby("t")["pps"].sum()


def drop_rate(trial: Any) -> pd.Series:
    """Drops/s of the ledger's counters (and socket drops) per counter snapshot."""
    counters = trial.tables.get("counters")
    if counters is None or counters.empty or not {"t", "source", "name", "delta"} <= set(counters):
        return pd.Series(dtype=float)
    # Counters' clock starts just before the go signal, the samples' at go: align on it.
    t0 = counters["t"].min()
    keys = _drop_keys(trial)
    mask = [(s, n) in keys for s, n in zip(counters["source"], counters["name"])]
    rows = counters[mask].dropna(subset=["delta"])
    if rows.empty:
        return pd.Series(dtype=float)
    per_t = rows.groupby("t")["delta"].sum().sort_index()
    dt = per_t.index.to_series().diff().replace(0, np.nan)
    rate = (per_t / dt).dropna()
    rate = rate[dt.dropna() > 0.05]  # back-to-back snapshots at marks say nothing per second
    rate.index = rate.index - t0
    return rate


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
        bottom.set_title("drops per second (the ledger's counters and socket drops)", fontsize=9)
        style.rate_axis(bottom, "drops/s", divisor, unit)
        panels.append(bottom)
    for ax in panels:
        ax.set_ylim(bottom=0)
        ax.grid(alpha=0.3)
    panels[-1].set_xlabel("seconds since start")
    # One legend for both panels: a trial has the same colour in each.
    handles = [top.plot([], [], color=c, marker=".")[0] for c in colours]
    top.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
               frameon=False, borderaxespad=0, title="trial", title_fontsize=8)
    return fig


def _small_multiples(rx: list[pd.Series], drops: list[pd.Series], labels: list[str],
                     divisor: float, unit: str) -> Any:
    rows, cols = style.grid_shape(len(labels), 4)
    fig, axes = style.figure(rows, cols, width=3.2 * cols, height=2.3 * rows + 0.8,
                             sharex=True, sharey=True)
    for ax, r, d, label in zip(axes.flat, rx, drops, labels):
        if r.empty and d.empty:
            style.no_data(ax, f"{style.shorten(label, 30)}:\nno samples or counters")
            continue
        if not r.empty:
            ax.plot(r.index, r.values, marker=".", color=RX_COLOUR, label="rx packets/s")
        if not d.empty:
            ax.plot(d.index, d.values, marker=".", color=DROP_COLOUR, label="drops/s")
        ax.set_title(style.shorten(label, 40), fontsize=8)
        ax.grid(alpha=0.3)
        style.plain_ticks(ax, "y", divisor)
    style.hide_unused(axes, len(labels))
    # Shared y: one limit for all panels, from the highest point of any (none is cut off).
    axes[0, 0].set_ylim(0, 1.08 * max(style.largest(s.values) for s in rx + drops) or 1)
    for ax in axes[:, 0]:
        ax.set_ylabel(f"packets/s ({unit})")
    for ax in axes[-1, :]:
        ax.set_xlabel("seconds since start")
    handles = [ax.plot([], [], color=c, marker=".")[0] for c in (RX_COLOUR, DROP_COLOUR)
               for ax in [axes[0, 0]]]
    style.figure_legend_below(fig, handles, ["rx packets/s", "drops/s (ledger counters)"])
    fig.suptitle("rx rate and drops per sample interval, one panel per trial", fontsize=10)
    return fig
