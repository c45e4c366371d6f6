"""What sampling costs the workers: `pps run` with every collector read at 10 Hz against
the same run with collectors off and one sample a second, alternated in one session.

    python3 bench/sampling_cost.py [--rounds 3] [--seconds 5] [--lab]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile

MODES = {
    "collect 10 Hz": ["run.interval=0.1", "collect.enabled=true"],
    "no collectors, 1 Hz": ["run.interval=1", "collect.enabled=false"],
}


def run(sets: list[str], seconds: float, port: int) -> float:
    args = [a for s in [*sets, f"run.duration={seconds}", f"target.port={port}",
                        "senders.cpus=0", "receivers.cpus=1"] for a in ("--set", s)]
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run([sys.executable, "-m", "pps", "run", "--json", "--out", f"{tmp}/r", *args],
                              capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode:
        raise SystemExit(proc.stderr.strip())
    return json.loads(proc.stdout)["rx_pps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--lab", action="store_true", help="run in the lab (namespaces + veth)")
    args = ap.parse_args()
    extra = ["lab.enabled=true", "lab.id=bench"] if args.lab else []
    rates: dict[str, list[float]] = {name: [] for name in MODES}
    for i in range(args.rounds):
        for j, (name, sets) in enumerate(MODES.items()):
            rates[name].append(run(sets + extra, args.seconds, 4600 + 2 * i + j))
        print(f"round {i + 1}: " + "  ".join(f"{n} {r[-1]:,.0f}" for n, r in rates.items()), flush=True)
    med = {name: statistics.median(r) for name, r in rates.items()}
    on, off = med["collect 10 Hz"], med["no collectors, 1 Hz"]
    print(f"\nmedian rx pps over {args.rounds} rounds of {args.seconds:g} s"
          f"{' in the lab' if args.lab else ' on loopback'}:")
    for name, value in med.items():
        print(f"  {name:<20} {value:>12,.0f}")
    print(f"  cost of sampling at 10 Hz: {100 * (1 - on / off):+.2f}% of the receive rate")


if __name__ == "__main__":
    main()
