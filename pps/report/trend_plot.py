"""PNG plots for regression work: the trend of a history, and the trial ladder of a search.
Like plots.py: data already read in, a file path out, None when there is nothing to draw."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd
from matplotlib.lines import Line2D

from pps.experiments.regression_metrics import Metric
from pps.report import plot_style as style

MAX_LABEL = 22   # characters of a run.label shown under its point
VERDICT_MARKS = {"regression": ("tab:red", "regression"), "improvement": ("tab:green", "improvement")}
# Sweep points' colours: never the verdicts' red or green.
TREND_COLOURS = tuple(c for c in style.SERIES_COLOURS if c not in ("tab:red", "tab:green"))


def _tick(row: pd.Series) -> str:
    """date / kernel / label under each point, the three things a reader looks for."""
    label = str(row["label"]) if isinstance(row["label"], str) else ""
    if len(label) > MAX_LABEL:
        label = label[:MAX_LABEL - 1] + "…"
    parts = [str(row["date"] or f"#{row['position']}"), str(row["kernel"] or "?"), label]
    return "\n".join(p for p in parts if p)


def _scale(metric: Metric, rows: pd.DataFrame) -> tuple[float, str]:
    """The panel's unit, by the magnitude of what it shows (pps, kpps or Mpps; ns, us, ms)."""
    top = style.largest(rows["high"].fillna(rows["center"]).astype(float))
    if metric.unit == "pps":
        return style.unit_for(top)
    if metric.unit == "ns":
        return style.unit_for(top, ((1e6, "ms"), (1e3, "µs"), (1.0, "ns")))
    return 1.0, metric.unit


def _draw_point(ax: Any, g: pd.DataFrame, divide: float, colour: str, label: str | None,
                marked: set[str]) -> None:
    """One sweep point's history: centers with low..high bars, verdicts ringed."""
    y = g["center"].astype(float) / divide
    low = (g["center"] - g["low"].fillna(g["center"])).astype(float).clip(lower=0) / divide
    high = (g["high"].fillna(g["center"]) - g["center"]).astype(float).clip(lower=0) / divide
    ax.errorbar(g["position"], y, yerr=[low, high], marker="o", capsize=3, color=colour,
                label=label)
    for verdict, (ring, name) in VERDICT_MARKS.items():
        hit = g[g["verdict"] == verdict]
        if not hit.empty:
            ax.scatter(hit["position"], hit["center"].astype(float) / divide, s=160,
                       facecolors="none", edgecolors=ring, linewidths=2, zorder=5,
                       label=None if name in marked else name)
            marked.add(name)


def _metric_axis(ax: Any, metric: Metric, rows: pd.DataFrame, divide: float, unit: str,
                 small: bool = False) -> None:
    ax.set_ylabel(f"{metric.title} ({unit})" if unit else metric.title, fontsize=8)
    style.plain_ticks(ax, "y")
    ax.grid(alpha=0.3)
    top = (rows["high"].fillna(rows["center"]).astype(float) / divide).max()
    ax.set_ylim(bottom=0, top=top * 1.15 if math.isfinite(top) and top > 0 else 1)
    if small:
        ax.tick_params(labelsize=7)


def trend(table: pd.DataFrame, metrics: list[Metric], out: Path) -> Path | None:
    """One panel per metric: each point's center with its low..high range (repetitions, or a
    search's bracket), one line per sweep point, regressions ringed red, improvements green.
    A sweep point keeps its colour in every panel, and no point takes red or green; past
    TREND_COLOURS points, small multiples: a panel per metric and point."""
    shown = [m for m in metrics if not table[(table["metric"] == m.name) & table["center"].notna()].empty]
    if not shown:
        return None
    positions = table.drop_duplicates("position").sort_values("position")
    points = list(dict.fromkeys(table[table["center"].notna()]["point"]))
    if len(points) > len(TREND_COLOURS):
        return _trend_multiples(table, shown, points, positions, out)
    colour_of = dict(zip(points, TREND_COLOURS))
    width = max(7.0, 1.1 * len(positions) + 2.5)
    fig, axes = style.figure(len(shown), 1, width=width + 2, height=2.3 * len(shown) + 1.2,
                             sharex=True)
    marked: set[str] = set()
    for ax, metric in zip(axes[:, 0], shown):
        rows = table[(table["metric"] == metric.name) & table["center"].notna()]
        divide, unit = _scale(metric, rows)
        for point, g in rows.groupby("point", sort=False):
            _draw_point(ax, g, divide, colour_of[point], point if len(points) > 1 else None, marked)
        better = "higher is better" if metric.higher_is_better else "lower is better"
        ax.set_title(f"{metric.title} ({better})", fontsize=9, loc="left")
        _metric_axis(ax, metric, rows, divide, unit)
        style.legend_outside(ax)
    bottom = axes[-1, 0]
    xs = positions["position"].tolist()
    bottom.set_xticks(xs, [_tick(r) for _, r in positions.iterrows()], fontsize=7)
    bottom.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
    bottom.set_xlabel("run in the history (date, kernel, label)", fontsize=8)
    fig.suptitle("pps history: each point against the points before it", fontsize=10)
    return style.save(fig, out)


