"""Overlaps as evidence: one overlap (img1, img2, tag) -> its tile pairs -> scores -> one score.

Shared by the evaluation (overlaps from a dup_truth file) and discovery's
verify (overlaps found by the candidate search): expanding an overlap into its
tile pairs (grid.tag_tile_pairs), deciding which pairs are evidence, scoring
them with DupNet and the baselines, and taking the minimum. An overlap is a
duplicate only if every tile pair is, so its score is the minimum over its
evidence pairs, for every method (all are similarities).

The evidence rule, the same for every method (config `evidence`):

- both tiles textured: evidence, scored by each method. Such a pair is moreover
  a certain duplicate (SAME) when, once each channel's median difference (an
  offset from separate radiometric processing) is taken out, the mean
  |difference| is at most `same_mean_levels` and the largest at most
  `same_max_levels` (JPEG noise), and the tile has real structure: at least
  `same_corners` pixels where the local structure tensor's smaller eigenvalue
  exceeds `same_corner_levels` and `same_corner_ratio` x the larger (texture
  that varies in two directions: a flat tile, or a straight edge that any shift
  along it reproduces, has none). An
  overlap whose evidence pairs are all SAME is `certain`: verify and compare
  decide it duplicate whatever DupNet says; more generally they decide by
  `decision`, DupNet's minimum with SAME pairs counted as 1.0. Each method's
  own score (DupNet's too) is left as it is, so the evaluation's per-method
  figures stay honest; the evaluation reports verify's decision separately.
  A textured pair that is not SAME is instead evidence of "not duplicate"
  (every method scores it 0) when the fine structure of its common near-flat
  part disagrees (fine_structure_differs: over the 64 x 64-pixel cells where
  both tiles are near-flat, below `fine_flat_levels`, and both hold fine
  structure of at least `fine_min_levels`, the median correlation of that
  structure is below `fine_max_corr`). Calm sea's faint waves and sensor
  noise belong to one pass: copies share them, another pass over a static
  coast does not, however alike the coast makes the two tiles look.
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
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.compute as pc

from tiledup.scoring import baselines
from tiledup.run.config import defaults
from tiledup.run.errors import TiledupError
from tiledup.run.io import fixed_binary
from tiledup.grid import N_TILES, TAGS, tag_tile_pairs
from tiledup.tiles.decode import RejectedImage, cut_tiles, read_chip
from tiledup.tiles.fine import fine_structure
from tiledup.tiles.table import HASH_BYTES, columns

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


def score_batch(model, tiles1: np.ndarray, tiles2: np.ndarray, hashes1: dict, hashes2: dict,
                methods, batch_size: int) -> dict[str, np.ndarray]:
    """The scores of `methods` for aligned tile pairs (N, 256, 256, 3); hashes1/2 hold, per side, the
    hash rows (N, ...) of the hash methods asked for (bmh, bmh96, baselines.HASHES)."""
    out = {}
    if "dupnet" in methods:
        from tiledup.model.dupnet import predict

        out["dupnet"] = predict(model, tiles1, tiles2, batch_size)
    for name in ("bmh", "bmh96", *baselines.HASHES):
        if name in methods:
            out[name] = baselines.hamming_sim(hashes1[name], hashes2[name])
    if "pixel_eq" in methods or "pixel_mad" in methods:
        out.update({k: v for k, v in baselines.pixel_scores(tiles1, tiles2).items() if k in methods})
    return {m: out[m] for m in methods}


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
        for name, v in score_batch(self.model, t1, t2, h1, h2, METHODS, self.batch_size).items():
            self.scores[name].append(v)
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
TEXTURE = "texture"  # both sides textured: scored by every method (or SAME)
SAME = "same"  # textured, equal up to JPEG noise on real structure: a certain duplicate (also scored)
NO_EVIDENCE = "none"  # says nothing either way: left out
NOT_DUP = "not_dup"  # evidence of "not duplicate": every method scores it 0
SOLID = "solid"  # a solid side: settled by solid_evidence on the pixels (score_pairs)
PAIR_COLUMNS = ("overlap", "img1", "tile1", "img2", "tile2", "evidence", "informative", "row1", "row2")

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
    for key in ("min_pixels", "same_corners"):
        if not (isinstance(e[key], int) and e[key] >= 1):
            raise TiledupError(f"evidence.{key} {e[key]} must be an integer >= 1")
    for key in ("same_mean_levels", "same_max_levels", "same_corner_levels", "same_corner_ratio",
                "fine_flat_levels", "fine_min_levels"):
        if not (isinstance(e[key], (int, float)) and e[key] >= 0):
            raise TiledupError(f"evidence.{key} {e[key]} must be a number >= 0")
    if not (isinstance(e["fine_max_corr"], (int, float)) and 0 <= e["fine_max_corr"] <= 1):
        raise TiledupError(f"evidence.fine_max_corr {e['fine_max_corr']} must be within 0..1 (0: no fine-structure test)")
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


CORNER_MARGIN = 8  # px left out at the tile's edges, where the border mirror makes corners of straight edges


def channel_samples(tile: np.ndarray) -> np.ndarray:
    """A tile's pixels on every 4th row and column, channel by channel: (3, H/4 x W/4) uint8 (numpy
    reduces along the last axis about 30x faster than across the first two)."""
    return np.ascontiguousarray(tile[::4, ::4].reshape(-1, 3).T)


def channel_offsets(sub: np.ndarray) -> np.ndarray:
    """Each channel's median of the differences `sub` (N, 3, n) of tile pairs' channel_samples, rounded:
    (N, 3), the offset separate radiometric processing leaves."""
    return np.rint(np.median(sub, axis=2))


def residual_levels(tiles1: np.ndarray, tiles2: np.ndarray,
                    offset: np.ndarray | None = None) -> tuple[np.ndarray, np.ndarray]:
    """(mean, max) |tile1 - tile2| per pair (N,) once each channel's median difference (an offset from
    separate radiometric processing; on every 4th row and column unless given) is taken out; tiles
    (N, H, W, 3) uint8."""
    if offset is None:
        offset = channel_offsets(np.subtract([channel_samples(t) for t in tiles1],
                                             [channel_samples(t) for t in tiles2], dtype=np.int16))
    mean, top = np.zeros(len(tiles1)), np.zeros(len(tiles1))
    for k in range(len(tiles1)):  # OpenCV per pair, exact in int16: 3x faster than numpy on the whole batch
        d = cv2.subtract(cv2.subtract(tiles1[k], tiles2[k], dtype=cv2.CV_16S), (*offset[k].tolist(), 0.0))
        mean[k], top[k] = cv2.norm(d, cv2.NORM_L1) / d.size, cv2.norm(d, cv2.NORM_INF)
    return mean, top


def corner_pixels(tile: np.ndarray, corner_levels: float, corner_ratio: float) -> int:
    """Pixels of a tile (grey) where the local structure tensor (5 x 5 window) has its smaller eigenvalue
    above corner_levels and above corner_ratio x the larger: texture that varies in two directions.
    Flat tiles have none, nor do straight edges: along one the smaller eigenvalue is a small share of
    the larger (an absolute level alone counts the stair steps of a strong slanted edge), so agreement
    there says nothing about the shift or the time."""
    grey = cv2.cvtColor(np.ascontiguousarray(tile), cv2.COLOR_RGB2GRAY).astype(np.float32)
    # cv2.cornerEigenValsAndVecs(grey, 5, 3)'s eigenvalues, in closed form: it also computes the
    # eigenvectors, 12x slower (5.5 ms a tile, more than DupNet's pair). Same scale and borders.
    dx = cv2.Sobel(grey, cv2.CV_32F, 1, 0, ksize=3, scale=1 / 20)  # 1 / (2^(ksize-1) x window)
    dy = cv2.Sobel(grey, cv2.CV_32F, 0, 1, ksize=3, scale=1 / 20)
    m = CORNER_MARGIN
    a, b, c = (cv2.boxFilter(x, -1, (5, 5), normalize=False)[m:-m, m:-m] for x in (dx * dx, dx * dy, dy * dy))
    half, root = (a + c) / 2, np.sqrt(((a - c) / 2) ** 2 + b * b)
    small, large = half - root, half + root  # the structure tensor's eigenvalues per pixel
    return int(np.count_nonzero((small > corner_levels) & (small > corner_ratio * large)))


def _per_tile(memo: list[dict] | None, k: int, name: str, compute):
    """A value of pair k's tile, from its memo dict (score_pairs keeps one per tile: a tile is in many
    pairs) or computed and stored there; computed each time without a memo."""
    if memo is None:
        return compute()
    if name not in memo[k]:
        memo[k][name] = compute()
    return memo[k][name]


def certain_pairs(tiles1: np.ndarray, tiles2: np.ndarray, *, same_mean_levels: float, same_max_levels: float,
                  same_corner_levels: float, same_corner_ratio: float, same_corners: int,
                  memo1: list[dict] | None = None, memo2: list[dict] | None = None, **_) -> np.ndarray:
    """(N,) bool: textured tile pairs that are certain duplicates (evidence SAME, module docstring).
    tiles1/tiles2: (N, H, W, 3) uint8, or N such tiles; memo1/memo2: per pair, dicts of values of its
    tiles (_per_tile)."""
    # The largest residual on every 4th row and column (where residual_levels takes its offset) is
    # a lower bound of the whole tile's: above same_max_levels there, the pair is not SAME, and most
    # candidates stop here at 1/16 of the cost. Half a channel's range there is a lower bound of
    # that residual whatever the offset: pairs beyond it need no median.
    n = len(tiles1)
    if not n:
        return np.zeros(0, bool)
    sub = np.subtract(*(np.stack([_per_tile(memo, k, "samples", lambda: channel_samples(tiles[k])) for k in range(n)])
                        for tiles, memo in ((tiles1, memo1), (tiles2, memo2))), dtype=np.int16)  # (N, 3, h x w)
    same = np.zeros(n, bool)
    near = np.flatnonzero((sub.max(axis=2) - sub.min(axis=2) <= 2 * same_max_levels).all(axis=1))
    if len(near):
        offset = channel_offsets(sub[near])
        residual = sub[near] - offset.astype(np.int16)[:, :, None]
        keep = np.abs(residual).max(axis=(1, 2), initial=0) <= same_max_levels
        near, offset = near[keep], offset[keep]
    if len(near):
        mean, top = residual_levels([tiles1[k] for k in near], [tiles2[k] for k in near], offset)
        same[near] = (mean <= same_mean_levels) & (top <= same_max_levels)
    for k in np.flatnonzero(same):  # structure only where the pixels agree: most candidates stop above
        corners = _per_tile(memo1, k, "corners",
                            lambda: corner_pixels(tiles1[k], same_corner_levels, same_corner_ratio))
        same[k] = corners >= same_corners
    return same


FINE_CELL = 16  # fine-structure blocks per cell side: a cell is 64 x 64 pixels, 16 cells a tile
FINE_CELL_SHARE = 0.8  # a cell is compared when both tiles are near-flat on at least this share of it


def _cells(x: np.ndarray) -> np.ndarray:
    """(64, 64) -> (16 cells, 256 values), cell by cell."""
    n = x.shape[0] // FINE_CELL
    return x.reshape(n, FINE_CELL, n, FINE_CELL).transpose(0, 2, 1, 3).reshape(n * n, -1)


def _near_flat(tile: np.ndarray, fine_flat_levels: float):
    """A tile's fine structure and where it is near-flat, both (64, 64); None when no cell is near-flat
    on FINE_CELL_SHARE of it (no pair with this tile has a cell to compare)."""
    small, high = fine_structure(cv2.cvtColor(np.ascontiguousarray(tile), cv2.COLOR_RGB2GRAY).astype(np.float32))
    mean = cv2.blur(small, (5, 5))
    flat = np.sqrt(np.maximum(cv2.blur(small * small, (5, 5)) - mean * mean, 0)) < fine_flat_levels
    if not (_cells(flat).sum(axis=1) >= FINE_CELL_SHARE * FINE_CELL * FINE_CELL).any():
        return None
    return high, flat


def fine_structure_differs(tiles1: np.ndarray, tiles2: np.ndarray, *, fine_flat_levels: float,
                           fine_min_levels: float, fine_max_corr: float, memo1: list[dict] | None = None,
                           memo2: list[dict] | None = None, **_) -> np.ndarray:
    """(N,) bool: textured tile pairs whose common near-flat part holds fine structure that does not
    agree, evidence of "not duplicate" (module docstring). Per 64 x 64-pixel cell where both tiles are
    near-flat (local std of the 4 x 4-pixel block means below fine_flat_levels, on FINE_CELL_SHARE of
    the cell) and both hold fine structure of at least fine_min_levels (rms): the absolute correlation
    of that structure between the tiles. The pair differs when the median over such cells is below
    fine_max_corr. tiles and memos as certain_pairs'."""
    out = np.zeros(len(tiles1), bool)
    if fine_max_corr <= 0:  # the test is off: no median is below 0
        return out
    need = FINE_CELL_SHARE * FINE_CELL * FINE_CELL
    for k in range(len(tiles1)):
        part1 = _per_tile(memo1, k, "near_flat", lambda: _near_flat(tiles1[k], fine_flat_levels))
        if part1 is None:
            continue
        part2 = _per_tile(memo2, k, "near_flat", lambda: _near_flat(tiles2[k], fine_flat_levels))
        if part2 is None:
            continue
        (h1, flat1), (h2, flat2) = part1, part2
        m = _cells(flat1 & flat2).astype(np.float32)
        n = m.sum(axis=1)
        ok = n >= need
        if not ok.any():
            continue
        p, q, m, n = _cells(h1)[ok] * m[ok], _cells(h2)[ok] * m[ok], m[ok], n[ok]
        sp, sq = p.sum(axis=1), q.sum(axis=1)
        vp = (p * p).sum(axis=1) / n - (sp / n) ** 2  # variances over the cell's flat part
        vq = (q * q).sum(axis=1) / n - (sq / n) ** 2
        cov = (p * q).sum(axis=1) / n - sp * sq / (n * n)
        structured = np.minimum(vp, vq) >= fine_min_levels ** 2
        if structured.any():
            # |correlation|: a hue or saturation shift can invert a channel's share of the grey structure;
            # the median over the cells: one cell of JPEG noise on faint structure does not decide
            corr = np.abs(cov[structured]) / np.sqrt(vp[structured] * vq[structured])
            out[k] = bool(np.median(corr) < fine_max_corr)
    return out


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


