"""The kernel's CPU list syntax ("0-3,8,10-11") and hex CPU masks, both ways."""

from __future__ import annotations

import re
from collections.abc import Iterable

# The kernel's own ceiling (NR_CPUS with CONFIG_MAXSMP on x86_64 is 8192). A CPU number at
# or past it is a typo, and refusing it before building a set keeps "0-4294967295" from
# asking for gigabytes.
MAX_CPUS = 8192
_NUMBER = re.compile(r"[0-9]+")  # ASCII digits only: str.isdigit also takes "²"


def _short(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:40] + "...")


def _cpu_number(word: str, part: str, text: str) -> int:
    if not _NUMBER.fullmatch(word):
        raise ValueError(f"bad CPU list item {_short(part)} in {_short(text)}")
    cpu = int(word) if len(word) <= 9 else MAX_CPUS  # never convert a 5,000-digit number
    if cpu >= MAX_CPUS:
        raise ValueError(f"CPU {_short(word)[1:-1]} in {_short(text)} is past the highest CPU "
                         f"number pps accepts ({MAX_CPUS - 1})")
    return cpu


def parse_cpulist(text: str) -> tuple[int, ...]:
    """Parse "0-3,8" into (0, 1, 2, 3, 8). Raises ValueError on malformed input and on CPU
    numbers of MAX_CPUS or more."""
    cpus: set[int] = set()
    text = text.strip()
    if not text:
        return ()
    for part in text.split(","):
        part = part.strip()
        if not part:
            raise ValueError(f"empty item in CPU list {_short(text)}")
        lo, sep, hi = part.partition("-")
        first = _cpu_number(lo, part, text)
        last = _cpu_number(hi, part, text) if sep else first
        if last < first:
            raise ValueError(f"descending range {_short(part)} in {_short(text)}")
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
    if len(digits) > MAX_CPUS // 4:
        raise ValueError(f"CPU mask {_short(text)} is wider than {MAX_CPUS} CPUs")
    value = int(digits, 16)
    return tuple(bit for bit in range(value.bit_length()) if value >> bit & 1)


def format_cpumask(cpus: Iterable[int]) -> str:
    """Format CPU numbers as a hex mask that sysfs accepts ("f" for 0-3, "0" for none)."""
    value = 0
    for cpu in cpus:
        value |= 1 << cpu
    return format(value, "x")
