"""Sweeps: the cross product of a config's [sweep] table, each point run.repetitions times.

Every trial is a full `pps run` saved under OUT/trials/NNNN. After each trial the sweep
rewrites OUT/sweep.json (config, trials, status of each) and OUT/runs.parquet (one row per
trial), so an interruption at any moment leaves a directory that `report`, `compare` and
`--resume` can read. When the sweep ends (done, failed or interrupted) it writes
OUT/counters.parquet: every trial's counters with a `trial` column, copied a row group at a
time. Repetitions are numbered from 1. Nothing here prints: progress goes to a callback.
"""

from __future__ import annotations

import json
import os
import shutil
import signal
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pps.config.model import Config, expand_sweep
from pps.counters.ledger import LAYERS
from pps.errors import ConfigError, EnvironmentNotAble, RunFailed
from pps.results.latency import SPLIT
from pps.results.safe_io import describe_oserror, rescue_dir, write_atomic, write_text_atomic
from pps.results.spill import SpilledTable
from pps.results.store import (
    SCHEMA_VERSION,
    check_out_dir,
    dumps,
    read_sweep_json,
    read_trial,
    rescue_reason,
)

SWEEP_FILE = "sweep.json"
RUNS_FILE = "runs.parquet"
COUNTERS_FILE = "counters.parquet"
# What a trial costs besides warm-up + duration + drain (spawning, pinning, counters,
# writing tables): the first ETA uses it, later ones use the measured trial times.
TRIAL_OVERHEAD_S = 0.5

ProgressFn = Callable[[dict[str, Any]], None]


@dataclass
class TrialSpec:
    trial: int
    point: dict[str, Any]
    repetition: int  # from 1
    config: Config

    @property
    def name(self) -> str:
        return f"{self.trial:04d}"

    @property
    def label(self) -> str:
        params = " ".join(f"{k}={_plain(v)}" for k, v in self.point.items())
        return f"{params} rep {self.repetition}".strip()


@dataclass
class SweepResult:
    out: Path
    runs: pd.DataFrame
    statuses: dict[str, int]
    interrupted: bool = False
    failures: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # saved elsewhere than asked, and why

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.statuses.get("pending", 0) == 0


def plan_trials(config: Config) -> list[TrialSpec]:
    """Every trial of the sweep. Repetitions are the outer loop: on a noisy host a drift over
    time then spreads over all points alike instead of biasing the points run last."""
    points = expand_sweep(config)
    trials = []
    for rep in range(1, config.run.repetitions + 1):
        for point, point_config in points:
            trials.append(TrialSpec(len(trials), point, rep, point_config))
    return trials


def _plain(value: Any) -> Any:
    """A sweep value as a table cell: CPU tuples become kernel-syntax-like strings."""
    if isinstance(value, (tuple, list)):
        return ",".join(str(v) for v in value)
    return value


def config_json(config: Config) -> dict[str, Any]:
    """The resolved config as it reads back from JSON, so saved and new configs compare."""
    return json.loads(dumps(config.to_dict()))


