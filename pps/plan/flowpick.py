"""Choose each flow's source port so the flows land evenly on the receivers and RX queues.

Where a UDP flow lands is decided by two hashes of its 4-tuple, and a sender controls the
tuple through its source port:

- The RX queue on a NIC with RSS: the Toeplitz hash of the tuple indexes the indirection
  table. With the key and table from the driver it is computed here (pps/rss.py).
- The receiver in an SO_REUSEPORT group. In the kernel (net/ipv4/udp.c, udp4_lib_lookup2 ->
  inet_lookup_reuseport; net/core/sock_reuseport.c), the hash is
  udp_ehashfn(net, daddr, hnum, saddr, sport) = __inet_ehashfn(..., udp_ehash_secret +
  net_hash_mix(net)): keyed by a secret drawn once per boot and mixed with the namespace.
  reuseport_select_sock -> reuseport_select_sock_by_hash takes
  reuse->socks[reciprocal_scale(hash, num_socks)], an index into the group's socket array,
  which holds the sockets in the order they joined (__reuseport_add_sock appends; a socket
  leaving is replaced by the last one). The secret cannot be read, but the choice can be
  probed: a throw-away group of N sockets on the same address and port, joined in the
  order the real receivers will join (the orchestrator starts them one at a time, in index
  order), gets one datagram from each candidate source port; whichever socket receives it
  is the receiver that port leads to. The probe group is closed before the receivers bind.
- With SO_INCOMING_CPU on the group's sockets (Linux 6.2+, commit "soreuseport: Fix socket
  selection for SO_INCOMING_CPU"), reuseport_select_sock_by_hash scans the group from the
  hashed index for a socket whose sk_incoming_cpu is the CPU processing the packet
  (raw_smp_processor_id) and falls back to the hashed socket when none matches. The hash
  then only chooses among receivers on the same CPU. On lo and a veth without RPS, the
  packet is processed on the sending CPU (netif_rx queues it to that CPU's backlog), so the
  probe sends from a thread pinned to the sender's CPU with the group's sockets set the
  same way: what it measures is what the kernel will do, not a model of it.

Nothing here is assumed to work: every prediction is recorded next to where the flows
really landed (record()), and a run where they differ shows it.
"""

from __future__ import annotations

import errno
import functools
import os
import random
import select
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from pps._native import lib
from pps.errors import PpsError
from pps.host import netns, rss
from pps.host.sockets import family_of

PROBE_TIMEOUT_S = 0.5
BUDGET_S = 10.0
PORT_RANGE_FILE = "/proc/sys/net/ipv4/ip_local_port_range"

TargetFn = Callable[[int, int], int]  # (sender, flow) -> receiver index wanted


@dataclass
class FlowChoice:
    """One flow: its source port (None: the kernel's ephemeral one) and where it should land."""

    flow: int
    sender: int
    destination: str
    source_port: int | None = None
    receiver: int | None = None  # predicted receiver index
    queue: int | None = None  # predicted RX queue


@dataclass
class Pick:
    """The chosen ports and predictions of one run, with what chose them and why not more."""

    mode: str  # "off", "none", or what chose: "reuseport-probe", "rss", "reuseport-probe+rss"
    flows: list[FlowChoice] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    rss: dict[str, Any] | None = None
    candidates: int = 0
    seconds: float = 0.0

    def ports(self) -> list[list[int | None]] | None:
        """Source ports per sender index, per flow; None when the kernel chooses them all."""
        if all(f.source_port is None for f in self.flows):
            return None
        senders = max(f.sender for f in self.flows) + 1
        out: list[list[int | None]] = [[] for _ in range(senders)]
        for f in sorted(self.flows, key=lambda f: f.flow):
            out[f.sender].append(f.source_port)
        return out

    def to_dict(self) -> dict[str, Any]:
        return {"mode": self.mode, "notes": list(self.notes), "rss": self.rss,
                "candidates_probed": self.candidates, "seconds": round(self.seconds, 3),
                "flows": [asdict(f) for f in self.flows]}