def _trend_multiples(table: pd.DataFrame, shown: list[Metric], points: list[Any],
                     positions: pd.DataFrame, out: Path) -> Path:
    """A row group per metric, a panel per sweep point in it; one colour, verdicts ringed.
    Panels of one metric share their y axis, every panel the x axis (run positions)."""
    cols = style.small_multiple_cols(len(points))
    rows_n, cols, cells = style.grouped_grid([len(points)] * len(shown), cols)
    fig, axes = style.figure(rows_n, cols, width=3.2 * cols, height=2.2 * rows_n + 1.2,
                             sharex=True)
    panels, marked, ylabels = [], set(), {}
    for metric, group_cells in zip(shown, cells):
        rows = table[(table["metric"] == metric.name) & table["center"].notna()]
        divide, unit = _scale(metric, rows)
        first = None
        for point, (row, col) in zip(points, group_cells):
            g = rows[rows["point"] == point]
            ax = axes[row, col]
            if g.empty:
                style.no_data(ax, f"{metric.title}, {style.shorten(str(point), 30)}:\nnot measured")
                continue
            if first is None:
                first = ax
            else:
                ax.sharey(first)
            panels.append(ax)
            _draw_point(ax, g, divide, style.SERIES_COLOURS[0], None, marked)
            ax.set_title(f"{metric.title}: {style.shorten(str(point), 34)}", fontsize=8)
            _metric_axis(ax, metric, rows, divide, unit, small=True)
            ax.set_ylabel("")
            ylabels[row] = f"{metric.title} ({unit})" if unit else metric.title
    style.hide_unused(axes, panels)
    xs = positions["position"].tolist()
    for ax in panels:
        ax.set_xticks(xs, [str(x) for x in xs])
        ax.set_xlim(min(xs) - 0.5, max(xs) + 0.5)
        ax.yaxis.set_tick_params(labelleft=False)  # a metric's panels share y: ticks on the left
    style.label_grid(axes, panels, "run in the history (position, as in the table)",
                     lambda ax: ylabels[ax.get_subplotspec().rowspan.start])
    handles = [Line2D([], [], color=style.SERIES_COLOURS[0], marker="o")]
    labels = ["center, bars low..high"]
    for ring, name in VERDICT_MARKS.values():
        if name in marked:
            handles.append(Line2D([], [], linestyle="none", marker="o", markersize=11,
                                  markerfacecolor="none", markeredgecolor=ring, markeredgewidth=2))
            labels.append(name)
    style.figure_legend_below(fig, handles, labels)
    better = "; ".join(f"{m.title}: {'higher' if m.higher_is_better else 'lower'} is better"
                       for m in shown)
    fig.suptitle(f"pps history, one panel per metric and sweep point ({better})", fontsize=10)
    return style.save(fig, out)


def search_ladder(trials: list[dict[str, Any]], ndr: dict[str, Any], pdr: dict[str, Any],
                  bound_pct: float | None, title: str, out: Path) -> Path | None:
    """The search's trials in the order they ran: offered rate (marker by what the trial
    showed: no loss, loss within the PDR bound, more), rx rate, and the NDR and PDR found."""
    rows = [t for t in trials if isinstance(t.get("offered"), (int, float))]
    if not rows:
        return None
    fig, axes = style.figure(width=max(6.0, 0.45 * len(rows) + 3) + 2.5, height=4.2)
    ax = axes[0, 0]
    divisor, unit = style.unit_for(style.largest(
        [t["offered"] or t.get("tx_pps") or 0 for t in rows] + [t.get("rx_pps") or 0 for t in rows]))
    bound = (bound_pct or 0.0) / 100
    kinds = (("no loss", "tab:green", "o", lambda t: (t.get("loss_ratio") or 0) == 0),
             ("loss within PDR bound", "tab:orange", "s",
              lambda t: 0 < (t.get("loss_ratio") or 0) <= bound),
             ("loss over the bound", "tab:red", "X", lambda t: (t.get("loss_ratio") or 0) > bound))
    xs = list(range(len(rows)))
    offered = [t["offered"] or t.get("tx_pps") or 0 for t in rows]
    ax.plot(xs, offered, color="grey", linewidth=0.8, alpha=0.6)
    for name, colour, marker, test in kinds:
        pick = [i for i, t in enumerate(rows) if test(t) and t.get("used", True) is not False]
        if pick:
            ax.scatter(pick, [offered[i] for i in pick], color=colour, marker=marker, s=50,
                       label=f"offered: {name}", zorder=3)
    unused = [i for i, t in enumerate(rows) if t.get("used", True) is False]
    if unused:
        ax.scatter(unused, [offered[i] for i in unused], facecolors="none", edgecolors="black",
                   s=60, label="not used (repeated)", zorder=3)
    ax.plot(xs, [t.get("rx_pps") or 0 for t in rows], linestyle=":", color="tab:blue", label="rx pps")
    for found, name, dashes in ((ndr, "NDR", "--"), (pdr, "PDR", "-.")):
        if found.get("rate"):
            ax.axhline(found["rate"], linestyle=dashes, color="black", linewidth=1,
                       label=f"{name} {found['rate'] / divisor:,.4g} {unit}")
    ax.set_xticks(xs, [f"{i}\n{(t.get('phase') or '')[:6]}" for i, t in enumerate(rows)], fontsize=7)
    ax.set_xlabel("trial (phase)")
    style.rate_axis(ax, "packets/s", divisor, unit)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
    style.legend_outside(ax)
    return style.save(fig, out)
