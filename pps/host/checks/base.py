"""What every host check shares: the Context it reads, the result it gives, small readers.

Checks read only. Everything comes from files under `ctx.root` ("/" or a captured tree) or
from the injectable providers on the Context (ethtool settings, processes, CPU load), so the
same checks run on this machine and on captured trees in the tests.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from pps.config.model import Config
from pps.host.topology import Device, Topology
from pps.plan.placement import Plan

STATUSES = ("ok", "warn", "n/a")


@dataclass(frozen=True)
class CheckResult:
    name: str
    status: str  # one of STATUSES
    seen: str  # what the check found, in words, true for this host
    advice: str | None = None  # the exact command to fix it; only with "warn"

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "status": self.status, "seen": self.seen,
                "advice": self.advice}


@dataclass(frozen=True)
class Proc:
    pid: int
    comm: str
    state: str  # "R" runnable, "S" sleeping, ...
    cpu: int | None  # the CPU it last ran on (stat field 39)


EthtoolFn = Callable[[str], "dict[str, Any] | None"]
ProcsFn = Callable[[], "list[Proc]"]
# CPU -> busy fraction (0..1) over a short window, or None when it cannot be measured
LoadFn = Callable[[], "dict[int, float] | None"]


@dataclass
class Context:
    root: str
    topology: Topology
    device: str | None
    config: Config
    plan: Plan | None = None
    ethtool: EthtoolFn | None = None
    processes: ProcsFn | None = None
    cpu_load: LoadFn | None = None
    is_root: bool = field(default_factory=lambda: os.geteuid() == 0)
    _cache: dict[str, Any] = field(default_factory=dict, repr=False)

    def __post_init__(self) -> None:
        if self.ethtool is None:
            self.ethtool = live_ethtool if is_live(self.root) else captured_ethtool(self.root)
        if self.processes is None:
            self.processes = lambda: read_processes(self.root)
        if self.cpu_load is None:
            self.cpu_load = (lambda: sample_cpu_load(self.root)) if is_live(self.root) else (
                lambda: None)

    # -- reading, relative to root
    def read(self, rel: str) -> str | None:
        return read_text(self.root, rel)

    def read_int(self, rel: str) -> int | None:
        text = self.read(rel)
        try:
            return int(text.split()[0]) if text else None
        except ValueError:
            return None

    def exists(self, rel: str) -> bool:
        return os.path.exists(os.path.join(self.root, rel))

    # -- what the checks ask about
    @property
    def dev(self) -> Device | None:
        return self.topology.devices.get(self.device) if self.device else None

    def settings(self) -> dict[str, Any] | None:
        """The device's ethtool settings, asked once: {driver_info, channels, rings, rss_udp4}."""
        if "ethtool" not in self._cache:
            self._cache["ethtool"] = self.ethtool(self.device) if self.device else None
        return self._cache["ethtool"]

    def procs(self) -> list[Proc]:
        if "procs" not in self._cache:
            self._cache["procs"] = self.processes()
        return self._cache["procs"]

    def planned_cpus(self) -> tuple[int, ...]:
        """CPUs the plan puts workers on; every online CPU when there is no plan."""
        if self.plan is not None:
            return tuple(sorted({w.cpu for w in self.plan.workers}))
        return self.topology.online_cpus

    def receiver_cpus(self) -> tuple[int, ...]:
        if self.plan is None:
            return ()
        return tuple(sorted({w.cpu for w in self.plan.receivers}))


class Check:
    """One host check. Subclasses set `name` and implement `inspect`; `applies` returns True,
    or a reason (str) why the check does not apply here."""

    name = ""

    def applies(self, ctx: Context) -> bool | str:
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        raise NotImplementedError

    def ok(self, seen: str) -> CheckResult:
        return CheckResult(self.name, "ok", seen)

    def warn(self, seen: str, advice: str | None) -> CheckResult:
        return CheckResult(self.name, "warn", seen, advice)

    def na(self, seen: str) -> CheckResult:
        return CheckResult(self.name, "n/a", seen)


# ---------------------------------------------------------------------------- providers

def is_live(root: str) -> bool:
    return os.path.realpath(root) == "/"


def read_text(root: str, rel: str) -> str | None:
    """A file's stripped text, or None when absent or unreadable (normal in sysfs/procfs)."""
    try:
        with open(os.path.join(root, rel)) as f:
            return f.read().strip()
    except (OSError, UnicodeDecodeError):
        return None


def live_ethtool(device: str) -> dict[str, Any] | None:
    from pps.errors import EnvironmentNotAble
    from pps.host import ethtool

    try:
        return ethtool.device_settings(device)
    except EnvironmentNotAble:  # vanished between sysfs and the ioctl, or refused
        return None


def captured_ethtool(root: str) -> EthtoolFn:
    """A captured tree has no ioctls; its ethtool settings, when captured, sit in
    ROOT/ethtool/DEV.json in the shape of pps.host.ethtool.device_settings()."""
    import json

    def read(device: str) -> dict[str, Any] | None:
        text = read_text(root, f"ethtool/{device}.json")
        return json.loads(text) if text else None

    return read


def parse_proc_stat_line(text: str) -> tuple[str, int | None]:
    """(state, last CPU) from /proc/PID/stat; comm may hold spaces and parentheses."""
    rest = text.rpartition(")")[2].split()
    state = rest[0] if rest else "?"
    try:
        cpu = int(rest[36])  # field 39 overall; fields 1-2 (pid, comm) precede `rest`
    except (IndexError, ValueError):
        cpu = None
    return state, cpu


def read_processes(root: str) -> list[Proc]:
    """Every process under ROOT/proc with its name, state and last CPU; skips vanished ones."""
    out = []
    me = os.getpid() if is_live(root) else None
    try:
        names = os.listdir(os.path.join(root, "proc"))
    except OSError:
        return []
    for name in names:
        if not name.isdigit() or int(name) == me:
            continue
        comm = read_text(root, f"proc/{name}/comm")
        if comm is None:
            continue
        state, cpu = parse_proc_stat_line(read_text(root, f"proc/{name}/stat") or "")
        out.append(Proc(int(name), comm, state, cpu))
    return sorted(out, key=lambda p: p.pid)


def parse_cpu_times(text: str) -> dict[int, tuple[int, int]]:
    """/proc/stat -> {cpu: (busy jiffies, total jiffies)}; iowait counts as idle."""
    out = {}
    for line in text.splitlines():
        head, *vals = line.split()
        if not head.startswith("cpu") or head == "cpu" or not vals:
            continue
        nums = [int(v) for v in vals[:8]]
        idle = nums[3] + (nums[4] if len(nums) > 4 else 0)
        out[int(head[3:])] = (sum(nums) - idle, sum(nums))
    return out


def busy_fraction(before: str, after: str) -> dict[int, float]:
    a, b = parse_cpu_times(before), parse_cpu_times(after)
    out = {}
    for cpu in a.keys() & b.keys():
        total = b[cpu][1] - a[cpu][1]
        out[cpu] = (b[cpu][0] - a[cpu][0]) / total if total > 0 else 0.0
    return out


def sample_cpu_load(root: str = "/", window_s: float = 0.1) -> dict[int, float] | None:
    """Busy fraction per CPU over `window_s`, from two reads of /proc/stat."""
    first = read_text(root, "proc/stat")
    time.sleep(window_s)
    second = read_text(root, "proc/stat")
    return busy_fraction(first, second) if first and second else None
