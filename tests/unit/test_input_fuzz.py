"""Bad inputs of every kind pps reads, through the CLI: config files (random bytes, special
files, huge numbers, deep nesting, sweeps too big to expand), --set flags (control
characters, huge values) and results directories (run.json, Parquet tables and sweep.json
that are missing, damaged, of the wrong shape or from a newer pps).

Every case must end in the documented exit code with one line on stderr and never a
traceback. The CLI runs in-process (pps.cli.main) for speed, plus a few `python3 -m pps`
subprocesses for the real path. Nothing here sends a packet except the one short loopback
run the results cases start from.
"""

from __future__ import annotations

import copy
import json
import os
import shutil
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from support import pps_main, pps_start

from pps.config.model import SCHEMA, load_config
from pps.errors import ConfigError
from pps.experiments.sweep import run_sweep
from pps.report.build import load as load_report

KEYS = [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]
SHORT = ["run.duration=0.3", "run.warmup=0", "run.drain=0.1", "run.interval=0.1"]


def fuzz(examples: int) -> settings:
    return settings(max_examples=examples, deadline=None, database=None,
                    suppress_health_check=[HealthCheck.function_scoped_fixture,
                                           HealthCheck.too_slow])


def assert_one_line_error(code: int, err: str, expected: int = 2) -> None:
    assert code == expected, err
    assert "Traceback" not in err
    assert len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------ config files

def _fifo(tmp: Path) -> Path:
    path = tmp / "config.fifo"
    os.mkfifo(path)
    return path


def _write(name: str, data: bytes | str):
    def make(tmp: Path) -> Path:
        path = tmp / name
        path.write_bytes(data.encode() if isinstance(data, str) else data)
        return path
    return make


def _sparse(name: str, size: int):
    def make(tmp: Path) -> Path:
        path = tmp / name
        with open(path, "wb") as f:
            f.truncate(size)
        return path
    return make


def _symlink(target: str):
    def make(tmp: Path) -> Path:
        path = tmp / "link.toml"
        path.symlink_to(target)
        return path
    return make


BAD_CONFIGS = {
    "/dev/zero": lambda tmp: Path("/dev/zero"),
    "a FIFO": _fifo,
    "a directory": lambda tmp: tmp,
    "missing": lambda tmp: tmp / "nope.toml",
    "a dangling symlink": _symlink("/nonexistent/x.toml"),
    "a symlink to /dev/zero": _symlink("/dev/zero"),
    "not UTF-8": _write("latin1.toml", b"[run]\nlabel = \"caf\xe9\"\n"),
    "binary": _write("bin.toml", bytes(range(256))),
    "too big": _sparse("big.toml", 2 * 1024 * 1024),
    "5000-digit integer": _write("int.toml", "[senders]\nbatch = " + "1" * 5000 + "\n"),
    "deep nesting": _write("deep.toml", "[sweep]\n\"senders.batch\" = " + "[" * 5000 + "]" * 5000),
    "deep inline tables": _write("deep2.toml", "a = " + "{b = " * 3000 + "1" + "}" * 3000),
    "cpus past the machine": _write("cpus.toml", "[senders]\ncpus = \"0-4294967295\"\n"),
    "cpu list of huge numbers": _write("cpus2.toml", "[senders]\ncpus = [0, 99999999999999]\n"),
    "sweep of 10^8 points": _write("sweep8.toml", "[sweep]\n" + "".join(
        f"\"{k}\" = [{', '.join(str(v) for v in range(1, 11))}]\n"
        for k in ("senders.batch", "receivers.batch", "senders.flows", "senders.count",
                  "receivers.count", "run.repetitions", "lab.queues", "senders.burst"))),
    "sweep trials past the bound": _write("sweepreps.toml", "[run]\nrepetitions = 1000\n[sweep]\n"
                                          "\"senders.batch\" = ["
                                          + ", ".join(map(str, range(1, 1001))) + "]\n"),
    "sweep value not a list": _write("sweepstr.toml", "[sweep]\n\"senders.batch\" = \"8,64\"\n"),
    "wrong type": _write("type.toml", "[senders]\nbatch = \"many\"\n"),
    "huge float": _write("float.toml", "[run]\nduration = 1e308\n"),
}


