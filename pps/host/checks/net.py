"""Checks on the network path: netfilter, rp_filter, the NIC's queues and hash, sysctls, NUMA."""

from __future__ import annotations

from pps.config.cpulist import format_cpulist, format_cpumask
from pps.host.checks.base import Check, CheckResult, Context

SYSCTL = "proc/sys/net/core"
BACKLOG_MIN = 10000  # the default 1000 is a burst of 16 sendmmsg batches of 64
FULL_HASH = "sdfn"  # IP source, IP destination, UDP source port, UDP destination port


def _virtual(ctx: Context) -> str | None:
    """Why the device has no NIC settings to check (lo, veth, bridges), or None."""
    if ctx.device is None:
        return "no target device (the lab's veth lives in its own namespace)"
    dev = ctx.dev
    if ctx.device == "lo" or (dev is not None and dev.bus is None):
        return f"{ctx.device} is a virtual device; it has no NIC queues or hash"
    return None


def _modules(ctx: Context) -> list[str] | None:
    """Loaded module names, or None when the kernel has no /proc/modules (all built in)."""
    text = ctx.read("proc/modules")
    return None if text is None else [line.split()[0] for line in text.splitlines() if line]


def _n(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


def _sysctl(ctx: Context, name: str) -> int | None:
    return ctx.read_int(f"{SYSCTL}/{name}")


class Conntrack(Check):
    """Each tracked UDP flow costs a hash lookup per packet and an entry that can fill the
    table (then packets are dropped: nf_conntrack: table full)."""

    name = "conntrack"

    def applies(self, ctx: Context) -> bool | str:
        mods = _modules(ctx) or []
        if ctx.exists("proc/sys/net/netfilter/nf_conntrack_count") or \
                ctx.exists("proc/net/nf_conntrack") or "nf_conntrack" in mods:
            return True
        return "conntrack not loaded"

    def inspect(self, ctx: Context) -> CheckResult:
        count = ctx.read_int("proc/sys/net/netfilter/nf_conntrack_count")
        if count is None:
            text = ctx.read("proc/net/nf_conntrack") or ""
            count = len(text.splitlines())
        if count == 0:
            return self.ok("loaded, tracking nothing (no rule hooks it)")
        port = ctx.config.target.port
        return self.warn(
            f"tracking {count} connections: benchmark flows would be tracked too",
            f"iptables -t raw -I PREROUTING -p udp --dport {port} -j NOTRACK && "
            f"iptables -t raw -I OUTPUT -p udp --dport {port} -j NOTRACK")


class Netfilter(Check):
    """Every rule in a hooked chain is evaluated per packet."""

    name = "netfilter"

    def applies(self, ctx: Context) -> bool | str:
        if ctx.read("proc/net/ip_tables_names") is None and _modules(ctx) is None:
            return "neither /proc/net/ip_tables_names nor /proc/modules readable"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        tables = (ctx.read("proc/net/ip_tables_names") or "").split()
        mods = _modules(ctx)
        nft = [m for m in (mods or []) if m == "nf_tables" or m.startswith("nft_")]
        legacy = [m for m in (mods or []) if m.startswith("iptable_")]
        if tables or legacy:
            names = ", ".join(tables or [m.removeprefix("iptable_") for m in legacy])
            return self.warn(f"iptables tables loaded: {names}; each packet walks their chains",
                             "iptables-save | grep -v '^[#:*]'  (remove rules on the "
                             f"benchmark's path, or NOTRACK UDP port {ctx.config.target.port})")
        if nft:
            return self.warn(f"nf_tables loaded ({len(nft)} modules); its rules are not in "
                             "procfs", "nft list ruleset  (look for chains on the UDP path)")
        if mods is None:
            return self.ok("no iptables tables; no /proc/modules (built-in kernel), "
                           "so nf_tables rules were not looked for")
        return self.ok("no iptables tables, no nf_tables modules")


class RpFilter(Check):
    """Reverse-path filtering adds a route lookup per received packet (strict mode also drops
    packets whose source would route out another device)."""

    name = "rp-filter"

    def applies(self, ctx: Context) -> bool | str:
        if ctx.device == "lo":
            return "loopback packets keep their output route; no input route lookup"
        if ctx.read("proc/sys/net/ipv4/conf/all/rp_filter") is None:
            return "no net.ipv4.conf.all.rp_filter"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        names = ["all"] + ([ctx.device] if ctx.device else [])
        values = {n: ctx.read_int(f"proc/sys/net/ipv4/conf/{n}/rp_filter") for n in names}
        seen = ", ".join(f"{n} {v}" for n, v in values.items() if v is not None)
        # The kernel uses the larger of conf/all and conf/DEV.
        if max(v or 0 for v in values.values()) == 0:
            return self.ok(f"off ({seen})")
        fix = " ".join(f"net.ipv4.conf.{n}.rp_filter=0" for n, v in values.items() if v)
        return self.warn(f"on ({seen}; 1 strict, 2 loose): a route lookup per packet",
                         f"sysctl -w {fix}")


class RssHash(Check):
    name = "rss-hash"

    def applies(self, ctx: Context) -> bool | str:
        why = _virtual(ctx)
        if why:
            return why
        if ctx.dev is not None and len(ctx.dev.rx_queues) < 2:
            return f"{ctx.device} has one RX queue: RSS has nothing to spread"
        if not (ctx.settings() or {}).get("rss_udp4"):
            return f"{ctx.device}: the driver reports no udp4 hash fields"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        rss = ctx.settings()["rss_udp4"]
        letters = rss["letters"]
        if set(FULL_HASH) <= set(letters):
            return self.ok(f"udp4 hashes {letters} (addresses and ports)")
        return self.warn(f"udp4 hashes {letters or 'nothing'}: flows between two hosts land on "
                         "one queue", f"ethtool -N {ctx.device} rx-flow-hash udp4 {FULL_HASH}")


class Channels(Check):
    name = "channels"

    def applies(self, ctx: Context) -> bool | str:
        why = _virtual(ctx)
        if why:
            return why
        if not (ctx.settings() or {}).get("channels"):
            return f"{ctx.device}: the driver reports no channels"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        ch = ctx.settings()["channels"]
        kind = "combined" if ch["combined"] or ch["max_combined"] else "rx"
        have, most = ch[kind], ch[f"max_{kind}"]
        cpus = len(ctx.topology.online_cpus)
        want = min(most, max(ctx.config.receivers.count, 1), cpus)
        seen = (f"{have} {kind} of max {most}, {_n(cpus, 'CPU')}, "
                f"{_n(ctx.config.receivers.count, 'receiver')}")
        if have >= want:
            return self.ok(seen)
        return self.warn(seen + ": receivers share queues",
                         f"ethtool -L {ctx.device} {kind} {min(most, cpus)}")


class Rings(Check):
    """Small RX rings overflow in bursts (rx_missed_errors) before the CPU falls behind."""

    name = "rings"

    def applies(self, ctx: Context) -> bool | str:
        why = _virtual(ctx)
        if why:
            return why
        if not (ctx.settings() or {}).get("rings"):
            return f"{ctx.device}: the driver reports no ring sizes"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        r = ctx.settings()["rings"]
        seen = f"rx {r['rx']}/{r['rx_max']}, tx {r['tx']}/{r['tx_max']}"
        if r["rx"] >= r["rx_max"]:
            return self.ok(seen + " (at their maximum)" if r["tx"] >= r["tx_max"] else seen)
        tx = f" tx {r['tx_max']}" if r["tx"] < r["tx_max"] else ""
        return self.warn(seen + ": RX ring below its maximum",
                         f"ethtool -G {ctx.device} rx {r['rx_max']}{tx}")


class RpsXps(Check):
    """With one RX queue all protocol work runs on the one CPU its IRQ fires on; RPS spreads it."""

    name = "rps-xps"

    def applies(self, ctx: Context) -> bool | str:
        why = _virtual(ctx)
        if why:
            return why
        if ctx.dev is None or not ctx.dev.rx_queues:
            return f"{ctx.device}: no RX queues in sysfs"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        dev = ctx.dev
        xps = sum(1 for q in dev.tx_queues if q.xps_cpus)
        rps = [q for q in dev.rx_queues if q.rps_cpus]
        seen = (f"{_n(len(dev.rx_queues), 'RX queue')}, RPS on {len(rps)}; "
                f"{_n(len(dev.tx_queues), 'TX queue')}, XPS on {xps}")
        if len(dev.rx_queues) > 1 or rps:
            return self.ok(seen)
        q = dev.rx_queues[0]
        irq_cpus = set(q.irq_cpus)
        node = dev.numa_node
        cpus = [c for c in ctx.topology.online_cpus
                if c not in irq_cpus and (node is None or ctx.topology.node_of(c) == node)]
        cpus = cpus or list(ctx.topology.online_cpus)
        where = f" on CPU {format_cpulist(irq_cpus)}" if irq_cpus else ""
        return self.warn(seen + f": all receive work runs where rx-0's IRQ fires{where}",
                         f"echo {format_cpumask(cpus)} > "
                         f"/sys/class/net/{ctx.device}/queues/rx-0/rps_cpus")


class _BufferMax(Check):
    """A socket buffer asked above net.core.*mem_max is cut to it, unless the process has
    CAP_NET_ADMIN: pps then uses SO_*BUFFORCE, which ignores the cap."""

    sysctl = key = ""

    def applies(self, ctx: Context) -> bool | str:
        if _sysctl(ctx, self.sysctl) is None:
            return f"no net.core.{self.sysctl}"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        cap = _sysctl(ctx, self.sysctl)
        section, field = self.key.split(".")
        want = getattr(getattr(ctx.config, section), field)
        if want == 0:
            default = _sysctl(ctx, self.sysctl.replace("max", "default"))
            return self.ok(f"{self.key} not set: sockets get the default {default} bytes "
                           f"(max {cap})")
        seen = f"{self.key} {want} bytes, net.core.{self.sysctl} {cap}"
        if want <= cap:
            return self.ok(seen)
        if ctx.is_root:
            return self.ok(seen + ": over the cap, but pps runs as root and forces the size")
        return self.warn(seen + ": without root the buffer is cut to the cap",
                         f"sysctl -w net.core.{self.sysctl}={want}")


class RmemMax(_BufferMax):
    name, sysctl, key = "rmem-max", "rmem_max", "receivers.rcvbuf"


class WmemMax(_BufferMax):
    name, sysctl, key = "wmem-max", "wmem_max", "senders.sndbuf"


class Backlog(Check):
    """lo, veth and RPS hand packets to a per-CPU backlog queue of netdev_max_backlog packets;
    beyond that they are dropped (softnet_stat dropped)."""

    name = "netdev-backlog"

    def applies(self, ctx: Context) -> bool | str:
        if _sysctl(ctx, "netdev_max_backlog") is None:
            return "no net.core.netdev_max_backlog"
        dev = ctx.dev
        if dev is not None and dev.has_queue_irqs and \
                not any(q.serviced_by == "rps" for q in dev.rx_queues):
            return f"{dev.name} delivers by NAPI without RPS; the backlog is not on its path"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        value = _sysctl(ctx, "netdev_max_backlog")
        seen = f"netdev_max_backlog {value}"
        if value >= BACKLOG_MIN:
            return self.ok(seen)
        return self.warn(seen + ": bursts beyond it are dropped on the backlog path",
                         f"sysctl -w net.core.netdev_max_backlog={BACKLOG_MIN}")


class BusyPoll(Check):
    name = "busy-poll"

    def applies(self, ctx: Context) -> bool | str:
        if ctx.config.receivers.mode != "busy-poll":
            return f"receivers.mode is {ctx.config.receivers.mode}"
        if _sysctl(ctx, "busy_read") is None:
            return "no net.core.busy_read (kernel without CONFIG_NET_RX_BUSY_POLL?)"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        read, poll = _sysctl(ctx, "busy_read"), _sysctl(ctx, "busy_poll")
        sock = ctx.config.receivers.busy_poll_us
        seen = f"SO_BUSY_POLL {sock} µs, net.core.busy_read {read}, busy_poll {poll}"
        if ctx.device == "lo":
            seen += " (lo has no NAPI: receivers spin in user space only)"
        if sock == 0 and not read:
            return self.warn(seen + ": no socket busy polling",
                             "pps run --set receivers.busy_poll_us=50  (or sysctl -w "
                             "net.core.busy_read=50)")
        if sock > (read or 0) and not ctx.is_root:
            return self.warn(seen + ": SO_BUSY_POLL above busy_read needs CAP_NET_ADMIN",
                             f"sysctl -w net.core.busy_read={sock}")
        return self.ok(seen)


class NicNuma(Check):
    name = "nic-numa"

    def applies(self, ctx: Context) -> bool | str:
        if len(ctx.topology.online_nodes()) < 2:
            return "one NUMA node"
        if ctx.dev is None or ctx.dev.numa_node is None:
            return f"{ctx.device or 'no device'}: NUMA node unknown"
        if ctx.plan is None or not ctx.plan.receivers:
            return "no placement plan"
        return True

    def inspect(self, ctx: Context) -> CheckResult:
        home = ctx.dev.numa_node
        far = [w for w in ctx.plan.receivers if w.node != home]
        cpus = format_cpulist(w.cpu for w in ctx.plan.receivers)
        if not far:
            return self.ok(f"{ctx.device} on node {home}; receivers on CPU {cpus}, same node")
        if ctx.plan.policy == "remote":
            return self.ok(f"{ctx.device} on node {home}; receivers on another node, as "
                           "placement remote asks")
        near = format_cpulist(ctx.topology.online_nodes().get(home, ()))
        return self.warn(f"{ctx.device} on node {home}; receiver CPU "
                         f"{format_cpulist(w.cpu for w in far)} on another node",
                         f"pps run --set receivers.cpus={near}  (or receivers.placement=local)")


CHECKS = (Conntrack(), Netfilter(), RpFilter(), RssHash(), Channels(), Rings(), RpsXps(),
          RmemMax(), WmemMax(), Backlog(), BusyPoll(), NicNuma())
