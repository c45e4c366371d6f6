"""A network-namespace test bed: sender and receiver namespaces joined by a multi-queue veth.

    netns pps-<id>-tx: pps-<id>-t 198.18.0.1/24
        <== veth, N TX and N RX queues on each end ==>
    netns pps-<id>-rx: pps-<id>-r 198.18.0.2/24

Built on pyroute2 (rtnetlink, tc, ethtool ioctl); nothing shells out. Netlink requests for a
namespace run on a throw-away thread inside it (pps.host.netns.call_in), so the caller's threads
never move. Addresses come from 198.18.0.0/15, the benchmarking range (RFC 2544), and static
neighbour entries mean no ARP ever runs. Each lab's names carry its id, so labs never collide.

Anything the lab changes outside its namespaces (host-wide sysctls) is written to a state
file, /run/pps/lab-<id>.json, *before* the change, so `lab_down` can restore it after a crash.
"""

from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pyroute2 import netns as pyr_netns

from pps.errors import ConfigError, EnvironmentNotAble
from pps.host.netns import NETNS_RUN_DIR, call_in
from pps.lab import kernel as kern
from pps.lab import owner as lab_owner

STATE_DIR = "/run/pps"
SENDER_ADDR = "198.18.0.1"
RECEIVER_ADDR = "198.18.0.2"
PREFIXLEN = 24
MAX_QUEUES = 256
CAP_NET_ADMIN = 12  # <linux/capability.h>
CAP_SYS_ADMIN = 21
# "pps-" + id + "-t" must fit IFNAMSIZ-1 = 15 characters.
_ID_RE = re.compile(r"[a-z0-9](?:[a-z0-9-]{0,7}[a-z0-9])?\Z")
_QDISC_RE = re.compile(r"([a-z_]+)((?:\s+[a-z_]+\s+\d+)*)\s*\Z")
# Host-wide only (registered in the initial namespace alone): say so wherever it is shown.
BACKLOG_SYSCTL = "net.core.netdev_max_backlog"
RMEM_SYSCTLS = ("net.core.rmem_max", "net.core.rmem_default")


@dataclass(frozen=True)
class LabSpec:
    """What a lab should look like. None means "leave the kernel's default"."""

    id: str = "lab"
    queues: int = 4
    rps_cpus: tuple[int, ...] | None = None  # RX queue i steered to rps_cpus[i % len]
    xps: bool = False  # TX queue i served by CPU i % ncpus
    gro: bool = False  # GRO (and veth NAPI) on the receiving veth
    backlog: int | None = None  # net.core.netdev_max_backlog: HOST-WIDE, restored by down
    # net.core.rmem_max / rmem_default: in the receiver namespace where the kernel gives it
    # its own copy, else host-wide (6.x), recorded and restored by down.
    rmem_max: int | None = None
    qdisc: str | None = None  # root qdisc on the sender veth: "pfifo limit 1000", "fq", ...
    rmem_default: int | None = None

    def __post_init__(self) -> None:
        check_id(self.id)
        if not isinstance(self.queues, int) or not 1 <= self.queues <= MAX_QUEUES:
            raise ConfigError(f"lab queues must be 1..{MAX_QUEUES}, got {self.queues!r}")
        if self.rps_cpus is not None:
            cpus = tuple(self.rps_cpus)
            if not all(isinstance(c, int) and c >= 0 for c in cpus):
                raise ConfigError(f"lab rps_cpus must be CPU numbers, got {self.rps_cpus!r}")
            object.__setattr__(self, "rps_cpus", cpus)
        for name in ("backlog", "rmem_max", "rmem_default"):
            value = getattr(self, name)
            if value is not None and (not isinstance(value, int) or value <= 0):
                raise ConfigError(f"lab {name} must be a positive integer, got {value!r}")
        if self.qdisc is not None:
            parse_qdisc(self.qdisc)


@dataclass(frozen=True)
class Lab:
    id: str
    sender_ns: str
    receiver_ns: str
    sender_dev: str
    receiver_dev: str
    sender_addr: str
    receiver_addr: str
    queues: int
    spec: LabSpec