@dataclass
class TileTable:
    """Tile-table columns of some images as arrays, row i = the 9 tiles of images[i] (images sorted).

    About 135 bytes per tile (a dict per tile took 635: 1.1 GB at Airbus's 1.7 million tiles);
    index() maps image ids to rows in one vectorised lookup.
    """

    images: np.ndarray  # (n,) object, sorted
    solid: np.ndarray  # (n, 9) bool
    dominant: np.ndarray  # (n, 9, 3) uint8: the solid colour (per-channel median)
    bmh: np.ndarray  # (n, 9, 32) uint8
    bmh96: np.ndarray  # (n, 9, 96) uint8

    def __post_init__(self):
        self._index = pd.Index(self.images)

    def __len__(self) -> int:
        return len(self.images)

    def index(self, image_ids) -> np.ndarray:
        """Row of each image id; -1 where the table lacks it."""
        return self._index.get_indexer(np.asarray(image_ids, object))


def _tag_pair_arrays() -> tuple[dict[str, int], np.ndarray, np.ndarray]:
    """Tag -> code; (tags, 9, 2) tile pairs per tag code (padded); (tags,) pair counts."""
    codes = {tag: k for k, tag in enumerate(TAGS)}
    pairs = np.zeros((len(TAGS), N_TILES, 2), np.int8)
    count = np.zeros(len(TAGS), np.int64)
    for tag, k in codes.items():
        p = tag_tile_pairs(tag)
        pairs[k, :len(p)], count[k] = p, len(p)
    return codes, pairs, count


