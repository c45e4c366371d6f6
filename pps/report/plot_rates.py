"""PNG plots of rates: received and sent packets/s against a sweep parameter, and per run.
Each takes data already read from results directories and a file path, and returns the
path, or None when there is nothing to draw."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pps.report import plot_style as style
from pps.report.display import rate


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
#
# A "kind" is one count drawn per worker, queue or CPU: receivers' packets, senders' packets, a
# NIC's per-queue packets, softnet's packets processed per CPU, NET_RX softirqs per CPU. Its
# keys (worker index, queue, CPU) are the series. One trial: each series' rate over the run;
# several trials: whole-run totals per trial. Up to MAX_SERIES series in a figure, one colour
# each (a CPU keeps its colour in every panel it is in); past that, small multiples, one panel
# per series (one per trial for totals), coloured by kind.
