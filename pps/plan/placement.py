"""The placement planner: topology + config -> which CPU every worker runs on, and why.

Pure: no I/O, so it is tested against captured multi-socket machines (tests/data/topo).
A policy that cannot be met raises PlacementError saying why; it never falls back quietly.

Order of placement. The receivers are what is measured, so they are placed first and get
the best CPUs; senders then take free cores apart from them. Two exceptions:
- senders.cpus given: those are fixed first, and `spread` receivers avoid them;
- queue policies (local, sibling, smt-sibling, remote) on a device without per-queue IRQs
  (lo, veth without RPS): such a queue's receive path runs on the *sending* CPU, so the
  senders are placed first and the sender's CPU is the queue's CPU. `local` then puts
  receiver i on the CPU of sender i mod senders.count, sharing it on purpose.
`spread` leaves the core of CPU 0 for last, since CPU 0 carries housekeeping work (timers,
unbound IRQs, RCU) that would disturb a receiver; senders are less sensitive.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import asdict, dataclass, replace
from typing import Any

from pps.config.cpulist import format_cpulist
from pps.config.model import Config
from pps.errors import ConfigError, PlacementError
from pps.host.topology import Device, RxQueue, Topology

QUEUE_POLICIES = ("local", "sibling", "smt-sibling", "remote")


@dataclass(frozen=True)
class WorkerSlot:
    role: str  # "sender" | "receiver"
    index: int
    cpu: int
    node: int | None
    queue: int | None  # the RX queue a receiver is aligned with, when the policy aligns
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Plan:
    workers: tuple[WorkerSlot, ...]
    policy: str
    device: str | None
    notes: tuple[str, ...] = ()

    @property
    def senders(self) -> tuple[WorkerSlot, ...]:
        return tuple(w for w in self.workers if w.role == "sender")

    @property
    def receivers(self) -> tuple[WorkerSlot, ...]:
        return tuple(w for w in self.workers if w.role == "receiver")

    def to_dict(self) -> dict[str, Any]:
        return {"policy": self.policy, "device": self.device, "notes": list(self.notes),
                "workers": [w.to_dict() for w in self.workers]}


class _Board:
    """CPUs and cores taken so far, so later choices can avoid them."""

    def __init__(self, topo: Topology) -> None:
        self.topo = topo
        self.cpu_load: Counter[int] = Counter()
        self.core_load: Counter[tuple[int, int]] = Counter()
        self.notes: list[str] = []

    def core(self, cpu: int) -> tuple[int, int]:
        info = self.topo.cpu(cpu)
        return info.core_key if info else (-1, -1 - cpu)

    def take(self, cpu: int) -> None:
        self.cpu_load[cpu] += 1
        self.core_load[self.core(cpu)] += 1

    def load(self, cpu: int) -> tuple[int, int]:
        return self.cpu_load[cpu], self.core_load[self.core(cpu)]

    def slot(self, role: str, index: int, cpu: int, queue: int | None, reason: str) -> WorkerSlot:
        self.take(cpu)
        return WorkerSlot(role, index, cpu, self.topo.node_of(cpu), queue, reason)


def plan_workers(topology: Topology, config: Config, device: str | None = None,
                 roles: tuple[str, ...] = ("sender", "receiver")) -> Plan:
    """Plan the senders and receivers (those of `roles`: one host's share of a run across
    hosts); raises PlacementError when the policy cannot be met."""
    s, r = config.senders, config.receivers
    if "sender" not in roles:
        s = replace(s, count=0, cpus=None)
    if "receiver" not in roles:
        r = replace(r, count=0, cpus=None, placement="spread")
    if not topology.online_cpus:
        raise PlacementError(f"no online CPUs found under {topology.root}")
    _check_cpus("senders.cpus", s.cpus, topology, config.source)
    _check_cpus("receivers.cpus", r.cpus, topology, config.source)
    policy = "explicit" if r.cpus is not None else r.placement
    dev = _device(topology, device, policy)
    board = _Board(topology)
    queues = _receiver_queues(dev, r.count) if policy in QUEUE_POLICIES else []
    sender_first = s.cpus is not None or any(q.serviced_by == "sender" for q in queues)
    irq_cpus = _irq_cpus(dev)
    senders: list[WorkerSlot] = []
    if sender_first:
        senders = _place_senders(board, s.count, s.cpus, irq_cpus)
    receivers = _place_receivers(board, policy, dev, queues, r.count, r.cpus, senders)
    if not sender_first:
        senders = _place_senders(board, s.count, s.cpus, irq_cpus)
    workers = tuple(senders + receivers)
    notes = board.notes + _sharing_notes(workers)
    return Plan(workers, policy, dev.name if dev else device, tuple(dict.fromkeys(notes)))


def _check_cpus(key: str, cpus: tuple[int, ...] | None, topo: Topology, source: str) -> None:
    """Refuse CPUs this machine lacks or has offline, naming them. A CPU that does not exist
    is a mistake in the config (exit 2); one that is offline is the host's state (exit 3)."""
    if cpus is None:
        return
    known = {c.cpu for c in topo.cpus}
    online = set(topo.online_cpus)
    absent = [c for c in cpus if c not in known]
    if absent:
        raise ConfigError(f"{source}: {key}: CPU {format_cpulist(absent)} does not exist on this "
                          f"machine (it has CPUs {format_cpulist(known)})")
    offline = [c for c in cpus if c not in online]
    if offline:
        raise PlacementError(f"{key} names offline CPU {format_cpulist(offline)} "
                             f"(online: {format_cpulist(online)})")


