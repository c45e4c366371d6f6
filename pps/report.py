"""`pps report`: a Markdown summary and PNG plots of one or more results directories
(single trials or sweeps). It reads only what the directories hold, so a report can be made
anywhere, later, from copied results; missing tables and older schema versions only leave
plots or columns out, with a note saying which.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import pandas as pd

from . import plots
from .display import duration_ns, rate
from .errors import ConfigError
from .results import TrialResults, is_sweep, read_trial, trial_dirs
from .sweep import trial_row

MAX_TRIALS_PLOTTED = 12  # per-trial plots stay readable; the first repetitions come first


class Loaded:
    """Every trial of the given directories, and the runs table built from them."""

    def __init__(self) -> None:
        self.trials: list[TrialResults] = []
        self.labels: list[str] = []
        self.rows: list[dict[str, Any]] = []
        self.params: list[str] = []
        self.notes: list[str] = []
        self.sources: list[dict[str, Any]] = []


def _label(source: str, point: dict[str, Any], rep: int, multi: bool) -> str:
    parts = [source] if multi else []
    parts += [f"{k.split('.')[-1]}={v}" for k, v in point.items()]
    return " ".join(parts + [f"r{rep + 1}"])


def load(paths: list[Path]) -> Loaded:
    data = Loaded()
    names = [_source_name(p, paths) for p in paths]
    multi = len(paths) > 1
    for path, source in zip(paths, names):
        if not Path(path).is_dir():
            raise ConfigError(f"{path}: no such results directory")
        entries: dict[str, dict[str, Any]] = {}
        if is_sweep(path):
            try:
                sweep = json.loads((Path(path) / "sweep.json").read_text())
            except ValueError as exc:
                raise ConfigError(f"{path}/sweep.json: not valid JSON: {exc}") from None
            entries = {Path(t["results"]).name: t for t in sweep.get("trials", []) if t.get("results")}
            pending = sum(1 for t in sweep.get("trials", []) if t.get("status") == "pending")
            if pending:
                data.notes.append(f"{source}: {pending} trial(s) still pending (sweep not finished)")
            for key in (sweep.get("config") or {}).get("sweep") or {}:
                if key not in data.params:
                    data.params.append(key)
        for trial_dir in trial_dirs(path):
            trial = read_trial(trial_dir)
            entry = entries.get(trial_dir.name, {})
            point = entry.get("point") or {}
            rep = int(entry.get("repetition") or 0)
            status = entry.get("status") or _status(trial.summary)
            data.trials.append(trial)
            data.labels.append(_label(source, point, rep, multi))
            data.rows.append({"source": source, "trial": trial_dir.name, **point, "repetition": rep,
                              "status": status, **trial_row(trial.run, trial.tables.get("workers")),
                              "path": str(trial_dir)})
            missing = [t for t in ("samples", "workers", "counters") if t not in trial.tables]
            if missing:
                data.notes.append(f"{trial_dir}: no {', '.join(missing)} table(s); plots leave it out")
        first = data.trials[-1] if data.trials else None
        host = ((first.run.get("host") or {}).get("before") or {}) if first else {}
        data.sources.append({"source": source, "path": str(path), "sweep": is_sweep(path),
                             "schema_version": first.run.get("schema_version", 1) if first else None,
                             "kernel": host.get("kernel"), "cpu_model": host.get("cpu_model"),
                             "cpu_count": host.get("cpu_count"),
                             "git_revision": host.get("git_revision")})
    if not data.trials:
        raise ConfigError(f"{', '.join(map(str, paths))}: no trials to report on")
    return data


def _source_name(path: Path, paths: list[Path]) -> str:
    name = Path(path).resolve().name
    same = [p for p in paths if Path(p).resolve().name == name]
    return name if len(same) == 1 else str(path)


def _status(summary: dict[str, Any]) -> str:
    if summary.get("interrupted"):
        return "interrupted"
    return "failed" if summary.get("failure") else "done"


# ----------------------------------------------------------------------------- markdown

def _cell(value: Any, kind: str = "") -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if kind == "pps":
        return rate(float(value)).strip()
    if kind == "pct":
        return f"{float(value):.3%}"
    if kind == "ns":
        return duration_ns(int(value))
    if isinstance(value, float):
        return f"{value:,.3g}"
    return str(value)


def _table(header: list[str], rows: list[list[str]]) -> list[str]:
    out = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    out += ["| " + " | ".join(r) + " |" for r in rows]
    return out


def points_table(runs: pd.DataFrame, params: list[str]) -> list[str]:
    """One row per point (and source): medians and spread over its finished repetitions."""
    done = runs[runs["status"] == "done"]
    if done.empty:
        return ["No finished trials."]
    keys = ["source", *[p for p in params if p in done]]
    rows = []
    for key, g in done.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rx = g["rx_pps"].dropna()
        rows.append([*map(str, key), str(len(g)), _cell(rx.median(), "pps"),
                     f"{_cell(rx.min(), 'pps')} .. {_cell(rx.max(), 'pps')}",
                     _cell(g["tx_pps"].median(), "pps"), _cell(g["loss_ratio"].median(), "pct"),
                     _cell(g["latency_p50_ns"].median(), "ns"), _cell(g["latency_p99_ns"].median(), "ns")])
    return _table([*keys, "n", "rx median", "rx min .. max", "tx median", "loss", "p50", "p99"], rows)


def trials_table(runs: pd.DataFrame, params: list[str]) -> list[str]:
    layers = [c for c in runs.columns if c.startswith("drops_")]
    rows = []
    for _, r in runs.iterrows():
        drops = ", ".join(f"{c[6:]} {int(r[c]):,}" for c in layers
                          if pd.notna(r[c]) and r[c]) or "-"
        rows.append([r["source"], r["trial"], *[_cell(r.get(p)) for p in params], str(r["repetition"] + 1),
                     r["status"], _cell(r["rx_pps"], "pps"), _cell(r["tx_pps"], "pps"),
                     _cell(r["loss_ratio"], "pct"), drops, _cell(r.get("unaccounted")),
                     _cell(r.get("receiver_cpu_s"))])
    return _table(["source", "trial", *params, "rep", "status", "rx", "tx", "loss", "drops by layer",
                   "unaccounted", "receiver CPU s"], rows)


def _pick(data: Loaded) -> tuple[list[TrialResults], list[str]]:
    """Trials for the per-trial plots: first repetitions first, at most MAX_TRIALS_PLOTTED."""
    order = sorted(range(len(data.trials)), key=lambda i: (data.rows[i]["repetition"], i))
    order = sorted(order[:MAX_TRIALS_PLOTTED])
    return [data.trials[i] for i in order], [data.labels[i] for i in order]


def write_report(paths: list[Path], out: Path) -> dict[str, Any]:
    """Write OUT/report.md and OUT/*.png; returns {"markdown", "plots", "notes"}."""
    data = load([Path(p) for p in paths])
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    runs = pd.DataFrame(data.rows)
    params = [p for p in data.params if p in runs]
    runs.to_csv(out / "runs.csv", index=False)
    images: list[tuple[str, Path]] = []
    for param in params:
        series = ([c for c in params if c != param] + (["source"] if len(paths) > 1 else []))
        png = plots.rate_vs_param(runs, param, series, out / f"rate-vs-{param.replace('.', '-')}.png")
        if png:
            images.append((f"Rate against {param}", png))
    if not params:
        png = plots.rate_by_run(runs, out / "rate-by-run.png")
        if png:
            images.append(("Rate per run", png))
    picked, labels = _pick(data)
    if len(picked) < len(data.trials):
        data.notes.append(f"per-trial plots show {len(picked)} of {len(data.trials)} trials "
                          "(first repetitions first)")
    for title, func, name in (("Per-worker packets", plots.workers, "workers.png"),
                              ("Per-queue and per-CPU receive work", plots.queues, "queues.png"),
                              ("Time series of rx rate and drops", plots.timeseries, "timeseries.png"),
                              ("Drop ledger per trial", plots.ledger, "ledger.png")):
        png = func(picked, labels, out / name)
        if png:
            images.append((title, png))
        else:
            data.notes.append(f"{name}: nothing to draw (the tables it needs are missing or empty)")
    lines = ["# pps report", ""]
    lines += _table(["source", "path", "kind", "schema", "kernel", "CPU", "revision"],
                    [[s["source"], s["path"], "sweep" if s["sweep"] else "run",
                      _cell(s["schema_version"]), _cell(s["kernel"]),
                      f"{_cell(s['cpu_model'])} x{_cell(s['cpu_count'])}", _cell(s["git_revision"])]
                     for s in data.sources])
    lines += ["", "## Results by point", ""] + points_table(runs, params)
    lines += ["", "## Plots", ""]
    for title, png in images:
        lines += [f"### {title}", "", f"![{title}]({png.name})", ""]
    lines += ["## Trials", ""] + trials_table(runs, params)
    if data.notes:
        lines += ["", "## Notes", ""] + [f"- {n}" for n in data.notes]
    markdown = out / "report.md"
    markdown.write_text("\n".join(lines) + "\n")
    return {"markdown": markdown, "plots": [p for _, p in images], "notes": data.notes}