def flatten(d: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in d.items():
        dotted = f"{prefix}{key}"
        if isinstance(value, dict) and value and key != "sweep":
            out.update(flatten(value, dotted + "."))
        else:
            out[dotted] = value
    return out


def config_differences(saved: dict[str, Any], current: dict[str, Any]) -> list[str]:
    a, b = flatten(saved), flatten(current)
    return [f"{k}: {a.get(k, '(unset)')!r} then, {b.get(k, '(unset)')!r} now"
            for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


# ----------------------------------------------------------------------------- rows

def trial_row(run: dict[str, Any], workers: pd.DataFrame | None) -> dict[str, Any]:
    """The runs-table columns of one trial, from its run.json and workers table. Report and
    compare use this too, so single runs and sweeps give the same columns."""
    s = run.get("summary", {})
    ledger = s.get("ledger") or {}
    lat = s.get("latency") or {}
    row: dict[str, Any] = {
        "tx_pps": s.get("tx_pps"), "rx_pps": s.get("rx_pps"),
        "tx_packets": s.get("tx_packets"), "rx_packets": s.get("rx_packets"),
        "loss_ratio": s.get("loss_ratio"),
    }
    layers = ledger.get("layers") or {}
    for layer in sorted(set(LAYERS) | set(layers)):
        row[f"drops_{layer}"] = layers.get(layer) if ledger else None
    row["unaccounted"] = ledger.get("unaccounted")
    row["latency_p50_ns"] = lat.get("p50_ns")
    row["latency_p99_ns"] = lat.get("p99_ns")
    for kind in SPLIT:  # only runs with kernel RX timestamps have these
        part = s.get(f"latency_{kind}")
        if part:
            row[f"{kind}_p50_ns"], row[f"{kind}_p99_ns"] = part.get("p50_ns"), part.get("p99_ns")
    row["receiver_cpu_s"] = None
    if workers is not None and {"role", "user_s", "sys_s"} <= set(workers.columns):
        recv = workers[workers["role"] == "receiver"]
        if not recv.empty:
            row["receiver_cpu_s"] = float(recv["user_s"].fillna(0).sum() + recv["sys_s"].fillna(0).sum())
    row["interrupted"] = bool(s.get("interrupted"))
    row["failure"] = s.get("failure")
    return row


def _read_row(trial_dir: Path) -> dict[str, Any]:
    trial = read_trial(trial_dir)
    return trial_row(trial.run, trial.tables.get("workers"))


# ----------------------------------------------------------------------------- state

@contextmanager
def _no_interrupt() -> Iterator[None]:
    """Hold Ctrl-C while the state files are written, so they are never half-updated; a
    Ctrl-C pressed meanwhile is delivered right after."""
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


class SweepState:
    """sweep.json and runs.parquet of one sweep directory."""

    def __init__(self, out: Path, config: Config, trials: list[TrialSpec]) -> None:
        self.out = out
        self.config = config
        self.trials = trials
        self.status = {t.trial: "pending" for t in trials}
        self.reasons: dict[int, str] = {}
        self.rows: dict[int, dict[str, Any]] = {}
        self.seconds: dict[int, float] = {}
        self.notes: list[str] = []   # where the sweep went when it could not be saved in `out`
        self.rescued = False

    def load(self, saved: dict[str, Any]) -> None:
        for entry in saved.get("trials") or []:
            trial = entry.get("trial")
            if type(trial) is not int or trial not in self.status:  # 1.0 or true: not a trial id
                continue
            status = entry.get("status", "pending")
            path = self.trial_dir(self.trials[trial])
            if status == "done" and (path / "run.json").exists():
                self.status[trial] = "done"
                self.rows[trial] = _read_row(path)
                self.seconds[trial] = entry.get("seconds") or 0.0

    def to_json(self) -> dict[str, Any]:
        return {
            "schema_version": SCHEMA_VERSION, "kind": "sweep", "source": self.config.source,
            "config": config_json(self.config),
            "points": [{k: _plain(v) for k, v in p.items()} for p, _ in expand_sweep(self.config)],
            "repetitions": self.config.run.repetitions,
            "trials": [{
                "trial": t.trial, "point": {k: _plain(v) for k, v in t.point.items()},
                "repetition": t.repetition, "status": self.status[t.trial],
                "reason": self.reasons.get(t.trial), "seconds": self.seconds.get(t.trial),
                "results": f"trials/{t.name}" if t.trial in self.rows else None,
            } for t in self.trials],
            "updated_at": time.time(),
        }

    def runs_table(self) -> pd.DataFrame:
        rows = []
        for t in self.trials:
            if t.trial not in self.rows:
                continue
            rows.append({"trial": t.trial, **{k: _plain(v) for k, v in t.point.items()},
                         "repetition": t.repetition, "status": self.status[t.trial],
                         **self.rows[t.trial], "results": f"trials/{t.name}"})
        return pd.DataFrame(rows)

    def trial_dir(self, spec: TrialSpec) -> Path:
        return self.out / "trials" / spec.name

    def write_counters(self) -> None:
        """OUT/counters.parquet: the counters of every trial that has a result, in trial
        order, with a `trial` column first; one row group at a time, never a whole table in
        memory. A trial without a counters table (collect.enabled = false) adds nothing;
        with none at all, no file is written. When that fails, the sweep says so in its
        notes: every trial's own table is still there."""
        sources = [(t.trial, self.trial_dir(t) / COUNTERS_FILE) for t in self.trials
                   if t.trial in self.rows]
        sources = [(n, p) for n, p in sources if p.is_file()]
        target = self.out / COUNTERS_FILE
        try:
            if not sources:
                return
            write_atomic(target, lambda f: _append_counters(f, sources))
        except (OSError, ValueError, TypeError) as exc:  # pyarrow's are ValueError, TypeError
            reason = describe_oserror(exc) if isinstance(exc, OSError) else str(exc)
            self.notes.append(f"{target}: not written ({reason}); each trial's "
                              f"trials/NNNN/{COUNTERS_FILE} has its counters")

    def save(self) -> None:
        """Rewrite sweep.json and runs.parquet; when that fails (a full or read-only disk),
        move the sweep to a rescue directory and go on there."""
        with _no_interrupt():
            try:
                self._write_index()
            except OSError as exc:
                self.move_to_rescue(describe_oserror(exc))

    def _write_index(self) -> None:
        runs = self.runs_table()
        write_atomic(self.out / RUNS_FILE, lambda f: runs.to_parquet(f, index=False))
        write_text_atomic(self.out / SWEEP_FILE, dumps(self.to_json(), indent=2))

    def adopt(self, spec: TrialSpec, written: Path, reason: str) -> None:
        """A trial that could not be saved in its place and went to a rescue directory of its
        own: the sweep follows it to a rescue directory and takes the trial in there."""
        if not self.rescued:
            self.move_to_rescue(reason)
        target = self.trial_dir(spec)
        try:
            if target.exists():
                shutil.rmtree(target)
            shutil.move(str(written), str(target))
        except OSError as exc:
            self.notes.append(f"trial {spec.name} stays in {written}: cannot move it into "
                              f"{self.out}: {describe_oserror(exc)}")

    def move_to_rescue(self, reason: str) -> None:
        """Copy every finished trial to a fresh rescue directory and save the sweep there from
        now on. RunFailed when even that cannot be written."""
        old = self.out
        try:
            rescue = rescue_dir("sweep")
            for t in self.trials:
                source = self.trial_dir(t)
                if t.trial in self.rows and source.is_dir():
                    shutil.copytree(source, rescue / "trials" / t.name, symlinks=True)
            (rescue / "trials").mkdir(exist_ok=True)
            self.out, self.rescued = rescue, True
            self._write_index()
        except OSError as exc:
            raise RunFailed(f"could not save the sweep in {old} ({reason}), nor in a rescue "
                            f"directory: {describe_oserror(exc)}") from None
        self.notes.append(f"could not save the sweep in {old} ({reason}); moved it to {rescue} "
                          "(finished trials copied) and went on there")

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for s in self.status.values():
            out[s] = out.get(s, 0) + 1
        return out


def read_sweep(out: Path) -> dict[str, Any]:
    if not os.path.lexists(Path(out) / SWEEP_FILE):
        raise ConfigError(f"{out}: not a sweep directory (no {SWEEP_FILE})")
    return read_sweep_json(out)


def _prepare(config: Config, out: Path, resume: bool, state: SweepState) -> None:
    if out.exists() and not resume and (out / SWEEP_FILE).exists():
        raise ConfigError(f"{out}: already exists and is not empty; choose another --out "
                          "(pass --resume to continue it)")
    check_out_dir(out, resume=resume)
    try:
        _prepare_dir(config, out, resume, state)
    except OSError as exc:  # before any trial: nothing is lost, so it is bad --out, exit 2
        raise ConfigError(f"{out}: cannot prepare the sweep directory: "
                          f"{describe_oserror(exc)}") from None


def _prepare_dir(config: Config, out: Path, resume: bool, state: SweepState) -> None:
    if resume:
        saved = read_sweep(out)
        differs = config_differences(saved.get("config", {}), config_json(config))
        if differs:
            shown = "; ".join(differs[:4]) + (f"; and {len(differs) - 4} more" if len(differs) > 4 else "")
            raise ConfigError(f"{out}: cannot resume, the config differs from the sweep's: {shown}")
        state.load(saved)
        # Trials that never finished (interrupted, failed) run again; keep what they saved
        # apart, out of trials/, so the sweep's trials are only the ones it counts.
        for t in state.trials:
            path = out / "trials" / t.name
            if state.status[t.trial] != "done" and os.path.lexists(path):
                aside = out / "unfinished" / f"{t.name}-{int(time.time())}"
                aside.parent.mkdir(parents=True, exist_ok=True)
                os.rename(path, aside)
        (out / "trials").mkdir(exist_ok=True)
        return
    (out / "trials").mkdir(parents=True, exist_ok=True)


def run_sweep(config: Config, out: Path, resume: bool = False, progress: ProgressFn | None = None,
              *, execute: Callable[..., Any] | None = None,
              status: ProgressFn | None = None, confirmed: bool = False) -> SweepResult:
    """Run (or, with resume, finish) every trial of `config`'s sweep under `out`.

    `progress` gets dicts: {"event": "start"|"trial"|"end", "done", "total", "eta_s",
    "trial", "label", "rx_pps", "status"}. `status` gets the runner's per-interval lines.
    """
    from pps.run import pipeline as runner

    execute = execute or runner.execute
    out = Path(out)
    runner.check_target_allowed(config, confirmed)  # refuse before the first trial, not during
    trials = plan_trials(config)
    state = SweepState(out, config, trials)
    _prepare(config, out, resume, state)
    state.save()
    emit = progress or (lambda _e: None)
    todo = [t for t in trials if state.status[t.trial] != "done"]
    total = len(trials)
    expected = (config.run.warmup + config.run.duration + config.run.drain + TRIAL_OVERHEAD_S)
    emit({"event": "start", "done": total - len(todo), "total": total,
          "eta_s": expected * len(todo), "label": None, "rx_pps": None})
    failures: list[str] = []
    interrupted = False
    try:
        for position, spec in enumerate(todo):
            began = time.monotonic()
            emit({"event": "begin", "done": total - len(todo) + position, "total": total,
                  "trial": spec.trial, "label": spec.label})
            try:
                report = execute(spec.config, out=state.trial_dir(spec), status=status,
                                 confirmed=confirmed)
            except (EnvironmentNotAble, RunFailed) as exc:
                state.status[spec.trial] = "failed"
                state.reasons[spec.trial] = str(exc)
                failures.append(f"trial {spec.name} ({spec.label}): {exc}")
                state.save()
                continue
            state.seconds[spec.trial] = time.monotonic() - began
            _follow_rescued_trial(state, spec, report)
            summary = report.summary  # a pps.results.record.Summary, read as the mapping it also is
            state.rows[spec.trial] = trial_row(report.run_json, report.tables.get("workers"))
            if summary.get("interrupted"):
                state.status[spec.trial] = "interrupted"
                interrupted = True
            elif summary.get("failure"):
                state.status[spec.trial] = "failed"
                state.reasons[spec.trial] = summary["failure"]
                failures.append(f"trial {spec.name} ({spec.label}): {summary['failure']}")
            else:
                state.status[spec.trial] = "done"
            state.save()
            if interrupted:
                break
            finished = [state.seconds[t] for t in state.seconds if t in state.rows]
            per_trial = sum(finished) / len(finished) if finished else expected
            left = len(todo) - position - 1
            emit({"event": "trial", "done": total - left, "total": total, "eta_s": per_trial * left,
                  "trial": spec.trial, "label": spec.label, "rx_pps": summary.get("rx_pps"),
                  "status": state.status[spec.trial]})
    except KeyboardInterrupt:
        # Ctrl-C outside a trial's measurement (setup, saving): that trial stays pending.
        interrupted = True
    try:  # written whole or not at all (a temporary file renamed): Ctrl-C may stop it
        state.write_counters()
    except KeyboardInterrupt:
        interrupted = True
        state.notes.append(f"{state.out / COUNTERS_FILE}: not written (interrupted); each "
                           f"trial's trials/NNNN/{COUNTERS_FILE} has its counters")
    counts = state.counts()
    emit({"event": "end", "done": counts.get("done", 0), "total": total, "eta_s": 0.0,
          "interrupted": interrupted})
    return SweepResult(state.out, state.runs_table(), counts, interrupted, failures, state.notes)


def _append_counters(f: Any, sources: list[tuple[int, Path]]) -> None:
    """Every source table's row groups, in the current columns with `trial` first, to `f`.
    Tables of older schema versions (a resumed sweep) are mapped; a column only some trials
    have (`host`, across hosts) is null in the others."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    from pps.results import schema

    columns: list[str] = ["trial"]
    chunks_of = []
    for trial, path in sources:
        table = SpilledTable(path, 0).transformed(lambda df: schema.table("counters", df))
        chunks_of.append((trial, table))
        columns += [c for c in table.empty().columns if c not in columns]
    writer = None
    for trial, table in chunks_of:
        for df in table.chunks():
            df = _typed(df.reindex(columns=columns).assign(trial=trial))
            if writer is None:
                arrow_schema = pa.Schema.from_pandas(df, preserve_index=False)
                writer = pq.ParquetWriter(f, arrow_schema)
            writer.write_table(pa.Table.from_pandas(df, schema=arrow_schema, preserve_index=False))
    if writer is not None:
        writer.close()


def _typed(df: pd.DataFrame) -> pd.DataFrame:
    """A chunk in the dtypes every chunk is written in (a column a trial lacks comes as
    float NaN): trial int64, the key and name columns text, queue and cpu nullable integers."""
    df = df.astype({"trial": "int64"})
    for column in df.columns:
        if column in ("queue", "cpu"):
            df[column] = df[column].astype("Int64")
        elif column in ("host", "source", "netns", "device", "name", "kernel_name", "layer"):
            df[column] = df[column].astype("str")
    return df


def _follow_rescued_trial(state: SweepState, spec: TrialSpec, report: Any) -> None:
    """When the runner saved a trial elsewhere than asked (its disk failed), take it in."""
    written = getattr(report, "results_dir", None)
    if written is None or Path(written) == state.trial_dir(spec):
        return
    state.adopt(spec, Path(written), rescue_reason(written, f"trial saved in {written}"))

