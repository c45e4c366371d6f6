"""A soak run: is memory flat in a run's length, and does it finish soon after its drain?

    python3 bench/soak.py [--seconds 120] [--hz 20] [--lab] [--every 1] [--sets KEY=VALUE ...]

Starts `pps run --json` (in the lab with --lab: 2 queues, a lab of its own) and samples, every
`--every` seconds, the resident memory (VmRSS) of the orchestrator and of its counter parser
(the `pps.counters.stream` child). It prints RSS over time, the peaks, the growth after
warm-up (a least-squares slope, MB per minute: flat is about 0), and how long after its drain
the run exited; the drain's end is go + warm-up + duration + drain, go being taken from the
first status line (its end time t1 was printed at go + t1). The ledger's unaccounted count
comes from the run's JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from proclist import children  # noqa: E402  (bench/ is not a package)

STATUS = re.compile(r"\[\s*([\d.]+)-\s*([\d.]+) s\]")


def rss_mb(pid: int) -> float | None:
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def parser_pids(parent: int) -> list[int]:
    """The counter stream children (pps.counters.stream) of `parent`."""
    return children(parent, b"pps.counters.stream")


def slope_mb_per_min(points: list[tuple[float, float]]) -> float:
    if len(points) < 2:
        return 0.0
    n = len(points)
    mt = sum(t for t, _ in points) / n
    mv = sum(v for _, v in points) / n
    den = sum((t - mt) ** 2 for t, _ in points)
    return 60 * sum((t - mt) * (v - mv) for t, v in points) / den if den else 0.0


def soak(seconds: float, hz: float, lab: bool, every: float, sets: list[str],
         warmup: float = 2.0, drain: float = 0.3) -> dict:
    out_dir = os.path.join(tempfile.gettempdir(), f"pps-soak-{uuid.uuid4().hex[:8]}")
    argv = [sys.executable, "-m", "pps", "run", "--json", "--out", out_dir,
            "--set", f"run.duration={seconds}", "--set", f"run.interval={1 / hz}",
            "--set", f"run.warmup={warmup}", "--set", f"run.drain={drain}"]
    if lab:
        argv += ["--set", "lab.enabled=true", "--set", f"lab.id=sk{uuid.uuid4().hex[:6]}",
                 "--set", "lab.queues=2"]
    for s in sets:
        argv += ["--set", s]
    began = time.monotonic()
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    go: list[float] = []
    lines: list[str] = []

    def read_status() -> None:
        for line in proc.stderr:
            lines.append(line.rstrip())
            m = STATUS.match(line)
            if m and not go:
                go.append(time.monotonic() - float(m.group(2)))

    stdout: list[str] = []  # read as it comes: the JSON (its intervals) can outgrow a pipe
    readers = [threading.Thread(target=read_status, daemon=True),
               threading.Thread(target=lambda: stdout.append(proc.stdout.read()), daemon=True)]
    for reader in readers:
        reader.start()
    series: list[tuple[float, float, float]] = []  # (t since start, orchestrator, parser)
    while proc.poll() is None:
        orch = rss_mb(proc.pid)
        parser = sum(filter(None, (rss_mb(p) for p in parser_pids(proc.pid))))
        if orch is not None:
            series.append((time.monotonic() - began, orch, parser))
        time.sleep(every)
    exited = time.monotonic()
    for reader in readers:
        reader.join(10)
    if proc.returncode != 0:
        raise SystemExit(f"pps run exited {proc.returncode}: " + "\n".join(lines[-5:]))
    summary = json.loads("".join(stdout))
    drain_end = go[0] + warmup + seconds + drain if go else None
    # Flat means flat from warm-up + 10 s (readers opened, writers started) to the drain.
    after_warmup = [(t, o) for t, o, _ in series
                    if go and warmup + 10 < t - (go[0] - began) < warmup + seconds]
    status_lines = sum(1 for line in lines if STATUS.match(line))
    return {
        "seconds": seconds, "hz": hz, "samples": round(hz * (warmup + seconds)),
        "peak_orchestrator_mb": max(o for _, o, _ in series),
        "peak_parser_mb": max(p for _, _, p in series),
        "orchestrator_mb_per_min_after_warmup": slope_mb_per_min(after_warmup),
        "exit_after_drain_s": exited - drain_end if drain_end else None,
        "status_lines": status_lines,
        "unaccounted": (summary.get("ledger") or {}).get("unaccounted"),
        "sent": summary.get("sent"), "results_dir": summary.get("results_dir"),
        "series": series,
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=120.0, help="run.duration")
    ap.add_argument("--hz", type=float, default=20.0, help="sampling rate (1 / run.interval)")
    ap.add_argument("--lab", action="store_true", help="in the lab (namespaces + 2-queue veth)")
    ap.add_argument("--every", type=float, default=1.0, help="RSS sampling period, seconds")
    ap.add_argument("--sets", nargs="*", default=[], metavar="KEY=VALUE")
    args = ap.parse_args()
    r = soak(args.seconds, args.hz, args.lab, args.every, args.sets)
    step = max(1, len(r["series"]) // 20)
    print(f"{'t s':>8} {'orchestrator MB':>16} {'parser MB':>10}")
    for t, o, p in r["series"][::step]:
        print(f"{t:8.1f} {o:16.1f} {p:10.1f}")
    print(f"\n{args.seconds:g} s at {args.hz:g} Hz{' in the lab' if args.lab else ' on loopback'} "
          f"(~{r['samples']:,} samples, {r['status_lines']} status lines):")
    print(f"  peak RSS: orchestrator {r['peak_orchestrator_mb']:.0f} MB, counter parser "
          f"{r['peak_parser_mb']:.0f} MB")
    print(f"  orchestrator RSS after warm-up: {r['orchestrator_mb_per_min_after_warmup']:+.2f} MB/min")
    if r["exit_after_drain_s"] is not None:
        print(f"  exited {r['exit_after_drain_s']:.1f} s after its drain")
    print(f"  ledger: sent {r['sent']:,}, unaccounted {r['unaccounted']}")
    print(f"  results: {r['results_dir']}")


if __name__ == "__main__":
    main()
