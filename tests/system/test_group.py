"""pps.run.group's LocalGroup and the pps.run.worker processes it starts, driven directly
with real processes on 127.0.0.1: the calls a run makes (start, go, read, stop, finish,
records, close) move packets and leave no process behind; a worker in a network namespace
counts there; a stalled worker is found and killed; a spec with a bad field is refused in
one clear line, never a traceback. The namespace test needs root (private_netns)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest

import pps.run.worker
from pps import native
from pps.config.model import load_config
from pps.host import netns
from pps.run.group import STALL_S, LocalGroup
from pps.run.trial import WorkerSpec, worker_specs

CPUS = sorted(os.sched_getaffinity(0))
WAIT_S = 10.0


def free_port() -> int:
    """A UDP port nothing on 127.0.0.1 holds now (receivers need a port number up front)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def specs(*sets: str, netns_name: str | None = None) -> list[dict]:
    """Spec dicts for one receiver and one paced sender on 127.0.0.1, receiver first, as a
    run makes them (pps.run.trial.worker_specs)."""
    config = load_config(None, [f"target.port={free_port()}", "senders.rate=20000", *sets])
    workers = [WorkerSpec("receiver", 0, CPUS[-1], netns_name),
               WorkerSpec("sender", 0, CPUS[0], netns_name)]
    return worker_specs(config, workers, {"destinations": ["127.0.0.1"], "bind": "127.0.0.1",
                                          "run_key": 0x5EED})


def wait_until(predicate, timeout_s: float = WAIT_S) -> bool:
    end = time.monotonic() + timeout_s
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def run_group(group: LocalGroup, packets: int = 2000) -> tuple[dict, dict]:
    """start, go, read until `packets` arrived, stop the sender, finish: the receiver's and
    the sender's counters at the end."""
    assert group.start(deadline_s=60, ready_timeout_s=30) == []
    assert [h.event("ready")["pid"] for h in group.handles] == [h.pid for h in group.handles]
    group.go()
    assert wait_until(lambda: group.read()[0]["packets"] >= packets), group.read()
    assert group.check() is None  # both alive, both beating
    group.stop(native.SENDER)
    # Drain: the receiver has what was sent once its count stops short of nothing.
    assert wait_until(lambda: group.read()[0]["packets"] >= group.read()[1]["packets"])
    group.finish(WAIT_S)
    rx, tx = group.read()
    return rx, tx


def test_a_local_group_moves_packets_on_loopback_and_leaves_nothing_running():
    group = LocalGroup(specs())
    try:
        rx, tx = run_group(group)
        records = group.records()
        handles = list(group.handles)
    finally:
        group.close()
    assert tx["packets"] >= 2000 and rx["packets"] == tx["packets"]
    assert rx["lost"] == rx["foreign"] == rx["duplicate"] == 0
    assert [(r["role"], r["index"], r["cpu"], r["failure"]) for r in records] == [
        ("receiver", 0, CPUS[-1], None), ("sender", 0, CPUS[0], None)]
    assert all(r["host"] == "local" and r["cpus_allowed"] for r in records)
    (sent,) = records[1]["flows"]
    (got,) = records[0]["flows"]
    assert sent["sent"] == tx["packets"] == got["unique"]
    # Both workers reported and exited by themselves; close reaped them.
    assert [h.proc.returncode for h in handles] == [0, 0]
    assert all(gone(h.pid) for h in handles)
    assert group.shm is None
    group.close()  # a second close does nothing


def test_a_local_group_in_a_namespace_counts_there(private_netns):
    """Workers enter the namespace before they open a socket: the namespace's own UDP
    counters, which nothing else moves, hold the packets."""
    def read_snmp() -> str:
        with open("/proc/thread-self/net/snmp") as f:
            return f.read()

    def udp_in() -> int:
        text = netns.call_in(private_netns, read_snmp)
        header, values = [line.split() for line in text.splitlines() if line.startswith("Udp:")]
        return int(values[header.index("InDatagrams")])

    before = udp_in()
    group = LocalGroup(specs(netns_name=private_netns))
    try:
        rx, tx = run_group(group, packets=1000)
        records = group.records()
    finally:
        group.close()
    assert rx["packets"] == tx["packets"] >= 1000
    assert udp_in() - before == rx["packets"]
    assert all(r["failure"] is None for r in records)


