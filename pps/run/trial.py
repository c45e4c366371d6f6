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
from typing import Any, Protocol

from pps import native
from pps.config.hosts import LOCAL, worker_label
from pps.config.model import Config
from pps.results.sample_log import SampleLog
from pps.run import stopsignals
from pps.run.procs import WorkerHandle
from pps.run.status_pace import StatusPace

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
    host: str = LOCAL


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
    # One row per worker per sample, streamed to disk as the run goes (any length).
    samples: SampleLog | list[dict[str, Any]] = field(default_factory=SampleLog)
    marks: dict[str, Mark] = field(default_factory=dict)
    # Latency buckets by kind (one_way; stack and app with kernel stamps) and receiver index.
    histograms: dict[str, dict[int, list[int]]] = field(default_factory=dict)
    # (t, mark, what the sampler returned) at each mark; interval samples are not listed.
    counter_snapshots: list[tuple[float, str, Any]] = field(default_factory=list)
    started_at: float = 0.0
    interrupted: bool = False
    stopped_by: str | None = None  # the signal's name when interrupted
    failure: str | None = None


Sampler = Callable[[str], Any]  # called with a mark name, returns a collector snapshot
StatusSink = Callable[[dict[str, Any]], None]


class Group(Protocol):
    """The workers of one host (pps.run.group.LocalGroup here, pps.run.remote.RemoteGroup elsewhere)."""

    host: str
    specs: list[dict[str, Any]]

    def start(self, deadline_s: float, ready_timeout_s: float) -> list[str]: ...
    def go(self) -> None: ...
    def stop(self, role: int) -> None: ...
    def read(self) -> list[dict[str, int]]: ...
    def check(self) -> str | None: ...
    def finish(self, timeout_s: float) -> None: ...
    def histograms(self) -> dict[str, dict[int, list[int]]]: ...
    def close(self) -> None: ...
    def records(self) -> list[dict[str, Any]]: ...


def worker_specs(config: Config, workers: list[WorkerSpec], addresses: dict[str, Any],
                 n_senders: int | None = None) -> list[dict[str, Any]]:
    """Spec dicts for one host's workers, receivers first. n_senders counts every host's."""
    if n_senders is None:
        n_senders = sum(1 for w in workers if w.role == "sender")
    ordered = sorted(workers, key=lambda w: (w.role != "receiver", w.index))
    return [_worker_spec(config, w, addresses, n_senders) for w in ordered]


def _worker_spec(config: Config, w: WorkerSpec, addresses: dict[str, Any],
                 n_senders: int) -> dict[str, Any]:
    """What one worker is told to do; the group adds its slot and the stats block."""
    s, r = config.senders, config.receivers
    # Kernel RX stamps are CLOCK_REALTIME: send and receive times must be on that clock
    # too. Otherwise CLOCK_MONOTONIC, which no clock step (NTP, settimeofday) can move.
    clock = "realtime" if config.run.timestamps == "kernel" else "monotonic"
    spec: dict[str, Any] = {
        "role": w.role, "index": w.index, "cpu": w.cpu, "netns": w.netns,
        "payload": s.payload, "raw": s.raw, "clock": clock,
        # The wire's trust: flow ids are keyed per run, so a packet of another run or a
        # forger is foreign; stamps before this instant are not this run's (docs/wire.md).
        "run_key": addresses["run_key"], "n_senders": n_senders, "flows_per_sender": s.flows,
        "run_start_ns": native.now_ns(native.CLOCKS[clock]),
    }
    if w.role == "sender":
        destinations = addresses["destinations"]
        # Source ports chosen by pps/flowpick.py, per sender index, per flow (None: ephemeral).
        picked = (addresses.get("source_ports") or [])
        ports = picked[w.index] if w.index < len(picked) else [None] * s.flows
        spec.update(
            flows=[{"address": destinations[f % len(destinations)], "port": config.target.port,
                    "source_port": ports[f]} for f in range(s.flows)],
            flow_base=w.index << 16, batch=s.batch, gso_segments=s.gso_segments,
            sndbuf=s.sndbuf, rate_pps=s.rate / n_senders if s.rate else 0.0, burst=s.burst)
    else:
        spec.update(
            address=addresses["bind"], port=config.target.port, batch=r.batch, rcvbuf=r.rcvbuf,
            busy_poll=r.mode == "busy-poll", busy_poll_us=r.busy_poll_us if r.mode == "busy-poll" else 0,
            spin_ns=r.spin_us * 1000 if r.mode == "block" else 0,
            gro=r.gro, latency=config.run.latency, max_flows=16384, steer=r.steer,
            timestamps=config.run.timestamps == "kernel",
            # One receiver needs no group: SO_REUSEPORT costs a group lookup per packet.
            reuseport=r.count > 1)
    return spec