def check_id(lab_id: str) -> str:
    if not isinstance(lab_id, str) or not _ID_RE.match(lab_id):
        raise ConfigError(
            f"lab id {lab_id!r}: use 1-9 characters of a-z, 0-9 and '-' "
            "(not at either end), so interface names fit 15 characters"
        )
    return lab_id


def parse_qdisc(text: str) -> tuple[str, dict[str, int]]:
    """"pfifo limit 500" -> ("pfifo", {"limit": 500}); tc's syntax, integer options only."""
    m = _QDISC_RE.match(text.strip())
    if not m:
        raise ConfigError(f"lab qdisc {text!r}: expected KIND [OPTION INTEGER]...")
    words = m.group(2).split()
    return m.group(1), {k: int(v) for k, v in zip(words[::2], words[1::2])}


def _lab(spec: LabSpec) -> Lab:
    i = spec.id
    return Lab(i, f"pps-{i}-tx", f"pps-{i}-rx", f"pps-{i}-t", f"pps-{i}-r",
               SENDER_ADDR, RECEIVER_ADDR, spec.queues, spec)


def require_net_admin() -> None:
    """Raise EnvironmentNotAble unless this process may manage namespaces and links."""
    with open("/proc/self/status") as f:
        caps = next(int(line.split()[1], 16) for line in f if line.startswith("CapEff:"))
    if not caps >> CAP_NET_ADMIN & 1:
        raise EnvironmentNotAble("the pps lab needs CAP_NET_ADMIN (run as root)")
    if not caps >> CAP_SYS_ADMIN & 1:  # setns and mounting namespace files need it too
        raise EnvironmentNotAble("the pps lab needs CAP_SYS_ADMIN as well (run as root)")


# ---- state file and lock ----


def state_path(lab_id: str) -> str:
    return os.path.join(STATE_DIR, f"lab-{lab_id}.json")


def _read_state(lab_id: str) -> dict[str, Any] | None:
    try:
        with open(state_path(lab_id)) as f:
            return json.load(f)
    except (FileNotFoundError, json.JSONDecodeError):
        return None


def _write_state(lab_id: str, state: dict[str, Any]) -> None:
    path = state_path(lab_id)
    tmp = f"{path}.tmp{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(state, f, indent=1, sort_keys=True)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


@contextlib.contextmanager
def _locked() -> Iterator[None]:
    """One lock for all labs: up/down of the same id from two processes must not interleave.
    The lock file is never removed, so there is no unlink-while-locked race."""
    os.makedirs(STATE_DIR, exist_ok=True)
    fd = os.open(os.path.join(STATE_DIR, "lab.lock"), os.O_RDWR | os.O_CREAT | os.O_CLOEXEC)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)
        yield
    finally:
        os.close(fd)


def _ns_exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_RUN_DIR, name))


def _create(lab: Lab) -> None:
    for name in (lab.sender_ns, lab.receiver_ns):
        pyr_netns.create(name)  # bind-mounted under /run/netns, as `ip netns add` does
    tx_mac, rx_mac = kern.make_veth(lab.sender_ns, lab.sender_dev, lab.receiver_ns,
                                    lab.receiver_dev, lab.queues)
    kern.configure_side(lab.sender_ns, lab.sender_dev, lab.sender_addr, PREFIXLEN,
                        lab.receiver_addr, rx_mac)
    kern.configure_side(lab.receiver_ns, lab.receiver_dev, lab.receiver_addr, PREFIXLEN,
                        lab.sender_addr, tx_mac)


# ---- options ----


