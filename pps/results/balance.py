"""How evenly the load landed: per receiver, per RX queue, per CPU doing receive work.

Imbalance is a finding, not noise: four queues of which one takes 90% of the packets means
the RSS hash or the flow count is wrong, and no receiver placement will fix it. Each part
reports its counts and max/mean (1.0 = perfectly even).
"""

from __future__ import annotations

from typing import Any

import pandas as pd

# Per-queue receive packet counters, in order of preference: the netdev family's qstats,
# then what drivers show in `ethtool -S` (names with the queue number replaced by N).
QUEUE_PACKET_NAMES = (
    ("qstats", "rx-packets"),
    ("ethtool", "rx_queue_N_packets"), ("ethtool", "rx_queue_N_xdp_packets"),
    ("ethtool", "rxN_packets"), ("ethtool", "rx-N.packets"), ("ethtool", "queue_N_rx_packets"),
    ("ethtool", "rxq_N_packets"), ("ethtool", "rx_N_packets"),
)


def spread(counts: dict[Any, int]) -> dict[str, Any]:
    values = list(counts.values())
    total = sum(values)
    mean = total / len(values) if values else 0.0
    return {"counts": {str(k): int(v) for k, v in counts.items()}, "total": int(total),
            "max_over_mean": round(max(values) / mean, 3) if mean else None}


def receivers(workers: list[dict[str, Any]], flows: pd.DataFrame) -> dict[str, Any] | None:
    packets = {w["index"]: w["packets"] for w in workers if w["role"] == "receiver"}
    if len(packets) < 2:
        return None
    out = spread(packets)
    if not flows.empty and "receiver" in flows:
        out["flows"] = {str(int(k)): int(v) for k, v in flows["receiver"].dropna().value_counts().items()}
    return out


def queues(totals: pd.DataFrame, netns: str | None, device: str | None) -> dict[str, Any] | None:
    if totals is None or totals.empty or device is None:
        return None
    ns = totals["netns"].isna() if netns is None else totals["netns"] == netns
    mine = totals[ns & (totals["device"] == device) & totals["queue"].notna()]
    for source, name in QUEUE_PACKET_NAMES:
        series = mine[(mine["source"] == source) & (mine["name"] == name)]
        if not series.empty and series["delta"].sum() > 0:
            counts = {int(q): int(d) for q, d in zip(series["queue"], series["delta"])}
            return {"counter": f"{source}.{name}", **spread(dict(sorted(counts.items())))}
    return None


def cpus(totals: pd.DataFrame) -> dict[str, Any] | None:
    """Packets each CPU took off its backlog (softnet processed): who did the receive work."""
    if totals is None or totals.empty:
        return None
    rows = totals[(totals["source"] == "softnet") & (totals["name"] == "processed")]
    counts = {int(c): int(d) for c, d in zip(rows["cpu"], rows["delta"]) if pd.notna(c)}
    if not counts or sum(counts.values()) == 0:
        return None
    return {"counter": "softnet.processed (host-wide)", **spread(dict(sorted(counts.items())))}


def balance(workers: list[dict[str, Any]], flows: pd.DataFrame, totals: pd.DataFrame | None,
            netns: str | None, device: str | None) -> dict[str, Any]:
    parts = {"receivers": receivers(workers, flows), "queues": queues(totals, netns, device),
             "cpus": cpus(totals)}
    return {k: v for k, v in parts.items() if v is not None}


def describe(result: dict[str, Any]) -> list[str]:
    """One line per part, for the end-of-run text."""
    lines = []
    for part, label in (("receivers", "receivers"), ("queues", "rx queues"), ("cpus", "cpus")):
        info = result.get(part)
        if not info:
            continue
        counts = "  ".join(f"{k}:{v:,}" for k, v in info["counts"].items())
        lines.append(f"balance {label}: {counts}  (max/mean {info['max_over_mean']})")
        if part == "receivers" and info.get("flows"):
            # Flows per receiver as measured, and as the source-port pick predicted (flowpick).
            flows = "  ".join(f"{k}:{v}" for k, v in sorted(info["flows"].items()))
            predicted = info.get("flows_predicted")
            shown = "  ".join(f"{k}:{v}" for k, v in sorted(predicted.items())) if predicted else None
            lines.append(f"flows per receiver: {flows}" + (f"  (predicted {shown})" if shown else ""))
    return lines
