"""Regression compare of two results directories (single runs or sweeps).

Trials are matched by their sweep point (single runs match each other); for each match the
rx rate of the repetitions is compared with stats_compare. Before any number is compared,
the two sides' hosts and configs are checked: a different kernel, CPU, NIC driver or a
different experiment (placement, payload, batch, ...) makes a comparison meaningless, so it
is refused unless forced. Reads only results directories.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .errors import ConfigError
from .results import is_sweep, read_trial, trial_dirs
from .stats_compare import compare_samples
from .sweep import flatten

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
CONFIG_KEYS_IGNORED = ("run.repetitions", "sweep", "run.require_checks")
HOST_KEYS_THAT_MATTER = ("kernel", "cpu_model", "cpu_count", "machine")


@dataclass
class Side:
    """One results directory: its trials grouped by sweep point."""

    path: Path
    config: dict[str, Any]
    host: dict[str, Any]
    drivers: dict[str, Any]
    checks: dict[str, str]
    points: dict[str, dict[str, Any]] = field(default_factory=dict)  # key -> point params
    rx: dict[str, list[float]] = field(default_factory=dict)
    tx: dict[str, list[float]] = field(default_factory=dict)
    skipped: int = 0


def point_key(point: dict[str, Any]) -> str:
    return json.dumps(point, sort_keys=True, default=str)


def _sweep_points(path: Path) -> tuple[dict[str, Any], dict[str, tuple[dict[str, Any], str]]]:
    """The sweep's config (with its [sweep] table) and trial dir name -> (point, status)."""
    try:
        saved = json.loads((path / "sweep.json").read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}/sweep.json: cannot read: {exc}") from None
    out = {}
    for t in saved.get("trials", []):
        if t.get("results"):
            out[Path(t["results"]).name] = (t.get("point") or {}, t.get("status", "done"))
    return saved.get("config") or {}, out


def load_side(path: Path | str) -> Side:
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{path}: no such results directory")
    dirs = trial_dirs(path)
    sweep_config, points = _sweep_points(path) if is_sweep(path) else (None, {})
    side: Side | None = None
    for d in dirs:
        point, status = points.get(d.name, ({}, "done"))
        trial = read_trial(d)
        summary = trial.summary
        if side is None:
            run = trial.run
            # A trial's config holds its point's values; the sweep's holds the [sweep] table.
            side = Side(path, sweep_config or run.get("config") or {}, (run.get("host") or {}).get("before") or {},
                        _drivers(run), _checks(run))
        if status != "done" or summary.get("interrupted") or summary.get("failure"):
            side.skipped += 1  # an unfinished trial is not a repetition
            continue
        key = point_key(point)
        side.points[key] = point
        side.rx.setdefault(key, []).append(float(summary.get("rx_pps") or 0.0))
        side.tx.setdefault(key, []).append(float(summary.get("tx_pps") or 0.0))
    if side is None:
        raise ConfigError(f"{path}: no finished trials to compare")
    return side


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
    for dev in sorted(set(base.drivers) & set(cur.drivers)):
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


def _swept(config: dict[str, Any], key: str) -> bool:
    """A key the sweep varies: its per-trial value is the point's, matched point by point."""
    return key in (config.get("sweep") or {})


def compare_dirs(baseline: Path | str, current: Path | str, threshold_pct: float = 5.0,
                 force: bool = False, alpha: float = 0.05) -> dict[str, Any]:
    """The whole comparison as one JSON-able object:
    {"verdict", "threshold_pct", "trials": [...], "differences": [...], "notes": [...],
    "unmatched": {...}, "refused": bool}."""
    if not 0 <= threshold_pct < 1000:
        raise ConfigError(f"--threshold: {threshold_pct} is out of range 0..1000 (percent)")
    base, cur = load_side(baseline), load_side(current)
    blocking, notes = differences(base, cur)
    result: dict[str, Any] = {
        "baseline": str(base.path), "current": str(cur.path), "threshold_pct": threshold_pct,
        "differences": blocking, "notes": notes, "refused": bool(blocking) and not force,
        "forced": bool(blocking) and force, "trials": [],
        "unmatched": {"baseline": [base.points[k] for k in base.points if k not in cur.points],
                      "current": [cur.points[k] for k in cur.points if k not in base.points]},
        "skipped": {"baseline": base.skipped, "current": cur.skipped},
    }
    if result["refused"]:
        result["verdict"] = "refused"
        return result
    for key in (k for k in base.points if k in cur.points):
        c = compare_samples(base.rx[key], cur.rx[key], threshold_pct / 100, alpha)
        tx = compare_samples(base.tx[key], cur.tx[key], threshold_pct / 100, alpha)
        result["trials"].append({"point": base.points[key], "metric": "rx_pps", **c.to_dict(),
                                 "baseline": base.rx[key], "current": cur.rx[key],
                                 "tx_change": tx.change})
    if not result["trials"]:
        raise ConfigError(f"{base.path} and {cur.path}: no sweep point in common to compare")
    verdicts = {t["verdict"] for t in result["trials"]}
    for verdict in ("regression", "improvement", "inconclusive", "no change"):
        if verdict in verdicts:
            result["verdict"] = verdict
            break
    return result


def format_text(result: dict[str, Any]) -> str:
    lines = []
    for d in result["differences"]:
        prefix = "differs (forced)" if result.get("forced") else "differs"
        lines.append(f"{prefix}: {d['what']}: baseline {d['baseline']!r}, current {d['current']!r}")
    for d in result["notes"]:
        lines.append(f"note: {d['what']}: baseline {d['baseline']!r}, current {d['current']!r}")
    if result["refused"]:
        lines.append("refusing to compare runs that differ like this; pass --force to compare anyway")
        return "\n".join(lines)
    for t in result["trials"]:
        label = " ".join(f"{k}={v}" for k, v in t["point"].items()) or "run"
        change = "-" if t["change"] is None else f"{t['change']:+.1%}"
        ci = ("" if t["ci_low"] is None else f" [95% CI {t['ci_low']:+.1%} .. {t['ci_high']:+.1%}]")
        p = "" if t["p_value"] is None else f" p={t['p_value']:.3g}"
        med = ("" if t["base_median"] is None or t["cur_median"] is None else
               f"rx {t['base_median']:,.0f} -> {t['cur_median']:,.0f} pps ")
        lines.append(f"{label}: {t['verdict'].upper()}  {med}{change}{ci}{p}  "
                     f"(n={t['n_base']}/{t['n_cur']}; {t['reason']})")
    for side in ("baseline", "current"):
        for point in result["unmatched"][side]:
            lines.append(f"only in {side}: {point_key(point)}")
        if result["skipped"][side]:
            lines.append(f"{side}: {result['skipped'][side]} unfinished trial(s) left out")
    lines.append(f"verdict: {result['verdict']} (threshold {result['threshold_pct']:g}%)")
    return "\n".join(lines)
