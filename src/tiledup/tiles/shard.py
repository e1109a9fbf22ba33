"""Tile + hash stage: one shard's chips -> tile table and rejects table (Parquet).

Tile table, 9 rows per accepted image, sorted by (image_id, tile): image_id,
tile, xxh3_128, bmh, bmh96, solid, r_mean, g_mean, b_mean, grey_std, entropy,
dominant, dominant_share, flat_sig (see hashing.py and tiledup.tiles.table). Rejects table:
image_id, reason, one row per image that could not be tiled (possibly none).
"""

from __future__ import annotations

import logging
import os
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.grid import CHIP, N_TILES, TILE
from tiledup.tiles.hashing import hash_tiles
from tiledup.tiles.decode import RejectedImage, cut_tiles, decode_chip, read_bytes
from tiledup.run.io import write_parquet
from tiledup.tiles.manifest import read_list
from tiledup.tiles.table import BINARY_COLUMNS, TILE_SCHEMA
from tiledup.run.progress import Progress

log = logging.getLogger(__name__)

REJECT_SCHEMA = pa.schema([("image_id", pa.string()), ("reason", pa.string())])


# Per-thread chip and tile buffers, reused from chip to chip: two fresh 1.8 MB arrays
# per chip cost some 830 page faults, 1.7 ms here, more than decoding and hashing it.
_buffers = threading.local()


def tile_bytes(data: bytes, path, **solid_options) -> dict[str, np.ndarray]:
    """Decode, cut and hash one chip's JPEG bytes: the per-tile columns (9 rows each), or raise RejectedImage."""
    if not hasattr(_buffers, "chip"):
        _buffers.chip = np.empty((CHIP, CHIP, 3), np.uint8)
        _buffers.tiles = np.empty((N_TILES, TILE, TILE, 3), np.uint8)
    chip = decode_chip(data, path, out=_buffers.chip)
    return hash_tiles(cut_tiles(chip, out=_buffers.tiles), **solid_options)


def tile_chip(path, **solid_options) -> dict[str, np.ndarray]:
    """tile_bytes() of a chip file."""
    return tile_bytes(read_bytes(path), path, **solid_options)


def _fixed_binary(rows: np.ndarray) -> pa.Array:
    """(n, k) uint8 -> fixed_size_binary(k) without a Python object per row."""
    rows = np.ascontiguousarray(rows, np.uint8)
    n, k = rows.shape
    return pa.FixedSizeBinaryArray.from_buffers(pa.binary(k), n, [None, pa.py_buffer(rows.tobytes())])


def _column_buffers(rows: int) -> dict[str, np.ndarray]:
    """Empty per-tile columns for `rows` tiles: uint8 (rows, width) for binary columns, else 1-D."""
    out = {}
    for field in TILE_SCHEMA:
        if field.name in BINARY_COLUMNS:
            out[field.name] = np.empty((rows, field.type.byte_width), np.uint8)
        elif field.name not in ("image_id", "tile"):
            out[field.name] = np.empty(rows, field.type.to_pandas_dtype())
    return out


def tiles_table(image_ids: list[str], columns: dict[str, np.ndarray]) -> pa.Table:
    """The tile table of `image_ids` (in order) from their stacked per-tile columns (9 rows per image)."""
    n = len(image_ids)
    arrays = {
        "image_id": pa.array(np.repeat(np.array(image_ids, dtype=object), N_TILES), pa.string()),
        "tile": pa.array(np.tile(np.arange(N_TILES, dtype=np.int8), n), pa.int8()),
    }
    for field in TILE_SCHEMA:
        if field.name not in arrays:
            values = columns[field.name][: n * N_TILES]
            arrays[field.name] = (_fixed_binary(values) if field.name in BINARY_COLUMNS
                                  else pa.array(values, field.type))
    return pa.table(arrays, schema=TILE_SCHEMA)


def tile_shard(images_dir, list_path, tiles_path, rejects_path, *, noise_levels: int, solid_share: float,
               outlier_levels: int, solid_outliers: float, workers: int) -> tuple[pa.Table, pa.Table]:
    """Tile and hash every image of one shard list; write the tile and rejects tables."""
    if not (0 <= noise_levels <= outlier_levels <= 255 and 0.0 < solid_share <= 1.0
            and 0.0 <= solid_outliers < 1.0 and workers >= 1):
        raise TiledupError("tiles options: need 0 <= noise_levels <= outlier_levels <= 255, "
                           "0 < solid_share <= 1, 0 <= solid_outliers < 1, workers >= 1; got "
                           f"{noise_levels}, {outlier_levels}, {solid_share}, {solid_outliers}, {workers}")
    solid_options = dict(noise_levels=noise_levels, solid_share=solid_share,
                         outlier_levels=outlier_levels, solid_outliers=solid_outliers)
    try:
        ids = sorted(set(read_list(list_path)))
    except OSError as e:
        raise TiledupError(f"shard list {list_path}: {e.strerror or e}") from None
    folder = Path(images_dir)
    start = time.perf_counter()

    def work(image_id):
        try:
            return image_id, tile_chip(folder / image_id, **solid_options), None
        except RejectedImage as e:
            return image_id, None, e.reason

    accepted, rejected = [], []
    columns = _column_buffers(len(ids) * N_TILES)  # filled in place: ~1.6 kB per image
    # Decoding, hashing and most OpenCV calls release the GIL, so worker threads
    # overlap when a core is free; map() keeps the image order.
    with (ThreadPoolExecutor(max_workers=workers) as pool,
          Progress(f"shard {Path(list_path).stem}", len(ids), "images", log=log) as progress):
        results = pool.map(work, ids) if workers > 1 else map(work, ids)
        for image_id, cols, reason in results:
            progress.update()
            if reason is None:
                rows = slice(len(accepted) * N_TILES, (len(accepted) + 1) * N_TILES)
                for name, values in cols.items():
                    columns[name][rows] = values
                accepted.append(image_id)
            else:
                rejected.append((image_id, reason))
                log.warning("rejected %s: %s", image_id, reason)

    table = tiles_table(accepted, columns)
    rejects = pa.table({"image_id": pa.array([r[0] for r in rejected], pa.string()),
                        "reason": pa.array([r[1] for r in rejected], pa.string())},
                       schema=REJECT_SCHEMA)
    write_parquet(table, tiles_path)
    write_parquet(rejects, rejects_path)
    solid = int(np.count_nonzero(table.column("solid").to_numpy(zero_copy_only=False)))
    seconds = time.perf_counter() - start
    log.info("%s: %d images, %d accepted (%d tiles, %d solid), %d rejected in %.1f s (%.2f ms/image)",
             os.fspath(list_path), len(ids), len(accepted), table.num_rows, solid, len(rejected),
             seconds, 1e3 * seconds / max(len(ids), 1))
    return table, rejects
