"""Candidate search at Airbus scale: 192,556 synthetic chips (1.7 M tile hashes), time, peak memory, recall.

The tile tables are generated directly as hashes (no pixels), in 64 shards:
- Scenes: lattices of 10 x 10 tiles (64 chip positions), each seen at one or two
  passes (times), 60 % of the positions kept per pass; the other chips stand
  alone. Each ground tile of a scene is solid (cloud / no-data: 12 %), smooth
  (a hash from a family of 256 half-plane patterns shared by the whole dataset,
  like open-sea gradients: 30 %) or textured (58 %). A textured hash is a
  correlated one, as real textured tiles' are: the 16 x 16 block means are
  Gaussian noise smoothed twice with a 3 x 3 box, thresholded at their mean;
  neighbouring bits agree 81 % of the time, as in 608 non-flat tiles of 76 real
  Airbus chips (80-82 %; uniform random hashes, which this benchmark used
  before: 50 %). A second pass keeps
  the smooth tiles, changes 24-48 bits of the textured ones (other waves) and
  re-draws the solid ones.
- Chips: each tile of a chip is its ground tile with Hamming noise, Poisson with
  a per-chip level (0 for half the chips, else exponential with mean 2, 8 or
  20 bits), so that a planted overlap's best tile distance has a long tail like
  the real one (the script prints its percentiles).
- Solid tiles hash flat (all ones: one hash shared by ~100,000 tiles) or as
  noise; lone chips draw their smooth tiles from the same family: hashes shared
  by thousands of tiles are common, as in the real data.

Planted pairs = the duplicate overlaps (same scene, same pass, |dr|, |dc| <= 2)
with at least one tile pair not solid on both sides. The benchmark runs the
real `tiledup candidates` command on the shards (defaults of config/config.yaml)
and reports its wall time, its peak RSS and its recall on the planted pairs,
with and without the implied overlaps.

    .venv/bin/python benchmarks/bench_candidates.py [--chips 192556] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import yaml

from tiledup.tiles.table import DIGEST

REPO = Path(__file__).resolve().parents[1]
SCENE = 10  # scene side in tiles: 8 x 8 chip positions
SHARDS = 64
SOLID, SMOOTH, TEXTURED = 0, 1, 2
CELL_SHARES = (0.12, 0.30, 0.58)


def smooth_fields() -> np.ndarray:
    """(256, 256) float32: signed distance of each of the 16 x 16 blocks from 256 straight edges
    (16 angles x 16 offsets); a smooth tile's hash is the sign of one of them (a half-plane)."""
    y, x = (np.mgrid[0:16, 0:16] - 7.5).reshape(2, -1)
    out = [np.cos(angle) * x + np.sin(angle) * y - shift
           for angle in np.linspace(0, 2 * np.pi, 16, endpoint=False) for shift in np.linspace(-6, 6, 16)]
    return np.array(out, np.float32)


def smooth_hashes(fields: np.ndarray, pattern: np.ndarray, sigma: np.ndarray, rng, chunk: int = 65536):
    """Hashes of smooth tiles: a half-plane whose edge blurs with noise of `sigma` blocks. Noise flips
    bits near the edge only, as it does in a real gradient tile (elsewhere block means are far from
    the tile mean)."""
    out = np.empty((len(pattern), 32), np.uint8)
    for s in range(0, len(pattern), chunk):
        f = fields[pattern[s:s + chunk]] + sigma[s:s + chunk, None] * rng.standard_normal(
            (len(pattern[s:s + chunk]), 256), dtype=np.float32)
        out[s:s + chunk] = np.packbits(f >= 0, axis=1, bitorder="little")
    return out


def textured_hashes(n: int, rng, chunk: int = 65536) -> np.ndarray:
    """(n, 32) uint8 hashes of textured tiles: smoothed noise block means above their mean (bits in
    BlockMeanHash order: row-major, least significant bit first)."""
    out = np.empty((n, 32), np.uint8)
    for s in range(0, n, chunk):
        f = rng.standard_normal((min(chunk, n - s), 16, 16), dtype=np.float32)
        for _ in range(2):  # 3 x 3 box, twice
            f = f + np.roll(f, 1, 1) + np.roll(f, -1, 1)
            f = f + np.roll(f, 1, 2) + np.roll(f, -1, 2)
        out[s:s + chunk] = np.packbits((f >= f.mean(axis=(1, 2), keepdims=True)).reshape(len(f), 256),
                                       axis=1, bitorder="little")
    return out


def flip_bits(codes: np.ndarray, flips: np.ndarray, rng, chunk: int = 65536) -> np.ndarray:
    """Flip about `flips` random bits of each code (each bit with probability flips / 256)."""
    out = codes.copy()
    for s in range(0, len(codes), chunk):
        p = (flips[s:s + chunk] / 256.0).astype(np.float32)[:, None]
        mask = rng.random((len(p), 256), dtype=np.float32) < p
        out[s:s + chunk] ^= np.packbits(mask, axis=1)
    return out


