"""Counters of a run of any length, in bounded memory: raw captures parsed in chunks while
the run goes, into the counters table (Parquet row groups) and running totals.

Sampling must stay cheap (see pps.counters.collectors.capture): the sampler only takes raw bytes.
Keeping them all and parsing after the run made memory and finish time grow with the number
of samples (1.6 GB and 30 s for 3,000 samples), so:

- `CounterStream` turns captures into rows and totals one at a time. It keeps only the
  running totals (pps.counters.table.RunningTotals: first, last, delta sum per series) and the
  rows of the chunk being filled; each full chunk becomes a Parquet row group on disk.
- `ChildStream` runs a CounterStream in a child process (`python -m pps.counters.stream DIR`)
  at the lowest priority (nice 19, SCHED_BATCH), on the CPUs the orchestrator was moved to:
  parsing takes only time the workers leave. The sampler appends each capture to a segment
  file and hands over a segment every SEGMENT_S seconds (a rename); the child parses each
  segment and deletes it. Nothing blocks the sampler: a starved child leaves segments on
  disk, not captures in memory. At the end the child writes `counters.parquet`,
  `totals.parquet` and `state.json`, and the sampler reads the small ones back.

The child ignores terminal signals (a Ctrl-C'd run still saves its counters) and exits when
its stdin, a pipe from the sampler, closes without an end marker: it never outlives pps.
"""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import resource
import select
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from pps.counters import collectors
from pps.counters.collectors import Scope
from pps.counters.collectors.capture import Capture, Capturer
from pps.counters.table import COLUMNS, KEY, RunningTotals
from pps.results.spill import ParquetSink, SpillDir, SpilledTable, schema_of

CHUNK_ROWS = 50_000   # rows per Parquet row group (about 100 samples of a lab run)
SEGMENT_S = 1.0       # a segment of captures goes to the child this often
POLL_S = 0.2          # the child looks for new segments this often
FINISH_TIMEOUT_S = 300.0
NOT_SET = 1 << 63     # ~0ULL "not set" markers: no real counter gets there; int64 can't hold it

# One row of each column's type: the table's schema, whatever the first chunk lacks.
_EXAMPLE = pd.DataFrame({"t": [0.0], "source": ["s"], "netns": ["n"], "device": ["d"],
                         "queue": pd.array([0], dtype="Int64"), "cpu": pd.array([0], dtype="Int64"),
                         "name": ["n"], "value": np.array([0], dtype="int64"), "delta": [0.0],
                         "reset": [False]})[COLUMNS]


@dataclass
class StreamResult:
    """What a finished stream gives the run: the table on disk, the totals, what was missing."""

    table: SpilledTable | None
    totals: pd.DataFrame
    unavailable: dict[tuple[str, str | None, str | None], str] = field(default_factory=dict)
    snapshots: int = 0
    problem: str | None = None  # why the counters are incomplete, if they are
    cpu_s: float = 0.0  # CPU time the parsing took (the child's, when it ran in one)


