"""/proc/net/snmp, /proc/net/netstat and /proc/net/snmp6 of one network namespace.

Names are nstat's: the table prefix joined to the field ("Udp" + "RcvbufErrors" ->
"UdpRcvbufErrors", "IpExt" + "InNoRoutes" -> "IpExtInNoRoutes"); snmp6 lines already carry
them. Absolute values straight from the kernel: nstat's history file is never read or written.
"""

from __future__ import annotations

from pps.counters.collectors.base import Reading

# source name -> file under /proc/net
FILES = {"snmp": "snmp", "netstat": "netstat", "snmp6": "snmp6"}


def parse(text: str, source: str = "snmp") -> list[Reading]:
    """Parse any of the three files. snmp/netstat come as header/value line pairs."""
    out: list[Reading] = []
    lines = [ln for ln in text.splitlines() if ln.strip()]
    if lines and ":" not in lines[0].split()[0]:
        for line in lines:  # snmp6: "Ip6InReceives   123"
            name, _, value = line.partition(" ")
            out.append(Reading(source, name, int(value)))
        return out
    pending: dict[str, list[str]] = {}
    for line in lines:
        prefix, _, rest = line.partition(":")
        fields = rest.split()
        if prefix not in pending:
            pending[prefix] = fields  # header line: the names
            continue
        names = pending.pop(prefix)
        if len(names) != len(fields):
            raise ValueError(f"{source}: {prefix} has {len(names)} names, {len(fields)} values")
        out += [Reading(source, prefix + n, int(v)) for n, v in zip(names, fields)]
    return out


def read_here(filename: str) -> list[Reading]:
    """One file as the calling thread's namespace sees it (/proc/thread-self follows setns)."""
    source = next(s for s, f in FILES.items() if f == filename)
    with open(f"/proc/thread-self/net/{filename}") as f:
        return parse(f.read(), source)


def read(netns: str | None, filename: str = "snmp") -> list[Reading]:
    from pps.host.netns import call_in

    return call_in(netns, lambda: read_here(filename))
