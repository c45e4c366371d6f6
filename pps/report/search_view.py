"""The search part of `pps report`: for each search directory, the NDR and PDR found with
their loss and latency, the trial ladder as a PNG, and every trial in a table, as
report_doc blocks."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from pps.experiments.search_results import SavedSearch
from pps.report.display import duration_ns, rate
from pps.report.doc import Block, Heading, Image, Table, Text
from pps.report.trend_plot import search_ladder
from pps.results.safe_io import shown


def _pps(v: Any) -> str:
    return "-" if v is None else rate(float(v)).strip()


def _ns(v: Any) -> str:
    return "-" if v is None else duration_ns(int(v))


def _pct(v: Any, digits: int = 3) -> str:
    return "-" if v is None else f"{float(v) * 100:.{digits}f}%"


def _name(saved: SavedSearch) -> str:
    label = (saved.config.get("run") or {}).get("label")
    name = Path(saved.path).resolve().name
    return f"{name} ({shown(label)})" if isinstance(label, str) and label else name


def found_rows(saved: SavedSearch) -> list[list[str]]:
    bound = saved.pdr_bound_pct
    rows = []
    for key, title in (("ndr", "NDR (no drop)"),
                       ("pdr", f"PDR (loss <= {bound:g}%)" if bound is not None else "PDR")):
        f = saved.found(key)
        rows.append([title, _pps(f.get("rate")), _pps(f.get("hi")), _pct(f.get("loss_ratio"), 4),
                     _ns(f.get("p50_ns")), _ns(f.get("p99_ns")), str(len(f.get("trials") or [])),
                     "yes" if f.get("confirmed") else "no", shown(f.get("limited_by") or "-")])
    return rows


def trial_rows(saved: SavedSearch) -> list[list[str]]:
    rows = []
    for t in saved.trials:
        used = "" if t.get("used", True) is not False else f" (not used: {shown(t.get('note') or '')})"
        rows.append([str(t.get("index")), shown(t.get("phase") or "-"),
                     "unpaced" if not t.get("offered") else _pps(t.get("offered")),
                     _pps(t.get("tx_pps")), _pps(t.get("rx_pps")), _pct(t.get("loss_ratio")),
                     _ns(t.get("p50_ns")), _ns(t.get("p99_ns")), shown(t.get("limit") or "-") + used])
    return rows


def search_sections(searches: list[SavedSearch], out: Path) -> tuple[list[Block], list[Path], list[str]]:
    """(blocks, PNGs, notes) for the searches of a report."""
    blocks: list[Block] = []
    pngs: list[Path] = []
    notes: list[str] = []
    for i, saved in enumerate(searches):
        name = _name(saved)
        host = (saved.first_run.get("host") or {}).get("before") or {}
        blocks += [Heading(2, f"Search {name}"),
                   Text(f": status {shown(saved.status)}, {len(saved.trials)} trials, "
                        f"kernel {shown(host.get('kernel') or '?')}", code=shown(saved.path)),
                   Table(["rate", "found", "failed at", "loss", "p50", "p99", "trials at rate",
                          "confirmed", "limited by"], found_rows(saved))]
        png = search_ladder(saved.trials, saved.ndr, saved.pdr, saved.pdr_bound_pct,
                            f"search ladder: {name}", out / f"search-ladder-{i}.png")
        if png:
            title = f"Trial ladder of {name}"
            pngs.append(png)
            blocks += [Heading(3, title), Image(title, png)]
        else:
            notes.append(f"{saved.path}: no trials to draw a ladder of")
        blocks += [Heading(3, f"Trials of {name}"),
                   Table(["#", "phase", "offered", "tx", "rx", "loss", "p50", "p99", "limited by"],
                         trial_rows(saved))]
        if saved.status != "done":
            notes.append(f"{saved.path}: the search stopped early ({saved.status})")
    return blocks, pngs, notes