def test_a_stopped_worker_is_found_stalled_and_killed():
    group = LocalGroup(specs())
    try:
        assert group.start(deadline_s=60, ready_timeout_s=30) == []
        group.go()
        assert wait_until(lambda: group.read()[1]["packets"] > 0)
        sender = group.handles[1]
        os.kill(sender.pid, signal.SIGSTOP)
        stopped = time.monotonic()
        assert wait_until(lambda: group.check() is not None, STALL_S + WAIT_S)
        took = time.monotonic() - stopped
        failure = group.check() or ""
        group.finish(WAIT_S)
        records = group.records()
    finally:
        group.close()
    assert took < STALL_S + 3, took
    assert failure.startswith(f"sender-0 (pid {sender.pid}) on CPU {CPUS[0]}: stalled"), failure
    assert "stalled" in records[1]["failure"] and records[0]["failure"] is None
    assert sender.proc.returncode == -signal.SIGKILL and gone(sender.pid)


def test_a_bad_field_in_a_spec_is_refused_by_the_group_in_one_line():
    bad = specs()
    bad[0]["batch"] = 0  # the receiver's; the C loop takes 1..1024
    group = LocalGroup(bad)
    try:
        problems = group.start(deadline_s=60, ready_timeout_s=30)
        records = group.records()
        handles = list(group.handles)
    finally:
        group.close()
    (problem,) = problems
    assert problem == f"receiver-0 (pid {handles[0].pid}): batch 0 is out of range 1..1024"
    assert len(handles) == 1  # no sender was started for a receiver that never came up
    assert records[0]["failure"] == "batch 0 is out of range 1..1024"
    assert records[1]["failure"] == "never started" and records[1]["pid"] is None
    assert handles[0].exited() and gone(handles[0].pid)  # reaped by close


def worker_spec_line(**changes) -> str:
    """A receiver's whole spec, as LocalGroup.start writes it, with `changes`."""
    spec = {**specs()[0], "slot": 0, "shm_fd": -1, "nslots": 1,
            "deadline_ns": native.now_ns() + int(30e9)}
    return json.dumps({**spec, **changes})


@pytest.mark.parametrize("line, kind, says", [
    (lambda: worker_spec_line(cpu=4096), "EnvironmentNotAble", "cannot pin to CPU 4096"),
    (lambda: worker_spec_line(batch=0), "ValueError", "batch 0 is out of range 1..1024"),
    (lambda: worker_spec_line(port="x"), "TypeError", None),
    (lambda: "{not json", "JSONDecodeError", None),
], ids=["cpu", "batch", "port", "not-json"])
def test_the_worker_answers_a_bad_spec_with_one_error_line(line, kind, says):
    """`python -m pps.run.worker` as LocalGroup starts it: a bad spec gets one JSON error
    event on stdout and exit status 1, and nothing on stderr (no traceback)."""
    stats = native.SharedStats.create(1)
    try:
        text = line().replace('"shm_fd": -1', f'"shm_fd": {stats.fd}')
        done = subprocess.run(
            [sys.executable, "-m", pps.run.worker.__name__], input=text + "\n",
            capture_output=True, text=True, timeout=60, pass_fds=(stats.fd,), check=False)
    finally:
        stats.close()
    events = [json.loads(x) for x in done.stdout.splitlines()]
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr and done.stderr == ""
    (event,) = events
    assert event["event"] == "error" and event["kind"] == kind, event
    assert says is None or event["message"].startswith(says), event
    assert "\n" not in event["message"]