def _apply(lab: Lab, state: dict[str, Any]) -> None:
    spec, n = lab.spec, lab.queues
    ncpu = os.cpu_count() or 1
    feats = dict.fromkeys(kern.GRO_FEATURES, spec.gro)
    call_in(lab.receiver_ns, lambda: kern.set_features(lab.receiver_dev, feats))
    # One CPU per queue, round-robin: queue i is then served by a known CPU, as with a NIC
    # whose queue interrupts are pinned, which is what the placement policies reason about.
    rps = {q: (spec.rps_cpus[q % len(spec.rps_cpus)],) if spec.rps_cpus else () for q in range(n)}
    xps = {q: (q % ncpu,) if spec.xps else () for q in range(n)}
    kern.write_masks(lab.receiver_ns, lab.receiver_dev, "rps", rps, bool(spec.rps_cpus))
    kern.write_masks(lab.sender_ns, lab.sender_dev, "xps", xps, spec.xps)
    kind, opts = parse_qdisc(spec.qdisc) if spec.qdisc else ("noqueue", {})
    kern.set_qdisc(lab.sender_ns, lab.sender_dev, kind, opts)
    # Where the kernel gives a namespace its own rmem_* they are set there; where the
    # namespace only mirrors the host's (6.x: present but read-only) they are set host-wide,
    # recorded and restored like the backlog.
    for name, value in zip(RMEM_SYSCTLS, (spec.rmem_max, spec.rmem_default)):
        if call_in(lab.receiver_ns, lambda name=name: kern.sysctl_per_namespace(name)):
            if value is not None:
                call_in(lab.receiver_ns, lambda name=name, v=value: kern.sysctl_write(name, str(v)))
        else:
            _set_host_sysctl(lab.id, state, name, value)
    _set_host_sysctl(lab.id, state, BACKLOG_SYSCTL, spec.backlog)


def _set_host_sysctl(lab_id: str, state: dict[str, Any], name: str, value: int | None) -> None:
    """Set a host-wide sysctl, recording its first previous value in the state file first;
    with value None, put back what the lab changed (if anything)."""
    changed = state.setdefault("host_sysctls", {})
    if value is None:
        if name in changed:
            _restore_one(name, changed.pop(name))
            _write_state(lab_id, state)
        return
    if name not in changed:
        changed[name] = {"previous": kern.sysctl_read(name)}
    changed[name]["set"] = str(value)
    _write_state(lab_id, state)
    kern.sysctl_write(name, str(value))


def _restore_one(name: str, record: dict[str, str]) -> str:
    now = kern.sysctl_read(name)
    if record.get("previous") is None or now is None:
        return f"sysctl {name} left as is (no previous value)"
    if now != record.get("set"):  # someone changed it after us; theirs wins
        return f"sysctl {name} left at {now} (changed by someone else since)"
    kern.sysctl_write(name, record["previous"])
    return f"sysctl {name} restored to {record['previous']}"


# ---- public API ----


def lab_up(spec: LabSpec, made_by_run: bool = False) -> tuple[Lab, bool]:
    """Create the lab, or reuse one with the same id and queue count; apply the options.
    Returns (lab, created). Raises ConfigError if the lab exists with other queues.
    made_by_run: a run makes it for itself and removes it when done; should that run die
    first, the state file says so and the next run (or `lab down`) clears what it left."""
    require_net_admin()
    ncpu = os.cpu_count() or 1
    bad = [c for c in spec.rps_cpus or () if c >= ncpu]
    if bad:
        raise ConfigError(f"lab rps_cpus {bad} do not exist (this machine has {ncpu} CPUs)")
    lab = _lab(spec)
    with _locked():
        existing = _probe(lab)
        created = existing is None
        if existing is not None and existing != (spec.queues, spec.queues):
            raise ConfigError(
                f"lab {spec.id!r} exists with {existing[0]} TX / {existing[1]} RX queues, "
                f"not {spec.queues}: run `pps lab down --id {spec.id}` first or use another id")
        if created:
            _down_locked(spec.id)  # clears what a crashed run left half-made
        state = _read_state(spec.id) or {"version": 1, "id": spec.id}
        state.update(queues=spec.queues, spec=dataclasses.asdict(spec))
        if created:
            state["made_by_run"] = os.getpid() if made_by_run else None
        try:
            if created:
                _write_state(spec.id, state)
                _create(lab)
            _apply(lab, state)
            _write_state(spec.id, state)
        except BaseException:
            if created:
                _down_locked(spec.id)
            raise
    return lab, created


