"""The rules every pps figure follows, in one place, so a reader trusts them at a glance:
axes labelled with units; one rate unit per figure (pps, kpps or Mpps, by magnitude) written
in the axis label, never as offset text; colours that do not repeat within a figure (past
MAX_SERIES series, callers switch to small multiples); legends outside the data; panels with
nothing in them left out or saying so in words; titles never cut (saved with a tight box).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")  # before pyplot: reports run on headless CI hosts
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.ticker import FuncFormatter, PercentFormatter  # noqa: E402

from pps.counters.ledger import LAYERS  # noqa: E402

MAX_SERIES = 8   # more lines than this in one axis stop being told apart: small multiples
DPI = 96
# Eight colours a reader tells apart (tab10 less its grey and olive, kept for "other" parts).
SERIES_COLOURS = ("tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown",
                  "tab:pink", "tab:cyan")
# One colour per ledger part in every figure, so "udp" is the same colour everywhere. Received
# is a calm blue; drops are warm or strong; unaccounted is grey (hatched).
PART_COLOURS = {"received": "#4c78a8", "send": "#f58518", "nic": "#e45756", "xdp": "#72b7b2",
                "backlog": "#b279a2",
                "ip": "#9d755d", "udp": "#d62728", "unaccounted": "#bab0ac"}

__all__ = ["plt", "PercentFormatter", "LAYERS"]


def colours(n: int) -> list[str]:
    """n distinct colours; more than MAX_SERIES is the caller's bug (use small multiples)."""
    if n > len(SERIES_COLOURS):
        raise ValueError(f"{n} series in one axis: draw small multiples instead")
    return list(SERIES_COLOURS[:n])


# ----------------------------------------------------------------------------- units

RATE_UNITS = ((1e6, "Mpps"), (1e3, "kpps"), (1.0, "pps"))
COUNT_UNITS = ((1e6, "millions"), (1e3, "thousands"), (1.0, ""))  # "packets (thousands)"


def unit_for(largest: float, units: tuple[tuple[float, str], ...] = RATE_UNITS) -> tuple[float, str]:
    """(divisor, name) of the unit that shows `largest` with 1 to 3 digits before the point."""
    largest = abs(largest) if largest is not None and math.isfinite(largest) else 0.0
    for divisor, name in units:
        if largest >= divisor:
            return divisor, name
    return units[-1]


def largest(values: Iterable[Any]) -> float:
    finite = [abs(float(v)) for v in values if v is not None and math.isfinite(float(v))]
    return max(finite, default=0.0)


def plain_ticks(ax: Any, axis: str = "y", divisor: float = 1.0) -> None:
    """Tick labels as plain numbers in the axis label's unit: no "1e6" offset, no "M"."""
    formatter = FuncFormatter(lambda v, _: f"{v / divisor:,.4g}")
    (ax.yaxis if axis == "y" else ax.xaxis).set_major_formatter(formatter)


def count_label(what: str, unit: str) -> str:
    return f"{what} ({unit})" if unit else what


def rate_axis(ax: Any, what: str, divisor: float, unit: str, axis: str = "y") -> None:
    """Label an axis "<what> (<unit>)" and tick it in that unit."""
    plain_ticks(ax, axis, divisor)
    (ax.set_ylabel if axis == "y" else ax.set_xlabel)(f"{what} ({unit})")


def duration_tick(ns: float, _: Any = None) -> str:
    """A latency tick with its own unit: 500 ns, 20 us, 3 ms, 1.5 s."""
    for divisor, name in ((1e9, "s"), (1e6, "ms"), (1e3, "µs")):
        if ns >= divisor:
            return f"{ns / divisor:g} {name}"
    return f"{ns:g} ns"


# ----------------------------------------------------------------------------- layout

def figure(rows: int = 1, cols: int = 1, *, width: float = 7.5, height: float = 4.0,
           **kwargs: Any) -> tuple[Any, Any]:
    """A figure with constrained layout (titles and labels are never cut) and a 2-D array of
    axes; width and height are of the whole figure in inches."""
    fig, axes = plt.subplots(rows, cols, figsize=(width, height), squeeze=False,
                             layout="constrained", **kwargs)
    return fig, axes


