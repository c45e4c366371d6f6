"""Faults a real user meets, each on the real CLI: SIGTERM and SIGHUP from a CI runner or a
closed terminal, a stalled worker, a closed pipe. Each run either gives true numbers or says
why not, saves what it measured, and leaves the host as it found it. Runs on loopback, as
any user; a lab pulled away or left behind, and two runs on one lab, are in
tests/system/test_reliability_lab.py."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
from pathlib import Path

import pytest
from support import child_pids, finish, pps_argv, pps_start, wait_for_line

from pps.lab import bed as lab
from pps.lab import owner as lab_owner

PORTS = iter(range(47300, 47400))
SHORT = ["--set", "run.warmup=0.2", "--set", "run.interval=0.25", "--set", "run.drain=0.2"]


def start(*args: str) -> subprocess.Popen:
    """`pps run ...` in the background, its stdout a pipe we read interval lines from."""
    return pps_start("run", *args)


def worker_pid(pid: int, role: str) -> int:
    for child in child_pids(pid):
        with open(f"/proc/{child}/cmdline", "rb") as f:
            if b"pps.run.worker" in f.read():
                # Workers are spawned receivers first: the first is receiver-0.
                if role == "receiver":
                    return child
                role = "receiver"  # the next one
    raise AssertionError(f"no {role} worker under pid {pid}")


def run_json(out: Path) -> dict:
    return json.loads((out / "run.json").read_text())


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGHUP])
def test_a_stop_signal_saves_the_run_and_exits_128_plus_the_signal(tmp_path, sig):
    out = tmp_path / "r"
    proc = start("--duration", "20", "--out", str(out), "--set", f"target.port={next(PORTS)}", *SHORT)
    wait_for_line(proc, "measure")
    proc.send_signal(sig)
    code, err = finish(proc)
    assert code == 128 + sig, err
    assert "Traceback" not in err
    summary = run_json(out)["summary"]
    assert summary["interrupted"] is True and summary["stopped_by"] == sig.name
    assert summary["received"] > 0  # what was measured is kept
    assert all(w["failure"] is None for w in run_json(out)["workers"])


def test_a_second_sigterm_does_not_cut_the_cleanup_short(tmp_path):
    out = tmp_path / "r"
    proc = start("--duration", "20", "--out", str(out), "--set", f"target.port={next(PORTS)}", *SHORT)
    wait_for_line(proc, "measure")
    for _ in range(5):  # a CI runner that repeats itself
        proc.send_signal(signal.SIGTERM)
        time.sleep(0.02)
    code, err = finish(proc)
    assert code == 143 and "Traceback" not in err, err
    assert run_json(out)["summary"]["interrupted"] is True


def test_a_healthy_run_has_no_failure_on_any_worker(tmp_path):
    out = tmp_path / "r"
    proc = start("--duration", "0.5", "--set", "receivers.count=2", "--out", str(out),
                 "--set", f"target.port={next(PORTS)}", *SHORT)
    code, err = finish(proc)
    assert code == 0, err
    workers = run_json(out)["workers"]
    assert len(workers) == 3 and [w["failure"] for w in workers] == [None, None, None]


@pytest.mark.parametrize("role", ["sender", "receiver"])
def test_a_stopped_worker_fails_the_run_within_two_seconds(tmp_path, role):
    out = tmp_path / "r"
    proc = start("--duration", "30", "--out", str(out), "--set", f"target.port={next(PORTS)}", *SHORT)
    wait_for_line(proc, "measure")
    victim = worker_pid(proc.pid, role)
    os.kill(victim, signal.SIGSTOP)
    stopped_at = time.monotonic()
    code, err = finish(proc)
    noticed_s = time.monotonic() - stopped_at
    assert code == 4, err
    assert f"{role}-0 (pid {victim})" in err and "stalled" in err
    # The stall bound is 1 s; the run then stops the others and saves, well within 2 s here
    # (the bound is what matters; the slack is for a loaded CI machine).
    assert noticed_s < 4.0, noticed_s
    summary = run_json(out)["summary"]
    assert "stalled" in summary["failure"] and summary["received"] > 0
    with pytest.raises(ProcessLookupError):  # killed, and reaped, by pps
        os.kill(victim, 0)


def test_a_paced_slow_sender_is_not_taken_for_a_stalled_one(tmp_path):
    out = tmp_path / "r"
    # 20 packets/s in batches of 64: one send every 3 s, far longer than the stall bound.
    proc = start("--duration", "2.5", "--out", str(out), "--set", "senders.rate=20",
                 "--set", f"target.port={next(PORTS)}", *SHORT)
    code, err = finish(proc)
    assert code == 0, err
    assert run_json(out)["summary"]["failure"] is None


def test_default_lab_ids_differ_between_users(monkeypatch):
    monkeypatch.setenv("SUDO_UID", "1000")
    monkeypatch.setenv("SUDO_USER", "alice")
    alice = lab_owner.default_id()
    monkeypatch.setenv("SUDO_USER", "bob")
    bob = lab_owner.default_id()
    monkeypatch.setenv("SUDO_USER", "___")
    nameless = lab_owner.default_id()
    assert (alice, bob, nameless) == ("lab-alice", "lab-bob", "lab-u1000")
    for ident in (alice, bob, nameless):
        lab.check_id(ident)  # fits the interface-name rule


def test_a_closed_pipe_ends_quietly_with_sigpipes_status():
    # The reader is gone before pps writes a byte, as with `pps topo | head` on a long
    # listing: the write fails with EPIPE.
    read_end, write_end = os.pipe()
    os.close(read_end)
    proc = subprocess.run(pps_argv("topo"), stdout=write_end, stderr=subprocess.PIPE, text=True,
                          timeout=60)
    os.close(write_end)
    assert proc.returncode == 128 + signal.SIGPIPE
    assert proc.stderr == ""
