"""Experiment configuration: TOML + `--set` overrides -> frozen, validated objects.

Every key is declared once in SCHEMA with its type, default, allowed range and a short
description, so validation, "did you mean" hints and the docs all come from one table.
Every error names the file, the key and what is allowed, on one line (ConfigError, exit 2).

Limits, checked before anything is expanded: a config file of at most 1 MiB of UTF-8 TOML
(safe_io.MAX_CONFIG_BYTES); CPU numbers below 8192 (cpulist.MAX_CPUS); a [sweep] of at most
10,000 points (MAX_SWEEP_POINTS) and 100,000 trials with its repetitions (MAX_SWEEP_TRIALS);
a --set item of one line of printable text, at most 65,536 characters (MAX_SET_CHARS).
"""

from __future__ import annotations

import itertools
import math
import tomllib
import unicodedata
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from pps.config.consistency import check_consistency
from pps.config.hosts import LOCAL, HostSpec, check_roles, parse_hosts
from pps.config.values import Key, convert, did_you_mean, show
from pps.errors import ConfigError
from pps.lab.owner import default_id
from pps.results import safe_io

MAX_UDP_PAYLOAD_V4 = 65507
# Bounds on what a config may ask for, checked before anything is expanded.
MAX_SWEEP_POINTS = 10_000     # the [sweep] cross product
MAX_SWEEP_TRIALS = 100_000    # points x run.repetitions
MAX_SET_CHARS = 65_536        # one --set item


PLACEMENTS = ("spread", "local", "sibling", "smt-sibling", "remote", "explicit")

