"""The receiver loop's own CPU per packet, two revisions of csrc/ side by side.

Builds bench/recv_cost.c (the loop fed by a stand-in recvmmsg: no kernel, see the C file)
against csrc/ as it is in the working tree and as it is at a git revision (default HEAD),
with the flags the Python module is built with, then runs them alternately, pinned to one
CPU, and prints each one's median ns/packet, the ratio of the medians, and the median of
each round's own ratio (drift between rounds cancels out).

Run from the repository:  python3 bench/recv_cost.py [--rev HEAD] [--rounds 15] [--flows 1]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import sysconfig
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
CPU = 1


def sources_at(rev: str, into: Path) -> Path:
    """csrc/ of a git revision, read with git show (the checkout is left alone)."""
    names = subprocess.run(["git", "ls-tree", "--name-only", f"{rev}:csrc"], cwd=REPO,
                           check=True, capture_output=True, text=True).stdout.split()
    into.mkdir(parents=True)
    for name in names:
        if name.endswith((".c", ".h")):
            text = subprocess.run(["git", "show", f"{rev}:csrc/{name}"], cwd=REPO, check=True,
                                  capture_output=True).stdout
            (into / name).write_bytes(text)
    return into


def build(csrc: Path, out: Path) -> Path:
    # The module's flags: Python's own CFLAGS (-O2 -fwrapv ...), -fPIC, and build_ffi.py's.
    flags = sysconfig.get_config_var("CFLAGS").split() + ["-fPIC", "-O2", "-Wall", "-Wextra",
                                                          "-std=gnu11"]
    sources = sorted(str(p) for p in csrc.glob("*.c"))
    subprocess.run(["gcc", *flags, f"-I{csrc}", *sources, str(REPO / "bench" / "recv_cost.c"),
                    "-o", str(out)], check=True)
    return out


def run(binary: Path, calls: int, flows: int) -> float:
    proc = subprocess.run(["taskset", "-c", str(CPU), str(binary), str(calls), str(flows)],
                          check=True, capture_output=True, text=True)
    return float(proc.stdout.split()[1])


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rev", default="HEAD", help="the revision to compare against")
    ap.add_argument("--rounds", type=int, default=15)
    ap.add_argument("--calls", type=int, default=300000, help="batches of 64 per run")
    ap.add_argument("--flows", type=int, default=1, help="flows in each batch, in runs")
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="pps-recv-cost-") as tmp:
        work = Path(tmp)
        binaries = {"base": build(sources_at(args.rev, work / "base"), work / "base.bin"),
                    "tree": build(REPO / "csrc", work / "tree.bin")}
        costs: dict[str, list[float]] = {"base": [], "tree": []}
        for rnd in range(args.rounds):
            order = ["base", "tree"] if rnd % 2 == 0 else ["tree", "base"]
            for who in order:
                costs[who].append(run(binaries[who], args.calls, args.flows))
            print(f"round {rnd + 1}: base {costs['base'][-1]:.3f}  tree {costs['tree'][-1]:.3f} "
                  "ns/pkt", file=sys.stderr, flush=True)
    paired = [t / b for t, b in zip(costs["tree"], costs["base"])]
    result = {"rev": args.rev, "flows": args.flows, "rounds": args.rounds,
              "base_ns": statistics.median(costs["base"]),
              "tree_ns": statistics.median(costs["tree"]),
              "paired_ratio": statistics.median(paired), "runs": costs}
    result["ratio"] = result["tree_ns"] / result["base_ns"]
    if args.json:
        print(json.dumps(result))
        return 0
    print(f"receiver loop without the kernel, {args.flows} flow(s), {args.rounds} rounds; "
          f"medians: {args.rev} {result['base_ns']:.2f} ns/pkt, working tree "
          f"{result['tree_ns']:.2f} ns/pkt, ratio {result['ratio']:.3f}, "
          f"paired {result['paired_ratio']:.3f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
