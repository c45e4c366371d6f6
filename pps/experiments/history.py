"""`pps history`: the trend of a series of results directories (nightly runs, sweeps or
searches), each point judged against the points before it.

Points are ordered by their recorded start time (the earliest trial's `started_at`), or as
given. Each metric at each sweep point gets a verdict against the WINDOW points before it
that were not regressions themselves, so a regression keeps failing until it is fixed
rather than becoming the new normal the night after:

- 4 or more earlier points: their centers (median of each point's repetitions) are the
  baseline sample and this point's center is tested against them (Student's t with one
  value on a side: is it outside the spread they predict?); nights, not repetitions, are
  the unit then, since night-to-night noise is what a gate meets;
- 1 to 3 earlier points: too few nights to know their spread, so their repetitions
  together against this point's, as `pps compare` of them would (with one repetition a
  point, the two rules are the same);
- searches: the rates found by the earlier searches against this one's (one earlier
  search: the two brackets, as `pps compare`);
- none: no verdict.

The kernel and NIC driver may change along a series (that is often what it tracks); any
other difference `pps compare` refuses is refused here too, unless forced.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pps.errors import ConfigError
from pps.experiments.compare import Side, compare_metric, differences, load_side, split_allowed
from pps.experiments.regression_metrics import BRACKET_METRICS, METRICS, Metric, parse_thresholds
from pps.experiments.stats_compare import ALPHA, Comparison, compare_samples
from pps.report.compare_text import point_text
from pps.results.safe_io import shown

DEFAULT_WINDOW = 5
CENTERS_FROM = 4   # earlier points from which their centers, not repetitions, are the sample
ALLOWED_IN_A_SERIES = ("host.kernel", "nic.*.driver")


@dataclass
class History:
    sides: list[Side]
    table: pd.DataFrame          # one row per point, sweep point and metric
    first_regression: dict[str, Any] | None
    newest: dict[str, Any]       # the last point: its path and the metrics that regressed
    notes: list[str] = field(default_factory=list)

    @property
    def newest_regressed(self) -> bool:
        return bool(self.newest["regressions"])


def build_history(paths: list[Path | str], thresholds: dict[str, float] | None = None,
                  window: int = DEFAULT_WINDOW, force: bool = False, keep_order: bool = False,
                  alpha: float = ALPHA) -> History:
    if window < 1:
        raise ConfigError(f"--window {window}: use 1 or more earlier points")
    thresholds = thresholds or parse_thresholds([])
    sides = [load_side(p) for p in paths]
    if not keep_order:  # stable: points without a start time keep their place among equals
        sides.sort(key=lambda s: (s.started_at is None, s.started_at or 0.0))
    notes = _check_series(sides, force)
    rows: list[dict[str, Any]] = []
    for metric in sides[0].metrics:
        for key in _point_keys(sides):
            rows += _series(sides, key, metric, thresholds[metric.name], window, alpha)
    table = pd.DataFrame(rows, columns=COLUMNS)
    table = table.sort_values(["position", "point", "metric"], kind="stable")
    return History(sides, table.reset_index(drop=True), _first_regression(table),
                   _newest(table, sides), notes)


COLUMNS = ["position", "source", "label", "kernel", "git_revision", "started_at", "date", "kind",
           "point", "metric", "n", "center", "low", "high", "verdict", "test", "change_pct",
           "ci_low_pct", "ci_high_pct", "p_value", "against", "reason"]


def _check_series(sides: list[Side], force: bool) -> list[str]:
    first, notes = sides[0], []
    for side in sides[1:]:
        if side.kind != first.kind:
            raise ConfigError(f"{shown(side.path)}: a {side.kind} among {first.kind} results; "
                              "a history holds one kind")
        blocking, _ = differences(first, side)
        blocking, _ = split_allowed(blocking, list(ALLOWED_IN_A_SERIES))
        if blocking and not force:
            what = ", ".join(f"{d['what']} {d['baseline']!r} -> {d['current']!r}" for d in blocking)
            raise ConfigError(f"{shown(side.path)} differs from {shown(first.path)}: {what}; "
                              "pass --force to make a history of them anyway")
        if blocking:
            notes.append(f"{side.path}: differs (forced): " + ", ".join(d["what"] for d in blocking))
    return notes


def _point_keys(sides: list[Side]) -> list[str]:
    keys: list[str] = []
    for side in sides:
        keys += [k for k in side.points if k not in keys]
    return keys


def _center(side: Side, key: str, metric: Metric) -> tuple[int, float | None, float | None, float | None]:
    """(n, center, low, high) of one point: the median and range of its repetitions, or a
    search's rate with its bracket [found, failing)."""
    if metric.name in BRACKET_METRICS:
        lo, hi = side.search.bracket(metric.name.split("_")[0])
        return (0 if lo is None else 1), lo, lo, hi
    values = [v for v in side.values.get(key, {}).get(metric.name, []) if math.isfinite(v)]
    if not values:
        return 0, None, None, None
    return len(values), float(np.median(values)), float(min(values)), float(max(values))


