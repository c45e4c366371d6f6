"""One `pps run` end to end: config -> topology -> plan -> (lab) -> trial -> tables ->
ledger -> results directory. The CLI and sweeps call `execute`; nothing here prints.
"""

from __future__ import annotations

import contextlib
import ipaddress
import os
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import Any

from pps.config.hosts import LOCAL
from pps.config.model import Config
from pps.errors import ConfigError, EnvironmentNotAble
from pps.host import metadata, netns, offload, selfpin
from pps.host.sockets import ensure_port_free
from pps.host.topology import Topology, read_topology
from pps.plan import flowpick
from pps.plan.placement import Plan, plan_workers
from pps.results.run_report import RunReport, build_report, save
from pps.run import stopsignals
from pps.run.trial import Trial, WorkerSpec


def check_target_allowed(config: Config, confirmed: bool) -> None:
    """Loopback and the lab are always fine (the lab picks its own addresses); any other
    target, even one in the benchmarking range, is a real load on a real network: --yes."""
    if config.lab.enabled:
        return
    for address in config.target.all_addresses:
        if not ipaddress.ip_address(address).is_loopback and not confirmed:
            raise ConfigError(
                f"target {address} is not loopback and not the lab: this sends a real load onto "
                "a real network; pass --yes if you mean it")


def route_device(address: str) -> str | None:
    """The device the route to `address` leaves by (lo for loopback)."""
    if ipaddress.ip_address(address).is_loopback:
        return "lo"
    from pyroute2 import IPRoute

    try:
        with IPRoute() as ipr:
            routes = ipr.route("get", dst=address)
            index = routes[0].get_attr("RTA_OIF")
            return ipr.get_links(index)[0].get_attr("IFLA_IFNAME")
    except Exception as exc:  # netlink says no route, or no such family
        raise EnvironmentNotAble(f"no route to {address}: {exc}") from None


def make_plan(config: Config, root: str = "/",
              roles: tuple[str, ...] = ("sender", "receiver")) -> tuple[Topology, Plan]:
    """Read the topology and plan the workers (of `roles`). In the lab the receiving veth
    lives in its own namespace, out of the host's sysfs, so the plan aligns with CPUs only.
    On this machine, only the CPUs this process may use (taskset, cpuset) are planned on."""
    device = None if config.lab.enabled else (
        config.target.device or route_device(config.target.address))
    topology = read_topology(root, devices=[device] if device else [])
    if os.path.realpath(root) == "/":
        topology = topology.restricted(os.sched_getaffinity(0))
    return topology, plan_workers(topology, config, device, roles)


def _worker_specs(plan: Plan, send_ns: str | None, recv_ns: str | None) -> list[WorkerSpec]:
    return [WorkerSpec(role=w.role, index=w.index, cpu=w.cpu,
                       netns=send_ns if w.role == "sender" else recv_ns) for w in plan.workers]


def _addresses(config: Config, lab: Any | None) -> dict[str, Any]:
    """What every host's workers share about the wire: where to send, where to listen, and
    the run's random key, from which the flow ids on the wire are derived."""
    run_key = secrets.randbits(32)
    if lab is not None:
        return {"destinations": [lab.receiver_addr], "bind": lab.receiver_addr, "run_key": run_key}
    targets = list(config.target.all_addresses)
    # Several destination addresses: receivers listen on all of them.
    bind = targets[0] if len(targets) == 1 else ("::" if ":" in targets[0] else "0.0.0.0")
    return {"destinations": targets, "bind": bind, "run_key": run_key}


ProgressFn = Callable[[dict[str, Any]], None]
NoticeFn = Callable[[str], None]


def host_checks(config: Config, topology: Topology, plan: Plan, root: str,
                notice: NoticeFn | None) -> dict[str, Any]:
    """Run the host checks before any packet: say what fails, refuse what the config requires."""
    from pps.host import checks

    results = checks.checks_for_run(config, topology, plan, plan.device, root)
    failures = checks.required_failures(results, config.run.require_checks)
    if failures:
        raise EnvironmentNotAble("run.require_checks failed: " + "; ".join(failures))
    if notice is not None:
        for r in checks.warnings(results):
            notice(f"check {r.name}: {r.seen}" + (f" (fix: {r.advice})" if r.advice else ""))
    return checks.results_json(results)


