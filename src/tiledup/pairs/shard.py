"""Self-supervised tile pairs of one shard, built from the tile table alone (no pixels).

Inside one chip, tile i against tile i is the same place at the same time (a
duplicate, `is_dup`), and tile i against tile j != i shows two disjoint places of
one acquisition (a non-duplicate). Every pair is stored once, in canonical order
tile1 <= tile2: 9 candidate duplicates and 36 candidate non-duplicates per image
(9 * 10 / 2 = 45 = 9 + 36; the seed's text says "36 = 9 + 27", the arithmetic
says 9 + 36).

Candidates are dropped when they carry no scene signal:
- any pair with a solid tile (no usable content);
- i != j with equal xxh3_128 digests (two copies of one cloud are not a scene difference);
- i != j where both tiles are near-solid in the same colour. The seed drops a pair
  whose absolute difference image is more than 97 % one value. Without pixels this
  is approximated from the tile table: the dominant colours agree within
  `near_solid_tol` levels per channel and share1 + share2 - 1 >= near_solid_share,
  where share = `dominant_share`. share1 + share2 - 1 is a lower bound on the pixels
  that show the dominant colour in both tiles, where the difference image is ~0, so
  the rule errs on keeping a pair (a thin strip of scene on a blue border tile keeps
  it). It is only as sharp as `dominant_share`: with shares counted within 1 level,
  every pair it drops on the real sample chips is one the pixel rule drops too; with
  the tile stage's wider noise band, flat tiles with a few levels of noise (which
  the exact-value pixel rule keeps) are dropped as well.

Balancing against the 9 duplicates per image uses the BlockMeanHash similarity
(bmh_sim = 1 - hamming(bmh1, bmh2) / 256): non-duplicates below `min_bmh_sim` are
dropped, and with `balance: rank` each image keeps at most round(nondup_per_dup *
its duplicates) non-duplicates, the most similar (hardest) first. The seed ranked
globally; ranking per image is the shard-local equivalent and keeps every kind of
scene in the set instead of the images whose tiles happen to hash alike.

Everything is numpy over all images of a shard (in blocks of CHUNK images): the
45 (i, j) combinations are index arrays broadcast over images, and Hamming
distances are np.bitwise_count of XORed uint64 words.
"""

from __future__ import annotations

import logging

import numpy as np
import pyarrow as pa

from tiledup.run.errors import TiledupError
from tiledup.grid import N_TILES
from tiledup.run.io import fixed_binary, read_table, write_parquet
from tiledup.tiles.hamming import hamming
from tiledup.tiles.table import BINARY_COLUMNS, DIGEST, columns, width

log = logging.getLogger(__name__)

TILE1, TILE2 = (a.astype(np.int8) for a in np.triu_indices(N_TILES))  # 45 canonical candidates
IS_DUP = TILE1 == TILE2
BALANCE_RULES = ("rank", "threshold", "none")
CHUNK = 4096  # images per vectorised step: bounds the (images, 45, words) temporaries to a few MB

PAIR_SCHEMA = pa.schema([
    ("image_id", pa.string()),
    ("tile1", pa.int8()),
    ("tile2", pa.int8()),
    ("is_dup", pa.bool_()),
    ("bmh_sim", pa.float32()),     # 1 - hamming(bmh) / 256
    ("bmh96_sim", pa.float32()),   # 1 - hamming(bmh96) / 768 (R, G and B hashes together)
])

# Tile-table columns this stage reads, with the fixed binary widths of the contract.
TILE_COLUMNS = columns("image_id", "tile", DIGEST, "bmh", "bmh96", "solid", "dominant", "dominant_share")


def pair_shard(tiles_path, pairs_path, *, balance: str, nondup_per_dup: float, min_bmh_sim: float,
               near_solid_share: float, near_solid_tol: int, **unknown) -> pa.Table:
    """Read one shard's tile table, build its pairs, write them atomically to `pairs_path`.

    Keywords = the `pairs` config block.
    """
    if unknown:
        raise TiledupError(f"unknown pairs option(s): {', '.join(sorted(unknown))}")
    tiles = read_table(tiles_path, TILE_COLUMNS, "tile table")
    pairs, stats = make_pairs(tiles, source=str(tiles_path), balance=balance,
                              nondup_per_dup=nondup_per_dup, min_bmh_sim=min_bmh_sim,
                              near_solid_share=near_solid_share, near_solid_tol=near_solid_tol)
    if stats["images"] == 0:
        log.warning("%s: no images (every image of the shard was rejected); writing 0 pairs", tiles_path)
    log.info("%s: %s", tiles_path, ", ".join(f"{k} {v}" for k, v in stats.items()))
    write_parquet(pairs, pairs_path)
    return pairs


