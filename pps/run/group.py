"""The workers of one host, run from this process: one shared stats block, one process each.

The orchestrator drives a run through groups, so a run on one host and a run over several
look the same to it: a LocalGroup here, and on every other host an agent (`pps agent`) that
runs a LocalGroup of its own and answers the same calls over SSH (pps.run.remote).

Receivers are started one at a time, in index order, each bound before the next starts. The
kernel keeps an SO_REUSEPORT group's sockets in the order they joined and picks one by index,
so a fixed order makes the group the same on every run (and the same as a probe of it).
"""

from __future__ import annotations

from typing import Any

from pps import native
from pps.config.hosts import LOCAL
from pps.run.procs import WorkerHandle, spawn_worker, wait_for

# A running loop publishes its heartbeat at least every 50 ms (a receiver's read timeout, a
# paced sender's longest sleep); one silent for this long is stopped (SIGSTOP), stuck in the
# kernel, or starved, and what it would report is no longer true.
STALL_S = 1.0


class LocalGroup:
    """Spec dicts (pps.run.trial.worker_specs) in slot order -> running workers."""

    host = LOCAL

    def __init__(self, specs: list[dict[str, Any]], host: str = LOCAL,
                 pass_fds: tuple[int, ...] = ()) -> None:
        self.specs = specs
        self.host = host
        self.pass_fds = pass_fds  # descriptors every worker inherits (an XDP program's XSKMAP)
        self.handles: list[WorkerHandle] = []
        self.shm: native.SharedStats | None = None
        self._running_since: dict[int, int] = {}  # slot -> when its loop was first seen running

    def start(self, deadline_s: float, ready_timeout_s: float) -> list[str]:
        """Spawn every worker; return what went wrong (empty: all are ready)."""
        self.shm = native.SharedStats.create(max(len(self.specs), 1))
        deadline_ns = native.now_ns() + int(deadline_s * 1e9)
        order = sorted(range(len(self.specs)),
                       key=lambda i: (self.specs[i]["role"] != "receiver", self.specs[i]["index"]))
        for slot in order:
            spec = {**self.specs[slot], "slot": slot, "shm_fd": self.shm.fd,
                    "nslots": self.shm.nslots, "deadline_ns": deadline_ns}
            handle = spawn_worker(spec, (self.shm.fd, *self.pass_fds))
            self.handles.append(handle)
            if spec["role"] == "receiver":
                problems = wait_for([handle], "ready", ready_timeout_s)
                if problems:
                    return problems
        return wait_for(self.handles, "ready", ready_timeout_s)

    def go(self) -> None:
        self.shm.go()

    def stop(self, role: int) -> None:
        if self.shm is not None:
            self.shm.stop(role)

    def read(self) -> list[dict[str, int]]:
        if self.shm is None:  # never started: nothing was counted
            return [dict.fromkeys(native.COUNTERS, 0) for _ in self.specs]
        return [self.shm.read(i) for i in range(len(self.specs))]

    def check(self) -> str | None:
        """Why the run must stop (a worker died or stalled), or None. A stalled worker is
        killed here, so the rest of the run's shutdown does not wait on it."""
        for h in self.handles:
            h.read_events()
            if h.exited() and not h.event("result"):
                reason = h.failure() or "exited early"
            elif (silent_s := self._silent_for(h)) is not None:
                reason = f"stalled: no heartbeat for {silent_s:.1f} s (killed)"
                h.kill(reason)
            else:
                continue
            where = f" on host {self.host}" if self.host != LOCAL else ""
            return f"{h.name} (pid {h.pid}) on CPU {h.cpu}{where}: {reason}"
        return None

    def _silent_for(self, h: WorkerHandle) -> float | None:
        """Seconds since a running worker's last heartbeat, when over STALL_S."""
        if self.shm is None or h.exited():
            return None
        slot = self.shm.read(h.slot)
        if native.STATES.get(slot["state"]) != "running":
            return None
        spec = self.specs[h.slot]
        # The receiver stamps its heartbeat on its own clock (realtime with kernel stamps).
        clock = native.CLOCKS[spec.get("clock", "monotonic")] if spec["role"] == "receiver" \
            else native.CLOCK_MONOTONIC
        now = native.now_ns(clock)
        since = self._running_since.setdefault(h.slot, now)
        silent_s = (now - max(slot["heartbeat_ns"], since)) / 1e9
        return silent_s if silent_s > STALL_S else None

    def finish(self, timeout_s: float) -> None:
        """Stop every loop and wait for the workers' results."""
        if self.shm is None:
            return
        self.shm.stop(native.SENDER)
        self.shm.stop(native.RECEIVER)
        alive = [h for h in self.handles if not h.exited() or h.event("result")]
        wait_for(alive, "result", timeout_s)

    def histograms(self) -> dict[str, dict[int, list[int]]]:
        """Kind -> receiver index -> buckets: one_way always; stack and app from receivers
        that took kernel RX stamps."""
        out: dict[str, dict[int, list[int]]] = {}
        if self.shm is None:
            return out
        for slot, s in enumerate(self.specs):
            if s["role"] != "receiver":
                continue
            for kind in native.HIST_KINDS if s.get("timestamps") else ("one_way",):
                out.setdefault(kind, {})[s["index"]] = self.shm.histogram(slot, kind)
        return out

    def close(self) -> None:
        """Reap every worker and release the stats block; safe to call twice."""
        for h in self.handles:
            h.stop()
        if self.shm is not None:
            self.shm.close()
            self.shm = None

    def records(self) -> list[dict[str, Any]]:
        """One record per worker, in slot order, with what it reported."""
        by_slot = {h.slot: h for h in self.handles}
        out = []
        for slot, spec in enumerate(self.specs):
            h = by_slot.get(slot)
            ready = (h.event("ready") if h else None) or {}
            result = (h.event("result") if h else None) or {}
            out.append({
                "role": spec["role"], "index": spec["index"], "cpu": spec.get("cpu"),
                "host": self.host, "pid": h.pid if h else None,
                "cpus_allowed": ready.get("cpus"), "socket": ready.get("socket", {}),
                "flows": result.get("flows", []), "cpu_time": result.get("cpu", {}),
                "xsk": result.get("xsk"),  # an AF_XDP socket's XDP_STATISTICS
                "failure": (h.failure() if h else "never started"),
            })
        return out
