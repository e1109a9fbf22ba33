"""Near-flat duplicates the candidate search misses: is there anything in their pixels to find them by?

    .venv/bin/python benchmarks/bench_flat_duplicates.py RESULTS --duplicates FILE [--images DIR] [--pairs 60]

RESULTS is a demo run that got as far as the tile tables (a development demo or a
`bench_scale.py` run, never the default demo; or `tiledup run` on real chips, with
--images). FILE lists duplicates as `img1 img2 tag` lines, e.g. the missed ones
(`bench_candidate_recall.py RESULTS --missed 2> FILE`).

For the textured tile pairs of the first --pairs of them, and for as
many random pairs of near-flat tiles (grey std below bench_candidate_recall's
FLAT_STD, not solid), it prints percentiles of two similarities:

- the Hamming distance of a coarse block-mean hash (8 x 8 blocks, median
  threshold): what a lower-resolution BlockMeanHash would see;
- the normalised correlation of the tiles' high-pass residuals (grey minus a
  Gaussian blur of sigma 8, after a blur of sigma 1 against JPEG noise): the
  sensor noise and faint waves a same-time duplicate shares pixel for pixel;
- the share of differing sign bits of that residual's 4 x 4-pixel block means
  (64 x 64 = 4,096 bits), and what a banded locality-sensitive hash on those
  bits (L bands of k random bits; a pair is found when one band agrees) would
  find: the chance a duplicate tile pair, and a duplicate overlap (any of its
  tile pairs), is found, against the chance a random pair collides.
"""

from __future__ import annotations

import argparse
import glob
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq

from bench_candidate_recall import FLAT_STD


def grey(tile: np.ndarray) -> np.ndarray:
    return cv2.cvtColor(tile, cv2.COLOR_RGB2GRAY).astype(np.float32)


def coarse_hash(tile: np.ndarray) -> np.ndarray:
    m = cv2.resize(grey(tile), (8, 8), interpolation=cv2.INTER_AREA)
    return (m > np.median(m)).ravel()


def residual(tile: np.ndarray) -> np.ndarray:
    g = cv2.GaussianBlur(grey(tile), (0, 0), 1)
    r = g - cv2.GaussianBlur(g, (0, 0), 8)
    r -= r.mean()
    return r / (np.linalg.norm(r) + 1e-6)


def sign_bits(tile: np.ndarray) -> np.ndarray:
    r = residual(tile)
    return cv2.resize(r, (64, 64), interpolation=cv2.INTER_AREA).ravel() > 0


LSH = ((12, 32), (16, 64), (20, 128), (24, 256))  # (bits per band k, bands L)


def main() -> None:
    from tiledup.grid import tag_tile_pairs
    from tiledup.tiles.decode import cut_tiles, read_chip

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", type=Path)
    ap.add_argument("--duplicates", type=Path, required=True)
    ap.add_argument("--images", type=Path, help="the chips (default: RESULTS/demo/images)")
    ap.add_argument("--pairs", type=int, default=60)
    ap.add_argument("--seed", type=int, default=0)
    a = ap.parse_args()
    t = pq.read_table(sorted(glob.glob(str(a.results / "tiles" / "*.parquet"))),
                      columns=["image_id", "tile", "solid", "grey_std"]).to_pandas()
    solid = dict(zip(zip(t.image_id, t.tile), t.solid))
    chips: dict[str, np.ndarray] = {}

    def tile(image_id, k):
        if image_id not in chips:
            chips[image_id] = cut_tiles(read_chip((a.images or a.results / "demo" / "images") / image_id))
        return chips[image_id][k]

    dups = [line.split()[:3] for line in a.duplicates.read_text().splitlines() if line.strip()][:a.pairs]
    true_pairs = [((x, p), (y, q)) for x, y, tag in dups for p, q in tag_tile_pairs(tag)
                  if not solid[(x, p)] and not solid[(y, q)]]
    flat = t[~t.solid & (t.grey_std < FLAT_STD)].sample(2 * len(true_pairs), random_state=a.seed)
    rows = list(zip(flat.image_id, flat.tile))
    random_pairs = list(zip(rows[::2], rows[1::2]))
    owner = np.array([k for k, (x, y, tag) in enumerate(dups) for p, q in tag_tile_pairs(tag)
                      if not solid[(x, p)] and not solid[(y, q)]])
    differ = {}
    for name, pairs in (("the duplicates' textured tile pairs", true_pairs), ("random near-flat tile pairs", random_pairs)):
        dist = [int((coarse_hash(tile(*u)) != coarse_hash(tile(*v))).sum()) for u, v in pairs]
        corr = [float((residual(tile(*u)) * residual(tile(*v))).sum()) for u, v in pairs]
        print(f"{name} ({len(pairs)}): coarse hash distance (of 64) p10/p50/p90 "
              f"{np.percentile(dist, [10, 50, 90]).round(1).tolist()}; high-pass correlation p10/p50/p90/max "
              f"{np.percentile(corr, [10, 50, 90, 100]).round(3).tolist()}")
        differ[name] = np.array([float((sign_bits(tile(*u)) != sign_bits(tile(*v))).mean()) for u, v in pairs])
        print(f"  residual sign bits that differ p10/p50/p90: {np.percentile(differ[name], [10, 50, 90]).round(3).tolist()}")
    dup, rand = differ.values()
    for k, bands in LSH:
        found = 1 - (1 - (1 - dup) ** k) ** bands
        overlap_missed = np.ones(len(dups))
        np.multiply.at(overlap_missed, owner, 1 - found)
        collide = 1 - (1 - (1 - rand) ** k) ** bands
        print(f"LSH k={k} L={bands}: duplicate tile pairs found {found.mean():.3f}, duplicate overlaps found "
              f"{1 - overlap_missed[np.unique(owner)].mean():.3f}, random pairs collide {collide.mean():.1e}")


if __name__ == "__main__":
    main()