def make_pairs(tiles: pa.Table, *, source: str = "<table>", balance: str, nondup_per_dup: float,
               min_bmh_sim: float, near_solid_share: float, near_solid_tol: int) -> tuple[pa.Table, dict]:
    """Pair table (PAIR_SCHEMA, sorted by image then (tile1, tile2)) and counts of what was dropped."""
    if balance not in BALANCE_RULES:
        raise TiledupError(f"pairs.balance must be one of {', '.join(BALANCE_RULES)}, got {balance!r}")
    for name, value in dict(nondup_per_dup=nondup_per_dup, min_bmh_sim=min_bmh_sim,
                            near_solid_share=near_solid_share, near_solid_tol=near_solid_tol).items():
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise TiledupError(f"pairs.{name} must be a number >= 0, got {value!r}")
    ids, t = _tile_arrays(tiles, source)
    n = len(ids)
    keep = np.empty((n, IS_DUP.size), bool)
    ham = np.empty((n, IS_DUP.size), np.int16)
    ham96 = np.empty((n, IS_DUP.size), np.int16)
    stats = dict(images=n, candidates=n * IS_DUP.size, solid=0, same_digest=0, near_solid=0)
    for lo in range(0, n, CHUNK):
        part = slice(lo, min(lo + CHUNK, n))
        k, h, h96, s = _candidates({name: a[part] for name, a in t.items()},
                                   near_solid_share, near_solid_tol)
        keep[part], ham[part], ham96[part] = k, h, h96
        for name, count in s.items():
            stats[name] += count

    before = int(keep[:, ~IS_DUP].sum())
    keep &= _balance(keep, ham, ham96, balance, nondup_per_dup, min_bmh_sim)
    stats["balance"] = before - int(keep[:, ~IS_DUP].sum())

    img, cand = np.nonzero(keep)  # row-major: by image, then canonical (tile1, tile2)
    pairs = pa.table({
        "image_id": ids.take(pa.array(img)),
        "tile1": TILE1[cand],
        "tile2": TILE2[cand],
        "is_dup": IS_DUP[cand],
        "bmh_sim": (1 - ham[img, cand] / np.float32(256)).astype(np.float32),
        "bmh96_sim": (1 - ham96[img, cand] / np.float32(768)).astype(np.float32),
    }, schema=PAIR_SCHEMA)
    stats["dups"] = int(IS_DUP[cand].sum())
    stats["nondups"] = len(cand) - stats["dups"]
    return pairs, stats


def _candidates(t: dict, near_solid_share: float, near_solid_tol: int):
    """Filters and Hamming distances of the 45 candidates of a block of images: (n, 45) arrays."""
    i, j = TILE1, TILE2
    solid = t["solid"][:, i] | t["solid"][:, j]
    same_digest = (t["xxh3_128"][:, i] == t["xxh3_128"][:, j]).all(-1) & ~IS_DUP
    near_solid = ((t["share"][:, i] + t["share"][:, j] - 1 >= near_solid_share)
                  & (np.abs(t["dominant"][:, i] - t["dominant"][:, j]).max(-1) <= near_solid_tol)
                  & ~IS_DUP)
    ham, ham96 = _hamming(t["bmh"]), _hamming(t["bmh96"])
    # Count each dropped candidate under the first rule that drops it.
    stats = dict(solid=int(solid.sum()), same_digest=int((same_digest & ~solid).sum()),
                 near_solid=int((near_solid & ~solid & ~same_digest).sum()))
    return ~(solid | same_digest | near_solid), ham, ham96, stats


def _hamming(words: np.ndarray) -> np.ndarray:
    """(n, 9, w) uint64 hashes -> (n, 45) int16 Hamming distances of the canonical candidates.

    Tile i against the slice of tiles i..8 (in canonical order) avoids gathering
    copies: about twice as fast as fancy indexing with TILE1, TILE2.
    """
    out = np.empty((len(words), IS_DUP.size), np.int16)
    k = 0
    for i in range(N_TILES):
        out[:, k:k + N_TILES - i] = hamming(words[:, i, None], words[:, i:], np.int16)
        k += N_TILES - i
    return out


