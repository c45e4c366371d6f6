"""Where results go: --out checked before anything is measured, temporary files that never
follow a planted symlink, and a measurement that finds its directory taken going to a rescue
directory, said plainly. A disk that fails after the measurement (a full tmpfs, a read-only
mount, made as root) is in tests/system/test_results_io_mounts.py."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from results_io import fake_execute, is_rescue, rescues_removed, tables_of
from support import pps

from pps.config.model import load_config
from pps.errors import ConfigError
from pps.experiments.search_run import run_search
from pps.experiments.sweep import run_sweep
from pps.results.safe_io import read_json, write_text_atomic
from pps.results.store import check_out_dir, save_trial
from pps.run.pipeline import execute

SHORT = ["run.duration=0.3", "run.warmup=0", "run.drain=0.1", "run.interval=0.1"]


@pytest.fixture
def rescues() -> Iterator[list[Path]]:
    """Rescue directories made by a test, removed after it."""
    with rescues_removed() as found:
        yield found


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
        done = pps(*argv)
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
    run_sweep(config, sweep_out, execute=fake_execute)  # writes sweep.json, runs.parquet
    for name in ("sweep.json", "runs.parquet"):
        (sweep_out / f".{name}.tmp").symlink_to(victim)
    run_sweep(config, sweep_out, resume=True, execute=fake_execute)
    assert victim.read_text() == "precious"
    assert read_json(sweep_out / "sweep.json", "sweep.json")["trials"][0]["status"] == "done"


# ------------------------------------------------------------------------ rescue

@pytest.fixture(scope="module")
def measured(tmp_path_factory):
    """One real loopback trial, kept in memory (out=None), to save in the tests below."""
    config = load_config(None, [*SHORT, "target.port=47387"])
    return execute(config, out=None)


def test_out_taken_during_the_run_is_rescued(tmp_path, measured, rescues):
    out = tmp_path / "run1"
    out.mkdir()
    (out / "someone-else").write_text("x")
    saved = save_trial(out, measured.run_json, tables_of(measured))
    assert is_rescue(saved.path) and (out / "someone-else").read_text() == "x"
    plain = save_trial(tmp_path / "run2", measured.run_json, tables_of(measured))
    assert plain.path == tmp_path / "run2" and plain.notes == ()


def test_results_directory_gets_the_usual_permissions(tmp_path, measured, rescues):
    saved = save_trial(tmp_path / "run1", measured.run_json, tables_of(measured))
    mask = os.umask(0)
    os.umask(mask)
    assert (saved.path.stat().st_mode & 0o777) == 0o777 & ~mask
