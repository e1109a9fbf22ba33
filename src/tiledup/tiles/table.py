"""The tile table: its columns (one definition, TILE_SCHEMA) and readers of the columns a stage needs.

One row per tile, 9 rows per accepted image, sorted by (image_id, tile): image_id,
tile, xxh3_128, bmh, bmh96, solid, r_mean, g_mean, b_mean, grey_std, entropy,
dominant, dominant_share, flat_sig (tiledup.tiles.hashing computes them). This module
needs pyarrow, numpy and the grid's constants only, so the graph and pair stages can read the table
without the tile stage's numba kernels or OpenCV.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from tiledup.grid import N_TILES
from tiledup.run.io import fixed_binary, read_parquets, read_table

HASH_BYTES = 32  # BlockMeanHash mode 0: 16 x 16 blocks, one bit each
# The pixel-digest column: XXH3-128 of the tile's RGB bytes, row-major H x W x 3.
DIGEST = "xxh3_128"

TILE_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("tile", pa.int8()),
    (DIGEST, pa.binary(16)),
    ("bmh", pa.binary(HASH_BYTES)),
    ("bmh96", pa.binary(3 * HASH_BYTES)),
    ("solid", pa.bool_()),
    ("r_mean", pa.float32()),
    ("g_mean", pa.float32()),
    ("b_mean", pa.float32()),
    ("grey_std", pa.float32()),
    ("entropy", pa.float32()),
    ("dominant", pa.binary(3)),
    ("dominant_share", pa.float32()),
    ("flat_sig", pa.binary(1024)),  # int8 bytes, 32 x 32
])
BINARY_COLUMNS = tuple(f.name for f in TILE_SCHEMA if pa.types.is_fixed_size_binary(f.type))


def columns(*names: str) -> list[str]:
    """Some of the tile table's columns, by name (a name it lacks is a programming error)."""
    unknown = [n for n in names if n not in TILE_SCHEMA.names]
    if unknown:
        raise KeyError(f"the tile table has no column(s) {unknown}")
    return list(names)


def width(name: str) -> int:
    """Bytes per row of a fixed-size binary column."""
    return TILE_SCHEMA.field(name).type.byte_width


def read_tiles(paths, names: list[str]) -> pa.Table:
    """These columns of every shard's tile table (a missing file or column is a TiledupError naming it)."""
    return read_parquets(paths, names, "tile table")


@dataclass
class TileHashes:
    """The columns of every shard's tile table that discovery needs, one row per tile."""

    image_ids: np.ndarray  # (images,) str, sorted
    image: np.ndarray      # (n,) int64 index into image_ids
    tile: np.ndarray       # (n,) int8
    bmh: np.ndarray        # (n, 32) uint8
    digest: np.ndarray     # (n, 2) uint64
    solid: np.ndarray      # (n,) bool
    grey_std: np.ndarray   # (n,) float32
    sources: tuple = ()    # the shard tables read, in row order (flat_signatures reads them again)
    flat_sig: np.ndarray | None = None  # (n, 1024) int8, for a table built in memory; else read on demand

    def contentless(self) -> np.ndarray:
        """(images,) bool: every tile of the image solid (no-data, blank sea), nothing to compare."""
        return np.bincount(self.image[self.solid], minlength=len(self.image_ids)) == N_TILES

    def flat_signatures(self, rows: np.ndarray) -> np.ndarray:
        """(len(rows), 1024) int8 flat_sig of these rows (sorted), from the shard tables unless held here."""
        if self.flat_sig is not None:
            return self.flat_sig[rows]
        if not len(rows):
            return np.zeros((0, width("flat_sig")), np.int8)
        if not self.sources:
            raise ValueError("TileHashes without flat_sig or the tile tables to read it from")
        return read_flat_signatures(self.sources, rows)


def read_tile_hashes(paths) -> TileHashes:
    """image_id, tile, digest, bmh, solid and grey_std of all shards' tile tables."""
    table = read_tiles(paths, columns("image_id", "tile", DIGEST, "bmh", "solid", "grey_std"))
    ids = pc.unique(table["image_id"]).sort()
    image = pc.index_in(table["image_id"], value_set=ids).to_numpy().astype(np.int64)
    source = f"tile tables ({len(paths)} shards)"
    return TileHashes(
        image_ids=np.asarray(ids.to_pylist(), dtype=object),
        image=image,
        tile=table["tile"].to_numpy().astype(np.int8),
        bmh=fixed_binary(table["bmh"], width("bmh"), "bmh", source),
        digest=fixed_binary(table[DIGEST], width(DIGEST), DIGEST, source).view(np.uint64),
        solid=table["solid"].to_numpy(zero_copy_only=False).astype(bool),
        grey_std=table["grey_std"].to_numpy().astype(np.float32),
        sources=tuple(paths),
    )


def read_flat_signatures(paths, rows: np.ndarray) -> np.ndarray:
    """(len(rows), 1024) int8 flat_sig of these rows of all shards' tile tables (read_tile_hashes' row
    order), one shard at a time: the column is some 9 kB per chip, and only the rows asked for are kept."""
    out, start = [], 0
    rows = np.sort(rows)
    for path in paths:
        col = read_table(path, ["flat_sig"], "tile table")["flat_sig"]
        mine = rows[(rows >= start) & (rows < start + len(col))] - start
        out.append(fixed_binary(col, width("flat_sig"), "flat_sig", str(path))[mine].view(np.int8))
        start += len(col)
    return np.concatenate(out) if out else np.zeros((0, width("flat_sig")), np.int8)