def _balance(keep, ham, ham96, balance, nondup_per_dup, min_bmh_sim) -> np.ndarray:
    """Mask of candidates that survive balancing; duplicates always survive."""
    if balance == "none":
        return np.ones_like(keep)
    nondup = keep & ~IS_DUP & (1 - ham / 256 >= min_bmh_sim)
    if balance == "rank":
        # Hardest first: smallest bmh distance, ties by bmh96 distance, then canonical order.
        key = np.where(nondup, ham.astype(np.int32) * 1024 + ham96, np.iinfo(np.int32).max)
        order = np.argsort(key, axis=1, kind="stable")
        rank = np.empty_like(order)
        np.put_along_axis(rank, order, np.arange(key.shape[1])[None, :], axis=1)
        cap = np.floor(nondup_per_dup * (keep & IS_DUP).sum(1) + 0.5).astype(np.int64)
        nondup &= rank < cap[:, None]
    return nondup | IS_DUP


def _tile_arrays(tiles: pa.Table, source: str) -> tuple[pa.Array, dict[str, np.ndarray]]:
    """Image ids (one per image) and per-image arrays of the tile table, checked against the contract.

    xxh3_128, bmh and bmh96 become uint64 words so that equality and Hamming distance
    are a few word operations per pair.
    """
    missing = [c for c in TILE_COLUMNS if c not in tiles.column_names]
    if missing:
        raise TiledupError(f"{source}: tile table lacks column(s) {', '.join(missing)}")
    for name in TILE_COLUMNS:
        nulls = tiles[name].null_count
        if nulls:
            raise TiledupError(f"{source}: column {name} has {nulls} null value(s)")
    if tiles.num_rows % N_TILES or not _one_block_per_image(tiles):
        tiles = tiles.sort_by([("image_id", "ascending"), ("tile", "ascending")])
        if tiles.num_rows % N_TILES or not _one_block_per_image(tiles):
            raise TiledupError(f"{source}: expected {N_TILES} rows (tiles 0-{N_TILES - 1}) per image; "
                               f"{_bad_images(tiles)}")
    n = tiles.num_rows // N_TILES
    binary = {name: fixed_binary(tiles[name], width(name), name, source).reshape(n, N_TILES, width(name))
              for name in BINARY_COLUMNS if name in TILE_COLUMNS}
    arrays = {
        "xxh3_128": binary["xxh3_128"].view(np.uint64),
        "bmh": binary["bmh"].view(np.uint64),
        "bmh96": binary["bmh96"].view(np.uint64),
        "dominant": binary["dominant"].astype(np.int16),
        "solid": tiles["solid"].to_numpy().reshape(n, N_TILES),
        "share": tiles["dominant_share"].to_numpy().astype(np.float32).reshape(n, N_TILES),
    }
    ids = tiles["image_id"].combine_chunks().take(pa.array(np.arange(0, tiles.num_rows, N_TILES)))
    return ids, arrays


def _one_block_per_image(tiles: pa.Table) -> bool:
    """True if rows come in blocks of 9 of one image with tiles 0..8, each image in one block."""
    n = tiles.num_rows // N_TILES
    tile = tiles["tile"].to_numpy().reshape(n, N_TILES)
    if not (tile == np.arange(N_TILES)).all():
        return False
    codes = tiles["image_id"].combine_chunks().dictionary_encode().indices.to_numpy().reshape(n, N_TILES)
    return bool((codes == codes[:, :1]).all()) and len(np.unique(codes[:, 0])) == n


def _bad_images(tiles: pa.Table) -> str:
    """Name the images whose rows break the 9-tiles-per-image contract (first few)."""
    ids = tiles["image_id"].to_numpy(zero_copy_only=False)
    tile = tiles["tile"].to_numpy()
    uniq, start, count = np.unique(ids, return_index=True, return_counts=True)
    bad = [u for u, s, c in zip(uniq, start, count)
           if c != N_TILES or sorted(tile[s:s + c].tolist()) != list(range(N_TILES))]
    return f"{len(bad)} image(s) break this, e.g. {', '.join(map(str, bad[:5]))}"
