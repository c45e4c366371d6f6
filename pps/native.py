"""Thin typed wrappers over the C core (pps._native).

One wrapper per C function: check arguments, call (cffi releases the GIL for the whole
call), and turn -1/errno into an OSError that names the call. Constants come from C.
"""

from __future__ import annotations

import mmap
import os
from dataclasses import dataclass
from typing import Sequence

from pps._native import ffi, lib
from pps.errors import ConfigError

MAGIC = lib.PPS_MAGIC
WIRE_HEADER_BYTES = lib.PPS_WIRE_BYTES  # the one definition is csrc/pps.h
HIST_BUCKETS = lib.PPS_HIST_BUCKETS
SENDER, RECEIVER = lib.PPS_ROLE_SENDER, lib.PPS_ROLE_RECEIVER
STATES = {
    lib.PPS_STATE_INIT: "init", lib.PPS_STATE_READY: "ready", lib.PPS_STATE_RUNNING: "running",
    lib.PPS_STATE_DONE: "done", lib.PPS_STATE_FAILED: "failed",
}
STATE_READY = lib.PPS_STATE_READY
CLOCK_MONOTONIC = lib.CLOCK_MONOTONIC
CLOCK_REALTIME = lib.CLOCK_REALTIME
# Spec clock names -> clock ids (the worker runs its loop on one, the group reads heartbeats).
CLOCKS = {"monotonic": CLOCK_MONOTONIC, "realtime": CLOCK_REALTIME}
# What the receiver believes of the wire (the contract in pps.h and docs/wire.md).
SEQ_JUMP_MAX = lib.PPS_SEQ_JUMP_MAX
SEQ_LIMIT = lib.PPS_SEQ_LIMIT
STAMP_SLACK_NS = lib.PPS_STAMP_SLACK_NS
MAX_FLOWS = lib.PPS_MAX_FLOWS
MAX_SENDERS = lib.PPS_MAX_SENDERS
MAX_FLOWS_PER_SENDER = lib.PPS_MAX_FLOWS_PER_SENDER
KEY_BITS = 32


def _scalar_fields(struct: str, leave_out: tuple[str, ...] = ()) -> tuple[str, ...]:
    """A C struct's scalar fields in the order of their offsets, as cffi saw pps.cdef."""
    fields = sorted(ffi.typeof(struct).fields, key=lambda item: item[1].offset)
    return tuple(name for name, f in fields
                 if f.type.kind == "primitive" and name not in leave_out)


# The counters of a stats slot, in the order pps.h declares them (histograms, the state
# word and the heartbeat left out).
COUNTERS = _scalar_fields("struct pps_stats", ("state", "heartbeat_ns"))
# The latency histograms of a slot: kind -> (field, prefix of its scalar counters).
# one_way: receive clock - tx_ns; with kernel RX stamps also stack: stamp - tx_ns and
# app: receive clock - stamp.
HIST_KINDS = {"one_way": ("hist", "lat"), "stack": ("stack_hist", "stack"),
              "app": ("app_hist", "app")}
FLOW_FIELDS = _scalar_fields("struct pps_flow_result")


def raise_errno(call: str) -> None:
    err = ffi.errno
    raise OSError(err, f"{call}: {os.strerror(err)}")


def now_ns(clock: int = CLOCK_MONOTONIC) -> int:
    return lib.pps_now_ns(clock)


def wire_flow(run_key: int, flow: int) -> int:
    """The flow id on the wire for a run's flow id under its key, and back: the same
    function decodes what it encodes."""
    return lib.pps_wire_flow(run_key, flow)


def hist_index(value_ns: int) -> int:
    return lib.pps_hist_index(value_ns)


def hist_bounds() -> list[int]:
    """Lower bound in ns of every histogram bucket."""
    return [lib.pps_hist_low(i) for i in range(HIST_BUCKETS)]


def die_with_parent() -> None:
    if lib.pps_die_with_parent() != 0:
        raise_errno("prctl(PR_SET_PDEATHSIG)")


