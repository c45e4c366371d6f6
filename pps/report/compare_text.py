"""The text of `pps compare`: one table, a row per point and metric, the baseline's value
and a column per current directory (as pyperf's compare_to), then the reason of every
verdict that is not "no change", and the verdict line a CI log shows last."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from pps.experiments.regression_metrics import METRICS
from pps.report.display import duration_ns, rate

COLUMN_GAP = "  "


def value_text(metric: str, value: float | None) -> str:
    """A metric's value in its unit: 360.2 kpps, 0.63%, 254.0 us, 812 ns/pkt."""
    if value is None or not math.isfinite(value):
        return "-"
    unit = METRICS[metric].unit if metric in METRICS else ""
    if unit == "pps":
        return rate(value).strip()
    if unit == "%":
        return f"{value:.3g}%"
    if unit == "ns":
        return duration_ns(int(round(value)))
    if unit == "ns/pkt":
        return f"{value:,.0f} ns/pkt"
    return f"{value:,.4g}"


def change_text(row: dict[str, Any]) -> str:
    """-94.4% [-94.5% .. -94.3%], or +0.52 pt [...] for a metric in percentage points."""
    def one(v: float | None) -> str:
        if v is None:
            return "?"
        return f"{v:+.1f}%" if row.get("relative", True) else f"{v:+.2f} pt"

    if row.get("change_pct") is None:
        return "-"
    ci = "" if row.get("ci_low_pct") is None and row.get("ci_high_pct") is None else \
        f" [{one(row.get('ci_low_pct'))} .. {one(row.get('ci_high_pct'))}]"
    return one(row["change_pct"]) + ci


def verdict_text(row: dict[str, Any]) -> str:
    verdict = row["verdict"]
    shown = verdict.upper() if verdict in ("regression", "improvement") else verdict
    return f"{shown} ({row['test']})" if row.get("test") else shown


def point_text(point: dict[str, Any]) -> str:
    return " ".join(f"{k}={v}" for k, v in point.items()) or "run"


def column_name(path: str, label: str | None) -> str:
    name = Path(path).name or path
    return f"{name} ({label})" if label else name


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header))]
    fmt = lambda r: COLUMN_GAP.join(c.ljust(w) for c, w in zip(r, widths)).rstrip()  # noqa: E731
    return [fmt(header), fmt(["-" * w for w in widths]), *map(fmt, rows)]


def format_text(result: dict[str, Any]) -> str:
    lines = _differences(result)
    if result["refused"]:
        lines.append("refusing to compare runs that differ like this; pass --allow WHAT for a "
                     "difference under test (host.kernel) or --force to compare anyway")
        return "\n".join(lines)
    labels = result["labels"]
    currents = result["currents"]
    cells: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
    for row in result["comparisons"]:
        cells.setdefault((point_text(row["point"]), row["metric"]), {})[row["current"]] = row
    header = ["point", "metric", column_name(result["baseline"], labels.get(result["baseline"]))]
    header += [column_name(c, labels.get(c)) for c in currents]
    body = []
    for (point, metric), by_current in cells.items():
        first = next(iter(by_current.values()))
        line = [point, metric, f"{value_text(metric, first['base_center'])} (n={first['n_base']})"]
        for cur in currents:
            row = by_current.get(cur)
            line.append("-" if row is None else
                        f"{value_text(metric, row['cur_center'])} (n={row['n_cur']})  "
                        f"{change_text(row)}  {verdict_text(row)}")
        body.append(line)
    lines += table(header, body)
    reasons = [f"{column_name(r['current'], labels.get(r['current']))}: {point_text(r['point'])} "
               f"{r['metric']}: {r['verdict']}: {r['reason']}"
               for r in result["comparisons"] if r["verdict"] != "no change"]
    if reasons:
        lines += ["", *reasons]
    lines += _unmatched(result)
    thresholds = ", ".join(f"{name} {_threshold(name, t)}" for name, t in result["thresholds_pct"].items())
    per_dir = "; ".join(f"{column_name(c, labels.get(c))} {result['verdicts'][c]}" for c in currents)
    lines.append(f"verdict: {result['verdict']}" + (f" ({per_dir})" if len(currents) > 1 else "")
                 + f"; thresholds: {thresholds}")
    return "\n".join(lines)


def _threshold(metric: str, t: float | None) -> str:
    if t is None:
        return "off"
    return f"{t:g}%" if METRICS[metric].relative else f"{t:g} pt"


def _differences(result: dict[str, Any]) -> list[str]:
    lines = []
    many = len(result["sides"]) > 1
    for side in result["sides"]:
        where = f"{Path(side['current']).name}: " if many else ""
        for d in side["differences"]:
            prefix = "differs (forced)" if side.get("forced") else "differs"
            lines.append(f"{prefix}: {where}{d['what']}: baseline {d['baseline']!r}, current {d['current']!r}")
        for d in side["allowed"]:
            lines.append(f"differs (allowed): {where}{d['what']}: baseline {d['baseline']!r}, "
                         f"current {d['current']!r}")
        for d in side["notes"]:
            lines.append(f"note: {where}{d['what']}: baseline {d['baseline']!r}, current {d['current']!r}")
    return lines


def _unmatched(result: dict[str, Any]) -> list[str]:
    lines = []
    for side in result["sides"]:
        name = Path(side["current"]).name
        for which in ("baseline", "current"):
            for point in side["unmatched"][which]:
                lines.append(f"only in {which if which == 'baseline' else name}: {point_text(point)}")
            if side["skipped"][which]:
                lines.append(f"{which if which == 'baseline' else name}: "
                             f"{side['skipped'][which]} unfinished trial(s) left out")
    return lines
