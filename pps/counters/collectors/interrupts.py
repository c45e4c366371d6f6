"""/proc/interrupts per IRQ per CPU, and /proc/softirqs NET_RX / NET_TX per CPU.

Both files are global. Their header names the online CPUs ("CPU0 CPU3"), and that header,
not the column position, gives the CPU number. IRQ counts are per-CPU unsigned ints.
"""

from __future__ import annotations

from pps.counters.collectors.base import Reading

SOFTIRQS = ("NET_RX", "NET_TX")


def _header_cpus(line: str) -> list[int]:
    return [int(tok[3:]) for tok in line.split() if tok.startswith("CPU")]


def parse_interrupts(text: str) -> list[Reading]:
    """Readings named by IRQ ("24", "NMI"); device = the rest of the line (chip, action)."""
    lines = text.splitlines()
    if not lines:
        return []
    cpus = _header_cpus(lines[0])
    out: list[Reading] = []
    for line in lines[1:]:
        irq, sep, rest = line.partition(":")
        if not sep:
            continue
        tokens = rest.split()
        counts: list[int] = []
        for tok in tokens[:len(cpus)]:
            if not tok.isdigit():
                break
            counts.append(int(tok))
        label = " ".join(tokens[len(counts):]) or None
        for cpu, value in zip(cpus, counts):
            out.append(Reading("interrupts", irq.strip(), value, device=label, cpu=cpu))
    return out


def parse_softirqs(text: str, which: tuple[str, ...] = SOFTIRQS) -> list[Reading]:
    lines = text.splitlines()
    if not lines:
        return []
    cpus = _header_cpus(lines[0])
    out: list[Reading] = []
    for line in lines[1:]:
        name, sep, rest = line.partition(":")
        name = name.strip()
        if not sep or name not in which:
            continue
        for cpu, tok in zip(cpus, rest.split()):
            out.append(Reading("softirqs", name, int(tok), cpu=cpu))
    return out
