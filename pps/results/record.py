"""run.json as typed objects: one dataclass per object of the file (docs/json.md).

`RunRecord` is the whole file; its parts are `Summary` (what `pps run --json` prints, less
`start` and `intervals`), `HostMeta` (each of `host.before`, `host.after`), `Plan`,
`Topology`, `Check`, `Lab`, `HostInfo` (each entry of `hosts` in a run across hosts) and the
smaller objects inside them. results.run_report.build_report makes one per trial; store
writes it with `to_dict()`; `RunRecord.from_dict` reads a file back.

Every object is also a mutable mapping of its JSON keys (`summary["tx_pps"]`,
`summary.get("ledger")`, `record["flow_pick"] = ...`), so code written against the dicts of
run.json keeps working. Setting a key of a typed field converts a plain dict to its type.
A key the class does not know (a newer pps, a hand-edited file) is kept in `extra` and
written back after the known ones, so nothing read is lost.

Keys are written in field order. A field with OPTIONAL metadata is left out when it is None
(documented as "optional": `stopped_by`, `rescued`, ...); every other key is always written,
as null when unknown.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from pps.results.record_base import OPTIONAL, Record, classes_under
from pps.results.schema import SCHEMA_VERSION


# ============================================================================ the summary

@dataclass(kw_only=True, eq=True)
class Latency(Record):
    """Percentiles of one latency histogram, ns; each the upper edge of its bucket."""

    p50_ns: int | None = None
    p90_ns: int | None = None
    p99_ns: int | None = None
    p999_ns: int | None = None
    max_ns: int | None = None


@dataclass(kw_only=True, eq=True)
class ReceiverLatency(Record):
    index: int | None = None
    cpu: int | None = None
    latency: Latency | None = None


@dataclass(kw_only=True, eq=True)
class LatencyClock(Record):
    """On which clock one-way latency was taken, and whether it can be trusted."""

    clock: str | None = None          # CLOCK_MONOTONIC or CLOCK_REALTIME; null when not taken
    shared: bool | None = None
    recorded: bool | None = None
    # receives stamped before their send: clocks not shared
    skewed: int | None = field(default=None, metadata=OPTIONAL)
    why: str | None = None
    # run.timestamps (user or kernel), when shared
    timestamps: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class WorkerSummary(Record):
    """One worker in the summary: where it ran, its packets over the trial, its CPU time."""

    host: str | None = None
    role: str | None = None
    index: int | None = None
    cpu: int | None = None
    cpus_allowed: str | None = None
    packets: int | None = None
    user_s: float | None = None
    sys_s: float | None = None
    cpu_percent: float | None = None


@dataclass(kw_only=True, eq=True)
class LedgerSummary(Record):
    """The drop ledger (pps.counters.ledger.Ledger.to_dict, with its printed text)."""

    sent: int | None = None
    received: int | None = None
    drops: dict[str, int] = field(default_factory=dict)     # "source.counter" -> packets
    layers: dict[str, int] = field(default_factory=dict)    # send, nic, backlog, ip, udp
    unaccounted: int | None = None
    unaccounted_ratio: float | None = None
    shared: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    text: str | None = None


@dataclass(kw_only=True, eq=True)
class BalancePart(Record):
    """How evenly one part (receivers, queues, cpus) got the packets."""

    # what was counted; receivers: the workers' packets
    counter: str | None = field(default=None, metadata=OPTIONAL)
    counts: dict[str, int] = field(default_factory=dict)
    total: int | None = None
    max_over_mean: float | None = None
    # receivers: flows each one got
    flows: dict[str, int] | None = field(default=None, metadata=OPTIONAL)
    # receivers: as the port pick predicted
    flows_predicted: dict[str, int] | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class Balance(Record):
    receivers: BalancePart | None = field(default=None, metadata=OPTIONAL)
    queues: BalancePart | None = field(default=None, metadata=OPTIONAL)
    cpus: BalancePart | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class FlowPickSummary(Record):
    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    receiver_predicted: int | None = field(default=None, metadata=OPTIONAL)
    receiver_as_predicted: int | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class Summary(Record):
    """The numbers of one trial: run.json `summary`, and `pps run --json` with `results_dir`.

    Rates are over the measurement window, `sent`/`received`/`loss_ratio` over the trial."""

    tx_pps: float = 0.0
    rx_pps: float = 0.0
    tx_packets: int = 0
    rx_packets: int = 0
    seconds: float = 0.0
    sent: int = 0
    received: int = 0
    loss_ratio: float = 0.0
    workers: list[WorkerSummary] = field(default_factory=list)
    interrupted: bool = False
    failure: str | None = None
    # Receivers' totals over the trial (None when the trial has no end mark).
    lost: int | None = None
    reordered: int | None = None
    duplicate: int | None = None
    foreign: int | None = None
    short_pkts: int | None = None
    untracked: int | None = None
    foreign_flow: int | None = None
    seq_jump: int | None = None
    stamp_future: int | None = None
    stamp_stale: int | None = None
    latency: Latency | None = None
    # run.timestamps = kernel only
    latency_stack: Latency | None = field(default=None, metadata=OPTIONAL)
    # run.timestamps = kernel only
    latency_app: Latency | None = field(default=None, metadata=OPTIONAL)
    # run.timestamps = kernel only
    ts_missing: int | None = field(default=None, metadata=OPTIONAL)
    tx_datagrams: int | None = None
    rx_datagrams: int | None = None
    latency_per_receiver: list[ReceiverLatency] | None = None
    latency_clock: LatencyClock | None = None
    ledger: LedgerSummary | None = None          # null with collect.enabled = false
    balance: Balance = field(default_factory=Balance)
    warnings: list[str] = field(default_factory=list)
    flow_pick: FlowPickSummary | None = None     # null across hosts
    # SIGINT, SIGTERM or SIGHUP, when interrupted
    stopped_by: str | None = field(default=None, metadata=OPTIONAL)
    # --json only: where the trial was saved
    results_dir: str | None = field(default=None, metadata=OPTIONAL)


# ============================================================================ the rest of run.json

@dataclass(kw_only=True, eq=True)
class HostMeta(Record):
    """One host's metadata (pps.host.metadata.host), taken before or after the run."""

    hostname: str | None = None
    kernel: str | None = None
    machine: str | None = None
    cpu_model: str | None = None
    cpu_count: int | None = None
    python: str | None = None
    pps_version: str | None = None
    git_revision: str | None = None
    sysctls: dict[str, str | None] = field(default_factory=dict)


