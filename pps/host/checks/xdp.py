"""An XDP program attached to a device changes what every packet there goes through: pps's
own are detached when their run ends (a BPF link held by the run), so one still attached
was left by another tool, or by a pps that crashed in a way its link outlived."""

from __future__ import annotations

import os

from pps.host import netns as _netns
from pps.host.checks.base import Check, CheckResult, Context, is_live

MODES = {1: "native", 2: "generic", 3: "offloaded", 4: "multi"}


def attached_programs() -> list[tuple[str | None, str, int, str]]:
    """(namespace, device, program id, mode) of every XDP program attached in this
    namespace and in pps's own namespaces (the lab's, the tests')."""
    spaces: list[str | None] = [None]
    if os.path.isdir(_netns.NETNS_RUN_DIR):
        spaces += sorted(n for n in os.listdir(_netns.NETNS_RUN_DIR) if n.startswith("pps-"))
    found = []
    for ns in spaces:
        try:
            found += _netns.call_in(ns, lambda ns=ns: _programs(ns))
        except OSError:  # the namespace went away meanwhile
            continue
    return found


def _programs(ns: str | None) -> list[tuple[str | None, str, int, str]]:
    from pyroute2 import IPRoute

    out = []
    with IPRoute() as ipr:
        for link in ipr.get_links():
            xdp = link.get_attr("IFLA_XDP")
            attached = xdp.get_attr("IFLA_XDP_ATTACHED") if xdp else 0
            if attached:
                out.append((ns, link.get_attr("IFLA_IFNAME"),
                            xdp.get_attr("IFLA_XDP_PROG_ID") or 0, MODES.get(attached, "?")))
    return out


class XdpAttached(Check):
    name = "xdp-attached"

    def applies(self, ctx: Context) -> bool | str:
        return True if is_live(ctx.root) else "a captured tree holds no XDP state"

    def inspect(self, ctx: Context) -> CheckResult:
        programs = attached_programs()
        if not programs:
            return self.ok("no XDP program attached (this namespace and pps-* namespaces)")
        seen = ", ".join(f"{dev}{f' in {ns}' if ns else ''} (prog {pid}, {mode})"
                         for ns, dev, pid, mode in programs)
        fixes = "; ".join(f"ip{f' -n {ns}' if ns else ''} link set dev {dev} xdp off"
                          for ns, dev, _, _ in programs)
        return self.warn(f"XDP program attached: {seen}; every packet there runs it",
                         f"{fixes} (a lab's: pps lab down)")


CHECKS = (XdpAttached(),)
