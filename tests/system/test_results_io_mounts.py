"""A measurement that survives a disk that fails after it (a full tmpfs, a read-only mount)
by going to a rescue directory, said plainly; and --out refused on such a disk before
anything is measured. The mounts are real (tmpfs and bind mounts made here, as root) and
always unmounted. The rest of where results go is in tests/unit/test_results_io.py."""

from __future__ import annotations

import contextlib
import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest
from results_io import fake_execute, is_rescue, rescues_removed, tables_of

from pps.config.model import load_config
from pps.errors import ConfigError
from pps.experiments.search_run import run_search
from pps.experiments.sweep import run_sweep
from pps.results.safe_io import read_json
from pps.results.store import check_out_dir, read_trial, save_trial
from pps.run.pipeline import execute

SHORT = ["run.duration=0.3", "run.warmup=0", "run.drain=0.1", "run.interval=0.1"]


@contextlib.contextmanager
def mounted(target: Path, *args: str) -> Iterator[Path]:
    """`mount ARGS target`, unmounted (lazily if still busy) whatever happens."""
    target.mkdir(parents=True, exist_ok=True)
    subprocess.run(["mount", *args, str(target)], check=True, capture_output=True)
    try:
        yield target
    finally:
        if subprocess.run(["umount", str(target)], capture_output=True).returncode:
            subprocess.run(["umount", "-l", str(target)], check=True, capture_output=True)


def tmpfs(target: Path, size: str) -> contextlib.AbstractContextManager[Path]:
    return mounted(target, "-t", "tmpfs", "-o", f"size={size}", "tmpfs")


def remount_read_only(target: Path) -> None:
    subprocess.run(["mount", "-o", "remount,ro", str(target)], check=True, capture_output=True)


@contextlib.contextmanager
def read_only_bind(source: Path, target: Path) -> Iterator[Path]:
    with mounted(target, "--bind", str(source)):
        subprocess.run(["mount", "-o", "remount,ro,bind", str(target)], check=True,
                       capture_output=True)
        yield target


@pytest.fixture
def rescues() -> Iterator[list[Path]]:
    """Rescue directories made by a test, removed after it."""
    with rescues_removed() as found:
        yield found


# ------------------------------------------------------------------------ check_out_dir

def test_out_dir_on_read_only_and_full_filesystems(tmp_path):
    (tmp_path / "src").mkdir()
    with read_only_bind(tmp_path / "src", tmp_path / "ro") as ro:
        with pytest.raises(ConfigError, match="Read-only file system"):
            check_out_dir(ro / "results" / "run1")
    with tmpfs(tmp_path / "full", "64k") as full:
        with open(full / "filler", "wb") as f:
            with contextlib.suppress(OSError):
                f.write(b"\0" * 1024 * 1024)  # fills it: ENOSPC past 64 KiB
        with pytest.raises(ConfigError, match="free"):
            check_out_dir(full / "run1")


# ------------------------------------------------------------------------ rescue

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real loopback trial, kept in memory (out=None), to save in the tests below."""
    config = load_config(None, [*SHORT, "target.port=47383"])
    return execute(config, out=None)


def test_trial_on_a_full_disk_is_rescued(tmp_path, measured, rescues):
    with tmpfs(tmp_path / "tiny", "16k") as tiny:
        saved = save_trial(tiny / "run1", measured.run_json, tables_of(measured))
        assert list(tiny.iterdir()) == []  # the half-written temporary directory is gone
    assert is_rescue(saved.path)
    assert len(saved.notes) == 1 and "No space left on device" in saved.notes[0]
    assert str(tiny / "run1") in saved.notes[0] and str(saved.path) in saved.notes[0]
    trial = read_trial(saved.path)
    assert trial.summary["rx_pps"] == measured.summary["rx_pps"]
    assert trial.run["rescued"]["asked"] == str(tiny / "run1")
    assert set(trial.tables) == set(tables_of(measured))


def test_trial_on_a_read_only_disk_is_rescued(tmp_path, measured, rescues):
    (tmp_path / "src").mkdir()
    with read_only_bind(tmp_path / "src", tmp_path / "ro") as ro:
        saved = save_trial(ro / "run1", measured.run_json, tables_of(measured))
    assert is_rescue(saved.path) and "Read-only file system" in saved.notes[0]
    assert read_trial(saved.path).summary["tx_packets"] == measured.summary["tx_packets"]


def test_a_real_run_on_a_full_disk_keeps_its_measurement(tmp_path, rescues):
    """The whole path of a run: measured on loopback, saved onto a disk with no room."""
    config = load_config(None, [*SHORT, "target.port=47384"])
    with tmpfs(tmp_path / "tiny", "16k") as tiny:
        report = execute(config, out=tiny / "run1")
    assert is_rescue(report.results_dir)
    assert read_trial(report.results_dir).summary["rx_packets"] == report.summary["rx_packets"]


def test_sweep_moves_to_a_rescue_directory_when_its_disk_fails(tmp_path, rescues):
    """A real sweep of two trials; after the first, its disk turns read-only. The second
    trial is measured, rescued, and the sweep with both trials is in one rescue directory."""
    config = load_config(None, [*SHORT, "target.port=47385", "run.repetitions=2"])
    with tmpfs(tmp_path / "disk", "8m") as disk:
        def progress(event):
            if event["event"] == "trial" and event["done"] == 1:
                remount_read_only(disk)

        result = run_sweep(config, disk / "sweep", progress=progress)
        first = json.loads((disk / "sweep" / "sweep.json").read_text())
    assert [t["status"] for t in first["trials"]] == ["done", "pending"]  # as left on the disk
    assert is_rescue(result.out) and result.complete
    assert len(result.notes) == 1 and "Read-only file system" in result.notes[0]
    saved = read_json(result.out / "sweep.json", "sweep.json")
    assert [t["status"] for t in saved["trials"]] == ["done", "done"]
    for t in saved["trials"]:
        assert read_trial(result.out / t["results"]).summary["rx_packets"] > 0
    assert len(pd.read_parquet(result.out / "runs.parquet")) == 2


def test_search_moves_to_a_rescue_directory_when_its_disk_fails(tmp_path, rescues):
    """Trials without packets (a receiver that takes 50,000 pps), saved for real; the disk
    turns read-only during the second trial."""
    config = load_config(None, [*SHORT, "search.max_rate=100000", "search.confirm=0",
                                "search.precision=0.2"])
    with tmpfs(tmp_path / "disk", "8m") as disk:
        calls = []

        def execute_then_fail(config, out, **kwargs):
            calls.append(out)
            if len(calls) == 2:
                remount_read_only(disk)
            report = fake_execute(config, out, **kwargs)
            rate = config.senders.rate
            report.summary.update(rx_pps=min(rate, 50000.0), loss_ratio=max(0.0, 1 - 50000 / rate))
            return report

        result = run_search(config, disk / "search", execute=execute_then_fail)
    assert len(calls) >= 2 and is_rescue(result.out)
    assert "Read-only file system" in result.notes[0]
    saved = read_json(result.out / "search.json", "search.json")
    assert len(saved["trials"]) == len(calls)
    for t in saved["trials"]:
        assert Path(t["results_dir"]).parent == result.out / "trials"
        assert read_trial(t["results_dir"]).summary["rx_pps"] > 0