@dataclass(kw_only=True, eq=True)
class HostBeforeAfter(Record):
    before: HostMeta | None = None
    after: HostMeta | None = None


@dataclass(kw_only=True, eq=True)
class PlannedWorker(Record):
    role: str | None = None
    index: int | None = None
    cpu: int | None = None
    node: int | None = None
    queue: int | None = None
    reason: str | None = None
    host: str | None = field(default=None, metadata=OPTIONAL)  # across hosts: where it runs


@dataclass(kw_only=True, eq=True)
class Plan(Record):
    """The placement plan. Across hosts: `workers` of every host (each naming its host) and
    `hosts`, each host's own plan; `policy`, `device` and `notes` are then per host."""

    policy: str | None = field(default=None, metadata=OPTIONAL)
    device: str | None = field(default=None, metadata=OPTIONAL)
    notes: list[str] | None = field(default=None, metadata=OPTIONAL)
    workers: list[PlannedWorker] = field(default_factory=list)
    hosts: dict[str, Plan] | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class Cpu(Record):
    cpu: int | None = None
    node: int | None = None
    core: int | None = None
    package: int | None = None
    siblings: list[int] = field(default_factory=list)
    online: bool | None = None


@dataclass(kw_only=True, eq=True)
class RxQueue(Record):
    queue: int | None = None
    irq: int | None = None
    irq_name: str | None = None
    cpus: list[int] = field(default_factory=list)
    serviced_by: str | None = None
    irq_cpus: list[int] = field(default_factory=list)
    rps_cpus: list[int] = field(default_factory=list)


@dataclass(kw_only=True, eq=True)
class TxQueue(Record):
    queue: int | None = None
    xps_cpus: list[int] = field(default_factory=list)


@dataclass(kw_only=True, eq=True)
class Device(Record):
    name: str | None = None
    driver: str | None = None
    numa_node: int | None = None
    bus: str | None = None
    queues: list[RxQueue] = field(default_factory=list)
    tx_queues: list[TxQueue] = field(default_factory=list)


@dataclass(kw_only=True, eq=True)
class Topology(Record):
    """What the plan was made from. Across hosts: `hosts`, each host's topology, alone."""

    root: str | None = field(default=None, metadata=OPTIONAL)
    cpus: list[Cpu] | None = field(default=None, metadata=OPTIONAL)
    nodes: dict[str, list[int]] | None = field(default=None, metadata=OPTIONAL)   # node -> its CPUs
    devices: list[Device] | None = field(default=None, metadata=OPTIONAL)
    hosts: dict[str, Topology] | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class Check(Record):
    """One host check (docs/check.md)."""

    name: str | None = None
    status: str | None = None
    seen: str | None = None
    advice: str | None = None


