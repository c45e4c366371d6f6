"""The latency figure: cumulative distributions drawn from the histogram buckets every run
stores (the `latency` table: kind, receiver, low_ns, high_ns, count), on a log time axis.

One panel per kind of latency measured (one-way, and with kernel stamps its stack and app
parts). In a panel: for one trial, one line per receiver and their merge; for up to
MAX_SERIES trials, one line per trial (receivers merged); past that, small multiples, one
panel per trial (or, for one trial of MAX_SERIES receivers or more, the merge and then one
panel per receiver), the kinds in their colours. A bucket's count is put at its upper edge, as the percentiles are, so the
curve never shows latency lower than measured.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from matplotlib.lines import Line2D
from matplotlib.ticker import FuncFormatter, LogLocator

from pps.report import plot_style as style

KIND_TITLES = {"one_way": "one-way (send to receiver's read)", "stack": "stack (send to kernel RX stamp)",
               "app": "app (kernel RX stamp to receiver's read)"}
MERGED = -1   # the table's receiver for every receiver's buckets together
GUIDES = (0.5, 0.99)


def cdf(buckets: pd.DataFrame) -> tuple[np.ndarray, np.ndarray] | None:
    """(latency ns, share of packets at or below it), from one histogram's buckets."""
    buckets = buckets[buckets["count"] > 0].sort_values("low_ns")
    total = buckets["count"].sum()
    if buckets.empty or total <= 0:
        return None
    x = np.concatenate([[max(1, buckets["low_ns"].iloc[0])], buckets["high_ns"].to_numpy()])
    y = np.concatenate([[0.0], buckets["count"].cumsum().to_numpy() / total])
    return x.astype(float), y


def _table(trial: Any) -> pd.DataFrame | None:
    df = trial.tables.get("latency")
    if df is None or df.empty or not {"kind", "receiver", "low_ns", "high_ns", "count"} <= set(df):
        return None
    return df


def _merged(df: pd.DataFrame, kind: str) -> pd.DataFrame:
    rows = df[df["kind"] == kind]
    merged = rows[rows["receiver"] == MERGED]
    if not merged.empty:
        return merged
    return rows.groupby(["low_ns", "high_ns"], as_index=False)["count"].sum()


def _style_axis(ax: Any, kind_title: str, small: bool = False) -> None:
    ax.set_xscale("log")
    # 1-2-5 ticks in a full panel; decades only in a small one, where labels would collide.
    ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0,) if small else (1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(style.duration_tick))
    ax.xaxis.set_minor_formatter(FuncFormatter(lambda *_: ""))
    ax.tick_params(axis="x", labelsize=7, rotation=30)
    ax.set_ylim(0, 1.02)
    ax.yaxis.set_major_formatter(style.PercentFormatter(1.0))
    for share in GUIDES:
        ax.axhline(share, color="grey", linestyle=":", linewidth=0.8)
        ax.text(0.01, share - 0.01, f"p{share * 100:g}", transform=ax.get_yaxis_transform(),
                fontsize=7, va="top", ha="left", color="dimgray")
    if kind_title:
        ax.set_xlabel(f"{kind_title} latency, log scale")
        ax.set_ylabel("packets at or below (%)")
    ax.grid(alpha=0.3, which="major")


def _lines(tables: list[pd.DataFrame], labels: list[str], kind: str) -> list[tuple[str, Any]]:
    """(label, cdf) of each line of a kind's panel."""
    if len(tables) == 1:
        df = tables[0][tables[0]["kind"] == kind]
        receivers = sorted(r for r in df["receiver"].unique() if r != MERGED)
        lines = []
        if 1 < len(receivers) < style.MAX_SERIES:
            lines = [(f"receiver {r}", cdf(df[df["receiver"] == r])) for r in receivers]
        return lines + [("all receivers", cdf(_merged(tables[0], kind)))]
    return [(label, cdf(_merged(df, kind))) for df, label in zip(tables, labels)]


def latency(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    tables, names = [], []
    for trial, label in zip(trials, labels):
        df = _table(trial)
        if df is not None:
            tables.append(df)
            names.append(label)
    if not tables:
        return None
    if len(tables) > style.MAX_SERIES:
        return _small_multiples(tables, names, out,
                                "latency: cumulative distribution per trial, receivers merged")
    if len(tables) == 1:
        receivers = sorted(r for r in tables[0]["receiver"].unique() if r != MERGED)
        if len(receivers) >= style.MAX_SERIES:  # with the merge, more lines than colours
            df = tables[0]
            return _small_multiples(
                [df[df["receiver"] == MERGED] if (df["receiver"] == MERGED).any() else df,
                 *(df[df["receiver"] == r] for r in receivers)],
                [f"{names[0]}: all receivers", *(f"receiver {r}" for r in receivers)], out,
                "latency: cumulative distribution, all receivers then one panel per receiver")
    kinds = [k for k in KIND_TITLES if any((df["kind"] == k).any() for df in tables)]
    fig, axes = style.figure(1, len(kinds), width=5.2 * len(kinds) + 2.2, height=4.2, sharey=True)
    for ax, kind in zip(axes[0], kinds):
        lines = [(label, c) for label, c in _lines(tables, names, kind) if c is not None]
        colours = style.colours(len(lines))
        if len(tables) == 1:
            colours[-1] = "black"  # the merge of every receiver, the headline curve
        for (label, (x, y)), colour in zip(lines, colours):
            ax.plot(x, y, color=colour, label=style.shorten(label, 40), linewidth=1.4)
        _style_axis(ax, KIND_TITLES[kind])
        ax.set_title(KIND_TITLES[kind].split(" (")[0], fontsize=9)
    style.legend_outside(axes[0, -1], title="trial" if len(tables) > 1 else None)
    fig.suptitle("latency: cumulative distribution from the histogram buckets", fontsize=10)
    return style.save(fig, out)


def _small_multiples(tables: list[pd.DataFrame], names: list[str], out: Path,
                     title: str) -> Path | None:
    """One panel per table (a trial, or one receiver of a trial), the kinds in their colours;
    a table without a bucket that counted anything gets no panel."""
    kinds = [k for k in KIND_TITLES if any((df["kind"] == k).any() for df in tables)]
    colours = dict(zip(kinds, style.colours(len(kinds))))
    drawn = [(df, name) for df, name in zip(tables, names)
             if any(cdf(_merged(df, kind)) is not None for kind in kinds)]
    if not drawn:
        return None
    rows, cols = style.grid_shape(len(drawn), style.small_multiple_cols(len(drawn)))
    fig, axes = style.figure(rows, cols, width=3.3 * cols, height=2.6 * rows + 0.8,
                             sharex=True, sharey=True)
    panels = list(axes.flat)[:len(drawn)]
    for ax, (df, name) in zip(panels, drawn):
        for kind in kinds:
            c = cdf(_merged(df, kind))
            if c is not None:
                ax.plot(*c, color=colours[kind], label=kind, linewidth=1.4)
        _style_axis(ax, "", small=True)
        ax.set_title(style.shorten(name, 40), fontsize=8)
    style.hide_unused(axes, len(drawn))
    style.label_grid(axes, panels, "latency, log scale", "packets at or below (%)")
    handles = [Line2D([], [], color=colours[k]) for k in kinds]
    style.figure_legend_below(fig, handles, [KIND_TITLES[k] for k in kinds])
    left_out = len(tables) - len(drawn)
    fig.suptitle(title + (f" ({left_out} without latency buckets left out)" if left_out else ""),
                 fontsize=10)
    return style.save(fig, out)
