"""DupNet throughput on this machine: where the time of a training pair goes (loader and model).

Run: .venv/bin/python benchmarks/bench_train.py [--workers 2] [--pairs 512]
Uses the real chips in tests/data/airbus_samples (self-supervised pairs, half
the non-duplicates turned "another time" as in training) and the default
`train` config. Prints, in CPU time per pair (robust on a shared machine):
the loader's steps (chip decode, "another time" change, augmentation), the
model's training step and inference on 1 and 2 threads; then the loader's
throughput with the default worker count, and whether training here is bound
by the loader or the model.
"""

from __future__ import annotations

import argparse
import resource
import tempfile
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import yaml

from tiledup.model.another_time import another_time, check_another_time
from tiledup.model.augment import augment_pair, check_augment
from tiledup.tiles.decode import cut_tiles, read_chip
from tiledup.model.loader import TRAIN_STREAM, PairDataset, as_input, make_loader, read_pairs
from tiledup.model.dupnet import DupNet, predict

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


def cpu() -> float:
    """CPU seconds of this process (user + system), all its threads."""
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime


def per_call(fn, n: int) -> tuple[float, float]:
    """(CPU, wall) ms per call of fn(i) over i < n, after one warm-up call."""
    fn(0)
    c, w = cpu(), time.perf_counter()
    for i in range(n):
        fn(i)
    return (cpu() - c) / n * 1e3, (time.perf_counter() - w) / n * 1e3


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


def model_rates(cfg: dict, x: torch.Tensor, y: torch.Tensor, steps: int, threads: int) -> dict:
    """CPU and wall ms per pair of a training step and of inference, on `threads` threads."""
    torch.set_num_threads(threads)
    torch.manual_seed(0)
    net = DupNet(**cfg["model"])
    opt = torch.optim.AdamW(net.parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    loss_fn = torch.nn.BCEWithLogitsLoss()

    def step(_):
        opt.zero_grad()
        loss_fn(net(as_input(x)), y).backward()
        opt.step()

    bs = len(x)
    train_cpu, train_wall = per_call(step, steps)
    t1, t2 = np.ascontiguousarray(x[..., :3].numpy()), np.ascontiguousarray(x[..., 3:].numpy())
    t1, t2 = np.concatenate([t1, t1]), np.concatenate([t2, t2])  # batches of 64, as evaluation scores
    infer_cpu, infer_wall = per_call(lambda _: predict(net, t1, t2, batch_size=64), steps)
    return {"train_cpu": train_cpu / bs, "train_wall": train_wall / bs,
            "infer_cpu": infer_cpu / len(t1), "infer_wall": infer_wall / len(t1)}


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", type=int, default=2, help="loader workers = the rule's threads (default 2)")
    ap.add_argument("--pairs", type=int, default=512, help="pairs per measurement")
    a = ap.parse_args()
    cfg = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["train"]
    with tempfile.TemporaryDirectory() as tmp:
        pairs = read_pairs(pair_table(Path(tmp) / "pairs.parquet"), "benchmark")
    augment, retime = check_augment(cfg["augment"]), check_another_time(cfg["another_time"])
    ds = PairDataset(pairs, IMAGES, seed=0, stream=TRAIN_STREAM, augment=augment, another_time=retime)
    bs = cfg["batch_size"]
    n = len(ds)
    print(f"{n} self-supervised pairs from {IMAGES.relative_to(REPO)}; torch {torch.__version__}; "
          f"figures in CPU ms per pair (wall clock in brackets)")

    # Loader steps, one core. "another time" is timed on every non-duplicate row; in training it hits
    # share x the non-duplicates (share 0.5 of half the rows: a quarter of the pairs).
    torch.set_num_threads(1)
    tiles = {i: cut_tiles(read_chip(IMAGES / i)) for i in dict.fromkeys(pairs["image_id"].tolist())}
    decode, _ = per_call(lambda i: cut_tiles(read_chip(IMAGES / pairs["image_id"][i % n])), 64)
    nondup = np.flatnonzero(~pairs["is_dup"])
    rng = np.random.default_rng(0)

    def retimed(i):
        r = nondup[i % len(nondup)]
        t = tiles[pairs["image_id"][r]]
        another_time(t[pairs["tile1"][r]], t[pairs["tile2"][r]], rng, **retime)

    change, _ = per_call(retimed, 64)
    aug, _ = per_call(lambda i: augment_pair(tiles[pairs["image_id"][i % n]][pairs["tile1"][i % n]],
                                             tiles[pairs["image_id"][i % n]][pairs["tile2"][i % n]],
                                             rng, **augment), 64)
    whole, whole_wall = per_call(lambda i: ds[(1, i % n)], n)
    share = retime["share"] * float(np.mean(~pairs["is_dup"]))
    print(f"loader, 1 core: {whole:.2f} ({whole_wall:.2f}) per pair: chip decode {decode:.2f}, "
          f"'another time' {change:.2f} per changed pair ({share:.0%} of pairs), augmentation {aug:.2f}")
    serial = loader_rate(ds, 0, a.pairs, bs)
    parallel = loader_rate(ds, a.workers, a.pairs, bs) if a.workers else serial
    print(f"loader pairs/s: workers=0 {serial:.0f}; workers={a.workers} {parallel:.0f}")

    batch = [ds[(1, i % n)] for i in range(bs)]
    x, y = torch.stack([b[0] for b in batch]), torch.stack([b[1] for b in batch])
    steps = max(3, a.pairs // bs)
    rates = {threads: model_rates(cfg, x, y, steps, threads) for threads in (1, 2)}
    print(f"DupNet {cfg['model']}, batch {bs}:")
    for threads, r in rates.items():
        print(f"  {threads} thread(s): training step {r['train_cpu']:.2f} ({r['train_wall']:.2f}), "
              f"inference {r['infer_cpu']:.2f} ({r['infer_wall']:.2f}) = {1e3 / r['infer_wall']:.0f} pairs/s")
    model = rates[max(1, a.workers // 2)]["train_cpu"]
    print(f"training (model on {max(1, a.workers // 2)} thread(s) beside {a.workers} loader workers): "
          f"{whole + model:.2f} CPU ms per pair, loader {whole / (whole + model):.0%} of it; on {a.workers} "
          f"idle cores about {a.workers * 1e3 / (whole + model):.0f} pairs/s")


if __name__ == "__main__":
    main()