SCHEMA: dict[str, dict[str, Key]] = {
    "target": {
        "address": Key("address", "127.0.0.1", "destination IP address (loopback by default)"),
        "addresses": Key("strlist", (), "extra destination addresses; flows spread over all"),
        "port": Key("int", 4321, "destination UDP port", 1, 65535),
        "device": Key("str", None, "device whose queues to align with; default: route's", nullable=True),
    },
    "senders": {
        "count": Key("int", 1, "sender processes", 1, 256),
        "cpus": Key("cpus", None, "CPU list for senders, kernel syntax (0-3,8)", nullable=True),
        "batch": Key("int", 64, "messages per sendmmsg call", 1, 1024),
        "payload": Key("int", 32, "UDP payload bytes", 0, MAX_UDP_PAYLOAD_V4),
        "flows": Key("int", 1, "flows per sender, each with its own source port", 1, 4096),
        "rate": Key("float", 0.0, "offered rate in packets/s for all senders together; 0 = as fast as possible", 0, 1e9),
        "burst": Key("int", 0, "most packets sent back to back when paced; 0 = one batch", 0, 1 << 20),
        "gso_segments": Key("int", 0, "UDP GSO segments per send (UDP_SEGMENT); 0 = off", 0, 64),
        "sndbuf": Key("int", 0, "SO_SNDBUF bytes; 0 = kernel default", 0, 1 << 31),
        "raw": Key("bool", False, "send payloads without the wire header; only counts"),
        "pick_ports": Key("str", "auto", "pick source ports that spread flows over receivers and RX queues; off = ephemeral", choices=("auto", "off")),
        "host": Key("hosts", LOCAL, "host the senders run on: local or a [hosts.NAME], or a list of them (each runs count senders)"),
        "socket": Key("str", "udp", "udp: sendmmsg through the stack; xdp: whole frames through an AF_XDP socket", choices=("udp", "xdp")),
    },
    "receivers": {
        "count": Key("int", 1, "receiver processes sharing the port with SO_REUSEPORT", 1, 256),
        "cpus": Key("cpus", None, "CPU list for receivers, kernel syntax", nullable=True),
        "batch": Key("int", 64, "messages per recvmmsg call", 1, 1024),
        "placement": Key("str", "spread", "where receivers run", choices=PLACEMENTS),
        "mode": Key("str", "block", "block: sleep in recvmmsg; busy-poll: spin", choices=("block", "busy-poll")),
        "busy_poll_us": Key("int", 50, "SO_BUSY_POLL microseconds in busy-poll mode; 0 = no socket busy poll", 0, 1_000_000),
        "spin_us": Key("int", 0, "block mode: after a read that returned packets, poll this long before sleeping again; 0 = always sleep", 0, 1_000_000),
        "gro": Key("bool", False, "receive with UDP_GRO and count segments"),
        "rcvbuf": Key("int", 0, "SO_RCVBUF bytes; 0 = kernel default", 0, 1 << 31),
        "steer": Key("str", "none", "steer flows to the receiver on their CPU", choices=("none", "incoming-cpu")),
        "host": Key("hosts", LOCAL, "host the receivers run on: local or a [hosts.NAME], or a list of them (each runs count receivers)"),
        "socket": Key("str", "udp", "udp: recvmmsg on a UDP socket; xdp: an XDP program steers the port into AF_XDP sockets, one per RX queue", choices=("udp", "xdp")),
    },
    "run": {
        "duration": Key("float", 5.0, "measurement seconds", 0.05, 86400),
        "warmup": Key("float", 1.0, "warm-up seconds before measuring", 0, 3600),
        "drain": Key("float", 0.3, "seconds receivers keep reading after senders stop", 0, 60),
        "interval": Key("float", 1.0, "sampling interval in seconds", 0.05, 3600),
        "display_interval": Key("float", 1.0, "seconds between status lines (and --json interval "
                                "records), apart from sampling; 0 = one per sample", 0, 3600),
        "repetitions": Key("int", 1, "times each point is repeated", 1, 1000),
        "max_loss": Key("float", None, "exit 1 when the loss exceeds this, in percent of the "
                        "packets sent (0.5 = 0.5%)", 0, 100, nullable=True),
        "label": Key("str", None, "free text naming the run in compare, report and history "
                     "tables and plots (a kernel, a commit)", nullable=True),
        "require_checks": Key("strlist", (), "host checks that must pass, else exit 3"),
        "latency": Key("bool", True, "record one-way latency when sender and receiver share a clock"),
        "timestamps": Key("str", "user", "receive time: user = the receiver's clock after recvmmsg; "
                          "kernel = also the kernel's RX stamp (SO_TIMESTAMPING), splitting one-way "
                          "latency into stack and app (both ends on CLOCK_REALTIME)",
                          choices=("user", "kernel")),
    },
    "lab": {
        "enabled": Key("bool", False, "run between the lab's namespaces instead of on loopback"),
        "id": Key("str", default_id(), "lab name, by default lab-USER (one per user); "
                  "namespaces are pps-ID-tx and pps-ID-rx"),
        "queues": Key("int", 4, "veth TX/RX queue count", 1, 64),
        "rps_cpus": Key("cpus", None, "RPS CPUs for every receive queue", nullable=True),
        "gro": Key("bool", False, "GRO (NAPI mode) on the receiving veth"),
        "backlog": Key("int", None, "net.core.netdev_max_backlog (host-wide)", 1, 1 << 24, nullable=True),
        "rmem_max": Key("int", None, "net.core.rmem_max (host-wide)", 4096, 1 << 31, nullable=True),
        "qdisc": Key("str", None, "qdisc on the sender's veth (e.g. pfifo, fq)", nullable=True),
    },
    "xdp": {
        "zerocopy": Key("str", "auto", "AF_XDP zero-copy: auto (where the driver has it), on, off (copy mode)", choices=("auto", "on", "off")),
        "attach": Key("str", "native", "XDP program mode for receivers.socket = xdp: native (driver) or generic (skb)", choices=("native", "generic")),
        "ring": Key("int", 4096, "entries of each AF_XDP ring (power of two); frames are twice that", 64, 65536),
    },
    "collect": {
        "enabled": Key("bool", True, "read kernel and NIC counters for the ledger"),
    },
    "search": {
        "loss_bound": Key("float", 0.5, "PDR loss bound, percent of packets sent", 0, 100),
        "min_rate": Key("float", 1000.0, "lowest offered rate to try", 1, 1e9),
        "max_rate": Key("float", 0.0, "highest rate; 0 = measure it unpaced first", 0, 1e9),
        "precision": Key("float", 0.02, "stop when the bracket is this fraction wide", 0.001, 0.5),
        "budget": Key("float", 120.0, "seconds the search may take", 1, 86400),
        "confirm": Key("int", 2, "repeats of each final trial", 0, 20),
    },
}

TABLES = tuple(SCHEMA) + ("sweep", "hosts")


def _section_type(name: str) -> type:
    return {
        "target": Target, "senders": Senders, "receivers": Receivers, "run": RunOptions,
        "lab": LabOptions, "xdp": XdpOptions, "collect": CollectOptions, "search": SearchOptions,
    }[name]


@dataclass(frozen=True)
class Target:
    address: str
    addresses: tuple[str, ...]
    port: int
    device: str | None

    @property
    def all_addresses(self) -> tuple[str, ...]:
        return (self.address, *[a for a in self.addresses if a != self.address])


def _hosts(host: str | tuple[str, ...]) -> tuple[str, ...]:
    """A role's `host` as a tuple: one name, or the list (each host runs `count` workers)."""
    return host if isinstance(host, tuple) else (host,)


@dataclass(frozen=True)
class Senders:
    count: int
    cpus: tuple[int, ...] | None
    batch: int
    payload: int
    flows: int
    rate: float
    burst: int
    gso_segments: int
    sndbuf: int
    raw: bool
    pick_ports: str
    host: str | tuple[str, ...]
    socket: str

    hosts = property(lambda self: _hosts(self.host), doc="every host the senders run on")


