"""Checks on the CPUs: irqbalance, frequency governor, turbo, C-states, isolation, load."""

from __future__ import annotations

from pps.config.cpulist import format_cpulist, parse_cpulist
from pps.host.checks.base import Check, CheckResult, Context

CPU_DIR = "sys/devices/system/cpu"
# C-states slower to leave than this (µs) add wake-up latency a receiver sleeping in
# recvmmsg pays on every batch; C1/C1E on servers are 1-10 µs, C6 is 100+.
DEEP_CSTATE_US = 20
BUSY_LIMIT = 0.10  # another task using >10% of a planned CPU skews the numbers


def _cpus(cpus) -> str:
    return format_cpulist(cpus) or "none"


class IrqBalance(Check):
    """irqbalance rewrites IRQ affinity every few seconds, so a queue's CPU can change
    in the middle of a run and the plan's alignment is lost."""

    name = "irqbalance"

    def applies(self, ctx: Context) -> bool | str:
        return True if ctx.procs() else "no process list under ROOT/proc"

    def inspect(self, ctx: Context) -> CheckResult:
        pids = [p.pid for p in ctx.procs() if p.comm == "irqbalance"]
        if not pids:
            return self.ok("not running")
        return self.warn(f"running (pid {', '.join(map(str, pids))}); it moves IRQs mid-run",
                         "systemctl stop irqbalance")


class Governor(Check):
    name = "cpu-governor"

    def applies(self, ctx: Context) -> bool | str:
        if not any(ctx.exists(f"{CPU_DIR}/cpu{c}/cpufreq") for c in ctx.planned_cpus()):
            return "no cpufreq in sysfs (a VM, or firmware sets the frequency)"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        govs: dict[str, list[int]] = {}
        for cpu in ctx.planned_cpus():
            gov = ctx.read(f"{CPU_DIR}/cpu{cpu}/cpufreq/scaling_governor")
            if gov:
                govs.setdefault(gov, []).append(cpu)
        seen = "; ".join(f"{g} on CPU {_cpus(c)}" for g, c in sorted(govs.items()))
        slow = [c for g, cs in govs.items() if g != "performance" for c in cs]
        if not slow:
            return self.ok(seen or "no governor reported")
        return self.warn(seen + " (the clock drops between bursts)",
                         "cpupower -c " + _cpus(slow) + " frequency-set -g performance")


class Turbo(Check):
    """Turbo makes results depend on temperature and on how many cores are busy; for
    comparable runs it is held off (or at least recorded the same in both)."""

    name = "turbo"

    def applies(self, ctx: Context) -> bool | str:
        if ctx.read(f"{CPU_DIR}/intel_pstate/no_turbo") is None and \
                ctx.read(f"{CPU_DIR}/cpufreq/boost") is None:
            return "no intel_pstate/no_turbo or cpufreq/boost (a VM, or not switchable)"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        no_turbo = ctx.read(f"{CPU_DIR}/intel_pstate/no_turbo")
        if no_turbo is not None:
            if no_turbo == "1":
                return self.ok("intel_pstate turbo off")
            return self.warn("intel_pstate turbo on: the clock varies with heat and load",
                             f"echo 1 > /{CPU_DIR}/intel_pstate/no_turbo")
        if ctx.read(f"{CPU_DIR}/cpufreq/boost") == "0":
            return self.ok("cpufreq boost off")
        return self.warn("cpufreq boost on: the clock varies with heat and load",
                         f"echo 0 > /{CPU_DIR}/cpufreq/boost")


