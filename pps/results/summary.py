"""From a trial's raw outcome to result tables and the summary (pure: no I/O).

Rates are packets in the measurement window over its length, from the slot counters
read at the window's two marks. Loss is over the whole trial (warm-up to drain), when
every packet sent has had time to arrive or be counted as lost.
"""

from __future__ import annotations

from typing import Any

import pandas as pd

from pps.config.hosts import LOCAL
from pps.results import latency
from pps.results.sample_log import SampleLog
from pps.results.spill import SpilledTable
from pps.run.trial import Mark, TrialOutcome

SAMPLE_RATE_COLUMNS = ("packets", "bytes", "syscalls", "errors", "enobufs", "eagain")
# What receivers did not trust (docs/wire.md): foreign_flow and seq_jump are part of foreign;
# stamp_future and stamp_stale are received packets whose send stamps were left out of latency.
UNTRUSTED = ("foreign_flow", "seq_jump", "stamp_future", "stamp_stale")
RECEIVER_TOTALS = ("lost", "reordered", "duplicate", "foreign", "short_pkts", "untracked",
                   *UNTRUSTED)


def _valid(slot: dict[str, int]) -> int:
    """Packets of ours a receiver got: foreign and short ones are not received traffic."""
    return slot["packets"] - slot["foreign"] - slot["short_pkts"]


def _role_total(outcome: TrialOutcome, mark: Mark, role: str) -> int:
    total = 0
    for w in outcome.workers:
        if w["role"] == role:
            slot = mark.slots[w["slot"]]
            total += slot["packets"] if role == "sender" else _valid(slot)
    return total


def window(outcome: TrialOutcome) -> tuple[Mark, Mark] | None:
    marks = outcome.marks
    start = marks.get("measure_start")
    end = marks.get("measure_end") or marks.get("end")
    if start is None or end is None or end.t <= start.t:
        return None
    return start, end


def samples_table(outcome: TrialOutcome) -> pd.DataFrame | SpilledTable:
    """The samples table: a long run's is already on disk (pps.results.sample_log streams it); a
    plain list of rows (a TrialOutcome made by hand) is tabled here the same way."""
    if isinstance(outcome.samples, SampleLog):
        return outcome.samples.table()
    df = pd.DataFrame(outcome.samples)
    if df.empty:
        return df
    df = df.sort_values(["worker", "t"]).reset_index(drop=True)
    dt = df.groupby("worker")["t"].diff().fillna(df["t"])
    for column in SAMPLE_RATE_COLUMNS:
        first = df.groupby("worker")[column].diff().fillna(df[column])
        df[f"{column}_delta"] = first.astype("int64")
    df["pps"] = df["packets_delta"] / dt
    return df.sort_values(["t", "role", "index"]).reset_index(drop=True)


def workers_table(outcome: TrialOutcome) -> pd.DataFrame:
    end = outcome.marks.get("end")
    rows = []
    for w in outcome.workers:
        slot = end.slots[w["slot"]] if end else {}
        sock = w.get("socket") or {}
        row = {
            "host": w.get("host", LOCAL), "role": w["role"], "index": w["index"],
            "pid": w["pid"], "cpu": w["cpu"],
            "cpus_allowed": w["cpus_allowed"], "rcvbuf": sock.get("rcvbuf"),
            "sndbuf": sock.get("sndbuf"), "user_s": w["cpu_time"].get("user_s"),
            "sys_s": w["cpu_time"].get("sys_s"), "failure": w["failure"],
        }
        row.update({k: slot.get(k) for k in ("packets", "datagrams", "bytes", "syscalls", "eagain",
                                              "enobufs", "refused", "errors", "foreign", "short_pkts",
                                              "untracked", "lost", "reordered", "duplicate", "late",
                                              *UNTRUSTED)})
        rows.append(row)
    return pd.DataFrame(rows)


def flows_table(outcome: TrialOutcome) -> pd.DataFrame:
    sent = {f["flow"]: f for w in outcome.workers if w["role"] == "sender" for f in w["flows"]}
    got: dict[int, dict[str, Any]] = {}
    for w in outcome.workers:
        if w["role"] != "receiver":
            continue
        for f in w["flows"]:
            # With SO_REUSEPORT a flow sticks to one receiver; sum in case it moved.
            entry = got.setdefault(f["flow"], {"receiver": w["index"], "received": 0, "unique": 0,
                                               "reordered": 0, "duplicate": 0, "late": 0})
            for key in ("received", "unique", "reordered", "duplicate", "late"):
                entry[key] += f[key]
    rows = []
    for flow in sorted(set(sent) | set(got)):
        s, g = sent.get(flow, {}), got.get(flow, {})
        n_sent = s.get("sent")
        unique = g.get("unique", 0)
        rows.append({
            "flow": flow, "sender": flow >> 16, "source_port": s.get("source_port"),
            "receiver": g.get("receiver"), "sent": n_sent, "received": g.get("received", 0),
            "unique": unique, "lost": (n_sent - unique) if n_sent is not None else None,
            "reordered": g.get("reordered", 0), "duplicate": g.get("duplicate", 0),
            "late": g.get("late", 0),
        })
    return pd.DataFrame(rows)


def summarize(outcome: TrialOutcome) -> dict[str, Any]:
    """The summary object of DESIGN.md's `pps run --json` contract (ledger added later)."""
    end = outcome.marks.get("end")
    win = window(outcome)
    tx_packets = rx_packets = 0
    seconds = 0.0
    if win:
        start, stop = win
        seconds = stop.t - start.t
        tx_packets = _role_total(outcome, stop, "sender") - _role_total(outcome, start, "sender")
        rx_packets = _role_total(outcome, stop, "receiver") - _role_total(outcome, start, "receiver")
    sent = _role_total(outcome, end, "sender") if end else 0
    received = _role_total(outcome, end, "receiver") if end else 0
    workers = []
    for w in outcome.workers:
        slot = end.slots[w["slot"]] if end else {}
        workers.append({"host": w.get("host", LOCAL), "role": w["role"], "index": w["index"],
                        "cpu": w["cpu"],
                        "cpus_allowed": w["cpus_allowed"], "packets": slot.get("packets", 0)})
    summary: dict[str, Any] = {
        "tx_pps": tx_packets / seconds if seconds else 0.0,
        "rx_pps": rx_packets / seconds if seconds else 0.0,
        "tx_packets": tx_packets, "rx_packets": rx_packets, "seconds": seconds,
        "sent": sent, "received": received,
        "loss_ratio": (sent - received) / sent if sent else 0.0,
        "workers": workers,
        "interrupted": outcome.interrupted, "failure": outcome.failure,
    }
    if end:
        recv_slots = [end.slots[w["slot"]] for w in outcome.workers if w["role"] == "receiver"]
        for key in RECEIVER_TOTALS:
            summary[key] = sum(s[key] for s in recv_slots)
        run = outcome.config.run
        h = outcome.histograms
        summary["latency"] = latency.merged_percentiles(h, "one_way", recv_slots) if run.latency else None
        if run.latency and run.timestamps == "kernel":  # one-way split at the kernel's RX stamp
            for kind in latency.SPLIT:
                summary[f"latency_{kind}"] = latency.merged_percentiles(h, kind, recv_slots)
            summary["ts_missing"] = sum(s["ts_missing"] for s in recv_slots)
    from pps.host import offload  # datagrams, latency per receiver and its clock, CPU per worker

    summary.update(offload.summary_extras(outcome.config, outcome, summary))
    return summary