@dataclass(frozen=True)
class Receivers:
    count: int
    cpus: tuple[int, ...] | None
    batch: int
    placement: str
    mode: str
    busy_poll_us: int
    spin_us: int
    gro: bool
    rcvbuf: int
    steer: str
    host: str | tuple[str, ...]
    socket: str

    hosts = property(lambda self: _hosts(self.host), doc="every host the receivers run on")


@dataclass(frozen=True)
class RunOptions:
    duration: float
    warmup: float
    drain: float
    interval: float
    repetitions: int
    display_interval: float
    max_loss: float | None
    label: str | None
    require_checks: tuple[str, ...]
    latency: bool
    timestamps: str


@dataclass(frozen=True)
class LabOptions:
    enabled: bool
    id: str
    queues: int
    rps_cpus: tuple[int, ...] | None
    gro: bool
    backlog: int | None
    rmem_max: int | None
    qdisc: str | None


@dataclass(frozen=True)
class CollectOptions:
    enabled: bool


@dataclass(frozen=True)
class XdpOptions:
    zerocopy: str
    attach: str
    ring: int


@dataclass(frozen=True)
class SearchOptions:
    loss_bound: float
    min_rate: float
    max_rate: float
    precision: float
    budget: float
    confirm: int


@dataclass(frozen=True)
class Config:
    target: Target
    senders: Senders
    receivers: Receivers
    run: RunOptions
    lab: LabOptions
    xdp: XdpOptions
    collect: CollectOptions
    search: SearchOptions
    sweep: tuple[tuple[str, tuple[Any, ...]], ...] = ()
    source: str = "defaults"
    hosts: tuple[HostSpec, ...] = ()

    def host(self, name: str) -> HostSpec | None:
        """The [hosts.NAME] entry; None for the local host."""
        return next((h for h in self.hosts if h.name == name), None)

    @property
    def remote(self) -> bool:
        """True when a role runs on another host, over SSH."""
        return any(h != LOCAL for h in (*self.senders.hosts, *self.receivers.hosts))

    @property
    def one_clock(self) -> bool:
        """True when every worker runs on one host, so send and receive stamps share a clock."""
        return len({*self.senders.hosts, *self.receivers.hosts}) == 1

    def to_dict(self) -> dict[str, Any]:
        """Plain nested dict, the resolved config as saved in run.json."""
        out: dict[str, Any] = {}
        for section in SCHEMA:
            obj = getattr(self, section)
            out[section] = {f.name: _plain(getattr(obj, f.name)) for f in fields(obj)}
        out["sweep"] = {k: list(v) for k, v in self.sweep}
        if self.hosts:
            out["hosts"] = {h.name: h.to_dict() for h in self.hosts}
        return out

    def with_values(self, values: Mapping[str, Any]) -> Config:
        """A copy with dotted keys set to already-validated values."""
        sections = {s: getattr(self, s) for s in SCHEMA}
        for dotted, value in values.items():
            section, name = dotted.split(".", 1)
            sections[section] = replace(sections[section], **{name: value})
        return replace(self, **sections)


def _plain(value: Any) -> Any:
    return list(value) if isinstance(value, tuple) else value


# ---------------------------------------------------------------------------- checks

def _where(source: str, dotted: str) -> str:
    return f"{source}: {dotted}"


def _convert(source: str, dotted: str, key: Key, value: Any) -> Any:
    return convert(_where(source, dotted), dotted, key, value)


