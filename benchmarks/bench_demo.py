"""Demo generation: time and size of the built-in demo, and how hard it is for pixel and hash baselines.

    .venv/bin/python benchmarks/bench_demo.py [--workers 2] [--options '{"scenes": 2, ...}']

Generates the demo (config defaults, or the options given) into a temporary
folder and prints wall-clock and CPU time (this process plus its workers),
chips and dup_truth lines. Then it scores every overlap of the truth with
threshold-free baselines, overlap score = worst informative tile pair (pairs
near-solid on both sides are left out): mean absolute difference, share of
unequal channel values and BlockMeanHash similarity, and prints their ROC-AUC
and the tile-pair mean-abs-diff quantiles of duplicates and non-duplicates.
"""

from __future__ import annotations

import argparse
import json
import resource
import tempfile
import time
from pathlib import Path

import cv2
import numpy as np
import pyarrow.parquet as pq
from sklearn.metrics import roc_auc_score

from tiledup.demo import generate
from tiledup.run.config import defaults
from tiledup.grid import tag_tile_pairs
from tiledup.tiles.decode import cut_tiles, read_chip


def cpu_seconds() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def near_solid(tile: np.ndarray) -> bool:
    """97 % of pixels within 3 levels of the median colour (every 4th row and column)."""
    sub = tile[::4, ::4].astype(np.int16)
    return (np.abs(sub - np.median(sub.reshape(-1, 3), axis=0)).max(axis=-1) <= 3).mean() > 0.97


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--options", default="{}", help="demo options as JSON (default: config defaults)")
    a = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        wall, cpu = time.perf_counter(), cpu_seconds()
        counts = generate(out / "images", out / "truth.txt", out / "layout.parquet", workers=a.workers,
                          **{**defaults()["demo"], **json.loads(a.options)})
        wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
        print(f"generate: {wall:.1f} s wall, {cpu:.1f} s CPU, workers={a.workers}: {counts}")

        ids = pq.read_table(out / "layout.parquet", columns=["image_id"]).column(0).to_pylist()
        tiles = {i: cut_tiles(read_chip(out / "images" / i)) for i in ids}
        solid = {i: [near_solid(t) for t in tiles[i]] for i in ids}
        bmh = {i: [np.unpackbits(cv2.img_hash.blockMeanHash(np.ascontiguousarray(t[..., ::-1]), mode=0))
                   for t in tiles[i]] for i in ids}
        labels, scores, tile_mad = [], [], {0: [], 1: []}
        for line in (out / "truth.txt").read_text().splitlines():
            a1, a2, tag, dup = line.split()
            worst = [0.0, 0.0, 1.0]  # mean abs diff, share unequal, BMH similarity
            informative = False
            for t1, t2 in tag_tile_pairs(tag):
                if solid[a1][t1] and solid[a2][t2]:
                    continue
                informative = True
                diff = np.abs(tiles[a1][t1].astype(np.int16) - tiles[a2][t2])
                mad = float(diff.mean())
                tile_mad[int(dup)].append(mad)
                sim = 1.0 - float((bmh[a1][t1] != bmh[a2][t2]).mean())
                worst = [max(worst[0], mad), max(worst[1], float((diff > 0).mean())), min(worst[2], sim)]
            if informative:
                labels.append(int(dup))
                scores.append(worst)
        labels, scores = np.array(labels), np.array(scores)
        print(f"decidable overlaps: {len(labels)} ({labels.sum()} dup, {len(labels) - labels.sum()} non-dup)")
        for k, name in enumerate(["mean abs diff", "share unequal", "BlockMeanHash sim"]):
            sign = 1 if k == 2 else -1
            print(f"  ROC-AUC {name:18s} {roc_auc_score(labels, sign * scores[:, k]):.3f}")
        q = [5, 25, 50, 75, 95]
        for dup, name in [(1, "dup"), (0, "non-dup")]:
            print(f"  tile-pair mean abs diff, {name:8s} percentiles {q}: "
                  f"{np.round(np.percentile(tile_mad[dup], q), 2).tolist()}")


if __name__ == "__main__":
    main()