class CStates(Check):
    name = "c-states"

    def applies(self, ctx: Context) -> bool | str:
        if not any(ctx.exists(f"{CPU_DIR}/cpu{c}/cpuidle") for c in ctx.planned_cpus()):
            return "no cpuidle states in sysfs"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        deep: dict[str, int] = {}  # state name -> exit latency µs
        cpus: set[int] = set()
        for cpu in ctx.planned_cpus():
            for i in range(16):
                base = f"{CPU_DIR}/cpu{cpu}/cpuidle/state{i}"
                name = ctx.read(f"{base}/name")
                if name is None:
                    break
                latency = ctx.read_int(f"{base}/latency") or 0
                if latency > DEEP_CSTATE_US and ctx.read(f"{base}/disable") != "1":
                    deep[name] = latency
                    cpus.add(cpu)
        driver = ctx.read(f"{CPU_DIR}/cpuidle/current_driver") or "unknown"
        if not deep:
            return self.ok(f"no enabled state slower than {DEEP_CSTATE_US} µs to leave "
                           f"(driver {driver})")
        states = ", ".join(f"{n} {lat} µs" for n, lat in sorted(deep.items(), key=lambda x: x[1]))
        return self.warn(f"deep states enabled on CPU {_cpus(cpus)}: {states}",
                         f"cpupower -c {_cpus(cpus)} idle-set -D {DEEP_CSTATE_US}")


class IsolatedCpus(Check):
    """Isolated CPUs (isolcpus=, nohz_full=) keep the scheduler's other tasks and the tick
    away from the receivers; without them, other tasks may share their CPUs."""

    name = "isolated-cpus"

    def inspect(self, ctx: Context) -> CheckResult:
        iso = set(parse_cpulist(ctx.read(f"{CPU_DIR}/isolated") or ""))
        nohz = set(parse_cpulist(ctx.read(f"{CPU_DIR}/nohz_full") or ""))
        # The receivers are what is measured; senders only offer the load.
        planned = set(ctx.receiver_cpus() or ctx.planned_cpus())
        where = f"isolated {_cpus(iso)}, nohz_full {_cpus(nohz)}"
        if len(ctx.topology.online_cpus) <= 2 and not iso:
            # Isolating one of two CPUs leaves the OS a single CPU; not advice worth giving.
            return self.na(f"{where}; too few CPUs ({len(ctx.topology.online_cpus)}) to "
                           "set some apart")
        if planned and planned <= iso:
            return self.ok(f"{where}; receivers' CPU {_cpus(planned)} isolated")
        if not iso:
            return self.warn(f"{where}; other tasks may run on receiver CPUs {_cpus(planned)}",
                             f"boot with isolcpus={_cpus(planned)} nohz_full={_cpus(planned)} "
                             "(kernel command line), or set receivers.cpus to quiet CPUs")
        outside = planned - iso
        return self.warn(f"{where}; receiver CPU {_cpus(outside)} not isolated",
                         f"pps run --set receivers.cpus={_cpus(iso)} (the isolated CPUs)")


class CpuLoad(Check):
    """Anything else running on a planned CPU takes cycles from a worker."""

    name = "cpu-load"

    def inspect(self, ctx: Context) -> CheckResult:
        planned = set(ctx.planned_cpus())
        busy = ctx.cpu_load() if ctx.cpu_load else None
        runnable = [p for p in ctx.procs() if p.state == "R" and p.cpu in planned]
        who = ", ".join(f"{p.comm} ({p.pid}) on CPU {p.cpu}" for p in runnable[:5])
        if busy is None:
            load = ctx.read("proc/loadavg")
            if load is None and not runnable:
                return self.na("neither CPU usage nor loadavg readable")
            seen = f"load average {load.split()[0]}" if load else "no loadavg"
            one = float(load.split()[0]) if load else 0.0
            if runnable or one >= 0.5 * len(ctx.topology.online_cpus):
                tail = f"; runnable: {who}" if who else ""
                return self.warn(f"{seen} on {len(ctx.topology.online_cpus)} CPUs{tail}",
                                 "stop the other work, or run on idle CPUs (receivers.cpus)")
            return self.ok(f"{seen}; nothing else runnable on planned CPUs")
        hot = {c: f for c, f in busy.items() if c in planned and f > BUSY_LIMIT}
        usage = ", ".join(f"CPU {c} {busy.get(c, 0.0):.0%}" for c in sorted(planned))
        if not hot:
            return self.ok(f"planned CPUs mostly idle: {usage}")
        tail = f"; runnable: {who}" if who else ""
        return self.warn(f"planned CPUs busy before the run: {usage}{tail}",
                         "stop the other work, or run on idle CPUs (receivers.cpus, senders.cpus)")


CHECKS = (IrqBalance(), Governor(), Turbo(), CStates(), IsolatedCpus(), CpuLoad())
