"""Overlaps as evidence: one overlap (img1, img2, tag) -> its tile pairs -> scores -> one score.

Shared by the evaluation (overlaps from a dup_truth file) and discovery's
verify (overlaps found by the candidate search): expanding an overlap into its
tile pairs (grid.tag_tile_pairs), deciding which pairs are evidence, scoring
them with DupNet and the baselines, and taking the minimum. An overlap is a
duplicate only if every tile pair is, so its score is the minimum over its
evidence pairs, for every method (all are similarities).

The evidence rule, the same for every method (config `evidence`):

- both tiles textured: evidence, scored by each method;
- both solid, colours more than `colour_levels` apart in some channel:
  evidence of "not duplicate" (every method scores it 0);
- otherwise (at least one side solid): a pixel test. A pixel of one tile
  ("other") is unexplained when the solid tile is flat there (within
  `noise_levels` of its colour c, with a 2-pixel margin) and, in some channel
  k, it lies outside what separate radiometric processing (an offset, then
  clipping to 0..255) can turn into c_k. With m_k the other tile's own median:
  nothing can when |m_k - c_k| > `colour_levels`; at the black end
  (c_k <= `clip_levels`) values up to m_k + clip_levels can be clipped away,
  at the white end (c_k >= 255 - clip_levels) values down to m_k -
  clip_levels; a mid-tone channel is not clipped, so it must be flat: within
  `flat_levels` of m_k. `min_pixels` unexplained pixels or more: evidence of
  "not duplicate" (a cloud, ship or texture came or went); fewer: no
  evidence. So two solid tiles of one colour say nothing, and neither does
  faint near-black sea against a chip whose offset clipped it to black, but
  a textured tile against a flat one, or a small object on one of two
  otherwise equal flat tiles, says "not the same time".

An overlap with no evidence pair is "undecidable" (counted and listed, never guessed).
"""

from __future__ import annotations

import contextlib
import logging
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tiledup.scoring import baselines
from tiledup.run.config import defaults
from tiledup.run.errors import TiledupError
from tiledup.grid import GRID, tag_tile_pairs
from tiledup.tiles.decode import RejectedImage, cut_tiles, read_chip
from tiledup.tiles.table import columns

log = logging.getLogger(__name__)

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
        self.release((image_id,))
        return tiles


class PairScorer:
    """Collects tile pairs and scores them in batches with DupNet and every baseline."""

    def __init__(self, model, batch_size: int, progress=None):
        self.model, self.batch_size, self.progress = model, batch_size, progress
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
        from tiledup.model.dupnet import predict

        self.scores["dupnet"].append(predict(self.model, t1, t2, self.batch_size))
        for name, s in baselines.pair_scores(t1, t2, h1, h2).items():
            self.scores[name].append(s)
        if self.progress is not None:
            self.progress.update(len(self.buf))
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


# Evidence of one tile pair (the `evidence` column of expand / score_pairs).
TEXTURE = "texture"  # both sides textured: scored by every method
NO_EVIDENCE = "none"  # says nothing either way: left out
NOT_DUP = "not_dup"  # evidence of "not duplicate": every method scores it 0
SOLID = "solid"  # a solid side: settled by solid_evidence on the pixels (score_pairs)
PAIR_COLUMNS = ("overlap", "img1", "tile1", "img2", "tile2", "evidence", "informative")

def check_evidence(options: dict | None) -> dict:
    """Config `evidence` merged over its defaults (config/config.yaml); unknown keys and bad values are errors."""
    known = defaults()["evidence"]
    unknown = set(options or {}) - set(known)
    if unknown:
        raise TiledupError(f"evidence: unknown key(s) {sorted(unknown)}; known: {sorted(known)}")
    e = {**known, **(options or {})}
    for key in ("colour_levels", "clip_levels", "flat_levels", "noise_levels"):
        if not 0 <= e[key] <= 255:
            raise TiledupError(f"evidence.{key} {e[key]} must be within 0..255")
    if not (isinstance(e["min_pixels"], int) and e["min_pixels"] >= 1):
        raise TiledupError(f"evidence.min_pixels {e['min_pixels']} must be an integer >= 1")
    return e


def tile_colour(tile: np.ndarray) -> np.ndarray:
    """(3,) uint8 per-channel median on every 4th row and column (the tile table's `dominant` takes the
    lower median of the same samples: they may differ by a level)."""
    return np.median(tile[::4, ::4].reshape(-1, 3), axis=0).astype(np.uint8)


def colours_differ(colour1, colour2, colour_levels: float) -> bool:
    """Two solid colours more than colour_levels apart in some channel."""
    return bool(np.abs(np.asarray(colour1, np.int16) - np.asarray(colour2, np.int16)).max() > colour_levels)