@dataclass(kw_only=True, eq=True)
class Lab(Record):
    """The lab the run used (pps.lab.session)."""

    id: str | None = None
    sender_ns: str | None = None
    receiver_ns: str | None = None
    sender_dev: str | None = None
    receiver_dev: str | None = None
    sender_addr: str | None = None
    receiver_addr: str | None = None
    queues: int | None = None
    spec: dict[str, Any] = field(default_factory=dict)
    created_by_run: bool | None = None


@dataclass(kw_only=True, eq=True)
class SocketInfo(Record):
    """What a worker's sockets got (pps.host.sockets)."""

    rcvbuf: int | None = None
    sndbuf: int | None = None
    busy_poll_us: int | None = None
    prefer_busy_poll: bool | None = None
    gro: bool | None = None
    timestamps: str | None = None
    gso_segments: int | None = None
    local_ports: list[int] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # An AF_XDP socket (senders.socket or receivers.socket = xdp) says these instead.
    kind: str | None = field(default=None, metadata=OPTIONAL)
    queue: int | None = field(default=None, metadata=OPTIONAL)
    ring: int | None = field(default=None, metadata=OPTIONAL)
    zerocopy: bool | None = field(default=None, metadata=OPTIONAL)
    mode: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class XskStatistics(Record):
    """An AF_XDP socket's XDP_STATISTICS at the end of its loop (counts)."""

    rx_dropped: int | None = None
    rx_invalid_descs: int | None = None
    tx_invalid_descs: int | None = None
    rx_ring_full: int | None = field(default=None, metadata=OPTIONAL)
    rx_fill_ring_empty_descs: int | None = field(default=None, metadata=OPTIONAL)
    tx_ring_empty_descs: int | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class WorkerRecord(Record):
    role: str | None = None
    index: int | None = None
    cpu: int | None = None
    cpus_allowed: str | None = None
    pid: int | None = None
    socket: SocketInfo | None = None
    failure: str | None = None
    xsk: XskStatistics | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class Orchestrator(Record):
    """Where pps itself ran while it sampled (pps.host.selfpin)."""

    cpus: str | None = None
    moved: bool | None = None
    # only when it shares CPUs with the workers
    note: str | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class PickedFlow(Record):
    flow: int | None = None
    sender: int | None = None
    destination: str | None = None
    source_port: int | None = None
    receiver: int | None = None
    queue: int | None = None


@dataclass(kw_only=True, eq=True)
class FlowPick(Record):
    """How the source ports were chosen (pps.plan.flowpick)."""

    mode: str | None = None
    notes: list[str] = field(default_factory=list)
    rss: dict[str, Any] | None = None
    candidates_probed: int | None = None
    seconds: float | None = None
    flows: list[PickedFlow] = field(default_factory=list)


@dataclass(kw_only=True, eq=True)
class Rescued(Record):
    asked: str | None = None
    reason: str | None = None


@dataclass(kw_only=True, eq=True)
class HostInfo(Record):
    """One host of a run across hosts: its metadata, roles, checks, where it sent or
    received, and how it was reached."""

    before: HostMeta | None = None
    after: HostMeta | None = None
    roles: list[str] = field(default_factory=list)
    checks: Any = None       # that host's checks, as its agent reported them
    device: str | None = None
    netns: str | None = None
    ssh: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    hello: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)
    agent: dict[str, Any] | None = field(default=None, metadata=OPTIONAL)


@dataclass(kw_only=True, eq=True)
class RunRecord(Record):
    """run.json."""

    schema_version: int = SCHEMA_VERSION
    config: dict[str, Any] = field(default_factory=dict)   # as `pps config show` prints it
    source: str | None = None
    summary: Summary = field(default_factory=Summary)
    plan: Plan = field(default_factory=Plan)
    topology: Topology = field(default_factory=Topology)
    host: HostBeforeAfter = field(default_factory=HostBeforeAfter)
    lab: Lab | None = None
    started_at: float | None = None
    workers: list[WorkerRecord] = field(default_factory=list)
    checks: list[Check] = field(default_factory=list)
    orchestrator: Orchestrator | None = None
    flow_pick: FlowPick | None = None                  # null across hosts
    # a rescue directory only
    rescued: Rescued | None = field(default=None, metadata=OPTIONAL)
    # a run across hosts only
    hosts: dict[str, HostInfo] | None = field(default=None, metadata=OPTIONAL)

    def to_json(self) -> dict[str, Any]:
        """What run.json holds: the record, but for `summary.results_dir` (known only once
        the directory is written; --json prints it)."""
        out = self.to_dict()
        out["summary"].pop("results_dir", None)
        return out


def record_classes() -> list[type[Record]]:
    """Every object type of run.json, the file first (for docs/json.md and its test)."""
    return classes_under(RunRecord)