class SharedStats:
    """The shared-memory stats segment: a header with go/stop words and one slot per worker.

    It lives in a memfd, so it has no name to leak: it is gone when the last process
    that maps it exits. Workers receive the descriptor and attach to it.
    """

    def __init__(self, fd: int, nslots: int, create: bool) -> None:
        self.fd = fd
        self.nslots = nslots
        self.size = lib.pps_shm_bytes(nslots)
        if create:
            os.ftruncate(fd, self.size)
        self._map = mmap.mmap(fd, self.size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
        self._buffer = ffi.from_buffer(self._map)
        self.shm = ffi.cast("struct pps_shm *", self._buffer)
        if create and lib.pps_shm_init(self.shm, nslots) != 0:
            raise_errno("pps_shm_init")

    @classmethod
    def create(cls, nslots: int) -> SharedStats:
        if nslots < 1:
            raise ValueError("nslots must be at least 1")
        return cls(os.memfd_create("pps-stats", 0), nslots, create=True)

    @classmethod
    def attach(cls, fd: int, nslots: int) -> SharedStats:
        return cls(fd, nslots, create=False)

    def slot(self, index: int):
        if not 0 <= index < self.nslots:
            raise IndexError(f"slot {index} of {self.nslots}")
        return self.shm.slots[index]

    def state(self, index: int) -> str:
        return STATES.get(self.slot(index).state, "unknown")

    def set_state(self, index: int, state: int) -> None:
        self.slot(index).state = state

    def read(self, index: int) -> dict[str, int]:
        """A snapshot of one slot's counters (each value true at some recent moment)."""
        slot = self.slot(index)
        values = {name: getattr(slot, name) for name in COUNTERS}
        values["state"] = slot.state
        values["heartbeat_ns"] = slot.heartbeat_ns
        return values

    def histogram(self, index: int, kind: str = "one_way") -> list[int]:
        return list(ffi.unpack(getattr(self.slot(index), HIST_KINDS[kind][0]), HIST_BUCKETS))

    def go(self) -> None:
        self.shm.go = 1

    def is_go(self) -> bool:
        return bool(self.shm.go)

    def stop(self, role: int) -> None:
        self.shm.stop[role] = 1

    def close(self) -> None:
        self.shm = None
        self._buffer = None
        try:
            self._map.close()
        except BufferError:  # a cffi view still alive; the mapping goes with the process
            pass
        os.close(self.fd)


@dataclass(frozen=True)
class SendParams:
    fds: Sequence[int]
    flow_base: int
    batch: int
    payload: int
    gso_segments: int = 0
    raw: bool = False
    rate_pps: float = 0.0
    burst: int = 0
    deadline_ns: int = 0
    max_packets: int = 0
    clock: int = CLOCK_MONOTONIC
    run_key: int = 0       # wire flow ids are wire_flow(run_key, flow id); 0: as they are


def _check_range(name: str, value: int, low: int, high: int) -> None:
    if not low <= value <= high:
        raise ConfigError(f"{name} {value} is out of range {low}..{high}")


def send_loop(params: SendParams, stats: SharedStats, slot: int, flow_seq: list[int]) -> list[int]:
    """Run the sender loop until stop, deadline or error; returns each flow's next seq."""
    if not params.fds or len(flow_seq) != len(params.fds):
        raise ValueError("one starting sequence number per socket is needed")
    if not 1 <= params.batch <= 1024:
        raise ValueError(f"batch {params.batch} is out of range 1..1024")
    _check_range("run_key", params.run_key, 0, 2**KEY_BITS - 1)
    fds = ffi.new("int[]", list(params.fds))
    seqs = ffi.new("uint64_t[]", list(flow_seq))
    p = ffi.new("struct pps_send_params *", {
        "fds": fds, "nflows": len(params.fds), "flow_base": params.flow_base,
        "batch": params.batch, "payload": params.payload, "gso_segments": params.gso_segments,
        "raw": int(params.raw), "rate_pps": params.rate_pps, "burst": params.burst,
        "deadline_ns": params.deadline_ns, "max_packets": params.max_packets,
        "clock_id": params.clock, "run_key": params.run_key,
    })
    if lib.pps_send_loop(p, stats.shm, slot, seqs) != 0:
        raise_errno("sendmmsg")
    return list(seqs)


@dataclass(frozen=True)
class RecvParams:
    fd: int
    batch: int
    bufsize: int = 2048
    busy_poll: bool = False
    gro: bool = False
    track: bool = True
    latency: bool = True
    timestamps: bool = False  # SO_TIMESTAMPING is on fd: record stack and app (clock: REALTIME)
    max_flows: int = 16384
    deadline_ns: int = 0
    clock: int = CLOCK_MONOTONIC
    spin_ns: int = 0       # block mode: poll this long after packets before sleeping again
    # What this run's packets can be (pps.h): the key of its flow ids, how many senders and
    # flows each; a packet outside is foreign. The defaults take any id as it is.
    run_key: int = 0
    n_senders: int = MAX_SENDERS
    flows_per_sender: int = MAX_FLOWS_PER_SENDER
    run_start_ns: int | None = None  # on `clock`; None: when the Receiver is made


def _check_recv_params(params: RecvParams) -> None:
    if not 1 <= params.batch <= 1024:
        raise ValueError(f"batch {params.batch} is out of range 1..1024")
    # max_flows 0 is left to C, which refuses it (EINVAL) like any other bad parameter.
    _check_range("max_flows", params.max_flows, 0, MAX_FLOWS)
    _check_range("run_key", params.run_key, 0, 2**KEY_BITS - 1)
    _check_range("n_senders", params.n_senders, 0, MAX_SENDERS)
    _check_range("flows_per_sender", params.flows_per_sender, 0, MAX_FLOWS_PER_SENDER)


def recv_params_struct(params: RecvParams):
    """The C struct of checked receiver parameters (kept alive by the caller's reference)."""
    _check_recv_params(params)
    run_start = params.run_start_ns if params.run_start_ns is not None else now_ns(params.clock)
    return ffi.new("struct pps_recv_params *", {
        "fd": params.fd, "batch": params.batch, "bufsize": params.bufsize,
        "busy_poll": int(params.busy_poll), "gro": int(params.gro),
        "track": int(params.track), "latency": int(params.latency),
        "timestamps": int(params.timestamps),
        "max_flows": params.max_flows, "deadline_ns": params.deadline_ns,
        "clock_id": params.clock, "spin_ns": params.spin_ns,
        "run_key": params.run_key, "n_senders": params.n_senders,
        "flows_per_sender": params.flows_per_sender, "run_start_ns": run_start,
    })


def flow_results(call, handle, cap: int) -> list[dict[str, int]]:
    """A receiver's per-flow results, copied out by `call` (pps_recv_flows and the like)."""
    out = ffi.new("struct pps_flow_result[]", cap)
    n = call(handle, out, cap)
    if n < 0:
        raise_errno("pps_recv_flows")
    return [{name: getattr(out[i], name) for name in FLOW_FIELDS} for i in range(n)]


class Receiver:
    """A receiver loop and its flow table; use as a context manager to free it."""

    def __init__(self, params: RecvParams) -> None:
        self.params = params
        handle = lib.pps_recv_new(recv_params_struct(params))
        if handle == ffi.NULL:
            raise_errno("pps_recv_new")
        self._handle = ffi.gc(handle, lib.pps_recv_free)

    def run(self, stats: SharedStats, slot: int) -> None:
        if lib.pps_recv_loop(self._handle, stats.shm, slot) != 0:
            raise_errno("recvmmsg")

    def flows(self) -> list[dict[str, int]]:
        return flow_results(lib.pps_recv_flows, self._handle, self.params.max_flows)

    def close(self) -> None:
        if self._handle is not None:
            ffi.release(self._handle)  # runs pps_recv_free now, not at garbage collection
            self._handle = None

    def __enter__(self) -> Receiver:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