@dataclass
class Setting:
    """Everything the pick depends on, taken from the config, plan and lab."""

    senders: list[tuple[int, int | None]]  # (index, cpu)
    receivers: list[tuple[int, int | None]]  # (index, cpu), in the order they join the group
    flows: int  # per sender
    destinations: list[str]
    port: int
    bind: str
    send_ns: str | None = None
    recv_ns: str | None = None
    steer_cpu: bool = False
    processed_on_sender_cpu: bool = False
    rss: rss.RssTable | None = None

    def flow_list(self) -> list[FlowChoice]:
        return [FlowChoice(flow=(s << 16) + f, sender=s,
                           destination=self.destinations[f % len(self.destinations)])
                for s, _ in self.senders for f in range(self.flows)]


# ---------------------------------------------------------------------------- the probe

def _in_thread(ns: str | None, cpu: int | None, func: Callable[[], Any]) -> Any:
    """func() on a throw-away thread in namespace `ns`, pinned to `cpu` (so the packets it
    sends are processed there on lo/veth); the caller's thread neither moves nor migrates."""
    box: dict[str, Any] = {}

    def target() -> None:
        try:
            if ns is not None:
                netns.enter(ns)
            if cpu is not None:
                os.sched_setaffinity(0, {cpu})  # 0 = this thread only
            box["value"] = func()
        except BaseException as exc:  # handed back to the caller below
            box["error"] = exc

    thread = threading.Thread(target=target, name="pps-flowpick", daemon=True)
    thread.start()
    thread.join()
    if "error" in box:
        raise box["error"]
    return box["value"]


class ProbeGroup:
    """A throw-away SO_REUSEPORT group shaped like the real receivers: same namespace,
    address, port, size, join order and SO_INCOMING_CPU settings."""

    def __init__(self, setting: Setting) -> None:
        self.setting = setting
        self.token = os.urandom(8)
        self.socks: list[socket.socket] = _in_thread(setting.recv_ns, None, self._open)

    def _open(self) -> list[socket.socket]:
        s = self.setting
        socks: list[socket.socket] = []
        try:
            for _, cpu in s.receivers:
                sock = socket.socket(family_of(s.bind), socket.SOCK_DGRAM)
                socks.append(sock)
                sock.setsockopt(socket.SOL_SOCKET, lib.SO_REUSEPORT, 1)
                if s.steer_cpu and cpu is not None:
                    sock.setsockopt(socket.SOL_SOCKET, lib.SO_INCOMING_CPU, cpu)
                sock.bind((s.bind, s.port))
                sock.setblocking(False)
        except BaseException:
            for sock in socks:
                sock.close()
            raise
        return socks

    def close(self) -> None:
        for sock in self.socks:
            sock.close()
        self.socks = []

    def classify(self, sent: list[int]) -> dict[int, int]:
        """Source port -> index of the probe socket its datagram reached."""
        found: dict[int, int] = {}
        waiting = set(sent)
        deadline = time.monotonic() + PROBE_TIMEOUT_S
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select(self.socks, [], [], left)
            for sock in ready:
                index = self.socks.index(sock)
                while True:
                    try:
                        data, peer = sock.recvfrom(64)
                    except BlockingIOError:
                        break
                    if data == self.token and peer[1] in waiting:
                        found[peer[1]] = index
                        waiting.discard(peer[1])
        return found


def _send_probes(destination: str, port: int, candidates: list[int], payload: bytes | None
                 ) -> list[tuple[int, str]]:
    """Bind each candidate source port, connect, send one probe (when payload is given).
    Returns (port, source address) for the ports that were free."""
    done = []
    for sport in candidates:
        family = family_of(destination)
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            sock.bind(("::" if family == socket.AF_INET6 else "0.0.0.0", sport))
            sock.connect((destination, port))
            source = sock.getsockname()[0]
            if payload is not None:
                sock.send(payload)
        except OSError as exc:
            if exc.errno in (errno.EADDRINUSE, errno.EACCES):
                continue  # taken by someone else, or reserved: not a candidate
            raise
        finally:
            sock.close()
        done.append((sport, source))
    return done


