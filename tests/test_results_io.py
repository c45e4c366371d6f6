"""Where results go: --out checked before anything is measured, temporary files that never
follow a planted symlink, and a measurement that survives a disk that fails after it (a full
tmpfs, a read-only mount) by going to a rescue directory, said plainly.

The mounts are real (tmpfs and bind mounts made here, as root) and always unmounted."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace

import pandas as pd
import pytest

from pps.config.model import load_config
from pps.errors import ConfigError
from pps.experiments.search_run import run_search
from pps.experiments.sweep import run_sweep
from pps.results.safe_io import RESCUE_PREFIX, read_json, write_text_atomic
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
    """Rescue directories made by a test, listed so they are removed after it."""
    before = set(Path(tempfile.gettempdir()).glob(f"{RESCUE_PREFIX}-*"))
    found: list[Path] = []
    yield found
    for path in set(Path(tempfile.gettempdir()).glob(f"{RESCUE_PREFIX}-*")) - before:
        shutil.rmtree(path, ignore_errors=True)


def is_rescue(path: Path) -> bool:
    path = Path(path)
    return path.parent == Path(tempfile.gettempdir()) and path.name.startswith(RESCUE_PREFIX)


# ------------------------------------------------------------------------ check_out_dir

def test_out_dir_that_can_be_used(tmp_path):
    assert check_out_dir(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    (tmp_path / "empty").mkdir()
    assert check_out_dir(tmp_path / "empty") == tmp_path / "empty"
    (tmp_path / "link").symlink_to(tmp_path / "empty")
    assert check_out_dir(tmp_path / "link") == tmp_path / "link"
    (tmp_path / "empty" / "sweep.json").write_text("{}")
    assert check_out_dir(tmp_path / "empty", resume=True) == tmp_path / "empty"
    assert not list(tmp_path.glob("**/.pps-write-test-*"))  # the probe leaves nothing


@pytest.mark.parametrize("case, words", [
    ("file", "not a directory"),
    ("non-empty", "not empty"),
    ("under a file", "is not a directory"),
    ("dangling symlink", "dangling symlink"),
    ("name too long", "too long"),
    ("resume nothing", "no such directory"),
])
def test_out_dir_refused(case, words, tmp_path):
    (tmp_path / "file").write_text("x")
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "run.json").write_text("{}")
    (tmp_path / "dangling").symlink_to(tmp_path / "nowhere" / "x")
    path, resume = {
        "file": (tmp_path / "file", False),
        "non-empty": (tmp_path / "full", False),
        "under a file": (tmp_path / "file" / "a" / "b", False),
        "dangling symlink": (tmp_path / "dangling", False),
        "name too long": (tmp_path / ("x" * 300), False),
        "resume nothing": (tmp_path / "nothing", True),
    }[case]
    with pytest.raises(ConfigError, match=words) as info:
        check_out_dir(path, resume=resume)
    assert "\n" not in str(info.value)


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


def test_run_sweep_and_search_refuse_a_bad_out_before_measuring(tmp_path):
    (tmp_path / "file").write_text("x")
    calls: list = []

    def never(*args, **kwargs):
        calls.append(args)
        raise AssertionError("measured although --out was bad")

    config = load_config(None, [*SHORT, "target.port=47381"])
    for bad in (tmp_path / "file", tmp_path / "file" / "sub"):
        with pytest.raises(ConfigError):
            run_sweep(config, bad, execute=never)
        with pytest.raises(ConfigError):
            run_search(config, bad, execute=never)
    assert calls == []
    sweep_config = tmp_path / "sweep.toml"
    sweep_config.write_text('[target]\nport = 47386\n[sweep]\n"senders.batch" = [8, 64]\n')
    for argv in (["run", "--out", str(tmp_path / "file")],
                 ["search", "--out", str(tmp_path / "file" / "x")],
                 ["sweep", str(sweep_config), "--out", str(tmp_path / "file")]):
        done = subprocess.run([sys.executable, "-m", "pps", *argv], capture_output=True,
                              text=True, timeout=60)
        assert done.returncode == 2, (argv, done.stderr)
        assert "Traceback" not in done.stderr and len(done.stderr.strip().splitlines()) == 1


# ------------------------------------------------------------------------ planted symlinks

def test_state_files_never_follow_a_planted_symlink(tmp_path):
    """A name a writer could have used for its temporary file, planted as a symlink to a
    file outside, is left alone: the victim keeps its content."""
    out = tmp_path / "out"
    out.mkdir()
    victim = tmp_path / "victim"
    victim.write_text("precious")
    for name in ("sweep.json", "runs.parquet", "search.json", "report.md"):
        for planted in (f".{name}.tmp", f".{name}.x.tmp"):
            (out / planted).symlink_to(victim)
        write_text_atomic(out / name, "new")
        assert (out / name).read_text() == "new" and not (out / name).is_symlink()
    assert victim.read_text() == "precious"

    config = load_config(None, [*SHORT, "target.port=47382"])
    sweep_out = tmp_path / "sweep"
    run_sweep(config, sweep_out, execute=_fake_execute)  # writes sweep.json, runs.parquet
    for name in ("sweep.json", "runs.parquet"):
        (sweep_out / f".{name}.tmp").symlink_to(victim)
    run_sweep(config, sweep_out, resume=True, execute=_fake_execute)
    assert victim.read_text() == "precious"
    assert read_json(sweep_out / "sweep.json", "sweep.json")["trials"][0]["status"] == "done"


# ------------------------------------------------------------------------ rescue

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real loopback trial, kept in memory (out=None), to save in the tests below."""
    config = load_config(None, [*SHORT, "target.port=47383"])
    return execute(config, out=None)