def generate(n_chips: int, seed: int = 0):
    """Per-tile arrays (image, tile, bmh, solid, digest), the planted duplicate overlaps, each chip's scene (-1: none)."""
    rng = np.random.default_rng(seed)
    fields = smooth_fields()
    positions = [(r, c) for r in range(SCENE - 2) for c in range(SCENE - 2)]
    # scenes until about half the chips sit in one
    scene_chips, n_scene_chips, s = [], 0, 0
    while n_scene_chips < n_chips // 2:
        for p in range(1 + (rng.random() < 0.5)):
            kept = rng.random(len(positions)) < 0.6
            for (r, c), k in zip(positions, kept):
                if k:
                    scene_chips.append((s, p, r, c))
            n_scene_chips = len(scene_chips)
        s += 1
    scene_chips = np.array(scene_chips[: n_chips], np.int64)
    n_scenes = s
    n_lone = n_chips - len(scene_chips)

    # ground tiles per scene and pass: cell type, hash (textured), edge pattern (smooth)
    cells = n_scenes * SCENE * SCENE
    kind = rng.choice(3, cells, p=CELL_SHARES)
    ground = textured_hashes(cells, rng)
    pattern = rng.integers(0, len(fields), cells)
    second = flip_bits(ground, np.where(kind == TEXTURED, rng.integers(24, 49, cells), 0), rng)

    # scene chips' tiles
    sc, sp, sr, scol = scene_chips.T
    tr, tcol = np.divmod(np.arange(9), 3)
    cell = (sc[:, None] * SCENE + sr[:, None] + tr) * SCENE + scol[:, None] + tcol  # (chips, 9)
    cell = cell.ravel()
    base = np.where((np.repeat(sp, 9) == 0)[:, None], ground[cell], second[cell])
    tile_kind, tile_pattern = kind[cell], pattern[cell]
    # lone chips' tiles (their smooth tiles from the same edge patterns: hashes common dataset-wide)
    lone_kind = rng.choice(3, n_lone * 9, p=CELL_SHARES)
    lone = textured_hashes(n_lone * 9, rng)
    codes = np.concatenate([base, lone])
    kinds = np.concatenate([tile_kind, lone_kind])
    patterns = np.concatenate([tile_pattern, rng.integers(0, len(fields), n_lone * 9)])

    # per-chip noise level: textured tiles get Poisson flips anywhere, smooth ones a blurred edge
    level = np.where(rng.random(n_chips) < 0.5, 0.0,
                     rng.exponential(rng.choice([2.0, 8.0, 20.0], n_chips, p=[0.6, 0.3, 0.1])))
    flips = rng.poisson(np.repeat(level, 9)).clip(0, 128)
    codes = flip_bits(codes, flips, rng)
    smooth = kinds == SMOOTH
    codes[smooth] = smooth_hashes(fields, patterns[smooth], 0.05 + np.repeat(level, 9)[smooth] / 10, rng)
    solid = kinds == SOLID
    flat = solid & (rng.random(len(codes)) < 0.5)
    codes[flat] = 0xFF  # a flat tile: every block mean equals the tile mean
    codes[solid & ~flat] = rng.integers(0, 256, ((solid & ~flat).sum(), 32), dtype=np.uint8)  # JPEG noise

    # image ids: 9 hex digits like Airbus, shuffled so that scenes are spread over the id range
    ids = np.array([f"{v:09x}.jpg" for v in rng.choice(16 ** 9, n_chips, replace=False)], dtype=object)
    image = np.repeat(np.arange(n_chips), 9)
    digest = rng.integers(0, 2 ** 63, (len(codes), 2), dtype=np.int64).view(np.uint8)
    digest[flat] = 0  # flat tiles of one colour are pixel-identical

    planted = planted_overlaps(scene_chips, ids, solid.reshape(-1, 9), codes.reshape(-1, 9, 32))
    scene = np.r_[scene_chips[:, 0], np.full(n_lone, -1)]
    return ids, image, np.tile(np.arange(9, dtype=np.int8), n_chips), codes, solid, digest, planted, scene