def port_range() -> tuple[int, int]:
    """This namespace's ephemeral range (net.ipv4.ip_local_port_range is per namespace)."""
    try:
        low, high = (int(x) for x in Path(PORT_RANGE_FILE).read_text().split())
    except (OSError, ValueError):
        return 32768, 60999
    return low, high


def candidate_ports(span_of: tuple[int, int], avoid: set[int],
                    seed: int | None = None) -> Iterator[int]:
    """The ephemeral range, once, from a random start: ports the kernel itself would hand
    out, each tried once."""
    low, high = span_of
    span = high - low + 1
    start = random.Random(seed).randrange(span)
    for i in range(span):
        port = low + (start + i) % span
        if port not in avoid:
            yield port


# ---------------------------------------------------------------------------- the pick

def choose(setting: Setting, target: TargetFn | None = None, seed: int | None = None) -> Pick:
    """Pick a source port per flow so that each receiver (and each RX queue, when the RSS
    table is known) gets as even a share of flows as possible. `target` overrides the
    receiver each flow should go to (tests use it to show the pick is in control)."""
    t0 = time.monotonic()
    flows = setting.flow_list()
    notes: list[str] = []
    by_receiver = len(setting.receivers) > 1
    if by_receiver and setting.steer_cpu and not setting.processed_on_sender_cpu:
        by_receiver = False
        notes.append("receivers steer by SO_INCOMING_CPU, and which CPU processes a packet is up "
                     "to RPS or the NIC's interrupts here: receiver per flow not chosen")
    table = setting.rss
    by_queue = table is not None and table.problem() is None and table.ports_hashed
    if table is not None and table.problem() is None and not table.ports_hashed:
        notes.append(f"the NIC hashes only {table.fields!r} for UDP: source ports cannot spread "
                     "flows over queues (ethtool -N DEV rx-flow-hash udp4 sdfn)")
    if len(setting.receivers) == 1:
        for f in flows:
            f.receiver = setting.receivers[0][0]
    if not by_receiver and not by_queue:
        _predict_queue_only(setting, flows)
        return Pick("none", flows, notes, table.to_dict() if table else None,
                    seconds=time.monotonic() - t0)

    group = ProbeGroup(setting) if by_receiver else None
    try:
        picker = _Picker(setting, group, by_queue, seed)
        for f in flows:
            picker.assign(f, target)
    finally:
        if group is not None:
            group.close()
    notes += picker.notes
    mode = "+".join(m for m, on in (("reuseport-probe", by_receiver), ("rss", by_queue)) if on)
    return Pick(mode, flows, notes, table.to_dict() if table else None, picker.classified,
                time.monotonic() - t0)


def _predict_queue_only(setting: Setting, flows: list[FlowChoice]) -> None:
    """Without port choice, the queue is still known when the NIC hashes addresses only."""
    table = setting.rss
    if table is None or table.problem() is not None or table.ports_hashed:
        return
    sources: dict[str, str] = {}
    for f in flows:
        if f.destination not in sources:  # the address the route gives; nothing is sent
            probe = functools.partial(_send_probes, f.destination, setting.port, [0], None)
            found = _in_thread(setting.send_ns, None, probe)
            sources[f.destination] = found[0][1]
        f.queue = table.queue(sources[f.destination], f.destination, 0, setting.port)