class CounterStream:
    """Captures in, counters table rows (to `sink`) and running totals out."""

    def __init__(self, capturer: Capturer, sink: ParquetSink,
                 chunk_rows: int = CHUNK_ROWS) -> None:
        self.capturer = capturer
        self.sink = sink
        self.totals = RunningTotals()
        self.unavailable: dict[tuple[str, str | None, str | None], str] = {}
        self.snapshots = 0
        self.chunk_rows = chunk_rows
        self._chunk: list[tuple[float, np.ndarray, np.ndarray, np.ndarray, np.ndarray]] = []
        self._rows = 0

    def add(self, t: float, capture: Capture) -> None:
        readings, missing = self.capturer.parse(capture)
        for m in missing:
            self.unavailable.setdefault((m.source, m.device, m.netns), m.reason)
        self.add_readings(t, readings)

    def add_readings(self, t: float, readings: list[tuple[str | None, collectors.Reading]]) -> None:
        series = self.totals.series
        at: dict[int, int] = {}  # series -> value; a series read twice keeps its last value
        for ns, r in readings:
            if r.value < NOT_SET:
                at[series((r.source, ns, r.device, r.queue, r.cpu, r.name))] = r.value
        ids = np.fromiter(at.keys(), dtype="int64", count=len(at))
        values = np.fromiter(at.values(), dtype="int64", count=len(at))
        delta, reset = self.totals.add(ids, values)
        self._chunk.append((float(t), ids, values, delta, reset))
        self._rows += len(ids)
        self.snapshots += 1
        if self._rows >= self.chunk_rows:
            self.flush()

    def flush(self) -> None:
        if not self._chunk:
            return
        ts = np.concatenate([np.full(len(c[1]), c[0]) for c in self._chunk])
        ids, values, delta, reset = (np.concatenate([c[i] for c in self._chunk]) for i in (1, 2, 3, 4))
        order = np.lexsort((ts, ids))  # series by series, each in time order: compresses well
        rows = ids[order]
        # Each key column: the series' keys (one per series, not per row), taken per row.
        per_series = np.empty((len(self.totals.keys), len(KEY)), dtype=object)
        per_series[:] = self.totals.keys
        df = pd.DataFrame({k: per_series[rows, i] for i, k in enumerate(KEY)})
        df = df.assign(t=ts[order], value=values[order], delta=delta[order], reset=reset[order])
        df["queue"] = df["queue"].astype("Int64")
        df["cpu"] = df["cpu"].astype("Int64")
        self.sink.write(df[COLUMNS])
        self._chunk, self._rows = [], 0

    def finish(self) -> StreamResult:
        self.flush()
        return StreamResult(self.sink.close(), self.totals.frame(), dict(self.unavailable),
                            self.snapshots)


def counters_schema(host: bool = False):
    """The counters table's schema; across hosts it has a host column after t."""
    example = _EXAMPLE.copy()
    if host:
        example.insert(1, "host", "h")
    return schema_of(example)


def counters_sink(directory: Path, owner: SpillDir | None = None) -> ParquetSink:
    return ParquetSink(Path(directory) / "counters.parquet", counters_schema(), owner)


# --------------------------------------------------------------------------- the child

def _job(directory: Path) -> tuple[Capturer, ParquetSink]:
    job = json.loads((directory / "job.json").read_text())
    scopes = [Scope(s["netns"], tuple(s["devices"]), tuple(s["ports"])) for s in job["scopes"]]
    return Capturer(scopes, job["sources"]), counters_sink(directory)


def _segments(directory: Path) -> list[Path]:
    return sorted(directory.glob("*.seg"))


def _take_segment(stream: CounterStream, segment: Path) -> None:
    with open(segment, "rb") as f:
        while True:
            try:
                t, _mark, capture = pickle.load(f)
            except EOFError:
                break
            stream.add(t, capture)
    segment.unlink()


def _cpu_s() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def child_main(directory: Path) -> int:
    """Parse segments until the end marker; 0 with the results written, 1 if orphaned."""
    for sig in (signal.SIGINT, signal.SIGHUP, signal.SIGTERM):
        signal.signal(sig, signal.SIG_IGN)  # the sampler decides when this ends
    with contextlib.suppress(OSError):
        os.setpriority(os.PRIO_PROCESS, 0, 19)
    with contextlib.suppress(OSError, AttributeError):
        os.sched_setscheduler(0, os.SCHED_BATCH, os.sched_param(0))
    capturer, sink = _job(directory)
    stream = CounterStream(capturer, sink)
    started = _cpu_s()  # what the parsing costs, not the interpreter's start-up
    while True:
        ended = (directory / "end").exists()  # before listing: every segment is there by then
        for segment in _segments(directory):
            _take_segment(stream, segment)
        if ended:
            break
        ready, _, _ = select.select([0], [], [], POLL_S)
        if ready and not os.read(0, 4096):
            return 1  # the sampler is gone without an end: nobody wants the results
    result = stream.finish()
    result.totals.to_parquet(directory / "totals.parquet", index=False)
    state = {"snapshots": result.snapshots, "rows": result.table.rows if result.table else 0,
             "unavailable": [[*k, v] for k, v in result.unavailable.items()],
             "cpu_s": _cpu_s() - started}
    tmp = directory / "state.json.tmp"
    tmp.write_text(json.dumps(state))
    tmp.rename(directory / "state.json")  # its presence says everything else is written
    return 0


# --------------------------------------------------------------------------- the parent