@pytest.mark.parametrize("case", sorted(BAD_CONFIGS))
def test_bad_config_files_exit_2_in_one_line(case, tmp_path, capsys):
    path = BAD_CONFIGS[case](tmp_path)
    out = tmp_path / "never"
    for argv in (["run", str(path), "--dry-run"], ["sweep", str(path), "--out", str(out)]):
        code, _, err = pps_main(capsys, *argv)
        assert_one_line_error(code, err)
        assert str(path) in err or case == "a dangling symlink" and "link.toml" in err
        assert not out.exists()  # refused before anything started


@fuzz(60)
@given(data=st.binary(max_size=300))
def test_random_bytes_as_config(tmp_path, capsys, data):
    path = tmp_path / "random.toml"
    path.write_bytes(data)
    code, _, err = pps_main(capsys, "run", str(path), "--dry-run")  # dry: nothing is sent
    assert code in (0, 2), err
    assert "Traceback" not in err
    if code == 2:
        assert len(err.strip().splitlines()) == 1, err


# ------------------------------------------------------------------------ --set flags

CONTROL = st.sampled_from(["\n", "\r", "\x00", "\x1b", "\t", "\x7f", "\x85", "\u2028"])
SET_TEXT = st.text(max_size=30) | st.sampled_from(
    ["1" * 5000, "[" * 3000, "0-4294967295", "1e999", "-1", "nan", "\"a\"", "[1, [2]]", "{a=1}"])


@fuzz(80)
@given(key=st.sampled_from(KEYS) | st.text(max_size=15), value=SET_TEXT)
def test_set_flags(capsys, key, value):
    code, _, err = pps_main(capsys, "run", "--dry-run", "--set", f"{key}={value}")
    assert "Traceback" not in err
    assert code in (0, 2, 3), err  # 3: a device named in target.device that is not here
    if code:
        assert len(err.strip().splitlines()) == 1, err
    if any(c in value for c in "\n\r\x00\x1b\t\x7f\x85\u2028"):
        assert code == 2


@fuzz(30)
@given(key=st.sampled_from(KEYS), before=st.text(max_size=8), control=CONTROL,
       after=st.text(max_size=8))
def test_set_with_a_control_character_is_refused(capsys, key, before, control, after):
    code, _, err = pps_main(capsys, "run", "--dry-run", "--set", f"{key}={before}{control}{after}")
    assert_one_line_error(code, err)
    assert "control character" in err


def test_set_cannot_smuggle_a_second_line():
    with pytest.raises(ConfigError, match="control character"):
        load_config(None, ["senders.batch=32\nsenders.count = 4"])


# ------------------------------------------------------------------------ results directories

@pytest.fixture(scope="module")
def real(tmp_path_factory) -> dict[str, Path]:
    """A one-trial sweep measured for real on loopback: a sweep directory and, inside it, a
    single-run results directory."""
    base = tmp_path_factory.mktemp("real")
    config = load_config(None, [*SHORT, "target.port=47371"])
    result = run_sweep(config, base / "sweep")
    assert result.complete, result
    return {"sweep": base / "sweep", "trial": base / "sweep" / "trials" / "0000"}


def _copy(real: dict[str, Path], tmp: Path, which: str) -> Path:
    target = tmp / which
    shutil.copytree(real[which], target, symlinks=True)
    return target


def _run_json(d: Path) -> dict[str, Any]:
    return json.loads((d / "run.json").read_text())


def _set_json(d: Path, name: str, value: Any) -> None:
    (d / name).write_text(json.dumps(value))


def _edit_run(**changes: Any):
    def mutate(d: Path) -> None:
        run = _run_json(d)
        for dotted, value in changes.items():
            node = run
            *parents, last = dotted.split("__")
            for part in parents:
                node = node[part]
            node[last] = value
        _set_json(d, "run.json", run)
    return mutate


def _replace(name: str, make):
    def mutate(d: Path) -> None:
        path = d / name
        if path.is_dir() and not path.is_symlink():
            shutil.rmtree(path)
        elif os.path.lexists(path):
            path.unlink()
        make(path)
    return mutate


def _bytes(data: bytes):
    return lambda path: path.write_bytes(data)


