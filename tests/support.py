"""What the test modules share: where things are, and the one way to run the CLI.

tests/conftest.py puts this directory on sys.path, so a module in tests/unit or tests/system
imports it as `from support import ...` (as it does loops and sshhost).

    pps(*args)          `python3 -m pps ARGS` to the end: a CompletedProcess, output as text
    pps_start(*args)    the same in the background: a Popen, stdout and stderr piped
    pps_argv(*args)     the command line itself, for a Popen with other plumbing
    pps_main(capsys, *argv)   pps.cli.main in this process: (exit code, stdout, stderr)
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

TESTS = Path(__file__).resolve().parent
DATA = TESTS / "data"            # captured machines and counter files
ROOT = TESTS.parent              # the checkout
CONFIG_DIR = ROOT / "configs"


def pps_argv(*args: str) -> list[str]:
    """`python3 -m pps ARGS` with this interpreter."""
    return [sys.executable, "-m", "pps", *map(str, args)]


def _environ(env: dict[str, str] | None) -> dict[str, str] | None:
    return None if env is None else {**os.environ, **env}


def pps(*args: str, timeout: float = 60, cwd: str | Path | None = None,
        env: dict[str, str] | None = None, input: str | None = None,
        **run_kwargs: Any) -> subprocess.CompletedProcess:
    """Run `python3 -m pps ARGS` to the end; stdout and stderr captured as text.

    timeout: seconds before subprocess.TimeoutExpired fails the test (a hang is a failure).
    cwd: the directory it runs in. env: variables set on top of this process's environment.
    input: text written to its stdin (else stdin is inherited). Other keyword arguments go
    to subprocess.run as they are."""
    check = run_kwargs.pop("check", False)
    return subprocess.run(pps_argv(*args), capture_output=True, text=True, timeout=timeout,
                          cwd=cwd, env=_environ(env), input=input, check=check, **run_kwargs)


def pps_start(*args: str, env: dict[str, str] | None = None,
              **popen_kwargs: Any) -> subprocess.Popen:
    """Start `python3 -m pps ARGS` in the background: stdout and stderr are pipes, in text,
    unless popen_kwargs say otherwise. The caller waits for it (communicate) or kills it."""
    options: dict[str, Any] = {"stdout": subprocess.PIPE, "stderr": subprocess.PIPE, "text": True}
    return subprocess.Popen(pps_argv(*args), env=_environ(env), **{**options, **popen_kwargs})


def wait_for_line(proc: subprocess.Popen, word: str, timeout_s: float = 30,
                  stream: str = "stdout") -> str:
    """Read a started run's stdout (or stderr) until a line holds `word`, and return it;
    kill the run and fail the test if none does within timeout_s or the run ends first."""
    pipe = getattr(proc, stream)
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        line = pipe.readline()
        if word in line:
            return line
        if not line and proc.poll() is not None:
            break
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError(f"no line with {word!r}: {err}")


def child_pids(pid: int) -> list[int]:
    """The direct children of a process, from /proc/PID/task/*/children."""
    out = []
    for task in os.listdir(f"/proc/{pid}/task"):
        with open(f"/proc/{pid}/task/{task}/children") as f:
            out += [int(c) for c in f.read().split()]
    return out


def pps_main(capsys, *argv: str) -> tuple[int, str, str]:
    """pps.cli.main in this process: (exit code, stdout, stderr), read through pytest's
    capsys. Any exception other than the ones main turns into exit codes fails the test
    with its traceback."""
    from pps.cli.main import main

    capsys.readouterr()
    try:
        code = main(list(argv))
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    out, err = capsys.readouterr()
    return code, out, err


# A short run: enough to measure, quick enough for a test.
SHORT_RUN = ["--set", "run.duration=1", "--set", "run.warmup=0.2", "--set", "run.drain=0.3",
             "--set", "run.interval=0.5"]


def run_summary(*sets: str, timeout: float = 120) -> dict:
    """`pps run --json` of a short run with `--set` items: the summary it prints (its
    results directory is removed afterwards)."""
    import json
    import tempfile

    with tempfile.TemporaryDirectory(prefix="pps-test-") as out:
        proc = pps("run", "--json", "--out", f"{out}/r", *SHORT_RUN,
                   *[a for s in sets for a in ("--set", s)], timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def ledger_closes(ledger: dict) -> None:
    """Every packet sent is received or in a drop row, to 0.1%."""
    assert ledger["sent"] > 0
    assert abs(ledger["unaccounted"]) <= max(1, 0.001 * ledger["sent"]), ledger


def finish(proc, timeout_s: float = 30) -> tuple[int, str]:
    """Wait for a run started with pps_start: (exit code, stderr)."""
    _, err = proc.communicate(timeout=timeout_s)
    return proc.returncode, err


def nstat_values(text: str) -> dict[str, int]:
    """`nstat -a` output -> counter name: value (the tool pps's snmp figures are checked on)."""
    out = {}
    for line in text.splitlines():
        if line.startswith("#") or not line.strip():
            continue
        name, value = line.split()[:2]
        out[name] = int(value)
    return out