def _device(topo: Topology, name: str | None, policy: str) -> Device | None:
    if name is None:
        if policy in QUEUE_POLICIES:
            raise PlacementError(
                f"placement {policy!r} aligns receivers with a device's RX queues, and no device "
                "is known; set target.device")
        return None
    dev = topo.devices.get(name)
    if dev is None:
        have = ", ".join(sorted(topo.devices)) or "none"
        raise PlacementError(f"device {name!r} is not in the topology read from {topo.root} "
                             f"(devices: {have})")
    if policy in QUEUE_POLICIES and not dev.rx_queues:
        raise PlacementError(f"placement {policy!r}: device {name} shows no RX queues in sysfs")
    return dev


def _irq_cpus(dev: Device | None) -> set[int]:
    """CPUs that take the device's queue interrupts or do its RPS work."""
    if dev is None:
        return set()
    return {c for q in dev.rx_queues if q.serviced_by in ("irq", "rps") for c in q.cpus}


def _receiver_queues(dev: Device | None, count: int) -> list[RxQueue]:
    """Receiver i is meant for RX queue i mod the number of queues."""
    assert dev is not None
    return [dev.rx_queues[i % len(dev.rx_queues)] for i in range(count)]


# ---------------------------------------------------------------------------- senders

def _place_senders(board: _Board, count: int, cpus: tuple[int, ...] | None,
                   irq_cpus: set[int]) -> list[WorkerSlot]:
    if cpus is not None:
        return [board.slot("sender", i, cpus[i % len(cpus)], None,
                           f"senders.cpus item {i % len(cpus)}") for i in range(count)]
    out = []
    for i in range(count):
        # A free core, then a free CPU, then the least shared; among equals keep off the
        # CPUs that take the device's queue interrupts, whose softirq work would compete.
        cpu = min(board.topo.online_cpus, key=lambda c: (*board.load(c), c in irq_cpus, c))
        load = board.load(cpu)
        why = ("a free core" if load == (0, 0) else "a free CPU on a busy core" if load[0] == 0
               else "no free CPU left; shared")
        out.append(board.slot("sender", i, cpu, None, why))
    return out


# ---------------------------------------------------------------------------- receivers

def _place_receivers(board: _Board, policy: str, dev: Device | None, queues: list[RxQueue],
                     count: int, cpus: tuple[int, ...] | None,
                     senders: list[WorkerSlot]) -> list[WorkerSlot]:
    if policy == "explicit":
        assert cpus is not None
        return [board.slot("receiver", i, cpus[i % len(cpus)], None,
                           f"explicit: receivers.cpus item {i % len(cpus)}") for i in range(count)]
    if policy == "spread":
        # senders.cpus, when given, are already on the board, so spread avoids them.
        return [_spread(board, i, dev) for i in range(count)]
    out = []
    for i, q in enumerate(queues):
        assert dev is not None
        anchor, where = _anchor(board, dev, q, i, senders)
        pick = {"local": _local, "sibling": _sibling, "smt-sibling": _smt_sibling,
                "remote": _remote}[policy]
        cpu, reason = pick(board, dev, anchor, where)
        out.append(board.slot("receiver", i, cpu, q.queue, f"{policy}: {reason}"))
    return out


