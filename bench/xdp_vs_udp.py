"""AF_XDP against the UDP socket path, both ends, in the lab (two namespaces, multi-queue veth).

Two comparisons, from three kinds of trial, each one `pps run --json` of a fixed duration:

  (a) sender:   AF_XDP sender vs sendmmsg sender, both into the kernel's UDP receiver
                (senders.socket xdp vs udp, receivers.socket udp), unpaced:
                tx pps and rx pps, medians and the paired ratio xdp/udp of each.
  (b) receiver: AF_XDP receiver vs UDP receiver, fed by the same sender: rx pps and loss,
                medians and the paired ratio xdp/udp of rx pps. The sender is the one that
                sent faster in round 1 of (a) (--rx-sender auto), or the one named.

The three kinds of trial are  X = xdp sender -> udp receiver,  U = udp sender -> udp
receiver,  R = S sender -> xdp receiver  (S: the sender (b) uses). (a) pairs X with U; (b)
pairs R with X (S = xdp) or with U (S = udp), so no trial is run twice. Each round runs all
three, in the order X U R on odd rounds and R U X on even ones: in every pair each one goes
first in half the rounds (ABAB...), so a host warming up or cooling down over a round
favours neither. Paired ratios are the median of each round's own ratio, with the bootstrap
95% interval of bench/modes.py.

All trials use one lab, brought up once with --queues queues (senders.count =
receivers.count = queues; an AF_XDP receiver takes one RX queue each) and removed at the
end, also on Ctrl-C or SIGTERM. Per worker it prints the CPU time per packet it handled (user
+ system, from the run's workers table, summed over rounds) and the share in user space. On
veth the receive path of a packet (the XDP program, the copy into the AF_XDP socket, or the
IP/UDP stack) runs on the sending CPU, inside the sender's system call, and without
CONFIG_IRQ_TIME_ACCOUNTING it is charged to the sender: a sender's ns/pkt includes it.

--profile: one more trial of each sender (X and U), with `perf record -e cpu-clock -g` on
sender-0 for the whole trial, and its top symbols (cpu-clock: a VM often has no hardware
counters).

Run from the repository, as root:  python3 bench/xdp_vs_udp.py [--rounds 5] [--duration 3]
[--queues 2] [--rx-sender auto|xdp|udp] [--profile] [--json]
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(Path(__file__).resolve().parent))
from modes import bootstrap_interval  # bench/ is not a package: from its directory
from proclist import children

ARMS = {  # name -> (senders.socket, receivers.socket); R's sender is chosen at run time
    "X": ("xdp", "udp"),
    "U": ("udp", "udp"),
    "R": (None, "xdp"),
}
ORDER = (("X", "U", "R"), ("R", "U", "X"))


class Stop(Exception):
    """SIGTERM or SIGHUP: unwind, so the running trial is stopped and the lab removed."""


def _on_signal(signum, _frame):
    raise Stop(signal.Signals(signum).name)


def pps(*args: str, timeout: float = 60, check: bool = True) -> subprocess.CompletedProcess:
    proc = subprocess.run([sys.executable, "-m", "pps", *args], capture_output=True, text=True,
                          timeout=timeout, cwd=REPO, check=False)
    if check and proc.returncode != 0:
        raise RuntimeError(f"pps {' '.join(args)} failed ({proc.returncode}): "
                           f"{proc.stderr.strip()[-400:]}")
    return proc


def lab_sets(lab_id: str, queues: int) -> list[str]:
    return ["lab.enabled=true", f"lab.id={lab_id}", f"lab.queues={queues}",
            f"senders.count={queues}", f"receivers.count={queues}"]


def run_trial(sender: str, receiver: str, args, lab_id: str,
              on_start=None) -> dict[str, Any]:
    """One `pps run --json`; its summary, plus what run.json says of each worker (AF_XDP
    mode, XSK statistics). on_start(proc) is called once the process is running."""
    sets = [*lab_sets(lab_id, args.queues), f"senders.socket={sender}",
            f"receivers.socket={receiver}", f"target.port={args.port}", *args.set]
    with tempfile.TemporaryDirectory(prefix="pps-xdpbench-") as tmp:
        cmd = [sys.executable, "-m", "pps", "run", "--json", "--duration", str(args.duration),
               "--out", f"{tmp}/r", *[a for s in sets for a in ("--set", s)]]
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO)
        try:
            if on_start:
                on_start(proc)
            out, err = proc.communicate(timeout=args.duration + 90)
        except BaseException:
            # Stop it as Ctrl-C would (it removes nothing of ours: the lab is not its own).
            proc.send_signal(signal.SIGINT)
            try:
                proc.communicate(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.communicate()
            raise
        if proc.returncode not in (0, 1):
            raise RuntimeError(f"pps run ({sender} -> {receiver}) failed ({proc.returncode}): "
                               f"{err.strip()[-600:]}")
        result = json.loads(out)
        try:
            record = json.loads((Path(tmp) / "r" / "run.json").read_text())
            result["_workers_record"] = record.get("workers") or []
        except (OSError, ValueError):
            result["_workers_record"] = []
    return result


def modes_of(result: dict[str, Any]) -> dict[str, str]:
    """role -> AF_XDP mode (copy / zero-copy) of its sockets, where they are XSKs."""
    out: dict[str, set[str]] = {}
    for w in result.get("_workers_record", []):
        sock = w.get("socket") or {}
        if sock.get("kind") == "xdp":
            out.setdefault(w["role"], set()).add(sock.get("mode") or "?")
    return {role: "/".join(sorted(m)) for role, m in out.items()}


def xsk_drops(result: dict[str, Any]) -> dict[str, int]:
    """The receivers' XSK statistics, summed."""
    total: dict[str, int] = {}
    for w in result.get("_workers_record", []):
        if w.get("role") == "receiver" and w.get("xsk"):
            for k, v in w["xsk"].items():
                total[k] = total.get(k, 0) + int(v or 0)
    return total


