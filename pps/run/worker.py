"""A worker process: one sender or one receiver.

Started by the orchestrator as `python -m pps.run.worker` with the shared stats segment's
descriptor inherited. It speaks a small protocol: one JSON spec line on stdin, then JSON
lines on stdout: {"event": "ready", ...} once its socket is open and it is pinned, and
{"event": "result", ...} or {"event": "error", ...} at the end. The order of setup is
fixed: die with the parent, enter the namespace, pin, then open sockets, so every socket
belongs to the right namespace and is created on the right CPU.
"""

from __future__ import annotations

import json
import os
import resource
import signal
import sys
import time
from typing import Any

from pps import native
from pps.errors import EnvironmentNotAble, PpsError
from pps.host import netns
from pps.host.sockets import open_receiver, open_senders

GO_POLL_S = 0.0005
# An AF_XDP sender binds no socket, so a flow without a chosen source port takes one from
# here, fixed by its flow id: runs repeat, and RSS spreads the flows the same way each time.
XDP_PORT_BASE, XDP_PORT_SPAN = 40000, 16384


def _emit(event: str, **fields: Any) -> None:
    sys.stdout.write(json.dumps({"event": event, **fields}) + "\n")
    sys.stdout.flush()


def allowed_cpus() -> str:
    """The CPUs the kernel really lets this process run on, as /proc shows them."""
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith("Cpus_allowed_list:"):
                return line.split(":", 1)[1].strip()
    return ""


def _pin(cpu: int | None) -> None:
    if cpu is None:
        return
    try:
        os.sched_setaffinity(0, {cpu})
    except OSError as exc:
        raise EnvironmentNotAble(f"cannot pin to CPU {cpu}: {exc.strerror}") from None


def _cpu_times(since: dict[str, float] | None = None) -> dict[str, float]:
    """This process's CPU time, or what it spent since an earlier reading: the loop's own
    cost, without the ~0.1 s of interpreter start-up and imports before it."""
    usage = resource.getrusage(resource.RUSAGE_SELF)
    since = since or {"user_s": 0.0, "sys_s": 0.0}
    return {"user_s": usage.ru_utime - since["user_s"], "sys_s": usage.ru_stime - since["sys_s"]}


def _wait_for_go(stats: native.SharedStats, deadline_ns: int) -> bool:
    while not stats.is_go():
        if native.now_ns() >= deadline_ns:
            return False
        time.sleep(GO_POLL_S)
    return True


def run_sender(spec: dict[str, Any], stats: native.SharedStats) -> dict[str, Any]:
    if "xdp" in spec:
        return run_xdp_sender(spec, stats)
    flows = spec["flows"]
    socks, report = open_senders(
        [(d["address"], d["port"]) for d in flows], sndbuf=spec["sndbuf"],
        gso_segments=spec["gso_segments"], payload=spec["payload"],
        source_ports=[d.get("source_port") for d in flows])
    _emit("ready", cpus=allowed_cpus(), pid=os.getpid(), socket=vars(report))
    stats.set_state(spec["slot"], native.STATE_READY)
    if not _wait_for_go(stats, spec["deadline_ns"]):
        return {"flows": [], "cpu": {"user_s": 0.0, "sys_s": 0.0}}  # its loop never ran
    before = _cpu_times()
    params = native.SendParams(
        fds=[s.fileno() for s in socks], flow_base=spec["flow_base"], batch=spec["batch"],
        payload=spec["payload"], gso_segments=spec["gso_segments"], raw=spec["raw"],
        rate_pps=spec["rate_pps"], burst=spec["burst"], deadline_ns=spec["deadline_ns"],
        clock=native.CLOCKS[spec["clock"]], run_key=spec["run_key"])
    seqs = native.send_loop(params, stats, spec["slot"], [0] * len(socks))
    for sock in socks:
        sock.close()
    sent = [{"flow": spec["flow_base"] + i, "sent": seq, "source_port": port}
            for i, (seq, port) in enumerate(zip(seqs, report.local_ports))]
    return {"flows": sent, "cpu": _cpu_times(before)}


