"""Whole runs on loopback: pinned worker processes, a worker killed mid-run, Ctrl-C, and
the CLI end to end with its JSON contract and its exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import time

import pandas as pd
import pytest
from support import pps, pps_start

from pps.config.model import load_config
from pps.run.group import LocalGroup
from pps.run.trial import Trial, WorkerSpec, worker_specs

PORTS = iter(range(47100, 47200))


def short(*sets: str, duration: float = 1.0):
    return load_config(None, [f"run.duration={duration}", "run.warmup=0.2", "run.drain=0.2",
                              "run.interval=0.25", f"target.port={next(PORTS)}", *sets])


def workers(cpus=(0, 1)) -> list[WorkerSpec]:
    last = os.cpu_count() - 1
    return [WorkerSpec("sender", 0, min(cpus[0], last)), WorkerSpec("receiver", 0, min(cpus[1], last))]


def addresses():
    return {"destinations": ["127.0.0.1"], "bind": "127.0.0.1", "run_key": 0x5eed}


def allowed(pid: int) -> str:
    with open(f"/proc/{pid}/status") as f:
        return next(line.split(":", 1)[1].strip() for line in f if line.startswith("Cpus_allowed_list"))


def gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def test_workers_are_pinned_where_planned():
    seen: dict[int, str] = {}
    config = short()
    trial = Trial(config, [LocalGroup(worker_specs(config, workers(), addresses()))])
    trial.status = lambda s: seen.update({h.pid: allowed(h.pid) for h in trial.handles})
    outcome = trial.run()
    assert outcome.failure is None and seen
    for w in outcome.workers:
        assert seen[w["pid"]] == str(w["cpu"]) == w["cpus_allowed"]
        assert gone(w["pid"])


def test_a_killed_worker_stops_the_run_and_is_named():
    config = short(duration=10)
    trial = Trial(config, [LocalGroup(worker_specs(config, workers(), addresses()))])
    killed: list[float] = []

    def kill_receiver(_status):
        if not killed:
            receiver = next(h for h in trial.handles if h.role == "receiver")
            os.kill(receiver.pid, signal.SIGKILL)
            killed.append(time.monotonic())

    trial.status = kill_receiver
    outcome = trial.run()
    noticed = time.monotonic() - killed[0]
    assert "receiver-0" in outcome.failure and "SIGKILL" in outcome.failure
    assert noticed < 1.0 + 6.0  # noticed within a second; the rest is stopping the sender
    assert outcome.marks["end"].slots[0]["packets"] > 0  # what was measured is kept
    assert all(gone(w["pid"]) for w in outcome.workers)


def test_cli_run_json_contract_and_results_dir(tmp_path):
    out = tmp_path / "res"
    proc = pps("run", "--duration", "1", "--json", "--out", str(out), "--set", "run.warmup=0.3",
               "--set", f"target.port={next(PORTS)}")
    assert proc.returncode == 0, proc.stderr
    summary = json.loads(proc.stdout)  # stdout is exactly one JSON object
    for key in ("tx_pps", "rx_pps", "tx_packets", "rx_packets", "loss_ratio", "workers",
                "ledger", "latency", "results_dir"):
        assert key in summary
    assert summary["rx_packets"] > 1000 and summary["tx_pps"] >= summary["rx_pps"] * 0.9
    assert {(w["role"], w["index"]) for w in summary["workers"]} == {("sender", 0), ("receiver", 0)}
    ledger = summary["ledger"]
    assert ledger["sent"] == summary["sent"] and ledger["received"] == summary["received"]
    assert abs(ledger["unaccounted"]) <= max(1, 0.001 * ledger["sent"])
    assert summary["latency"]["p50_ns"] <= summary["latency"]["p99_ns"] <= summary["latency"]["max_ns"]
    assert "measure" in proc.stderr  # the per-interval lines go to stderr with --json
    run = json.loads((out / "run.json").read_text())
    assert run["schema_version"] == 2 and run["config"]["senders"]["batch"] == 64
    assert run["host"]["before"]["kernel"] == os.uname().release
    samples = pd.read_parquet(out / "samples.parquet")
    assert set(samples["role"]) == {"sender", "receiver"} and (samples["pps"] >= 0).all()
    flows = pd.read_parquet(out / "flows.parquet")
    assert flows["sent"].sum() == summary["sent"]
    assert (flows["lost"] == flows["sent"] - flows["unique"]).all()


def test_sigint_saves_results_and_exits_130(tmp_path):
    out = tmp_path / "res"
    proc = pps_start("run", "--duration", "20", "--out", str(out),
                     "--set", f"target.port={next(PORTS)}", "--set", "run.warmup=0.2")
    time.sleep(2.0)
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=30)
    assert proc.returncode == 130, stderr
    run = json.loads((out / "run.json").read_text())
    assert run["summary"]["interrupted"] is True and run["summary"]["sent"] > 0
    for w in run["workers"]:
        assert gone(w["pid"])


@pytest.mark.parametrize("args, needle", [
    (["run", "--set", "senders.bach=3"], "did you mean 'senders.batch'"),
    (["run", "--set", "senders.batch=0"], "out of range 1..1024"),
    (["run", "--set", "receivers.mode=spin"], "not one of block, busy-poll"),
    (["run", "--set", "run.timestamps=nic"], "not one of user, kernel"),
    (["run", "--set", "target.address=not-an-ip"], "not an IPv4 or IPv6 address"),
    (["run", "--duration", "-1"], "must be greater than 0"),
    (["run", "--bogus"], "unrecognized arguments"),
    (["run", "/nonexistent.toml"], "cannot read"),
    (["frobnicate"], "invalid choice"),
])
def test_bad_input_is_one_line_and_exit_2(args, needle):
    proc = pps(*args)
    assert proc.returncode == 2
    assert needle in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "Traceback" not in proc.stderr


def test_non_loopback_target_needs_yes():
    proc = pps("run", "--set", "target.address=192.0.2.1", "--duration", "1")
    assert proc.returncode == 2 and "--yes" in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_version_and_help_teach():
    assert pps("--version").stdout.startswith("pps ")
    text = pps("run", "--help").stdout
    assert "--set" in text and "loopback" in text and "examples" in text


def test_a_port_in_use_is_refused_not_shared():
    port = next(PORTS)
    squatter = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    squatter.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    squatter.bind(("127.0.0.1", port))
    try:
        proc = pps("run", "--duration", "1", "--set", f"target.port={port}")
    finally:
        squatter.close()
    assert proc.returncode == 3 and "already in use" in proc.stderr


def test_host_checks_are_recorded_and_required_ones_refuse(tmp_path):
    proc = pps("run", "--duration", "0.5", "--json", "--out", str(tmp_path / "r"),
               "--set", f"target.port={next(PORTS)}", "--set", "run.warmup=0.1")
    assert proc.returncode == 0, proc.stderr
    checks = json.loads((tmp_path / "r" / "run.json").read_text())["checks"]
    assert {"irqbalance", "netdev-backlog", "rmem-max"} <= {c["name"] for c in checks}
    warned = [c["name"] for c in checks if c["status"] == "warn"]
    for name in warned:  # each failing check got its one-line warning before the run
        assert f"warning: check {name}:" in proc.stderr
    if warned:
        proc = pps("run", "--duration", "0.5", "--set", f"run.require_checks=[\"{warned[0]}\"]")
        assert proc.returncode == 3 and "require_checks failed" in proc.stderr
    proc = pps("run", "--duration", "0.5", "--set", 'run.require_checks=["no-such-check"]')
    assert proc.returncode == 2 and "unknown check" in proc.stderr