def _probe(lab: Lab) -> tuple[int, int] | None:
    """(tx, rx) queue counts of a complete lab, or None when it is absent or half-made."""
    if not (_ns_exists(lab.sender_ns) and _ns_exists(lab.receiver_ns)):
        return None
    try:
        q = kern.queue_counts(lab.sender_ns, lab.sender_dev)
        peer = kern.queue_counts(lab.receiver_ns, lab.receiver_dev)
    except EnvironmentNotAble:  # a namespace file left behind but no namespace on it
        return None
    return q if q is not None and q == peer else None


def find_lab(lab_id: str) -> Lab | None:
    """The lab with this id as the kernel has it, or None. The options come from the state
    file when it matches the kernel; otherwise only the queue count is known."""
    check_id(lab_id)
    bare = _lab(LabSpec(id=lab_id, queues=1))
    if not (_ns_exists(bare.sender_ns) and _ns_exists(bare.receiver_ns)):
        return None
    require_net_admin()
    q = _probe(bare)
    if q is None or q[0] != q[1]:
        return None
    state = _read_state(lab_id) or {}
    spec = LabSpec(id=lab_id, queues=q[0])
    if state.get("queues") == q[0] and isinstance(state.get("spec"), dict):
        with contextlib.suppress(TypeError, ConfigError):
            spec = LabSpec(**state["spec"])
    return _lab(spec)


def lab_down(lab_id: str, force: bool = False) -> list[str]:
    """Remove the lab and whatever a crashed run left of it; restore host sysctls.
    Returns what was removed or restored; an empty list when nothing was there.
    A lab a run is using is refused (EnvironmentNotAble naming the run) unless `force`:
    then the run loses its lab, notices, and fails (exit 4). The run that owns a lab
    removes it with force, since it holds the lab itself."""
    check_id(lab_id)
    require_net_admin()
    if force:  # the caller holds the lab (the run that made it), or takes it away on purpose
        with _locked():
            return _down_locked(lab_id)
    with lab_owner.held(lab_id, purpose="down"), _locked():
        done = _down_locked(lab_id)
        lab_owner.forget(lab_id)
        return done


def left_by_run(lab_id: str) -> int | None:
    """The pid of the run that made this lab for itself, from the state file (None: made by
    `pps lab up`, or not known). Whoever holds the lab and finds this set finds leftovers."""
    made_by = (_read_state(lab_id) or {}).get("made_by_run")
    return made_by if isinstance(made_by, int) else None


def _down_locked(lab_id: str) -> list[str]:
    lab = _lab(LabSpec(id=lab_id, queues=1))
    done: list[str] = []

    # Delete the veth explicitly: a process still inside a namespace keeps it (and its
    # devices) alive after its name is gone. Look in the host too, for a run that crashed
    # with a link there. A namespace file with no namespace on it is simply removed below.
    devs = (lab.sender_dev, lab.receiver_dev)
    for ns in (lab.sender_ns, lab.receiver_ns, None):
        if ns is None or _ns_exists(ns):
            with contextlib.suppress(EnvironmentNotAble):
                done += [f"link {d} (in {ns or 'the host namespace'})"
                         for d in kern.delete_links(ns, devs)]
    state = _read_state(lab_id)
    for name, record in ((state or {}).get("host_sysctls") or {}).items():
        done.append(_restore_one(name, record))
    for ns in (lab.sender_ns, lab.receiver_ns):
        if _ns_exists(ns):
            pyr_netns.remove(ns)  # umount2(MNT_DETACH) then unlink, like `ip netns del`
            done.append(f"netns {ns}")
    if os.path.exists(state_path(lab_id)):
        os.unlink(state_path(lab_id))
        done.append(f"state {state_path(lab_id)}")
    return done


