"""AF_XDP runs as a user runs them: senders.socket and receivers.socket = xdp in the lab,
their ledgers, their agreement with a UDP run, the refusals, and no program left behind."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import time

import pytest
from support import pps, pps_start, wait_for_line

from pps.errors import EnvironmentNotAble
from pps.host.offload import probe_af_xdp

RATE = 20000  # packets/s for all senders: every path sustains it here, even loaded


def lab_sets(lab_id: str, *items: str) -> list[str]:
    base = [f"lab.id={lab_id}", "lab.enabled=true", "lab.queues=2", "senders.count=2",
            "receivers.count=2", "senders.flows=2", "run.warmup=0.3", "run.interval=0.25"]
    return [a for s in (*base, *items) for a in ("--set", s)]


def xdp_on(lab_id: str) -> list[str]:
    """The devices of the lab's receiving namespace that have an XDP program attached."""
    out = subprocess.run(["ip", "-n", f"pps-{lab_id}-rx", "-d", "link", "show"],
                         capture_output=True, text=True).stdout
    return [line for line in out.splitlines() if "prog/xdp" in line or " xdp" in line]


@pytest.fixture
def lab_id():
    if os.geteuid() != 0:
        pytest.fail("AF_XDP runs need root and the lab")
    name = f"x{secrets.token_hex(3)}"
    yield name
    subprocess.run(["python3", "-m", "pps", "lab", "down", "--id", name, "--force"],
                   capture_output=True)
    assert not os.path.exists(f"/run/netns/pps-{name}-rx")


def run_json(lab_id: str, tmp_path, *items: str, duration: str = "1") -> dict:
    proc = pps("run", "--json", "--duration", duration, "--out", str(tmp_path / "r"),
               *lab_sets(lab_id, *items), timeout=120)
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


@pytest.fixture(scope="module")
def udp_reference(tmp_path_factory):
    """A udp -> udp run of the lab at RATE: what the AF_XDP paths are compared with."""
    if os.geteuid() != 0:
        pytest.fail("AF_XDP runs need root and the lab")
    name = f"x{secrets.token_hex(3)}"
    try:
        yield run_json(name, tmp_path_factory.mktemp("udp"), f"senders.rate={RATE}")
    finally:
        subprocess.run(["python3", "-m", "pps", "lab", "down", "--id", name, "--force"],
                       capture_output=True)


@pytest.mark.parametrize("send, receive", [("xdp", "udp"), ("xdp", "xdp"), ("udp", "xdp")])
def test_xdp_runs_close_their_ledger_and_agree_with_udp(lab_id, tmp_path, udp_reference, send,
                                                        receive):
    reference = udp_reference
    s = run_json(lab_id, tmp_path / "xdp", f"senders.rate={RATE}", f"senders.socket={send}",
                 f"receivers.socket={receive}")
    for summary in (reference, s):
        led = summary["ledger"]
        # Every packet sent is received or in a drop row: the lab's counters are exact.
        assert abs(led["unaccounted"]) <= 0.001 * led["sent"], led
        assert 0.8 * RATE < summary["tx_pps"] < 1.2 * RATE
        assert summary["duplicate"] == 0 and summary["foreign"] == 0
        # At a rate all paths sustain, sequence tracking sees (next to) nothing lost.
        assert summary["lost"] <= 0.001 * summary["sent"]
    # Both receivers took one-way latency of the same packets on the same clock.
    p50, ref_p50 = s["latency"]["p50_ns"], reference["latency"]["p50_ns"]
    assert 0 < p50 < 50_000_000 and 0 < ref_p50 < 50_000_000
    assert 0.02 < p50 / ref_p50 < 50
    run = json.loads((tmp_path / "xdp" / "r" / "run.json").read_text())
    for w in run["workers"]:
        role_socket = send if w["role"] == "sender" else receive
        if role_socket == "xdp":
            assert w["socket"]["kind"] == "xdp" and w["socket"]["mode"] == "copy"  # veth
            assert "rx_dropped" in w["xsk"]
    assert not xdp_on(lab_id)  # the program went with the run


def test_an_xsk_with_no_room_lands_in_the_xdp_layer(lab_id, tmp_path):
    """Tiny rings and an unpaced sender: the sockets overflow; the ledger puts those drops
    in the xdp layer, once (veth counts them again as its own drops), and closes."""
    s = run_json(lab_id, tmp_path, "senders.socket=xdp", "receivers.socket=xdp", "xdp.ring=64",
                 "senders.count=1", "receivers.count=1", "lab.queues=1")
    led = s["ledger"]
    xdp = sum(v for k, v in led["drops"].items() if k.startswith("xsk."))
    assert xdp > 0 and led["layers"]["xdp"] == xdp
    assert abs(led["unaccounted"]) <= 0.001 * led["sent"], led


def test_xdp_on_loopback_is_refused_in_one_line():
    proc = pps("run", "--duration", "1", "--set", "senders.socket=xdp")
    assert proc.returncode == 2
    assert proc.stderr.count("\n") == 1 and "loopback" in proc.stderr and "Traceback" not in proc.stderr


def test_zerocopy_on_where_the_driver_has_none_is_exit_3_before_anything_starts(lab_id):
    proc = pps("run", "--duration", "1", *lab_sets(lab_id, "senders.socket=xdp",
                                                  "xdp.zerocopy=on"), timeout=60)
    assert proc.returncode == 3, proc.stderr
    assert "no zero-copy" in proc.stderr and "xdp.zerocopy = auto" in proc.stderr
    assert proc.stderr.count("\n") == 1


def test_a_kernel_without_af_xdp_is_exit_3():
    """What the kernel answers for a socket family it does not have (here a number no
    family uses) is what a kernel built without CONFIG_XDP_SOCKETS answers for AF_XDP."""
    with pytest.raises(EnvironmentNotAble) as info:
        probe_af_xdp(family=250)
    assert info.value.exit_code == 3 and "AF_XDP" in str(info.value)
    probe_af_xdp()  # this kernel has it


def test_the_program_is_gone_after_a_sigkilled_run(lab_id, tmp_path):
    proc = pps_start("run", "--duration", "30", "--out", str(tmp_path / "r"),
                     *lab_sets(lab_id, "receivers.socket=xdp", f"senders.rate={RATE}"))
    try:
        wait_for_line(proc, "measure")
        assert xdp_on(lab_id), "the program is attached while the run goes"
        check = pps("check", "--json")
        seen = {c["name"]: c for c in json.loads(check.stdout)["checks"]}["xdp-attached"]
        assert seen["status"] == "warn" and f"pps-{lab_id}-rx" in seen["seen"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
    # The BPF link closed with the process that held it.
    deadline = time.monotonic() + 5
    while xdp_on(lab_id) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not xdp_on(lab_id)
    # The next run clears what the killed one left (its lab) and runs, with its own program.
    s = run_json(lab_id, tmp_path / "next", "receivers.socket=xdp", f"senders.rate={RATE}")
    assert s["rx_packets"] > 0
    assert any("left behind by run pid" in w for w in s["warnings"])
    assert not xdp_on(lab_id)
