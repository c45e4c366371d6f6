"""Shared by tests/unit/test_results_io.py and tests/system/test_results_io_mounts.py: rescue
directories (where a measurement goes when its disk fails), a trial's tables, and a trial
without packets saved for real."""

from __future__ import annotations

import contextlib
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd

from pps.results.safe_io import RESCUE_PREFIX
from pps.results.store import save_trial


@contextlib.contextmanager
def rescues_removed() -> Iterator[list[Path]]:
    """Rescue directories made inside the block, listed so they are removed after it."""
    before = set(Path(tempfile.gettempdir()).glob(f"{RESCUE_PREFIX}-*"))
    found: list[Path] = []
    try:
        yield found
    finally:
        for path in set(Path(tempfile.gettempdir()).glob(f"{RESCUE_PREFIX}-*")) - before:
            shutil.rmtree(path, ignore_errors=True)


def is_rescue(path: Path) -> bool:
    path = Path(path)
    return path.parent == Path(tempfile.gettempdir()) and path.name.startswith(RESCUE_PREFIX)


def tables_of(report) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in report.tables.items() if v is not None}


def fake_execute(config, out, **_):
    """A trial without packets, saved for real with save_trial, as the runner does."""
    summary = {"tx_pps": config.senders.rate or 1e6, "rx_pps": config.senders.rate or 1e6,
               "sent": 1000, "received": 1000, "loss_ratio": 0.0, "tx_packets": 1000,
               "rx_packets": 1000, "interrupted": False, "failure": None}
    run_json = {"config": config.to_dict(), "summary": summary}
    tables = {"samples": pd.DataFrame({"t": [0.0], "pps": [1.0]})}
    saved = save_trial(out, run_json, tables)
    summary["results_dir"] = str(saved.path)
    return SimpleNamespace(summary=summary, run_json=run_json, tables=tables,
                           results_dir=saved.path, save_notes=list(saved.notes), outcome=None)