def _series(sides: list[Side], key: str, metric: Metric, threshold: float, window: int,
            alpha: float) -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    good: list[int] = []   # positions with a value for this metric that did not regress
    for position, side in enumerate(sides):
        if key not in side.points:
            continue
        n, center, low, high = _center(side, key, metric)
        if n == 0 and metric.name not in BRACKET_METRICS:
            continue
        before = good[-window:]
        comparison = _judge(sides, before, side, key, metric, threshold, alpha)
        rows.append({**_describe(position, side), "point": point_text(side.points[key]),
                     "metric": metric.name, "n": n, "center": center, "low": low, "high": high,
                     "against": len(before), **_verdict(comparison)})
        if comparison is None or comparison.verdict != "regression":
            good.append(position)
    return rows


def _judge(sides: list[Side], before: list[int], side: Side, key: str, metric: Metric,
           threshold: float, alpha: float) -> Comparison | None:
    if not before:
        return None
    if metric.name in BRACKET_METRICS and len(before) == 1:
        return compare_metric(sides[before[0]], side, key, metric, threshold, alpha)
    if metric.name in BRACKET_METRICS or len(before) >= CENTERS_FROM:
        base = [_center(sides[i], key, metric)[1] for i in before]
        cur = [_center(side, key, metric)[1]]
    else:  # a few earlier points: their repetitions together, as compare against them would
        base = [v for i in before for v in sides[i].values.get(key, {}).get(metric.name, [])]
        cur = side.values.get(key, {}).get(metric.name, [])
    return compare_samples([b for b in base if b is not None], [c for c in cur if c is not None],
                           threshold, metric.higher_is_better, metric.relative, alpha)


def _verdict(c: Comparison | None) -> dict[str, Any]:
    if c is None:
        return {"verdict": None, "test": None, "change_pct": None, "ci_low_pct": None,
                "ci_high_pct": None, "p_value": None, "reason": "no earlier point to judge by"}
    d = c.to_dict()
    return {k: d[k] for k in ("verdict", "test", "change_pct", "ci_low_pct", "ci_high_pct",
                              "p_value", "reason")}


def _describe(position: int, side: Side) -> dict[str, Any]:
    started = side.started_at
    return {"position": position, "source": str(side.path), "label": side.label,
            "kernel": side.host.get("kernel"), "git_revision": side.host.get("git_revision"),
            "started_at": started, "kind": side.kind,
            "date": None if started is None else time.strftime("%Y-%m-%d %H:%M", time.localtime(started))}


def _first_regression(table: pd.DataFrame) -> dict[str, Any] | None:
    regressed = table[table["verdict"] == "regression"]
    if regressed.empty:
        return None
    position = int(regressed["position"].min())
    return _point_summary(table, position)


def _newest(table: pd.DataFrame, sides: list[Side]) -> dict[str, Any]:
    return _point_summary(table, len(sides) - 1, str(sides[-1].path))


