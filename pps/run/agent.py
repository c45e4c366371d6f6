"""`pps agent`: this host's side of a run driven from another host over SSH.

Started by the orchestrator as `ssh HOST PYTHON -m pps agent`. It speaks JSON lines: requests
on stdin, replies and events on stdout (nothing else is ever written there; diagnostics go
to stderr, which ssh carries back). The conversation, in order:

    agent  -> {"event": "hello", "protocol": 5, "version": ..., "hostname": ..., "caps": ...}
    client -> {"op": "prepare", "id": 1, "config": {...}, "host": "b", "roles": [...],
               "netns": ..., "wire": {...}, "seats": {...}}
    agent  -> {"re": 1, "ok": true, "share": {plan, topology, checks, specs, ...}, "meta": {...}}
    client -> start, go, read, collect, stop, finish, histograms, counters, counters_chunk,
              close (each answered by "re")
    agent  -> {"event": "failed", "message": ...}   at any time, when one of its workers dies

A failed request is answered {"re": N, "ok": false, "error": ..., "exit_code": ...}. When
stdin closes (the SSH connection is gone) or a signal arrives, the agent stops its workers
and exits: no load outlives the connection that started it.

The agent trusts its client no further than it must. A request line longer than
MAX_REQUEST_BYTES gets an error reply ("re": null) and the agent stops its workers and exits
with status 2. One run per agent: a second `prepare` (or `start`) is refused and the first
group is left as it was. `prepare`'s netns must be a plain name under /run/netns.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from typing import Any

from pps import __version__
from pps.config.hosts import NAME, is_netns_name
from pps.errors import ConfigError, EnvironmentNotAble
from pps.host.netns import NETNS_RUN_DIR
from pps.run.linebuf import LineBuffer
from pps.run.protocol import PROTOCOL

IDLE_CHECK_S = 0.1
# A prepare request (config, addresses) is a few KiB; a line this long is no request.
MAX_REQUEST_BYTES = 1 << 20
ROLES = ("receiver", "sender")
EXIT_CLOSED, EXIT_LINK_LOST, EXIT_BAD_INPUT = 0, 1, 2


def capabilities() -> dict[str, bool]:
    """CAP_NET_ADMIN (forced buffers, busy poll) and CAP_SYS_ADMIN (entering a namespace)."""
    with open("/proc/self/status") as f:
        eff = next((int(line.split()[1], 16) for line in f if line.startswith("CapEff:")), 0)
    return {"net_admin": bool(eff >> 12 & 1), "sys_admin": bool(eff >> 21 & 1)}


def hello() -> dict[str, Any]:
    return {"event": "hello", "protocol": PROTOCOL, "version": __version__,
            "python": sys.version.split()[0], "hostname": socket.gethostname(),
            "kernel": os.uname().release, "euid": os.geteuid(), "caps": capabilities(),
            "cpus": len(os.sched_getaffinity(0))}


class Agent:
    """Holds this host's share of the run and answers the client's requests."""

    def __init__(self, out) -> None:
        self.out = out
        self.host = None  # the LocalHost this agent serves (pps.run.hosts)
        self.group = None
        self.counters = None  # this host's counters, parsed as the run goes (pps.counters.stream)
        self.result = None  # ... and what they came to, once finished
        self.reported_failure = False
        self.closing = False
        self.started = False
        self.group_closed = False
        self.exit_status = EXIT_LINK_LOST

    def send(self, message: dict[str, Any]) -> None:
        self.out.write(json.dumps(message) + "\n")
        self.out.flush()

    # ------------------------------------------------------------------ requests
    def handle(self, request: dict[str, Any]) -> dict[str, Any]:
        op = request.get("op")
        method = getattr(self, f"op_{op}", None) if isinstance(op, str) else None
        if method is None:
            raise ValueError(f"unknown request {op!r}")
        if op != "prepare" and self.group is None:
            raise ValueError(f"{op!r} before 'prepare'")
        return method(request) or {}

    def op_prepare(self, r: dict[str, Any]) -> dict[str, Any]:
        from pps.config.model import build_config
        from pps.host import selfpin
        from pps.run.hosts import LocalHost
        if self.host is not None:
            raise ConfigError("a run is already prepared here; one agent serves one run")
        name, roles, netns = prepare_fields(r)
        wire, seats = wire_fields(r)
        config = build_config(r["config"], source=f"host {name}")
        host = LocalHost(name, netns=netns)
        share = host.prepare(config, roles, wire, seats, label=name)
        counters = host.open_counters(config)  # readers opened once, as in a local run
        try:
            # Off the workers' CPUs for good: the agent serves this one run, then exits.
            pinned, _ = selfpin.move_off(w.cpu for w in host.share.plan.workers)
        except BaseException:
            host.close()
            raise
        # Taken on only now: a prepare that failed leaves the agent free for another.
        self.host, self.group, self.counters = host, host.group, counters
        return {"share": {**share, "agent": pinned}, "meta": host.info["before"],
                "drivers": [[ns, dev, d] for (ns, dev), d in counters.drivers.items()]}

    def op_start(self, r: dict[str, Any]) -> dict[str, Any]:
        if self.started:
            raise ConfigError("the workers are already started; one agent serves one run")
        self.started = True
        return {"problems": self.group.start(r["deadline_s"], r["ready_timeout_s"])}

    def op_go(self, r: dict[str, Any]) -> None:
        self.group.go()

    def op_stop(self, r: dict[str, Any]) -> None:
        self.group.stop(int(r["role"]))

    def op_read(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"slots": self.group.read()}

    def op_collect(self, r: dict[str, Any]) -> None:
        """A snapshot at the client's time t, into this host's stream: nothing comes back
        until op_counters, so a long run costs neither side memory per sample."""
        t = r.get("t", 0.0)
        if not isinstance(t, (int, float)) or isinstance(t, bool):
            raise ConfigError(f"collect: t must be a number, got {repr(t)[:40]}")
        self.counters.take(float(t), bool(r.get("full", True)))

    def op_counters(self, r: dict[str, Any]) -> dict[str, Any]:
        """The stream finished: totals, what was missing, and the table's size (for
        counters_chunk)."""
        from pps.counters.hosts import agent_totals

        self.result = got = self.counters.finish()
        return {**agent_totals(got.totals), "snapshots": got.snapshots, "problem": got.problem,
                "unavailable": [[*k, v] for k, v in got.unavailable.items()],
                "rows": got.table.rows if got.table else 0,
                "size": os.path.getsize(got.table.path) if got.table else None}

    def op_counters_chunk(self, r: dict[str, Any]) -> dict[str, Any]:
        from pps.counters.hosts import read_piece

        if self.result is None or self.result.table is None:
            raise ConfigError("counters_chunk before counters, or no table")
        offset, length = r.get("offset"), r.get("length")
        if not all(isinstance(v, int) and not isinstance(v, bool) and v >= 0 for v in (offset, length)):
            raise ConfigError("counters_chunk: offset and length must be whole numbers")
        return {"data": read_piece(self.result.table.path, offset, length)}

    def op_finish(self, r: dict[str, Any]) -> None:
        self.group.finish(r["wait_s"])

    def op_histograms(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"histograms": {kind: {str(k): v for k, v in by_receiver.items()}
                               for kind, by_receiver in self.group.histograms().items()}}

    def op_close(self, r: dict[str, Any]) -> dict[str, Any]:
        self.host.close()
        self.host.finish()
        self.group_closed = self.closing = True  # shutdown must not close it again
        return {"records": self.group.records(), "meta": self.host.info["after"]}

    # ------------------------------------------------------------------ loop
    def idle(self) -> None:
        """Between requests: tell the client, once, when a worker has died."""
        if self.group is None or self.reported_failure or not self.group.handles:
            return
        failure = self.group.check()
        if failure:
            self.reported_failure = True
            self.send({"event": "failed", "message": failure})

    def serve(self, fd: int) -> None:
        reader = LineBuffer(MAX_REQUEST_BYTES)
        while not self.closing:
            ready, _, _ = select.select([fd], [], [], IDLE_CHECK_S)
            if not ready:
                self.idle()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return  # the connection is gone
            for line in reader.feed(chunk):
                if self.closing:
                    return
                if line.strip():
                    self.answer(line)
            if reader.too_long:
                self.send({"re": None, "ok": False, "kind": "ConfigError", "exit_code": 2,
                           "error": f"a request line is longer than {MAX_REQUEST_BYTES} bytes; "
                                    "the agent stops"})
                self.exit_status = EXIT_BAD_INPUT
                return

    def answer(self, line: bytes) -> None:
        request: Any = {}
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                request = {}
                raise TypeError("a request is a JSON object")
            reply = {"re": request.get("id"), "ok": True, **self.handle(request)}
        except Exception as exc:  # noqa: BLE001 - the protocol's edge: a failure is a reply, not a crash
            reply = {"re": request.get("id"), "ok": False, "error": str(exc),
                     "kind": type(exc).__name__, "exit_code": getattr(exc, "exit_code", 1)}
        self.send(reply)

    def shutdown(self) -> None:
        if self.host is not None and not self.group_closed:  # a close request did it
            self.host.close()


def prepare_fields(r: dict[str, Any]) -> tuple[str, tuple[str, ...], str | None]:
    """prepare's host, roles and netns, checked: the client is another machine."""
    host, roles, netns = r.get("host"), r.get("roles"), r.get("netns")
    if not isinstance(host, str) or not NAME.fullmatch(host):
        raise ConfigError(f"prepare: host must be a host name, got {repr(host)[:80]}")
    if not isinstance(roles, list) or not roles or any(role not in ROLES for role in roles) \
            or len(set(roles)) != len(roles):
        raise ConfigError(f"prepare: roles must be a list from {list(ROLES)}, "
                          f"got {repr(roles)[:80]}")
    if netns is not None:
        if not is_netns_name(netns):
            shown = repr(netns)[:80]
            raise ConfigError(f"prepare: netns {shown} is not a namespace name (letters, digits, "
                              "'.', '_', '-'; no '/', no '..')")
        if not os.path.exists(os.path.join(NETNS_RUN_DIR, netns)):
            raise EnvironmentNotAble(f"network namespace {netns!r} does not exist on host "
                                     f"{host} (no {NETNS_RUN_DIR}/{netns}); create it or fix "
                                     f"hosts.{host}.netns")
    return host, tuple(roles), netns