TAG_CODE, TAG_PAIRS, TAG_COUNT = _tag_pair_arrays()


def expand(overlaps: pd.DataFrame, table: TileTable, colour_levels: float) -> pd.DataFrame:
    """One row per tile pair of every overlap: overlap (row index), img1, tile1, img2, tile2, evidence,
    informative, and row1 / row2 (the images' rows in `table`).

    evidence is TEXTURE (both sides textured), NOT_DUP (two solid tiles of clearly different
    colours, known from the tile table) or SOLID (a solid side: score_pairs settles it on the
    pixels). informative = evidence may be given. Vectorised: no Python loop over tile pairs.
    """
    code = overlaps.tag.map(TAG_CODE)
    if code.isna().any():
        bad = overlaps.tag[code.isna()].iloc[0]
        raise TiledupError(f"unknown overlap tag {bad!r} (expected one of {', '.join(TAGS)})")
    rows1, rows2 = table.index(overlaps.img1), table.index(overlaps.img2)
    if (rows1 < 0).any() or (rows2 < 0).any():
        missing = sorted(set(overlaps.img1[rows1 < 0]) | set(overlaps.img2[rows2 < 0]))
        raise TiledupError(f"{len(missing)} image(s) not in the tile tables, e.g. {', '.join(missing[:5])}")
    code = code.to_numpy(np.int64)
    count = TAG_COUNT[code]
    overlap = np.repeat(np.arange(len(overlaps)), count)
    pos = np.arange(len(overlap)) - np.repeat(np.cumsum(count) - count, count)  # pair's place in its overlap
    t1 = TAG_PAIRS[code[overlap], pos, 0].astype(np.int64)
    t2 = TAG_PAIRS[code[overlap], pos, 1].astype(np.int64)
    r1, r2 = rows1[overlap], rows2[overlap]
    s1, s2 = table.solid[r1, t1], table.solid[r2, t2]
    far = np.abs(table.dominant[r1, t1].astype(np.int16) - table.dominant[r2, t2]).max(axis=1) > colour_levels
    evidence = np.where(s1 & s2 & far, NOT_DUP, np.where(s1 | s2, SOLID, TEXTURE)).astype(object)
    pairs = pd.DataFrame({"overlap": overlap, "img1": overlaps.img1.to_numpy(object)[overlap], "tile1": t1,
                          "img2": overlaps.img2.to_numpy(object)[overlap], "tile2": t2, "evidence": evidence,
                          "row1": r1, "row2": r2})
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


