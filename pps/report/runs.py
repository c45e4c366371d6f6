"""The runs-and-sweeps part of `pps report`, as report blocks: the headline numbers, where
the results came from, results by point, the ledger, the plots and every trial."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pandas as pd

from pps.report import plots
from pps.report.display import duration_ns, rate
from pps.report.doc import Block, Bullets, Heading, Headline, Image, Table, Text
from pps.report.plot_ledger import PARTS, ledger_rows
from pps.report.plot_style import value_text
from pps.results.safe_io import write_text_atomic

MAX_TRIALS_PLOTTED = 12  # per-trial plots stay readable; the first repetitions come first
PER_TRIAL_PLOTS = (("Where the packets went (drop ledger)", plots.ledger, "ledger.png"),
                   ("Latency distribution", plots.latency, "latency.png"),
                   ("Time series of rx rate and drops", plots.timeseries, "timeseries.png"),
                   ("Per-worker packets", plots.workers, "workers.png"),
                   ("Per-queue and per-CPU receive work", plots.queues, "queues.png"))


def cell(value: Any, kind: str = "") -> str:
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


def points_table(runs: pd.DataFrame, params: list[str]) -> Block:
    """One row per point (and source): medians and spread over its finished repetitions."""
    done = runs[runs["status"] == "done"]
    if done.empty:
        return Text("No finished trials.")
    keys = ["source", *[p for p in params if p in done]]
    rows = []
    for key, g in done.groupby(keys, sort=False, dropna=False):
        key = key if isinstance(key, tuple) else (key,)
        rx = g["rx_pps"].dropna()
        rows.append([*map(str, key), str(len(g)), cell(rx.median(), "pps"),
                     f"{cell(rx.min(), 'pps')} .. {cell(rx.max(), 'pps')}",
                     cell(g["tx_pps"].median(), "pps"), cell(g["loss_ratio"].median(), "pct"),
                     cell(g["latency_p50_ns"].median(), "ns"), cell(g["latency_p99_ns"].median(), "ns")])
    return Table([*keys, "n", "rx median", "rx min .. max", "tx median", "loss", "p50", "p99"], rows)


def trials_table(runs: pd.DataFrame, params: list[str]) -> Table:
    layers = [c for c in runs.columns if c.startswith("drops_")]
    rows = []
    for _, r in runs.iterrows():
        drops = ", ".join(f"{c[6:]} {int(r[c]):,}" for c in layers
                          if pd.notna(r[c]) and r[c]) or "-"
        rows.append([r["source"], r["trial"], *[cell(r.get(p)) for p in params], str(r["repetition"]),
                     r["status"], cell(r["rx_pps"], "pps"), cell(r["tx_pps"], "pps"),
                     cell(r["loss_ratio"], "pct"), drops, cell(r.get("unaccounted")),
                     cell(r.get("receiver_cpu_s"))])
    return Table(["source", "trial", *params, "rep", "status", "rx", "tx", "loss", "drops by layer",
                  "unaccounted", "receiver CPU s"], rows)


def ledger_table(trials: list[Any], labels: list[str]) -> Block:
    """Per trial: packets sent, then each part that is not zero in some trial, as count and
    share of sent; the same numbers as the ledger plot, for reading off."""
    rows = ledger_rows(trials, labels)
    if not rows:
        return Text("No trial has a drop ledger (older results, or a run that failed early).")
    parts = [p for p in PARTS if any(r[p] for r in rows)]
    return Table(["trial", "sent", *parts],
                 [[r["label"], f"{r['sent']:,}",
                   *[f"{r[p]:,} ({r[p] / r['sent']:.2%})" for p in parts]] for r in rows])


def headline(runs: pd.DataFrame, trials: list[Any]) -> Headline:
    """The numbers a reader came for. One trial: its rates, loss, latency and biggest drop;
    several: how many finished and the best and worst median rx over points (runs' "point"
    column names them)."""
    done = runs[runs["status"] == "done"]
    items = [("trials", f"{len(done)} of {len(runs)} done", "")]
    if len(runs) == 1:
        r = runs.iloc[0]
        lat = (trials[0].summary.get("latency") or {}) if trials else {}
        items = [("rx rate", cell(r["rx_pps"], "pps"), "received, measurement window"),
                 ("tx rate", cell(r["tx_pps"], "pps"), "sent, measurement window"),
                 ("loss", cell(r["loss_ratio"], "pct"), "whole run"),
                 ("latency p50 / p99", f"{cell(lat.get('p50_ns'), 'ns')} / {cell(lat.get('p99_ns'), 'ns')}",
                  "one-way")]
        drops = {c[6:]: r[c] for c in runs.columns if c.startswith("drops_") and pd.notna(r[c]) and r[c]}
        if drops:
            layer = max(drops, key=drops.get)
            items.append(("biggest drop", f"{layer} layer", f"{int(drops[layer]):,} packets"))
        return Headline(items)
    keyed = done.dropna(subset=["rx_pps"])
    if keyed.empty:
        return Headline(items)
    medians = keyed.groupby("point", sort=False)["rx_pps"].median()
    items.append(("best median rx", cell(medians.max(), "pps"), str(medians.idxmax())))
    if len(medians) > 1:
        items.append(("lowest median rx", cell(medians.min(), "pps"), str(medians.idxmin())))
    items.append(("median loss", cell(keyed["loss_ratio"].median(), "pct"), "over finished trials"))
    return Headline(items)


def plot_blocks(data: Any, runs: pd.DataFrame, params: list[str], picked: list[Any],
                labels: list[str], multi_source: bool, out: Path) -> tuple[list[Block], list[Path]]:
    """Draw every plot; (blocks with a heading and image each, the PNG paths)."""
    images: list[tuple[str, Path]] = []
    for param in params:
        series = [c for c in params if c != param] + (["source"] if multi_source else [])
        png = plots.rate_vs_param(runs, param, series, out / f"rate-vs-{param.replace('.', '-')}.png")
        if png:
            images.append((f"Rate against {param}", png))
    if not params:
        png = plots.rate_by_run(runs, out / "rate-by-run.png")
        if png:
            images.append(("Rate per run", png))
    for title, func, name in PER_TRIAL_PLOTS:
        png = func(picked, labels, out / name)
        if png:
            images.append((title, png))
        else:
            data.notes.append(f"{name}: nothing to draw (the tables it needs are missing or empty)")
    blocks: list[Block] = []
    for title, png in images:
        blocks += [Heading(3, title), Image(title, png)]
    return blocks, [p for _, p in images]


def runs_blocks(data: Any, picked: list[Any], labels: list[str], multi_source: bool,
                out: Path) -> tuple[list[Block], list[Path]]:
    """The report of runs and sweeps: summary, sources, results by point, ledger, plots,
    trials, notes. Writes OUT/runs.csv and the PNGs on the way."""
    runs = pd.DataFrame(data.rows)
    params = [p for p in data.params if p in runs]
    write_text_atomic(out / "runs.csv", runs.to_csv(index=False))  # never through a planted link
    # The headline's best and worst are of points (medians over repetitions), by name.
    names = [" ".join([str(r["source"]), *(f"{p.split('.')[-1]}={value_text(r[p])}" for p in params
                                            if pd.notna(r[p]))]) for _, r in runs.iterrows()]
    runs_keyed = runs.assign(point=names)
    plot_list, pngs = plot_blocks(data, runs, params, picked, labels, multi_source, out)
    sources = Table(["source", "path", "kind", "schema", "kernel", "CPU", "revision"],
                    [[s["source"], s["path"], "sweep" if s["sweep"] else "run",
                      cell(s["schema_version"]), cell(s["kernel"]),
                      f"{cell(s['cpu_model'])} x{cell(s['cpu_count'])}", cell(s["git_revision"])]
                     for s in data.sources])
    blocks: list[Block] = [Heading(2, "Summary"), headline(runs_keyed, data.trials),
                           Heading(2, "Sources"), sources,
                           Heading(2, "Results by point"), points_table(runs, params),
                           Heading(2, "Drop ledger"), ledger_table(picked, labels),
                           Heading(2, "Plots"), *plot_list,
                           Heading(2, "Trials"), trials_table(runs, params)]
    if data.notes:
        blocks += [Heading(2, "Notes"), Bullets(list(data.notes))]
    return blocks, pngs