def wire_fields(r: dict[str, Any]):
    """prepare's wire and seats, checked: the client is another machine."""
    from pps.run.share import Seats, Wire

    wire, seats = r.get("wire"), r.get("seats")
    try:
        w = Wire.from_dict(wire)
        if not all(isinstance(a, str) for a in (*w.destinations, w.bind)):
            raise TypeError("addresses are strings")
        s = Seats(**{k: int(seats[k]) for k in ("sender_base", "receiver_base", "n_senders")})
    except (TypeError, KeyError, ValueError) as exc:
        raise ConfigError(f"prepare: wire and seats are malformed ({exc})") from None
    if min(s.sender_base, s.receiver_base, s.n_senders) < 0:
        raise ConfigError("prepare: seats must be whole numbers from 0")
    return w, s


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """Entry point of `pps agent`. Exit 0 after a close request, 1 when the link dropped,
    2 after a request line over the limit."""
    # Only the protocol may reach stdout: anything else printed (a library warning) goes to
    # stderr, so the client never reads a line it cannot parse.
    out = os.fdopen(os.dup(1), "w", buffering=1)
    os.dup2(2, 1)
    for sig in (signal.SIGHUP, signal.SIGTERM, signal.SIGPIPE, signal.SIGINT):
        signal.signal(sig, _stop_on_signal)
    agent = Agent(out)
    try:
        agent.send(hello())
        agent.serve(0)
    except (BrokenPipeError, SystemExit):
        pass
    finally:
        agent.shutdown()
    return EXIT_CLOSED if agent.closing else agent.exit_status