def score_pairs(pairs: pd.DataFrame, table: TileTable, cache: ChipCache, model, batch_size: int,
                evidence: dict, progress=None, methods=METHODS,
                decide_at: float | None = None) -> pd.DataFrame:
    """Settle and score the tile pairs; returns the rows of `pairs` that are evidence, one column per method.

    TEXTURE rows are scored by `methods` (DupNet and every baseline unless fewer are asked for),
    and those equal up to JPEG noise on real structure become SAME (certain_pairs; still scored,
    so that each method's figures stay its own), those whose near-flat fine structure disagrees
    NOT_DUP (fine_structure_differs; DupNet does not score them); NOT_DUP rows score 0 for every method; SOLID
    rows become NOT_DUP or are dropped (no evidence) by solid_evidence (the `evidence` config
    block). The result's `evidence` column says which.
    `decide_at` (verify's DupNet threshold) scores only what the overlaps' decisions at that
    threshold need and leaves NaN elsewhere: DupNet skips SAME pairs (a certain duplicate
    whatever it says); an overlap's TEXTURE pairs are not looked at once one of its pairs is
    NOT_DUP (its minimum is 0 whatever they score); and DupNet scores an overlap's pair with the
    lowest pixel_mad first, the rest only if that one reaches `decide_at`. So every decision,
    `certain`, and every score of an overlap decided duplicate is that of a full scoring; an
    overlap decided not duplicate gets a DupNet score below `decide_at`, not always its minimum.
    bmh and bmh96 come from `table`; imagehash's hashes (about 1 ms per tile) are computed only
    when asked for, once per tile. DupNet gets full batches of `batch_size` pairs: its rows
    gather across the batches of the cheap tests.
    `progress` (a tiledup.run.progress.Progress) counts the scored tile pairs.
    """
    e = check_evidence(evidence)
    todo = image_order(pairs[pairs.evidence != NO_EVIDENCE]).reset_index(drop=True)
    lazy = decide_at is not None and "dupnet" in methods
    if lazy:  # each overlap's SOLID pairs before its TEXTURE pairs, which a NOT_DUP makes moot
        first = pd.Series(np.arange(len(todo))).groupby(todo.overlap.to_numpy()).transform("min")
        todo = todo.assign(_first=first.to_numpy(), _texture=todo.evidence == TEXTURE).sort_values(
            ["_first", "_texture"], kind="stable").drop(columns=["_first", "_texture"]).reset_index(drop=True)
    kinds = todo.evidence.to_numpy(object).copy()
    img1, img2 = todo.img1.to_numpy(object), todo.img2.to_numpy(object)
    t1, t2 = todo.tile1.to_numpy(np.int64), todo.tile2.to_numpy(np.int64)
    r1, r2 = todo.row1.to_numpy(np.int64), todo.row2.to_numpy(np.int64)
    decode = kinds != NOT_DUP
    cache.expect(img1[decode])
    cache.expect(img2[decode])
    slow_hashes = [h for h in baselines.HASHES if h in methods]
    hash_cache: dict[tuple[int, int], dict] = {}

    def hashes(row, tile, pixels):  # imagehash's hashes of one tile, computed once
        if (row, tile) not in hash_cache:
            h = baselines.tile_hashes(pixels[None])
            hash_cache[(row, tile)] = {k: h[k][0] for k in slow_hashes}
        return hash_cache[(row, tile)]

    scores = {m: np.zeros(len(todo), np.float32) for m in methods}  # NOT_DUP rows: every method says 0
    cheap = [m for m in methods if m != "dupnet"]
    batch: list[int] = []
    sides: tuple[list, list] = ([], [])
    net: list[tuple] = []  # (row, tile1, tile2) waiting for DupNet
    overlap = todo.overlap.to_numpy(np.int64)
    n_overlaps = len(pairs) and int(pairs.overlap.max()) + 1
    left = np.bincount(overlap[kinds == TEXTURE], minlength=n_overlaps)  # TEXTURE pairs not yet flushed
    waiting: dict[int, list] = {}  # overlap -> its non-SAME TEXTURE pairs, until all are flushed
    moot = np.zeros(n_overlaps, bool)  # overlaps with a NOT_DUP pair (lazy only)
    # Per-tile values of the evidence tests (certain_pairs, fine_structure_differs), kept from a
    # tile's first TEXTURE pair to its last: a tile is in many pairs. (When that last pair is skipped,
    # its overlap decided by a NOT_DUP pair, the entry stays until this call ends.)
    key1, key2 = r1 * N_TILES + t1, r2 * N_TILES + t2
    texture = np.flatnonzero(kinds == TEXTURE)
    last_use = np.full(len(table) * N_TILES, -1, np.int64)
    np.maximum.at(last_use, key1[texture], texture)
    np.maximum.at(last_use, key2[texture], texture)
    tile_memo: dict[int, dict] = {}
    after_probe: dict[int, list] = {}  # overlap -> pairs DupNet scores only if the probe reaches decide_at

    def run_net(drain=False):  # full batches, unless draining at the end
        from tiledup.model.dupnet import predict

        while net:
            rows = [r for r, _, _ in net]
            got = predict(model, np.stack([a for _, a, _ in net]), np.stack([b for _, _, b in net]), batch_size)
            scores["dupnet"][rows] = got
            net.clear()
            for row, score in zip(rows, got):
                rest = after_probe.pop(overlap[row], None)
                if rest is not None and score >= decide_at:
                    net.extend(rest)
                elif rest is not None:  # decided not duplicate: the rest cannot change that
                    scores["dupnet"][[r for r, _, _ in rest]] = np.nan
            if len(net) < batch_size and not drain:
                return

    def ready(o):  # every TEXTURE pair of overlap o flushed: its most different pair goes first
        rows = sorted(waiting.pop(o, []), key=lambda r: scores["pixel_mad"][r[0]] if "pixel_mad" in scores else 0)
        if moot[o]:  # a NOT_DUP pair decided it: DupNet is not needed
            scores["dupnet"][[r for r, _, _ in rows]] = np.nan
            return
        if len(rows) > 1:
            after_probe[o] = rows[1:]
        net.extend(rows[:1])

    def flush():
        if not batch:
            return
        k = np.asarray(batch)
        h1 = {"bmh": table.bmh[r1[k], t1[k]], "bmh96": table.bmh96[r1[k], t1[k]]}
        h2 = {"bmh": table.bmh[r2[k], t2[k]], "bmh96": table.bmh96[r2[k], t2[k]]}
        for name in slow_hashes:
            h1[name] = np.stack([hashes(r1[i], t1[i], x)[name] for i, x in zip(k, sides[0])])
            h2[name] = np.stack([hashes(r2[i], t2[i], x)[name] for i, x in zip(k, sides[1])])
        tiles1, tiles2 = sides  # views into the decoded chips: every test below goes pair by pair
        memo1 = [tile_memo.setdefault(key, {}) for key in key1[k].tolist()]
        memo2 = [tile_memo.setdefault(key, {}) for key in key2[k].tolist()]
        same = certain_pairs(tiles1, tiles2, memo1=memo1, memo2=memo2, **e)
        kinds[k[same]] = SAME
        differ = ~same & fine_structure_differs(tiles1, tiles2, memo1=memo1, memo2=memo2, **e)
        kinds[k[differ]] = NOT_DUP
        keys = np.r_[key1[k], key2[k]]
        for key in keys[last_use[keys] <= k[-1]].tolist():
            tile_memo.pop(key, None)  # no later pair uses this tile
        for name, v in score_batch(None, tiles1, tiles2, h1, h2, cheap, batch_size).items():
            scores[name][k] = np.where(differ, np.float32(0), v)  # DupNet's stay 0: never sent to it
        if lazy:
            scores["dupnet"][k[same]] = np.nan
            moot[overlap[k[differ]]] = True
            for j, row in enumerate(k):
                o = overlap[row]
                if not (same[j] or differ[j]):
                    waiting.setdefault(o, []).append((row, sides[0][j], sides[1][j]))
                left[o] -= 1
                if left[o] == 0:
                    ready(o)
        elif "dupnet" in methods:
            net.extend((row, a, b) for row, a, b, d in zip(k, sides[0], sides[1], differ) if not d)
        if len(net) >= batch_size:
            run_net()
        if progress is not None:
            progress.update(len(k))
        batch.clear(), sides[0].clear(), sides[1].clear()

    if lazy:
        moot[overlap[kinds == NOT_DUP]] = True
    for k in np.flatnonzero(decode):
        if moot[overlap[k]]:  # only TEXTURE pairs come after a NOT_DUP (the lazy order)
            cache.release((img1[k], img2[k]))
            for name in methods:
                scores[name][k] = np.nan
            if progress is not None:
                progress.update(1)
            continue
        tiles1, tiles2 = cache.tiles(img1[k]), cache.tiles(img2[k])
        if kinds[k] == TEXTURE:
            batch.append(k)
            sides[0].append(tiles1[t1[k]])
            sides[1].append(tiles2[t2[k]])
            if len(batch) >= batch_size:
                flush()
        else:  # SOLID
            kinds[k] = solid_evidence(tiles1[t1[k]], table.solid[r1[k], t1[k]], tiles2[t2[k]],
                                      table.solid[r2[k], t2[k]], table.dominant[r1[k], t1[k]],
                                      table.dominant[r2[k], t2[k]], **e)
            moot[overlap[k]] |= lazy and kinds[k] == NOT_DUP
    flush()
    for o in [o for o in waiting if moot[o]]:  # decided by a NOT_DUP before all their pairs were flushed
        ready(o)
    run_net(drain=True)
    out = todo.assign(evidence=kinds, **scores)
    return out[out.evidence != NO_EVIDENCE].reset_index(drop=True)


