"""`pps agent`'s protocol limits, driven as a subprocess over pipes (no SSH needed): a bounded
request line read in linear time, a checked netns, one prepared run per agent."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import time

import pytest
from support import pps_start

from pps import native
from pps.config.model import build_config
from pps.run.agent import MAX_REQUEST_BYTES
from pps.run.linebuf import LineBuffer
from pps.run.protocol import agent_config

# ------------------------------------------------------------------ LineBuffer, in process


def test_linebuffer_splits_lines_across_chunks():
    buf = LineBuffer(100)
    assert buf.feed(b'{"a"') == []
    assert buf.feed(b': 1}\n{"b": 2}\n{"c"') == [b'{"a": 1}', b'{"b": 2}']
    assert buf.pending == 4
    assert buf.feed(b"\n") == [b'{"c"']
    assert buf.feed(b"\n\n") == [b"", b""]
    assert not buf.too_long


def test_linebuffer_refuses_a_line_over_the_limit_and_keeps_those_before():
    buf = LineBuffer(10)
    assert buf.feed(b"short\n" + b"x" * 11 + b"\nafter\n") == [b"short"]
    assert buf.too_long and buf.pending == 0
    assert buf.feed(b"more\n") == []  # nothing is taken after the over-long line
    exact = LineBuffer(10)
    assert exact.feed(b"x" * 10 + b"\n") == [b"x" * 10]  # the limit itself is allowed
    growing = LineBuffer(10)
    for _ in range(10):
        assert growing.feed(b"y") == []
    assert not growing.too_long
    assert growing.feed(b"y") == [] and growing.too_long


def test_linebuffer_is_linear_in_the_bytes_fed():
    # A 4 MiB line in 1-byte pieces re-split each time would copy ~8e12 bytes; here each
    # byte is handled once. Counted, not timed: the pending size grows by one per byte and
    # the pieces are joined once.
    buf = LineBuffer(1 << 23)
    for _ in range(20000):
        buf.feed(b"z")
    assert buf.pending == 20000 and len(buf._pieces) == 20000
    (line,) = buf.feed(b"\n")
    assert line == b"z" * 20000 and buf._pieces == []


# ------------------------------------------------------------------ the agent, over pipes


class Agent:
    """`python3 -m pps agent` on pipes; always stopped."""

    def __init__(self) -> None:
        self.proc = pps_start("agent", stdin=subprocess.PIPE, text=False)
        self.hello = self.reply()
        assert self.hello["event"] == "hello"

    def send(self, data: bytes) -> None:
        self.proc.stdin.write(data)
        self.proc.stdin.flush()

    def request(self, **fields) -> dict:
        self.send(json.dumps(fields).encode() + b"\n")
        return self.reply()

    def reply(self) -> dict:
        line = self.proc.stdout.readline()
        assert line, f"the agent said nothing; stderr: {self.proc.stderr.read()[-2000:]!r}"
        return json.loads(line)

    def close(self) -> int:
        try:
            self.proc.stdin.close()
        except BrokenPipeError:
            pass
        try:
            return self.proc.wait(30)
        finally:
            self.proc.stdout.close()
            self.proc.stderr.close()

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def agent():
    a = Agent()
    try:
        yield a
    finally:
        a.kill()


def test_an_over_long_line_gets_an_error_and_the_agent_exits_cleanly(agent):
    # 2 MiB without a newline, in one write: the agent must answer, not grow its buffer forever.
    # The agent stops reading at the limit, so the rest of the write may find the pipe shut.
    try:
        agent.send(b'{"op": "read", "id": 1, "pad": "' + b"x" * (2 * MAX_REQUEST_BYTES))
    except BrokenPipeError:
        pass
    reply = agent.reply()
    assert reply["re"] is None and reply["ok"] is False and reply["exit_code"] == 2
    assert str(MAX_REQUEST_BYTES) in reply["error"]
    assert agent.proc.wait(30) == 2
    err = agent.proc.stderr.read().decode()
    assert "Traceback" not in err


def test_requests_before_an_over_long_line_are_answered(agent):
    agent.send(b'{"op": "read", "id": 5}\n' + b"y" * (MAX_REQUEST_BYTES + 1) + b"\n")
    assert agent.reply()["re"] == 5
    assert agent.reply()["re"] is None
    assert agent.proc.wait(30) == 2


def test_a_line_just_under_the_limit_is_read(agent):
    pad = "p" * (MAX_REQUEST_BYTES - 100)
    line = json.dumps({"op": "read", "id": 3, "pad": pad}).encode()
    assert len(line) <= MAX_REQUEST_BYTES
    agent.send(line[:1000])
    agent.send(line[1000:] + b"\n")
    reply = agent.reply()
    assert reply["re"] == 3 and reply["error"] == "'read' before 'prepare'"
    assert agent.close() == 1  # the link dropped, no close request


def loopback_prepare(**overrides) -> dict:
    config = build_config({"target": {"port": 47000 + secrets.randbelow(900)},
                           "senders": {"count": 1}, "receivers": {"count": 1}})
    request = {"op": "prepare", "id": 1, "config": agent_config(config), "host": "b",
               "roles": ["receiver"], "netns": None,
               "wire": {"bind": "127.0.0.1", "destinations": ["127.0.0.1"], "run_key": 7},
               "seats": {"sender_base": 0, "receiver_base": 0, "n_senders": 1}}
    return {**request, **overrides}


@pytest.mark.parametrize("netns, says", [
    ("../../proc/1/ns/net", "is not a namespace name"),
    ("/proc/1/ns/net", "is not a namespace name"),
    ("a/b", "is not a namespace name"),
    ("ns\0x", "is not a namespace name"),
    ("ns\n", "is not a namespace name"),
    ("n" * 300, "is not a namespace name"),
    ("a..b", "is not a namespace name"),
    ("", "is not a namespace name"),
    (7, "is not a namespace name"),
])
def test_prepare_refuses_a_netns_that_is_not_a_plain_name(agent, netns, says):
    reply = agent.request(**loopback_prepare(netns=netns))
    assert reply["ok"] is False and says in reply["error"] and reply["exit_code"] == 2
    assert len(reply["error"]) < 300


def test_prepare_refuses_a_netns_that_does_not_exist(agent):
    name = f"pps-absent-{secrets.token_hex(4)}"
    assert not os.path.exists(f"/run/netns/{name}")
    reply = agent.request(**loopback_prepare(netns=name))
    assert reply["ok"] is False and reply["exit_code"] == 3
    assert f"/run/netns/{name}" in reply["error"] and "host b" in reply["error"]


@pytest.mark.parametrize("fields, says", [
    ({"roles": ["receiver", "shell"]}, "roles must be"),
    ({"roles": []}, "roles must be"),
    ({"roles": "receiver"}, "roles must be"),
    ({"roles": [["receiver"]]}, "roles must be"),
    ({"roles": ["sender", "sender"]}, "roles must be"),
    ({"host": "../x"}, "host must be"),
    ({"host": None}, "host must be"),
    ({"wire": {"bind": 7, "destinations": [], "run_key": 1}}, "wire and seats are malformed"),
    ({"wire": None}, "wire and seats are malformed"),
    ({"seats": {"sender_base": -1, "receiver_base": 0, "n_senders": 1}}, "seats must be whole"),
    ({"seats": {"sender_base": "x", "receiver_base": 0, "n_senders": 1}}, "malformed"),
])
def test_prepare_refuses_bad_fields(agent, fields, says):
    reply = agent.request(**loopback_prepare(**fields))
    assert reply["ok"] is False and says in reply["error"] and reply["exit_code"] == 2


def _children(pid: int) -> set[int]:
    """The agent's worker processes (not its counter parser, which is a child too)."""
    found = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = open(f"/proc/{entry}/stat").read()
                cmdline = open(f"/proc/{entry}/cmdline", "rb").read()
            except OSError:
                continue
            if int(stat[stat.rindex(")") + 2:].split()[1]) == pid and b"pps.run.worker" in cmdline:
                found.add(int(entry))
    return found


