"""Tile hashes and statistics, computed for the 9 tiles of a chip at once.

- xxh3_128: xxHash's XXH3 128-bit digest of each tile's contiguous RGB bytes
  (row-major H x W x 3), canonical (big-endian) bytes as `xxh128sum` prints
  them. An exact-copy check, not a cryptographic one: 24 GB/s against MD5's
  0.85 GB/s here (MD5 alone took twice the JPEG decode).
- bmh: BlockMeanHash mode 0, bit-for-bit equal to
  cv2.img_hash.blockMeanHash(tile_bgr, mode=BLOCK_MEAN_HASH_MODE_0). OpenCV
  resizes to 256 x 256 (a copy for our tiles), converts to grey with
  cvtColor (called here too: bit-exact whatever OpenCV's fixed-point weights,
  15-bit in OpenCV 5), takes the means of the 16 x 16 blocks of 16 x 16
  pixels, sets a bit where a block mean is >= the mean of the whole grey tile
  (called "median" in OpenCV) and packs the bits block by block, row-major,
  least significant bit first. Block sums are exact integers, and the
  comparison is done on them (sum_block * 256 >= sum_tile), which is exactly
  OpenCV's double comparison since both divisions are by powers of two.
- bmh96: the same hash of the R, G and B channels separately (OpenCV takes a
  one-channel image as its own grey), concatenated R, G, B.
- flat_sig: the tile's fine structure (tiledup.tiles.fine: 4 x 4-pixel block
  means minus their blur, so the per-chip offset and any gradient are out), for
  finding near-flat duplicates (faint dark sea, whose BlockMeanHash is mostly
  JPEG noise), averaged to 32 x 32, zero mean, scaled to int8 (1,024 bytes;
  zeros for a solid tile). Two copies of one acquisition share the sensor noise and
  faint waves pixel for pixel, so their signatures correlate (0.5-1.0); two
  different places, or one place at another time, do not (below 0.1).
- dominant / dominant_share / solid: a tile is solid (cloud white, no-data
  black, a flat border colour) when at least `solid_share` of its pixels lie
  within +-`noise_levels` of its dominant colour in every channel and at most
  `solid_outliers` of them lie beyond +-`outlier_levels`. JPEG noise on a flat
  area stays within a few levels; calm dark sea has texture of 3-10 levels over
  much of the tile (share far below 0.99), and a small ship or glint on an
  otherwise flat tile is a few dozen pixels far outside the band: content, not
  noise.

The pixel loops are in kernels.py; this module says what is computed.
"""

from __future__ import annotations

import cv2
import numpy as np
import xxhash

from tiledup.tiles import kernels
from tiledup.tiles.fine import fine_structure
from tiledup.grid import N_TILES, TILE

BLOCK = 16  # BlockMeanHash mode 0: 16 x 16 blocks of 16 x 16 pixels on a 256 x 256 tile
MEDIAN_STRIDE = 4  # the dominant colour is the median of every 4th row and column


def tile_digests(tiles: np.ndarray) -> np.ndarray:
    """(n, 16) uint8: xxh3-128 of each tile's RGB bytes. `tiles`: C-contiguous (n, 256, 256, 3)."""
    flat = tiles.reshape(len(tiles), -1)  # one row-major buffer per tile, no copy
    return np.frombuffer(b"".join(map(xxhash.xxh3_128_digest, flat)), np.uint8).reshape(-1, 16)


def grey_tiles(tiles: np.ndarray) -> np.ndarray:
    """(n, 256, 256) grey tiles exactly as OpenCV's BlockMeanHash computes them
    (cvtColor BGR2GRAY on BGR = RGB2GRAY on RGB, pixel by pixel)."""
    n, h, w, _ = tiles.shape
    return cv2.cvtColor(tiles.reshape(n * h, w, 3), cv2.COLOR_RGB2GRAY).reshape(n, h, w)


def block_mean_hash(tile_rgb: np.ndarray) -> bytes:
    """BlockMeanHash mode 0 of one 256 x 256 RGB (or one-channel) tile, 32 bytes."""
    tile = np.ascontiguousarray(tile_rgb)[None]
    if tile.ndim == 4:
        tile = grey_tiles(tile)
    return kernels.block_mean_hashes(tile, BLOCK)[0].tobytes()


SIG_SIDE = 32  # flat_sig: 32 x 32 int8


def flat_signatures(grey: np.ndarray, solid: np.ndarray) -> np.ndarray:
    """(n, SIG_SIDE**2) int8 flat_sig of (n, 256, 256) grey tiles (module doc); zeros where solid."""
    out = np.zeros((len(grey), SIG_SIDE * SIG_SIDE), np.int8)
    for k in np.flatnonzero(~solid):
        high = cv2.resize(fine_structure(grey[k])[1], (SIG_SIDE, SIG_SIDE), interpolation=cv2.INTER_AREA).ravel()
        high -= high.mean()
        top = np.abs(high).max()
        if top > 0:
            out[k] = np.rint(high * (127 / top)).astype(np.int8)
    return out


def hash_tiles(tiles: np.ndarray, *, noise_levels: int, solid_share: float, outlier_levels: int,
               solid_outliers: float) -> dict[str, np.ndarray]:
    """All per-tile columns of the tile table except image_id and tile.

    tiles: a chip's C-contiguous (9, 256, 256, 3) RGB uint8 tiles (images.cut_tiles).
    Returns arrays with 9 rows: xxh3_128 (9,16), bmh (9,32), bmh96 (9,96),
    dominant (9,3), flat_sig (9,1024) uint8 (int8 bytes), solid bool, and float32 r_mean,
    g_mean, b_mean, grey_std, entropy, dominant_share.
    """
    rgb_rows = tiles.reshape(N_TILES, TILE, TILE * 3)  # the kernels' layout, no copy
    grey = grey_tiles(tiles)
    bmh, bmh96, means, grey_std, entropy, dominant, inside = kernels.scan_tiles(
        rgb_rows, grey, BLOCK, MEDIAN_STRIDE, noise_levels)
    share = _share(inside)
    solid = share >= solid_share
    candidates = np.flatnonzero(solid)  # few tiles: count the far outliers only where it matters
    near = _share(kernels.band_counts(rgb_rows, candidates, dominant, outlier_levels))
    solid[candidates] = 1.0 - near <= solid_outliers
    return {
        "xxh3_128": tile_digests(tiles),
        "bmh": bmh,
        "bmh96": bmh96,  # R, G, B
        "solid": solid,
        "r_mean": means[:, 0],
        "g_mean": means[:, 1],
        "b_mean": means[:, 2],
        "grey_std": grey_std,
        "entropy": entropy,
        "dominant": dominant,
        "dominant_share": share,
        "flat_sig": flat_signatures(grey, solid).view(np.uint8),
    }


def _share(pixels: np.ndarray) -> np.ndarray:
    """Pixel counts -> float32 share of a tile."""
    return pixels.astype(np.float32) / np.float32(TILE * TILE)