def aggregate(overlaps: pd.DataFrame, pairs: pd.DataFrame, scored: pd.DataFrame) -> pd.DataFrame:
    """Overlap score = minimum over its evidence pairs (the rows of `scored`); NaN when it has none (undecidable).

    With DupNet's scores and the evidence kinds at hand, also: n_same (SAME pairs), certain (every
    evidence pair SAME) and decision, the score verify decides by: DupNet's, a SAME pair counting
    1.0 (a certain duplicate, whatever DupNet says). Each method's own column stays its own score.
    """
    out = overlaps.copy()
    out["n_tile_pairs"] = pairs.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["n_informative"] = scored.groupby("overlap").size().reindex(range(len(out)), fill_value=0).to_numpy()
    out["decidable"] = out.n_informative > 0
    methods = [m for m in scored.columns if m not in PAIR_COLUMNS]  # METHODS and any combination of them
    worst = scored.groupby("overlap")[methods].min().reindex(range(len(out)))
    for m in methods:
        out[m] = worst[m].to_numpy(dtype=np.float32)
    if "evidence" in scored:
        same = scored.evidence.to_numpy(object) == SAME
        n_same = pd.Series(same).groupby(scored.overlap.to_numpy()).sum()
        out["n_same"] = n_same.reindex(range(len(out)), fill_value=0).to_numpy(np.int64)
        out["certain"] = out.decidable.to_numpy(bool) & (out.n_same == out.n_informative).to_numpy()
        if "dupnet" in scored:
            decision = pd.Series(np.where(same, np.float32(1), scored.dupnet.to_numpy(np.float32)))
            out["decision"] = decision.groupby(scored.overlap.to_numpy()).min().reindex(range(len(out))).to_numpy(
                np.float32)
    return out


