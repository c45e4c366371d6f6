"""Faults a real user meets with the lab, each on the real CLI: a lab pulled away or left
behind by a killed run, two runs on one lab, a lab made with other settings. Each run either
gives true numbers or says why not, saves what it measured, and leaves the host as it found
it (sysctls restored, no namespace or lock file left). Needs root for the lab; the faults of
loopback runs are in tests/unit/test_reliability.py."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import child_pids, finish, pps, pps_start, wait_for_line

from pps.lab import bed as lab
from pps.lab import owner as lab_owner
from pps.lab.kernel import sysctl_read

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="labs need root")

SHORT = ["--set", "run.warmup=0.2", "--set", "run.interval=0.25", "--set", "run.drain=0.2"]


def start(*args: str) -> subprocess.Popen:
    """`pps run ...` in the background, its stdout a pipe we read interval lines from."""
    return pps_start("run", *args)


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.fixture
def lab_id():
    """A unique lab id, and whatever a test leaves of that lab removed afterwards."""
    ident = f"r{secrets.token_hex(3)}"
    yield ident
    lab.lab_down(ident, force=True)
    Path(lab_owner.use_path(ident)).unlink(missing_ok=True)


def backlog_now() -> int:
    return int(sysctl_read(lab.BACKLOG_SYSCTL))


def lab_args(lab_id: str, backlog: int) -> list[str]:
    return ["--set", "lab.enabled=true", "--set", f"lab.id={lab_id}", "--set", "lab.queues=2",
            "--set", f"lab.backlog={backlog}"]


def namespaces_of(lab_id: str) -> list[str]:
    return [n for n in os.listdir("/run/netns") if n.startswith(f"pps-{lab_id}-")] \
        if os.path.isdir("/run/netns") else []


def test_a_sigtermed_lab_run_removes_its_lab_and_restores_sysctls(tmp_path, lab_id):
    before = backlog_now()
    out = tmp_path / "r"
    proc = start("--duration", "20", "--out", str(out), *lab_args(lab_id, before + 7), *SHORT)
    wait_for_line(proc, "measure")
    assert backlog_now() == before + 7 and len(namespaces_of(lab_id)) == 2
    proc.send_signal(signal.SIGTERM)
    code, err = finish(proc)
    assert code == 143, err
    assert namespaces_of(lab_id) == [] and backlog_now() == before
    assert not Path(lab_owner.use_path(lab_id)).exists()  # no lock file left per lab id
    assert run_json(out)["summary"]["received"] > 0


def test_what_a_killed_lab_run_left_is_removed_by_the_next_run(tmp_path, lab_id):
    before = backlog_now()
    proc = start("--duration", "20", "--out", str(tmp_path / "a"), *lab_args(lab_id, before + 9), *SHORT)
    wait_for_line(proc, "measure")
    workers = child_pids(proc.pid)  # the two workers, and the counter parser
    assert sum(b"pps.run.worker" in Path(f"/proc/{w}/cmdline").read_bytes() for w in workers) == 2
    proc.kill()  # SIGKILL: nothing in pps runs; its workers and parser die with it
    proc.communicate(timeout=10)
    deadline = time.monotonic() + 5
    while any(Path(f"/proc/{w}").exists() for w in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(Path(f"/proc/{w}").exists() for w in workers)
    assert len(namespaces_of(lab_id)) == 2 and backlog_now() == before + 9  # left behind
    # The next run with other settings does not measure on the leftovers.
    proc = start("--duration", "0.5", "--out", str(tmp_path / "b"), *lab_args(lab_id, before + 3), *SHORT)
    code, err = finish(proc)
    assert code == 0, err
    warnings = run_json(tmp_path / "b")["summary"]["warnings"]
    assert any(f"run pid {proc.pid}" not in w and "left behind by run pid" in w for w in warnings)
    assert namespaces_of(lab_id) == [] and backlog_now() == before


def test_lab_down_refuses_a_lab_in_use_and_force_fails_the_run(tmp_path, lab_id):
    out = tmp_path / "r"
    proc = start("--duration", "20", "--out", str(out), *lab_args(lab_id, backlog_now()), *SHORT)
    wait_for_line(proc, "measure")
    refused = pps("lab", "down", "--id", lab_id)
    assert refused.returncode == 3 and f"pid {proc.pid}" in refused.stderr
    assert len(namespaces_of(lab_id)) == 2  # untouched
    reshape = pps("lab", "up", "--id", lab_id, "--queues", "2", "--gro")
    assert reshape.returncode == 3 and f"pid {proc.pid}" in reshape.stderr
    second = pps("run", "--duration", "0.5", *lab_args(lab_id, backlog_now()))
    assert second.returncode == 3 and f"in use by a run (pid {proc.pid})" in second.stderr
    forced = pps("lab", "down", "--id", lab_id, "--force")
    assert forced.returncode == 0, forced.stderr
    code, err = finish(proc)
    assert code == 4 and "vanished" in err, err
    assert "vanished" in run_json(out)["summary"]["failure"]
    assert not Path(lab_owner.use_path(lab_id)).exists()


def test_a_lab_up_with_other_settings_is_refused_not_measured(lab_id):
    made = pps("lab", "up", "--id", lab_id, "--queues", "2", "--qdisc", "pfifo limit 100")
    assert made.returncode == 0, made.stderr
    unlike = pps("run", "--duration", "0.5", "--set", "lab.enabled=true", "--set", f"lab.id={lab_id}",
                 "--set", "lab.queues=2", "--set", "lab.qdisc=pfifo limit 200")
    assert unlike.returncode == 3 and "unlike this config's" in unlike.stderr
    assert f"pps lab down --id {lab_id}" in unlike.stderr
    assert len(namespaces_of(lab_id)) == 2  # the user's lab is left as it was
