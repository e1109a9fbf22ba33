"""Tile pairs for DupNet: a torch Dataset over a dataset table, and its seeded DataLoader.

A share of the non-duplicate rows (tile i, tile j) becomes "same place,
another time": (tile i, tile i changed with tile j as donor), see
tiledup.model.another_time; labels and class balance stay as the table has them.
Then both classes get the same photometric / JPEG augmentation and shared
flip / rotation (tiledup.model.augment), so none of it is a label shortcut.

Randomness is keyed by (seed, stream, epoch, row) rather than drawn from a
per-worker stream: no two workers can repeat a stream, and the augmented
pairs do not depend on the number of workers or on which worker loads which
row (same seed, same pairs). Validation uses epoch 0 for every epoch: a fixed
augmentation per row, so its loss is comparable across epochs.
"""

from __future__ import annotations

import functools
import os
import random
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from tiledup.model.another_time import another_time
from tiledup.model.augment import augment_pair
from tiledup.run.errors import TiledupError
from tiledup.grid import tile_slice
from tiledup.tiles.decode import read_chip
from tiledup.run.io import read_table
from tiledup.run.workers import one_core

COLUMNS = ["image_id", "tile1", "tile2", "is_dup"]
TRAIN_STREAM, VAL_STREAM = 1, 2


def read_pairs(path: str | Path, role: str) -> dict[str, np.ndarray]:
    """The columns DupNet needs from a dataset table; empty or malformed tables are errors."""
    table = read_table(path, COLUMNS, f"{role} table")
    if table.num_rows == 0:
        raise TiledupError(f"{path}: {role} table has no rows")
    cols = {c: table.column(c).to_numpy(zero_copy_only=False) for c in COLUMNS}
    for c in ("tile1", "tile2"):
        bad = np.flatnonzero((cols[c] < 0) | (cols[c] > 8))
        if len(bad):
            raise TiledupError(f"{path}: {role} table row {bad[0]}: {c} = {cols[c][bad[0]]} is not a tile 0-8")
    cols["is_dup"] = cols["is_dup"].astype(bool)
    return cols


def check_images(pairs: dict[str, np.ndarray], images_dir: str | Path, path: str | Path) -> None:
    """Fail before training if a table names an image that is not in the images folder."""
    images_dir = Path(images_dir)
    for image_id in dict.fromkeys(pairs["image_id"].tolist()):
        if not (images_dir / image_id).is_file():
            raise TiledupError(f"{path}: image {image_id} is not in the images folder {images_dir}")


def training_pair(t1: np.ndarray, t2: np.ndarray, is_dup: bool, rng: np.random.Generator,
                  augment: dict | None, retime: dict | None) -> tuple[np.ndarray, np.ndarray]:
    """One table row's tile pair as DupNet sees it: maybe "another time", then augmented.

    retime = the `another_time` options (None or share 0: the row as it is); augment = the
    `augment` options (None: no augmentation). Shared by training and the evaluation's
    validation pairs.
    """
    if retime and not is_dup and rng.random() < retime["share"]:
        t2 = another_time(t1, t2, rng, **retime)
    if augment is not None:
        t1, t2 = augment_pair(t1, t2, rng, **augment)
    return t1, t2


class PairDataset(Dataset):
    """Row i -> (uint8 (256, 256, 6) tensor: tile1 RGB then tile2 RGB after augmentation, float label).

    Channels last, as the tiles are in memory: a batch (N, 256, 256, 6) is DupNet's (N, 6, 256, 256)
    input by a permuted view (`as_input`), with no transposing copy in the loader.
    """

    def __init__(self, pairs: dict[str, np.ndarray], images_dir: str | Path, *, seed: int,
                 stream: int, augment: dict | None, another_time: dict | None = None):
        self.image_ids = pairs["image_id"]
        self.tile1 = pairs["tile1"].astype(np.int64)
        self.tile2 = pairs["tile2"].astype(np.int64)
        self.labels = pairs["is_dup"].astype(np.float32)
        self.images_dir = Path(images_dir)
        self.seed, self.stream, self.augment, self.another_time = seed, stream, augment, another_time
        self.epoch = 0  # for direct indexing; the loader passes the epoch with each key

    def __len__(self) -> int:
        return len(self.labels)

    def pair(self, i: int, epoch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """The augmented tile pair of row i in an epoch (default self.epoch), each (256, 256, 3) uint8 RGB."""
        # Both tiles come from one decode of the chip (~1.2 ms per 768 x 768 chip); only they are copied.
        chip = read_chip(self.images_dir / self.image_ids[i])
        t1, t2 = (np.ascontiguousarray(chip[tile_slice(t)]) for t in (self.tile1[i], self.tile2[i]))
        epoch = self.epoch if epoch is None else epoch
        rng = np.random.default_rng([self.seed, self.stream, epoch, i])
        return training_pair(t1, t2, bool(self.labels[i]), rng, self.augment, self.another_time)

    def __getitem__(self, key):
        """key = row index, or (epoch, row) as the EpochSampler yields."""
        epoch, i = key if isinstance(key, tuple) else (None, key)
        t1, t2 = self.pair(i, epoch)
        return torch.from_numpy(np.concatenate([t1, t2], axis=2)), torch.tensor(self.labels[i])


def as_input(batch: torch.Tensor) -> torch.Tensor:
    """A loader batch (N, H, W, 6) -> DupNet's input (N, 6, H, W), a channels-last view."""
    return batch.permute(0, 3, 1, 2)


def _init_worker(command_pid: int, worker_id: int) -> None:
    """One core per worker, global RNGs seeded from the loader's per-worker seed, and an exit
    as soon as the command that made the loader has ended (tiledup.run.workers)."""
    one_core(command_pid)
    s = torch.initial_seed() % 2 ** 32  # = loader base seed + worker_id: distinct per worker
    np.random.seed(s)
    random.seed(s)


class EpochSampler:
    """Yields (epoch, row) keys: the row order of an epoch is a permutation keyed by (seed, epoch).

    The epoch travels with each key, so persistent workers need no message to learn it.
    """

    def __init__(self, n: int, *, seed: int, stream: int, shuffle: bool):
        self.n, self.seed, self.stream, self.shuffle = n, seed, stream, shuffle
        self.epoch = 0

    def __len__(self) -> int:
        return self.n

    def __iter__(self):
        order = range(self.n)
        if self.shuffle:
            order = np.random.default_rng([self.seed, self.stream, self.epoch]).permutation(self.n).tolist()
        return ((self.epoch, i) for i in order)


def make_loader(dataset: PairDataset, *, batch_size: int, workers: int, shuffle: bool,
                seed: int, pin_memory: bool) -> DataLoader:
    """A loader for all epochs (set `loader.sampler.epoch` before iterating).

    Workers are started by forkserver, not fork: a forked child deadlocks in
    OpenCV's thread pool if the parent has used it; being persistent, they
    start once per training run, not once per epoch.
    """
    ctx = None
    if workers:
        import multiprocessing as mp

        ctx = "forkserver" if "forkserver" in mp.get_all_start_methods() else "spawn"
    return DataLoader(dataset, batch_size=batch_size,
                      sampler=EpochSampler(len(dataset), seed=seed, stream=dataset.stream, shuffle=shuffle),
                      num_workers=workers,
                      worker_init_fn=functools.partial(_init_worker, os.getpid()) if workers else None,
                      generator=torch.Generator().manual_seed(seed), multiprocessing_context=ctx,
                      persistent_workers=workers > 0, pin_memory=pin_memory,
                      prefetch_factor=4 if workers else None)
