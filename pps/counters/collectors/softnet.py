"""/proc/net/softnet_stat: one row per online CPU, hex columns, count varying by kernel.

Columns by position (net/core/net-procfs.c softnet_seq_show): 0 processed, 1 dropped
(backlog full or flow limit), 2 time_squeeze, 3-7 always 0 (were fastroute), 8 cpu_collision
(0 since 5.10), 9 received_rps, 10 flow_limit_count (3.11+), 11 backlog_len and 12 cpu index
(5.10+), 13 input_qlen and 14 process_qlen (6.9+). What a kernel prints is read, no more.
The row index is not the CPU number when CPUs are offline (offline rows are skipped), so the
cpu column is used when present; without it the row index is the best there is.
The file is global: its counts are shared by every namespace and all traffic on the host.
"""

from __future__ import annotations

from pps.counters.collectors.base import Reading

COLUMNS = {
    0: "processed", 1: "dropped", 2: "time_squeeze", 8: "cpu_collision", 9: "received_rps",
    10: "flow_limit_count", 11: "backlog_len", 12: "cpu", 13: "input_qlen", 14: "process_qlen",
}
CPU_COLUMN = 12


def parse(text: str) -> list[Reading]:
    out: list[Reading] = []
    for row, line in enumerate(ln for ln in text.splitlines() if ln.strip()):
        values = [int(v, 16) for v in line.split()]
        cpu = values[CPU_COLUMN] if len(values) > CPU_COLUMN else row
        for pos, value in enumerate(values):
            name = COLUMNS.get(pos)
            if name is None or pos == CPU_COLUMN:
                continue
            out.append(Reading("softnet", name, value, cpu=cpu))
    return out


def read(root: str = "/") -> list[Reading]:
    with open(f"{root.rstrip('/')}/proc/net/softnet_stat") as f:
        return parse(f.read())