class _Picker:
    """Greedy: each flow in turn wants the least loaded (receiver, queue) it can reach; ports
    already classified wait in a pool, more are probed in batches until one fits."""

    def __init__(self, setting: Setting, group: ProbeGroup | None, by_queue: bool,
                 seed: int | None) -> None:
        self.s = setting
        self.group = group
        self.by_queue = by_queue
        self.ports = candidate_ports(_in_thread(setting.send_ns, None, port_range),
                                     {setting.port}, seed)
        self.pool: dict[tuple[str, int | None], list[tuple[int, int | None, int | None]]] = {}
        self.rcount: Counter[int] = Counter()
        self.qcount: Counter[int] = Counter()
        self.classified = 0
        self.deadline = time.monotonic() + BUDGET_S
        self.exhausted = False
        self.notes: list[str] = []
        cpus = dict(setting.senders)
        self.cpu_of = cpus
        n = len(setting.receivers)
        self.batch = max(16, 4 * n * (len(setting.rss.queues) if by_queue else 1))

    def _eligible(self, sender: int) -> list[int]:
        """Receivers a sender's flows can reach: with SO_INCOMING_CPU, those on the CPU
        processing its packets (its own, here) when there are any; else the hash decides."""
        all_r = [i for i, _ in self.s.receivers]
        if not self.s.steer_cpu:
            return all_r
        cpu = self.cpu_of[sender]
        mine = [i for i, c in self.s.receivers if c is not None and c == cpu]
        return mine or all_r

    def _key(self, f: FlowChoice) -> tuple[str, int | None]:
        # With SO_INCOMING_CPU the answer depends on the sending CPU, so pools are per CPU.
        return f.destination, (self.cpu_of[f.sender] if self.s.steer_cpu else None)

    def assign(self, f: FlowChoice, target: TargetFn | None) -> None:
        want_r = None
        if self.group is not None:
            want_r = (target(f.sender, f.flow & 0xFFFF) if target else
                      min(self._eligible(f.sender), key=lambda r: (self.rcount[r], r)))
        want_q = None
        if self.by_queue:
            want_q = min(self.s.rss.queues, key=lambda q: (self.qcount[q], q))
        pool = self.pool.setdefault(self._key(f), [])
        while True:
            hit = next((c for c in pool if (want_r is None or c[1] == want_r)
                        and (want_q is None or c[2] == want_q)), None)
            if hit is not None or self.exhausted:
                break
            self._classify(f, pool)
        if hit is None:  # out of ports or time: the nearest fit, and say so
            hit = next((c for c in pool if c[1] == want_r), None) or \
                next((c for c in pool if c[2] == want_q), None) or (pool[0] if pool else None)
            if not any("incomplete" in n for n in self.notes):
                self.notes.append(f"pick incomplete after {self.classified} candidate ports: "
                                  "some flows are not where the balance wants them")
        if hit is None:
            return
        pool.remove(hit)
        f.source_port = hit[0]
        f.receiver = hit[1] if hit[1] is not None else f.receiver
        f.queue = hit[2]
        if f.receiver is not None:
            self.rcount[f.receiver] += 1
        if f.queue is not None:
            self.qcount[f.queue] += 1

    def _classify(self, f: FlowChoice, pool: list) -> None:
        batch = [p for _, p in zip(range(self.batch), self.ports)]
        if not batch or time.monotonic() > self.deadline:
            self.exhausted = True
            return
        payload = self.group.token if self.group is not None else None
        cpu = self.cpu_of[f.sender] if self.s.steer_cpu else None
        sent = _in_thread(self.s.send_ns, cpu,
                          lambda: _send_probes(f.destination, self.s.port, batch, payload))
        self.classified += len(sent)
        landed = self.group.classify([p for p, _ in sent]) if self.group is not None else {}
        for port, source in sent:
            if self.group is not None and port not in landed:
                continue  # its probe never arrived: no prediction, not a candidate
            receiver = self.s.receivers[landed[port]][0] if self.group is not None else None
            queue = (self.s.rss.queue(source, f.destination, port, self.s.port)
                     if self.by_queue else None)
            pool.append((port, receiver, queue))


# ---------------------------------------------------------------------------- wiring

def _rps_off(device: str) -> bool:
    """True when no receive queue of a host device spreads work with RPS."""
    base = Path("/sys/class/net", device, "queues")
    try:
        masks = [(q / "rps_cpus").read_text() for q in base.iterdir() if q.name.startswith("rx-")]
    except OSError:
        return False
    return all(int(m.strip().replace(",", "") or "0", 16) == 0 for m in masks)


