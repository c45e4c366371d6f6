"""Runs across hosts, the parts that need no second host: the ssh command line, host
config errors, version and capability checks on a session, `pps agent` over pipes, and a
host that stalls or sends an endless line (a local script standing in for ssh). The runs
over real SSH are in tests/system/test_multihost.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time

import pytest
from support import pps_start

from pps.config.hosts import HostSpec
from pps.config.model import load_config
from pps.errors import ConfigError, EnvironmentNotAble
from pps.run.agent import PROTOCOL, capabilities
from pps.run.remote import HostSession, RemoteGroup, ssh_argv


def test_ssh_command_is_argv_with_each_remote_word_quoted():
    spec = HostSpec("b", "root@198.19.0.2", python="/opt/my py/bin/python3; rm -rf /",
                    ssh_options=("-p", "2222"))
    argv = ssh_argv(spec)
    assert argv[argv.index("--") + 1] == "root@198.19.0.2"
    assert argv[-1] == "'/opt/my py/bin/python3; rm -rf /' -m pps agent"
    assert argv[:2] == ["ssh", "-T"] and "BatchMode=yes" in argv


@pytest.mark.parametrize("sets, message", [
    (["receivers.host=b"], "no host 'b'"),
    (["hosts.b.ssh=-oProxyCommand=x", "receivers.host=b", "target.address=198.19.0.2"],
     "read as an ssh option"),
    (["hosts.b.ssh=root@x", "receivers.host=b"], "must name the receivers' address"),
    (["hosts.b.ssh=root@x", "receivers.host=b", "target.address=127.0.0.1"], "loopback"),
    (["hosts.b.ssh=root@x", "receivers.host=b", "target.address=198.19.0.2", "lab.enabled=true"],
     "lab"),
    (["hosts.b.shh=root@x"], "did you mean 'ssh'"),
    (["hosts.b.python=python3"], "ssh is required"),
])
def test_bad_host_config_is_a_config_error(sets, message):
    with pytest.raises(ConfigError, match=message):
        load_config(None, sets)


def test_a_version_mismatch_names_both_versions():
    session = HostSession(HostSpec("b", "root@x"))
    session.hello = {"event": "hello", "protocol": PROTOCOL + 1, "version": "9.9.9"}
    with pytest.raises(EnvironmentNotAble, match="host b runs pps 9.9.9.*install the same pps"):
        session._check_hello()


def test_missing_capabilities_are_named_before_any_packet():
    session = HostSession(HostSpec("b", "bench@x"))
    session.hello = {"caps": {"net_admin": False, "sys_admin": False}, "euid": 1000}
    with pytest.raises(EnvironmentNotAble, match="host b: .*euid 1000.*CAP_SYS_ADMIN"):
        session.require({"sys_admin": "to enter namespace x"})
    session.hello["caps"]["sys_admin"] = True
    session.require({"sys_admin": "to enter namespace x"})  # satisfied: no error


def test_agent_speaks_json_lines_and_stops_when_its_input_closes():
    agent = pps_start("agent", stdin=subprocess.PIPE, stderr=None)
    try:
        hello = json.loads(agent.stdout.readline())
        assert hello["event"] == "hello" and hello["protocol"] == PROTOCOL
        assert hello["caps"] == capabilities()
        agent.stdin.write('{"op": "read", "id": 7}\nnonsense\n')
        agent.stdin.flush()
        early = json.loads(agent.stdout.readline())
        assert early == {"re": 7, "ok": False, "error": "'read' before 'prepare'",
                         "kind": "ValueError", "exit_code": 1}
        assert json.loads(agent.stdout.readline())["ok"] is False
        agent.stdin.close()  # the connection is gone
        assert agent.wait(5) == 1
    finally:
        if agent.poll() is None:
            agent.kill()
            agent.wait()


def fake_agent(script: str) -> HostSession:
    """A HostSession talking to a local python script instead of ssh + `pps agent`."""
    session = HostSession(HostSpec("b", "root@x"))
    session.proc = subprocess.Popen([sys.executable, "-c", script], stdin=subprocess.PIPE,
                                    stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                    start_new_session=True)
    os.set_blocking(session.proc.stdout.fileno(), False)
    return session


def test_a_host_that_misses_one_reply_is_given_up_on_at_once_after():
    # Answers nothing, reads nothing: a stalled agent. The first request waits out its
    # timeout; every later one (finish, histograms, close...) fails at once, not in turn.
    session = fake_agent("import time; time.sleep(60)")
    try:
        with pytest.raises(OSError, match="host b: no answer to 'read' within 1 s; the agent"):
            session.request("read", timeout_s=1.0)
        began = time.monotonic()
        for op in ("finish", "histograms", "close"):
            with pytest.raises(OSError, match="stopped answering"):
                session.request(op)
        assert time.monotonic() - began < 1.0  # no new 10 s timeout each
        group = RemoteGroup(session, [{"role": "receiver", "index": 0, "cpu": 1}])
        assert "stopped answering" in group.check()
        assert "stopped answering" in group.records()[0]["failure"]
    finally:
        began = time.monotonic()
        session.close()
        assert time.monotonic() - began < 5.0  # a stalled host is not waited for
        assert session.proc.poll() is not None


def test_an_endless_line_from_a_host_is_refused(monkeypatch):
    monkeypatch.setattr("pps.run.remote.MAX_REPLY_BYTES", 1 << 16)
    session = fake_agent("import sys, time; sys.stdout.write('x' * (1 << 17)); sys.stdout.flush(); "
                         "time.sleep(60)")
    try:
        with pytest.raises(OSError, match="host b: the agent sent a line over 65536 bytes"):
            session.request("read", timeout_s=10.0)
    finally:
        session.close()