TILE_COLUMNS = columns("image_id", "tile", "bmh", "bmh96", "solid", "dominant")  # what tile_lookup needs


def tile_lookup(tiles: pa.Table, image_ids) -> TileTable:
    """The TileTable of the given images only: memory follows the overlaps to score, not the whole
    dataset (1.7 million tiles for Airbus). Each image must have tiles 0..8 once."""
    wanted = pa.array(sorted(image_ids), pa.string())
    sub = tiles.filter(pc.is_in(tiles["image_id"], value_set=wanted))
    sub = sub.sort_by([("image_id", "ascending"), ("tile", "ascending")])
    ids = sub["image_id"].to_numpy(zero_copy_only=False)
    tile = sub["tile"].to_numpy()
    n = len(ids) // N_TILES
    if len(ids) % N_TILES or not (np.array_equal(tile, np.tile(np.arange(N_TILES), n))
                                  and (ids[::N_TILES] == ids[N_TILES - 1::N_TILES]).all()):
        counts = pd.Series(ids).value_counts()
        bad = counts[counts != N_TILES]
        example = bad.index[0] if len(bad) else pd.Series(ids).iloc[0]
        raise TiledupError(f"tile table: image {example} does not have tiles 0..8 exactly once (re-run the tile stage)")
    source = "tile table"
    return TileTable(images=ids[::N_TILES].astype(object),
                     solid=sub["solid"].to_numpy(zero_copy_only=False).astype(bool).reshape(n, N_TILES),
                     dominant=fixed_binary(sub["dominant"], 3, "dominant", source).reshape(n, N_TILES, 3),
                     bmh=fixed_binary(sub["bmh"], HASH_BYTES, "bmh", source).reshape(n, N_TILES, HASH_BYTES),
                     bmh96=fixed_binary(sub["bmh96"], 3 * HASH_BYTES, "bmh96", source).reshape(
                         n, N_TILES, 3 * HASH_BYTES))