class Trial:
    """Runs one trial over the groups of workers of every host (pps.run.group.LocalGroup
    here, pps.run.remote.RemoteGroup elsewhere). Use `run()`; it never leaves a worker
    behind."""

    def __init__(self, config: Config, groups: list[Group], sampler: Sampler | None = None,
                 status: StatusSink | None = None,
                 watch: Callable[[], str | None] | None = None) -> None:
        self.config = config
        self.watch = watch  # says why the run can no longer be true (its lab vanished), or None
        self.groups = groups
        self.sampler = sampler
        self.status = status
        # Status lines keep their own pace (run.display_interval), apart from sampling.
        self.pace = StatusPace(config.run.display_interval, config.run.interval)
        # The run's slots: every group's, in order; a worker's slot is its place here.
        self.slots = [(g, spec) for g in groups for spec in g.specs]
        self.outcome = TrialOutcome(config=config, workers=[])

    @property
    def handles(self) -> list[WorkerHandle]:
        """The worker processes running on this host."""
        return [h for g in self.groups for h in getattr(g, "handles", [])]

    # -------------------------------------------------------------- lifecycle
    def run(self) -> TrialOutcome:
        run = self.config.run
        total_s = run.warmup + run.duration + run.drain
        deadline_s = total_s + READY_TIMEOUT_S + SAFETY_MARGIN_S
        try:
            # Receivers' hosts first: every receiver is bound before any sender starts.
            for g in sorted(self.groups, key=lambda g: not _has_role(g, "receiver")):
                problems = g.start(deadline_s, READY_TIMEOUT_S)
                if problems:
                    self.outcome.failure = "; ".join(problems)
                    return self.outcome
            self._measure()
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP (stopsignals.Stopped)
            self.outcome.interrupted = True
            self.outcome.stopped_by = stopsignals.name(getattr(exc, "signum", signal.SIGINT))
        except OSError as exc:  # a host's connection broke while we talked to it
            self.outcome.failure = str(exc)
        finally:
            self._shutdown()
        return self.outcome

    def _measure(self) -> None:
        run = self.config.run
        self._snapshot_counters("start")
        t0 = time.monotonic()
        self.outcome.started_at = time.time()
        for g in self.groups:
            g.go()
        if run.warmup == 0:
            self._mark("measure_start", 0.0)
        schedule = [("measure_start", run.warmup), ("measure_end", run.warmup + run.duration)]
        schedule = [(n, at) for n, at in schedule if n not in self.outcome.marks]
        next_sample = run.interval
        last = self._read_all()
        last_t = 0.0
        self.pace.shown = self._packets(last)
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
        for g in self.groups:
            g.stop(native.SENDER)
        drain_end = time.monotonic() + run.drain
        while time.monotonic() < drain_end:
            time.sleep(min(LIVENESS_S, max(0.0, drain_end - time.monotonic())))
            if self._check_workers():
                return

    def _check_workers(self) -> bool:
        """True when a worker (or a host) has failed or stalled, or what the run measures
        through is gone: the run stops and says who and why."""
        for g in self.groups:
            failure = g.check()
            if failure:
                self.outcome.failure = failure
                return True
        gone = self.watch() if self.watch is not None else None
        if gone:
            self.outcome.failure = gone
        return bool(gone)

    def _shutdown(self) -> None:
        """Stop loops, collect results, reap everyone. A stop signal during this is recorded,
        not raised: what was measured is collected first."""
        with stopsignals.deferred():
            self._collect()
        if stopsignals.received() and not self.outcome.interrupted:
            self.outcome.interrupted = True
            self.outcome.stopped_by = stopsignals.name(stopsignals.received())

    def _collect(self) -> None:
        try:
            for g in self.groups:
                self._guarded(g, lambda g=g: g.finish(RESULT_TIMEOUT_S))
            self._mark("end", None)
            for g in self.groups:
                self._guarded(g, lambda g=g: self._take_histograms(g))
            self._snapshot_counters("end")
            self._finish_sampling()
        finally:
            for g in self.groups:
                self._guarded(g, g.close)
                self.outcome.workers += [{**r, "slot": slot} for slot, r in
                                         zip(self._slots_of(g), g.records())]

    def _finish_sampling(self) -> None:
        """The sampler's last captures parsed while every host still answers (a remote
        host's counters come over its connection, which closing its group ends)."""
        finish = getattr(self.sampler, "finish", None)
        if finish is None:
            return
        try:
            finish()
        except OSError as exc:  # a host lost now: its counters are missing, the others kept
            self.outcome.failure = self.outcome.failure or str(exc)

    def _take_histograms(self, group: Group) -> None:
        for kind, by_receiver in group.histograms().items():
            self.outcome.histograms.setdefault(kind, {}).update(by_receiver)

    def _guarded(self, group: Group, call: Callable[[], Any]) -> None:
        """One host failing to answer must not cost the others' results."""
        try:
            call()
        except OSError as exc:
            if self.outcome.failure is None:
                self.outcome.failure = str(exc)

    def _slots_of(self, group: Group) -> list[int]:
        return [i for i, (g, _) in enumerate(self.slots) if g is group]

    # -------------------------------------------------------------- sampling
    def _read_all(self) -> list[dict[str, int]]:
        return [slot for g in self.groups for slot in g.read()]

    def _elapsed(self) -> float:
        return time.time() - self.outcome.started_at if self.outcome.started_at else 0.0

    def _mark(self, name: str, t: float | None) -> None:
        try:
            slots = self._read_all()
        except OSError as exc:  # a host is gone: keep what the others say, and why
            self.outcome.failure = self.outcome.failure or str(exc)
            slots = self._read_reachable()
        self.outcome.marks[name] = Mark(name, self._elapsed() if t is None else t, slots)
        if name != "end":
            self._snapshot_counters(name)

    def _read_reachable(self) -> list[dict[str, int]]:
        zero = dict.fromkeys(native.COUNTERS, 0)
        out = []
        for g in self.groups:
            try:
                out += g.read()
            except OSError:  # its last reading is what it measured
                out += getattr(g, "last", None) or [dict(zero) for _ in g.specs]
        return out

    def _snapshot_counters(self, name: str) -> None:
        if self.sampler is not None:
            taken = self.sampler(name)
            if name != "interval":  # marks only: a list per sample would grow with the run
                self.outcome.counter_snapshots.append((self._elapsed(), name, taken))

    def _phase(self, t: float) -> str:
        run = self.config.run
        if t < run.warmup:
            return "warmup"
        return "measure" if t < run.warmup + run.duration else "drain"

    def _packets(self, slots: list[dict[str, int]]) -> dict[str, int]:
        """Packets so far by role (sender, receiver)."""
        out = {"sender": 0, "receiver": 0}
        for slot, (_, w) in enumerate(self.slots):
            out[w["role"]] += slots[slot]["packets"]
        return out

    def _sample(self, t: float, last: list[dict[str, int]], last_t: float):
        current = self._read_all()
        phase = self._phase((t + last_t) / 2)  # the phase most of the interval was in
        for slot, (g, w) in enumerate(self.slots):
            row = {"t": round(t, 6), "phase": phase, "host": g.host,
                   "worker": worker_label(g.host, w["role"], w["index"]), "role": w["role"], "index": w["index"],
                   "cpu": w.get("cpu")}
            row.update({k: current[slot][k] for k in native.COUNTERS if k not in ("last_errno",)})
            self.outcome.samples.append(row)
        if self.sampler is not None:
            self._snapshot_counters("interval")
        line = self.pace.line(t, self._packets(current))
        if line is not None and self.status is not None:
            line["phase"] = self._phase((line["t0"] + line["t1"]) / 2)
            self.status(line)
        return current, t


def _has_role(group: Group, role: str) -> bool:
    return any(s["role"] == role for s in group.specs)


