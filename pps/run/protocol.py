"""What the orchestrator and `pps agent` agree on: the protocol's version, the config an
agent is given, and the capabilities a run needs of the user on the other side.

Versions: 2, histograms come by kind; 3, prepare's drivers are [netns, device, driver] rows;
4, counters stream on the agent (collect takes t and answers nothing; counters and
counters_chunk bring the totals and the table at the end); 5, prepare takes `wire` (where to
send and listen, the run key, chosen source ports) and `seats` (the host's first worker
indices and the run's sender count), so a role spans several hosts.
"""

from __future__ import annotations

from typing import Any

from pps.config.hosts import LOCAL, HostSpec
from pps.config.model import Config

PROTOCOL = 5


def needed_capabilities(config: Config, host: HostSpec) -> dict[str, str]:
    """What the user on `host` must be allowed, for this run."""
    needs = {}
    if host.netns:
        needs["sys_admin"] = f"to enter namespace {host.netns}"
    if config.receivers.rcvbuf or config.senders.sndbuf:
        needs["net_admin"] = "to set socket buffers past rmem_max/wmem_max"
    if config.receivers.mode == "busy-poll":
        needs["net_admin"] = "for SO_BUSY_POLL"
    return needs


def agent_config(config: Config) -> dict[str, Any]:
    """The config as an agent builds it: its roles run locally there; it knows no hosts."""
    raw = config.to_dict()
    raw.pop("hosts", None)
    raw["senders"]["host"] = raw["receivers"]["host"] = LOCAL
    raw["sweep"] = {}
    return {section: {k: v for k, v in body.items() if v is not None}
            for section, body in raw.items()}