def score_overlaps(overlaps: pd.DataFrame, table: TileTable, cache: ChipCache, model, batch_size: int,
                   evidence: dict, progress: str | None = None,
                   combine=None, methods=METHODS, decide_at: float | None = None) -> tuple[pd.DataFrame, pd.DataFrame]:
    """expand -> evidence -> score_pairs -> aggregate: (overlaps with n_tile_pairs, n_informative,
    decidable and one score per method; their evidence tile pairs).

    `progress`: a label to log the scoring's progress under; `combine`: name -> function of the
    scored pairs, extra per-pair scores (e.g. the combined baseline) that evidence of "not
    duplicate" sets to 0 like every other method's; `methods`: the methods to score (verify
    needs DupNet and the cheap baselines only); `decide_at` (verify's DupNet threshold): score only what
    the decisions at it need (score_pairs).
    """
    from tiledup.run.progress import Progress

    e = check_evidence(evidence)
    pairs = expand(overlaps, table, e["colour_levels"])
    n_texture = int((pairs.evidence == TEXTURE).sum())
    with (Progress(progress, n_texture, "tile pairs", log=log) if progress else contextlib.nullcontext()) as bar:
        scored = score_pairs(pairs, table, cache, model, batch_size, e, bar, methods, decide_at)
    for name, fn in (combine or {}).items():
        scored[name] = np.where(scored.evidence == NOT_DUP, 0.0, fn(scored)).astype(np.float32)
    return aggregate(overlaps, pairs, scored), scored