def unexplained_pixels(solid_tile: np.ndarray, colour, other: np.ndarray, *,
                       colour_levels: float, clip_levels: float, flat_levels: float, noise_levels: float,
                       **_) -> int:
    """Pixels of `other` that separate radiometric processing cannot turn into the flat solid tile.

    A pixel counts when `solid_tile` is flat there (within noise_levels of `colour`, 2 px
    margin: JPEG smears what the solid tile holds) and, in some channel k, `other` lies
    outside what an offset plus clipping can map onto colour[k] (see the module docstring).
    """
    c = np.asarray(colour, np.int16)
    m = tile_colour(other).astype(np.int16)  # the other tile's own level: its offset from c is free
    lo, hi = np.zeros(3), np.full(3, 255.0)
    for k in range(3):
        if abs(m[k] - c[k]) > colour_levels:
            lo[k], hi[k] = 1.0, 0.0  # another colour altogether: nothing maps onto it
        elif c[k] <= clip_levels:
            hi[k] = m[k] + clip_levels  # black end: texture up to clip_levels above its level clips away
        elif c[k] >= 255 - clip_levels:
            lo[k] = m[k] - clip_levels
        else:
            lo[k], hi[k] = m[k] - flat_levels, m[k] + flat_levels  # mid-tone: no clipping, so no texture
    outside = cv2.inRange(np.ascontiguousarray(other), lo, hi) == 0
    flat = cv2.inRange(np.ascontiguousarray(solid_tile), np.clip(c - noise_levels, 0, 255).astype(float),
                       np.clip(c + noise_levels, 0, 255).astype(float))
    flat = cv2.erode(flat, np.ones((5, 5), np.uint8)) > 0  # 2 px away from anything the solid tile holds
    return int(np.count_nonzero(outside & flat))


def solid_evidence(tile1: np.ndarray, solid1: bool, tile2: np.ndarray, solid2: bool,
                   colour1=None, colour2=None, **evidence) -> str:
    """Evidence of a tile pair with at least one solid side: NOT_DUP or NO_EVIDENCE (module docstring).

    colour1/2: the solid sides' colours (tile table `dominant`), else taken from the pixels;
    evidence: the whole `evidence` config block (check_evidence).
    """
    e = evidence
    if not (solid1 or solid2):
        raise ValueError("solid_evidence needs a solid side")
    c1 = tile_colour(tile1) if colour1 is None else colour1
    c2 = tile_colour(tile2) if colour2 is None else colour2
    if solid1 and solid2 and colours_differ(c1, c2, e["colour_levels"]):
        return NOT_DUP
    n = 0
    if solid1:
        n = max(n, unexplained_pixels(tile1, c1, tile2, **e))
    if solid2:
        n = max(n, unexplained_pixels(tile2, c2, tile1, **e))
    return NOT_DUP if n >= e["min_pixels"] else NO_EVIDENCE


def expand(overlaps: pd.DataFrame, solid: dict, dominant: dict | None, colour_levels: float) -> pd.DataFrame:
    """One row per tile pair of every overlap: overlap (row index), img1, tile1, img2, tile2, evidence, informative.

    evidence is TEXTURE (both sides textured), NOT_DUP (two solid tiles of clearly different
    colours, known from `dominant`: (image, tile) -> tile table colour) or SOLID (a solid
    side: score_pairs settles it on the pixels). informative = evidence may be given.
    """
    rows = [(k, o.img1, t1, o.img2, t2)
            for k, o in enumerate(overlaps.itertuples()) for t1, t2 in tag_tile_pairs(o.tag)]
    pairs = pd.DataFrame(rows, columns=["overlap", "img1", "tile1", "img2", "tile2"])
    evidence = []
    for a, t, b, u in zip(pairs.img1, pairs.tile1, pairs.img2, pairs.tile2):
        s1, s2 = solid[(a, t)], solid[(b, u)]
        if s1 and s2 and dominant is not None and colours_differ(dominant[(a, t)], dominant[(b, u)], colour_levels):
            evidence.append(NOT_DUP)
        else:
            evidence.append(SOLID if s1 or s2 else TEXTURE)
    pairs["evidence"] = pd.Series(evidence, index=pairs.index, dtype=object)
    pairs["informative"] = pairs.evidence != NO_EVIDENCE
    return pairs


