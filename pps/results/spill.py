"""Tables that grow with a run's length, written to disk as they grow instead of held whole.

A `ParquetSink` takes a table in chunks (DataFrames of the same columns) and appends each as
a Parquet row group to a file in a private spill directory; closing it gives a
`SpilledTable`: the finished file, which results.save_trial copies into the results
directory (so that directory is still written atomically, whatever the run's length), and
which `read()` opens as a DataFrame when a caller wants it in memory. The spill directory
is removed when nothing refers to it any longer (or at exit).
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path

import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

PREFIX = "pps-spill-"


class SpillDir:
    """A private temporary directory, removed with the last object that holds it. Its name
    carries the owner's pid, so the spill of a process that was SIGKILLed (no finalizer
    ran) is removed by the next one that spills in the same place."""

    def __init__(self) -> None:
        remove_orphans()
        self.path = Path(tempfile.mkdtemp(prefix=f"{PREFIX}{os.getpid()}-"))
        self._remove = weakref.finalize(self, shutil.rmtree, self.path, ignore_errors=True)

    def remove(self) -> None:
        self._remove()


def remove_orphans(directory: str | None = None) -> None:
    """Remove spill directories whose owner process no longer exists."""
    directory = directory or tempfile.gettempdir()
    try:
        entries = os.listdir(directory)
    except OSError:
        return
    for name in entries:
        pid = name[len(PREFIX):].split("-", 1)[0]
        if not name.startswith(PREFIX) or not pid.isdigit() or os.path.exists(f"/proc/{pid}"):
            continue
        shutil.rmtree(os.path.join(directory, name), ignore_errors=True)


class SpilledTable:
    """A finished table on disk. Holds its spill directory alive while it is referred to.
    `transform` (a DataFrame -> DataFrame function, see `transformed`) is applied to each
    row group as the table is read or copied, so a table can change shape without being
    held whole in memory."""

    def __init__(self, path: Path, rows: int, owner: SpillDir | None = None,
                 transform: Callable[[pd.DataFrame], pd.DataFrame] | None = None) -> None:
        self.path = Path(path)
        self.rows = rows
        self._owner = owner
        self._transform = transform

    def transformed(self, fn: Callable[[pd.DataFrame], pd.DataFrame]) -> SpilledTable:
        """The same file, read and written through `fn` (after any transform it had)."""
        inner = self._transform
        both = fn if inner is None else (lambda df: fn(inner(df)))
        return SpilledTable(self.path, self.rows, self._owner, both)

    def read(self) -> pd.DataFrame:
        df = pd.read_parquet(self.path)
        return self._transform(df) if self._transform else df

    def empty(self) -> pd.DataFrame:
        """No rows, the columns the table reads with (its file's schema, transformed)."""
        df = pq.read_schema(self.path).empty_table().to_pandas()
        return self._transform(df) if self._transform else df

    def chunks(self) -> Iterator[pd.DataFrame]:
        """The table, one row group at a time."""
        source = pq.ParquetFile(self.path)
        for i in range(source.num_row_groups):
            df = source.read_row_group(i).to_pandas()
            yield self._transform(df) if self._transform else df

    def write_to(self, parquet: Path, csv: Path | None = None) -> None:
        """A copy at `parquet` (and, with `csv`, the rows as CSV, one row group at a time)."""
        if self._transform is None:
            shutil.copyfile(self.path, parquet)
            if csv is not None:
                _write_csv(self.path, csv)
            return
        sink = ParquetSink(parquet)
        header = True
        with open(csv, "w", newline="") if csv is not None else contextlib.nullcontext() as out:
            for df in self.chunks():
                sink.write(df)
                if out is not None:
                    df.to_csv(out, index=False, header=header)
                    header = False
            if sink.close() is None:  # no row group: the empty table, in its new shape
                empty = self.empty()
                empty.to_parquet(parquet, index=False)
                if out is not None:
                    empty.to_csv(out, index=False)

    def __len__(self) -> int:
        return self.rows


def _write_csv(parquet: Path, csv: Path) -> None:
    source = pq.ParquetFile(parquet)
    header = True
    with open(csv, "w", newline="") as out:
        for i in range(source.num_row_groups):
            df = source.read_row_group(i).to_pandas()
            df.to_csv(out, index=False, header=header)
            header = False
        if header:  # no rows: the header alone, as DataFrame.to_csv writes it
            source.schema_arrow.empty_table().to_pandas().to_csv(out, index=False)


class ParquetSink:
    """One table written as Parquet row groups, chunk by chunk. The schema is the first
    chunk's, or `schema` (which a chunk whose columns are all missing cannot tell)."""

    def __init__(self, path: Path, schema: pa.Schema | None = None,
                 owner: SpillDir | None = None) -> None:
        self.path = Path(path)
        self.schema = schema
        self.rows = 0
        self._owner = owner
        self._writer: pq.ParquetWriter | None = None

    def write(self, chunk: pd.DataFrame) -> None:
        if chunk.empty and self._writer is not None:
            return
        if self.schema is None:
            self.schema = pa.Schema.from_pandas(chunk, preserve_index=False)
        table = pa.Table.from_pandas(chunk, schema=self.schema, preserve_index=False)
        if self._writer is None:
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.write_table(table)
        self.rows += len(chunk)

    def close(self) -> SpilledTable | None:
        """The finished table; None when nothing was ever written (no schema to give it)."""
        if self._writer is None:
            if self.schema is None:
                return None
            self._writer = pq.ParquetWriter(self.path, self.schema)
        self._writer.close()
        return SpilledTable(self.path, self.rows, self._owner)


def schema_of(example: pd.DataFrame) -> pa.Schema:
    """A table's schema (with pandas' dtypes, so Int64 columns read back as Int64), from a
    one-row example whose every column holds a value of its type."""
    return pa.Schema.from_pandas(example, preserve_index=False)