def lab_status(lab_id: str) -> dict[str, Any]:
    """What the kernel has of this lab: namespaces, links, queues, addresses, neighbours,
    GRO, RPS/XPS masks, qdisc and sysctls. Works on a half-made lab too."""
    check_id(lab_id)
    require_net_admin()
    lab = _lab(LabSpec(id=lab_id, queues=1))
    state = _read_state(lab_id)
    out: dict[str, Any] = {"id": lab_id, "state_file": state_path(lab_id) if state else None,
                           "namespaces": {}, "sides": {}}
    for role, ns, dev, kind in (("sender", lab.sender_ns, lab.sender_dev, "xps"),
                                ("receiver", lab.receiver_ns, lab.receiver_dev, "rps")):
        out["namespaces"][role] = {"name": ns, "exists": _ns_exists(ns)}
        if out["namespaces"][role]["exists"]:
            with contextlib.suppress(EnvironmentNotAble):
                out["sides"][role] = kern.side_status(ns, dev, kind, RMEM_SYSCTLS)
    sides = out["sides"]
    out["up"] = all("link" in sides.get(r, {}) for r in ("sender", "receiver"))
    out["queues"] = sides.get("sender", {}).get("link", {}).get("num_tx_queues")
    out["host_sysctls"] = {n: kern.sysctl_read(n) for n in (BACKLOG_SYSCTL, *RMEM_SYSCTLS)}
    out["host_changes"] = (state or {}).get("host_sysctls", {})
    out["notes"] = [f"{BACKLOG_SYSCTL} is host-wide, not per namespace"]
    rx_sysctls = sides.get("receiver", {}).get("sysctls", {})
    if any(not v["per_namespace"] for v in rx_sysctls.values()):
        out["notes"].append("net.core.rmem_* are read-only copies of the host's in a namespace"
                            " on this kernel, so the lab sets them host-wide")
    if out["host_changes"]:
        out["notes"].append("host-wide values the lab changed are put back by `lab down`")
    return out


def format_status(status: dict[str, Any]) -> str:
    """Human text for lab_status()."""
    lines = [f"lab {status['id']}: " + ("up" if status["up"] else "not up")
             + (f", {status['queues']} queues" if status.get("queues") else "")]
    for role in ("sender", "receiver"):
        ns = status["namespaces"][role]
        side = status["sides"].get(role, {})
        lines.append(f"  {role:8} netns {ns['name']}: " + ("present" if ns["exists"] else "absent"))
        link = side.get("link")
        if not link:
            continue
        lines.append(f"    link {link['name']} {link['state']} mac {link['mac']} mtu {link['mtu']}"
                     f" queues tx {link['num_tx_queues']} rx {link['num_rx_queues']}"
                     f" lo {'up' if side.get('lo_up') else 'down'}")
        lines.append(f"    addresses {', '.join(side['addresses']) or '-'}")
        for nb in side["neighbours"]:
            lines.append(f"    neighbour {nb['dst']} {nb['lladdr']} "
                         + ("permanent" if nb["permanent"] else "dynamic"))
        feats = " ".join(f"{k} {'on' if v else 'off'}" for k, v in side["features"].items())
        lines.append(f"    qdisc {side['qdisc']}; {feats}")
        for kind in ("rps", "xps"):
            masks = side.get(f"{kind}_cpus")
            if masks is not None:
                shown = " ".join(f"{q}:{','.join(map(str, c)) or '-'}" for q, c in masks.items())
                lines.append(f"    {kind} cpus per queue {shown}")
        if role == "receiver":
            lines.append("    " + ", ".join(
                f"{k}={v['value']}" + ("" if v["per_namespace"] else " (host's, read-only)")
                for k, v in side["sysctls"].items()))
    lines.append("  host-wide: " + ", ".join(f"{k}={v}" for k, v in status["host_sysctls"].items()))
    for name, rec in status["host_changes"].items():
        lines.append(f"  changed by the lab: {name} {rec.get('previous')} -> {rec.get('set')}")
    lines += [f"  note: {n}" for n in status["notes"]]
    return "\n".join(lines)
