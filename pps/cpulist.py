"""The kernel's CPU list syntax ("0-3,8,10-11") and hex CPU masks, both ways."""

from __future__ import annotations

from collections.abc import Iterable


def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse "0-3,8" into (0, 1, 2, 3, 8). Raises ValueError on malformed input."""
    cpus: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in CPU list {text!r}")
        lo, sep, hi = part.partition("-")
        if not lo.isdigit() or (sep and not hi.isdigit()):
            raise ValueError(f"bad CPU list item {part!r} in {text!r}")
        first, last = int(lo), int(hi) if sep else int(lo)
        if last < first:
            raise ValueError(f"descending range {part!r} in {text!r}")
        cpus.update(range(first, last + 1))
    return tuple(sorted(cpus))


def format_cpulist(cpus: Iterable[int]) -> str:
    """Format (0, 1, 2, 3, 8) as "0-3,8"."""
    ordered = sorted(set(cpus))
    ranges: list[str] = []
    i = 0
    while i < len(ordered):
        j = i
        while j + 1 < len(ordered) and ordered[j + 1] == ordered[j] + 1:
            j += 1
        ranges.append(str(ordered[i]) if i == j else f"{ordered[i]}-{ordered[j]}")
        i = j + 1
    return ",".join(ranges)


def parse_cpumask(text: str) -> tuple[int, ...]:
    """Parse a sysfs hex mask ("00000000,0000000f") into CPU numbers."""
    digits = text.strip().replace(",", "")
    if not digits:
        return ()
    value = int(digits, 16)
    return tuple(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_cpumask(cpus: Iterable[int]) -> str:
    """Format CPU numbers as a hex mask that sysfs accepts ("f" for 0-3, "0" for none)."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return format(value, "x")
