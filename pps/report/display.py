"""Text a person reads: the per-interval status line and the end-of-run summary."""

from __future__ import annotations

from typing import Any

from pps.config.hosts import LOCAL, worker_label
from pps.results.balance import describe as describe_balance
from pps.results.latency import SPLIT


def rate(pps: float) -> str:
    if pps >= 1e6:
        return f"{pps / 1e6:6.3f} Mpps"
    if pps >= 1e3:
        return f"{pps / 1e3:6.1f} kpps"
    return f"{pps:6.0f}  pps"


def duration_ns(ns: int | None) -> str:
    if ns is None:
        return "-"
    if ns >= 1_000_000:
        return f"{ns / 1e6:.2f} ms"
    if ns >= 1_000:
        return f"{ns / 1e3:.1f} us"
    return f"{ns} ns"


def status_line(s: dict[str, Any]) -> str:
    """One line per interval, like iperf3's."""
    return (f"[{s['t0']:6.2f}-{s['t1']:6.2f} s] {s['phase']:<7}  tx {rate(s['tx_pps'])}"
            f"   rx {rate(s['rx_pps'])}")


def run_summary(summary: dict[str, Any]) -> str:
    lines = [
        "",
        f"measured {summary['seconds']:.2f} s:  tx {rate(summary['tx_pps']).strip()}"
        f"  rx {rate(summary['rx_pps']).strip()}",
        f"whole run: sent {summary['sent']:,}  received {summary['received']:,}"
        f"  loss {summary['loss_ratio'] * 100:.3f}%",
    ]
    seq = [f"{k} {summary.get(k, 0):,}" for k in ("lost", "reordered", "duplicate", "foreign",
                                                   "short_pkts") if summary.get(k)]
    if seq:
        lines.append("sequence: " + "  ".join(seq))
    # Packets the receivers did not believe (docs/wire.md): the first two are in foreign,
    # the stamps' packets were received but left out of latency.
    untrusted = [f"{label} {summary[k]:,}" for k, label in (
        ("foreign_flow", "not this run's flow"), ("seq_jump", "impossible seq"),
        ("stamp_future", "stamp in the future"), ("stamp_stale", "stamp before the run"))
        if summary.get(k)]
    if untrusted:
        lines.append("untrusted: " + "  ".join(untrusted))
    lat = summary.get("latency")
    if lat:
        lines.append("latency:  " + _percentiles(lat))
        # With kernel RX stamps: the one-way figure's two parts, each on its own line.
        for kind in SPLIT:
            part = summary.get(f"latency_{kind}")
            if part:
                lines.append(f"{'  ' + kind + ':':<10}" + _percentiles(part))
    workers = summary.get("workers", [])
    if workers:
        lines.append("workers:  " + "  ".join(
            f"{worker_label(w.get('host', LOCAL), w['role'], w['index'])}@cpu{w['cpu']} "
            f"{w['packets']:,}"
            for w in workers))
    lines += describe_balance(summary.get("balance") or {})
    ledger_text = (summary.get("ledger") or {}).get("text")
    if ledger_text:
        lines += ["", ledger_text]
    for warning in summary.get("warnings", []):
        lines.append(f"warning: {warning}")
    if summary.get("results_dir"):
        lines.append(f"results:  {summary['results_dir']}")
    return "\n".join(lines)


def _percentiles(lat: dict[str, Any]) -> str:
    return "  ".join(f"{k.removesuffix('_ns')} {duration_ns(lat.get(k))}"
                     for k in ("p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns"))


def plan_text(plan: dict[str, Any]) -> str:
    lines = [f"placement {plan['policy']} on device {plan.get('device') or '-'}"]
    lines.append(f"{'role':<9} {'index':>5} {'cpu':>4} {'node':>4} {'queue':>5}  reason")
    for w in plan["workers"]:
        lines.append(f"{w['role']:<9} {w['index']:>5} {w['cpu']:>4} {_dash(w.get('node')):>4} "
                     f"{_dash(w.get('queue')):>5}  {w.get('reason', '')}")
    lines += [f"note: {n}" for n in plan.get("notes", [])]
    return "\n".join(lines)


def _dash(value: Any) -> str:
    return "-" if value is None else str(value)
