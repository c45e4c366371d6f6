"""Regression compare of results directories: one baseline against one or more current
directories, each a single run, a sweep, or a search.

Runs and sweeps: trials are matched by their sweep point (single runs match each other) and
every metric of regression_metrics.RUN_METRICS is compared over the repetitions. Searches:
the NDR and PDR rates (by their brackets) and the latency p99 of the trials at each rate.
Before any number is compared, the two sides' hosts and configs are checked: a different
CPU, NIC driver or experiment (placement, payload, batch, ...) makes a comparison
meaningless, so it is refused unless forced or that difference is allowed by name (a
kernel change is often the very thing under test: --allow host.kernel). Reads only
results directories.
"""

from __future__ import annotations

import fnmatch
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pps.errors import ConfigError
from pps.experiments.regression_metrics import (
    BRACKET_METRICS,
    RUN_METRICS,
    SEARCH_METRICS,
    Metric,
    parse_thresholds,
    trial_metrics,
)
from pps.experiments.search_results import SavedSearch, is_search, read_search
from pps.experiments.stats_compare import (
    ALPHA,
    Comparison,
    compare_brackets,
    compare_samples,
    worst,
)
from pps.experiments.sweep import flatten
from pps.results.safe_io import shown
from pps.results.store import is_sweep, read_sweep_json, read_trial, trial_dirs

# Config keys whose difference makes two runs different experiments. The rest (durations,
# repetitions, port, rate, sweep lists) are reported but do not block: a paced rate is how a
# slower target is modelled, and the sweep lists only decide which points exist.
CONFIG_KEYS_THAT_MATTER = (
    "target.address", "target.addresses", "target.device",
    "senders.count", "senders.cpus", "senders.batch", "senders.payload", "senders.flows",
    "senders.gso_segments", "senders.sndbuf", "senders.raw",
    "receivers.count", "receivers.cpus", "receivers.batch", "receivers.placement",
    "receivers.mode", "receivers.busy_poll_us", "receivers.spin_us", "receivers.gro", "receivers.rcvbuf",
    "receivers.steer", "lab.enabled", "lab.queues", "lab.rps_cpus", "lab.gro", "lab.qdisc",
    "collect.enabled",
)
# Not even a note: the label names the runs, the rest only says how many or which exist.
CONFIG_KEYS_IGNORED = ("run.repetitions", "sweep", "run.require_checks", "run.label", "lab.id")
HOST_KEYS_THAT_MATTER = ("kernel", "cpu_model", "cpu_count", "machine")


@dataclass
class Side:
    """One results directory: its metrics' values grouped by sweep point."""

    path: Path
    kind: str                      # "runs" (a run or a sweep) or "search"
    config: dict[str, Any]
    host: dict[str, Any]
    drivers: dict[str, Any]
    checks: dict[str, str]
    started_at: float | None = None
    points: dict[str, dict[str, Any]] = field(default_factory=dict)    # key -> point params
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)  # key -> metric -> values
    search: SavedSearch | None = None
    skipped: int = 0

    @property
    def label(self) -> str | None:
        label = (self.config.get("run") or {}).get("label")
        return shown(label) if isinstance(label, str) and label else None

    @property
    def metrics(self) -> tuple[Metric, ...]:
        return SEARCH_METRICS if self.kind == "search" else RUN_METRICS


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def _sweep_points(path: Path) -> tuple[dict[str, Any], dict[str, tuple[dict[str, Any], str]]]:
    """The sweep's config (with its [sweep] table) and trial dir name -> (point, status)."""
    saved = read_sweep_json(path)  # checked: a bounded JSON object of the expected shape
    out = {}
    for t in saved.get("trials", []):
        if t.get("results"):
            out[Path(t["results"]).name] = (t.get("point") or {}, t.get("status", "done"))
    return saved.get("config") or {}, out


