"""Overlaps as evidence: one overlap (img1, img2, tag) -> its tile pairs -> scores -> one score.

Shared by the evaluation (overlaps from a dup_truth file) and discovery's
verify (overlaps found by the candidate search): expanding an overlap into its
tile pairs (grid.tag_tile_pairs), deciding which pairs are evidence, scoring
them with DupNet and the baselines, and taking the minimum. An overlap is a
duplicate only if every tile pair is, so its score is the minimum over its
informative pairs, for every method (all are similarities). Tile pairs solid
on both sides carry no evidence; an overlap with no informative pair is
"undecidable" (counted and listed, never guessed).
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from . import baselines
from .errors import TiledupError
from .grid import tag_tile_pairs
from .images import RejectedImage, cut_tiles, read_chip

METHODS = ("dupnet", *baselines.METHODS)


class ChipCache:
    """Decoded chips by image id, each decoded once and dropped after its last announced use.

    `expect(ids)` announces every future use (one per tile-pair side); a chip stays
    in memory only while uses are pending, so memory follows the images still
    needed, not the whole truth file; within one pass over announced uses no chip is decoded twice.
    """

    def __init__(self, images_dir):
        self.images_dir = Path(images_dir)
        self.chips: dict[str, np.ndarray] = {}
        self.pending: dict[str, int] = {}
        self.decodes = 0

    def expect(self, image_ids) -> None:
        for image_id in image_ids:
            self.pending[image_id] = self.pending.get(image_id, 0) + 1

    def release(self, image_ids) -> None:
        """Withdraw one announced use of each chip (a hold taken with expect); drop chips left unused."""
        for image_id in image_ids:
            self.pending[image_id] = self.pending.get(image_id, 1) - 1
            if self.pending[image_id] <= 0:
                del self.pending[image_id]
                self.chips.pop(image_id, None)

    def tiles(self, image_id: str) -> np.ndarray:
        """(9, 256, 256, 3) tiles of one image, for one announced use."""
        tiles = self.chips.get(image_id)
        if tiles is None:
            try:
                tiles = cut_tiles(read_chip(self.images_dir / image_id))
            except RejectedImage as e:  # the tile stage accepted it: the file changed since
                raise TiledupError(f"{e} (accepted by the tile stage earlier; re-run the workflow)") from None
            self.decodes += 1
            self.chips[image_id] = tiles
        self.pending[image_id] = self.pending.get(image_id, 1) - 1
        if self.pending[image_id] <= 0:
            del self.chips[image_id], self.pending[image_id]
        return tiles


class PairScorer:
    """Collects tile pairs and scores them in batches with DupNet and every baseline."""

    def __init__(self, model, batch_size: int = 64):
        self.model, self.batch_size = model, batch_size
        self.buf: list[tuple] = []
        self.scores: dict[str, list[np.ndarray]] = {m: [] for m in METHODS}

    def add(self, tile1, tile2, hashes1: dict, hashes2: dict) -> None:
        self.buf.append((tile1, tile2, hashes1, hashes2))
        if len(self.buf) >= self.batch_size:
            self.flush()

    def flush(self) -> None:
        if not self.buf:
            return
        t1 = np.stack([b[0] for b in self.buf])
        t2 = np.stack([b[1] for b in self.buf])
        h1 = {k: np.stack([b[2][k] for b in self.buf]) for k in self.buf[0][2]}
        h2 = {k: np.stack([b[3][k] for b in self.buf]) for k in self.buf[0][3]}
        from .model import predict

        self.scores["dupnet"].append(predict(self.model, t1, t2, self.batch_size))
        for name, s in baselines.pair_scores(t1, t2, h1, h2).items():
            self.scores[name].append(s)
        self.buf = []

    def result(self) -> pd.DataFrame:
        self.flush()
        return pd.DataFrame({m: np.concatenate(v) if v else np.zeros(0, np.float32)
                             for m, v in self.scores.items()})


def tile_hashes(tile: np.ndarray, bmh=None, bmh96=None) -> dict:
    """All hashes of one tile; bmh/bmh96 from the tile table when known, else computed."""
    h = {k: v[0] for k, v in baselines.tile_hashes(tile[None]).items()}
    h["bmh"] = np.frombuffer(bmh, np.uint8) if bmh is not None else baselines.bmh(tile[None])[0]
    h["bmh96"] = np.frombuffer(bmh96, np.uint8) if bmh96 is not None else baselines.bmh96(tile[None])[0]
    return h


def expand(overlaps: pd.DataFrame, solid: dict) -> pd.DataFrame:
    """One row per tile pair of every overlap: overlap (row index), img1, tile1, img2, tile2, informative."""
    rows = [(k, o.img1, t1, o.img2, t2)
            for k, o in enumerate(overlaps.itertuples()) for t1, t2 in tag_tile_pairs(o.tag)]
    pairs = pd.DataFrame(rows, columns=["overlap", "img1", "tile1", "img2", "tile2"])
    both_solid = [solid[(a, t)] and solid[(b, u)]
                  for a, t, b, u in zip(pairs.img1, pairs.tile1, pairs.img2, pairs.tile2)]
    pairs["informative"] = ~np.array(both_solid, dtype=bool)
    return pairs


def image_order(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs grouped by connected group of images, so chips are released soon after their group is done."""
    parent: dict[str, str] = {}

    def root(x):
        while parent.setdefault(x, x) != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in zip(pairs.img1, pairs.img2):
        parent[root(a)] = root(b)
    group = [root(a) for a in pairs.img1]
    return pairs.assign(group=group).sort_values(["group", "img1", "img2", "tile1"]).drop(columns="group")