def grid_shape(n: int, max_cols: int = 4) -> tuple[int, int]:
    cols = min(max_cols, n)
    return math.ceil(n / cols), cols


def legend_outside(ax: Any, title: str | None = None, **kwargs: Any) -> None:
    """The legend to the right of the axis, never over the data; nothing when unlabeled."""
    handles, labels = ax.get_legend_handles_labels()
    if labels:
        ax.legend(handles, labels, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
                  title=title, title_fontsize=8, frameon=False, borderaxespad=0, **kwargs)


def figure_legend_below(fig: Any, handles: list[Any], labels: list[str], ncol: int = 4) -> None:
    """One legend for a figure of small multiples, below every panel."""
    if labels:
        fig.legend(handles, labels, loc="outside lower center", ncol=min(ncol, len(labels)),
                   fontsize=8, frameon=False)


def no_data(ax: Any, text: str) -> None:
    """Say in words that a panel has nothing to show, rather than draw an empty axis."""
    ax.set_axis_off()
    ax.text(0.5, 0.5, text, ha="center", va="center", fontsize=9, color="dimgray",
            transform=ax.transAxes, wrap=True)


def hide_unused(axes: Any, used: int | Iterable[Any]) -> None:
    """Small-multiple grids have cells past the last panel: leave them blank, not empty axes.
    `used` is how many panels come first in reading order, or the axes that hold panels."""
    keep = list(axes.flat)[:used] if isinstance(used, int) else list(used)
    for ax in axes.flat:
        if not any(ax is k for k in keep):
            ax.set_axis_off()


def grouped_grid(sizes: list[int], max_cols: int = 4) -> tuple[int, int, list[list[tuple[int, int]]]]:
    """Rows and columns of a small-multiple grid whose groups (receivers, then senders; queues,
    then CPUs) each start on a row of their own, and each group's (row, col) cells."""
    sizes = [n for n in sizes if n > 0]
    cols = min(max_cols, max(sizes, default=1))
    cells, row = [], 0
    for n in sizes:
        cells.append([(row + i // cols, i % cols) for i in range(n)])
        row += math.ceil(n / cols)
    return max(row, 1), cols, cells


def small_multiple_cols(n: int) -> int:
    """Columns for n panels: four, up to six when there are many (the figure stays tall,
    not endless)."""
    return 4 if n <= 24 else 6


def label_grid(axes: Any, panels: list[Any], xlabel: str, ylabel: str | Callable[[Any], str],
               fontsize: float = 8) -> None:
    """Axis labels of a small-multiple grid with shared axes: the y label (or ylabel(panel),
    when rows show different things) on the first panel of each row, the x label (and x tick
    labels, which sharing hides above a blank cell) on the lowest panel of each column."""
    lowest: dict[int, Any] = {}
    first: dict[int, Any] = {}
    for ax in panels:
        spec = ax.get_subplotspec()
        row, col = spec.rowspan.start, spec.colspan.start
        if col not in lowest or row > lowest[col].get_subplotspec().rowspan.start:
            lowest[col] = ax
        if row not in first or col < first[row].get_subplotspec().colspan.start:
            first[row] = ax
    for ax in lowest.values():
        ax.set_xlabel(xlabel, fontsize=fontsize)
        ax.xaxis.set_tick_params(which="both", labelbottom=True)
    for ax in first.values():
        ax.set_ylabel(ylabel(ax) if callable(ylabel) else ylabel, fontsize=fontsize)
        ax.yaxis.set_tick_params(which="both", labelleft=True)


def value_text(value: Any) -> str:
    """A swept value as given: 64, not the 64.0 a column holding some NaN turns it into."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def shorten(text: str, limit: int = 40) -> str:
    return text if len(text) <= limit else text[:limit - 1] + "…"


def save(fig: Any, out: Path) -> Path:
    fig.savefig(out, dpi=DPI, bbox_inches="tight", pad_inches=0.15)
    plt.close(fig)
    return out