def _anchor(board: _Board, dev: Device, q: RxQueue, i: int,
            senders: list[WorkerSlot]) -> tuple[int, str]:
    """The CPU that does queue q's receive work for receiver i, and words saying so."""
    name = f"{dev.name} rx-{q.queue}"
    if q.serviced_by == "sender":
        board.notes.append(f"{dev.name}: a queue with no IRQ and no RPS CPUs is serviced by the "
                           "CPU that sends into it, so queue policies take the sender's CPU "
                           "as its CPU")
        s = senders[i % len(senders)]
        return s.cpu, f"CPU {s.cpu} (sender {s.index}), which runs {name}'s receive path"
    if q.serviced_by == "unknown":
        raise PlacementError(
            f"cannot tell which CPU services {name}: no IRQ named for that queue was found in "
            f"/proc/interrupts (driver {dev.driver or 'unknown'}); use receivers.cpus instead")
    online = [c for c in q.cpus if c in set(board.topo.online_cpus)]
    if not online:
        raise PlacementError(f"{name} is serviced by CPU {format_cpulist(q.cpus)}, none online")
    # Receivers meant for the same queue take its CPUs in turn.
    cpu = online[(i // len(dev.rx_queues)) % len(online)]
    if len(online) > 1:
        if q.serviced_by == "rps":
            how, fix = "RPS spreads its flows over", "set its rps_cpus to one CPU"
        else:
            how, fix = f"IRQ {q.irq} may fire on", "pin the IRQ to one CPU"
        board.notes.append(f"{name}: {how} CPUs {format_cpulist(online)}, so its receivers are "
                           f"planned in turn over them; {fix} for an exact alignment")
    what = "does RPS for" if q.serviced_by == "rps" else f"takes IRQ {q.irq} of"
    return cpu, f"CPU {cpu}, which {what} {name}"


def _least_loaded(board: _Board, candidates: list[int], *extra) -> int:
    """Fewest workers on the CPU, then on its core, then extra keys, then lowest number."""
    return min(candidates, key=lambda c: (*board.load(c), *(f(c) for f in extra), c))


def _local(board: _Board, dev: Device, anchor: int, where: str) -> tuple[int, str]:
    return anchor, where


def _sibling(board: _Board, dev: Device, anchor: int, where: str) -> tuple[int, str]:
    topo = board.topo
    node = topo.node_of(anchor)
    core = board.core(anchor)
    candidates = [c for c in topo.online_cpus if topo.node_of(c) == node and board.core(c) != core]
    if not candidates:
        raise PlacementError(f"sibling needs another core on node {node} besides that of {where}; "
                             f"node {node} has no other online core")
    irq_cpus = _irq_cpus(dev)
    cpu = _least_loaded(board, candidates, lambda c: c in irq_cpus)
    return cpu, f"CPU {cpu}, another core on node {node} than {where}"


def _smt_sibling(board: _Board, dev: Device, anchor: int, where: str) -> tuple[int, str]:
    info = board.topo.cpu(anchor)
    sibs = [c for c in (info.siblings if info else ()) if c in set(board.topo.online_cpus)]
    if not sibs:
        raise PlacementError(f"smt-sibling needs a second hardware thread on the core of {where}; "
                             f"CPU {anchor} has no online SMT sibling (SMT is off or absent)")
    cpu = _least_loaded(board, sibs)
    return cpu, f"CPU {cpu}, SMT sibling of {where}"


def _remote(board: _Board, dev: Device, anchor: int, where: str) -> tuple[int, str]:
    topo = board.topo
    nodes = topo.online_nodes()
    if len(nodes) < 2:
        raise PlacementError("remote needs a second NUMA node; "
                             f"this machine has {_count(len(nodes))}")
    home = dev.numa_node
    if home is None:
        home = topo.node_of(anchor)
        board.notes.append(f"{dev.name} reports no NUMA node (numa_node -1 or none); remote is "
                           f"taken relative to node {home} of the CPU servicing its queue")
    candidates = [c for n, cpus in nodes.items() if n != home for c in cpus]
    if not candidates:
        raise PlacementError(f"remote needs online CPUs on a node other than node {home}; "
                             "there are none")
    cpu = _least_loaded(board, candidates)
    return cpu, f"CPU {cpu} on node {topo.node_of(cpu)}; {dev.name} is on node {home} ({where})"


def _spread(board: _Board, i: int, dev: Device | None) -> WorkerSlot:
    topo = board.topo
    home = dev.numa_node if dev else None
    cpu0_core = board.core(min(topo.online_cpus))
    cpu = _least_loaded(board, list(topo.online_cpus),
                        lambda c: home is not None and topo.node_of(c) != home,
                        lambda c: board.core(c) == cpu0_core)
    node = topo.node_of(cpu)
    where = " (the NIC's node)" if home is not None and node == home else ""
    return board.slot("receiver", i, cpu, None, f"spread: CPU {cpu} on node {node}{where}")


# ---------------------------------------------------------------------------- notes

def _count(n: int) -> str:
    return {0: "none", 1: "one", 2: "two"}.get(n, str(n))


def _sharing_notes(workers: tuple[WorkerSlot, ...]) -> list[str]:
    """One note per CPU that carries more than one worker, naming them."""
    by_cpu: dict[int, list[WorkerSlot]] = {}
    for w in workers:
        by_cpu.setdefault(w.cpu, []).append(w)
    notes = []
    for cpu, ws in sorted(by_cpu.items()):
        if len(ws) < 2:
            continue
        roles = {w.role for w in ws}
        if roles == {"sender", "receiver"}:
            who = "senders and receivers"
        else:
            role = ws[0].role
            who = f"{role}s " + " and ".join(str(w.index) for w in ws)
        notes.append(f"{who} share CPU {cpu}")
    return notes
