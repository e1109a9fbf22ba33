"""Certain evidence on a folder of chips: which overlaps the evidence rule certifies as duplicates.

    .venv/bin/python benchmarks/bench_certain.py --images DIR [--truth FILE] [--all-pairs | --listed-pairs]

Every chip is tiled with the tile stage's own code (default options), and the overlaps
are scored by tiledup.scoring.overlaps' evidence rule alone (no DupNet: certain evidence
needs none). Overlaps: the truth file's lines, and with --all-pairs every other overlap
(25 tags) of every two chips, which counts as "not duplicate" when the truth is complete;
--listed-pairs does so for the chip pairs the truth lists only (the hardest: the same
place at a wrong offset).
Prints how many overlaps are certain, split by the truth, and lists the certain
overlaps that the truth does not call duplicates (or all of them without a truth).
The `evidence` options are the defaults, unless --evidence gives a JSON object.
"""

from __future__ import annotations

import argparse
import itertools
import json
from pathlib import Path

import numpy as np
import pandas as pd

from tiledup.grid import TAGS
from tiledup.scoring.overlaps import ChipCache, TileTable, score_overlaps
from tiledup.tiles.shard import tile_chip


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--images", required=True, type=Path)
    ap.add_argument("--truth", type=Path, help="dup_truth file (img1 img2 tag is_dup per line)")
    ap.add_argument("--all-pairs", action="store_true", help="also every other overlap of every two chips")
    ap.add_argument("--listed-pairs", action="store_true", help="also every other overlap of the truth's chip pairs")
    ap.add_argument("--evidence", default="{}", help="the `evidence` config block as JSON")
    a = ap.parse_args()
    images = sorted(p.name for p in a.images.glob("*.jpg"))
    cols = [tile_chip(a.images / i) for i in images]
    table = TileTable(np.array(images, object), *(np.stack([c[k] for c in cols])
                                                  for k in ("solid", "dominant", "bmh", "bmh96")))
    truth = pd.DataFrame(columns=["img1", "img2", "tag", "is_dup"])
    if a.truth:
        truth = pd.read_csv(a.truth, sep=r"\s+", comment="#", header=None, names=["img1", "img2", "tag", "is_dup"],
                            dtype=str)
        truth["is_dup"] = truth.is_dup.astype(int).astype(bool)
    overlaps = truth.copy()
    if a.all_pairs or a.listed_pairs:
        order = {frozenset((x, y)): (x, y) for x, y in zip(truth.img1, truth.img2)}
        rows = []
        for x, y in itertools.combinations(images, 2):
            if a.listed_pairs and frozenset((x, y)) not in order:
                continue
            x, y = order.get(frozenset((x, y)), (x, y))
            rows += [(x, y, t) for t in TAGS]
        every = pd.DataFrame(rows, columns=["img1", "img2", "tag"])
        every = every.merge(truth, on=["img1", "img2", "tag"], how="left")
        every["is_dup"] = every.is_dup.fillna(False).astype(bool)
        overlaps = every
    scored, _ = score_overlaps(overlaps[["img1", "img2", "tag"]].reset_index(drop=True), table,
                               ChipCache(a.images), None, 64, json.loads(a.evidence), methods=("pixel_mad",))
    scored["is_dup"] = overlaps.is_dup.to_numpy(bool) if a.truth else False
    certain = scored[scored.certain]
    print(f"{len(images)} chips, {len(scored):,} overlaps ({int(scored.is_dup.sum())} duplicates by the truth, "
          f"{int(scored.decidable.sum()):,} decidable)")
    if a.truth:
        dups = scored[scored.is_dup]
        print(f"certain: {int(certain.is_dup.sum())} of {len(dups)} duplicates "
              f"({int(dups.decidable.sum())} decidable); {int((~certain.is_dup).sum())} of "
              f"{int((~scored.is_dup).sum()):,} non-duplicates")
    shown = certain[~certain.is_dup] if a.truth else certain
    for r in shown.itertuples():
        print(f"  certain{'' if a.truth is None else ', NOT a duplicate by the truth'}: {r.img1} {r.img2} {r.tag} "
              f"({r.n_same}/{r.n_tile_pairs} tile pairs)")


if __name__ == "__main__":
    main()