def setting_for(config: Any, plan: Any, addresses: dict[str, Any],
                lab: Any | None) -> tuple[Setting, list[str]]:
    """The Setting of a run, and notes on what of it could not be read."""
    notes: list[str] = []
    if lab is not None:
        device, dev_ns = lab.receiver_dev, lab.receiver_ns
        # veth hands a packet to the backlog (or NAPI) of the sending CPU, unless RPS moves it.
        on_sender_cpu = not (lab.spec.rps_cpus or ())
    else:
        device, dev_ns = plan.device, None
        on_sender_cpu = device == "lo" and _rps_off("lo")
    table = None
    if device is not None:
        try:
            table = rss.read_rss(device, dev_ns, family_of(addresses["destinations"][0]))
        except PpsError as exc:
            notes.append(f"queue spread not chosen: {exc}")
        else:
            if table is None:
                notes.append(f"queue spread not chosen: {device} has no RSS key "
                             "(ETHTOOL_GRSSH unsupported, as on lo and veth)")
            elif table.problem():
                notes.append(f"queue spread not chosen: {device}: {table.problem()}")
    else:
        notes.append("queue spread not chosen: no receiving device known")
    setting = Setting(
        senders=[(w.index, w.cpu) for w in plan.senders],
        receivers=[(w.index, w.cpu) for w in sorted(plan.receivers, key=lambda w: w.index)],
        flows=config.senders.flows, destinations=list(addresses["destinations"]),
        port=config.target.port, bind=addresses["bind"],
        send_ns=lab.sender_ns if lab else None, recv_ns=lab.receiver_ns if lab else None,
        steer_cpu=config.receivers.steer == "incoming-cpu", processed_on_sender_cpu=on_sender_cpu,
        rss=table)
    return setting, notes


def pick(config: Any, plan: Any, addresses: dict[str, Any], lab: Any | None) -> Pick:
    """The pick for one run (`senders.pick_ports`). Never fails a run: a pick that cannot be
    made leaves the ports to the kernel and says why."""
    setting, notes = setting_for(config, plan, addresses, lab)
    if config.senders.pick_ports == "off":
        result = Pick("off", setting.flow_list(),
                      notes + ["source ports: ephemeral (senders.pick_ports = off)"])
        if len(setting.receivers) == 1:
            for f in result.flows:
                f.receiver = setting.receivers[0][0]
        return result
    try:
        result = choose(setting)
    except (OSError, PpsError) as exc:
        return Pick("none", setting.flow_list(), notes + [f"source ports not chosen: {exc}"])
    result.notes[:0] = notes
    return result


def record(report: Any, result: Pick) -> None:
    """Put the pick next to what happened: run.json `flow_pick`, predicted columns in the
    flows table, and predicted vs measured flows per receiver in the balance."""
    report.run_json["flow_pick"] = result.to_dict()
    flows = report.tables.get("flows")
    predicted = {f.flow: f for f in result.flows}
    summary = {"mode": result.mode, "notes": list(result.notes)}
    if flows is not None and not flows.empty:
        for column, attr in (("predicted_receiver", "receiver"), ("predicted_queue", "queue")):
            values = [getattr(predicted.get(int(x)), attr, None) for x in flows["flow"]]
            flows[column] = pd.array(values, dtype="Int64")
        known = flows[flows["predicted_receiver"].notna() & flows["receiver"].notna()]
        summary["receiver_predicted"] = int(len(known))
        same = known["predicted_receiver"] == known["receiver"]
        summary["receiver_as_predicted"] = int(same.sum())
        receivers = (report.summary.get("balance") or {}).get("receivers")
        if receivers is not None and not known.empty:
            counts = Counter(int(r) for r in flows["predicted_receiver"].dropna())
            receivers["flows_predicted"] = {str(k): v for k, v in sorted(counts.items())}
    report.summary["flow_pick"] = summary
