"""`pps agent`: this host's side of a run driven from another host over SSH.

Started by the orchestrator as `ssh HOST PYTHON -m pps agent`. It speaks JSON lines: requests
on stdin, replies and events on stdout (nothing else is ever written there; diagnostics go
to stderr, which ssh carries back). The conversation, in order:

    agent  -> {"event": "hello", "protocol": 2, "version": ..., "hostname": ..., "caps": ...}
    client -> {"op": "prepare", "id": 1, "config": {...}, "host": "b", "roles": [...], ...}
    agent  -> {"re": 1, "ok": true, "share": {plan, topology, checks, specs, ...}, "meta": {...}}
    client -> start, go, read, collect, stop, finish, histograms, close (each answered by "re")
    agent  -> {"event": "failed", "message": ...}   at any time, when one of its workers dies

A failed request is answered {"re": N, "ok": false, "error": ..., "exit_code": ...}. When
stdin closes (the SSH connection is gone) or a signal arrives, the agent stops its workers
and exits: no load outlives the connection that started it.
"""

from __future__ import annotations

import json
import os
import select
import signal
import socket
import sys
from typing import Any

from . import __version__

# 2: histograms come by kind ({"one_way": {...}, "stack": ..., "app": ...}); slots hold the
# stack/app counters. 3: prepare's drivers are [netns, device, driver] rows.
PROTOCOL = 3
IDLE_CHECK_S = 0.1


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
        self.group = None
        self.capturer = None
        self.reported_failure = False
        self.closing = False

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
        from . import collectors, metadata, selfpin
        from .collectors.capture import Capturer
        from .config import build_config
        from .group import LocalGroup
        from .hostwork import prepare_share

        config = build_config(r["config"], source=f"host {r['host']}")
        share = prepare_share(config, r["host"], tuple(r["roles"]), r.get("netns"),
                              r["addresses"], r["n_senders"])
        self.group = LocalGroup(share.specs, host=r["host"])
        # Off the workers' CPUs for good: the agent serves this one run, then exits.
        pinned, _ = selfpin.move_off(w.cpu for w in share.plan.workers)
        ports = (config.target.port,) if "receiver" in share.roles else ()
        scopes = [collectors.Scope(share.netns, (share.device,), ports)]
        self.capturer = Capturer(scopes)  # readers opened once, as in a local run
        drivers = [[ns, dev, d] for (ns, dev), d in collectors.device_drivers(scopes).items()]
        return {"share": {**share.to_dict(), "agent": pinned}, "meta": metadata.host("/"),
                "drivers": drivers}

    def op_start(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"problems": self.group.start(r["deadline_s"], r["ready_timeout_s"])}

    def op_go(self, r: dict[str, Any]) -> None:
        self.group.go()

    def op_stop(self, r: dict[str, Any]) -> None:
        self.group.stop(int(r["role"]))

    def op_read(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"slots": self.group.read()}

    def op_collect(self, r: dict[str, Any]) -> dict[str, Any]:
        readings, missing = self.capturer.parse(self.capturer.take(full=bool(r.get("full", True))))
        return {"readings": [[ns, x.source, x.name, x.value, x.device, x.queue, x.cpu]
                             for ns, x in readings],
                "missing": [[m.source, m.device, m.reason, m.netns] for m in missing]}

    def op_finish(self, r: dict[str, Any]) -> None:
        self.group.finish(r["wait_s"])

    def op_histograms(self, r: dict[str, Any]) -> dict[str, Any]:
        return {"histograms": {kind: {str(k): v for k, v in by_receiver.items()}
                               for kind, by_receiver in self.group.histograms().items()}}

    def op_close(self, r: dict[str, Any]) -> dict[str, Any]:
        from . import metadata

        self.group.close()
        self.closing = True
        return {"records": self.group.records(), "meta": metadata.host("/")}

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
        buffer = b""
        while not self.closing:
            ready, _, _ = select.select([fd], [], [], IDLE_CHECK_S)
            if not ready:
                self.idle()
                continue
            chunk = os.read(fd, 65536)
            if not chunk:
                return  # the connection is gone
            buffer += chunk
            *lines, buffer = buffer.split(b"\n")
            for line in lines:
                if line.strip():
                    self.answer(line)

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
        if self.group is not None:
            self.group.close()
        if self.capturer is not None:
            self.capturer.close()


def _stop_on_signal(signum: int, _frame: Any) -> None:
    raise SystemExit(128 + signum)


def main() -> int:
    """Entry point of `pps agent`. Exit 0 after a close request, 1 when the link dropped."""
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
    return 0 if agent.closing else 1
