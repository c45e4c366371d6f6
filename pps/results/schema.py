"""What each schema version of a results directory looks like, and the one mapping from any
older one to the current (docs/results.md, "Schema versions").

Version 2 (this pps writes it):
  - columns with a unit carry it: samples and counters `t` -> `t_s`; workers `rcvbuf` ->
    `rcvbuf_bytes`, `sndbuf` -> `sndbuf_bytes`;
  - counters gains `kernel_name` and `layer` after `name` (pps.counters.table.annotate);
  - repetitions count from 1: runs.parquet `repetition`, sweep.json `trials[].repetition`;
  - run.json across hosts: `topology` is `{"hosts": {NAME: topology}}`, as `plan` has
    `hosts`, instead of the hosts' topologies at its top;
  - a sweep writes DIR/counters.parquet: every trial's counters with a `trial` column.
Version 1: the first.

The tables a run makes in memory come in version 1's columns (the producers, in
pps.results.summary, sample_log and pps.counters, are older than version 2); `table` maps
them, and any version 1 table read back, to the current columns. It is idempotent, so it
may be applied to a table of either version.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pandas as pd

from pps.results.spill import SpilledTable

SCHEMA_VERSION = 2  # what this pps writes; what changed from 1 is above

# table -> {version 1 name: current name}
RENAMED: dict[str, dict[str, str]] = {
    "samples": {"t": "t_s"},
    "workers": {"rcvbuf": "rcvbuf_bytes", "sndbuf": "sndbuf_bytes"},
    "counters": {"t": "t_s"},
}
FIRST_REPETITION = {1: 0}  # schema version -> the number of the first repetition; else 1
TOPOLOGY_KEYS = ("root", "cpus", "nodes", "devices", "hosts")


def table(name: str, df: pd.DataFrame) -> pd.DataFrame:
    """A table of any version in the current columns."""
    if df is None:
        return df
    renames = {old: new for old, new in RENAMED.get(name, {}).items()
               if old in df.columns and new not in df.columns}
    if renames:
        df = df.rename(columns=renames)
    if name == "counters":
        from pps.counters.table import annotate

        df = annotate(df)
    return df


def table_any(name: str, df: pd.DataFrame | SpilledTable | None
              ) -> pd.DataFrame | SpilledTable | None:
    """`table` for a DataFrame now, for a table spilled to disk as it is written (row group
    by row group) or read."""
    if isinstance(df, SpilledTable):
        mapped = df.transformed(lambda chunk: table(name, chunk))
        # Columns only decide what `table` does: a file already in the current ones is copied.
        return df if list(mapped.empty().columns) == list(df.empty().columns) else mapped
    return table(name, df)


def first_repetition(version: int) -> int:
    return FIRST_REPETITION.get(version, 1)


def runs_table(df: pd.DataFrame, version: int) -> pd.DataFrame:
    """A sweep's runs.parquet, written by `version`, in the current shape."""
    shift = 1 - first_repetition(version)
    if shift and "repetition" in df.columns:
        df = df.assign(repetition=df["repetition"] + shift)
    return df


def sweep_json(sweep: dict[str, Any], version: int) -> dict[str, Any]:
    """sweep.json, written by `version`, in the current shape (repetitions from 1)."""
    shift = 1 - first_repetition(version)
    if shift:
        for entry in sweep.get("trials") or []:
            rep = entry.get("repetition") if isinstance(entry, dict) else None
            if isinstance(rep, int) and not isinstance(rep, bool):
                entry["repetition"] = rep + shift
    return sweep


def run_json(run: dict[str, Any], version: int) -> dict[str, Any]:
    """run.json, written by `version`, in the current shape. `schema_version` stays what
    the file said."""
    if "topology" in run:
        run["topology"] = topology(run["topology"])
    if version < 2 and isinstance(run.get("summary"), dict):
        run["summary"].setdefault("ledger", None)  # absent without counters until version 2
    return run


def topology(topo: Any) -> Any:
    """A run across hosts gave `topology` as {host: topology} up to version 1; from version 2
    it is {"hosts": {host: topology}}. A one-host topology is unchanged."""
    if (isinstance(topo, Mapping) and topo and not set(topo) & set(TOPOLOGY_KEYS)
            and all(isinstance(v, Mapping) for v in topo.values())):
        return {"hosts": dict(topo)}
    return topo
