"""Compiled pixel loops of the tile stage (numba): block sums, histograms, medians, counts.

NumPy and OpenCV need a pass over the pixels per measure (and a histogram is
a serial loop in both); here one call measures each tile while it sits in the
CPU's cache, so that hashing a chip costs less than decoding it
(benchmarks/bench_tiles.py). Sums, counts and medians are exact integers, and
the means, standard deviation and entropy come from them in float64, so the
results are those of the obvious NumPy code (tests/test_kernels.py checks each).

Compiled code is cached beside this file (`cache=True`): the first process
after an install or an edit compiles (about 10 s); later ones load it, which
with numba's import costs each process about 0.5 s (more on a busy machine).
The loops release the GIL (`nogil=True`) for the tile stage's worker threads.

A tile is a C-contiguous uint8 array (H, W * C): H rows with the C channels of
each pixel interleaved; n tiles are one (n, H, W * C) array, as
images.cut_tiles makes them. Rows are taken with integer indices only, so that
they stay contiguous to the compiler and the loops vectorise.
"""

from __future__ import annotations

import numba
import numpy as np

jit = numba.njit(cache=True, nogil=True)


@jit
def _block_sums(tile, channels, block, acc, out):
    """out[c, by, bx] = sum of the block x block pixel block (by, bx) of channel c.

    Adds `block` rows into a uint16 row first (block * 255 < 2**16 for block <= 256),
    then `block` pixels of that row per channel.
    """
    h, wc = tile.shape
    for by in range(h // block):
        acc[:] = 0
        for y in range(by * block, (by + 1) * block):
            row = tile[y]
            for x in range(wc):
                acc[x] += row[x]
        for bx in range(wc // channels // block):
            for c in range(channels):
                s = 0
                for x in range(bx * block, (bx + 1) * block):
                    s += acc[x * channels + c]
                out[c, by, bx] = s


@jit
def _mean_hash_bits(sums, out):
    """BlockMeanHash bits of one channel's (B, B) block sums into out (B * B / 8 uint8): bit i
    (blocks row-major, least significant bit first) is set where block i's mean >= the mean of
    all blocks, compared as exact integers: sum_i * B * B >= total."""
    rows, cols = sums.shape
    total = 0
    for by in range(rows):
        for bx in range(cols):
            total += sums[by, bx]
    out[:] = 0
    for by in range(rows):
        for bx in range(cols):
            i = by * cols + bx
            if sums[by, bx] * (rows * cols) >= total:
                out[i // 8] |= np.uint8(1 << (i % 8))


@jit
def _histogram(tile, part, out):
    """out[v] = pixels of the one-channel tile at level v.

    part: (8, 256) uint16 scratch for eight interleaved partial histograms (each
    counts at most H * W / 8 < 2**16 pixels): on flat tiles, where one level
    repeats, consecutive pixels then do not wait on one counter.
    """
    h, w = tile.shape
    part[:] = 0
    for y in range(h):
        row = tile[y]
        for x in range(0, w - 7, 8):
            for k in range(8):
                part[k, row[x + k]] += 1
        for x in range(w - w % 8, w):
            part[x % 8, row[x]] += 1
    for v in range(256):
        total = 0
        for k in range(8):
            total += part[k, v]
        out[v] = total


@jit
def _subsampled_median(tile, stride, hist, out):
    """out[c] = lower median of channel c of the RGB tile's pixels on every `stride`-th row
    and column: the first level that half of them reach (hist: (3, 256) scratch; at most
    2**16 - 1 sampled pixels for uint16)."""
    h, w3 = tile.shape
    w = w3 // 3
    hist[:] = 0
    for y in range(0, h, stride):
        row = tile[y]
        for x in range(0, w, stride):
            hist[0, row[3 * x]] += 1
            hist[1, row[3 * x + 1]] += 1
            hist[2, row[3 * x + 2]] += 1
    half = ((h + stride - 1) // stride) * ((w + stride - 1) // stride) / 2.0
    for c in range(3):
        cum = 0
        for v in range(256):
            cum += hist[c, v]
            if cum >= half:
                out[c] = v
                break


@jit
def _grey_stats(hist):
    """(standard deviation, Shannon entropy in bits) of the levels counted in a 256-bin histogram."""
    n = 0
    s1 = 0
    s2 = 0
    for v in range(256):
        n += hist[v]
        s1 += hist[v] * v
        s2 += hist[v] * v * v
    mean = s1 / n
    entropy = 0.0
    for v in range(256):
        if hist[v] > 0:
            p = hist[v] / n
            entropy -= p * np.log2(p)
    return np.sqrt(max(s2 / n - mean * mean, 0.0)), entropy + 0.0  # + 0.0: never -0.0


@jit
def _band_count(tile, centre, levels):
    """Pixels of the RGB tile within +-levels of `centre` (clipped to 0-255) in every channel.

    One unsigned comparison per channel: (value - lo) mod 256 <= hi - lo.
    """
    lo0, lo1, lo2 = max(centre[0] - levels, 0), max(centre[1] - levels, 0), max(centre[2] - levels, 0)
    w0 = np.uint8(min(centre[0] + levels, 255) - lo0)
    w1 = np.uint8(min(centre[1] + levels, 255) - lo1)
    w2 = np.uint8(min(centre[2] + levels, 255) - lo2)
    l0, l1, l2 = np.uint8(lo0), np.uint8(lo1), np.uint8(lo2)
    h, w3 = tile.shape
    count = 0
    for y in range(h):
        row = tile[y]
        for x in range(w3 // 3):
            count += ((np.uint8(row[3 * x] - l0) <= w0) & (np.uint8(row[3 * x + 1] - l1) <= w1)
                      & (np.uint8(row[3 * x + 2] - l2) <= w2))
    return count


@jit
def block_mean_hashes(grey: np.ndarray, block: int) -> np.ndarray:
    """(n, H, W) grey tiles -> (n, (H / block) * (W / block) / 8) uint8 BlockMeanHash bits of each."""
    n, h, w = grey.shape
    sums = np.empty((1, h // block, w // block), np.int32)
    out = np.empty((n, (h // block) * (w // block) // 8), np.uint8)
    acc = np.empty(w, np.uint16)
    for t in range(n):
        _block_sums(grey[t], 1, block, acc, sums)
        _mean_hash_bits(sums[0], out[t])
    return out


@jit
def band_counts(tiles: np.ndarray, which: np.ndarray, centres: np.ndarray, levels: int) -> np.ndarray:
    """(len(which),) int64: pixels of tiles[which[k]] within +-levels of centres[which[k]] in every channel.

    tiles: (n, H, W * 3) RGB; centres: (n, 3) uint8.
    """
    out = np.empty(len(which), np.int64)
    for k in range(len(which)):
        out[k] = _band_count(tiles[which[k]], centres[which[k]].astype(np.int64), levels)
    return out


@jit
def scan_tiles(tiles: np.ndarray, grey: np.ndarray, block: int, stride: int, levels: int):
    """Every tile-table column that needs the pixels (but the digest), one tile at a time.

    tiles: (n, H, W * 3) RGB; grey: (n, H, W) the same tiles in grey; H and W
    multiples of `block`, with (H / block) * (W / block) a multiple of 8. Returns
    bmh (n, k) and bmh96 (n, 3 * k) uint8 BlockMeanHash bits of the grey tile and
    of R, G and B (k = (H / block) * (W / block) / 8); means (n, 3) float32
    channel means; grey_std, entropy (n,) float32; dominant (n, 3) uint8, the
    per-channel medians on every `stride`-th row and column; inside (n,) int64,
    the pixels within +-levels of the dominant colour in every channel.
    """
    n, h, w3 = tiles.shape
    w = w3 // 3
    k = (h // block) * (w // block) // 8
    bmh = np.empty((n, k), np.uint8)
    bmh96 = np.empty((n, 3 * k), np.uint8)
    means = np.empty((n, 3), np.float32)
    grey_std = np.empty(n, np.float32)
    entropy = np.empty(n, np.float32)
    dominant = np.empty((n, 3), np.uint8)
    inside = np.empty(n, np.int64)
    acc = np.empty(w3, np.uint16)
    sums = np.empty((3, h // block, w // block), np.int32)
    part = np.empty((8, 256), np.uint16)
    hist = np.empty(256, np.int64)
    for t in range(n):
        _block_sums(tiles[t], 3, block, acc, sums)
        for c in range(3):
            _mean_hash_bits(sums[c], bmh96[t, c * k:(c + 1) * k])
            means[t, c] = sums[c].sum() / (h * w)
        _block_sums(grey[t], 1, block, acc[:w], sums[:1])
        _mean_hash_bits(sums[0], bmh[t])
        _histogram(grey[t], part, hist)
        grey_std[t], entropy[t] = _grey_stats(hist)
        _subsampled_median(tiles[t], stride, part[:3], dominant[t])
        inside[t] = _band_count(tiles[t], dominant[t].astype(np.int64), levels)
    return bmh, bmh96, means, grey_std, entropy, dominant, inside