def score_pairs(pairs: pd.DataFrame, tiles_table: dict, cache: ChipCache, model,
                      batch_size: int) -> pd.DataFrame:
    """Score the informative tile pairs; returns `pairs` (informative rows) with one column per method."""
    todo = image_order(pairs[pairs.informative])
    cache.expect(todo.img1)
    cache.expect(todo.img2)
    hashes: dict[tuple[str, int], dict] = {}

    def side(image_id, tile):
        tiles = cache.tiles(image_id)
        if (image_id, tile) not in hashes:
            row = tiles_table[(image_id, tile)]
            hashes[(image_id, tile)] = tile_hashes(tiles[tile], row["bmh"], row["bmh96"])
        return tiles[tile], hashes[(image_id, tile)]

    scorer = PairScorer(model, batch_size)
    for a, t, b, u in zip(todo.img1, todo.tile1, todo.img2, todo.tile2):
        tile1, h1 = side(a, t)
        tile2, h2 = side(b, u)
        scorer.add(tile1, tile2, h1, h2)
    return pd.concat([todo.reset_index(drop=True), scorer.result()], axis=1)


def aggregate(overlaps: pd.DataFrame, pairs: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Overlap score = minimum over its informative tile pairs; NaN when it has none (undecidable)."""
    out = overlaps.copy()
    out["n_tile_pairs"] = pairs.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["n_informative"] = (pairs[pairs.informative].groupby("overlap").size()
                            .reindex(range(len(out)), fill_value=0).to_numpy())
    out["decidable"] = out.n_informative > 0
    worst = scored.groupby("overlap")[list(METHODS)].min().reindex(range(len(out)))
    for m in METHODS:
        out[m] = worst[m].to_numpy(dtype=np.float32)
    return out


TILE_COLUMNS = ["image_id", "tile", "bmh", "bmh96", "solid"]  # what tile_lookup needs from the tile tables


def tile_lookup(tiles: pa.Table, image_ids) -> dict:
    """(image_id, tile) -> bmh, bmh96, solid of the given images only: memory follows the
    overlaps to score, not the whole dataset (1.7 million tiles for Airbus)."""
    wanted = pa.array(sorted(image_ids), pa.string())
    sub = tiles.filter(pc.is_in(tiles["image_id"], value_set=wanted)).to_pandas()
    return {(i, int(t)): {"bmh": b, "bmh96": b96, "solid": bool(s)}
            for i, t, b, b96, s in zip(sub.image_id, sub.tile, sub.bmh, sub.bmh96, sub.solid)}


def score_overlaps(overlaps: pd.DataFrame, tiles_table: dict, cache: ChipCache, model,
                   batch_size: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """expand -> evidence -> score_pairs -> aggregate: (overlaps with n_tile_pairs, n_informative,
    decidable and one score per method; their scored informative tile pairs)."""
    solid = {k: v["solid"] for k, v in tiles_table.items()}
    pairs = expand(overlaps, solid)
    scored = score_pairs(pairs, tiles_table, cache, model, batch_size)
    return aggregate(overlaps, pairs, scored), scored
