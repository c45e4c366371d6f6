"""Experiment configuration: TOML + `--set` overrides -> frozen, validated objects.

Every key is declared once in SCHEMA with its type, default, allowed range and a short
description, so validation, "did you mean" hints and the docs all come from one table.
Every error names the file, the key and what is allowed, on one line (ConfigError, exit 2).
"""

from __future__ import annotations

import difflib
import ipaddress
import itertools
import tomllib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, fields, replace
from pathlib import Path
from typing import Any

from .cpulist import parse_cpulist
from .errors import ConfigError
from .hosts_config import LOCAL, HostSpec, check_roles, parse_hosts

MAX_UDP_PAYLOAD_V4 = 65507
WIRE_HEADER_BYTES = 24


@dataclass(frozen=True)
class Key:
    """One configuration key: its type, default, check and meaning."""

    kind: str  # "int", "float", "bool", "str", "cpus", "strlist", "address"
    default: Any
    help: str
    low: float | None = None
    high: float | None = None
    choices: tuple[str, ...] | None = None
    nullable: bool = False


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
        "host": Key("str", LOCAL, "host the senders run on: local or a [hosts.NAME]"),
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
        "host": Key("str", LOCAL, "host the receivers run on: local or a [hosts.NAME]"),
    },
    "run": {
        "duration": Key("float", 5.0, "measurement seconds", 0.05, 86400),
        "warmup": Key("float", 1.0, "warm-up seconds before measuring", 0, 3600),
        "drain": Key("float", 0.3, "seconds receivers keep reading after senders stop", 0, 60),
        "interval": Key("float", 1.0, "sampling interval in seconds", 0.05, 3600),
        "repetitions": Key("int", 1, "times each point is repeated", 1, 1000),
        "max_loss": Key("float", None, "exit 1 when the loss ratio exceeds this", 0, 1, nullable=True),
        "require_checks": Key("strlist", (), "host checks that must pass, else exit 3"),
        "latency": Key("bool", True, "record one-way latency when sender and receiver share a clock"),
        "timestamps": Key("str", "user", "receive time: user = the receiver's clock after recvmmsg; "
                          "kernel = also the kernel's RX stamp (SO_TIMESTAMPING), splitting one-way "
                          "latency into stack and app (both ends on CLOCK_REALTIME)",
                          choices=("user", "kernel")),
    },
    "lab": {
        "enabled": Key("bool", False, "run between the lab's namespaces instead of on loopback"),
        "id": Key("str", "lab", "lab name; namespaces are pps-ID-tx and pps-ID-rx"),
        "queues": Key("int", 4, "veth TX/RX queue count", 1, 64),
        "rps_cpus": Key("cpus", None, "RPS CPUs for every receive queue", nullable=True),
        "gro": Key("bool", False, "GRO (NAPI mode) on the receiving veth"),
        "backlog": Key("int", None, "net.core.netdev_max_backlog (host-wide)", 1, 1 << 24, nullable=True),
        "rmem_max": Key("int", None, "net.core.rmem_max (host-wide)", 4096, 1 << 31, nullable=True),
        "qdisc": Key("str", None, "qdisc on the sender's veth (e.g. pfifo, fq)", nullable=True),
    },
    "collect": {
        "enabled": Key("bool", True, "read kernel and NIC counters for the ledger"),
    },
    "search": {
        "loss_bound": Key("float", 0.005, "PDR loss ratio bound", 0, 1),
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
        "lab": LabOptions, "collect": CollectOptions, "search": SearchOptions,
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
    host: str


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
    host: str


@dataclass(frozen=True)
class RunOptions:
    duration: float
    warmup: float
    drain: float
    interval: float
    repetitions: int
    max_loss: float | None
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
        return self.senders.host != LOCAL or self.receivers.host != LOCAL

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
    """Check one value against its Key and return it in canonical form."""
    where = _where(source, dotted)
    if value is None:
        if key.nullable:
            return None
        raise ConfigError(f"{where}: a value is required ({key.help})")
    kind = key.kind
    if kind == "bool":
        if not isinstance(value, bool):
            raise ConfigError(f"{where}: expected true or false, got {value!r}")
        return value
    if kind in ("int", "float"):
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{where}: expected a number, got {value!r}")
        if kind == "int" and not (isinstance(value, int) or float(value).is_integer()):
            raise ConfigError(f"{where}: expected a whole number, got {value!r}")
        value = int(value) if kind == "int" else float(value)
        if value != value:  # NaN
            raise ConfigError(f"{where}: expected a number, got nan")
        if (key.low is not None and value < key.low) or (key.high is not None and value > key.high):
            raise ConfigError(f"{where}: {value} is out of range {_fmt(key.low)}..{_fmt(key.high)}")
        return value
    if kind == "str":
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{where}: expected a non-empty string, got {value!r}")
        if key.choices and value not in key.choices:
            hint = _did_you_mean(value, key.choices)
            raise ConfigError(f"{where}: {value!r} is not one of {', '.join(key.choices)}{hint}")
        return value
    if kind == "cpus":
        if isinstance(value, int) and not isinstance(value, bool):
            value = str(value)
        if isinstance(value, list) and all(isinstance(v, int) and not isinstance(v, bool) for v in value):
            value = ",".join(str(v) for v in value)
        if not isinstance(value, str):
            raise ConfigError(f"{where}: expected a CPU list like \"0-3,8\", got {value!r}")
        try:
            cpus = parse_cpulist(value)
        except ValueError as exc:
            raise ConfigError(f"{where}: {exc}") from None
        if not cpus:
            raise ConfigError(f"{where}: the CPU list is empty")
        return cpus
    if kind == "address":
        return _check_address(where, value)
    if kind == "strlist":
        if isinstance(value, str):
            value = [v for v in value.split(",") if v]
        if not isinstance(value, (list, tuple)) or not all(isinstance(v, str) and v for v in value):
            raise ConfigError(f"{where}: expected a list of strings, got {value!r}")
        if dotted == "target.addresses":
            return tuple(_check_address(where, v) for v in value)
        return tuple(value)
    raise AssertionError(kind)


def _check_address(where: str, value: Any) -> str:
    if not isinstance(value, str):
        raise ConfigError(f"{where}: expected an IP address, got {value!r}")
    try:
        return str(ipaddress.ip_address(value))
    except ValueError:
        raise ConfigError(f"{where}: {value!r} is not an IPv4 or IPv6 address") from None


def _fmt(x: float | None) -> str:
    if x is None:
        return ""
    return str(int(x)) if float(x).is_integer() else str(x)


def _did_you_mean(word: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


def _all_dotted() -> list[str]:
    return [f"{s}.{k}" for s, keys in SCHEMA.items() for k in keys]


def _lookup(source: str, dotted: str) -> Key:
    section, _, name = dotted.partition(".")
    if section not in SCHEMA or not name or name not in SCHEMA[section]:
        hint = _did_you_mean(dotted, _all_dotted())
        raise ConfigError(f"{source}: unknown key {dotted!r}{hint}")
    return SCHEMA[section][name]


# ---------------------------------------------------------------------------- loading

def parse_set(item: str) -> tuple[str, Any]:
    """Parse one `--set KEY=VALUE`; the value is read as TOML when it parses, else as a string."""
    key, sep, text = item.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, for example senders.batch=32")
    text = text.strip()
    try:
        value = tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        value = text
    return key, value


def load_config(path: str | Path | None = None, sets: Iterable[str] = ()) -> Config:
    """Read a TOML file (or defaults), apply `--set` items, validate everything."""
    raw: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            text = Path(path).read_text()
        except OSError as exc:
            raise ConfigError(f"{source}: cannot read: {exc.strerror or exc}") from None
        try:
            raw = tomllib.loads(text)
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"{source}: not valid TOML: {exc}") from None
    overrides = [parse_set(item) for item in sets]
    return build_config(raw, overrides, source)


def build_config(raw: Mapping[str, Any], overrides: Iterable[tuple[str, Any]] = (),
                 source: str = "defaults") -> Config:
    values: dict[str, Any] = {}
    for section, body in raw.items():
        if section not in TABLES:
            hint = _did_you_mean(section, TABLES)
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
    sweep = _check_sweep(source, raw.get("sweep", {}))
    config = replace(_assemble(values, sweep, source), hosts=hosts)
    check_roles(source, hosts, {"senders.host": config.senders.host,
                                "receivers.host": config.receivers.host},
                "target.address" in values, config.target.address, config.lab.enabled)
    check_consistency(config)
    for _, point in expand_sweep(config):
        check_consistency(point)
    return config


def _check_sweep(source: str, body: Mapping[str, Any]) -> tuple[tuple[str, tuple[Any, ...]], ...]:
    out = []
    for dotted, values in body.items():
        key = _lookup(f"{source}: [sweep]", dotted)
        if not isinstance(values, list) or not values:
            raise ConfigError(f"{source}: [sweep] {dotted!r}: expected a non-empty list of values")
        out.append((dotted, tuple(_convert(f"{source}: [sweep]", dotted, key, v) for v in values)))
    return tuple(out)


def _assemble(values: Mapping[str, Any], sweep, source: str) -> Config:
    sections = {}
    for section, keys in SCHEMA.items():
        kwargs = {name: values.get(f"{section}.{name}", key.default) for name, key in keys.items()}
        sections[section] = _section_type(section)(**kwargs)
    return Config(**sections, sweep=sweep, source=source)


def check_consistency(config: Config) -> None:
    """Contradictions between keys, caught before anything starts."""
    src = config.source
    s, r = config.senders, config.receivers
    if not s.raw and s.payload < WIRE_HEADER_BYTES:
        raise ConfigError(
            f"{src}: senders.payload: {s.payload} is below the {WIRE_HEADER_BYTES}-byte wire header; "
            "use 24 or more, or set senders.raw = true to only count")
    if s.gso_segments and s.payload * s.gso_segments > 65000:
        raise ConfigError(
            f"{src}: senders.gso_segments: {s.gso_segments} x {s.payload} bytes exceeds a 64 KB datagram")
    if s.cpus is not None and len(s.cpus) < 1:
        raise ConfigError(f"{src}: senders.cpus: empty")
    if r.placement == "explicit" and r.cpus is None:
        raise ConfigError(f"{src}: receivers.placement: 'explicit' needs receivers.cpus")
    if r.cpus is not None and r.placement not in ("explicit", "spread"):
        raise ConfigError(
            f"{src}: receivers.cpus: a CPU list and placement {r.placement!r} contradict; "
            "drop one (a CPU list means placement 'explicit')")
    if config.lab.enabled and config.target.address != "127.0.0.1" and not _is_lab_address(config.target.address):
        raise ConfigError(
            f"{src}: target.address: {config.target.address} with lab.enabled; the lab picks its own "
            "198.18.0.0/15 addresses, so leave target.address unset")
    if r.spin_us and r.mode != "block":
        raise ConfigError(f"{src}: receivers.spin_us: applies to block mode; a busy-poll receiver always polls")
    if config.run.timestamps == "kernel" and (s.raw or not config.run.latency):
        why = "senders.raw = true sends no send time" if s.raw else "run.latency = false"
        raise ConfigError(
            f"{src}: run.timestamps: 'kernel' splits one-way latency, but {why}; "
            "use run.timestamps = \"user\" or record latency")
    if s.burst and s.burst < s.batch and s.rate:
        raise ConfigError(f"{src}: senders.burst: {s.burst} is smaller than senders.batch {s.batch}")


def _is_lab_address(address: str) -> bool:
    return ipaddress.ip_address(address) in ipaddress.ip_network("198.18.0.0/15")


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


def describe_keys() -> list[tuple[str, str, str]]:
    """(key, default, help) rows, for `--help` and docs."""
    rows = []
    for dotted in _all_dotted():
        section, name = dotted.split(".")
        key = SCHEMA[section][name]
        rows.append((dotted, repr(key.default), key.help))
    return rows


