"""The results directory: run.json plus Parquet tables, written atomically, read back
by report and compare whatever schema version wrote them.

Layout of one trial:   DIR/run.json  DIR/<table>.parquet (samples, workers, flows,
                       counters, latency)  [DIR/<table>.csv with --csv]
Layout of a sweep:     DIR/sweep.json  DIR/runs.parquet  DIR/trials/NNNN/ (one trial each)
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from .errors import ConfigError, PpsError

SCHEMA_VERSION = 1
TABLES = ("samples", "workers", "flows", "counters", "latency")


def default_dir(prefix: str = "pps") -> Path:
    return Path("results") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    if isinstance(value, (set, tuple, Path)):
        return list(value) if not isinstance(value, Path) else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(obj, default=_json_default, **kwargs)


def write_trial(out: Path, run_json: dict[str, Any], tables: dict[str, pd.DataFrame],
                csv: bool = False) -> Path:
    """Write one trial's directory atomically: a temporary sibling, then a rename."""
    out = Path(out)
    if out.exists():
        raise ConfigError(f"{out}: already exists; choose another --out")
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-", dir=out.parent))
    try:
        (tmp / "run.json").write_text(dumps({"schema_version": SCHEMA_VERSION, **run_json}, indent=2))
        for name, df in tables.items():
            if df is None:
                continue
            df.to_parquet(tmp / f"{name}.parquet", index=False)
            if csv:
                df.to_csv(tmp / f"{name}.csv", index=False)
        os.rename(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


@dataclass
class TrialResults:
    """One trial read back from disk."""

    path: Path
    run: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        return self.run.get("summary", {})


def _upgrade(run: dict[str, Any]) -> dict[str, Any]:
    """Bring an older run.json up to the current schema (version 1 is the first)."""
    version = run.get("schema_version", 1)
    if version > SCHEMA_VERSION:
        raise PpsError(f"results schema {version} is newer than this pps understands ({SCHEMA_VERSION})")
    return run


def read_trial(path: Path | str) -> TrialResults:
    path = Path(path)
    try:
        run = json.loads((path / "run.json").read_text())
    except FileNotFoundError:
        raise ConfigError(f"{path}: not a pps results directory (no run.json)") from None
    except ValueError as exc:
        raise ConfigError(f"{path}/run.json: not valid JSON: {exc}") from None
    tables = {}
    for name in TABLES:
        file = path / f"{name}.parquet"
        if file.exists():
            tables[name] = pd.read_parquet(file)
    latency = tables.get("latency")
    if latency is not None and "kind" not in latency.columns:
        latency.insert(0, "kind", "one_way")  # written before kernel timestamps: one-way only
    return TrialResults(path, _upgrade(run), tables)


def is_sweep(path: Path | str) -> bool:
    return (Path(path) / "sweep.json").exists()


def trial_dirs(path: Path | str) -> list[Path]:
    """Every trial under a results directory: itself, or the trials of a sweep."""
    path = Path(path)
    if is_sweep(path):
        return sorted(p for p in (path / "trials").iterdir() if (p / "run.json").exists())
    if (path / "run.json").exists():
        return [path]
    raise ConfigError(f"{path}: not a pps results directory (no run.json or sweep.json)")
