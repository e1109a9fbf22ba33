"""Evaluation throughput: where the time of scoring one tile pair goes.

    .venv/bin/python benchmarks/bench_evaluate.py [--model results/model/dupnet.pt] [--repeat 3]

On the real chips in tests/data/airbus_samples, every chip is paired with
every other one as a full overlap (tag 08: 9 tile pairs each), and the parts of
evaluation are timed separately, in one run on the same pairs: chip decoding
(once per chip), imagehash hashes (once per tile), pixel metrics and BMH
similarities (per pair), and DupNet inference (per pair, batches of 64, on the
CPU; the default model shape, untrained, unless --model is given). Figures are
wall-clock ms per tile pair, best of --repeat.
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import numpy as np
import torch

from tiledup.scoring import baselines
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.dupnet import DupNet, load_dupnet, predict
from tiledup.run.config import defaults

DATA = Path(__file__).resolve().parents[1] / "tests" / "data" / "airbus_samples"


def best(fn, repeat):
    times = []
    for _ in range(repeat):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return min(times), out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="")
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--pairs", type=int, default=1024, help="tile pairs timed for DupNet and pixels")
    a = ap.parse_args()
    torch.set_num_threads(1)  # per core
    paths = sorted(DATA.glob("*.jpg"))
    model = load_dupnet(a.model, "cpu") if a.model else DupNet(**defaults()["train"]["model"]).eval()

    t_decode, chips = best(lambda: [cut_tiles(read_chip(p)) for p in paths], a.repeat)
    tiles = np.concatenate(chips)  # (9 * chips, 256, 256, 3)
    t_hash, hashes = best(lambda: baselines.tile_hashes(tiles), a.repeat)
    t_bmh, bmh = best(lambda: (baselines.bmh(tiles), baselines.bmh96(tiles)), a.repeat)

    rng = np.random.default_rng(0)
    i, j = rng.integers(0, len(tiles), (2, a.pairs))
    t1, t2 = tiles[i], tiles[j]
    t_pixel, _ = best(lambda: baselines.pixel_scores(t1, t2), a.repeat)
    h = {**hashes, "bmh": bmh[0], "bmh96": bmh[1]}
    t_sim, _ = best(lambda: [baselines.hamming_sim(h[k][i], h[k][j]) for k in ("bmh", "bmh96", *baselines.HASHES)],
                    a.repeat)
    t_net, _ = best(lambda: predict(model, t1, t2, 64), a.repeat)

    n_tiles, n_chips = len(tiles), len(paths)
    print(f"{n_chips} real chips, {n_tiles} tiles, {a.pairs} tile pairs, 1 core, best of {a.repeat}")
    print(f"decode + cut        {t_decode / n_chips * 1e3:8.3f} ms per chip      ({t_decode / n_tiles * 1e3:.3f} ms per tile)")
    print(f"imagehash (3 kinds) {t_hash / n_tiles * 1e3:8.3f} ms per tile")
    print(f"bmh + bmh96 (cv2)   {t_bmh / n_tiles * 1e3:8.3f} ms per tile (validation pairs only; truth uses the tile tables)")
    print(f"pixel metrics       {t_pixel / a.pairs * 1e3:8.3f} ms per tile pair")
    print(f"hash similarities   {t_sim / a.pairs * 1e3:8.3f} ms per tile pair")
    print(f"DupNet inference    {t_net / a.pairs * 1e3:8.3f} ms per tile pair ({a.pairs / t_net:.0f} pairs/s)")
    # worst case per truth tile pair: both tiles decoded and hashed for this pair alone
    per_pair = (2 * (t_decode + t_hash) / n_tiles + (t_pixel + t_sim + t_net) / a.pairs)
    print(f"per truth tile pair (upper bound, no tile shared between pairs): {per_pair * 1e3:.3f} ms"
          f" -> {1 / per_pair:.0f} tile pairs/s per core")


if __name__ == "__main__":
    main()