def _tables(report) -> dict[str, pd.DataFrame]:
    return {k: v for k, v in report.tables.items() if v is not None}


def test_trial_on_a_full_disk_is_rescued(tmp_path, measured, rescues):
    with tmpfs(tmp_path / "tiny", "16k") as tiny:
        saved = save_trial(tiny / "run1", measured.run_json, _tables(measured))
        assert list(tiny.iterdir()) == []  # the half-written temporary directory is gone
    assert is_rescue(saved.path)
    assert len(saved.notes) == 1 and "No space left on device" in saved.notes[0]
    assert str(tiny / "run1") in saved.notes[0] and str(saved.path) in saved.notes[0]
    trial = read_trial(saved.path)
    assert trial.summary["rx_pps"] == measured.summary["rx_pps"]
    assert trial.run["rescued"]["asked"] == str(tiny / "run1")
    assert set(trial.tables) == set(_tables(measured))


def test_trial_on_a_read_only_disk_is_rescued(tmp_path, measured, rescues):
    (tmp_path / "src").mkdir()
    with read_only_bind(tmp_path / "src", tmp_path / "ro") as ro:
        saved = save_trial(ro / "run1", measured.run_json, _tables(measured))
    assert is_rescue(saved.path) and "Read-only file system" in saved.notes[0]
    assert read_trial(saved.path).summary["tx_packets"] == measured.summary["tx_packets"]


def test_out_taken_during_the_run_is_rescued(tmp_path, measured, rescues):
    out = tmp_path / "run1"
    out.mkdir()
    (out / "someone-else").write_text("x")
    saved = save_trial(out, measured.run_json, _tables(measured))
    assert is_rescue(saved.path) and (out / "someone-else").read_text() == "x"
    plain = save_trial(tmp_path / "run2", measured.run_json, _tables(measured))
    assert plain.path == tmp_path / "run2" and plain.notes == ()


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


def _fake_execute(config, out, **_):
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
            report = _fake_execute(config, out, **kwargs)
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


def test_results_directory_gets_the_usual_permissions(tmp_path, measured, rescues):
    saved = save_trial(tmp_path / "run1", measured.run_json, _tables(measured))
    mask = os.umask(0)
    os.umask(mask)
    assert (saved.path.stat().st_mode & 0o777) == 0o777 & ~mask