def load_side(path: Path | str) -> Side:
    """A run, sweep or search directory as compare and history read it; ConfigError when it
    is none of these or holds no finished trial."""
    path = Path(path)
    if is_search(path):
        return _load_search(path)
    dirs = trial_dirs(path)  # ConfigError unless a readable results directory
    sweep_config, points = _sweep_points(path) if is_sweep(path) else (None, {})
    side: Side | None = None
    for d in dirs:
        point, status = points.get(d.name, ({}, "done"))
        trial = read_trial(d)
        run, summary = trial.run, trial.summary
        if side is None:
            # A trial's config holds its point's values; the sweep's holds the [sweep] table.
            side = Side(path, "runs", sweep_config or run.get("config") or {},
                        (run.get("host") or {}).get("before") or {}, _drivers(run), _checks(run))
        side.started_at = _earliest(side.started_at, run.get("started_at"))
        if status != "done" or summary.get("interrupted") or summary.get("failure"):
            side.skipped += 1  # an unfinished trial is not a repetition
            continue
        key = point_key(point)
        side.points[key] = point
        per_metric = side.values.setdefault(key, {})
        for name, value in trial_metrics(run, trial.tables.get("workers")).items():
            if value is not None:
                per_metric.setdefault(name, []).append(value)
    if side is None or not side.points:
        raise ConfigError(f"{shown(path)}: no finished trials to compare")
    return side


def _load_search(path: Path) -> Side:
    saved = read_search(path)
    run = saved.first_run
    side = Side(path, "search", saved.config, (run.get("host") or {}).get("before") or {},
                _drivers(run), _checks(run), saved.started_at, search=saved)
    if saved.ndr.get("rate") is None and saved.pdr.get("rate") is None and not saved.trials:
        raise ConfigError(f"{shown(path)}: a search with no trials to compare")
    side.points[point_key({})] = {}
    side.values[point_key({})] = {f"{b}_p99_ns": saved.p99_at(b) for b in ("ndr", "pdr")}
    return side


def _earliest(a: float | None, b: Any) -> float | None:
    if isinstance(b, bool) or not isinstance(b, (int, float)) or not math.isfinite(b):
        return a
    return float(b) if a is None else min(a, float(b))


def _drivers(run: dict[str, Any]) -> dict[str, Any]:
    devices = (run.get("topology") or {}).get("devices") or []
    return {d.get("name"): d.get("driver") for d in devices if isinstance(d, dict)}


def _checks(run: dict[str, Any]) -> dict[str, str]:
    checks = run.get("checks") or []
    return {c["name"]: str(c.get("status")) for c in checks if isinstance(c, dict) and "name" in c}


def differences(base: Side, cur: Side) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(blocking, informative) differences, each {"what", "baseline", "current"}."""
    blocking, notes = [], []
    for key in HOST_KEYS_THAT_MATTER:
        if base.host.get(key) != cur.host.get(key):
            blocking.append({"what": f"host.{key}", "baseline": base.host.get(key),
                             "current": cur.host.get(key)})
    for dev in sorted(set(base.drivers) & set(cur.drivers), key=str):
        if base.drivers[dev] != cur.drivers[dev]:
            blocking.append({"what": f"nic.{dev}.driver", "baseline": base.drivers[dev],
                             "current": cur.drivers[dev]})
    b_sys, c_sys = base.host.get("sysctls") or {}, cur.host.get("sysctls") or {}
    for key in sorted(set(b_sys) | set(c_sys)):
        if b_sys.get(key) != c_sys.get(key):
            notes.append({"what": f"sysctl.{key}", "baseline": b_sys.get(key), "current": c_sys.get(key)})
    b_cfg, c_cfg = flatten(base.config), flatten(cur.config)
    for key in sorted(set(b_cfg) | set(c_cfg)):
        if b_cfg.get(key) == c_cfg.get(key) or key.startswith(CONFIG_KEYS_IGNORED):
            continue
        entry = {"what": f"config.{key}", "baseline": b_cfg.get(key), "current": c_cfg.get(key)}
        swept = _swept(base.config, key) or _swept(cur.config, key)
        (blocking if key in CONFIG_KEYS_THAT_MATTER and not swept else notes).append(entry)
    for name in sorted(set(base.checks) | set(cur.checks)):
        if base.checks.get(name) != cur.checks.get(name):
            notes.append({"what": f"check.{name}", "baseline": base.checks.get(name),
                          "current": cur.checks.get(name)})
    return blocking, notes


def split_allowed(blocking: list[dict[str, Any]], allow: list[str]) -> tuple[list, list]:
    """(still blocking, allowed): a difference is allowed when its name matches a pattern
    of `allow` (fnmatch: host.kernel, nic.*.driver)."""
    allowed = [d for d in blocking if any(fnmatch.fnmatchcase(d["what"], p) for p in allow)]
    return [d for d in blocking if d not in allowed], allowed


def _swept(config: dict[str, Any], key: str) -> bool:
    """A key the sweep varies: its per-trial value is the point's, matched point by point."""
    return key in (config.get("sweep") or {})


