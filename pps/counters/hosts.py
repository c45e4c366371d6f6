"""Each host's counters as the run's sampler (pps.counters.sampler) takes them: streamed here
for this host, or by the agent of another host and fetched from it at the end.

Namespaces are only unique within a host, so each reading's namespace gets a label unique in
the run: this host keeps its own (None for the root namespace); host `b` files its root
namespace as "b" and a namespace `x` there as "b:x". The ledger then reads the senders'
host for send-side drops and the receivers' host for NIC, backlog, IP and UDP drops.

Every host streams its own counters as the run goes (pps.counters.stream: parsed off the
workers, a table on disk, running totals), so a run of any length costs each host, and the
orchestrator, the same memory. A remote host's agent does that on its side; at the end it
sends its totals and its table, in pieces, and the tables are joined here row group by row
group, never whole in memory.
"""

from __future__ import annotations

import base64
from collections.abc import Callable, Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd
import pyarrow.parquet as pq

from pps.config.hosts import LOCAL
from pps.counters.collectors import SOURCES, Scope
from pps.counters.collectors.capture import Capturer
from pps.counters.stream import ChildStream, StreamResult
from pps.results.spill import ParquetSink, SpillDir, SpilledTable

COUNTERS_TIMEOUT_S = 300.0  # an agent finishing its stream: its parser's backlog, then totals
CHUNK_BYTES = 4 << 20       # a piece of an agent's table per reply (base64 in a JSON line)


def label(host: str, netns: str | None) -> str | None:
    if host == LOCAL:
        return netns
    return host if netns is None else f"{host}:{netns}"


@dataclass
class HostCounters:
    """Where one host's counters come from: take a snapshot (t, full), finish the stream."""

    host: str
    take: Callable[[float, bool], None]  # full: a mark (every collector), else an interval
    finish: Callable[[], StreamResult]
    drivers: dict[tuple[str | None, str], str]


def local_counters(host: str, scopes: list[Scope], drivers: dict,
                   sources: Collection[str] = SOURCES) -> tuple[HostCounters, Callable[[], None]]:
    """This host's counters, streamed here; and the closer of its readers."""
    capturer = Capturer(scopes, sources)
    stream = ChildStream(capturer.scopes, capturer.sources)

    def take(t: float, full: bool) -> None:
        stream.add(t, "mark" if full else "interval", capturer.take(full=full))

    def finish() -> StreamResult:
        capturer.close()
        return stream.finish()
    return HostCounters(host, take, finish, drivers), capturer.close


def remote_counters(session: Any, drivers: dict) -> HostCounters:
    """A host whose agent streams its counters (pps.run.agent op_collect, op_counters)."""
    def take(t: float, full: bool) -> None:
        session.request("collect", full=full, t=t)

    def finish() -> StreamResult:
        reply = session.request("counters", timeout_s=COUNTERS_TIMEOUT_S)
        totals = pd.DataFrame(reply["totals"], columns=reply["columns"])
        for column in ("queue", "cpu"):
            totals[column] = totals[column].astype("Int64")
        unavailable = {(s, d, n): why for s, d, n, why in reply["unavailable"]}
        table = None
        if reply["size"] is not None:
            spill = SpillDir()
            path = spill.path / "counters.parquet"
            with open(path, "wb") as f:
                while f.tell() < reply["size"]:
                    piece = session.request("counters_chunk", offset=f.tell(), length=CHUNK_BYTES)
                    data = base64.b64decode(piece["data"])
                    if not data:
                        raise OSError(f"host {session.name}: its counters table ended early")
                    f.write(data)
            table = SpilledTable(path, reply["rows"], spill)
        return StreamResult(table, totals, unavailable, reply["snapshots"], reply["problem"])
    return HostCounters(session.name, take, finish, drivers)


def append_host_rows(sink: ParquetSink, table: SpilledTable, host: str) -> None:
    """One host's table into the run's, a row group at a time: netns labelled, host added."""
    source = pq.ParquetFile(table.path)
    for i in range(source.num_row_groups):
        df = source.read_row_group(i).to_pandas()
        df["netns"] = [label(host, None if pd.isna(ns) else ns) for ns in df["netns"]]
        df.insert(1, "host", host)
        sink.write(df)


def agent_totals(totals: pd.DataFrame) -> dict[str, Any]:
    """Totals as the agent sends them: plain rows (NA as null) and their columns."""
    rows = totals.astype(object).where(totals.notna(), None).to_numpy().tolist()
    return {"columns": list(totals.columns), "totals": rows}


def read_piece(path: Path, offset: int, length: int) -> str:
    with open(path, "rb") as f:
        f.seek(offset)
        return base64.b64encode(f.read(min(length, CHUNK_BYTES))).decode()
