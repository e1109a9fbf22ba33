"""Atomic file output and small shared readers.

Every file a rule produces is written under a temporary name in the same folder
and renamed into place only when complete, so a killed job never leaves a half
file that looks whole (a rename within one file system is atomic).
"""

from __future__ import annotations

import contextlib
import json
import os
from pathlib import Path
from typing import Iterator

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tiledup.run.errors import TiledupError


@contextlib.contextmanager
def atomic_path(path: str | os.PathLike) -> Iterator[Path]:
    """Yield a temporary path beside `path`; rename it to `path` if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp-{os.getpid()}")
    try:
        yield tmp
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


@contextlib.contextmanager
def atomic_paths(*paths: str | os.PathLike) -> Iterator[list[Path]]:
    """Temporary paths beside several files, all renamed into place once the block succeeds:
    the previous set stays whole until a complete new one is written (the renames follow each
    other within microseconds, the last path last)."""
    with contextlib.ExitStack() as stack:
        yield [stack.enter_context(atomic_path(p)) for p in reversed(paths)][::-1]


def write_parquet(table: pa.Table, path: str | os.PathLike) -> None:
    """Write a table atomically (zstd, no pandas metadata) so equal tables give equal bytes."""
    with atomic_path(path) as tmp:
        pq.write_table(table, tmp, compression="zstd", store_schema=False)


def write_json(obj, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def write_text(text: str, path: str | os.PathLike) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(text)


def read_table(path, columns=None, what: str = "table") -> pa.Table:
    """Read a Parquet file; a missing, corrupt or column-lacking file is a TiledupError naming it."""
    try:
        table = pq.read_table(path)
    except FileNotFoundError:
        raise TiledupError(f"{path}: {what} not found") from None
    except (OSError, pa.ArrowException) as e:
        raise TiledupError(f"{path}: {what} is not readable Parquet ({e})") from None
    missing = [c for c in columns or () if c not in table.column_names]
    if missing:
        raise TiledupError(f"{path}: {what} lacks column(s) {', '.join(missing)}")
    return table.select(columns) if columns else table


def read_parquets(paths, columns=None, what: str = "table") -> pa.Table:
    """Concatenate several Parquet files with one schema (e.g. all shards of a stage)."""
    tables = [read_table(p, columns, what) for p in paths]
    return pa.concat_tables(tables) if tables else pa.table({})


def fixed_binary(col, width: int, name: str, source: str):
    """(rows, width) uint8 numpy view of a fixed_size_binary(width) column (a TiledupError if it is not one)."""
    arr = col.combine_chunks() if isinstance(col, pa.ChunkedArray) else col
    if arr.type != pa.binary(width):
        raise TiledupError(f"{source}: column {name} is {arr.type}, expected fixed_size_binary({width})")
    data = np.frombuffer(arr.buffers()[1], np.uint8, count=len(arr) * width, offset=arr.offset * width)
    return data.reshape(len(arr), width)