class ChildStream:
    """The sampler's side: captures to segment files, a child parsing them, results back."""

    def __init__(self, scopes: list[Scope], sources: frozenset[str]) -> None:
        self.spill = SpillDir()
        self.dir = self.spill.path
        (self.dir / "job.json").write_text(json.dumps({
            "scopes": [{"netns": s.netns, "devices": list(s.devices), "ports": list(s.ports)}
                       for s in scopes], "sources": sorted(sources)}))
        self._seq = 0
        self._file = None
        self._opened_at = 0.0
        self._child: subprocess.Popen | None = None
        self._pinned = False
        self.result: StreamResult | None = None
        self._start()  # now, so its start-up overlaps the workers' (a short run waits less)

    def _start(self) -> None:
        env = {**os.environ, "PYTHONPATH": os.pathsep.join(
            [str(Path(__file__).resolve().parent.parent), os.environ.get("PYTHONPATH", "")])}
        with open(self.dir / "stderr", "wb") as err:
            self._child = subprocess.Popen(
                [sys.executable, "-m", "pps.counters.stream", str(self.dir)], stdin=subprocess.PIPE,
                stdout=subprocess.DEVNULL, stderr=err, close_fds=True, start_new_session=True,
                env=env)
        self._stop_child = _finalize_child(self, self._child)

    def add(self, t: float, mark: str, capture: Capture) -> None:
        if not self._pinned:  # the first capture is inside the trial: follow the sampler's
            self._pinned = True  # CPUs (pps.host.selfpin moved it off the workers' ones)
            with contextlib.suppress(OSError):
                os.sched_setaffinity(self._child.pid, os.sched_getaffinity(0))
        now = time.monotonic()
        if self._file is None:
            self._file = open(self.dir / f"{self._seq:08d}.part", "wb")
            self._opened_at = now
        pickle.dump((t, mark, capture), self._file, protocol=pickle.HIGHEST_PROTOCOL)
        if mark != "interval" or now - self._opened_at >= SEGMENT_S:
            self._hand_over()

    def _hand_over(self) -> None:
        if self._file is None:
            return
        self._file.close()
        os.rename(self.dir / f"{self._seq:08d}.part", self.dir / f"{self._seq:08d}.seg")
        self._file = None
        self._seq += 1

    def pending(self) -> int:
        """Segments the child has not parsed yet (how far behind it is)."""
        return len(_segments(self.dir))

    def finish(self, timeout_s: float = FINISH_TIMEOUT_S) -> StreamResult:
        if self.result is not None:
            return self.result
        self._hand_over()
        (self.dir / "end").touch()
        problem = None
        if self._pinned:  # else nothing was captured: the child has nothing to wait for
            try:
                code = self._child.wait(timeout_s)
            except subprocess.TimeoutExpired:
                self._child.kill()
                self._child.wait()
                code = None
            if code != 0:
                err = (self.dir / "stderr").read_text(errors="replace").strip().splitlines()
                problem = ("counters: parsing did not finish in time" if code is None else
                           f"counters: the parser failed ({err[-1] if err else f'exit {code}'})")
        self.result = self._collect(problem)
        return self.result

    def _collect(self, problem: str | None) -> StreamResult:
        state_file = self.dir / "state.json"
        if problem is not None or not state_file.exists():
            return StreamResult(None, RunningTotals().frame(), {}, 0,
                                problem or "counters: no capture was taken")
        state = json.loads(state_file.read_text())
        totals = pd.read_parquet(self.dir / "totals.parquet")
        table = SpilledTable(self.dir / "counters.parquet", state["rows"], self.spill)
        unavailable = {(s, d, n): reason for s, d, n, reason in state["unavailable"]}
        return StreamResult(table, totals, unavailable, state["snapshots"], cpu_s=state["cpu_s"])


def _finalize_child(owner: Any, child: subprocess.Popen):
    """Kill the child if its sampler is dropped unfinished (an error before the results)."""
    import weakref

    def stop() -> None:
        if child.poll() is None:
            child.kill()
            child.wait()
        if child.stdin is not None:
            with contextlib.suppress(OSError):
                child.stdin.close()
    return weakref.finalize(owner, stop)


if __name__ == "__main__":
    sys.exit(child_main(Path(sys.argv[1])))