def _truncated(name: str):
    def mutate(d: Path) -> None:
        data = (d / name).read_bytes()
        (d / name).write_bytes(data[: len(data) // 2])
    return mutate


def _sparse_file(size: int):
    def make(path: Path) -> None:
        with open(path, "wb") as f:
            f.truncate(size)
    return make


def _string_column(d: Path) -> None:
    df = pd.read_parquet(d / "workers.parquet")
    df["packets"] = df["packets"].astype(str) + " packets"
    df.to_parquet(d / "workers.parquet", index=False)


TRIAL_CASES = {
    "run.json is []": _replace("run.json", _bytes(b"[]")),
    "run.json is null": _replace("run.json", _bytes(b"null")),
    "run.json is empty": _replace("run.json", _bytes(b"")),
    "run.json is cut short": _truncated("run.json"),
    "run.json is not UTF-8": _replace("run.json", _bytes(b'{"source": "\xff"}')),
    "run.json nests too deep": _replace("run.json", _bytes(b"[" * 100000 + b"]" * 100000)),
    "run.json has a 5000-digit number": _replace("run.json", _bytes(b'{"summary": {"rx_pps": '
                                                                     + b"9" * 5000 + b"}}")),
    "run.json is huge": _replace("run.json", _sparse_file(70 * 1024 * 1024)),
    "run.json is a directory": _replace("run.json", lambda p: p.mkdir()),
    "run.json is a FIFO": _replace("run.json", os.mkfifo),
    "run.json links to /dev/zero": _replace("run.json", lambda p: p.symlink_to("/dev/zero")),
    "run.json is a dangling link": _replace("run.json", lambda p: p.symlink_to("/nonexistent")),
    "newer schema_version": _edit_run(schema_version=99),
    "schema_version is text": _edit_run(schema_version="one"),
    "summary is a list": _edit_run(summary=[1, 2]),
    "rx_pps is text": _edit_run(summary__rx_pps="fast"),
    "rx_pps is too big for a float": _edit_run(summary__rx_pps=10 ** 400),
    "a layer's drops are text": _edit_run(summary__ledger={"layers": {"nic": "many"}}),
    "host is a number": _edit_run(host=5),
    "config.sweep is a number": _edit_run(config__sweep=3),
    "a table is random bytes": _replace("workers.parquet", _bytes(os.urandom(4096))),
    "a table is empty": _replace("counters.parquet", _bytes(b"")),
    "a table is cut short": _truncated("flows.parquet"),
    "a table is a directory": _replace("latency.parquet", lambda p: p.mkdir()),
    "a table is a FIFO": _replace("workers.parquet", os.mkfifo),
    "a table is huge": _replace("samples.parquet", _sparse_file(1100 * 1024 * 1024)),
    "a number column holds text": _string_column,
}

SWEEP_CASES = {
    "sweep.json is null": _replace("sweep.json", _bytes(b"null")),
    "sweep.json is []": _replace("sweep.json", _bytes(b"[]")),
    "sweep.json is not JSON": _replace("sweep.json", _bytes(b"{trials")),
    "sweep.json is a FIFO": _replace("sweep.json", os.mkfifo),
    "sweep.json is a directory": _replace("sweep.json", lambda p: p.mkdir()),
    "sweep.json from a newer pps": lambda d: _set_json(d, "sweep.json",
                                                       {"schema_version": 7, "trials": []}),
    "sweep trials are numbers": lambda d: _set_json(d, "sweep.json", {"trials": [1, 2]}),
    "sweep results is a number": lambda d: _set_json(d, "sweep.json", {"trials": [{"results": 5}]}),
    "sweep point holds a list": lambda d: _set_json(d, "sweep.json", {"trials": [
        {"results": "trials/0000", "point": {"senders.batch": [1]}}]}),
    "sweep point takes a column's name": lambda d: _set_json(d, "sweep.json", {"trials": [
        {"results": "trials/0000", "point": {"status": "done"}}]}),
    "trials is a file": _replace("trials", _bytes(b"x")),
    "no trials": _replace("trials", lambda p: None),
    "a trial's run.json is []": lambda d: (d / "trials" / "0000" / "run.json").write_text("[]"),
}


def _check_results_case(capsys, tmp_path, real, which: str, mutate) -> None:
    broken = _copy(real, tmp_path, which)
    mutate(broken)
    report_out = tmp_path / "report"
    for argv in (["report", str(broken), "--out", str(report_out)],
                 ["compare", str(broken), str(real["trial"])],
                 ["compare", str(real["trial"]), str(broken)]):
        code, _, err = pps_main(capsys, *argv)
        assert_one_line_error(code, err)
        assert str(broken) in err
    assert not report_out.exists()


@pytest.mark.parametrize("case", sorted(TRIAL_CASES))
def test_damaged_trial_directories(case, tmp_path, capsys, real):
    _check_results_case(capsys, tmp_path, real, "trial", TRIAL_CASES[case])


@pytest.mark.parametrize("case", sorted(SWEEP_CASES))
def test_damaged_sweep_directories(case, tmp_path, capsys, real):
    _check_results_case(capsys, tmp_path, real, "sweep", SWEEP_CASES[case])


def test_not_results_directories(tmp_path, capsys, real):
    (tmp_path / "file").write_text("x")
    for path in (tmp_path / "missing", tmp_path / "file", tmp_path, Path("/dev/zero")):
        for argv in (["report", str(path), "--out", str(tmp_path / "r")],
                     ["compare", str(path), str(real["trial"])]):
            code, _, err = pps_main(capsys, *argv)
            assert_one_line_error(code, err)


def test_the_real_results_read_cleanly(tmp_path, capsys, real):
    """The control: undamaged, both directories report and compare."""
    code, _, err = pps_main(capsys, "report", str(real["sweep"]), str(real["trial"]),
                       "--out", str(tmp_path / "r"))
    assert code == 0, err
    code, _, err = pps_main(capsys, "compare", str(real["sweep"]), str(real["trial"]))
    assert code == 0, err


def _paths(value: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix] if prefix else []
    if isinstance(value, dict) and len(prefix) < 4:
        for key, child in value.items():
            out += _paths(child, (*prefix, key))
    return out


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.sampled_from([10**400, 1e308])
    | st.floats(allow_nan=True) | st.text(max_size=10),
    lambda inner: (st.lists(inner, max_size=3)
                   | st.dictionaries(st.text(max_size=6), inner, max_size=3)),
    max_leaves=5)


@st.composite
def mutated_run(draw, run: dict[str, Any]) -> dict[str, Any]:
    run = copy.deepcopy(run)
    for _ in range(draw(st.integers(1, 3))):
        path = draw(st.sampled_from(_paths(run) or [("summary",)]))
        node = run
        for part in path[:-1]:
            node = node.get(part) if isinstance(node, dict) else None
        if isinstance(node, dict):
            if draw(st.booleans()):
                node[path[-1]] = draw(JSON_VALUES)
            else:
                node.pop(path[-1], None)
    return run


@fuzz(120)
@given(data=st.data())
def test_mutated_run_json(tmp_path, capsys, real, data):
    """Random values at random places of a real run.json: compare gives a verdict or exit 2,
    and report's loading (all it reads before plotting) loads or refuses in one line."""
    broken = tmp_path / "mutated"
    if not broken.exists():
        shutil.copytree(real["trial"], broken)
    run = data.draw(mutated_run(_run_json(real["trial"])))
    (broken / "run.json").write_text(json.dumps(run))
    code, _, err = pps_main(capsys, "compare", str(real["trial"]), str(broken))
    assert code in (0, 1, 2), err
    assert "Traceback" not in err and len(err.strip().splitlines()) <= 1, err
    try:
        load_report([broken])
    except ConfigError as exc:
        assert "\n" not in str(exc)


def test_report_of_a_mutated_but_valid_run_plots(tmp_path, capsys, real):
    """Odd values that pass the checks (nulls, missing parts, zeros) still make a report."""
    broken = _copy(real, tmp_path, "trial")
    run = _run_json(broken)
    run["summary"].update(rx_pps=None, latency=None, ledger={"layers": {}, "unaccounted": None})
    run.pop("host")
    _set_json(broken, "run.json", run)
    code, _, err = pps_main(capsys, "report", str(broken), "--out", str(tmp_path / "r"))
    assert code == 0, err


# ------------------------------------------------------------------------ the real command

def test_real_command_line(tmp_path, real):
    """A few cases through `python3 -m pps`, the path a user takes (a FIFO must not hang)."""
    fifo = _fifo(tmp_path)
    empty = _copy(real, tmp_path, "trial")
    (empty / "run.json").write_text("[]")
    huge = tmp_path / "huge.toml"
    huge.write_text(BAD_CONFIGS["sweep of 10^8 points"](tmp_path).read_text())
    cases = [
        ["run", str(fifo), "--dry-run"],
        ["run", "/dev/zero", "--dry-run"],
        ["run", str(huge), "--dry-run"],
        ["run", "--dry-run", "--set", "senders.batch=32\nsenders.count=4"],
        ["report", str(empty), "--out", str(tmp_path / "r")],
        ["topo", "--root", "/nonexistent"],
    ]
    procs = [pps_start(*argv) for argv in cases]
    for argv, proc in zip(cases, procs):
        try:
            _, err = proc.communicate(timeout=60)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        assert_one_line_error(proc.returncode, err)
