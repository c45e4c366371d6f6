"""pps against the shared reference (udpmm.c) and against its own bare C loop, on loopback.

Alternates reference, `pps run` and the bare loop for N rounds with the same pinning
(sender CPU 0, receiver CPU 1), batch 64, 32-byte payload, and prints each one's median
receive rate and the ratios. Run from the repository:  python3 bench/vs_reference.py
"""

from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SRC = REPO.parent / "shared" / "ref" / "udpmm.c"
RESULT = re.compile(r"(\w+)=([\w.]+)")


def build_reference(src: Path, workdir: Path) -> Path:
    binary = workdir / "udpmm"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(src)], check=True)
    return binary


def parse_result(text: str) -> dict[str, str]:
    line = next(line for line in text.splitlines() if line.startswith("RESULT"))
    return dict(RESULT.findall(line))


def run_reference(binary: Path, port: int, seconds: float, batch: int, payload: int,
                  extra_send: tuple[str, ...] = (), extra_recv: tuple[str, ...] = ()) -> float:
    receiver = subprocess.Popen(
        ["taskset", "-c", "1", str(binary), "recv", "-l", f"127.0.0.1:{port}", "-b", str(batch),
         "-t", str(seconds + 5), "-i", "1", *extra_recv],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    time.sleep(0.3)
    subprocess.run(["taskset", "-c", "0", str(binary), "send", "-d", f"127.0.0.1:{port}",
                    "-b", str(batch), "-s", str(payload), "-t", str(seconds), *extra_send],
                   check=True, capture_output=True)
    out, _ = receiver.communicate(timeout=seconds + 15)
    return float(parse_result(out)["pps"])


def run_pps(port: int, seconds: float, batch: int, payload: int, sets: tuple[str, ...] = ()) -> dict:
    with tempfile.TemporaryDirectory() as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pps", "run", "--json", "--duration", str(seconds),
             "--out", f"{tmp}/r", "--set", "senders.cpus=0", "--set", "receivers.cpus=1",
             "--set", f"senders.batch={batch}", "--set", f"receivers.batch={batch}",
             "--set", f"senders.payload={payload}", "--set", f"target.port={port}",
             *[a for s in sets for a in ("--set", s)]],
            capture_output=True, text=True, timeout=seconds + 60)
    if proc.returncode != 0:
        raise SystemExit(f"pps run failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def run_bare(port: int, seconds: float, batch: int, payload: int) -> float:
    proc = subprocess.run(
        [sys.executable, str(REPO / "bench" / "bare_loop.py"), "--seconds", str(seconds),
         "--batch", str(batch), "--payload", str(payload), "--port", str(port)],
        capture_output=True, text=True, timeout=seconds + 30, check=True)
    return json.loads(proc.stdout)["rx_pps"]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--reference", type=Path, default=REFERENCE_SRC)
    args = ap.parse_args()
    if not shutil.which("taskset") or not args.reference.exists():
        raise SystemExit(f"need taskset and the reference source at {args.reference}")
    workdir = Path(tempfile.mkdtemp(prefix="pps-bench-"))
    binary = build_reference(args.reference, workdir)
    figures: dict[str, list[float]] = {"reference": [], "pps run": [], "bare loop": []}
    port = 4400
    for round_no in range(1, args.rounds + 1):
        port += 3
        ref = run_reference(binary, port, args.seconds, args.batch, args.payload)
        ours = run_pps(port + 1, args.seconds, args.batch, args.payload)["rx_pps"]
        bare = run_bare(port + 2, args.seconds, args.batch, args.payload)
        for name, value in (("reference", ref), ("pps run", ours), ("bare loop", bare)):
            figures[name].append(value)
        print(f"round {round_no}: reference {ref:,.0f}  pps run {ours:,.0f}  bare loop {bare:,.0f} pps",
              flush=True)
    shutil.rmtree(workdir, ignore_errors=True)
    med = {name: statistics.median(values) for name, values in figures.items()}
    print(f"\nmedians over {args.rounds} rounds of {args.seconds:g} s, batch {args.batch}, "
          f"{args.payload} B, sender CPU 0, receiver CPU 1 (received pps):")
    for name, value in med.items():
        print(f"  {name:<10} {value:>12,.0f}")
    print(f"  pps run / reference  {med['pps run'] / med['reference']:.3f}")
    print(f"  pps run / bare loop  {med['pps run'] / med['bare loop']:.3f}")
    print(f"  bare loop / reference {med['bare loop'] / med['reference']:.3f}")


if __name__ == "__main__":
    main()