def run_xdp_sender(spec: dict[str, Any], stats: native.SharedStats) -> dict[str, Any]:
    """Whole frames through an AF_XDP socket on the route's device, on this sender's TX
    queue; the flows' source ports as chosen, else one fixed port per flow id."""
    from pps import native_xsk
    from pps.host.xdp_path import mac_bytes

    x = spec["xdp"]
    ports = tuple(d.get("source_port") or XDP_PORT_BASE + (spec["flow_base"] + i) % XDP_PORT_SPAN
                  for i, d in enumerate(spec["flows"]))
    frame = native_xsk.Frame(mac_bytes(x["src_mac"]), mac_bytes(x["dst_mac"]), x["src_ip"],
                             x["dst_ip"], spec["flows"][0]["port"], ports)
    params = native_xsk.XskParams(x["ifindex"], x["queue"], ring=x["ring"],
                                  zerocopy=x["zerocopy"], tx=True)
    with native_xsk.Xsk(params) as xsk:
        _emit("ready", cpus=allowed_cpus(), pid=os.getpid(), socket=xsk.describe())
        stats.set_state(spec["slot"], native.STATE_READY)
        if not _wait_for_go(stats, spec["deadline_ns"]):
            return {"flows": [], "cpu": {"user_s": 0.0, "sys_s": 0.0}}
        before = _cpu_times()
        seqs = native_xsk.xsk_send_loop(
            xsk, frame, flow_base=spec["flow_base"], batch=spec["batch"],
            payload=spec["payload"], raw=spec["raw"], rate_pps=spec["rate_pps"],
            burst=spec["burst"], deadline_ns=spec["deadline_ns"],
            clock=native.CLOCKS[spec["clock"]], run_key=spec["run_key"], stats=stats,
            slot=spec["slot"])
        cpu = _cpu_times(before)
        xsk_stats = xsk.statistics()
    sent = [{"flow": spec["flow_base"] + i, "sent": seq, "source_port": port}
            for i, (seq, port) in enumerate(zip(seqs, ports))]
    return {"flows": sent, "cpu": cpu, "xsk": xsk_stats}


def _recv_params(spec: dict[str, Any], fd: int, bufsize: int) -> native.RecvParams:
    return native.RecvParams(
        fd=fd, batch=spec["batch"], bufsize=bufsize, busy_poll=spec["busy_poll"],
        gro=spec["gro"], track=not spec["raw"], latency=spec["latency"],
        timestamps=spec["timestamps"], clock=native.CLOCKS[spec["clock"]],
        max_flows=spec["max_flows"], deadline_ns=spec["deadline_ns"],
        spin_ns=spec["spin_ns"],  # block mode: poll this long before sleeping again
        # What this run's packets can be; anything else is foreign (docs/wire.md).
        run_key=spec["run_key"], n_senders=spec["n_senders"],
        flows_per_sender=spec["flows_per_sender"], run_start_ns=spec["run_start_ns"])


def run_xdp_receiver(spec: dict[str, Any], stats: native.SharedStats) -> dict[str, Any]:
    """Frames of one RX queue, steered to this AF_XDP socket by pps's XDP program, with the
    UDP receiver's sequence and latency accounting."""
    from pps import native_xsk

    x = spec["xdp"]
    params = native_xsk.XskParams(x["ifindex"], x["queue"], ring=x["ring"],
                                  zerocopy=x["zerocopy"], rx=True)
    with native_xsk.Xsk(params) as xsk:
        native_xsk.set_queue(x["map_fd"], x["queue"], xsk)
        with native_xsk.XskReceiver(_recv_params(spec, xsk.fd, 2048), xsk) as receiver:
            _emit("ready", cpus=allowed_cpus(), pid=os.getpid(), socket=xsk.describe())
            stats.set_state(spec["slot"], native.STATE_READY)
            before = _cpu_times()
            receiver.run(stats, spec["slot"])
            cpu = _cpu_times(before)
            flows = receiver.flows()
        xsk_stats = xsk.statistics()
    return {"flows": flows, "cpu": cpu, "xsk": xsk_stats}


def run_receiver(spec: dict[str, Any], stats: native.SharedStats) -> dict[str, Any]:
    if "xdp" in spec:
        return run_xdp_receiver(spec, stats)
    sock, report = open_receiver(
        spec["address"], spec["port"], reuseport=spec["reuseport"], rcvbuf=spec["rcvbuf"],
        busy_poll_us=spec["busy_poll_us"], gro=spec["gro"],
        incoming_cpu=spec["cpu"] if spec.get("steer") == "incoming-cpu" else None,
        timestamps=spec["timestamps"])
    bufsize = 65536 if spec["gro"] else max(2048, spec["payload"] + 64)
    with native.Receiver(_recv_params(spec, sock.fileno(), bufsize)) as receiver:
        _emit("ready", cpus=allowed_cpus(), pid=os.getpid(), socket=vars(report))
        stats.set_state(spec["slot"], native.STATE_READY)
        before = _cpu_times()
        receiver.run(stats, spec["slot"])
        cpu = _cpu_times(before)
        flows = receiver.flows()
    sock.close()
    return {"flows": flows, "cpu": cpu}


def main() -> int:
    # The orchestrator owns Ctrl-C: it stops us through the stop word and collects results.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        native.die_with_parent()
        spec = json.loads(sys.stdin.readline())
        if spec.get("netns"):
            netns.enter(spec["netns"])
        _pin(spec.get("cpu"))
        stats = native.SharedStats.attach(spec["shm_fd"], spec["nslots"])
        runner = run_sender if spec["role"] == "sender" else run_receiver
        result = runner(spec, stats)
    except (PpsError, OSError, ValueError, KeyError, TypeError) as exc:
        _emit("error", message=str(exc), kind=type(exc).__name__,
              exit_code=getattr(exc, "exit_code", 1))
        return 1
    _emit("result", **result)
    return 0


if __name__ == "__main__":
    sys.exit(main())
