"""The `samples` table of a run of any length: one row per worker per sampling interval,
written to disk in chunks as the run goes (pps.results.spill) instead of kept in a list.

Each row gets, as it is added, what summary.samples_table used to compute over the whole
table afterwards: `<counter>_delta` for the rate counters (the change since the worker's
previous row; its first row's delta is its value) and `pps` (packets_delta over the time
since that row; over t for the first). Only each worker's last row is remembered for that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pandas as pd

from pps.results.spill import ParquetSink, SpillDir, SpilledTable

RATE_COLUMNS = ("packets", "bytes", "syscalls", "errors", "enobufs", "eagain")
CHUNK_ROWS = 1024  # rows kept before a row group is written (~2.5 MB of dicts)
# The first row group goes out early, so the Parquet writer's one-time cost is paid during
# warm-up and memory is flat from there on.
FIRST_CHUNK_ROWS = 64


class SampleLog:
    """Rows in, row groups out. Iterating gives the rows not yet written (tests, small runs)."""

    def __init__(self, chunk_rows: int = CHUNK_ROWS) -> None:
        self.chunk_rows = chunk_rows
        self.rows = 0
        self._pending: list[dict[str, Any]] = []
        self._last: dict[str, tuple[float, dict[str, Any]]] = {}
        self._spill: SpillDir | None = None
        self._sink: ParquetSink | None = None
        self._table: SpilledTable | None = None

    def append(self, row: dict[str, Any]) -> None:
        """One worker's counters at one sample (t, worker, role, index and the counters)."""
        t, worker = row["t"], row["worker"]
        prev_t, prev = self._last.get(worker, (0.0, {}))
        out = dict(row)
        for column in RATE_COLUMNS:
            out[f"{column}_delta"] = int(row[column] - prev.get(column, 0))
        span = t - prev_t
        out["pps"] = out["packets_delta"] / span if span > 0 else float("nan")
        self._last[worker] = (t, {c: row[c] for c in RATE_COLUMNS})
        self._pending.append(out)
        self.rows += 1
        if len(self._pending) >= (self.chunk_rows if self._sink else FIRST_CHUNK_ROWS):
            self._flush()

    def __len__(self) -> int:
        return self.rows

    def _flush(self) -> None:
        if not self._pending:
            return
        if self._sink is None:
            self._spill = SpillDir()
            self._sink = ParquetSink(Path(self._spill.path) / "samples.parquet", owner=self._spill)
        chunk = pd.DataFrame(self._pending).sort_values(["t", "role", "index"], kind="stable")
        self._sink.write(chunk.reset_index(drop=True))
        self._pending = []

    def table(self) -> pd.DataFrame | SpilledTable:
        """The whole table: in memory while it fits one chunk, else the file on disk."""
        if self._table is not None:
            return self._table
        if self._sink is None:
            df = pd.DataFrame(self._pending)
            if df.empty:
                return df
            return df.sort_values(["t", "role", "index"], kind="stable").reset_index(drop=True)
        self._flush()
        self._table = self._sink.close()
        return self._table