def execute(config: Config, *, out: Path | None, root: str = "/", confirmed: bool = False,
            status: ProgressFn | None = None, csv: bool = False,
            sampler_factory: Callable[..., Any] | None = None,
            notice: NoticeFn | None = None, on_start: ProgressFn | None = None) -> RunReport:
    """Run one trial of `config` and save it under `out` (None: keep it in memory).
    `on_start` is told what is about to run (host, resolved config, plan) before the
    first packet; `status` then gets one record per display interval."""
    check_target_allowed(config, confirmed)
    if config.remote:  # some workers run on other hosts, over SSH
        from pps.run.across import execute_across_hosts

        return execute_across_hosts(config, out=out, root=root, status=status, csv=csv,
                                    notice=notice)
    offload.probe_kernel_support(config)  # no UDP_SEGMENT/UDP_GRO/SO_BUSY_POLL: exit 3, nothing started
    from pps.lab.session import LabSession  # the lab imports pyroute2 pieces only when used

    # Once the trial is over, what it measured is written whatever signal arrives.
    with contextlib.ExitStack() as finishing, LabSession(config) as lab:
        topology, plan = make_plan(config, root)
        checks = host_checks(config, topology, plan, root, notice)
        send_ns = lab.sender_ns if lab else None
        recv_ns = lab.receiver_ns if lab else None
        specs = _worker_specs(plan, send_ns, recv_ns)
        addresses = _addresses(config, lab)
        netns.call_in(recv_ns, lambda: ensure_port_free(addresses["bind"], config.target.port))
        pick = flowpick.pick(config, plan, addresses, lab)  # source ports that spread the flows
        addresses["source_ports"] = pick.ports()
        warnings = list(plan.notes) + (lab.warnings if lab else [])
        sampler = None
        if config.collect.enabled and sampler_factory is not None:
            sampler = sampler_factory(config, lab, plan)
        host_before = metadata.host(root)
        if on_start is not None:
            on_start({"host": host_before, "config": config.to_dict(), "plan": plan.to_dict()})
        watch = vanish_watch(lab, plan.device)
        with selfpin.off_worker_cpus(w.cpu for w in plan.workers) as orchestrator:
            outcome = Trial(config, specs, addresses, sampler=sampler, status=status,
                            watch=watch).run()
        finishing.enter_context(stopsignals.deferred())
        host_after = metadata.host(root)
        lab_info = lab.describe() if lab else None
        report = build_report(config, outcome, plan=plan.to_dict(), topology=topology.to_dict(),
                              hosts={LOCAL: {"before": host_before, "after": host_after}},
                              warnings=warnings, sampler=sampler, lab_info=lab_info,
                              checks=checks["checks"], orchestrator=orchestrator)
        flowpick.record(report, pick)
        if out is not None:
            save(report, out, csv)
    return report


def vanish_watch(lab: Any | None, device: str | None) -> Callable[[], str | None]:
    """A check, cheap enough for every liveness tick (one stat per path), that the lab's
    namespaces and the measured device still exist: a run whose lab is pulled away (`pps
    lab down --force`) or whose NIC disappears would otherwise count zeros as a result."""
    if lab is not None:
        paths = {os.path.join(netns.NETNS_RUN_DIR, ns): f"lab {lab.id!r} (netns {ns})"
                 for ns in (lab.sender_ns, lab.receiver_ns)}
    elif device and device != "lo":
        paths = {f"/sys/class/net/{device}": f"device {device}"}
    else:
        paths = {}

    def gone() -> str | None:
        for path, what in paths.items():
            if not os.path.exists(path):
                return f"{what} vanished during the run"
        return None
    return gone
