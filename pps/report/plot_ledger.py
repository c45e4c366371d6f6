"""The ledger figure, read as "where did the packets go": one horizontal bar per trial, the
whole bar being the packets sent: received first, then each drop layer, then the unaccounted
rest. Parts wide enough carry their share inside; every part that is not zero is also
written out beside the bar with its count, since a 0.01% drop is a sliver no eye finds."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from matplotlib.patches import Patch

from pps.report import plot_style as style

PARTS = ("received", *style.LAYERS, "unaccounted")
INSIDE_LABEL_MIN = 0.08   # share of the bar a part needs to hold its own label


def ledger_rows(trials: list[Any], labels: list[str]) -> list[dict[str, Any]]:
    """Per trial with a ledger: label, sent, and each part's packet count. Unaccounted is
    below zero when counters saw more drops than packets went missing (host-wide counters)."""
    rows = []
    for trial, label in zip(trials, labels):
        led = trial.summary.get("ledger") or {}
        sent = led.get("sent") or trial.summary.get("sent")
        if not led or not sent:
            continue
        layers = led.get("layers") or {}
        rows.append({"label": label, "sent": sent, "received": led.get("received") or 0,
                     **{layer: layers.get(layer) or 0 for layer in style.LAYERS},
                     "unaccounted": led.get("unaccounted") or 0})
    return rows


def _describe(row: dict[str, Any]) -> str:
    parts = [f"{part} {row[part]:,} ({row[part] / row['sent']:.2%})"
             for part in PARTS if row[part]]
    return f"sent {row['sent']:,}: " + ", ".join(parts)


def ledger(trials: list[Any], labels: list[str], out: Path) -> Path | None:
    """One stacked horizontal bar per trial, as a share of the packets sent."""
    rows = ledger_rows(trials, labels)
    if not rows:
        return None
    fig, axes = style.figure(width=10, height=1.4 + 0.75 * len(rows))
    ax = axes[0, 0]
    for y, row in enumerate(rows):
        left = 0.0
        for part in PARTS:
            share = row[part] / row["sent"]
            if share <= 0:
                continue  # below zero is over-counting, said in the text, not drawn
            ax.barh(y, share, left=left, height=0.55, color=style.PART_COLOURS[part],
                    hatch="//" if part == "unaccounted" else None, edgecolor="white", linewidth=0.5)
            if share >= INSIDE_LABEL_MIN:
                ax.text(left + share / 2, y, f"{part}\n{share:.1%}", ha="center", va="center",
                        fontsize=7, color="white" if part != "unaccounted" else "black")
            left += share
        ax.text(0, y + 0.31, style.shorten(_describe(row), 150), fontsize=7, va="top",
                color="black")
        if row["unaccounted"] < 0:
            ax.text(1.0, y - 0.31, f"counters saw {-row['unaccounted']:,} more drops than packets "
                    "went missing (shared counters)", fontsize=7, va="top", ha="right",
                    color="dimgray")
    ax.set_yticks(range(len(rows)), [style.shorten(r["label"], 40) for r in rows], fontsize=8)
    ax.set_ylim(len(rows) - 0.3, -0.6)  # first trial on top, room for its text line
    ax.set_xlim(0, max(1.0, *(sum(max(0, r[p]) for p in PARTS) / r["sent"] for r in rows)))
    ax.xaxis.set_major_formatter(style.PercentFormatter(1.0))
    ax.set_xlabel("share of the packets the senders handed to the kernel (%)")
    ax.set_ylabel("trial")
    ax.set_title("drop ledger: where did the packets go?", fontsize=10)
    present = [p for p in PARTS if any(r[p] > 0 for r in rows)]
    handles = [Patch(facecolor=style.PART_COLOURS[p], hatch="//" if p == "unaccounted" else None,
                     edgecolor="white", label=p) for p in present]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8,
              frameon=False, title="part", title_fontsize=8, borderaxespad=0)
    return style.save(fig, out)