def test_a_second_prepare_is_refused_and_the_first_run_goes_on(agent):
    first = agent.request(**loopback_prepare())
    assert first["ok"] is True, first
    started = agent.request(op="start", id=2, deadline_s=60, ready_timeout_s=15)
    assert started["ok"] is True and started["problems"] == []
    workers = _children(agent.proc.pid)
    assert len(workers) == 1  # the one receiver

    again = agent.request(**loopback_prepare(id=3))
    assert again == {"re": 3, "ok": False, "kind": "ConfigError", "exit_code": 2,
                     "error": "a run is already prepared here; one agent serves one run"}
    twice = agent.request(op="start", id=4, deadline_s=60, ready_timeout_s=15)
    assert twice["ok"] is False and "already started" in twice["error"]
    assert _children(agent.proc.pid) == workers  # the first group untouched, none added

    read = agent.request(op="read", id=5)
    assert read["ok"] is True and len(read["slots"]) == 1
    agent.request(op="stop", id=6, role=native.SENDER)
    assert agent.request(op="finish", id=7, wait_s=5)["ok"] is True
    closed = agent.request(op="close", id=8)
    assert closed["ok"] is True and [r["role"] for r in closed["records"]] == ["receiver"]
    assert agent.close() == 0
    deadline = time.monotonic() + 10
    while any(os.path.exists(f"/proc/{pid}") for pid in workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not any(os.path.exists(f"/proc/{pid}") for pid in workers)


def test_a_failed_prepare_leaves_the_agent_free(agent):
    bad = agent.request(**loopback_prepare(netns=f"pps-absent-{secrets.token_hex(4)}"))
    assert bad["ok"] is False
    good = agent.request(**loopback_prepare(id=2))
    assert good["ok"] is True, good
