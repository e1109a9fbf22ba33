"""Would the per-channel BlockMeanHash (bmh96) find duplicates the grey one misses?

On a workflow's results (a demo with its dup_truth), for every truth duplicate
overlap: the smallest grey bmh distance and the smallest bmh96 distance over its
tile pairs with content on both sides. Prints how much more often bmh96 bits
differ between duplicate tiles (per bit) and how many duplicate overlaps a bmh96
search at the same share of bits would add beyond the grey search's radius.

    .venv/bin/python benchmarks/bench_second_hash.py [RESULTS] [--radius 20]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

REPO = Path(__file__).resolve().parents[1]


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("results", nargs="?", type=Path, default=REPO / "results")
    ap.add_argument("--radius", type=int, default=20, help="the grey search radius (bits of 256)")
    a = ap.parse_args()
    sys.path.insert(0, str(REPO / "src"))
    from tiledup.grid import tag_tile_pairs
    from tiledup.discovery.hash_search import as_words, hamming
    from tiledup.dup_truth import read_truth

    tiles = pq.read_table(sorted((a.results / "tiles").glob("*.parquet")),
                          columns=["image_id", "tile", "bmh", "bmh96", "solid"]).to_pandas()
    truth, _ = read_truth(a.results / "demo" / "dup_truth.txt")
    row = {(i, t): k for k, (i, t) in enumerate(zip(tiles.image_id, tiles.tile))}
    grey = as_words(np.frombuffer(b"".join(tiles.bmh), np.uint8).reshape(-1, 32))
    colour = as_words(np.frombuffer(b"".join(tiles.bmh96), np.uint8).reshape(-1, 96))
    solid = tiles.solid.to_numpy()
    per_bit, gained, searched = [], 0, 0
    for o in truth[truth.is_dup].itertuples():
        pairs = [(row[(o.img1, i)], row[(o.img2, j)]) for i, j in tag_tile_pairs(o.tag)]
        pairs = np.array([(u, v) for u, v in pairs if not solid[u] and not solid[v]]).reshape(-1, 2)
        if not len(pairs):
            continue
        dg = hamming(grey[pairs[:, 0]], grey[pairs[:, 1]])
        dc = hamming(colour[pairs[:, 0]], colour[pairs[:, 1]])
        per_bit += list((dc[dg > 0] / 768) / (dg[dg > 0] / 256))
        searched += 1
        gained += dg.min() > a.radius and dc.min() <= 3 * a.radius
    print(f"{searched} duplicate overlaps with a tile pair with content on both sides; per bit, bmh96 differs "
          f"{np.median(per_bit):.1f}x as often as the grey bmh (median over tile pairs); a bmh96 search within "
          f"{3 * a.radius} of 768 bits would add {gained} overlaps beyond the grey radius {a.radius}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
