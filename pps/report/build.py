"""`pps report`: a Markdown summary, a self-contained HTML page and PNG plots of one or more
results directories (single trials, sweeps or searches; runs and sweeps get their sections
from report_runs, searches from search_report; both as report_doc blocks, written as
report.md and report.html).
It reads only what the directories hold, so a report can be made
anywhere, later, from copied results; missing tables and older schema versions only leave
plots or columns out, with a note saying which.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from pps.errors import ConfigError, EnvironmentNotAble
from pps.experiments.search_results import SavedSearch, is_search, read_search
from pps.experiments.sweep import trial_row
from pps.report.doc import Block, Heading, to_markdown
from pps.report.html import write_html
from pps.report.runs import MAX_TRIALS_PLOTTED, runs_blocks
from pps.results.safe_io import describe_oserror, shown, write_text_atomic
from pps.results.store import (
    TrialResults,
    check_out_dir,
    is_sweep,
    read_sweep_json,
    read_trial,
    trial_dirs,
)


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
    parts = [source] if multi or not point else []  # "r1" alone would name nothing
    parts += [f"{k.split('.')[-1]}={v}" for k, v in point.items()]
    return " ".join(parts + [f"r{rep}"])


def load(paths: list[Path]) -> Loaded:
    data = Loaded()
    names = [_source_name(p, paths) for p in paths]
    multi = len(paths) > 1
    for path, source in zip(paths, names):
        entries: dict[str, dict[str, Any]] = {}
        dirs = trial_dirs(path)  # checks that path is a results directory
        if is_sweep(path):
            sweep = read_sweep_json(path)
            entries = {Path(t["results"]).name: t for t in sweep.get("trials", []) if t.get("results")}
            pending = sum(1 for t in sweep.get("trials", []) if t.get("status") == "pending")
            if pending:
                data.notes.append(f"{source}: {pending} trial(s) still pending (sweep not finished)")
            for key in (sweep.get("config") or {}).get("sweep") or {}:
                if key not in data.params:
                    data.params.append(key)
        label = None
        for trial_dir in dirs:
            trial = read_trial(trial_dir)
            if label is None:  # run.label names the directory in tables and plots
                label = _run_label(trial.run)
                source = f"{source} ({label})" if label else source
            entry = entries.get(trial_dir.name, {})
            point = entry.get("point") or {}
            rep = int(entry.get("repetition") or 1)  # from 1 (read_sweep_json maps schema 1)
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
        data.sources.append({"source": source, "label": label, "path": str(path), "sweep": is_sweep(path),
                             "schema_version": first.run.get("schema_version", 1) if first else None,
                             "kernel": host.get("kernel"), "cpu_model": host.get("cpu_model"),
                             "cpu_count": host.get("cpu_count"),
                             "git_revision": host.get("git_revision")})
    if not data.trials:
        raise ConfigError(f"{', '.join(map(str, paths))}: no trials to report on")
    return data


def _run_label(run: dict[str, Any]) -> str:
    label = ((run.get("config") or {}).get("run") or {}).get("label")
    return shown(label) if isinstance(label, str) and label else ""


def _source_name(path: Path, paths: list[Path]) -> str:
    name = Path(path).resolve().name
    same = [p for p in paths if Path(p).resolve().name == name]
    return name if len(same) == 1 else str(path)


def _status(summary: dict[str, Any]) -> str:
    if summary.get("interrupted"):
        return "interrupted"
    return "failed" if summary.get("failure") else "done"


def _pick(data: Loaded) -> tuple[list[TrialResults], list[str]]:
    """Trials for the per-trial plots: first repetitions first, at most MAX_TRIALS_PLOTTED."""
    order = sorted(range(len(data.trials)), key=lambda i: (data.rows[i]["repetition"], i))
    order = sorted(order[:MAX_TRIALS_PLOTTED])
    return [data.trials[i] for i in order], [data.labels[i] for i in order]


def write_report(paths: list[Path], out: Path) -> dict[str, Any]:
    """Write OUT/report.md, OUT/report.html and OUT/*.png; returns {"markdown", "html",
    "plots", "notes"}.
    A report is made again over an old one, so OUT may exist, as a directory. ConfigError
    when OUT cannot be one; EnvironmentNotAble when writing fails (a full disk)."""
    paths = [Path(p) for p in paths]
    runs = [p for p in paths if not is_search(p)]
    searches = [read_search(p) for p in paths if is_search(p)]  # all read before OUT is made
    data = load(runs) if runs else None
    out = report_dir(Path(out))
    try:
        return _write(data, runs, searches, out)
    except OSError as exc:
        raise EnvironmentNotAble(f"{shown(out)}: cannot write the report: "
                                 f"{describe_oserror(exc)}") from None


def report_dir(out: Path) -> Path:
    """OUT for a report or a history: an existing directory (made again over an old report)
    or one that can be created; ConfigError otherwise."""
    if os.path.lexists(out) and not out.is_dir():
        raise ConfigError(f"{shown(out)}: exists and is not a directory; choose another --out")
    if not out.is_dir():
        check_out_dir(out)  # a parent that is a file, a read-only disk: said before any work
    try:
        out.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"{shown(out)}: cannot create the report directory: "
                          f"{describe_oserror(exc)}") from None
    return out


def _write(data: Loaded | None, paths: list[Path], searches: list[SavedSearch],
           out: Path) -> dict[str, Any]:
    from pps.report.search_view import search_sections

    blocks: list[Block] = [Heading(1, "pps report")]
    pngs: list[Path] = []
    notes: list[str] = []
    if data is not None:
        picked, labels = _pick(data)
        if len(picked) < len(data.trials):
            data.notes.append(f"per-trial plots show {len(picked)} of {len(data.trials)} trials "
                              "(first repetitions first)")
        run_blocks, run_pngs = runs_blocks(data, picked, labels, len(paths) > 1, out)
        blocks += run_blocks
        pngs += run_pngs
        notes += data.notes
    if searches:
        search_blocks, search_pngs, search_notes = search_sections(searches, out)
        blocks += search_blocks
        pngs += search_pngs
        notes += search_notes
    markdown = out / "report.md"
    write_text_atomic(markdown, to_markdown(blocks))
    page = write_html(blocks, out / "report.html")
    return {"markdown": markdown, "html": page, "plots": pngs, "notes": notes}