def _point_summary(table: pd.DataFrame, position: int, source: str | None = None) -> dict[str, Any]:
    rows = table[table["position"] == position]
    first = rows.iloc[0] if not rows.empty else None
    regressions = rows[rows["verdict"] == "regression"]
    return {"position": position,
            "source": source if first is None else first["source"],
            "label": None if first is None else first["label"],
            "date": None if first is None else first["date"],
            "kernel": None if first is None else first["kernel"],
            "regressions": [{"point": r["point"], "metric": r["metric"], "change_pct": r["change_pct"],
                             "test": r["test"], "reason": r["reason"]} for _, r in regressions.iterrows()]}


# ----------------------------------------------------------------------------- output

def write_history(history: History, out: Path) -> dict[str, Any]:
    """OUT/trend.parquet, OUT/trend.csv and OUT/trend.png; returns their paths."""
    from pps.errors import EnvironmentNotAble
    from pps.report.build import report_dir
    from pps.report.trend_plot import trend
    from pps.results.safe_io import describe_oserror, write_atomic, write_text_atomic

    out = report_dir(Path(out))
    try:
        write_atomic(out / "trend.parquet", lambda f: history.table.to_parquet(f, index=False))
        write_text_atomic(out / "trend.csv", history.table.to_csv(index=False))
        png = trend(history.table, list(history.sides[0].metrics), out / "trend.png")
    except OSError as exc:
        raise EnvironmentNotAble(f"{shown(out)}: cannot write the history: "
                                 f"{describe_oserror(exc)}") from None
    return {"parquet": out / "trend.parquet", "csv": out / "trend.csv", "png": png}


def to_json(history: History, written: dict[str, Any]) -> dict[str, Any]:
    rows = history.table.astype(object).where(history.table.notna(), None)
    return {"verdict": "regression" if history.newest_regressed else "ok",
            "newest": history.newest, "first_regression": history.first_regression,
            "points": [{"position": i, "source": str(s.path), "label": s.label,
                        "kernel": s.host.get("kernel"), "started_at": s.started_at}
                       for i, s in enumerate(history.sides)],
            "files": {k: None if v is None else str(v) for k, v in written.items()},
            "notes": history.notes, "rows": rows.to_dict(orient="records")}


def format_text(history: History, written: dict[str, Any]) -> str:
    from pps.report.compare_text import change_text, column_name, table, value_text

    body = []
    rows = history.table.astype(object).where(history.table.notna(), None)  # NaN -> None
    for _, r in rows.iterrows():
        verdict = r["verdict"] or "-"
        if verdict in ("regression", "improvement"):
            verdict = verdict.upper()
        change = "-" if r["verdict"] is None else change_text(
            {"change_pct": r["change_pct"], "ci_low_pct": r["ci_low_pct"], "ci_high_pct": r["ci_high_pct"],
             "relative": METRICS[r["metric"]].relative})
        body.append([str(r["position"]), column_name(r["source"], r["label"]), r["date"] or "-",
                     r["kernel"] or "-", r["point"], r["metric"], value_text(r["metric"], r["center"]),
                     change, verdict + (f" ({r['test']})" if r["test"] else "")])
    lines = table(["#", "point", "date", "kernel", "sweep point", "metric", "value",
                   "change vs earlier", "verdict"], body)
    lines += [f"note: {n}" for n in history.notes]
    first = history.first_regression
    if first:
        what = ", ".join(f"{r['metric']}" + (f" at {r['point']}" if r["point"] != "run" else "")
                         for r in first["regressions"])
        lines.append(f"first regression: #{first['position']} {column_name(first['source'], first['label'])} "
                     f"({first['date'] or 'no date'}, kernel {first['kernel'] or '?'}): {what}")
    else:
        lines.append("first regression: none")
    newest = history.newest
    state = "REGRESSED" if history.newest_regressed else "no regression"
    lines.append(f"newest: #{newest['position']} {column_name(newest['source'], newest['label'])}: {state}")
    for key in ("parquet", "csv", "png"):
        if written.get(key):
            lines.append(f"{key}: {written[key]}")
    return "\n".join(lines)
