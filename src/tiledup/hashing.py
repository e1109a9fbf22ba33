"""Tile hashes and statistics, computed for the 9 tiles of a chip at once.

- xxh3_128: xxHash's XXH3 128-bit digest of each tile's contiguous RGB bytes
  (row-major H x W x 3), canonical (big-endian) bytes as `xxh128sum` prints
  them. An exact-copy check, not a cryptographic one, at a fraction of MD5's cost.
- bmh: BlockMeanHash mode 0, bit-for-bit equal to
  cv2.img_hash.blockMeanHash(tile_bgr, mode=BLOCK_MEAN_HASH_MODE_0). OpenCV
  resizes to 256 x 256 (a copy for our tiles), converts to grey with
  cvtColor (called here too: bit-exact whatever OpenCV's fixed-point weights,
  15-bit in OpenCV 5, and 10x faster than the same sum in numpy), takes the means of the 16 x 16 blocks of 16 x 16 pixels, sets a
  bit where a block mean is >= the mean of the whole grey tile (called
  "median" in OpenCV) and packs the bits block by block, row-major, least
  significant bit first. Block sums come from one integral image per chip,
  and the comparison is done on integer sums (sum_block * 256 >= sum_tile),
  which is exactly OpenCV's double comparison since both divisions are by
  powers of two.
- bmh96: the same hash of the R, G and B channels separately (OpenCV takes a
  one-channel image as its own grey), concatenated R, G, B.
- dominant / dominant_share / solid: a tile is solid (cloud white, no-data
  black, a flat border colour) when at least `solid_share` of its pixels lie
  within +-`noise_levels` of its dominant colour in every channel and at most
  `solid_outliers` of them lie beyond +-`outlier_levels`. JPEG noise on a flat
  area stays within a few levels; calm dark sea has texture of 3-10 levels over
  much of the tile (share far below 0.99), and a small ship or glint on an
  otherwise flat tile is a few dozen pixels far outside the band: content, not
  noise.
"""

from __future__ import annotations

import cv2
import numpy as np
import xxhash

from .grid import CHIP, GRID, N_TILES, TILE

BLOCK = 16  # BlockMeanHash mode 0: 16 x 16 blocks of 16 x 16 pixels on a 256 x 256 tile
BLOCKS = TILE // BLOCK
HASH_BYTES = BLOCKS * BLOCKS // 8  # 32
MEDIAN_STRIDE = 4  # the dominant colour is the median of every 4th row and column


def tile_digests(tiles: np.ndarray) -> np.ndarray:
    """(n, 16) uint8: xxh3-128 of each tile's RGB bytes. `tiles`: C-contiguous (n, 256, 256, 3)."""
    flat = tiles.reshape(len(tiles), -1)  # one row-major buffer per tile, no copy
    return np.frombuffer(b"".join(map(xxhash.xxh3_128_digest, flat)), np.uint8).reshape(-1, 16)


def _block_sums(integral: np.ndarray) -> np.ndarray:
    """Sums of the 16 x 16-pixel blocks from an integral image of a chip.

    integral: (CHIP+1, CHIP+1[, C]) int32 -> (9, 16, 16[, C]) int64, tiles row-major,
    blocks row-major inside each tile.
    """
    s = integral[::BLOCK, ::BLOCK].astype(np.int64)  # (49, 49[, C]) corners of the block grid
    b = s[1:, 1:] - s[:-1, 1:] - s[1:, :-1] + s[:-1, :-1]  # (48, 48[, C])
    b = b.reshape(GRID, BLOCKS, GRID, BLOCKS, *b.shape[2:]).swapaxes(1, 2)
    return b.reshape(N_TILES, BLOCKS, BLOCKS, *b.shape[4:])


def _bmh_bits(block_sums: np.ndarray) -> np.ndarray:
    """Pack BlockMeanHash bits. block_sums: (..., 16, 16) -> (..., 32) uint8."""
    lead = block_sums.shape[:-2]
    sums = block_sums.reshape(*lead, BLOCKS * BLOCKS)
    total = sums.sum(axis=-1, keepdims=True)
    bits = sums * (BLOCKS * BLOCKS) >= total  # block mean >= tile mean, in exact integers
    return np.packbits(bits, axis=-1, bitorder="little")


def grey_chip(chip: np.ndarray) -> np.ndarray:
    """Grey chip exactly as OpenCV's BlockMeanHash computes it (cvtColor BGR2GRAY on BGR = RGB2GRAY on RGB)."""
    return cv2.cvtColor(chip, cv2.COLOR_RGB2GRAY)


def block_mean_hash(tile_rgb: np.ndarray) -> bytes:
    """BlockMeanHash mode 0 of one 256 x 256 RGB (or one-channel) tile, 32 bytes."""
    if tile_rgb.ndim == 3:
        tile_rgb = cv2.cvtColor(np.ascontiguousarray(tile_rgb), cv2.COLOR_RGB2GRAY)
    s = cv2.integral(np.ascontiguousarray(tile_rgb)).astype(np.int64)[::BLOCK, ::BLOCK]
    b = s[1:, 1:] - s[:-1, 1:] - s[1:, :-1] + s[:-1, :-1]
    return _bmh_bits(b).tobytes()