# ------------------------------------------------------------------------------ figures

def median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def paired(num: list[float], den: list[float]) -> tuple[float | None, tuple[float, float] | None]:
    ratios = [n / d for n, d in zip(num, den) if d]
    if not ratios:
        return None, None
    return statistics.median(ratios), bootstrap_interval(ratios)


def worker_costs(results: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per worker (role, index), over every round: CPU ns per packet it handled and its
    share of user time. None where the JSON has no CPU times."""
    acc: dict[tuple[str, int], dict[str, Any]] = {}
    for res in results:
        for w in res.get("workers") or []:
            if w.get("user_s") is None or w.get("sys_s") is None:
                continue
            a = acc.setdefault((w["role"], w["index"]), {
                "role": w["role"], "index": w["index"], "cpu": w.get("cpu"),
                "user_s": 0.0, "sys_s": 0.0, "packets": 0})
            a["user_s"] += w["user_s"]
            a["sys_s"] += w["sys_s"]
            a["packets"] += int(w.get("packets") or 0)
    out = []
    for (role, index), a in sorted(acc.items(), key=lambda kv: (kv[0][0] != "sender", kv[0][1])):
        total = a["user_s"] + a["sys_s"]
        out.append({**a, "ns_per_packet": 1e9 * total / a["packets"] if a["packets"] else None,
                    "user_percent": 100.0 * a["user_s"] / total if total else None})
    return out


def ledger_layers(results: list[dict[str, Any]]) -> dict[str, float]:
    """Each ledger layer's drops over all rounds, as a share of everything sent."""
    sent = sum(int(r.get("sent") or 0) for r in results)
    layers: dict[str, int] = {}
    for r in results:
        for name, n in ((r.get("ledger") or {}).get("layers") or {}).items():
            layers[name] = layers.get(name, 0) + int(n or 0)
        unacc = (r.get("ledger") or {}).get("unaccounted")
        if unacc:
            layers["unaccounted"] = layers.get("unaccounted", 0) + int(unacc)
    return {k: v / sent for k, v in layers.items() if v} if sent else {}


def arm_summary(results: list[dict[str, Any]]) -> dict[str, Any]:
    return {
        "tx_pps": median([r["tx_pps"] for r in results]),
        "rx_pps": median([r["rx_pps"] for r in results]),
        "loss_ratio": median([r["loss_ratio"] for r in results if r.get("loss_ratio") is not None]),
        "runs": [{"tx_pps": r["tx_pps"], "rx_pps": r["rx_pps"], "loss_ratio": r.get("loss_ratio")}
                 for r in results],
        "drops_by_layer": ledger_layers(results),
        "xsk_receivers": _sum_dicts([xsk_drops(r) for r in results]),
        "xdp_mode": modes_of(results[0]) if results else {},
        "workers": worker_costs(results),
    }


def _sum_dicts(ds: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in ds:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


# ------------------------------------------------------------------------------ perf

def _netns_inode(name: str) -> int | None:
    try:
        return os.stat(f"/run/netns/{name}").st_ino
    except OSError:
        return None


def find_sender0(run_pid: int, lab_id: str, timeout_s: float = 30) -> int | None:
    """sender-0 of a running trial: the first-started worker of `run_pid` in the lab's
    sender namespace (workers start in slot order, receivers first, then sender-0)."""
    tx_ns = _netns_inode(f"pps-{lab_id}-tx")
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline and tx_ns is not None:
        senders = []
        for child in children(run_pid):
            try:
                cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
                if b"pps.run.worker" in cmdline and os.stat(f"/proc/{child}/ns/net").st_ino == tx_ns:
                    senders.append(child)
            except OSError:
                continue
        if len(senders) >= 1:
            time.sleep(0.05)  # let the others start too, then take the lowest pid
            return min(senders)
        time.sleep(0.01)
    return None


def perf_top(data: str, sort: str, limit: int) -> list[tuple[float, str]]:
    proc = subprocess.run(["perf", "report", "-i", data, "--stdio", "--no-children",
                           "-g", "none", "--sort", sort, "--percent-limit", "0.5"],
                          capture_output=True, text=True, timeout=120, check=False)
    rows = []
    for line in proc.stdout.splitlines():
        line = line.strip()
        if not line or line.startswith("#") or "%" not in line:
            continue
        pct, _, rest = line.partition("%")
        try:
            rows.append((float(pct), " ".join(rest.split())))
        except ValueError:
            continue
    return rows[:limit]


# Frames whose inclusive share splits a sender's time: its own send path, and the receive
# path (net_rx_action: the softirq that veth's netif_rx raises) run inside its system call.
FRAMES = ("xsk_sendmsg", "__xsk_generic_xmit", "sock_alloc_send_pskb", "__dev_direct_xmit",
          "__sys_sendmmsg", "udp_sendmsg", "ip_make_skb", "__dev_queue_xmit", "veth_xmit",
          "net_rx_action", "ip_rcv", "udp_queue_rcv_one_skb", "sock_def_readable")


def perf_inclusive(data: str) -> dict[str, float]:
    """Inclusive (children) share of each of FRAMES in a profile."""
    proc = subprocess.run(["perf", "report", "-i", data, "--stdio", "--children", "-g", "none",
                           "--sort", "sym", "--percent-limit", "0.5"],
                          capture_output=True, text=True, timeout=120, check=False)
    out = {}
    for line in proc.stdout.splitlines():
        parts = line.split()
        if len(parts) >= 4 and parts[0].endswith("%") and parts[-1] in FRAMES:
            try:
                out[parts[-1]] = float(parts[0].rstrip("%"))
            except ValueError:
                continue
    return {name: out[name] for name in FRAMES if name in out}


def profile(args, lab_id: str, workdir: str) -> dict[str, Any]:
    """One X and one U trial with sender-0 under perf (cpu-clock, call graphs)."""
    out: dict[str, Any] = {}
    if not shutil.which("perf"):
        return {"error": "no perf on PATH (Debian: apt-get install linux-perf)"}
    probe = subprocess.run(["perf", "record", "-e", "cpu-clock", "-o", f"{workdir}/probe.data",
                            "--", "true"], capture_output=True, text=True, check=False)
    if probe.returncode != 0:
        return {"error": f"perf record -e cpu-clock does not work here: {probe.stderr.strip()[-300:]}"}
    for sender in ("xdp", "udp"):
        data = f"{workdir}/{sender}.data"
        perf_proc: list[subprocess.Popen] = []

        def start(proc: subprocess.Popen, data=data, perf_proc=perf_proc) -> None:
            pid = find_sender0(proc.pid, lab_id)
            if pid is None:
                return
            # warm-up + duration + drain, and a little more; perf stops with `sleep`
            span = args.duration + 3
            perf_proc.append(subprocess.Popen(
                ["perf", "record", "-e", "cpu-clock", "-g", "-p", str(pid), "-o", data,
                 "--", "sleep", str(span)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE))

        result = run_trial(sender, "udp", args, lab_id, on_start=start)
        if not perf_proc:
            out[sender] = {"error": "sender-0 not found"}
            continue
        perf_proc[0].wait(timeout=args.duration + 60)
        out[sender] = {"tx_pps": result["tx_pps"], "rx_pps": result["rx_pps"],
                       "symbols": perf_top(data, "dso,sym", args.top),
                       "inclusive": perf_inclusive(data),
                       "dsos": perf_top(data, "dso", 6)}
    return out


# ------------------------------------------------------------------------------ main

def _fmt(v: float | None, spec: str) -> str:
    return format(v, spec) if v is not None else "-"


def _ratio(r: float | None, ci: tuple[float, float] | None) -> str:
    if r is None:
        return "-"
    return f"{r:.3f}x [{ci[0]:.3f}, {ci[1]:.3f}]" if ci else f"{r:.3f}x"


def print_workers(title: str, workers: list[dict[str, Any]]) -> None:
    if not workers:
        print(f"  {title}: no CPU times in the JSON")
        return
    cells = "  ".join(f"{w['role']}-{w['index']}@cpu{w['cpu']} "
                      f"{_fmt(w['ns_per_packet'], ',.0f')} ns/pkt "
                      f"(user {_fmt(w['user_percent'], '.0f')}%)" for w in workers)
    print(f"  {title:<22} {cells}")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--duration", type=float, default=3.0, help="measured seconds per trial")
    ap.add_argument("--queues", type=int, default=2,
                    help="lab veth queues; senders.count = receivers.count = queues")
    ap.add_argument("--rx-sender", choices=("auto", "xdp", "udp"), default="auto",
                    help="the sender of (b); auto: the faster (tx pps) in round 1 of (a)")
    ap.add_argument("--port", type=int, default=4791)
    ap.add_argument("--lab-id", default=None, help="default: xb + random hex")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="extra pps --set for every trial (repeatable)")
    ap.add_argument("--profile", action="store_true",
                    help="also profile sender-0 of one X and one U trial with perf")
    ap.add_argument("--top", type=int, default=12, help="symbols to show with --profile")
    ap.add_argument("--json", action="store_true", help="print one JSON object")
    args = ap.parse_args()
    if args.rounds < 1 or args.queues < 1:
        ap.error("--rounds and --queues must be at least 1")
    if os.geteuid() != 0:
        print("xdp_vs_udp: the lab and AF_XDP need root", file=sys.stderr)
        return 3
    lab_id = args.lab_id or f"xb{secrets.token_hex(3)}"

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, _on_signal)
    started = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {a: [] for a in ARMS}
    rx_sender = None if args.rx_sender == "auto" else args.rx_sender
    rx_sender_why = "chosen with --rx-sender" if rx_sender else ""
    perf_out: dict[str, Any] | None = None
    workdir = tempfile.mkdtemp(prefix="pps-xdpbench-perf-")
    pps("lab", "up", "--id", lab_id, "--queues", str(args.queues))
    try:
        for rnd in range(args.rounds):
            for arm in ORDER[rnd % 2]:
                sender, receiver = ARMS[arm]
                if arm == "R":
                    if rx_sender is None:  # round 1, after X and U (order X U R)
                        tx_x = results["X"][0]["tx_pps"]
                        tx_u = results["U"][0]["tx_pps"]
                        rx_sender = "xdp" if tx_x >= tx_u else "udp"
                        rx_sender_why = (f"faster in round 1 of (a): xdp {tx_x:,.0f} vs udp "
                                         f"{tx_u:,.0f} tx pps")
                    sender = rx_sender
                res = run_trial(sender, receiver, args, lab_id)
                results[arm].append(res)
                print(f"round {rnd + 1} {arm} {sender:>3} -> {receiver:<3} "
                      f"tx {res['tx_pps']:>12,.0f}  rx {res['rx_pps']:>12,.0f}  "
                      f"loss {100 * (res.get('loss_ratio') or 0):6.2f}%",
                      file=sys.stderr, flush=True)
        if args.profile:
            perf_out = profile(args, lab_id, workdir)
    except (KeyboardInterrupt, Stop) as exc:
        print(f"xdp_vs_udp: stopped ({exc.__class__.__name__} {exc}); removing lab {lab_id}",
              file=sys.stderr)
        return 130 if isinstance(exc, KeyboardInterrupt) else 143
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGHUP, signal.SIG_IGN)
        down = pps("lab", "down", "--id", lab_id, check=False)
        if down.returncode != 0:  # a trial still holding it (it was just stopped)
            pps("lab", "down", "--id", lab_id, "--force", check=False)
        shutil.rmtree(workdir, ignore_errors=True)
    elapsed = time.monotonic() - started

    x, u, r = results["X"], results["U"], results["R"]
    base = x if rx_sender == "xdp" else u
    tx_ratio = paired([t["tx_pps"] for t in x], [t["tx_pps"] for t in u])
    rx_ratio = paired([t["rx_pps"] for t in x], [t["rx_pps"] for t in u])
    recv_ratio = paired([t["rx_pps"] for t in r], [t["rx_pps"] for t in base])
    summary = {
        "rounds": args.rounds, "duration": args.duration, "queues": args.queues,
        "lab_id": lab_id, "extra_sets": args.set, "elapsed_s": elapsed,
        "kernel": (x[0].get("start") or {}).get("host", {}).get("kernel") if x else None,
        "sender": {"xdp": arm_summary(x), "udp": arm_summary(u),
                   "tx_ratio": tx_ratio[0], "tx_ratio_95": tx_ratio[1],
                   "rx_ratio": rx_ratio[0], "rx_ratio_95": rx_ratio[1]},
        "receiver": {"sender": rx_sender, "why": rx_sender_why,
                     "xdp": arm_summary(r), "udp": arm_summary(base),
                     "rx_ratio": recv_ratio[0], "rx_ratio_95": recv_ratio[1]},
        "profile": perf_out,
    }
    if args.json:
        print(json.dumps(summary))
        return 0

    sa, rb = summary["sender"], summary["receiver"]
    print(f"lab {lab_id}: {args.queues} queues, senders.count = receivers.count = {args.queues}, "
          f"{args.rounds} rounds x {args.duration:g} s, unpaced"
          + (f", --set {' '.join(args.set)}" if args.set else "")
          + f"; medians ({elapsed:.0f} s in all)")
    print("\n(a) sender: AF_XDP vs sendmmsg, into the kernel's UDP receiver"
          f" (AF_XDP mode: {sa['xdp']['xdp_mode'].get('sender', '?')})")
    print(f"  {'':<10} {'tx pps':>12} {'rx pps':>12} {'loss':>8}")
    for name in ("xdp", "udp"):
        s = sa[name]
        print(f"  {name:<10} {s['tx_pps']:>12,.0f} {s['rx_pps']:>12,.0f} "
              f"{100 * s['loss_ratio']:>7.2f}%")
    print(f"  xdp/udp paired: tx {_ratio(sa['tx_ratio'], sa['tx_ratio_95'])}   "
          f"rx {_ratio(sa['rx_ratio'], sa['rx_ratio_95'])}")
    print("  CPU per packet (user + system, all rounds):")
    print_workers("xdp sender run", sa["xdp"]["workers"])
    print_workers("udp sender run", sa["udp"]["workers"])

    print(f"\n(b) receiver: AF_XDP vs UDP socket, same sender: {rb['sender']} ({rb['why']})"
          f" (AF_XDP mode: {rb['xdp']['xdp_mode'].get('receiver', '?')})")
    print(f"  {'':<10} {'tx pps':>12} {'rx pps':>12} {'loss':>8}  drops by layer (all rounds)")
    for name in ("xdp", "udp"):
        s = rb[name]
        layers = ", ".join(f"{k} {100 * v:.2f}%" for k, v in
                           sorted(s["drops_by_layer"].items(), key=lambda kv: -kv[1])) or "none"
        print(f"  {name:<10} {s['tx_pps']:>12,.0f} {s['rx_pps']:>12,.0f} "
              f"{100 * s['loss_ratio']:>7.2f}%  {layers}")
    if rb["xdp"]["xsk_receivers"]:
        xs = rb["xdp"]["xsk_receivers"]
        print("  XSK receivers, all rounds: " + ", ".join(f"{k} {v:,}" for k, v in xs.items()))
    print(f"  xdp/udp paired: rx {_ratio(rb['rx_ratio'], rb['rx_ratio_95'])}")
    print("  CPU per packet (user + system, all rounds):")
    print_workers("xdp receiver run", rb["xdp"]["workers"])
    print_workers("udp receiver run", rb["udp"]["workers"])
    print("\npaired: median of each round's own ratio, bootstrap 95% interval; ns/pkt: a "
          "worker's CPU time over the packets it sent or received. On veth the receive path "
          "runs in the sender's system call, so a sender's ns/pkt includes it.")
    if perf_out is not None:
        print("\nperf record -e cpu-clock -g -p <sender-0>, one trial each (self time; "
              "cpu-clock cannot sample with interrupts off, so that time lands on the "
              "*_unlock_irqrestore that ends it):")
        if "error" in perf_out:
            print(f"  {perf_out['error']}")
        for sender in ("xdp", "udp"):
            p = perf_out.get(sender)
            if not p:
                continue
            if "error" in p:
                print(f"  {sender}: {p['error']}")
                continue
            print(f"  {sender} sender (tx {p['tx_pps']:,.0f} pps): "
                  + ", ".join(f"{name} {pct:.1f}%" for pct, name in p["dsos"]))
            for pct, name in p["symbols"]:
                print(f"    {pct:5.1f}%  {name}")
            if p.get("inclusive"):
                print("    inclusive: " + ", ".join(f"{name} {pct:.1f}%"
                                                   for name, pct in p["inclusive"].items()))
    return 0


if __name__ == "__main__":
    sys.exit(main())
