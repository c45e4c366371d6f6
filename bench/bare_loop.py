"""The bare C loops, pinned like `pps run`, with no orchestrator, sampling or results:
the ceiling `pps run` is measured against. Prints one JSON line with the receive rate."""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import time

from pps import native
from pps.host.sockets import open_receiver, open_senders


def receiver(fd_port, stats_fd, nslots, cpu, batch, ready, busy_poll, spin_ns):
    os.sched_setaffinity(0, {cpu})
    stats = native.SharedStats.attach(stats_fd, nslots)
    sock, _ = open_receiver("127.0.0.1", fd_port, reuseport=False)
    rx = native.Receiver(native.RecvParams(fd=sock.fileno(), batch=batch, busy_poll=busy_poll,
                                           spin_ns=spin_ns))
    ready.set()
    rx.run(stats, 1)


def sender(port, stats_fd, nslots, cpu, batch, payload, seconds):
    os.sched_setaffinity(0, {cpu})
    stats = native.SharedStats.attach(stats_fd, nslots)
    socks, _ = open_senders([("127.0.0.1", port)])
    native.send_loop(native.SendParams(fds=[socks[0].fileno()], flow_base=0, batch=batch,
                                       payload=payload), stats, 0, [0])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--seconds", type=float, default=5.0)
    ap.add_argument("--warmup", type=float, default=1.0)
    ap.add_argument("--batch", type=int, default=64)
    ap.add_argument("--payload", type=int, default=32)
    ap.add_argument("--port", type=int, default=4399)
    ap.add_argument("--mode", choices=("block", "busy-poll"), default="block")
    ap.add_argument("--spin-us", type=float, default=0.0,
                    help="block mode: poll this long after packets before sleeping again")
    args = ap.parse_args()
    stats = native.SharedStats.create(2)
    ctx = mp.get_context("fork")
    ready = ctx.Event()
    rx = ctx.Process(target=receiver, args=(args.port, stats.fd, 2, 1, args.batch, ready,
                                                 args.mode == "busy-poll", int(args.spin_us * 1000)))
    rx.start()
    ready.wait(10)
    tx = ctx.Process(target=sender, args=(args.port, stats.fd, 2, 0, args.batch, args.payload, args.seconds))
    tx.start()
    time.sleep(args.warmup)
    t0, p0 = time.monotonic(), stats.read(1)["packets"]
    time.sleep(args.seconds)
    t1, p1 = time.monotonic(), stats.read(1)["packets"]
    stats.stop(native.SENDER)
    stats.stop(native.RECEIVER)
    tx.join(5)
    rx.join(5)
    rx = stats.read(1)
    print(json.dumps({"rx_pps": (p1 - p0) / (t1 - t0), "rx_syscalls": rx["syscalls"],
                      "rx_empty": rx["eagain"], "rx_packets": rx["packets"]}))


if __name__ == "__main__":
    main()
