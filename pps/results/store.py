"""The results directory: run.json plus Parquet tables, written atomically, read back
by report and compare whatever schema version wrote them.

Layout of one trial:   DIR/run.json  DIR/<table>.parquet (samples, workers, flows,
                       counters, latency)  [DIR/<table>.csv with --csv]
Layout of a sweep:     DIR/sweep.json  DIR/runs.parquet  DIR/trials/NNNN/ (one trial each)

--out is checked before anything is measured (check_out_dir); if saving still fails after
the measurement, the trial goes to a rescue directory under the temp dir (save_trial) and
the caller is told where. Reading checks every file first (safe_io, shapes): a damaged,
foreign or newer results directory is one ConfigError line, exit 2. What an older schema
version wrote is read in the current shape (pps.results.schema): readers see one layout.
"""

from __future__ import annotations

import json
import os
import shutil
import stat
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pps.config import shapes
from pps.errors import ConfigError, RunFailed
from pps.results import safe_io, schema
from pps.results.schema import SCHEMA_VERSION
from pps.results.spill import SpilledTable

TABLES = ("samples", "workers", "flows", "counters", "latency")
MIN_FREE_BYTES = 1024 * 1024  # a trial's files take a few hundred KiB


def default_dir(prefix: str = "pps") -> Path:
    return Path("results") / f"{prefix}-{time.strftime('%Y%m%d-%H%M%S')}"


def _json_default(value: Any) -> Any:
    if hasattr(value, "item"):  # numpy scalars
        return value.item()
    from pps.results.record_base import Record

    if isinstance(value, Record):  # the typed objects of run.json
        return value.to_dict()
    if isinstance(value, (set, tuple, Path)):
        return list(value) if not isinstance(value, Path) else str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(obj: Any, **kwargs: Any) -> str:
    return json.dumps(obj, default=_json_default, **kwargs)


# ----------------------------------------------------------------------------- --out

def check_out_dir(path: Path | str, *, resume: bool = False) -> Path:
    """Check a results directory before anything is measured, so a run is never thrown away
    for want of a place to save it. ConfigError (exit 2) when `path` exists as anything but
    an empty directory (with `resume`: anything but a directory), is a dangling symlink, lies
    under a file, or where nothing can be created or space is short. Returns `path`."""
    path = Path(path)
    shown = safe_io.shown(path)
    try:
        info = _stat_following(path)
        if info is not None:
            _check_existing_dir(path, info, resume)
            writable = path
        elif resume:
            raise ConfigError(f"{shown}: no such directory to resume")
        else:
            writable = _nearest_existing_parent(path)
        _check_writable(path, writable)
    except ConfigError:
        raise
    except (OSError, ValueError) as exc:  # ENAMETOOLONG, ELOOP, EACCES on a parent, a NUL byte
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        raise ConfigError(f"{shown}: cannot use as a results directory: {reason}") from None
    return path


def _stat_following(path: Path) -> os.stat_result | None:
    """stat of what `path` names (through a symlink); None when nothing is there."""
    try:
        os.lstat(path)
    except (FileNotFoundError, NotADirectoryError):  # ENOTDIR: a parent is a file
        return None
    try:
        return os.stat(path)
    except FileNotFoundError:
        raise ConfigError(f"{safe_io.shown(path)}: a dangling symlink; give a directory "
                          "that can be created") from None


def _check_existing_dir(path: Path, info: os.stat_result, resume: bool) -> None:
    shown = safe_io.shown(path)
    if not stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"{shown}: exists and is not a directory; choose another --out")
    if not resume and any(os.scandir(path)):
        raise ConfigError(f"{shown}: already exists and is not empty; choose another --out")


def _nearest_existing_parent(path: Path) -> Path:
    """The closest ancestor that exists; it must be a directory to create `path` in."""
    for parent in Path(os.path.abspath(path)).parents:
        info = _stat_following(parent)
        if info is None:
            continue
        if not stat.S_ISDIR(info.st_mode):
            raise ConfigError(f"{safe_io.shown(path)}: {safe_io.shown(parent)} is not a "
                              "directory, so nothing can be created under it")
        return parent
    return Path("/")


