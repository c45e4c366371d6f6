"""The pieces that keep a long run's memory flat: running totals that agree with the table's,
the samples log that derives what samples_table derived, tables spilled to disk and saved
from there, and status lines at their own pace."""

from __future__ import annotations

import math
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pps.counters.collectors import Reading
from pps.counters.stream import CounterStream, counters_sink
from pps.counters.table import KEY, WRAP32, RunningTotals, to_frame, totals
from pps.results.sample_log import SampleLog
from pps.results.spill import SpillDir, SpilledTable
from pps.results.store import read_trial, save_trial
from pps.run.status_pace import StatusPace

# Series of every kind: a 64-bit counter, a 32-bit one (softnet wraps), a gauge.
SERIES = [("snmp", "UdpInDatagrams", None), ("softnet", "dropped", 0),
          ("socket", "rx_queue", None)]
step = st.one_of(st.integers(0, 1000), st.integers(-50, -1), st.just("wrap"), st.just("reset"))


def _walk(steps: list) -> list[list[tuple[str | None, Reading]]]:
    values = [WRAP32 - 300, WRAP32 - 300, 10]
    out = []
    for i, s in enumerate(steps):
        k = i % len(SERIES)
        if s == "wrap":
            values[k] = (values[k] + 500) % WRAP32 if SERIES[k][0] == "softnet" else values[k] + 500
        elif s == "reset":
            values[k] = 3
        else:
            values[k] = max(0, values[k] + s)
        out.append([("ns", Reading(src, name, values[j], "dev", None, cpu))
                    for j, (src, name, cpu) in enumerate(SERIES)])
    return out


@settings(max_examples=60, deadline=None)
@given(st.lists(step, min_size=1, max_size=40))
def test_running_totals_equal_the_tables_totals(steps):
    snapshots = [(float(t), readings) for t, readings in enumerate(_walk(steps))]
    running = RunningTotals()
    for _, readings in snapshots:
        ids = np.array([running.series((r.source, ns, r.device, r.queue, r.cpu, r.name))
                        for ns, r in readings])
        running.add(ids, np.array([r.value for _, r in readings], dtype="int64"))
    expected = totals(to_frame(snapshots)).set_index(KEY).sort_index()
    got = running.frame().set_index(KEY).sort_index()[expected.columns]
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_stream_writes_the_same_table_as_to_frame_in_row_groups(tmp_path):
    class Parsed:  # a capturer whose captures are already Readings
        def parse(self, cap):
            return cap, []
    snapshots = [(float(t), readings) for t, readings in enumerate(_walk([5, 7, "wrap", 1, -3, "reset"] * 20))]
    stream = CounterStream(Parsed(), counters_sink(tmp_path), chunk_rows=10)
    for t, readings in snapshots:
        stream.add(t, readings)
    result = stream.finish()
    assert result.snapshots == len(snapshots) and result.table.rows == 3 * len(snapshots)
    written = result.table.read().sort_values([*KEY, "t"]).reset_index(drop=True)
    expected = to_frame(snapshots).sort_values([*KEY, "t"]).reset_index(drop=True)
    pd.testing.assert_frame_equal(written, expected, check_dtype=False)
    import pyarrow.parquet as pq
    assert pq.ParquetFile(result.table.path).num_row_groups > 1  # streamed, not whole


def _rows(n_samples: int) -> list[dict]:
    rows = []
    for i in range(1, n_samples + 1):
        for role, index in (("receiver", 0), ("sender", 0), ("sender", 1)):
            worker = f"{role}-{index}"
            rows.append({"t": 0.05 * i, "phase": "measure", "host": "local", "worker": worker,
                         "role": role, "index": index, "cpu": index,
                         **{c: i * (7 + index) + (role == "sender") for c in
                            ("packets", "bytes", "syscalls", "errors", "enobufs", "eagain")}})
    return rows


def _old_samples_table(rows: list[dict]) -> pd.DataFrame:
    """summary.samples_table as it was, over every row at once."""
    df = pd.DataFrame(rows).sort_values(["worker", "t"]).reset_index(drop=True)
    dt = df.groupby("worker")["t"].diff().fillna(df["t"])
    for column in ("packets", "bytes", "syscalls", "errors", "enobufs", "eagain"):
        df[f"{column}_delta"] = df.groupby("worker")[column].diff().fillna(df[column]).astype("int64")
    df["pps"] = df["packets_delta"] / dt
    return df.sort_values(["t", "role", "index"]).reset_index(drop=True)


@pytest.mark.parametrize("n_samples", [3, 900])  # one chunk in memory; many on disk
def test_sample_log_derives_what_samples_table_did(n_samples):
    rows = _rows(n_samples)
    log = SampleLog(chunk_rows=256)
    for row in rows:
        log.append(row)
    table = log.table()
    got = table.read() if isinstance(table, SpilledTable) else table
    assert isinstance(table, SpilledTable) == (n_samples > 100)
    pd.testing.assert_frame_equal(got, _old_samples_table(rows), check_dtype=False)


def test_a_spilled_table_is_saved_whole_with_csv_and_its_spill_goes_with_it(tmp_path):
    log = SampleLog(chunk_rows=100)
    for row in _rows(400):
        log.append(row)
    table = log.table()
    spill_dir = table.path.parent
    saved = save_trial(tmp_path / "r", {"summary": {}}, {"samples": table}, csv=True)
    back = read_trial(saved.path).tables["samples"]
    # Written in the results directory's columns (t is t_s from schema 2), row group by row group.
    assert len(back) == 1200 and back.equals(table.read().rename(columns={"t": "t_s"}))
    assert len(pd.read_csv(saved.path / "samples.csv")) == 1200
    del log, table
    import gc
    gc.collect()
    assert not spill_dir.exists()  # removed with the last reference


def test_spill_dir_is_removed_when_dropped():
    d = SpillDir()
    path = d.path
    assert path.is_dir()
    del d
    import gc
    gc.collect()
    assert not path.exists()


def test_the_spill_of_a_killed_process_is_removed_by_the_next(tmp_path, monkeypatch):
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path))
    killed = subprocess.run(  # makes a spill directory and dies without running finalizers
        [sys.executable, "-c", "import os, pps.results.spill as s; d = s.SpillDir(); "
                               "print(d.path, flush=True); os._exit(9)"],
        capture_output=True, text=True, env={**os.environ, "TMPDIR": str(tmp_path)})
    orphan = Path(killed.stdout.strip())
    assert orphan.is_dir() and orphan.parent == tmp_path
    mine = SpillDir()
    assert not orphan.exists() and mine.path.is_dir()  # a live owner's spill is kept


def test_status_lines_keep_their_own_pace():
    pace = StatusPace(1.0, 0.05)
    lines = []
    for i in range(1, 101):  # 5 s of samples at 20 Hz, a little late each time
        t = 0.05 * i + 0.001
        line = pace.line(t, {"sender": 1000 * i, "receiver": 900 * i})
        if line:
            lines.append(line)
    assert len(lines) == 5
    assert all(math.isclose(ln["t1"] - ln["t0"], 1.0, abs_tol=0.01) for ln in lines[1:])
    assert all(math.isclose(ln["tx_pps"], 20_000, rel_tol=0.01) for ln in lines[1:])
    every = StatusPace(0.0, 0.05)
    assert all(every.line(0.05 * i, {"sender": i}) for i in range(1, 11))
    slow = StatusPace(1.0, 2.0)  # sampling slower than the display: a line per sample
    assert all(slow.line(2.0 * i, {"sender": i}) for i in range(1, 6))
