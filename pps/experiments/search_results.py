"""Reading a `pps search` directory back (DIR/search.json, DIR/trials/NNNN/run.json) for
compare, report and history, checked like run.json and sweep.json are: a damaged or
foreign search.json is one ConfigError line naming the file and the field.

Trials are found by their index under DIR/trials, not by the `results_dir` search.json
recorded, which is where they were written and goes stale when a search is copied.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pps.config import shapes
from pps.errors import ConfigError
from pps.experiments.search import SEARCH_FILE, SEARCH_SCHEMA
from pps.results import safe_io
from pps.results.store import read_run_json

N, T, O, A, ANY = shapes.NUMBER, shapes.TEXT, shapes.OBJECT, shapes.ARRAY, shapes.ANY
_FOUND = {"rate": N, "hi": N, "loss_ratio": N, "p50_ns": N, "p99_ns": N, "trials": A,
          "trials.*": N, "rx_pps": A, "rx_pps.*": N, "limited_by": T, "spread": N, "confirmed": ANY}
SEARCH_FIELDS: dict[str, str] = {
    "schema_version": N, "status": T, "elapsed_s": N, "max_rate": N, "search": O,
    "search.loss_bound": N, "search.precision": N, "config": O, "trials": A, "trials.*": O,
    "ndr": O, "pdr": O, **{f"{b}.{k}": kind for b in ("ndr", "pdr") for k, kind in _FOUND.items()},
}
TRIAL_FIELDS: dict[str, str] = {
    "index": N, "phase": T, "offered": N, "tx_pps": N, "rx_pps": N, "loss_ratio": N,
    "p50_ns": N, "p99_ns": N, "trial_loss_ratio": N, "limit": T, "note": T, "used": ANY,
    "seconds": N,
}


@dataclass
class SavedSearch:
    """One search directory as compare, report and history use it."""

    path: Path
    status: str
    options: dict[str, Any]
    config: dict[str, Any]
    ndr: dict[str, Any]
    pdr: dict[str, Any]
    trials: list[dict[str, Any]]
    first_run: dict[str, Any] = field(default_factory=dict)  # trials/0000/run.json, for host data
    schema_version: int = 1

    def found(self, name: str) -> dict[str, Any]:
        return self.ndr if name == "ndr" else self.pdr

    def bracket(self, name: str) -> tuple[float | None, float | None]:
        f = self.found(name)
        return f.get("rate"), f.get("hi")

    def p99_at(self, name: str) -> list[float]:
        """The p99 latency of every trial at the rate found: the found rate's repetitions."""
        wanted = {int(i) for i in self.found(name).get("trials") or []}
        return [float(t["p99_ns"]) for t in self.trials
                if t.get("index") in wanted and t.get("p99_ns") is not None]

    @property
    def pdr_bound_pct(self) -> float | None:
        """The PDR's loss bound in percent: search.json schema 1 holds it as a ratio; from
        schema 2 search.loss_bound is in percent, like every threshold and limit."""
        bound = self.options.get("loss_bound")
        if bound is None:
            return None
        return float(bound) * 100 if self.schema_version < 2 else float(bound)

    @property
    def started_at(self) -> float | None:
        value = self.first_run.get("started_at")
        return float(value) if isinstance(value, (int, float)) and math.isfinite(value) else None


def is_search(path: Path | str) -> bool:
    return os.path.lexists(Path(path) / SEARCH_FILE)


def trial_dir(path: Path | str, index: int) -> Path:
    return Path(path) / "trials" / f"{index:04d}"


def read_search(path: Path | str) -> SavedSearch:
    """DIR/search.json, checked, with its first trial's run.json when there is one."""
    path = Path(path)
    if not path.is_dir():
        raise ConfigError(f"{safe_io.shown(path)}: no such results directory")
    file = path / SEARCH_FILE
    where = safe_io.shown(file)
    saved = safe_io.read_json(file, SEARCH_FILE)
    version = shapes.check_schema_version(saved, SEARCH_SCHEMA, where)
    shapes.check_fields(saved, SEARCH_FIELDS, where)
    trials = saved.get("trials") or []
    for i, entry in enumerate(trials):
        shapes.check_fields(entry, TRIAL_FIELDS, f"{where}: trials[{i}]")
        if not isinstance(entry.get("index"), int):
            entry["index"] = i
    first = trial_dir(path, 0)
    first_run = read_run_json(first) if os.path.lexists(first / "run.json") else {}
    return SavedSearch(path, str(saved.get("status") or "unknown"), saved.get("search") or {},
                       saved.get("config") or {}, saved.get("ndr") or {}, saved.get("pdr") or {},
                       trials, first_run, version)