def _all_dotted() -> list[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def _lookup(source: str, dotted: str) -> Key:
    section, _, name = dotted.partition(".")
    if section not in SCHEMA or not name or name not in SCHEMA[section]:
        hint = did_you_mean(dotted, _all_dotted())
        raise ConfigError(f"{source}: unknown key {show(dotted)}{hint}")
    return SCHEMA[section][name]


# ---------------------------------------------------------------------------- loading

def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `--set KEY=VALUE`; the value is read as TOML when it parses, else as a string.

    A line break would let one --set smuggle in a second TOML line (which was then dropped
    without a word), so control characters are refused outright."""
    if len(item) > MAX_SET_CHARS:
        raise ConfigError(f"--set {show(item)}: longer than {MAX_SET_CHARS:,} characters")
    bad = next((c for c in item if unicodedata.category(c) in ("Cc", "Zl", "Zp")), None)
    if bad is not None:
        raise ConfigError(f"--set {show(item)}: holds the control character {bad!r}; "
                          "values are one line of printable text")
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {show(item)}: expected KEY=VALUE, for example senders.batch=32")
    return key, _set_value(key, text.strip())


def _set_value(key: str, text: str) -> Any:
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text  # not TOML: a bare word like `local`
    except RecursionError:
        raise ConfigError(f"--set {key}: the value is nested too deep") from None
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        reason = str(exc).split(":")[0]
        raise ConfigError(f"--set {key}: cannot read {show(text)}: {reason}") from None


def load_config(path: str | Path | None = None, sets: Iterable[str] = ()) -> Config:
    """Read a TOML file (or defaults), apply `--set` items, validate everything."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = safe_io.shown(path)
        raw = parse_toml(safe_io.read_text(path, safe_io.MAX_CONFIG_BYTES, "config"), source)
    overrides = [parse_set(item) for item in sets]
    return build_config(raw, overrides, source)


def parse_toml(text: str, source: str) -> dict[str, Any]:
    """tomllib.loads with each way it fails on odd input as one ConfigError line."""
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    except RecursionError:
        raise ConfigError(f"{source}: not valid TOML: arrays or tables nested too deep") from None
    except ValueError as exc:  # an integer past Python's 4300-digit conversion limit
        raise ConfigError(f"{source}: not valid TOML: {str(exc).split(':')[0]}") from None


def build_config(raw: Mapping[str, Any], overrides: Iterable[tuple[str, Any]] = (),
                 source: str = "defaults") -> Config:
    values: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in TABLES:
            hint = did_you_mean(section, TABLES)
            shown = section.encode("unicode_escape").decode()  # a quoted name may hold a newline
            raise ConfigError(f"{source}: unknown table [{shown}]{hint}; tables are {', '.join(TABLES)}")
        if not isinstance(body, Mapping):
            raise ConfigError(f"{source}: [{section}] must be a table")
        if section in ("sweep", "hosts"):
            continue
        for name, value in body.items():
            dotted = f"{section}.{name}"
            values[dotted] = _convert(source, dotted, _lookup(source, dotted), value)
    overrides = list(overrides)
    for dotted, value in overrides:
        if not dotted.startswith("hosts."):
            values[dotted] = _convert("--set", dotted, _lookup("--set", dotted), value)
    hosts = parse_hosts(source, raw.get("hosts"),
                        [(k, v) for k, v in overrides if k.startswith("hosts.")])
    repetitions = values.get("run.repetitions", SCHEMA["run"]["repetitions"].default)
    sweep = _check_sweep(source, raw.get("sweep", {}), repetitions)
    config = replace(_assemble(values, sweep, source), hosts=hosts)
    check_roles(source, hosts, {"senders.host": config.senders.host,
                                "receivers.host": config.receivers.host},
                "target.address" in values, config.target.address, config.lab.enabled)
    check_consistency(config)
    for _, point in expand_sweep(config):
        check_consistency(point)
    return config


def _check_sweep(source: str, body: Mapping[str, Any],
                 repetitions: int) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    out = []
    for dotted, values in body.items():
        key = _lookup(f"{source}: [sweep]", dotted)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: [sweep] {show(dotted)}: "
                              "expected a non-empty list of values")
        out.append((dotted, key, values))
    _check_sweep_size(source, [len(v) for _, _, v in out], repetitions)
    return tuple((dotted, tuple(_convert(f"{source}: [sweep]", dotted, key, v) for v in values))
                 for dotted, key, values in out)


def _check_sweep_size(source: str, lengths: list[int], repetitions: int) -> None:
    """Refuse a sweep too big to run before building any of it: its size is the product of
    the list lengths, which can be astronomic from a few short lists."""
    points = math.prod(lengths)
    if points > MAX_SWEEP_POINTS:
        shown = " x ".join(map(str, lengths))
        raise ConfigError(f"{source}: [sweep]: {shown} = {points:,} points, more than the "
                          f"{MAX_SWEEP_POINTS:,} pps runs in one sweep; split it")
    if points * repetitions > MAX_SWEEP_TRIALS:
        raise ConfigError(f"{source}: [sweep]: {points:,} points x run.repetitions {repetitions} = "
                          f"{points * repetitions:,} trials, more than the {MAX_SWEEP_TRIALS:,} "
                          "pps runs in one sweep")


def _assemble(values: Mapping[str, Any], sweep, source: str) -> Config:
    sections = {}
    for section, keys in SCHEMA.items():
        kwargs = {name: values.get(f"{section}.{name}", key.default) for name, key in keys.items()}
        sections[section] = _section_type(section)(**kwargs)
    return Config(**sections, sweep=sweep, source=source)


def expand_sweep(config: Config) -> list[tuple[dict[str, Any], Config]]:
    """The cross product of the [sweep] table: (point, config) pairs; one point when no sweep."""
    if not config.sweep:
        return [({}, config)]
    keys = [k for k, _ in config.sweep]
    points = []
    for combo in itertools.product(*(v for _, v in config.sweep)):
        point = dict(zip(keys, combo))
        points.append((point, replace(config.with_values(point), sweep=())))
    return points