def image_order(pairs: pd.DataFrame) -> pd.DataFrame:
    """Pairs grouped by connected group of images, so chips are released soon after their group is done."""
    # Grouped under a union-find's root names, not scipy's connected-component labels: this order
    # fixes DupNet's batches, and another batch can change a score in its last bits (with
    # connected_components one score of the default demo's verify moved from 6.9963545e-07 to
    # 6.9963613e-07), so the order is part of the reproducible output.
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
                batch_size: int, evidence: dict, progress=None) -> pd.DataFrame:
    """Settle and score the tile pairs; returns the rows of `pairs` that are evidence, one column per method.

    TEXTURE rows are scored by DupNet and every baseline; NOT_DUP rows score 0 for every
    method; SOLID rows become NOT_DUP or are dropped (no evidence) by solid_evidence
    (the `evidence` config block). The result's `evidence` column says which.
    tiles_table[(image, tile)] holds bmh, bmh96, solid and, when known, dominant.
    `progress` (a tiledup.run.progress.Progress) counts the scored tile pairs.
    """
    e = check_evidence(evidence)
    todo = image_order(pairs[pairs.evidence != NO_EVIDENCE]).reset_index(drop=True)
    kinds = todo.evidence.to_numpy(object).copy()
    decode = kinds != NOT_DUP
    cache.expect(todo.img1[decode])
    cache.expect(todo.img2[decode])
    hashes: dict[tuple[str, int], dict] = {}

    def side(image_id, tile):
        tiles = cache.tiles(image_id)
        if (image_id, tile) not in hashes:
            row = tiles_table[(image_id, tile)]
            hashes[(image_id, tile)] = tile_hashes(tiles[tile], row["bmh"], row["bmh96"])
        return tiles[tile], hashes[(image_id, tile)]

    def colour(image_id, tile):
        return tiles_table[(image_id, tile)].get("dominant")

    scorer = PairScorer(model, batch_size, progress)
    scored_rows = []
    for k, (a, t, b, u) in enumerate(zip(todo.img1, todo.tile1, todo.img2, todo.tile2)):
        if kinds[k] == TEXTURE:
            tile1, h1 = side(a, t)
            tile2, h2 = side(b, u)
            scorer.add(tile1, tile2, h1, h2)
            scored_rows.append(k)
        elif kinds[k] == SOLID:
            kinds[k] = solid_evidence(cache.tiles(a)[t], tiles_table[(a, t)]["solid"],
                                      cache.tiles(b)[u], tiles_table[(b, u)]["solid"],
                                      colour(a, t), colour(b, u), **e)
    out = todo.assign(evidence=kinds)
    result = scorer.result()
    for m in METHODS:
        col = np.zeros(len(out), np.float32)  # NOT_DUP rows: every method says "different"
        col[scored_rows] = result[m].to_numpy(np.float32)
        out[m] = col
    return out[out.evidence != NO_EVIDENCE].reset_index(drop=True)


def aggregate(overlaps: pd.DataFrame, pairs: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Overlap score = minimum over its evidence pairs (the rows of `scored`); NaN when it has none (undecidable)."""
    out = overlaps.copy()
    out["n_tile_pairs"] = pairs.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["n_informative"] = scored.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["decidable"] = out.n_informative > 0
    methods = [m for m in scored.columns if m not in PAIR_COLUMNS]  # METHODS and any combination of them
    worst = scored.groupby("overlap")[methods].min().reindex(range(len(out)))
    for m in methods:
        out[m] = worst[m].to_numpy(dtype=np.float32)
    return out


TILE_COLUMNS = columns("image_id", "tile", "bmh", "bmh96", "solid", "dominant")  # what tile_lookup needs


def tile_lookup(tiles: pa.Table, image_ids) -> dict:
    """(image_id, tile) -> bmh, bmh96, solid, dominant of the given images only: memory follows the
    overlaps to score, not the whole dataset (1.7 million tiles for Airbus)."""
    wanted = pa.array(sorted(image_ids), pa.string())
    sub = tiles.filter(pc.is_in(tiles["image_id"], value_set=wanted)).to_pandas()
    return {(i, int(t)): {"bmh": b, "bmh96": b96, "solid": bool(s), "dominant": np.frombuffer(d, np.uint8)}
            for i, t, b, b96, s, d in zip(sub.image_id, sub.tile, sub.bmh, sub.bmh96, sub.solid, sub.dominant)}


def score_overlaps(overlaps: pd.DataFrame, tiles_table: dict, cache: ChipCache, model, batch_size: int,
                   evidence: dict, progress: str | None = None,
                   combine=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """expand -> evidence -> score_pairs -> aggregate: (overlaps with n_tile_pairs, n_informative,
    decidable and one score per method; their evidence tile pairs).

    `progress`: a label to log the scoring's progress under; `combine`: name -> function of the
    scored pairs, extra per-pair scores (e.g. the combined baseline) that evidence of "not
    duplicate" sets to 0 like every other method's.
    """
    from tiledup.run.progress import Progress

    e = check_evidence(evidence)
    # only these overlaps' tiles: verify calls this per chunk with the tiles of every candidate
    keys = [(i, t) for i in set(overlaps.img1) | set(overlaps.img2) for t in range(GRID * GRID)]
    solid = {k: tiles_table[k]["solid"] for k in keys}
    dominant = {k: tiles_table[k]["dominant"] for k in keys}
    pairs = expand(overlaps, solid, dominant, e["colour_levels"])
    n_texture = int((pairs.evidence == TEXTURE).sum())
    with (Progress(progress, n_texture, "tile pairs", log=log) if progress else contextlib.nullcontext()) as bar:
        scored = score_pairs(pairs, tiles_table, cache, model, batch_size, e, bar)
    for name, fn in (combine or {}).items():
        scored[name] = np.where(scored.evidence == NOT_DUP, 0.0, fn(scored)).astype(np.float32)
    return aggregate(overlaps, pairs, scored), scored
