"""One trial's lifecycle: spawn pinned workers, barrier, warm-up -> measure -> drain,
sample every interval, stop, gather.

Check everything, then start everything: every worker must report ready (socket open,
pinned) before the go word is set; if one fails, all stop. A worker that dies mid-run is
noticed within LIVENESS_S; Ctrl-C stops the run. Either way what was measured is kept,
and the outcome says what happened.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from . import native
from .config import Config
from .procs import WorkerHandle, spawn_worker, wait_for

LIVENESS_S = 0.1
READY_TIMEOUT_S = 15.0
RESULT_TIMEOUT_S = 5.0
SAFETY_MARGIN_S = 10.0  # workers stop by themselves this long after the planned end


@dataclass(frozen=True)
class WorkerSpec:
    """Where one worker runs and what it does; made from the plan by the caller."""

    role: str
    index: int
    cpu: int | None
    netns: str | None = None


@dataclass
class Mark:
    """All slot counters (and counters from collectors) at one instant."""

    name: str
    t: float
    slots: list[dict[str, int]]


@dataclass
class TrialOutcome:
    """Raw material of a trial; summary.py turns it into tables."""

    config: Config
    workers: list[dict[str, Any]]
    samples: list[dict[str, Any]] = field(default_factory=list)
    marks: dict[str, Mark] = field(default_factory=dict)
    histograms: dict[int, list[int]] = field(default_factory=dict)
    counter_snapshots: list[tuple[float, str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    interrupted: bool = False
    failure: str | None = None


Sampler = Callable[[str], Any]  # called with a mark name, returns a collector snapshot
StatusSink = Callable[[dict[str, Any]], None]


def _worker_spec(config: Config, w: WorkerSpec, slot: int, shm: native.SharedStats,
                 deadline_ns: int, addresses: dict[str, str], n_senders: int) -> dict[str, Any]:
    s, r = config.senders, config.receivers
    spec: dict[str, Any] = {
        "role": w.role, "index": w.index, "slot": slot, "cpu": w.cpu, "netns": w.netns,
        "shm_fd": shm.fd, "nslots": shm.nslots, "deadline_ns": deadline_ns,
        "payload": s.payload, "raw": s.raw,
    }
    if w.role == "sender":
        destinations = addresses["destinations"]
        spec.update(
            flows=[{"address": destinations[f % len(destinations)], "port": config.target.port}
                   for f in range(s.flows)],
            flow_base=w.index << 16, batch=s.batch, gso_segments=s.gso_segments,
            sndbuf=s.sndbuf, rate_pps=s.rate / n_senders if s.rate else 0.0, burst=s.burst)
    else:
        spec.update(
            address=addresses["bind"], port=config.target.port, batch=r.batch, rcvbuf=r.rcvbuf,
            busy_poll=r.mode == "busy-poll", busy_poll_us=r.busy_poll_us if r.mode == "busy-poll" else 0,
            gro=r.gro, latency=config.run.latency, max_flows=16384, steer=r.steer,
            # One receiver needs no group: SO_REUSEPORT costs a group lookup per packet.
            reuseport=r.count > 1)
    return spec


class Trial:
    """Runs one trial. Use `run()`; it never leaves a worker behind."""

    def __init__(self, config: Config, workers: list[WorkerSpec], addresses: dict[str, Any],
                 sampler: Sampler | None = None, status: StatusSink | None = None) -> None:
        self.config = config
        self.specs = sorted(workers, key=lambda w: (w.role != "receiver", w.index))
        self.addresses = addresses
        self.sampler = sampler
        self.status = status
        self.handles: list[WorkerHandle] = []
        self.shm: native.SharedStats | None = None
        self.outcome = TrialOutcome(config=config, workers=[])

    # -------------------------------------------------------------- lifecycle
    def run(self) -> TrialOutcome:
        run = self.config.run
        self.shm = native.SharedStats.create(len(self.specs))
        total_s = run.warmup + run.duration + run.drain
        deadline_ns = native.now_ns() + int((total_s + READY_TIMEOUT_S + SAFETY_MARGIN_S) * 1e9)
        n_senders = sum(1 for w in self.specs if w.role == "sender")
        try:
            for slot, w in enumerate(self.specs):
                spec = _worker_spec(self.config, w, slot, self.shm, deadline_ns, self.addresses, n_senders)
                self.handles.append(spawn_worker(spec, (self.shm.fd,)))
            problems = wait_for(self.handles, "ready", READY_TIMEOUT_S)
            if problems:
                self.outcome.failure = "; ".join(problems)
                return self.outcome
            self._measure()
        except KeyboardInterrupt:
            self.outcome.interrupted = True
        finally:
            self._shutdown()
        return self.outcome

    def _measure(self) -> None:
        run = self.config.run
        self._snapshot_counters("start")
        t0 = time.monotonic()
        self.outcome.started_at = time.time()
        self.shm.go()
        if run.warmup == 0:
            self._mark("measure_start", 0.0)
        schedule = [("measure_start", run.warmup), ("measure_end", run.warmup + run.duration)]
        schedule = [(n, at) for n, at in schedule if n not in self.outcome.marks]
        next_sample = run.interval
        last = self._read_all()
        last_t = 0.0
        while schedule:
            now = time.monotonic() - t0
            due = min(next_sample, schedule[0][1])
            if now < due:
                time.sleep(min(LIVENESS_S, due - now))
                if self._check_workers():
                    return
                continue
            if now >= next_sample:
                last, last_t = self._sample(now, last, last_t)
                next_sample += run.interval
            while schedule and now >= schedule[0][1]:
                name, _ = schedule.pop(0)
                self._mark(name, now)
        # Drain: senders stop, receivers read what is still in flight.
        self.shm.stop(native.SENDER)
        drain_end = time.monotonic() + run.drain
        while time.monotonic() < drain_end:
            time.sleep(min(LIVENESS_S, max(0.0, drain_end - time.monotonic())))
            if self._check_workers():
                return

    def _check_workers(self) -> bool:
        """True when a worker has died: the run stops and says who and why."""
        for h in self.handles:
            h.read_events()
            if h.exited() and not h.event("result"):
                reason = h.failure() or "exited early"
                self.outcome.failure = f"{h.name} (pid {h.pid}) on CPU {h.cpu}: {reason}"
                return True
        return False

    def _shutdown(self) -> None:
        """Stop loops, collect results, reap everyone; Ctrl-C during this is ignored."""
        previous = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            if self.shm is not None:
                now = time.monotonic()
                self.shm.stop(native.SENDER)
                self.shm.stop(native.RECEIVER)
                self._collect_results(now)
            for h in self.handles:
                h.stop()
            self._record_workers()
        finally:
            if self.shm is not None:
                self.shm.close()
                self.shm = None
            signal.signal(signal.SIGINT, previous)

    def _collect_results(self, now: float) -> None:
        alive = [h for h in self.handles if not h.exited() or h.event("result")]
        wait_for(alive, "result", RESULT_TIMEOUT_S)
        self._mark("end", None)
        for slot, w in enumerate(self.specs):
            if w.role == "receiver":
                self.outcome.histograms[w.index] = self.shm.histogram(slot)
        self._snapshot_counters("end")

    # -------------------------------------------------------------- sampling
    def _read_all(self) -> list[dict[str, int]]:
        return [self.shm.read(i) for i in range(len(self.specs))]

    def _elapsed(self) -> float:
        return time.time() - self.outcome.started_at if self.outcome.started_at else 0.0

    def _mark(self, name: str, t: float | None) -> None:
        self.outcome.marks[name] = Mark(name, self._elapsed() if t is None else t, self._read_all())
        if name != "end":
            self._snapshot_counters(name)

    def _snapshot_counters(self, name: str) -> None:
        if self.sampler is not None:
            self.outcome.counter_snapshots.append((self._elapsed(), name, self.sampler(name)))

    def _phase(self, t: float) -> str:
        run = self.config.run
        if t < run.warmup:
            return "warmup"
        return "measure" if t < run.warmup + run.duration else "drain"

    def _sample(self, t: float, last: list[dict[str, int]], last_t: float):
        current = self._read_all()
        phase = self._phase((t + last_t) / 2)  # the phase most of the interval was in
        totals = {"sender": 0, "receiver": 0}
        for slot, w in enumerate(self.specs):
            row = {"t": round(t, 6), "phase": phase, "worker": f"{w.role}-{w.index}",
                   "role": w.role, "index": w.index, "cpu": w.cpu}
            row.update({k: current[slot][k] for k in native.COUNTERS if k not in ("last_errno",)})
            self.outcome.samples.append(row)
            totals[w.role] += current[slot]["packets"] - last[slot]["packets"]
        if self.sampler is not None:
            self._snapshot_counters("interval")
        if self.status is not None:
            span = max(t - last_t, 1e-9)
            self.status({"t0": last_t, "t1": t, "phase": phase,
                         "tx_pps": totals["sender"] / span, "rx_pps": totals["receiver"] / span})
        return current, t

    def _record_workers(self) -> None:
        for h in self.handles:
            ready = h.event("ready") or {}
            result = h.event("result") or {}
            self.outcome.workers.append({
                "role": h.role, "index": h.index, "slot": h.slot, "cpu": h.cpu, "pid": h.pid,
                "cpus_allowed": ready.get("cpus"), "socket": ready.get("socket", {}),
                "flows": result.get("flows", []), "cpu_time": result.get("cpu", {}),
                "failure": h.failure(),
            })
