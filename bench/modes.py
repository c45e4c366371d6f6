"""pps against the shared reference (udpmm.c) in three receive modes, on loopback.

Modes: blocking receive, busy-poll receive (the reference's -N; pps receivers.mode =
"busy-poll"), and UDP GSO of 64 segments into a plain receiver (the reference's -g 64;
pps senders.gso_segments = 64), where the kernel splits the segments at the socket.
Each round runs every mode with the reference and with pps (who goes first alternates),
same pinning (sender CPU 0, receiver CPU 1), batch 64, 32-byte payload, so drift on a
shared host hits both alike. It prints each one's median receive rate, the ratio of the
medians, the median of each round's own ratio with a bootstrap 95% interval, and for
each receiver its CPU time per packet received and the share of it spent in user space.
The reference only counts datagrams; pps also checks every sequence number and records
every latency. On a receiver-bound mode (gso64-plain) CPU time per packet is the figure
that decides the rate, and unlike the rate it leaves out time a hypervisor steals (a guest
counts that as steal, not as the process's). A busy-polling receiver burns its CPU
whether packets come or not: there it says nothing.

Run from the repository:  python3 bench/modes.py [--seconds 5] [--rounds 3] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import random
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
REFERENCE_SRC = REPO.parent / "shared" / "ref" / "udpmm.c"
RESULT = re.compile(r"(\w+)=([\w.]+)")
SENDER_CPU, RECEIVER_CPU = 0, 1

# mode -> (reference sender flags, reference receiver flags, pps --set items)
MODES = {
    "block": ((), (), ()),
    "busy-poll": ((), ("-N",), ("receivers.mode=busy-poll",)),
    "gso64-plain": (("-g", "64"), (), ("senders.gso_segments=64",)),
}


def build_reference(src: Path, workdir: Path) -> Path:
    binary = workdir / "udpmm"
    subprocess.run(["gcc", "-O2", "-Wall", "-o", str(binary), str(src)], check=True)
    return binary


def parse_result(text: str) -> dict[str, str]:
    line = next((ln for ln in text.splitlines() if ln.startswith("RESULT")), None)
    if line is None:
        raise RuntimeError(f"no RESULT line in: {text.strip()[:200]!r}")
    return dict(RESULT.findall(line))


def run_reference(binary: Path, port: int, seconds: float, batch: int, payload: int,
                  send_flags: tuple[str, ...], recv_flags: tuple[str, ...]) -> dict:
    """The reference pair; its receive rate and its receiver's CPU time (taskset execs the
    binary, so the receiver's own rusage comes back from wait4)."""
    receiver = subprocess.Popen(
        ["taskset", "-c", str(RECEIVER_CPU), str(binary), "recv", "-l", f"127.0.0.1:{port}",
         "-b", str(batch), "-t", str(seconds + 5), "-i", "1", *recv_flags],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        time.sleep(0.3)  # the receiver binds before the first packet
        subprocess.run(["taskset", "-c", str(SENDER_CPU), str(binary), "send", "-d",
                        f"127.0.0.1:{port}", "-b", str(batch), "-s", str(payload),
                        "-t", str(seconds), *send_flags],
                       check=True, capture_output=True, timeout=seconds + 15)
        out = receiver.stdout.read()  # EOF: the receiver has exited (it stops itself)
        _, status, usage = os.wait4(receiver.pid, 0)
        receiver.returncode = os.waitstatus_to_exitcode(status)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    result = parse_result(out)
    return {"pps": float(result["pps"]), "packets": int(result["pkts"]),
            "user_s": usage.ru_utime, "sys_s": usage.ru_stime}


def run_pps(port: int, seconds: float, batch: int, payload: int, sets: tuple[str, ...]) -> dict:
    with tempfile.TemporaryDirectory(prefix="pps-modes-") as tmp:
        proc = subprocess.run(
            [sys.executable, "-m", "pps", "run", "--json", "--duration", str(seconds),
             "--out", f"{tmp}/r", "--set", f"senders.cpus={SENDER_CPU}",
             "--set", f"receivers.cpus={RECEIVER_CPU}", "--set", f"senders.batch={batch}",
             "--set", f"receivers.batch={batch}", "--set", f"senders.payload={payload}",
             "--set", f"target.port={port}", *[a for s in sets for a in ("--set", s)]],
            capture_output=True, text=True, timeout=seconds + 60, cwd=REPO)
    if proc.returncode not in (0, 1):
        raise RuntimeError(f"pps run failed ({proc.returncode}): {proc.stderr.strip()[-400:]}")
    return json.loads(proc.stdout)


def user_share(runs: list[tuple[float, float, int]]) -> float | None:
    """Percent of a receiver's CPU time spent in user space, over all its runs."""
    user = sum(u for u, _, _ in runs)
    total = sum(u + k for u, k, _ in runs)
    return 100.0 * user / total if total else None


def cpu_per_packet(runs: list[tuple[float, float, int]]) -> float | None:
    """A receiver's CPU nanoseconds per packet it received, over all its runs."""
    packets = sum(n for _, _, n in runs)
    return 1e9 * sum(u + k for u, k, _ in runs) / packets if packets else None


def bootstrap_interval(values: list[float], draws: int = 4000) -> tuple[float, float]:
    """95% interval of the median by resampling rounds (fixed seed: the same runs print
    the same interval)."""
    rng = random.Random(0)
    medians = sorted(statistics.median(rng.choices(values, k=len(values)))
                     for _ in range(draws))
    return medians[int(0.025 * draws)], medians[int(0.975 * draws) - 1]


def _fmt(value: float | None, width: int, digits: int) -> str:
    return f"{value:>{width},.{digits}f}" if value is not None else f"{'-':>{width}}"


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--port", type=int, default=4400, help="first port; each run takes the next")
    ap.add_argument("--modes", default=",".join(MODES),
                    help="comma-separated subset of " + ",".join(MODES))
    ap.add_argument("--reference", type=Path, default=REFERENCE_SRC)
    ap.add_argument("--json", action="store_true",
                    help="print one JSON object instead of the table")
    args = ap.parse_args()
    modes = [m for m in args.modes.split(",") if m]
    unknown = [m for m in modes if m not in MODES]
    if unknown:
        ap.error(f"unknown mode(s) {', '.join(unknown)}; choose from {', '.join(MODES)}")

    port = args.port
    rates: dict[str, dict[str, list[float]]] = {m: {"reference": [], "pps": []} for m in modes}
    cpu: dict[str, list[float]] = {m: [] for m in modes}
    # (user_s, sys_s, packets) of each run's receiver
    recv_cpu: dict[str, dict[str, list[tuple[float, float, int]]]] = {
        m: {"reference": [], "pps": []} for m in modes}
    with tempfile.TemporaryDirectory(prefix="pps-ref-") as work:
        binary = build_reference(args.reference, Path(work))
        for rnd in range(args.rounds):
            for mode in modes:
                send_flags, recv_flags, sets = MODES[mode]
                runs = {
                    "reference": lambda p: run_reference(binary, p, args.seconds, args.batch,
                                                         args.payload, send_flags, recv_flags),
                    "pps": lambda p: run_pps(p, args.seconds, args.batch, args.payload, sets),
                }
                # Who goes first alternates, so a host warming up or cooling down over a
                # round favours neither.
                order = ["reference", "pps"] if rnd % 2 == 0 else ["pps", "reference"]
                got = {}
                for who in order:
                    got[who] = runs[who](port)
                    port += 1
                ref_run, result = got["reference"], got["pps"]
                ref = ref_run["pps"]
                rates[mode]["reference"].append(ref)
                rates[mode]["pps"].append(result["rx_pps"])
                recv_cpu[mode]["reference"].append(
                    (ref_run["user_s"], ref_run["sys_s"], ref_run["packets"]))
                recv = [w for w in result["workers"] if w["role"] == "receiver"]
                if recv and recv[0].get("cpu_percent") is not None:
                    cpu[mode].append(recv[0]["cpu_percent"])
                if recv and recv[0].get("user_s") is not None:
                    recv_cpu[mode]["pps"].append(
                        (recv[0]["user_s"], recv[0]["sys_s"], recv[0]["packets"]))
                print(f"round {rnd + 1} {mode:<12} reference {ref:>12,.0f}  "
                      f"pps {result['rx_pps']:>12,.0f}"
                      f"  ({result['rx_pps'] / ref:.2f}x)", file=sys.stderr, flush=True)

    summary = {}
    for mode in modes:
        ref = statistics.median(rates[mode]["reference"])
        ours = statistics.median(rates[mode]["pps"])
        paired = [p / r for p, r in zip(rates[mode]["pps"], rates[mode]["reference"]) if r]
        summary[mode] = {"reference_pps": ref, "pps_pps": ours,
                         "ratio": ours / ref if ref else None,
                         # Each round's own ratio: drift between rounds cancels out.
                         "paired_ratio": statistics.median(paired) if paired else None,
                         "paired_ratio_95": bootstrap_interval(paired) if paired else None,
                         "receiver_user_percent": {
                             who: user_share(recv_cpu[mode][who]) for who in ("reference", "pps")},
                         "receiver_cpu_ns_per_packet": {
                             who: cpu_per_packet(recv_cpu[mode][who])
                             for who in ("reference", "pps")},
                         "runs": rates[mode],
                         "pps_receiver_cpu_percent":
                             statistics.median(cpu[mode]) if cpu[mode] else None}
    if args.json:
        print(json.dumps({"seconds": args.seconds, "rounds": args.rounds, "batch": args.batch,
                          "payload": args.payload, "modes": summary}))
        return 0
    print(f"loopback, sender CPU {SENDER_CPU}, receiver CPU {RECEIVER_CPU}, batch {args.batch}, "
          f"{args.payload} B payload, {args.rounds} rounds x {args.seconds:g} s; medians of rx pps")
    print(f"{'mode':<13} {'reference':>12} {'pps':>12} {'pps/ref':>8} {'paired':>8} "
          f"{'95% interval':>15}  {'ns/pkt ref':>10} {'pps':>5} {'pps/ref':>7}  "
          f"{'user% ref':>9} {'pps':>4}")
    for mode, s in summary.items():
        low, high = s["paired_ratio_95"]
        cost, user = s["receiver_cpu_ns_per_packet"], s["receiver_user_percent"]
        cost_ratio = (f"{cost['pps'] / cost['reference']:>6.3f}x"
                      if cost["pps"] and cost["reference"] else f"{'-':>7}")
        print(f"{mode:<13} {s['reference_pps']:>12,.0f} {s['pps_pps']:>12,.0f} "
              f"{s['ratio']:>7.3f}x {s['paired_ratio']:>7.3f}x  [{low:.3f}, {high:.3f}]  "
              f"{_fmt(cost['reference'], 10, 0)} {_fmt(cost['pps'], 5, 0)} {cost_ratio}  "
              f"{_fmt(user['reference'], 9, 1)} {_fmt(user['pps'], 4, 1)}")
    print("pps/ref: ratio of the medians; paired: median of each round's ratio, with a "
          "bootstrap 95% interval;\nns/pkt: receiver CPU time per packet received (not "
          "meaningful for busy-poll, which spins); user%: its share in user space")
    return 0


if __name__ == "__main__":
    sys.exit(main())
