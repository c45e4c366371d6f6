"""Write the host-check fixtures (tests/data/checks/*/): a topology fixture plus the procfs and
sysfs files the checks read, and ROOT/ethtool/DEV.json for the ioctl answers.

`mlx5-tuned` is the 2-socket mlx5 machine set up the way a benchmark wants it (every
check ok); `mlx5-untuned` is the same machine left at distribution defaults with
irqbalance, conntrack and iptables (every check that can, warns). The trees are committed;
run this only to change them:
    python3 tests/data/checks/make_fixtures.py
"""

from __future__ import annotations

import json
import os
import shutil

HERE = os.path.dirname(os.path.abspath(__file__))
TOPO = os.path.join(HERE, "..", "topo", "mlx5-2socket")
NIC = "enp129s0f0np0"
NCPU = 32


def write(root: str, rel: str, text: str) -> None:
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
        f.write(text + "\n")


def proc(root: str, pid: int, comm: str, state: str, cpu: int) -> None:
    # /proc/PID/stat: pid (comm) state, then fields 4..52; field 39 is the last CPU.
    fields = ["0"] * 49
    fields[35] = str(cpu)  # index 35 after state = field 39
    write(root, f"proc/{pid}/comm", comm)
    write(root, f"proc/{pid}/stat", f"{pid} ({comm}) {state} " + " ".join(fields))


def cpu_files(root: str, governor: str, deep_disabled: bool) -> None:
    for cpu in range(NCPU // 2):  # CPUs 0-15 cover every plan the tests make; keeps it small
        base = f"sys/devices/system/cpu/cpu{cpu}"
        write(root, f"{base}/cpufreq/scaling_governor", governor)
        for i, (name, latency) in enumerate((("POLL", 0), ("C1", 2), ("C6", 133))):
            write(root, f"{base}/cpuidle/state{i}/name", name)
            write(root, f"{base}/cpuidle/state{i}/latency", str(latency))
            write(root, f"{base}/cpuidle/state{i}/disable", "1" if deep_disabled and latency > 20
                  else "0")
    write(root, "sys/devices/system/cpu/cpuidle/current_driver", "intel_idle")


def ethtool(root: str, rss: str, combined: int, rx_ring: int) -> None:
    bits = {"s": 1 << 4, "d": 1 << 5, "f": 1 << 6, "n": 1 << 7}
    settings = {
        "driver_info": {"driver": "mlx5_core", "version": "6.1.0", "firmware": "16.35.2000",
                        "bus": "0000:81:00.0", "n_stats": 200},
        "channels": {"rx": 0, "tx": 0, "other": 0, "combined": combined, "max_rx": 0,
                     "max_tx": 0, "max_other": 0, "max_combined": 16},
        "rings": {"rx": rx_ring, "rx_mini": 0, "rx_jumbo": 0, "tx": rx_ring, "rx_max": 8192,
                  "rx_mini_max": 0, "rx_jumbo_max": 0, "tx_max": 8192},
        "rss_udp4": {"bits": sum(bits[c] for c in rss), "letters": rss,
                     "fields": [], "discard": False},
    }
    write(root, f"ethtool/{NIC}.json", json.dumps(settings, indent=1))


def sysctls(root: str, values: dict[str, int]) -> None:
    for name, value in values.items():
        write(root, f"proc/sys/net/{name}", str(value))


def start(name: str) -> str:
    root = os.path.join(HERE, name)
    shutil.rmtree(root, ignore_errors=True)
    shutil.copytree(TOPO, root, symlinks=True)
    return root


def tuned() -> None:
    root = start("mlx5-tuned")
    proc(root, 1, "systemd", "S", 0)
    proc(root, 2, "kthreadd", "S", 1)
    cpu_files(root, "performance", deep_disabled=True)
    write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", "1")
    write(root, "sys/devices/system/cpu/isolated", "8-15,24-31")
    write(root, "sys/devices/system/cpu/nohz_full", "8-15,24-31")
    write(root, "proc/loadavg", "0.02 0.05 0.01 1/312 4242")
    write(root, "proc/modules", f"mlx5_core 2080768 0 - Live 0x0\nmlxfw 36864 1 mlx5_core, "
          "Live 0x0")
    write(root, "proc/net/ip_tables_names", "")
    for dev in ("all", NIC, "lo"):
        write(root, f"proc/sys/net/ipv4/conf/{dev}/rp_filter", "0")
    ethtool(root, "sdfn", 8, 8192)
    sysctls(root, {"core/rmem_max": 67108864, "core/rmem_default": 212992,
                   "core/wmem_max": 67108864, "core/wmem_default": 212992,
                   "core/netdev_max_backlog": 250000, "core/busy_read": 50,
                   "core/busy_poll": 50})


def untuned() -> None:
    root = start("mlx5-untuned")
    proc(root, 1, "systemd", "S", 0)
    proc(root, 812, "irqbalance", "S", 3)
    proc(root, 4711, "stress-ng", "R", 8)
    cpu_files(root, "powersave", deep_disabled=False)
    write(root, "sys/devices/system/cpu/intel_pstate/no_turbo", "0")
    write(root, "sys/devices/system/cpu/isolated", "")
    write(root, "proc/loadavg", "17.80 16.20 15.02 18/512 4711")
    write(root, "proc/modules", "\n".join(f"{m} 16384 0 - Live 0x0" for m in (
        "mlx5_core", "nf_conntrack", "iptable_filter", "iptable_raw", "ip_tables")))
    write(root, "proc/net/ip_tables_names", "raw\nfilter")
    write(root, "proc/sys/net/netfilter/nf_conntrack_count", "42")
    write(root, "proc/sys/net/ipv4/conf/all/rp_filter", "1")
    write(root, f"proc/sys/net/ipv4/conf/{NIC}/rp_filter", "2")
    write(root, "proc/sys/net/ipv4/conf/lo/rp_filter", "0")
    ethtool(root, "sd", 2, 1024)
    sysctls(root, {"core/rmem_max": 212992, "core/rmem_default": 212992,
                   "core/wmem_max": 212992, "core/wmem_default": 212992,
                   "core/netdev_max_backlog": 1000, "core/busy_read": 0, "core/busy_poll": 0})


if __name__ == "__main__":
    tuned()
    untuned()
