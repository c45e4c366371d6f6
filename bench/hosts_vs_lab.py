"""A run across two "hosts" over SSH against the same run in the lab, on this machine.

The second host is a network namespace with its own sshd (tests/sshhost.py), joined by a
veth pair; the lab is pps's own pair of namespaces. Both runs pin the sender to CPU 0 and
the receiver to CPU 1, so the difference is what driving a host over SSH costs. Alternates
the two for N rounds and prints medians and their ratio. Needs root and openssh-server.

    python3 bench/hosts_vs_lab.py [--rounds 3] [--seconds 5]
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))
import sshhost  # noqa: E402  (the test's throw-away SSH host)


def run(kind: str, host: sshhost.SshHost, out: Path, seconds: float, port: int) -> dict:
    sets = ["senders.cpus=0", "receivers.cpus=1", f"target.port={port}"]
    if kind == "hosts":
        sets += [*host.sets(), f"target.address={host.remote_addr}", "receivers.host=b"]
    else:
        sets += ["lab.enabled=true"]
    cmd = [sys.executable, "-m", "pps", "run", "--yes", "--json", "--duration", str(seconds),
           "--out", str(out)]
    for item in sets:
        cmd += ["--set", item]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 120, check=False)
    if proc.returncode != 0:
        sys.exit(f"{kind} run failed: {proc.stderr.strip()}")
    return json.loads(proc.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5.0)
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="pps-hosts-vs-lab-"))
    host = sshhost.start(tmp)
    rates: dict[str, list[float]] = {"hosts": [], "lab": []}
    try:
        for r in range(args.rounds):
            for kind in rates:
                s = run(kind, host, tmp / f"{kind}-{r}", args.seconds, 48300 + r)
                rates[kind].append(s["rx_pps"])
                print(f"round {r} {kind:5s} tx {s['tx_pps']:>10,.0f}  rx {s['rx_pps']:>10,.0f}  "
                      f"unaccounted {s['ledger']['unaccounted']}", flush=True)
    finally:
        sshhost.stop(host)
    hosts, lab = (statistics.median(rates[k]) for k in ("hosts", "lab"))
    print(f"median rx pps: across hosts {hosts:,.0f}  lab {lab:,.0f}  ratio {hosts / lab:.3f}")


if __name__ == "__main__":
    main()