def _check_writable(path: Path, directory: Path) -> None:
    """Create and remove an entry where the results will go, the only sure test (read-only
    mounts, ACLs, a full inode table), then ask the filesystem for free space."""
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".pps-write-test-", dir=directory))
        space = os.statvfs(directory)
    except OSError as exc:
        raise ConfigError(f"{safe_io.shown(path)}: cannot write in {safe_io.shown(directory)}: "
                          f"{exc.strerror or exc}") from None
    free = space.f_bavail * space.f_frsize
    if free < MIN_FREE_BYTES:
        raise ConfigError(f"{safe_io.shown(path)}: only {free // 1024:,} KiB free on its "
                          f"filesystem; pps wants at least {MIN_FREE_BYTES // (1024 * 1024)} MiB")


# ----------------------------------------------------------------------------- writing

@dataclass(frozen=True)
class Saved:
    """Where a trial was saved. `notes` is empty when it went where asked; otherwise it says
    why not and where it went (a rescue directory under the temp dir)."""

    path: Path
    notes: tuple[str, ...] = ()


def save_trial(out: Path, run_json: Any, tables: dict[str, pd.DataFrame | SpilledTable],
               csv: bool = False) -> Saved:
    """Write one trial's directory atomically (a temporary sibling, then a rename): the one
    writer of a results directory. `run_json` is a pps.results.record.RunRecord (or a dict
    of run.json's keys); its `schema_version` is this pps's. A table may be a DataFrame or
    a SpilledTable (a long run's, already on disk: copied), in any schema version's columns:
    it is written in the current ones (pps.results.schema). When that
    fails for any OSError (a full or read-only disk, --out taken meanwhile), write it to a
    rescue directory instead: a measurement is never lost to where it was to be saved.
    RunFailed only when the rescue fails too."""
    from pps.results.record import RunRecord

    out = Path(out)
    run_json = run_json.to_json() if isinstance(run_json, RunRecord) else dict(run_json)
    tables = {name: schema.table_any(name, df) for name, df in tables.items() if df is not None}
    try:
        return Saved(_write_trial_dir(out, run_json, tables, csv))
    except OSError as exc:
        reason = safe_io.describe_oserror(exc)
    rescue = _rescue_dir()
    try:
        _write_files(rescue, {**run_json, "rescued": {"asked": str(out), "reason": reason}},
                     tables, csv)
    except OSError as exc:
        raise RunFailed(f"could not save the results in {out} ({reason}), nor in {rescue} "
                        f"({safe_io.describe_oserror(exc)})") from None
    return Saved(rescue, (f"could not save the results in {safe_io.shown(out)} ({reason}); "
                          f"saved them in {rescue} instead",))


def write_trial(out: Path, run_json: Any, tables: dict[str, pd.DataFrame],
                csv: bool = False) -> Path:
    """save_trial, for callers that only need where the trial went."""
    return save_trial(out, run_json, tables, csv).path


def rescue_reason(trial_dir: Path, fallback: str) -> str:
    """Why a trial is in a rescue directory, as its run.json says (save_trial wrote it)."""
    try:
        rescued = safe_io.read_json(Path(trial_dir) / "run.json", "run.json").get("rescued")
        return str(rescued["reason"])
    except (ConfigError, KeyError, TypeError):
        return fallback


def _rescue_dir() -> Path:
    try:
        return safe_io.rescue_dir()
    except OSError as exc:
        raise RunFailed(f"could not save the results, and no rescue directory could be made in "
                        f"{tempfile.gettempdir()}: {safe_io.describe_oserror(exc)}") from None


def _write_trial_dir(out: Path, run_json: dict[str, Any], tables: dict[str, pd.DataFrame],
                     csv: bool) -> Path:
    # Through a symlink to an empty directory, replace the directory, not the link.
    target = Path(os.path.realpath(out)) if out.is_symlink() else out
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.tmp-", dir=target.parent))
    try:
        _write_files(tmp, run_json, tables, csv)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes it private; results are not secret
        os.rename(tmp, target)  # onto nothing or an empty directory; else it fails: rescue
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return out


def _write_files(directory: Path, run_json: dict[str, Any], tables: dict[str, pd.DataFrame],
                 csv: bool) -> None:
    (directory / "run.json").write_text(dumps({"schema_version": SCHEMA_VERSION, **run_json},
                                              indent=2))
    for name, df in tables.items():
        if df is None:
            continue
        if isinstance(df, SpilledTable):  # streamed to disk during the run: copied in whole
            df.write_to(directory / f"{name}.parquet", directory / f"{name}.csv" if csv else None)
            continue
        df.to_parquet(directory / f"{name}.parquet", index=False)
        if csv:
            df.to_csv(directory / f"{name}.csv", index=False)


