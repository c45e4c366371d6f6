"""What sampling costs the workers: a loopback (or lab) run with the collectors read at 10 Hz
against the same run with collectors off and one sample a second, alternated in one session.

    python3 bench/sampling_cost.py [--rounds 6] [--seconds 5] [--lab]
                                   [--only SOURCES]... [--each] [--interval 0.1]
    python3 bench/sampling_cost.py --within 40 [--only SOURCES]... [--each] [--lab]

`--only snmp,softnet` adds a configuration that reads just those sources at the interval;
give it several times for several subsets (`--only none`: the sampling loop, no source). `--each` adds one configuration per source.
Every configuration runs once per round, in the same order, and the figures are medians
over rounds, with each configuration's cost as a fraction of the baseline's receive rate.

Trial-to-trial noise on a 2-CPU VM is several percent, so `--within` measures inside one
long trial instead: the sampler runs at the interval throughout and reads the counters in
every other block of 5 samples; each interval is attributed to whether a read began it.
This found the cause of the 10 Hz cost (a 1 MiB buffer per netlink read, in link.py).

Each trial is a fresh child process running the same `pps.run.pipeline.execute` and `CounterSampler`
as `pps run` (only the source filter is added), so it also reports the orchestrator's own CPU
time, the time spent in snapshots, and the CPU time of the counter parser (a child process
at nice 19 that parses the captures while the run goes, see pps/counters/stream.py).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

from pps.counters.collectors import SOURCES

BASELINE = "no collectors, 1 Hz"
BLOCK = 5  # --within: samples per block


class Toggled:
    """--within: the sampler, reading the counters in blocks of BLOCK interval samples with,
    then without; marks always read. Everything else is the sampler's own."""

    def __init__(self, sampler, taken: list[bool]) -> None:
        self.sampler, self.taken = sampler, taken

    def __call__(self, mark: str) -> None:
        if mark == "interval":
            self.taken.append((len(self.taken) // BLOCK) % 2 == 1)
            if not self.taken[-1]:
                return
        self.sampler(mark)

    def __getattr__(self, name: str):
        return getattr(self.sampler, name)


def child(spec: dict) -> None:
    """One trial in this process; prints one JSON line."""
    from pps.config.model import load_config
    from pps.counters.sampler import CounterSampler
    from pps.run.pipeline import execute

    config = load_config(None, spec["sets"])
    samplers: list[CounterSampler] = []

    taken: list[bool] = []  # --within: did interval sample i read the counters
    rows: list[tuple[str, float, bool | None]] = []  # (phase, rx pps, taken at its start)

    def hook(s: CounterSampler):
        samplers.append(s)
        if not spec.get("within"):
            return s
        return Toggled(s, taken)

    ticks: list[tuple[float, float]] = []  # (wall, orchestrator CPU) at each sample

    def status(line: dict) -> None:
        ticks.append((time.monotonic(), time.process_time()))
        # This interval began right after the previous sample's counters were (not) read.
        rows.append((line["phase"], line["rx_pps"], taken[-2] if len(taken) >= 2 else None))

    sources = SOURCES if spec["sources"] is None else spec["sources"]
    report = execute(config, out=None, status=status, counter_sources=sources, sampler_hook=hook)
    if report.summary.get("failure"):
        raise SystemExit(f"run failed: {report.summary['failure']}")
    if spec.get("within"):
        on = [rx for phase, rx, t in rows if phase == "measure" and t is True]
        off = [rx for phase, rx, t in rows if phase == "measure" and t is False]
        print(json.dumps({"on": statistics.mean(on), "off": statistics.mean(off),
                          "on_median": statistics.median(on), "off_median": statistics.median(off),
                          "intervals": [len(on), len(off)]}))
        return
    wall = ticks[-1][0] - ticks[0][0]
    cost = samplers[0].cost if samplers else None
    print(json.dumps({
        "rx_pps": report.summary["rx_pps"],
        "cpu": (ticks[-1][1] - ticks[0][1]) / wall,  # process_time: this process only
        "snapshots": cost.count["interval"] if cost else 0,
        "snapshot_per_s": cost.seconds["interval"] / wall if cost else 0.0,
        # The counter stream's parser (a child at nice 19), whose CPU the run also pays.
        "parse_per_s": samplers[0].finish().cpu_s / wall if samplers else 0.0,
        "unaccounted": (report.summary.get("ledger") or {}).get("unaccounted"),
    }))


def trial(sets: list[str], sources: list[str] | None, seconds: float, port: int,
          within: bool = False) -> dict:
    spec = {"sets": [*sets, f"run.duration={seconds}", f"target.port={port}",
                     "senders.cpus=0", "receivers.cpus=1"], "sources": sources, "within": within}
    proc = subprocess.run([sys.executable, __file__, "--child", json.dumps(spec)],
                          capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode:
        raise SystemExit(proc.stderr.strip().splitlines()[-1])
    return json.loads(proc.stdout.strip().splitlines()[-1])


def modes(args: argparse.Namespace) -> dict[str, tuple[list[str], list[str] | None]]:
    rate = [f"run.interval={args.interval:g}", "collect.enabled=true"]
    out = {BASELINE: (["run.interval=1", "collect.enabled=false"], None),
           f"all at {1 / args.interval:g} Hz": (rate, None)}
    subsets = [[] if s == "none" else s.split(",") for s in args.only]
    subsets += [[s] for s in SOURCES] if args.each else []
    for subset in subsets:
        unknown = set(subset) - set(SOURCES)
        if unknown:
            raise SystemExit(f"unknown source {', '.join(sorted(unknown))}; "
                             f"sources are {', '.join(SOURCES)}")
        out[f"only {','.join(subset) or 'the loop, no source'}"] = (rate, subset)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=6)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--interval", type=float, default=0.1, help="sampling interval with collectors")
    ap.add_argument("--lab", action="store_true", help="run in the lab (namespaces + veth)")
    ap.add_argument("--only", action="append", default=[], metavar="SOURCES",
                    help="also run with only these sources (comma list); repeatable")
    ap.add_argument("--each", action="store_true", help="also run each source alone")
    ap.add_argument("--within", type=float, metavar="SECONDS",
                    help="instead: one trial this long, sampling at the interval and reading the "
                         "counters in every other block of 5 samples; compares the intervals "
                         "right after a read with the others (no trial-to-trial noise)")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.child:
        return child(json.loads(args.child))
    extra = ["lab.enabled=true", "lab.id=bench"] if args.lab else []
    if args.within:
        return within(args, extra)
    configs = modes(args)
    got: dict[str, list[dict]] = {name: [] for name in configs}
    port = 4600
    for i in range(args.rounds):
        for name, (sets, sources) in configs.items():
            got[name].append(trial(sets + extra, sources, args.seconds, port))
            port += 1
        print(f"round {i + 1}: " + "  ".join(f"{n} {r[-1]['rx_pps']:,.0f}" for n, r in got.items()),
              flush=True)
    base = statistics.median(r["rx_pps"] for r in got[BASELINE])
    print(f"\nmedians over {args.rounds} rounds of {args.seconds:g} s"
          f"{' in the lab' if args.lab else ' on loopback'}. cost = 1 - rx / baseline rx, of the"
          f" medians and (paired) the median of each round's ratio; orchestrator CPU and time"
          f" in snapshots per second of run:")
    print(f"  {'configuration':<28} {'rx pps':>12} {'cost':>8} {'paired':>8} {'orch cpu':>9} {'snapshots':>10}"
          f" {'parsing':>8}")
    for name, runs in got.items():
        rx = statistics.median(r["rx_pps"] for r in runs)
        cpu = statistics.median(r["cpu"] for r in runs)
        snap = statistics.median(r["snapshot_per_s"] for r in runs)
        cost = paired = ""
        if name != BASELINE:
            cost = f"{100 * (1 - rx / base):+7.2f}%"
            ratios = [r["rx_pps"] / b["rx_pps"] for r, b in zip(runs, got[BASELINE])]
            paired = f"{100 * (1 - statistics.median(ratios)):+7.2f}%"
        parse = statistics.median(r["parse_per_s"] for r in runs)
        print(f"  {name:<28} {rx:>12,.0f} {cost:>8} {paired:>8} {100 * cpu:>8.2f}% {100 * snap:>9.2f}%"
              f" {100 * parse:>7.2f}%")


def within(args: argparse.Namespace, extra: list[str]) -> None:
    subsets = [None] + [[] if s == "none" else s.split(",") for s in args.only]
    subsets += [[s] for s in SOURCES] if args.each else []
    rate = [f"run.interval={args.interval:g}", "collect.enabled=true"]
    print(f"one {args.within:g} s trial per configuration{' in the lab' if args.lab else ' on loopback'},"
          f" sampling at {1 / args.interval:g} Hz; mean rx pps of the intervals after a sample"
          f" that read the counters and after one that did not:")
    for port, subset in enumerate(subsets, 4800):
        r = trial(rate + extra, subset, args.within, port, within=True)
        name = "all" if subset is None else ",".join(subset) or "the loop, no source"
        print(f"  {name:<28} read {r['on']:>10,.0f}  not read {r['off']:>10,.0f}"
              f"  cost {100 * (1 - r['on'] / r['off']):+6.2f}%"
              f" (medians {100 * (1 - r['on_median'] / r['off_median']):+6.2f}%)", flush=True)


if __name__ == "__main__":
    main()