def compare_metric(base: Side, cur: Side, key: str, metric: Metric, threshold_pct: float,
                   alpha: float = ALPHA) -> Comparison | None:
    """One metric at one point, or None when neither side measured it."""
    if metric.name in BRACKET_METRICS:
        bracket = metric.name.split("_")[0]
        return compare_brackets(base.search.bracket(bracket), cur.search.bracket(bracket),
                                threshold_pct, metric.higher_is_better)
    b = base.values.get(key, {}).get(metric.name, [])
    c = cur.values.get(key, {}).get(metric.name, [])
    if not b and not c:
        return None
    return compare_samples(b, c, threshold_pct, metric.higher_is_better, metric.relative, alpha)


def compare_pair(base: Side, cur: Side, thresholds: dict[str, float],
                 alpha: float = ALPHA) -> list[dict[str, Any]]:
    """Every metric at every point both sides have, as JSON-able rows."""
    rows = []
    for key in (k for k in base.points if k in cur.points):
        for metric in base.metrics:
            c = compare_metric(base, cur, key, metric, thresholds[metric.name], alpha)
            if c is None:
                continue
            rows.append({"current": str(cur.path), "point": base.points[key], "metric": metric.name,
                         **c.to_dict(), "baseline_values": base.values.get(key, {}).get(metric.name, []),
                         "current_values": cur.values.get(key, {}).get(metric.name, [])})
    return rows


def compare_dirs(baseline: Path | str, currents: list[Path | str] | Path | str,
                 thresholds: dict[str, float] | None = None, force: bool = False,
                 allow: list[str] | None = None, alpha: float = ALPHA) -> dict[str, Any]:
    """The whole comparison as one JSON-able object:
    {"kind", "baseline", "currents", "labels", "thresholds_pct", "verdict", "verdicts",
     "refused", "sides": [per current: differences, allowed, notes, unmatched, skipped],
     "comparisons": [per current, point and metric: verdict, test, change_pct, ...]}.
    `thresholds` maps metric -> percent (regression_metrics.parse_thresholds)."""
    if not isinstance(currents, list):
        currents = [currents]
    thresholds = thresholds or parse_thresholds([])
    base = load_side(baseline)
    curs = [load_side(c) for c in currents]
    for cur in curs:
        if cur.kind != base.kind:
            raise ConfigError(f"{shown(cur.path)} is a {_kind(cur)} and {shown(base.path)} a "
                              f"{_kind(base)}: compare searches with searches, runs with runs")
    result: dict[str, Any] = {
        "kind": base.kind, "baseline": str(base.path), "currents": [str(c.path) for c in curs],
        "labels": {str(s.path): s.label for s in (base, *curs)}, "alpha": alpha,
        "thresholds_pct": {m.name: _finite(thresholds[m.name]) for m in base.metrics},
        "sides": [], "comparisons": [], "verdicts": {},
    }
    for cur in curs:
        blocking, notes = differences(base, cur)
        blocking, allowed = split_allowed(blocking, allow or [])
        result["sides"].append({
            "current": str(cur.path), "differences": blocking, "allowed": allowed, "notes": notes,
            "refused": bool(blocking) and not force, "forced": bool(blocking) and force,
            "unmatched": {"baseline": [base.points[k] for k in base.points if k not in cur.points],
                          "current": [cur.points[k] for k in cur.points if k not in base.points]},
            "skipped": {"baseline": base.skipped, "current": cur.skipped}})
    result["refused"] = any(s["refused"] for s in result["sides"])
    if result["refused"]:
        result["verdict"] = "refused"
        return result
    for cur in curs:
        rows = compare_pair(base, cur, thresholds, alpha)
        if not rows:
            raise ConfigError(f"{shown(base.path)} and {shown(cur.path)}: no sweep point in "
                              "common to compare")
        result["comparisons"] += rows
        result["verdicts"][str(cur.path)] = worst([r["verdict"] for r in rows])
    result["verdict"] = worst(list(result["verdicts"].values()))
    return result


def _kind(side: Side) -> str:
    return "search" if side.kind == "search" else "run or sweep"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
