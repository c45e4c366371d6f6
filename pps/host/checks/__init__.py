"""Host checks: what on this host will spoil a pps measurement, and the command that fixes it.

An ordered set of small Check classes (pyperf `_system.py` style): each says whether it
applies, what it sees, and what to do. They only read; nothing here changes the host.

    ctx = Context(root, topology, device, config, plan)
    results = run_checks(ctx)           # list[CheckResult], in CHECK_NAMES order
    format_report(results)              # one line per check, advice under warnings
    results_json(results)               # {"checks": [...], "warnings": n}; stable keys
"""

from __future__ import annotations

from typing import Any

from pps.config.model import Config
from pps.errors import ConfigError
from pps.host.checks import host, net, xdp
from pps.host.checks.base import (
    STATUSES,
    Check,
    CheckResult,
    Context,
    Proc,
    is_live,
    sample_cpu_load,
)
from pps.host.topology import Topology
from pps.plan.placement import Plan

__all__ = ["CHECKS", "CHECK_NAMES", "STATUSES", "Check", "CheckResult", "Context", "Proc",
           "checks_for_run", "format_report", "required_failures", "results_json",
           "run_checks"]

# Host first (it matters for every device), then the packet's path from netfilter to the NIC.
CHECKS: tuple[Check, ...] = host.CHECKS + net.CHECKS + xdp.CHECKS
CHECK_NAMES: tuple[str, ...] = tuple(c.name for c in CHECKS)
MARKS = {"ok": "ok  ", "warn": "WARN", "n/a": "n/a "}


def run_checks(ctx: Context, checks: tuple[Check, ...] = CHECKS) -> list[CheckResult]:
    """Run every check in order. A check that breaks on odd input says so as n/a rather
    than hiding the others' results."""
    out = []
    for check in checks:
        try:
            why = check.applies(ctx)
            if why is True:
                out.append(check.inspect(ctx))
            else:
                out.append(check.na(why or "does not apply here"))
        except (OSError, ValueError, KeyError, TypeError, IndexError) as exc:
            out.append(check.na(f"could not check: {type(exc).__name__}: {exc}"))
    return out


def checks_for_run(config: Config, topology: Topology, plan: Plan | None, device: str | None,
                   root: str = "/") -> list[CheckResult]:
    """The checks `pps run` records: the load sample is cut to 50 ms to keep start-up quick."""
    load = (lambda: sample_cpu_load(root, 0.05)) if is_live(root) else (lambda: None)
    return run_checks(Context(root, topology, device, config, plan, cpu_load=load))


def warnings(results: list[CheckResult]) -> list[CheckResult]:
    return [r for r in results if r.status == "warn"]


def required_failures(results: list[CheckResult], required: tuple[str, ...]) -> list[str]:
    """One line per check in `required` (run.require_checks) that warned. Unknown names are a
    ConfigError naming the allowed ones."""
    unknown = [n for n in required if n not in CHECK_NAMES]
    if unknown:
        raise ConfigError(f"run.require_checks: unknown check {', '.join(map(repr, unknown))}; "
                          f"checks are {', '.join(CHECK_NAMES)}")
    by_name = {r.name: r for r in results}
    return [f"{n}: {by_name[n].seen}" + (f" (fix: {by_name[n].advice})" if by_name[n].advice
                                         else "")
            for n in required if n in by_name and by_name[n].status == "warn"]


def format_report(results: list[CheckResult], header: str | None = None) -> str:
    """One line per check with its status mark; the fixing command under each warning."""
    width = max((len(r.name) for r in results), default=0)
    lines = [header] if header else []
    for r in results:
        lines.append(f"{MARKS.get(r.status, r.status)}  {r.name:<{width}}  {r.seen}")
        if r.status == "warn" and r.advice:
            lines.append(f"      {'':<{width}}  fix: {r.advice}")
    n = len(warnings(results))
    lines.append(f"{n} warning{'s' if n != 1 else ''}, {len(results)} checks"
                 + ("" if n else ": nothing on this host should spoil the measurement"))
    return "\n".join(lines) + "\n"


def results_json(results: list[CheckResult]) -> dict[str, Any]:
    """The stable JSON shape: {"checks": [{"name", "status", "seen", "advice"}], "warnings"}."""
    return {"checks": [r.to_dict() for r in results], "warnings": len(warnings(results))}