def planted_overlaps(scene_chips, ids, solid, codes):
    """Duplicate overlaps (same scene and pass) with an informative tile pair: (img1, img2, tag, best
    distance over tile pairs non-solid on both sides, -1 if none)."""
    import pandas as pd

    from tiledup.grid import OFFSETS, offset_tag, partner_tag, tag_tile_pairs
    from tiledup.discovery.hash_search import as_words, hamming

    words = as_words(codes.reshape(-1, 32)).reshape(len(codes), 9, -1)
    chips = pd.DataFrame(scene_chips, columns=["s", "p", "r", "c"]).assign(k=np.arange(len(scene_chips)))
    out = []
    for dr, dc in OFFSETS:
        if (dr, dc) <= (0, 0):
            continue  # each unordered pair once; two chips of one pass never share a position
        m = chips.merge(chips.assign(r=chips.r - dr, c=chips.c - dc), on=["s", "p", "r", "c"],
                        suffixes=("_a", "_b"))
        a, b = m.k_a.to_numpy(), m.k_b.to_numpy()
        pairs = tag_tile_pairs(offset_tag(dr, dc))
        dist = np.stack([hamming(words[a, t], words[b, u]) for t, u in pairs])
        both_solid = np.stack([solid[a, t] & solid[b, u] for t, u in pairs])
        content = np.stack([~solid[a, t] & ~solid[b, u] for t, u in pairs])
        best = np.where(content, dist, 10**6).min(axis=0)
        best[best == 10**6] = -1
        keep = ~both_solid.all(axis=0)
        tag = offset_tag(dr, dc)
        for x, y, d in zip(ids[a[keep]], ids[b[keep]], best[keep]):
            out.append((x, y, tag, int(d)) if x < y else (y, x, partner_tag(tag), int(d)))
    return out


def write_shards(folder: Path, ids, image, tile, codes, solid, digest) -> list[Path]:
    from tiledup.tiles.manifest import shard_name, shard_of

    shard = np.array([shard_of(i, SHARDS) for i in ids])
    paths = []
    for k in range(SHARDS):
        chips = np.flatnonzero(shard == k)
        rows = (chips[:, None] * 9 + np.arange(9)).ravel()
        binary = lambda a, w: pa.FixedSizeBinaryArray.from_buffers(  # noqa: E731
            pa.binary(w), len(rows), [None, pa.py_buffer(np.ascontiguousarray(a[rows]).tobytes())])
        table = pa.table({"image_id": pa.array(ids[image[rows]], pa.string()), "tile": pa.array(tile[rows]),
                          DIGEST: binary(digest, 16), "bmh": binary(codes, 32), "solid": pa.array(solid[rows])})
        paths.append(folder / f"{shard_name(k)}.parquet")
        pq.write_table(table, paths[-1], compression="zstd")
    return paths


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--chips", type=int, default=192_556)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--keep", type=Path, help="keep the shards and candidates in this folder")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    folder = a.keep or Path(tempfile.mkdtemp(prefix="bench_candidates_"))
    folder.mkdir(parents=True, exist_ok=True)
    try:
        t0 = time.perf_counter()
        ids, image, tile, codes, solid, digest, planted, _ = generate(a.chips, a.seed)
        paths = write_shards(folder, ids, image, tile, codes, solid, digest)
        best = np.array([p[3] for p in planted])
        print(f"generated {len(ids):,} chips, {len(codes):,} tile hashes ({solid.mean():.1%} solid) in "
              f"{len(paths)} shards, {len(planted):,} planted duplicate overlaps in {time.perf_counter() - t0:.0f} s")
        with_pair = best[best >= 0]
        print("best tile distance of a planted overlap (non-solid pairs): "
              + ", ".join(f"p{q:g} {np.percentile(with_pair, q):.0f}" for q in (50, 90, 99, 99.5, 100))
              + f"; {np.sum(best < 0):,} with no tile pair non-solid on both sides")

        options = yaml.safe_load((REPO / "config/config.yaml").read_text())["candidates"]
        out = folder / "candidates.parquet"
        cmd = [str(Path(sys.executable).parent / "tiledup"), "candidates", "--tiles", *map(str, paths),
               "--out", str(out), "--options", json.dumps(options)]
        start = time.perf_counter()
        proc = subprocess.run(cmd, capture_output=True, text=True)
        seconds = time.perf_counter() - start
        usage = resource.getrusage(resource.RUSAGE_CHILDREN)
        rss_mb, cpu = usage.ru_maxrss / 1024, usage.ru_utime + usage.ru_stime
        if proc.returncode:
            print(proc.stderr)
            return 1
        print(proc.stderr.strip())
        found = pq.read_table(out, columns=["img1", "img2", "tag", "how"]).to_pandas()
        keys = set(zip(found.img1, found.img2, found.tag))
        by_hash = set(zip(*(found[found.how == "hash"][c] for c in ("img1", "img2", "tag"))))
        want = {p[:3] for p in planted}
        print(f"candidates: {len(found):,} ({len(by_hash):,} from tile matches, {len(found) - len(by_hash):,} implied)")
        print(f"RESULT: {seconds:.1f} s wall ({cpu:.1f} s CPU; load average {os.getloadavg()[0]:.1f}), "
              f"peak RSS {rss_mb:,.0f} MB, recall on {len(want):,} planted "
              f"duplicate overlaps {len(want & keys) / len(want):.4f} "
              f"(without implied {len(want & by_hash) / len(want):.4f}); cores: {os.cpu_count()}")
    finally:
        if a.keep is None:
            shutil.rmtree(folder, ignore_errors=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
