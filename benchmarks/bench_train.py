"""DupNet throughput on this machine: augmented pairs/s from the loader, training and inference pairs/s.

Run: .venv/bin/python benchmarks/bench_train.py [--workers 2] [--pairs 256]
Uses the real chips in tests/data/airbus_samples (self-supervised pairs) and
the default `train` config. Prints whether training here is bound by the loader
or by the model (goal: loader >= model at the default worker count).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from tiledup.another_time import check_another_time
from tiledup.augment import check_augment
from tiledup.images import cut_tiles, read_chip
from tiledup.loader import TRAIN_STREAM, PairDataset, make_loader, read_pairs
from tiledup.model import DupNet, MODEL_DEFAULTS, predict

REPO = Path(__file__).resolve().parents[1]
IMAGES = REPO / "tests" / "data" / "airbus_samples"


def pair_table(path: Path) -> Path:
    rows = []
    for chip in sorted(IMAGES.glob("*.jpg")):
        tiles = cut_tiles(read_chip(chip))
        ok = [t for t in range(9) if tiles[t].std() > 4]
        rows += [(chip.name, t, t) for t in ok] + [(chip.name, i, j) for i in ok for j in ok if i < j][:len(ok)]
    pq.write_table(pa.table({"image_id": [r[0] for r in rows],
                             "tile1": pa.array([r[1] for r in rows], pa.int8()),
                             "tile2": pa.array([r[2] for r in rows], pa.int8()),
                             "is_dup": [r[1] == r[2] for r in rows]}), path)
    return path


def loader_rate(ds, workers: int, n: int, batch_size: int) -> float:
    loader = make_loader(ds, batch_size=batch_size, workers=workers, shuffle=True, seed=0, pin_memory=False)
    loader.sampler.epoch = 1
    it = iter(loader)
    next(it)  # start-up (worker processes) is not throughput
    start, done = time.perf_counter(), 0
    for epoch in range(1, 100):
        for x, _ in it:
            done += len(x)
            if done >= n:
                return done / (time.perf_counter() - start)
        loader.sampler.epoch = epoch + 1
        it = iter(loader)
    return done / (time.perf_counter() - start)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="loader workers = the rule's threads (default 2)")
    ap.add_argument("--pairs", type=int, default=256, help="pairs per measurement")
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    torch.set_num_threads(a.workers)
    with tempfile.TemporaryDirectory() as tmp:
        pairs = read_pairs(pair_table(Path(tmp) / "pairs.parquet"), "benchmark")
    ds = PairDataset(pairs, IMAGES, seed=0, stream=TRAIN_STREAM, augment=check_augment(cfg["augment"]),
                     another_time=check_another_time(cfg["another_time"]))
    bs = cfg["batch_size"]
    print(f"{len(ds)} self-supervised pairs from {IMAGES}; {a.workers} cores; torch {torch.__version__}")

    # Loader: per-pair cost split into chip decode and augmentation, then whole-loader rates.
    n = min(64, len(ds))
    t0 = time.perf_counter()
    for i in range(n):
        read_chip(IMAGES / pairs["image_id"][i])
    decode = (time.perf_counter() - t0) / n
    t0 = time.perf_counter()
    for i in range(n):
        ds[(1, i)]
    per_pair = (time.perf_counter() - t0) / n
    print(f"loader, one core: {per_pair * 1e3:.2f} ms per augmented pair, of which chip decode "
          f"{decode * 1e3:.2f} ms ({decode / per_pair:.0%})")
    serial = loader_rate(ds, 0, a.pairs, bs)
    parallel = loader_rate(ds, a.workers, a.pairs, bs) if a.workers else serial
    print(f"loader pairs/s: workers=0 {serial:.0f} (per core {serial:.0f}); "
          f"workers={a.workers} {parallel:.0f} (per core {parallel / max(1, a.workers):.0f})")

    # Model: default DupNet on ready batches (no loader), training step and inference.
    torch.manual_seed(0)
    net = DupNet(**{**MODEL_DEFAULTS, **cfg["model"]})
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()
    batch = [ds[(1, i % len(ds))] for i in range(bs)]
    x = torch.stack([b[0] for b in batch])
    y = torch.stack([b[1] for b in batch])
    steps = max(2, a.pairs // bs)
    net.train()
    for s in range(steps + 1):
        if s == 1:
            t0 = time.perf_counter()
        opt.zero_grad()
        loss_fn(net(x), y).backward()
        opt.step()
    train_rate = steps * bs / (time.perf_counter() - t0)
    tiles = x.permute(0, 2, 3, 1).numpy()
    t1, t2 = np.ascontiguousarray(tiles[..., :3]), np.ascontiguousarray(tiles[..., 3:])
    predict(net, t1, t2)
    t0 = time.perf_counter()
    reps = max(1, a.pairs // bs)
    for _ in range(reps):
        predict(net, t1, t2, batch_size=64)
    infer_rate = reps * bs / (time.perf_counter() - t0)
    print(f"DupNet {net.config}, batch {bs}: training {train_rate:.0f} pairs/s, "
          f"inference {infer_rate:.0f} pairs/s ({a.workers} threads)")
    bound = "the model" if parallel >= train_rate else "the loader"
    print(f"training here is bound by {bound}: loader/model = {parallel / train_rate:.1f} "
          f"at workers={a.workers} (loader and model share the same cores while training)")


if __name__ == "__main__":
    main()