def _umask() -> int:
    """The process umask, read without setting it (os.umask would change it for every
    thread for a moment); 022 where /proc does not say."""
    try:
        with open("/proc/self/status") as f:
            for line in f:
                if line.startswith("Umask:"):
                    return int(line.split()[1], 8)
    except (OSError, ValueError):
        pass
    return 0o022


@dataclass
class TrialResults:
    """One trial read back from disk, in the current shape whatever version wrote it:
    `run` is run.json as a dict (its `schema_version` is the file's), `tables` the tables
    in the current columns."""

    path: Path
    run: dict[str, Any]
    tables: dict[str, pd.DataFrame] = field(default_factory=dict)

    @property
    def summary(self) -> dict[str, Any]:
        return self.run.get("summary", {})

    @property
    def record(self) -> Any:
        """run.json as typed objects (pps.results.record.RunRecord)."""
        from pps.results.record import RunRecord

        return RunRecord.from_dict(self.run)


def read_run_json(path: Path | str) -> dict[str, Any]:
    """DIR/run.json, checked (a bounded UTF-8 JSON object of the expected shape, of a schema
    version this pps reads) and in the current shape."""
    file = Path(path) / "run.json"
    run = safe_io.read_json(file, "run.json")
    shapes.check_run(run, SCHEMA_VERSION, safe_io.shown(file))
    return schema.run_json(run, _version(run))


def _version(obj: dict[str, Any]) -> int:
    """The schema version a checked file says it has (none: version 1)."""
    version = obj.get("schema_version")
    return 1 if version is None else int(version)


def read_trial(path: Path | str) -> TrialResults:
    path = Path(path)
    _check_results_dir(path)
    if not os.path.lexists(path / "run.json"):
        raise ConfigError(f"{safe_io.shown(path)}: not a pps results directory (no run.json)")
    run = read_run_json(path)
    tables = {}
    for name in TABLES:
        file = path / f"{name}.parquet"
        if os.path.lexists(file):
            df = safe_io.read_parquet(file, f"the {name} table")
            shapes.check_table(df, name, safe_io.shown(file))
            tables[name] = schema.table(name, df)
    latency = tables.get("latency")
    if latency is not None and "kind" not in latency.columns:
        latency.insert(0, "kind", "one_way")  # written before kernel timestamps: one-way only
    return TrialResults(path, run, tables)


def _check_results_dir(path: Path) -> None:
    try:
        is_dir = path.is_dir()
    except (OSError, ValueError):
        is_dir = False
    if not is_dir:
        what = "not a directory" if os.path.lexists(path) else "no such results directory"
        raise ConfigError(f"{safe_io.shown(path)}: {what}")


def read_sweep_json(path: Path | str) -> dict[str, Any]:
    """DIR/sweep.json, checked like run.json."""
    file = Path(path) / "sweep.json"
    sweep = safe_io.read_json(file, "sweep.json")
    shapes.check_sweep(sweep, SCHEMA_VERSION, safe_io.shown(file))
    return schema.sweep_json(sweep, _version(sweep))


def read_runs_table(path: Path | str) -> pd.DataFrame:
    """A sweep's DIR/runs.parquet in the current shape (its version is sweep.json's)."""
    version = _version(read_sweep_json(path))
    file = Path(path) / "runs.parquet"
    return schema.runs_table(safe_io.read_parquet(file, "the runs table"), version)


def is_sweep(path: Path | str) -> bool:
    return os.path.lexists(Path(path) / "sweep.json")


def trial_dirs(path: Path | str) -> list[Path]:
    """Every trial under a results directory: itself, or the trials of a sweep."""
    path = Path(path)
    _check_results_dir(path)
    if is_sweep(path):
        try:
            entries = sorted(os.scandir(path / "trials"), key=lambda e: e.name)
        except FileNotFoundError:
            return []  # a sweep interrupted before its first trial
        except OSError as exc:
            raise ConfigError(f"{safe_io.shown(path)}/trials: cannot list: "
                              f"{safe_io.describe_oserror(exc)}") from None
        return [path / "trials" / e.name for e in entries
                if e.is_dir() and os.path.lexists(Path(e.path) / "run.json")]
    if os.path.lexists(path / "run.json"):
        return [path]
    raise ConfigError(f"{safe_io.shown(path)}: not a pps results directory "
                      "(no run.json or sweep.json)")