def hash_chip(chip: np.ndarray, tiles: np.ndarray, *, noise_levels: int = 3,
              solid_share: float = 0.99, outlier_levels: int = 24,
              solid_outliers: float = 0.0005) -> dict[str, np.ndarray]:
    """All per-tile columns of the tile table except image_id and tile.

    chip: (768, 768, 3) RGB uint8; tiles: the same pixels as the C-contiguous
    (9, 256, 256, 3) array of images.cut_tiles. Returns arrays with 9 rows:
    xxh3_128 (9,16), bmh (9,32), bmh96 (9,96), dominant (9,3) uint8, solid bool,
    and float32 r_mean, g_mean, b_mean, grey_std, entropy, dominant_share.
    """
    grey = grey_chip(chip)  # (768, 768)
    grey_sums = _block_sums(cv2.integral(grey))  # (9, 16, 16)
    rgb_sums = _block_sums(cv2.integral(chip))  # (9, 16, 16, 3)
    bmh96 = _bmh_bits(np.moveaxis(rgb_sums, -1, 1)).reshape(N_TILES, 3 * HASH_BYTES)  # R, G, B
    means = rgb_sums.sum(axis=(1, 2)) / float(TILE * TILE)  # (9, 3)
    grey_std, entropy = _grey_stats(grey)
    dominant = _dominant(chip)  # (9, 3)
    share = _dominant_share(tiles, dominant, noise_levels)
    solid = share >= solid_share
    for t in np.flatnonzero(solid):  # few tiles: check the far outliers only where it matters
        solid[t] = 1.0 - _dominant_share(tiles[t:t + 1], dominant[t:t + 1], outlier_levels)[0] <= solid_outliers
    return {
        "xxh3_128": tile_digests(tiles),
        "bmh": _bmh_bits(grey_sums),
        "bmh96": bmh96,
        "solid": solid,
        "r_mean": means[:, 0].astype(np.float32),
        "g_mean": means[:, 1].astype(np.float32),
        "b_mean": means[:, 2].astype(np.float32),
        "grey_std": grey_std,
        "entropy": entropy,
        "dominant": dominant,
        "dominant_share": share,
    }


def _grey_stats(grey: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Per tile: standard deviation and Shannon entropy (bits) of the grey histogram, float32 (9,)."""
    views = grey.reshape(GRID, TILE, GRID, TILE).swapaxes(1, 2)  # (3, 3, 256, 256) view
    hist = np.stack([cv2.calcHist([views[t // GRID, t % GRID]], [0], None, [256], [0, 256]).ravel()
                     for t in range(N_TILES)]).astype(np.float64)  # (9, 256)
    p = hist / (TILE * TILE)
    levels = np.arange(256.0)
    mean = p @ levels
    std = np.sqrt(np.maximum(p @ levels**2 - mean**2, 0.0))
    logp = np.log2(p, out=np.zeros_like(p), where=p > 0)
    return std.astype(np.float32), (0.0 - (p * logp).sum(axis=1)).astype(np.float32)  # +0.0, not -0.0


# Tile index of every pixel of a MEDIAN_STRIDE-subsampled chip: one 2-D histogram
# (value, tile) per channel gives the 9 tiles' histograms in one OpenCV call.
_SUB = CHIP // MEDIAN_STRIDE
_SUB_TILE_INDEX = np.repeat(np.repeat(np.arange(N_TILES, dtype=np.uint8).reshape(GRID, GRID),
                                      _SUB // GRID, axis=0), _SUB // GRID, axis=1)


def _dominant(chip: np.ndarray) -> np.ndarray:
    """(9, 3) uint8: per-channel (lower) median of each tile on every MEDIAN_STRIDE-th row and column.

    4,096 pixels per tile put the median within one level of the full-tile
    median on every near-flat real tile (where it matters: it centres the
    noise band of dominant_share), at a sixteenth of the cost.
    """
    sub = cv2.resize(chip, (_SUB, _SUB), interpolation=cv2.INTER_NEAREST)  # == chip[::4, ::4]
    hist = np.stack([cv2.calcHist([sub, _SUB_TILE_INDEX], [c, 3], None, [256, N_TILES],
                                  [0, 256, 0, N_TILES]) for c in range(3)])  # (3, 256, 9)
    cum = np.cumsum(hist, axis=1)
    half = (_SUB // GRID) ** 2 / 2.0
    return (cum >= half).argmax(axis=1).T.astype(np.uint8)  # first level reaching half the pixels


def _dominant_share(tiles: np.ndarray, dominant: np.ndarray, noise_levels: int) -> np.ndarray:
    """(n,) float32: share of each tile's pixels within +-noise_levels of its dominant colour in every channel."""
    lo = np.clip(dominant.astype(np.int16) - noise_levels, 0, 255).astype(np.float64)
    hi = np.clip(dominant.astype(np.int16) + noise_levels, 0, 255).astype(np.float64)
    inside = [cv2.countNonZero(cv2.inRange(tiles[t], lo[t], hi[t])) for t in range(len(tiles))]
    return np.asarray(inside, np.float32) / np.float32(TILE * TILE)
